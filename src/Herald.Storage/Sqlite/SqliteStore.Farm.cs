using Herald.Core.Ports;

namespace Herald.Storage.Sqlite;

/// <summary>
/// The farm port on SQLite. A SQLite file has one node, but the same registry and leases run on it (the node leads
/// itself), so a single node behaves exactly like a farm of one.
/// </summary>
public sealed partial class SqliteStore : IFarmStore
{
    private const string UpsertNodeSql = """
        INSERT INTO farm_nodes (name, instance, region, version, started_at, heartbeat_at, sends_per_second, queue_claimed, connections)
        VALUES (@name, @instance, @region, @version, @started_at, @now, @sends, @claimed, @connections)
        ON CONFLICT (name) DO UPDATE SET
            instance = excluded.instance, region = excluded.region, version = excluded.version, started_at = excluded.started_at,
            heartbeat_at = excluded.heartbeat_at, sends_per_second = excluded.sends_per_second,
            queue_claimed = excluded.queue_claimed, connections = excluded.connections
        """;

    // Claimed rows are few (in flight at most) and under the partial lease index.
    private const string CountClaimedSql = "SELECT COUNT(*) FROM notifications WHERE state = 1 AND lease_owner = @owner";

    private const string SelectNodesSql = """
        SELECT name, instance, region, version, started_at, heartbeat_at, sends_per_second, queue_claimed, connections
        FROM farm_nodes ORDER BY name
        """;

    private const string DeleteSilentNodesSql = "DELETE FROM farm_nodes WHERE heartbeat_at < @before";

    // Free, released, expired or already ours: take it. A new holder gets the next token; the holder extending an
    // unexpired lease keeps its token. Otherwise the WHERE leaves the row alone and nothing is returned.
    private const string AcquireLeaseSql = """
        INSERT INTO work_leases (key, owner, token, acquired_at, expires_at) VALUES (@key, @owner, 1, @now, @expires)
        ON CONFLICT (key) DO UPDATE SET
            token = CASE WHEN work_leases.owner = excluded.owner AND work_leases.expires_at > @now
                         THEN work_leases.token ELSE work_leases.token + 1 END,
            acquired_at = CASE WHEN work_leases.owner = excluded.owner AND work_leases.expires_at > @now
                         THEN work_leases.acquired_at ELSE excluded.acquired_at END,
            owner = excluded.owner,
            expires_at = excluded.expires_at
        WHERE work_leases.owner IS NULL OR work_leases.expires_at <= @now OR work_leases.owner = excluded.owner
        RETURNING token, expires_at
        """;

    private const string RenewLeaseSql = """
        UPDATE work_leases SET expires_at = @expires
        WHERE key = @key AND owner = @owner AND token = @token AND expires_at > @now
        RETURNING expires_at
        """;

    private const string ReleaseLeaseSql = "UPDATE work_leases SET owner = NULL, expires_at = 0 WHERE key = @key AND owner = @owner AND token = @token";

    private const string LeaseCurrentSql = "SELECT 1 FROM work_leases WHERE key = @key AND owner = @owner AND token = @token AND expires_at > @now";

    private const string ListLeasesSql = """
        SELECT key, owner, token, expires_at FROM work_leases
        WHERE owner IS NOT NULL AND substr(key, 1, length(@prefix)) = @prefix ORDER BY key
        """;

    private const string EndAllLeasesSql = "UPDATE work_leases SET owner = NULL, expires_at = 0 WHERE owner IS NOT NULL";

    /// <inheritdoc />
    public Task RecordHeartbeatAsync(NodeReport node, DateTimeOffset now, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(node);
        ArgumentException.ThrowIfNullOrEmpty(node.Name);
        ArgumentException.ThrowIfNullOrEmpty(node.Instance);
        return WriteAsync(
            s =>
            {
                var claimed = Convert.ToInt64(s.Statement(CountClaimedSql, "@owner").Set(0, node.Instance).Scalar(), System.Globalization.CultureInfo.InvariantCulture);
                s.Statement(UpsertNodeSql, "@name", "@instance", "@region", "@version", "@started_at", "@now", "@sends", "@claimed", "@connections")
                    .Set(0, node.Name)
                    .Set(1, node.Instance)
                    .Set(2, node.Region)
                    .Set(3, node.Version)
                    .Set(4, node.StartedAt)
                    .Set(5, now)
                    .Set(6, node.SendsPerSecond)
                    .Set(7, claimed)
                    .Set(8, (long)node.Connections)
                    .Execute();
            },
            cancellationToken);
    }

    /// <inheritdoc />
    public Task<IReadOnlyList<NodeRecord>> ListNodesAsync(CancellationToken cancellationToken)
        => ReadAsync<IReadOnlyList<NodeRecord>>(
            static s =>
            {
                var nodes = new List<NodeRecord>();
                using var reader = s.Statement(SelectNodesSql).Query();
                while (reader.Read())
                {
                    var report = new NodeReport
                    {
                        Name = reader.GetString(0),
                        Instance = reader.GetString(1),
                        Region = reader.GetString(2),
                        Version = reader.GetString(3),
                        StartedAt = reader.Time(4),
                        SendsPerSecond = reader.GetDouble(6),
                        Connections = reader.GetInt32(8),
                    };
                    nodes.Add(new NodeRecord(report, reader.Time(5), reader.GetInt32(7)));
                }

                return nodes;
            },
            cancellationToken);

    /// <inheritdoc />
    public Task<int> ForgetNodesAsync(DateTimeOffset silentBefore, CancellationToken cancellationToken)
        => WriteAsync(s => s.Statement(DeleteSilentNodesSql, "@before").Set(0, silentBefore).Execute(), cancellationToken);

    /// <inheritdoc />
    public Task<WorkLease?> TryAcquireLeaseAsync(string key, string owner, TimeSpan ttl, DateTimeOffset now, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrEmpty(key);
        ArgumentException.ThrowIfNullOrEmpty(owner);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(ttl, TimeSpan.Zero);
        return WriteAsync(
            s =>
            {
                using var reader = s.Statement(AcquireLeaseSql, "@key", "@owner", "@now", "@expires")
                    .Set(0, key)
                    .Set(1, owner)
                    .Set(2, now)
                    .Set(3, now + ttl)
                    .Query();
                return reader.Read() ? new WorkLease(key, owner, reader.GetInt64(0), reader.Time(1)) : null;
            },
            cancellationToken);
    }

    /// <inheritdoc />
    public Task<WorkLease?> RenewLeaseAsync(WorkLease lease, TimeSpan ttl, DateTimeOffset now, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(lease);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(ttl, TimeSpan.Zero);
        return WriteAsync(
            s =>
            {
                using var reader = BindLease(s.Statement(RenewLeaseSql, "@key", "@owner", "@token", "@now", "@expires"), lease)
                    .Set(3, now)
                    .Set(4, now + ttl)
                    .Query();
                return reader.Read() ? lease with { ExpiresAt = reader.Time(0) } : null;
            },
            cancellationToken);
    }

    /// <inheritdoc />
    public Task<bool> ReleaseLeaseAsync(WorkLease lease, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(lease);
        return WriteAsync(s => BindLease(s.Statement(ReleaseLeaseSql, "@key", "@owner", "@token"), lease).Execute() == 1, cancellationToken);
    }

    /// <inheritdoc />
    public Task<bool> IsLeaseCurrentAsync(WorkLease lease, DateTimeOffset now, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(lease);
        return ReadAsync(s => BindLease(s.Statement(LeaseCurrentSql, "@key", "@owner", "@token", "@now"), lease).Set(3, now).Scalar() is not null, cancellationToken);
    }

    /// <inheritdoc />
    public Task<IReadOnlyList<WorkLease>> ListLeasesAsync(string prefix, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(prefix);
        return ReadAsync<IReadOnlyList<WorkLease>>(
            s =>
            {
                var leases = new List<WorkLease>();
                using var reader = s.Statement(ListLeasesSql, "@prefix").Set(0, prefix).Query();
                while (reader.Read())
                {
                    leases.Add(new WorkLease(reader.GetString(0), reader.GetString(1), reader.GetInt64(2), reader.Time(3)));
                }

                return leases;
            },
            cancellationToken);
    }

    /// <inheritdoc />
    public Task<int> EndAllLeasesAsync(CancellationToken cancellationToken)
        => WriteAsync(static s => s.Statement(EndAllLeasesSql).Execute(), cancellationToken);

    private static SqliteStatement BindLease(SqliteStatement statement, WorkLease lease)
        => statement.Set(0, lease.Key).Set(1, lease.Owner).Set(2, lease.Token);
}
