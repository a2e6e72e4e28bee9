using Herald.Core.Ports;
using Microsoft.Data.Sqlite;

namespace Herald.Storage.Sqlite;

public sealed partial class SqliteStore : IGraphSubscriptionStore
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

    private const string LeaseGraphSubscriptionSql = """
        UPDATE graph_subscriptions SET lease_owner = @owner, lease_until = @until
        WHERE id = @id AND (lease_owner IS NULL OR lease_owner = @owner OR lease_until IS NULL OR lease_until <= @now)
        """;

    private const string InsertGraphNotificationSql = """
        INSERT INTO graph_notifications (dedup_key, subscription_id, kind, message_id, received_at, keep_until)
        VALUES (@dedup_key, @subscription_id, @kind, @message_id, @received_at, @keep_until)
        ON CONFLICT (dedup_key) DO NOTHING
        """;

    private const string ClaimGraphNotificationsSql = """
        UPDATE graph_notifications SET lease_owner = @owner, lease_until = @until
        WHERE seq IN (
            SELECT seq FROM graph_notifications
            WHERE done_at IS NULL AND (lease_until IS NULL OR lease_until <= @now)
            ORDER BY seq LIMIT @max)
        RETURNING seq, dedup_key, subscription_id, kind, message_id, received_at, keep_until
        """;

    private const string CompleteGraphNotificationSql = "UPDATE graph_notifications SET done_at = @now, lease_owner = NULL, lease_until = NULL WHERE seq = @seq";
    private const string PurgeGraphNotificationsSql = "DELETE FROM graph_notifications WHERE done_at IS NOT NULL AND keep_until <= @now";

    /// <inheritdoc />
    public Task SaveGraphSubscriptionAsync(GraphSubscription subscription, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(subscription);
        return WriteAsync(
            s => s.Statement(UpsertGraphSubscriptionSql, "@id", "@tenant_id", "@connector", "@mailbox_hash", "@sealed_mailbox", "@client_state_hash", "@expires_at", "@created_at", "@renewed_at", "@pending_action", "@lease_owner", "@lease_until")
                .Set(0, subscription.Id)
                .Set(1, subscription.TenantId)
                .Set(2, subscription.Connector)
                .Set(3, subscription.MailboxHash)
                .Set(4, subscription.SealedMailbox)
                .Set(5, subscription.ClientStateHash)
                .Set(6, subscription.ExpiresAt)
                .Set(7, subscription.CreatedAt)
                .Set(8, subscription.RenewedAt)
                .Set(9, (long)subscription.PendingAction)
                .Set(10, subscription.LeaseOwner)
                .Set(11, subscription.LeaseUntil)
                .Execute(),
            cancellationToken);
    }

    /// <inheritdoc />
    public Task<GraphSubscription?> GetGraphSubscriptionAsync(string id, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(id);
        return ReadAsync(
            s =>
            {
                using var reader = s.Statement(SelectGraphSubscriptionSql, "@id").Set(0, id).Query();
                return reader.Read() ? ReadGraphSubscription(reader) : null;
            },
            cancellationToken);
    }

    /// <inheritdoc />
    public Task<GraphSubscription?> FindGraphSubscriptionByClientStateAsync(byte[] clientStateHash, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(clientStateHash);
        return ReadAsync(
            s =>
            {
                using var reader = s.Statement(SelectGraphSubscriptionByStateSql, "@hash").Set(0, clientStateHash).Query();
                return reader.Read() ? ReadGraphSubscription(reader) : null;
            },
            cancellationToken);
    }

    /// <inheritdoc />
    public Task<bool> ConfirmGraphSubscriptionAsync(string provisionalId, string id, DateTimeOffset expiresAt, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(provisionalId);
        ArgumentNullException.ThrowIfNull(id);
        return WriteAsync(
            s => s.Statement(ConfirmGraphSubscriptionSql, "@provisional", "@id", "@expires_at").Set(0, provisionalId).Set(1, id).Set(2, expiresAt).Execute() > 0,
            cancellationToken);
    }

    /// <inheritdoc />
    public Task<IReadOnlyList<GraphSubscription>> ListGraphSubscriptionsAsync(string tenantId, string connector, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(tenantId);
        ArgumentNullException.ThrowIfNull(connector);
        return ReadAsync<IReadOnlyList<GraphSubscription>>(
            s =>
            {
                var list = new List<GraphSubscription>();
                using var reader = s.Statement(SelectGraphSubscriptionsSql, "@tenant_id", "@connector").Set(0, tenantId).Set(1, connector).Query();
                while (reader.Read())
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
        return WriteAsync(s => s.Statement(DeleteGraphSubscriptionSql, "@id").Set(0, id).Execute() > 0, cancellationToken);
    }

    /// <inheritdoc />
    public Task<bool> SetGraphSubscriptionActionAsync(string id, GraphSubscriptionAction action, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(id);
        return WriteAsync(s => s.Statement(SetGraphActionSql, "@id", "@action").Set(0, id).Set(1, (long)action).Execute() > 0, cancellationToken);
    }

    /// <inheritdoc />
    public Task<bool> TryLeaseGraphSubscriptionAsync(string id, string owner, DateTimeOffset now, DateTimeOffset until, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(id);
        ArgumentNullException.ThrowIfNull(owner);
        return WriteAsync(
            s => s.Statement(LeaseGraphSubscriptionSql, "@id", "@owner", "@until", "@now").Set(0, id).Set(1, owner).Set(2, until).Set(3, now).Execute() > 0,
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
            s =>
            {
                var added = 0;
                var statement = s.Statement(InsertGraphNotificationSql, "@dedup_key", "@subscription_id", "@kind", "@message_id", "@received_at", "@keep_until");
                foreach (var n in notifications)
                {
                    added += statement
                        .Set(0, n.DedupKey)
                        .Set(1, n.SubscriptionId)
                        .Set(2, (long)n.Kind)
                        .Set(3, n.MessageId)
                        .Set(4, n.ReceivedAt)
                        .Set(5, n.KeepUntil)
                        .Execute();
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
            s =>
            {
                var list = new List<GraphPendingNotification>();
                using var reader = s.Statement(ClaimGraphNotificationsSql, "@owner", "@until", "@now", "@max").Set(0, owner).Set(1, leaseUntil).Set(2, now).Set(3, max).Query();
                while (reader.Read())
                {
                    list.Add(new GraphPendingNotification
                    {
                        Sequence = reader.GetInt64(0),
                        DedupKey = reader.Blob(1),
                        SubscriptionId = reader.GetString(2),
                        Kind = (GraphChangeKind)reader.GetInt32(3),
                        MessageId = reader.IsDBNull(4) ? null : reader.GetString(4),
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
            s =>
            {
                var statement = s.Statement(CompleteGraphNotificationSql, "@seq", "@now");
                foreach (var seq in sequences)
                {
                    statement.Set(0, seq).Set(1, now).Execute();
                }

                s.Statement(PurgeGraphNotificationsSql, "@now").Set(0, now).Execute();
            },
            cancellationToken);
    }

    private static GraphSubscription ReadGraphSubscription(SqliteDataReader reader) => new()
    {
        Id = reader.GetString(0),
        TenantId = reader.GetString(1),
        Connector = reader.GetString(2),
        MailboxHash = reader.Blob(3),
        SealedMailbox = reader.GetString(4),
        ClientStateHash = reader.Blob(5),
        ExpiresAt = reader.Time(6),
        CreatedAt = reader.Time(7),
        RenewedAt = reader.Time(8),
        PendingAction = (GraphSubscriptionAction)reader.GetInt32(9),
        LeaseOwner = reader.IsDBNull(10) ? null : reader.GetString(10),
        LeaseUntil = reader.TimeOrNull(11),
    };
}
