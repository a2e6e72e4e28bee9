using Herald.Core.Notifications;
using Herald.Core.Planning;
using Herald.Core.Ports;
using Herald.Core.Registrations;
using Herald.Core.Security;
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

    // Rows without a coalescing key (direct and bulk sends) cannot conflict: a plain insert, its id from
    // sqlite3_last_insert_rowid, no RETURNING reader per row.
    private const string InsertDirectSql = """
        INSERT INTO notifications (message_id, tenant_id, registration_id, request_id, lane, platform, token, topic,
            environment, content, collapse_id, expires_at, event_at, due_at, created_at, state, attempts, last_status)
        VALUES (@message_id, @tenant_id, @registration_id, @request_id, @lane, @platform, @token, @topic,
            @environment, @content, @collapse_id, @expires_at, @event_at, @due_at, @due_at, 0, 0, 0)
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

    // The distinct tenants with pending rows in lane @lane, one index seek each (a loose index scan of
    // ix_notifications_tenant_due), so the cost is the number of tenants, not the number of rows.
    private const string LaneTenantsCte = """
        WITH RECURSIVE lane_tenants (tid) AS (
            SELECT (SELECT MIN(tenant_id) FROM notifications WHERE lane = @lane AND state IN (0, 2))
            UNION ALL
            SELECT (SELECT MIN(n.tenant_id) FROM notifications AS n WHERE n.lane = @lane AND n.state IN (0, 2) AND n.tenant_id > t.tid)
            FROM lane_tenants AS t
            WHERE t.tid IS NOT NULL)
        """;

    private const string CountLaneTenantsSql = LaneTenantsCte + "\nSELECT COUNT(*) FROM lane_tenants WHERE tid IS NOT NULL";

    // One pass of a lane's claim. Each tenant offers its oldest @per_tenant due rows (an index range per
    // tenant, never the whole backlog); the tenants then take turns (turn n = each tenant's n-th row, in
    // due order), and the first @max rows are leased. A row waits while another row with its coalescing key
    // is being sent (one in flight per key: no reordered badges, no racing a retry). `lane = @lane` and
    // `state IN (0, 2)` are written as the partial index states them, so SQLite uses it.
    private const string ClaimLaneSql = LaneTenantsCte + """
        ,
        candidates (id, tenant_id, due_at) AS (
            SELECT c.id, c.tenant_id, c.due_at
            FROM lane_tenants AS t
            JOIN notifications AS c ON c.id IN (
                SELECT n.id FROM notifications AS n
                WHERE n.lane = @lane AND n.tenant_id = t.tid AND n.state IN (0, 2) AND n.due_at <= @now
                    AND (n.coalesce_key IS NULL OR NOT EXISTS (
                        SELECT 1 FROM notifications AS f WHERE f.coalesce_key = n.coalesce_key AND f.state = 1))
                ORDER BY n.due_at, n.id
                LIMIT @per_tenant)
            WHERE t.tid IS NOT NULL),
        turns (id, turn, due_at) AS (
            SELECT id, ROW_NUMBER() OVER (PARTITION BY tenant_id ORDER BY due_at, id), due_at FROM candidates)
        UPDATE notifications
        SET state = 1, lease_owner = @owner, lease_until = @lease_until, attempts = attempts + 1
        WHERE id IN (SELECT id FROM turns ORDER BY turn, due_at, id LIMIT @max)
        RETURNING id, message_id, tenant_id, registration_id, lane, platform, token, topic, environment,
            content, collapse_id, expires_at, event_at, attempts
        """;

    // Fenced: only the lease owner's completion of a row still being sent counts.
    private const string CompleteSql = """
        UPDATE notifications
        SET state = @state, lease_owner = NULL, lease_until = NULL, last_status = @status, last_reason = @reason,
            due_at = COALESCE(@due_at, due_at), sent_at = COALESCE(@sent_at, sent_at), completed_at = @completed_at,
            token = CASE WHEN @state IN (3, 4, 5) THEN '' ELSE token END
        WHERE id = @id AND lease_owner = @owner AND state = 1
        RETURNING registration_id, attempts
        """;

    private const string InsertAttemptSql = """
        INSERT INTO notification_attempts (notification_id, attempt, at, outcome, status, reason)
        VALUES (@notification_id, @attempt, @at, @outcome, @status, @reason)
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

    // Never back in time: outcomes of one batch may be recorded out of order.
    private const string RecordPushSql = """
        UPDATE registrations SET last_push_at = @at, last_push_result = @result
        WHERE id = @id AND (last_push_at IS NULL OR last_push_at <= @at)
        """;

    // Only an active registration whose token is still the one that failed: a token rotated since the
    // claim must not be deactivated by the old token's failure.
    private const string DeactivateSql = """
        UPDATE registrations SET status = 1, inactive_reason = @reason, inactive_at = @at, updated_at = @at
        WHERE id = @id AND status = 0 AND token = @token
        """;

    // `state IN (0, 2, 6)` is ix_notifications_registration's condition, written out so SQLite uses it.
    private const string FailPendingOfRegistrationSql = """
        UPDATE notifications SET state = 4, last_reason = @reason, completed_at = @at, token = ''
        WHERE registration_id = @registration_id AND state IN (0, 2, 6) AND state IN (0, 2)
        """;

    // Not ordered by id here: that would walk the whole table in rowid order instead of ix_notifications_lease.
    private const string SelectExpiredLeasesSql =
        "SELECT id, coalesce_key, content, event_at FROM notifications WHERE state = 1 AND lease_until < @now";

    private const string ReleaseSql =
        "UPDATE notifications SET state = 2, due_at = @due_at, lease_owner = NULL, lease_until = NULL WHERE id = @id AND state = 1";

    private const string SupersedeSql = """
        UPDATE notifications SET state = 4, last_reason = @reason, completed_at = @at, lease_owner = NULL, lease_until = NULL, token = ''
        WHERE id = @id AND state = 1
        """;

    // The earliest due time of a lane: each tenant's first pending row, one seek per tenant.
    private const string NextDueOfLaneSql = LaneTenantsCte + """

        SELECT MIN((SELECT MIN(n.due_at) FROM notifications AS n WHERE n.lane = @lane AND n.tenant_id = t.tid AND n.state IN (0, 2)))
        FROM lane_tenants AS t
        WHERE t.tid IS NOT NULL
        """;

    private const string RecordColumns =
        "id, tenant_id, registration_id, lane, state, attempts, created_at, due_at, last_status, last_reason, sent_at, platform, token";

    // Their attempt rows go with them (ON DELETE CASCADE).
    private const string PurgeSql = """
        DELETE FROM notifications WHERE id IN (
            SELECT id FROM notifications WHERE state IN (3, 4, 5, 6) AND completed_at < @before LIMIT @max)
        """;

    /// <summary>Every lane, in claiming order (a test fails when Core adds one).</summary>
    internal static readonly Lane[] Lanes = [Lane.Priority, Lane.Standard];

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
                var nowMs = Db.Ms(_time.GetUtcNow());
                var ids = new long[notifications.Count];
                NotificationContent? lastContent = null;
                string? lastJson = null;
                for (var i = 0; i < ids.Length; i++)
                {
                    var notification = notifications[i] ?? throw new ArgumentException("A notification is null.", nameof(notifications));

                    // A bulk request shares one content object among its targets: serialise it once.
                    if (!ReferenceEquals(notification.Content, lastContent))
                    {
                        lastContent = notification.Content ?? throw new ArgumentException("A notification has no content.", nameof(notifications));
                        lastJson = StorageJson.Serialize(lastContent);
                    }

                    ids[i] = Enqueue(s, notification, lastJson!, nowMs);
                }

                return ids;
            },
            cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<ClaimedNotification>> ClaimAsync(string owner, ClaimLimits limits, DateTimeOffset now, TimeSpan lease, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrEmpty(owner);
        ArgumentOutOfRangeException.ThrowIfNegative(limits.Priority, nameof(limits));
        ArgumentOutOfRangeException.ThrowIfNegative(limits.Standard, nameof(limits));
        if (limits.Priority == 0 && limits.Standard == 0)
        {
            return [];
        }

        return await WriteAsync(s => Claim(s, owner, limits, now, lease), cancellationToken, relaxed: true).ConfigureAwait(false);
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

        return await WriteAsync(s => Complete(s, owner, outcomes), cancellationToken, relaxed: true).ConfigureAwait(false);
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
            static s =>
            {
                long? next = null;
                foreach (var lane in Lanes)
                {
                    if (s.Statement(NextDueOfLaneSql, "@lane").Set(0, (long)lane).Scalar() is long ms && (next is null || ms < next))
                    {
                        next = ms;
                    }
                }

                return next is { } due ? Db.Time(due) : (DateTimeOffset?)null;
            },
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
    private static long Enqueue(SqliteSession s, NewNotification notification, string contentJson, long nowMs)
    {
        if (notification.CoalesceKey is null)
        {
            return InsertDirect(s, notification, contentJson, nowMs);
        }

        // Insert first: the unique index finds a pending row with the key as part of the insert, so the
        // common case (nothing waiting for the key) is one statement.
        var insert = s.Statement(
            InsertNotificationSql,
            "@message_id", "@tenant_id", "@registration_id", "@request_id", "@lane", "@platform", "@token", "@topic",
            "@environment", "@content", "@collapse_id", "@expires_at", "@event_at", "@due_at", "@coalesce_key", "@created_at");
        BindNotification(s, insert, notification, contentJson, notification.EventAt, nowMs);
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
        BindNotification(s, replace, notification, StorageJson.Serialize(merged), Earlier(pendingEventAt, notification.EventAt), nowMs);
        replace.Set(14, pendingId).Execute();
        return pendingId;
    }

    /// <summary>Queues a notification without a coalescing key: nothing to replace, one plain insert.</summary>
    private static long InsertDirect(SqliteSession s, NewNotification notification, string contentJson, long nowMs)
    {
        var insert = s.Statement(
            InsertDirectSql,
            "@message_id", "@tenant_id", "@registration_id", "@request_id", "@lane", "@platform", "@token", "@topic",
            "@environment", "@content", "@collapse_id", "@expires_at", "@event_at", "@due_at");
        BindNotification(s, insert, notification, contentJson, notification.EventAt, nowMs);
        insert.Execute();
        return s.LastInsertRowId;
    }

    private static void BindNotification(SqliteSession session, SqliteStatement statement, NewNotification n, string contentJson, DateTimeOffset? eventAt, long dueMs)
    {
        // A new UUID v4 per queued content; retries of the same row keep it (the APNs apns-id).
        statement
            .Set(0, session.NewUuidBytes())
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

    private static List<ClaimedNotification> Claim(SqliteSession s, string owner, ClaimLimits limits, DateTimeOffset now, TimeSpan lease)
    {
        var claimed = new List<ClaimedNotification>(Math.Min(limits.Total, 1024));
        var perTenant = new Dictionary<string, int>(StringComparer.Ordinal);
        if (limits.Priority > 0)
        {
            ClaimLane(s, Lane.Priority, limits.Priority, owner, now, lease, claimed, perTenant);
        }

        if (limits.Standard > 0)
        {
            ClaimLane(s, Lane.Standard, limits.Standard, owner, now, lease, claimed, perTenant);
        }

        // RETURNING yields rows in no particular order; hand them out priority lane first, oldest first.
        claimed.Sort(static (a, b) => a.Lane != b.Lane ? a.Lane.CompareTo(b.Lane) : a.Id.CompareTo(b.Id));
        return claimed;
    }

    /// <summary>
    /// Leases up to <paramref name="max"/> due rows of one lane, tenants taking turns. The first pass offers
    /// each tenant an equal share (so the candidates are about <paramref name="max"/> rows, not tenants ×
    /// max); when tenants with fewer due rows leave room, the tenants that used their whole share take the
    /// next turns in another pass. The result is the same as ranking every due row at once.
    /// </summary>
    private static void ClaimLane(
        SqliteSession s, Lane lane, int max, string owner, DateTimeOffset now, TimeSpan lease, List<ClaimedNotification> claimed, Dictionary<string, int> perTenant)
    {
        var tenants = s.Statement(CountLaneTenantsSql, "@lane").Set(0, (long)lane).Scalar() is long n ? n : 0;
        if (tenants == 0)
        {
            return;
        }

        var share = (int)Math.Min(max, (max + tenants - 1) / tenants);
        var left = max;
        while (true)
        {
            perTenant.Clear();
            var taken = ClaimPass(s, lane, share, left, owner, now, lease, claimed, perTenant);
            left -= taken;
            if (left <= 0 || taken == 0)
            {
                return;
            }

            var full = 0;
            foreach (var count in perTenant.Values)
            {
                if (count >= share)
                {
                    full++;
                }
            }

            if (full == 0)
            {
                return; // every tenant gave all its due rows
            }

            share = (left + full - 1) / full;
        }
    }

    private static int ClaimPass(
        SqliteSession s, Lane lane, int share, int max, string owner, DateTimeOffset now, TimeSpan lease, List<ClaimedNotification> claimed, Dictionary<string, int> perTenant)
    {
        var taken = 0;
        using var reader = s.Statement(ClaimLaneSql, "@lane", "@now", "@per_tenant", "@owner", "@lease_until", "@max")
            .Set(0, (long)lane)
            .Set(1, now)
            .Set(2, share)
            .Set(3, owner)
            .Set(4, now + lease)
            .Set(5, max)
            .Query();
        while (reader.Read())
        {
            var tenantId = reader.GetString(2);
            claimed.Add(new ClaimedNotification
            {
                Id = reader.GetInt64(0),
                MessageId = reader.Uuid(1),
                TenantId = tenantId,
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
            perTenant[tenantId] = perTenant.TryGetValue(tenantId, out var count) ? count + 1 : 1;
            taken++;
        }

        return taken;
    }

    /// <summary>
    /// Records one outcome the long way: retries (which may fold into a newer pending row with their key)
    /// and dead tokens (which deactivate the registration). Returns whether the row was still leased to
    /// <paramref name="owner"/>.
    /// </summary>
    private bool CompleteOne(SqliteSession s, string owner, DeliveryOutcome outcome)
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
        int attempts;
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
                return false; // not (or no longer) leased to this owner: fenced off
            }

            registrationId = reader.StringOrNull(0);
            attempts = reader.GetInt32(1);
        }

        // The attempt as the pipeline saw it (a retry folded into a newer row is still a retry here).
        s.Statement(InsertAttemptSql, "@notification_id", "@attempt", "@at", "@outcome", "@status", "@reason")
            .Set(0, outcome.NotificationId)
            .Set(1, outcome.Attempt > 0 ? outcome.Attempt : attempts)
            .Set(2, at)
            .Set(3, (long)outcome.State)
            .Set(4, outcome.StatusCode)
            .Set(5, outcome.Reason)
            .Execute();
        if (registrationId is null)
        {
            return true;
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

        return true;
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

        expired.Sort(static (a, b) => a.Id.CompareTo(b.Id));

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
        SentAt: reader.TimeOrNull(10))
    {
        Platform = (Platform)reader.GetInt32(11),
        TokenFingerprint = reader.GetString(12) is { Length: > 0 } token ? Redact.Token(token) : null,
    };

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
