using Herald.Core.Notifications;
using Herald.Core.Ports;
using Herald.Core.Registrations;
using Npgsql;

namespace Herald.Storage.Postgres;

public sealed partial class PostgresStore
{
    // Inactive and deleted registrations are found too: the planner answers them Unsubscribe. Locked in id
    // order: two nodes ingesting callbacks of one registration apply them one after the other (no lost
    // subscription or unread-count update), and never deadlock on each other.
    private const string SelectRegistrationsByCallbackKeysSql =
        "SELECT " + RegistrationColumns + ", callback_key_hash FROM registrations WHERE callback_key_hash = ANY(@hashes) ORDER BY id FOR UPDATE";

    // Every registration of the mailbox on the connector, inactive ones too (the planner skips them); locked likewise.
    private const string SelectRegistrationsByMailboxSql =
        "SELECT " + RegistrationColumns + " FROM registrations WHERE tenant_id = @tenant_id AND connector = @connector AND mailbox_hash = @hash AND status <> 2 ORDER BY id FOR UPDATE";

    private const string SaveIngestStateSql = """
        UPDATE registrations
        SET subscription_id = @subscription_id, previous_subscription_id = @previous_subscription_id,
            inbox_folder_id = @inbox_folder_id, unread_count = @unread_count, last_event_at = @last_event_at,
            updated_at = @updated_at
        WHERE id = @id
        """;

    /// <inheritdoc />
    /// <remarks>
    /// Three round trips for a batch of EWS callbacks whatever its size: the registrations of every callback key
    /// (locked), then every registration change and notification in one batch (with the wake-up hint), then
    /// the commit; one more per distinct mailbox route.
    /// The planner sees each item after the earlier items of the batch, as it would one by one: it changes
    /// the registration objects it is given, and each registration is read once.
    /// </remarks>
    public async Task ApplyIngestBatchAsync(IReadOnlyList<IngestItem> batch, IIngestPlanner planner, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batch);
        ArgumentNullException.ThrowIfNull(planner);
        if (batch.Count == 0)
        {
            return;
        }

        foreach (var item in batch)
        {
            if (item is null)
            {
                throw new ArgumentException("An ingest item is null.", nameof(batch));
            }

            ArgumentNullException.ThrowIfNull(item.Route.Key, nameof(batch));
            switch (item.Route.Kind)
            {
                case RouteKind.CallbackKey:
                    break;
                case RouteKind.Mailbox:
                    ArgumentNullException.ThrowIfNull(item.Route.TenantId, nameof(batch));
                    ArgumentNullException.ThrowIfNull(item.Route.Connector, nameof(batch));
                    break;
                default:
                    throw new NotSupportedException($"Ingest route kind {item.Route.Kind} is not supported by the PostgreSQL store.");
            }
        }

        var results = await WriteRetryingAsync((c, ct) => ApplyIngestAsync(c, batch, planner, ct), cancellationToken).ConfigureAwait(false);

        // Verdicts are published only once the batch is durable; a failed batch leaves its items Pending.
        for (var i = 0; i < batch.Count; i++)
        {
            batch[i].Verdict = results[i].Verdict;
            batch[i].Enqueued = results[i].Enqueued;
        }
    }

    private async Task<(IngestVerdict Verdict, int Enqueued)[]> ApplyIngestAsync(
        NpgsqlConnection c, IReadOnlyList<IngestItem> batch, IIngestPlanner planner, CancellationToken ct)
    {
        var now = _time.GetUtcNow();
        // Each route's registrations are read (and locked) once; the planner then changes the same objects item
        // after item, as it would see them re-read one by one.
        var hashes = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        var byKey = new Dictionary<string, List<Registration>>(StringComparer.Ordinal);
        foreach (var item in batch)
        {
            if (item.Route.Kind == RouteKind.CallbackKey)
            {
                hashes.TryAdd(Convert.ToHexString(item.Route.Key), item.Route.Key);
            }
            else if (!byKey.ContainsKey(RouteKey(item.Route)))
            {
                var found = new List<Registration>(1);
                await using (var select = Pg.Command(c, SelectRegistrationsByMailboxSql)
                                 .Add("tenant_id", item.Route.TenantId)
                                 .Add("connector", item.Route.Connector)
                                 .Add("hash", item.Route.Key))
                await using (var reader = await select.ExecuteReaderAsync(ct).ConfigureAwait(false))
                {
                    while (await reader.ReadAsync(ct).ConfigureAwait(false))
                    {
                        found.Add(ReadRegistration(reader));
                    }
                }

                byKey[RouteKey(item.Route)] = found;
            }
        }

        if (hashes.Count > 0)
        {
            await using var select = Pg.Command(c, SelectRegistrationsByCallbackKeysSql).Add("hashes", hashes.Values.ToArray());
            await using var reader = await select.ExecuteReaderAsync(ct).ConfigureAwait(false);
            while (await reader.ReadAsync(ct).ConfigureAwait(false))
            {
                var key = "cb:" + Convert.ToHexString(reader.GetFieldValue<byte[]>(reader.FieldCount - 1)); // after RegistrationColumns
                if (!byKey.TryGetValue(key, out var list))
                {
                    byKey[key] = list = new List<Registration>(1);
                }

                list.Add(ReadRegistration(reader));
            }
        }

        var results = new (IngestVerdict Verdict, int Enqueued)[batch.Count];
        var changed = new Dictionary<string, Registration>(StringComparer.Ordinal);
        var notifications = new List<(NewNotification Notification, string Json)>();
        for (var i = 0; i < batch.Count; i++)
        {
            var verdict = IngestVerdict.Unsubscribe;
            var enqueued = 0;
            if (byKey.TryGetValue(RouteKey(batch[i].Route), out var found))
            {
                foreach (var registration in found)
                {
                    var decision = planner.Plan(registration, batch[i]);
                    if (decision.RegistrationChanged)
                    {
                        changed[registration.Id] = registration;
                    }

                    if (decision.Verdict == IngestVerdict.Accepted)
                    {
                        verdict = IngestVerdict.Accepted;
                    }

                    if (decision.Notification is { } notification)
                    {
                        notifications.Add((notification, StorageJson.Serialize(notification.Content)));
                        enqueued++;
                    }
                }
            }

            results[i] = (verdict, enqueued);
        }

        var saves = new List<NpgsqlBatchCommand>(changed.Count);
        foreach (var registration in changed.Values)
        {
            saves.Add(Pg.BatchCommand(SaveIngestStateSql)
                .Add("subscription_id", registration.SubscriptionId)
                .Add("previous_subscription_id", registration.PreviousSubscriptionId)
                .Add("inbox_folder_id", registration.InboxFolderId)
                .Add("unread_count", registration.UnreadCount)
                .Add("last_event_at", registration.LastEventAt)
                .Add("updated_at", registration.UpdatedAt)
                .Add("id", registration.Id));
        }

        if (notifications.Count > 0)
        {
            await EnqueueAsync(c, notifications, Pg.Ms(now), ct, saves).ConfigureAwait(false);
        }
        else if (saves.Count > 0)
        {
            await using var save = new NpgsqlBatch(c);
            saves.ForEach(save.BatchCommands.Add);
            await save.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
        }

        return results;
    }

    /// <summary>A route as a dictionary key: the callback key's hash, or tenant, connector and mailbox hash.</summary>
    private static string RouteKey(IngestRoute route)
        => route.Kind == RouteKind.CallbackKey
            ? "cb:" + Convert.ToHexString(route.Key)
            : "mb:" + route.TenantId + "\n" + route.Connector + "\n" + Convert.ToHexString(route.Key);
}
