using Herald.Core.Ports;
using Npgsql;

namespace Herald.Storage.Postgres;

/// <summary>
/// The farm port on PostgreSQL: the node registry and work leases. Every lease change is one statement on the
/// lease's row (autocommit): the row lock orders nodes that compete for it, and a node whose session drops in the
/// middle changed nothing. Leases expire by the callers' clocks (kept in step by NTP, well inside the safety margin).
/// </summary>
public sealed partial class PostgresStore : IFarmStore
{
    private const string HeartbeatSql = """
        INSERT INTO farm_nodes (name, instance, region, version, started_at, heartbeat_at, sends_per_second, queue_claimed, connections)
        VALUES (@name, @instance, @region, @version, @started_at, @now, @sends,
            (SELECT COUNT(*) FROM notifications WHERE state = 1 AND lease_owner = @instance)::integer, @connections)
        ON CONFLICT (name) DO UPDATE SET
            instance = excluded.instance, region = excluded.region, version = excluded.version, started_at = excluded.started_at,
            heartbeat_at = excluded.heartbeat_at, sends_per_second = excluded.sends_per_second,
            queue_claimed = excluded.queue_claimed, connections = excluded.connections
        """;

    private const string SelectNodesSql = """
        SELECT name, instance, region, version, started_at, heartbeat_at, sends_per_second, queue_claimed, connections
        FROM farm_nodes ORDER BY name COLLATE "C"
        """;

    private const string DeleteSilentNodesSql = "DELETE FROM farm_nodes WHERE heartbeat_at < @before";

    // Free, released, expired or already ours: take it. A new holder gets the next token; the holder extending an
    // unexpired lease keeps its token. Otherwise the WHERE leaves the row alone and nothing is returned. Competing
    // inserts of a new key and updates of an existing one serialize on the row (ON CONFLICT re-checks the WHERE
    // against the latest version), so exactly one node wins.
    private const string AcquireLeaseSql = """
        INSERT INTO work_leases AS w (key, owner, token, acquired_at, expires_at) VALUES (@key, @owner, 1, @now, @expires)
        ON CONFLICT (key) DO UPDATE SET
            token = CASE WHEN w.owner = excluded.owner AND w.expires_at > @now THEN w.token ELSE w.token + 1 END,
            acquired_at = CASE WHEN w.owner = excluded.owner AND w.expires_at > @now THEN w.acquired_at ELSE excluded.acquired_at END,
            owner = excluded.owner,
            expires_at = excluded.expires_at
        WHERE w.owner IS NULL OR w.expires_at <= @now OR w.owner = excluded.owner
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
        WHERE owner IS NOT NULL AND starts_with(key, @prefix) ORDER BY key COLLATE "C"
        """;

    private const string EndAllLeasesSql = "UPDATE work_leases SET owner = NULL, expires_at = 0 WHERE owner IS NOT NULL";

    /// <inheritdoc />
    public Task RecordHeartbeatAsync(NodeReport node, DateTimeOffset now, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(node);
        ArgumentException.ThrowIfNullOrEmpty(node.Name);
        ArgumentException.ThrowIfNullOrEmpty(node.Instance);
        return ReadAsync(
            async (c, ct) =>
            {
                await using var command = Pg.Command(c, HeartbeatSql)
                    .Add("name", node.Name)
                    .Add("instance", node.Instance)
                    .Add("region", node.Region)
                    .Add("version", node.Version)
                    .Add("started_at", node.StartedAt)
                    .Add("now", now)
                    .Add("sends", node.SendsPerSecond)
                    .Add("connections", node.Connections);
                return await command.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
            },
            cancellationToken);
    }

    /// <inheritdoc />
    public Task<IReadOnlyList<NodeRecord>> ListNodesAsync(CancellationToken cancellationToken)
        => ReadAsync<IReadOnlyList<NodeRecord>>(
            static async (c, ct) =>
            {
                var nodes = new List<NodeRecord>();
                await using var command = Pg.Command(c, SelectNodesSql);
                await using var reader = await command.ExecuteReaderAsync(ct).ConfigureAwait(false);
                while (await reader.ReadAsync(ct).ConfigureAwait(false))
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
        => ReadAsync(
            async (c, ct) =>
            {
                await using var command = Pg.Command(c, DeleteSilentNodesSql).Add("before", silentBefore);
                return await command.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
            },
            cancellationToken);

    /// <inheritdoc />
    public Task<WorkLease?> TryAcquireLeaseAsync(string key, string owner, TimeSpan ttl, DateTimeOffset now, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrEmpty(key);
        ArgumentException.ThrowIfNullOrEmpty(owner);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(ttl, TimeSpan.Zero);
        return ReadAsync(
            async (c, ct) =>
            {
                await using var command = Pg.Command(c, AcquireLeaseSql).Add("key", key).Add("owner", owner).Add("now", now).Add("expires", now + ttl);
                await using var reader = await command.ExecuteReaderAsync(ct).ConfigureAwait(false);
                return await reader.ReadAsync(ct).ConfigureAwait(false) ? new WorkLease(key, owner, reader.GetInt64(0), reader.Time(1)) : null;
            },
            cancellationToken);
    }

    /// <inheritdoc />
    public Task<WorkLease?> RenewLeaseAsync(WorkLease lease, TimeSpan ttl, DateTimeOffset now, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(lease);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(ttl, TimeSpan.Zero);
        return ReadAsync(
            async (c, ct) =>
            {
                await using var command = LeaseCommand(c, RenewLeaseSql, lease).Add("now", now).Add("expires", now + ttl);
                await using var reader = await command.ExecuteReaderAsync(ct).ConfigureAwait(false);
                return await reader.ReadAsync(ct).ConfigureAwait(false) ? lease with { ExpiresAt = reader.Time(0) } : null;
            },
            cancellationToken);
    }

    /// <inheritdoc />
    public Task<bool> ReleaseLeaseAsync(WorkLease lease, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(lease);
        return ReadAsync(
            async (c, ct) =>
            {
                await using var command = LeaseCommand(c, ReleaseLeaseSql, lease);
                return await command.ExecuteNonQueryAsync(ct).ConfigureAwait(false) == 1;
            },
            cancellationToken);
    }

    /// <inheritdoc />
    public Task<bool> IsLeaseCurrentAsync(WorkLease lease, DateTimeOffset now, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(lease);
        return ReadAsync(
            async (c, ct) =>
            {
                await using var command = LeaseCommand(c, LeaseCurrentSql, lease).Add("now", now);
                return await command.ExecuteScalarAsync(ct).ConfigureAwait(false) is not null;
            },
            cancellationToken);
    }

    /// <inheritdoc />
    public Task<IReadOnlyList<WorkLease>> ListLeasesAsync(string prefix, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(prefix);
        return ReadAsync<IReadOnlyList<WorkLease>>(
            async (c, ct) =>
            {
                var leases = new List<WorkLease>();
                await using var command = Pg.Command(c, ListLeasesSql).Add("prefix", prefix);
                await using var reader = await command.ExecuteReaderAsync(ct).ConfigureAwait(false);
                while (await reader.ReadAsync(ct).ConfigureAwait(false))
                {
                    leases.Add(new WorkLease(reader.GetString(0), reader.GetString(1), reader.GetInt64(2), reader.Time(3)));
                }

                return leases;
            },
            cancellationToken);
    }

    /// <inheritdoc />
    public Task<int> EndAllLeasesAsync(CancellationToken cancellationToken)
        => ReadAsync(
            static async (c, ct) =>
            {
                await using var command = Pg.Command(c, EndAllLeasesSql);
                return await command.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
            },
            cancellationToken);

    private static NpgsqlCommand LeaseCommand(NpgsqlConnection connection, string sql, WorkLease lease)
        => Pg.Command(connection, sql).Add("key", lease.Key).Add("owner", lease.Owner).Add("token", lease.Token);
}
