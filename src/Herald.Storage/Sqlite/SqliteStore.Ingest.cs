using Herald.Core.Ports;
using Herald.Core.Registrations;

namespace Herald.Storage.Sqlite;

public sealed partial class SqliteStore
{
    // Inactive and deleted registrations are found too: the planner answers them Unsubscribe.
    private const string SelectRegistrationsByCallbackKeySql =
        "SELECT " + RegistrationColumns + " FROM registrations WHERE callback_key_hash = @hash";

    // Every registration of the mailbox on the connector, inactive ones too (the planner skips them).
    private const string SelectRegistrationsByMailboxSql =
        "SELECT " + RegistrationColumns + " FROM registrations WHERE tenant_id = @tenant_id AND connector = @connector AND mailbox_hash = @hash AND status <> 2";

    private const string SaveIngestStateSql = """
        UPDATE registrations
        SET subscription_id = @subscription_id, previous_subscription_id = @previous_subscription_id,
            inbox_folder_id = @inbox_folder_id, unread_count = @unread_count, last_event_at = @last_event_at,
            updated_at = @updated_at
        WHERE id = @id
        """;

    /// <inheritdoc />
    public async Task ApplyIngestBatchAsync(IReadOnlyList<IngestItem> batch, IIngestPlanner planner, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batch);
        ArgumentNullException.ThrowIfNull(planner);
        if (batch.Count == 0)
        {
            return;
        }

        var results = await WriteAsync(s => ApplyIngest(s, batch, planner), cancellationToken).ConfigureAwait(false);

        // Verdicts are published only once the batch is durable; a failed batch leaves its items Pending.
        for (var i = 0; i < batch.Count; i++)
        {
            batch[i].Verdict = results[i].Verdict;
            batch[i].Enqueued = results[i].Enqueued;
        }
    }

    private (IngestVerdict Verdict, int Enqueued)[] ApplyIngest(SqliteSession s, IReadOnlyList<IngestItem> batch, IIngestPlanner planner)
    {
        var now = _time.GetUtcNow();
        var results = new (IngestVerdict Verdict, int Enqueued)[batch.Count];
        var found = new List<Registration>(2);
        for (var i = 0; i < batch.Count; i++)
        {
            var item = batch[i] ?? throw new ArgumentException("An ingest item is null.", nameof(batch));
            found.Clear();
            FindRegistrations(s, item.Route, found);

            // Read inside the transaction, so an item sees what the earlier items of the batch changed.
            var verdict = IngestVerdict.Unsubscribe;
            var enqueued = 0;
            foreach (var registration in found)
            {
                var decision = planner.Plan(registration, item);
                if (decision.RegistrationChanged)
                {
                    SaveIngestState(s, registration);
                }

                if (decision.Verdict == IngestVerdict.Accepted)
                {
                    verdict = IngestVerdict.Accepted;
                }

                if (decision.Notification is { } notification)
                {
                    Enqueue(s, notification, StorageJson.Serialize(notification.Content), Db.Ms(now));
                    enqueued++;
                }
            }

            results[i] = (verdict, enqueued);
        }

        return results;
    }

    private static void FindRegistrations(SqliteSession s, IngestRoute route, List<Registration> found)
    {
        switch (route.Kind)
        {
            case RouteKind.CallbackKey:
                ArgumentNullException.ThrowIfNull(route.Key, nameof(route));
                using (var reader = s.Statement(SelectRegistrationsByCallbackKeySql, "@hash").Set(0, route.Key).Query())
                {
                    while (reader.Read())
                    {
                        found.Add(ReadRegistration(reader));
                    }
                }

                break;
            case RouteKind.Mailbox:
                ArgumentNullException.ThrowIfNull(route.Key, nameof(route));
                ArgumentNullException.ThrowIfNull(route.TenantId, nameof(route));
                ArgumentNullException.ThrowIfNull(route.Connector, nameof(route));
                using (var reader = s.Statement(SelectRegistrationsByMailboxSql, "@tenant_id", "@connector", "@hash")
                    .Set(0, route.TenantId).Set(1, route.Connector).Set(2, route.Key).Query())
                {
                    while (reader.Read())
                    {
                        found.Add(ReadRegistration(reader));
                    }
                }

                break;
            default:
                throw new NotSupportedException($"Ingest route kind {route.Kind} is not supported by the SQLite store.");
        }
    }

    private static void SaveIngestState(SqliteSession s, Registration registration)
        => s.Statement(
                SaveIngestStateSql,
                "@subscription_id", "@previous_subscription_id", "@inbox_folder_id", "@unread_count", "@last_event_at", "@updated_at", "@id")
            .Set(0, registration.SubscriptionId)
            .Set(1, registration.PreviousSubscriptionId)
            .Set(2, registration.InboxFolderId)
            .Set(3, registration.UnreadCount)
            .Set(4, registration.LastEventAt)
            .Set(5, registration.UpdatedAt)
            .Set(6, registration.Id)
            .Execute();
}
