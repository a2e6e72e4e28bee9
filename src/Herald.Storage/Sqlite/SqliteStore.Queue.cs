using Herald.Core.Notifications;
using Herald.Core.Planning;
using Herald.Core.Ports;
using Herald.Core.Registrations;
using Microsoft.Data.Sqlite;

namespace Herald.Storage.Sqlite;

public sealed partial class SqliteStore
{
    private const string SelectPendingByKeySql =
        "SELECT id, content, event_at FROM notifications WHERE coalesce_key = @key AND state IN (0, 2)";

    // Parameters 0-13 are shared by the insert and the replacement (see BindNotification). A conflict on
    // the pending-coalescing index inserts nothing and returns no id: the caller then replaces that row.
    private const string InsertNotificationSql = """
        INSERT INTO notifications (message_id, tenant_id, registration_id, request_id, lane, platform, token, topic,
            environment, content, collapse_id, expires_at, event_at, due_at, coalesce_key, created_at, state, attempts, last_status)
        VALUES (@message_id, @tenant_id, @registration_id, @request_id, @lane, @platform, @token, @topic,
            @environment, @content, @collapse_id, @expires_at, @event_at, @due_at, @coalesce_key, @created_at, 0, 0, 0)
        ON CONFLICT (coalesce_key) WHERE coalesce_key IS NOT NULL AND state IN (0, 2) DO NOTHING
        RETURNING id
        """;

    // The replacement is due now, except that a retry backoff of the same token is kept (a 429 with
    // Retry-After is the provider asking this device's pushes to wait; new mail must not jump it). The
    // CASE expressions read the row as it was before this update.
    private const string ReplacePendingSql = """
        UPDATE notifications
        SET message_id = @message_id, tenant_id = @tenant_id, registration_id = @registration_id, request_id = @request_id,
            lane = @lane, platform = @platform, token = @token, topic = @topic, environment = @environment, content = @content,
            collapse_id = @collapse_id, expires_at = @expires_at, event_at = @event_at,
            due_at = CASE WHEN state = 2 AND token = @token AND due_at > @due_at THEN due_at ELSE @due_at END,
            state = CASE WHEN state = 2 AND token = @token AND due_at > @due_at THEN 2 ELSE 0 END,
            attempts = 0, lease_owner = NULL, lease_until = NULL, last_status = 0, last_reason = NULL
        WHERE id = @id
        """;

    // One statement: pick the due rows (priority lane first, then by due time) and lease them.
    // `lane IN (0, 1)` lets SQLite walk ix_notifications_due lane by lane in order instead of scanning it;
    // it lists every Lane (a test fails when Core adds one). A row waits while another row with its
    // coalescing key is being sent (one in flight per key: no reordered badges, no racing a retry).
    private const string ClaimSql = """
        UPDATE notifications
        SET state = 1, lease_owner = @owner, lease_until = @lease_until, attempts = attempts + 1
        WHERE id IN (
            SELECT n.id FROM notifications AS n
            WHERE n.lane IN (0, 1) AND n.state IN (0, 2) AND n.due_at <= @now
                AND (n.coalesce_key IS NULL OR NOT EXISTS (
                    SELECT 1 FROM notifications AS f WHERE f.coalesce_key = n.coalesce_key AND f.state = 1))
            ORDER BY n.lane, n.due_at, n.id
            LIMIT @max)
        RETURNING id, message_id, tenant_id, registration_id, lane, platform, token, topic, environment,
            content, collapse_id, expires_at, event_at, attempts
        """;

    // Fenced: only the lease owner's completion of a row still being sent counts.
    private const string CompleteSql = """
        UPDATE notifications
        SET state = @state, lease_owner = NULL, lease_until = NULL, last_status = @status, last_reason = @reason,
            due_at = COALESCE(@due_at, due_at), sent_at = COALESCE(@sent_at, sent_at), completed_at = @completed_at,
            token = CASE WHEN @completed_at IS NULL THEN token ELSE '' END
        WHERE id = @id AND lease_owner = @owner AND state = 1
        RETURNING registration_id
        """;

    private const string SelectLeasedSql =
        "SELECT coalesce_key, content, event_at, token FROM notifications WHERE id = @id AND lease_owner = @owner AND state = 1";

    private const string SelectLeasedTokenSql =
        "SELECT token FROM notifications WHERE id = @id AND lease_owner = @owner AND state = 1";

    // A retry folded into the pending row passes its retry time: for the same token the pending row then
    // waits for it too (the provider's Retry-After is about the device, not about one row).
    private const string FoldIntoPendingSql = """
        UPDATE notifications
        SET content = @content, event_at = @event_at,
            due_at = CASE WHEN token = @token AND due_at < @retry_at THEN @retry_at ELSE due_at END,
            state = CASE WHEN token = @token AND due_at < @retry_at THEN 2 ELSE state END
        WHERE id = @id
        """;

    private const string RecordPushSql = "UPDATE registrations SET last_push_at = @at, last_push_result = @result WHERE id = @id";

    // Only an active registration whose token is still the one that failed: a token rotated since the
    // claim must not be deactivated by the old token's failure.
    private const string DeactivateSql = """
        UPDATE registrations SET status = 1, inactive_reason = @reason, inactive_at = @at, updated_at = @at
        WHERE id = @id AND status = 0 AND token = @token
        """;

    private const string FailPendingOfRegistrationSql = """
        UPDATE notifications SET state = 4, last_reason = @reason, completed_at = @at, token = ''
        WHERE registration_id = @registration_id AND state IN (0, 2)
        """;

    private const string SelectExpiredLeasesSql =
        "SELECT id, coalesce_key, content, event_at FROM notifications WHERE state = 1 AND lease_until < @now ORDER BY id";

    private const string ReleaseSql =
        "UPDATE notifications SET state = 2, due_at = @due_at, lease_owner = NULL, lease_until = NULL WHERE id = @id AND state = 1";

    private const string SupersedeSql = """
        UPDATE notifications SET state = 4, last_reason = @reason, completed_at = @at, lease_owner = NULL, lease_until = NULL, token = ''
        WHERE id = @id AND state = 1
        """;

    private const string NextDueSql = """
        SELECT MIN(due) FROM (
            SELECT MIN(due_at) AS due FROM notifications WHERE lane = 0 AND state IN (0, 2)
            UNION ALL
            SELECT MIN(due_at) FROM notifications WHERE lane = 1 AND state IN (0, 2))
        """;

    private const string RecordColumns =
        "id, tenant_id, registration_id, lane, state, attempts, created_at, due_at, last_status, last_reason, sent_at";

    private const string PurgeSql = """
        DELETE FROM notifications WHERE id IN (
            SELECT id FROM notifications WHERE state IN (3, 4, 5, 6) AND completed_at < @before LIMIT @max)
        """;

    /// <summary>The <c>last_reason</c> of a row folded into a newer pending row with the same coalescing key.</summary>
    internal const string CoalescedReason = "Coalesced";

    /// <inheritdoc />
    public async Task<IReadOnlyList<long>> EnqueueAsync(IReadOnlyList<NewNotification> notifications, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(notifications);
        if (notifications.Count == 0)
        {
            return [];
        }

        return await WriteAsync(
            s =>
            {
                var now = _time.GetUtcNow();
                var ids = new long[notifications.Count];
                for (var i = 0; i < ids.Length; i++)
                {
                    ids[i] = Enqueue(s, notifications[i] ?? throw new ArgumentException("A notification is null.", nameof(notifications)), now);
                }

                return ids;
            },
            cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<ClaimedNotification>> ClaimAsync(string owner, int max, DateTimeOffset now, TimeSpan lease, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrEmpty(owner);
        if (max <= 0)
        {
            return [];
        }

        return await WriteAsync(s => Claim(s, owner, max, now, lease), cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public async Task<int> CompleteAsync(string owner, IReadOnlyList<DeliveryOutcome> outcomes, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrEmpty(owner);
        ArgumentNullException.ThrowIfNull(outcomes);
        if (outcomes.Count == 0)
        {
            return 0;
        }

        foreach (var outcome in outcomes)
        {
            ArgumentNullException.ThrowIfNull(outcome, nameof(outcomes));
            if (outcome.State is NotificationState.Queued or NotificationState.Sending || !Enum.IsDefined(outcome.State))
            {
                throw new ArgumentException($"Notification {outcome.NotificationId}: {outcome.State} is not an outcome of an attempt.", nameof(outcomes));
            }
        }

        return await WriteAsync(s => Complete(s, owner, outcomes), cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public async Task<int> ReleaseExpiredLeasesAsync(DateTimeOffset now, CancellationToken cancellationToken)
    {
        var (released, coalesced) = await WriteAsync(s => ReleaseExpired(s, now), cancellationToken).ConfigureAwait(false);
        if (released > 0)
        {
            Log.LeasesReleased(_logger, released, coalesced);
        }

        return released;
    }

    /// <inheritdoc />
    public Task<DateTimeOffset?> NextDueAsync(CancellationToken cancellationToken)
        => ReadAsync(
            static s => s.Statement(NextDueSql).Scalar() is long ms ? Db.Time(ms) : (DateTimeOffset?)null,
            cancellationToken);

    /// <inheritdoc />
    public Task<QueueSnapshot> SnapshotAsync(DateTimeOffset now, CancellationToken cancellationToken)
        => ReadAsync(
            static s =>
            {
                var counts = new Dictionary<(Lane Lane, NotificationState State), long>();
                using (var reader = s.Statement("SELECT lane, state, COUNT(*) FROM notifications GROUP BY lane, state").Query())
                {
                    while (reader.Read())
                    {
                        counts[((Lane)reader.GetInt32(0), (NotificationState)reader.GetInt32(1))] = reader.GetInt64(2);
                    }
                }

                // `state IN (0, 2)` repeats the partial index's condition so SQLite may use it.
                var oldest = s.Statement("SELECT MIN(created_at) FROM notifications WHERE state IN (0, 2) AND state = 0").Scalar();
                return new QueueSnapshot(counts, oldest is long ms ? Db.Time(ms) : null);
            },
            cancellationToken);

    /// <inheritdoc />
    public Task<NotificationRecord?> GetNotificationAsync(long id, CancellationToken cancellationToken)
        => ReadAsync(
            s =>
            {
                using var reader = s.Statement("SELECT " + RecordColumns + " FROM notifications WHERE id = @id", "@id").Set(0, id).Query();
                return reader.Read() ? ReadRecord(reader) : null;
            },
            cancellationToken);

    /// <inheritdoc />
    public Task<IReadOnlyList<NotificationRecord>> GetRequestNotificationsAsync(string tenantId, string requestId, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(tenantId);
        ArgumentNullException.ThrowIfNull(requestId);
        return ReadAsync<IReadOnlyList<NotificationRecord>>(
            s =>
            {
                var records = new List<NotificationRecord>();
                using var reader = s.Statement(
                        "SELECT " + RecordColumns + " FROM notifications WHERE request_id = @request_id AND tenant_id = @tenant_id ORDER BY id",
                        "@request_id",
                        "@tenant_id")
                    .Set(0, requestId)
                    .Set(1, tenantId)
                    .Query();
                while (reader.Read())
                {
                    records.Add(ReadRecord(reader));
                }

                return records;
            },
            cancellationToken);
    }

    /// <inheritdoc />
    public async Task<int> PurgeCompletedAsync(DateTimeOffset olderThan, int batchSize, CancellationToken cancellationToken)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(batchSize, 1);
        var total = 0;
        while (true)
        {
            // One short transaction per batch, releasing the write gate in between so ingest and the
            // dispatcher are never held up for the whole purge.
            var deleted = await WriteAsync(
                s => s.Statement(PurgeSql, "@before", "@max").Set(0, olderThan).Set(1, batchSize).Execute(),
                cancellationToken).ConfigureAwait(false);
            total += deleted;
            if (deleted < batchSize)
            {
                break;
            }
        }

        if (total > 0)
        {
            Log.Purged(_logger, total, olderThan);
        }

        return total;
    }

    /// <summary>
    /// Queues one notification, coalescing: a pending (queued or retrying) row with the same key is
    /// replaced in place: merged content, the new target, attempts reset, due now (or, for the same token,
    /// when its retry backoff ends), the older event time (latency counts from the first waiting event).
    /// A row being sent is never touched. Returns the row id.
    /// </summary>
    private static long Enqueue(SqliteSession s, NewNotification notification, DateTimeOffset now)
    {
        // Insert first: the unique index finds a pending row with the key as part of the insert, so the
        // common case (nothing waiting for the key) is one statement.
        var nowMs = Db.Ms(now);
        var insert = s.Statement(
            InsertNotificationSql,
            "@message_id", "@tenant_id", "@registration_id", "@request_id", "@lane", "@platform", "@token", "@topic",
            "@environment", "@content", "@collapse_id", "@expires_at", "@event_at", "@due_at", "@coalesce_key", "@created_at");
        BindNotification(insert, notification, StorageJson.Serialize(notification.Content), notification.EventAt, nowMs);
        if (insert.Set(14, notification.CoalesceKey).Set(15, nowMs).Scalar() is long id)
        {
            return id;
        }

        var key = notification.CoalesceKey ?? throw new InvalidOperationException("A notification without a coalescing key was not inserted.");
        long pendingId;
        string pendingContent;
        DateTimeOffset? pendingEventAt;
        using (var reader = s.Statement(SelectPendingByKeySql, "@key").Set(0, key).Query())
        {
            if (!reader.Read())
            {
                throw new InvalidOperationException($"Coalescing key '{key}' conflicted, but no pending row has it.");
            }

            pendingId = reader.GetInt64(0);
            pendingContent = reader.GetString(1);
            pendingEventAt = reader.TimeOrNull(2);
        }

        var merged = Coalescing.Merge(StorageJson.DeserializeContent(pendingContent), notification.Content);
        var replace = s.Statement(
            ReplacePendingSql,
            "@message_id", "@tenant_id", "@registration_id", "@request_id", "@lane", "@platform", "@token", "@topic",
            "@environment", "@content", "@collapse_id", "@expires_at", "@event_at", "@due_at", "@id");
        BindNotification(replace, notification, StorageJson.Serialize(merged), Earlier(pendingEventAt, notification.EventAt), nowMs);
        replace.Set(14, pendingId).Execute();
        return pendingId;
    }

    private static void BindNotification(SqliteStatement statement, NewNotification n, string contentJson, DateTimeOffset? eventAt, long dueMs)
    {
        // A new UUID v4 per queued content; retries of the same row keep it (the APNs apns-id).
        statement
            .Set(0, Db.UuidBytes(Guid.NewGuid()))
            .Set(1, n.TenantId)
            .Set(2, n.RegistrationId)
            .Set(3, n.RequestId)
            .Set(4, (long)n.Lane)
            .Set(5, (long)n.Platform)
            .Set(6, n.Token)
            .Set(7, n.Topic)
            .Set(8, (long)n.Environment)
            .Set(9, contentJson)
            .Set(10, n.CollapseId)
            .Set(11, n.ExpiresAt)
            .Set(12, eventAt)
            .Set(13, dueMs);
    }

    private static DateTimeOffset? Earlier(DateTimeOffset? a, DateTimeOffset? b)
        => a is null ? b : b is null ? a : (a.Value <= b.Value ? a : b);

    private static List<ClaimedNotification> Claim(SqliteSession s, string owner, int max, DateTimeOffset now, TimeSpan lease)
    {
        var claimed = new List<ClaimedNotification>(Math.Min(max, 1024));
        using (var reader = s.Statement(ClaimSql, "@owner", "@lease_until", "@now", "@max")
                   .Set(0, owner)
                   .Set(1, now + lease)
                   .Set(2, now)
                   .Set(3, max)
                   .Query())
        {
            while (reader.Read())
            {
                claimed.Add(new ClaimedNotification
                {
                    Id = reader.GetInt64(0),
                    MessageId = reader.Uuid(1),
                    TenantId = reader.GetString(2),
                    RegistrationId = reader.StringOrNull(3),
                    Lane = (Lane)reader.GetInt32(4),
                    Platform = (Platform)reader.GetInt32(5),
                    Token = reader.GetString(6),
                    Topic = reader.GetString(7),
                    Environment = (PushEnvironment)reader.GetInt32(8),
                    Content = StorageJson.DeserializeContent(reader.GetString(9)),
                    CollapseId = reader.StringOrNull(10),
                    ExpiresAt = reader.TimeOrNull(11),
                    EventAt = reader.TimeOrNull(12),
                    Attempt = reader.GetInt32(13),
                });
            }
        }

        // RETURNING yields rows in no particular order; hand them out priority lane first, oldest first.
        claimed.Sort(static (a, b) => a.Lane != b.Lane ? a.Lane.CompareTo(b.Lane) : a.Id.CompareTo(b.Id));
        return claimed;
    }

    private int Complete(SqliteSession s, string owner, IReadOnlyList<DeliveryOutcome> outcomes)
    {
        var applied = 0;
        foreach (var outcome in outcomes)
        {
            var state = outcome.State;
            var reason = outcome.Reason;
            if (state == NotificationState.Retrying && FoldLeasedIntoPending(s, outcome.NotificationId, owner, outcome.RetryAt ?? outcome.CompletedAt))
            {
                // A newer notification with the same key is already waiting and now carries this one's content.
                state = NotificationState.Failed;
                reason = CoalescedReason;
            }

            // The token that failed, read before the row forgets it (rare: dead tokens only).
            var failedToken = outcome.DeactivateRegistration
                ? s.Statement(SelectLeasedTokenSql, "@id", "@owner").Set(0, outcome.NotificationId).Set(1, owner).Scalar() as string
                : null;
            var at = outcome.CompletedAt;
            var terminal = state is not NotificationState.Retrying;
            string? registrationId;
            using (var reader = s.Statement(CompleteSql, "@state", "@status", "@reason", "@due_at", "@sent_at", "@completed_at", "@id", "@owner")
                       .Set(0, (long)state)
                       .Set(1, outcome.StatusCode)
                       .Set(2, reason)
                       .Set(3, state == NotificationState.Retrying ? outcome.RetryAt ?? at : null)
                       .Set(4, state == NotificationState.Sent ? at : null)
                       .Set(5, terminal ? at : null)
                       .Set(6, outcome.NotificationId)
                       .Set(7, owner)
                       .Query())
            {
                if (!reader.Read())
                {
                    continue; // not (or no longer) leased to this owner: fenced off
                }

                registrationId = reader.StringOrNull(0);
            }

            applied++;
            if (registrationId is null)
            {
                continue;
            }

            s.Statement(RecordPushSql, "@at", "@result", "@id")
                .Set(0, at)
                .Set(1, PushResultText(outcome))
                .Set(2, registrationId)
                .Execute();

            if (failedToken is not null)
            {
                var inactiveReason = string.IsNullOrEmpty(outcome.Reason) ? "TokenInvalid" : outcome.Reason;
                var deactivated = s.Statement(DeactivateSql, "@reason", "@at", "@id", "@token")
                    .Set(0, inactiveReason)
                    .Set(1, at)
                    .Set(2, registrationId)
                    .Set(3, failedToken)
                    .Execute();
                if (deactivated > 0)
                {
                    FailPendingOfRegistration(s, registrationId, "RegistrationInactive", at);
                    Log.Deactivated(_logger, registrationId, inactiveReason);
                }
            }
        }

        return applied;
    }

    /// <summary>
    /// When a leased row with a coalescing key goes back to waiting while a newer row with the key is
    /// pending, the pending row absorbs it (so a pending alert is never lost to a later badge) and the
    /// leased row ends. Returns whether it was folded.
    /// </summary>
    private static bool FoldLeasedIntoPending(SqliteSession s, long id, string owner, DateTimeOffset retryAt)
    {
        string? key;
        string content;
        DateTimeOffset? eventAt;
        string token;
        using (var reader = s.Statement(SelectLeasedSql, "@id", "@owner").Set(0, id).Set(1, owner).Query())
        {
            if (!reader.Read() || reader.IsDBNull(0))
            {
                return false;
            }

            key = reader.GetString(0);
            content = reader.GetString(1);
            eventAt = reader.TimeOrNull(2);
            token = reader.GetString(3);
        }

        return FoldIntoPending(s, key, content, eventAt, token, retryAt);
    }

    private static bool FoldIntoPending(SqliteSession s, string key, string olderContent, DateTimeOffset? olderEventAt, string? token, DateTimeOffset? retryAt)
    {
        long pendingId;
        string pendingContent;
        DateTimeOffset? pendingEventAt;
        using (var reader = s.Statement(SelectPendingByKeySql, "@key").Set(0, key).Query())
        {
            if (!reader.Read())
            {
                return false;
            }

            pendingId = reader.GetInt64(0);
            pendingContent = reader.GetString(1);
            pendingEventAt = reader.TimeOrNull(2);
        }

        // The pending row is the newer: everything queued for the key since this row was claimed went into it.
        var merged = Coalescing.Merge(StorageJson.DeserializeContent(olderContent), StorageJson.DeserializeContent(pendingContent));
        s.Statement(FoldIntoPendingSql, "@content", "@event_at", "@token", "@retry_at", "@id")
            .Set(0, StorageJson.Serialize(merged))
            .Set(1, Earlier(olderEventAt, pendingEventAt))
            .Set(2, token)
            .Set(3, retryAt)
            .Set(4, pendingId)
            .Execute();
        return true;
    }

    private static void FailPendingOfRegistration(SqliteSession s, string registrationId, string reason, DateTimeOffset at)
        => s.Statement(FailPendingOfRegistrationSql, "@reason", "@at", "@registration_id")
            .Set(0, reason)
            .Set(1, at)
            .Set(2, registrationId)
            .Execute();

    private (int Released, int Coalesced) ReleaseExpired(SqliteSession s, DateTimeOffset now)
    {
        var expired = new List<(long Id, string? Key, string Content, DateTimeOffset? EventAt)>();
        using (var reader = s.Statement(SelectExpiredLeasesSql, "@now").Set(0, now).Query())
        {
            while (reader.Read())
            {
                expired.Add((reader.GetInt64(0), reader.StringOrNull(1), reader.GetString(2), reader.TimeOrNull(3)));
            }
        }

        if (expired.Count == 0)
        {
            return (0, 0);
        }

        // "Due now" is the clock's now: at start-up the host passes DateTimeOffset.MaxValue to release every lease.
        var clock = _time.GetUtcNow();
        var due = now < clock ? now : clock;
        var coalesced = 0;
        foreach (var (id, key, content, eventAt) in expired)
        {
            if (key is not null && FoldIntoPending(s, key, content, eventAt, token: null, retryAt: null))
            {
                s.Statement(SupersedeSql, "@reason", "@at", "@id").Set(0, CoalescedReason).Set(1, clock).Set(2, id).Execute();
                coalesced++;
                continue;
            }

            s.Statement(ReleaseSql, "@due_at", "@id").Set(0, due).Set(1, id).Execute();
        }

        return (expired.Count, coalesced);
    }

    private static NotificationRecord ReadRecord(SqliteDataReader reader) => new(
        Id: reader.GetInt64(0),
        TenantId: reader.GetString(1),
        RegistrationId: reader.StringOrNull(2),
        Lane: (Lane)reader.GetInt32(3),
        State: (NotificationState)reader.GetInt32(4),
        Attempts: reader.GetInt32(5),
        CreatedAt: reader.Time(6),
        DueAt: reader.Time(7),
        LastStatus: reader.GetInt32(8),
        LastReason: reader.StringOrNull(9),
        SentAt: reader.TimeOrNull(10));

    /// <summary>The registration's <c>last_push_result</c>: the state, then the provider's status and reason when given.</summary>
    private static string PushResultText(DeliveryOutcome outcome)
    {
        var state = outcome.State switch
        {
            NotificationState.Sent => "sent",
            NotificationState.Retrying => "retrying",
            NotificationState.Failed => "failed",
            NotificationState.Expired => "expired",
            NotificationState.Dead => "dead",
            _ => "unknown",
        };
        var status = outcome.StatusCode > 0 ? " " + outcome.StatusCode.ToString(System.Globalization.CultureInfo.InvariantCulture) : string.Empty;
        var reason = string.IsNullOrEmpty(outcome.Reason) ? string.Empty : " " + outcome.Reason;
        return state + status + reason;
    }
}
