using Herald.Core.Ports;
using Npgsql;

namespace Herald.Storage.Postgres;

public sealed partial class PostgresStore : IGraphSubscriptionStore
{
    private const string GraphSubscriptionColumns =
        "id, tenant_id, connector, mailbox_hash, sealed_mailbox, client_state_hash, expires_at, created_at, renewed_at, pending_action, lease_owner, lease_until";

    private const string UpsertGraphSubscriptionSql = """
        INSERT INTO graph_subscriptions (id, tenant_id, connector, mailbox_hash, sealed_mailbox, client_state_hash, expires_at, created_at, renewed_at, pending_action, lease_owner, lease_until)
        VALUES (@id, @tenant_id, @connector, @mailbox_hash, @sealed_mailbox, @client_state_hash, @expires_at, @created_at, @renewed_at, @pending_action, @lease_owner, @lease_until)
        ON CONFLICT (id) DO UPDATE
        SET tenant_id = excluded.tenant_id, connector = excluded.connector, mailbox_hash = excluded.mailbox_hash,
            sealed_mailbox = excluded.sealed_mailbox, client_state_hash = excluded.client_state_hash, expires_at = excluded.expires_at,
            renewed_at = excluded.renewed_at, pending_action = excluded.pending_action, lease_owner = excluded.lease_owner, lease_until = excluded.lease_until
        """;

    private const string SelectGraphSubscriptionSql = "SELECT " + GraphSubscriptionColumns + " FROM graph_subscriptions WHERE id = @id";
    private const string SelectGraphSubscriptionsSql = "SELECT " + GraphSubscriptionColumns + " FROM graph_subscriptions WHERE tenant_id = @tenant_id AND connector = @connector ORDER BY id";
    private const string SelectGraphSubscriptionByStateSql = "SELECT " + GraphSubscriptionColumns + " FROM graph_subscriptions WHERE client_state_hash = @hash";
    private const string ConfirmGraphSubscriptionSql = "UPDATE graph_subscriptions SET id = @id, expires_at = @expires_at WHERE id = @provisional";
    private const string DeleteGraphSubscriptionSql = "DELETE FROM graph_subscriptions WHERE id = @id";
    private const string SetGraphActionSql = "UPDATE graph_subscriptions SET pending_action = @action WHERE id = @id";

    // One statement under the row lock: two nodes asking at once, one gets the lease.
    private const string LeaseGraphSubscriptionSql = """
        UPDATE graph_subscriptions SET lease_owner = @owner, lease_until = @until
        WHERE id = @id AND (lease_owner IS NULL OR lease_owner = @owner OR lease_until IS NULL OR lease_until <= @now)
        """;

    private const string InsertGraphNotificationSql = """
        INSERT INTO graph_notifications (dedup_key, subscription_id, kind, message_id, received_at, keep_until)
        VALUES (@dedup_key, @subscription_id, @kind, @message_id, @received_at, @keep_until)
        ON CONFLICT (dedup_key) DO NOTHING
        """;

    // Several nodes claim at once: each takes notifications no other node is claiming.
    private const string ClaimGraphNotificationsSql = """
        UPDATE graph_notifications SET lease_owner = @owner, lease_until = @until
        WHERE seq IN (
            SELECT seq FROM graph_notifications
            WHERE done_at IS NULL AND (lease_until IS NULL OR lease_until <= @now)
            ORDER BY seq LIMIT @max
            FOR UPDATE SKIP LOCKED)
        RETURNING seq, dedup_key, subscription_id, kind, message_id, received_at, keep_until
        """;

    private const string CompleteGraphNotificationsSql =
        "UPDATE graph_notifications SET done_at = @now, lease_owner = NULL, lease_until = NULL WHERE seq = ANY(@seqs)";

    private const string PurgeGraphNotificationsSql = "DELETE FROM graph_notifications WHERE done_at IS NOT NULL AND keep_until <= @now";

    /// <inheritdoc />
    public Task SaveGraphSubscriptionAsync(GraphSubscription subscription, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(subscription);
        return WriteAsync(
            async (c, ct) =>
            {
                await using var command = Pg.Command(c, UpsertGraphSubscriptionSql)
                    .Add("id", subscription.Id)
                    .Add("tenant_id", subscription.TenantId)
                    .Add("connector", subscription.Connector)
                    .Add("mailbox_hash", subscription.MailboxHash)
                    .Add("sealed_mailbox", subscription.SealedMailbox)
                    .Add("client_state_hash", subscription.ClientStateHash)
                    .Add("expires_at", subscription.ExpiresAt)
                    .Add("created_at", subscription.CreatedAt)
                    .Add("renewed_at", subscription.RenewedAt)
                    .Add("pending_action", (short)subscription.PendingAction)
                    .Add("lease_owner", subscription.LeaseOwner)
                    .Add("lease_until", subscription.LeaseUntil);
                return await command.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
            },
            cancellationToken);
    }

    /// <inheritdoc />
    public Task<GraphSubscription?> GetGraphSubscriptionAsync(string id, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(id);
        return ReadAsync(
            async (c, ct) =>
            {
                await using var command = Pg.Command(c, SelectGraphSubscriptionSql).Add("id", id);
                await using var reader = await command.ExecuteReaderAsync(ct).ConfigureAwait(false);
                return await reader.ReadAsync(ct).ConfigureAwait(false) ? ReadGraphSubscription(reader) : null;
            },
            cancellationToken);
    }

    /// <inheritdoc />
    public Task<GraphSubscription?> FindGraphSubscriptionByClientStateAsync(byte[] clientStateHash, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(clientStateHash);
        return ReadAsync(
            async (c, ct) =>
            {
                await using var command = Pg.Command(c, SelectGraphSubscriptionByStateSql).Add("hash", clientStateHash);
                await using var reader = await command.ExecuteReaderAsync(ct).ConfigureAwait(false);
                return await reader.ReadAsync(ct).ConfigureAwait(false) ? ReadGraphSubscription(reader) : null;
            },
            cancellationToken);
    }

    /// <inheritdoc />
    public Task<bool> ConfirmGraphSubscriptionAsync(string provisionalId, string id, DateTimeOffset expiresAt, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(provisionalId);
        ArgumentNullException.ThrowIfNull(id);
        return ExecuteAffectsAnyAsync(
            Pg.BatchCommand(ConfirmGraphSubscriptionSql).Add("provisional", provisionalId).Add("id", id).Add("expires_at", expiresAt),
            cancellationToken);
    }

    /// <inheritdoc />
    public Task<IReadOnlyList<GraphSubscription>> ListGraphSubscriptionsAsync(string tenantId, string connector, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(tenantId);
        ArgumentNullException.ThrowIfNull(connector);
        return ReadAsync<IReadOnlyList<GraphSubscription>>(
            async (c, ct) =>
            {
                var list = new List<GraphSubscription>();
                await using var command = Pg.Command(c, SelectGraphSubscriptionsSql).Add("tenant_id", tenantId).Add("connector", connector);
                await using var reader = await command.ExecuteReaderAsync(ct).ConfigureAwait(false);
                while (await reader.ReadAsync(ct).ConfigureAwait(false))
                {
                    list.Add(ReadGraphSubscription(reader));
                }

                return list;
            },
            cancellationToken);
    }

    /// <inheritdoc />
    public Task<bool> DeleteGraphSubscriptionAsync(string id, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(id);
        return ExecuteAffectsAnyAsync(Pg.BatchCommand(DeleteGraphSubscriptionSql).Add("id", id), cancellationToken);
    }

    /// <inheritdoc />
    public Task<bool> SetGraphSubscriptionActionAsync(string id, GraphSubscriptionAction action, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(id);
        return ExecuteAffectsAnyAsync(Pg.BatchCommand(SetGraphActionSql).Add("id", id).Add("action", (short)action), cancellationToken);
    }

    /// <inheritdoc />
    public Task<bool> TryLeaseGraphSubscriptionAsync(string id, string owner, DateTimeOffset now, DateTimeOffset until, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(id);
        ArgumentNullException.ThrowIfNull(owner);
        return ExecuteAffectsAnyAsync(
            Pg.BatchCommand(LeaseGraphSubscriptionSql).Add("id", id).Add("owner", owner).Add("until", until).Add("now", now),
            cancellationToken);
    }

    /// <inheritdoc />
    public Task<int> AddGraphNotificationsAsync(IReadOnlyList<GraphPendingNotification> notifications, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(notifications);
        if (notifications.Count == 0)
        {
            return Task.FromResult(0);
        }

        return WriteAsync(
            async (c, ct) =>
            {
                await using var batch = new NpgsqlBatch(c);
                foreach (var n in notifications)
                {
                    batch.BatchCommands.Add(Pg.BatchCommand(InsertGraphNotificationSql)
                        .Add("dedup_key", n.DedupKey)
                        .Add("subscription_id", n.SubscriptionId)
                        .Add("kind", (short)n.Kind)
                        .Add("message_id", n.MessageId)
                        .Add("received_at", n.ReceivedAt)
                        .Add("keep_until", n.KeepUntil));
                }

                await batch.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
                var added = 0;
                foreach (var command in batch.BatchCommands)
                {
                    added += command.RecordsAffected;
                }

                return added;
            },
            cancellationToken);
    }

    /// <inheritdoc />
    public Task<IReadOnlyList<GraphPendingNotification>> ClaimGraphNotificationsAsync(string owner, DateTimeOffset now, DateTimeOffset leaseUntil, int max, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(owner);
        ArgumentOutOfRangeException.ThrowIfLessThan(max, 1);
        return WriteAsync<IReadOnlyList<GraphPendingNotification>>(
            async (c, ct) =>
            {
                var list = new List<GraphPendingNotification>();
                await using var command = Pg.Command(c, ClaimGraphNotificationsSql).Add("owner", owner).Add("until", leaseUntil).Add("now", now).Add("max", max);
                await using var reader = await command.ExecuteReaderAsync(ct).ConfigureAwait(false);
                while (await reader.ReadAsync(ct).ConfigureAwait(false))
                {
                    list.Add(new GraphPendingNotification
                    {
                        Sequence = reader.GetInt64(0),
                        DedupKey = reader.GetFieldValue<byte[]>(1),
                        SubscriptionId = reader.GetString(2),
                        Kind = (GraphChangeKind)reader.GetInt16(3),
                        MessageId = reader.StringOrNull(4),
                        ReceivedAt = reader.Time(5),
                        KeepUntil = reader.Time(6),
                    });
                }

                list.Sort(static (a, b) => a.Sequence.CompareTo(b.Sequence));
                return list;
            },
            cancellationToken);
    }

    /// <inheritdoc />
    public Task CompleteGraphNotificationsAsync(IReadOnlyList<long> sequences, DateTimeOffset now, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(sequences);
        return WriteAsync(
            async (c, ct) =>
            {
                await using var batch = new NpgsqlBatch(c)
                {
                    BatchCommands =
                    {
                        Pg.BatchCommand(CompleteGraphNotificationsSql).Add("now", now).Add("seqs", sequences.ToArray()),
                        Pg.BatchCommand(PurgeGraphNotificationsSql).Add("now", now),
                    },
                };
                return await batch.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
            },
            cancellationToken);
    }

    /// <summary>Runs one statement in its own transaction; true when it changed a row.</summary>
    private Task<bool> ExecuteAffectsAnyAsync(NpgsqlBatchCommand statement, CancellationToken cancellationToken)
        => WriteAsync(
            async (c, ct) =>
            {
                await using var batch = new NpgsqlBatch(c) { BatchCommands = { statement } };
                return await batch.ExecuteNonQueryAsync(ct).ConfigureAwait(false) > 0;
            },
            cancellationToken);

    private static GraphSubscription ReadGraphSubscription(NpgsqlDataReader reader) => new()
    {
        Id = reader.GetString(0),
        TenantId = reader.GetString(1),
        Connector = reader.GetString(2),
        MailboxHash = reader.GetFieldValue<byte[]>(3),
        SealedMailbox = reader.GetString(4),
        ClientStateHash = reader.GetFieldValue<byte[]>(5),
        ExpiresAt = reader.Time(6),
        CreatedAt = reader.Time(7),
        RenewedAt = reader.Time(8),
        PendingAction = (GraphSubscriptionAction)reader.GetInt16(9),
        LeaseOwner = reader.StringOrNull(10),
        LeaseUntil = reader.TimeOrNull(11),
    };
}
