using Herald.Core.Notifications;
using Herald.Core.Planning;
using Herald.Core.Ports;
using Herald.Core.Registrations;
using Herald.Core.Security;
using Npgsql;

namespace Herald.Storage.Postgres;

public sealed partial class PostgresStore
{
    // Locked: the pending row stays pending (no node can claim it, SKIP LOCKED passes it over) until this
    // transaction has replaced it.
    private const string SelectPendingByKeysSql =
        "SELECT id, coalesce_key, content, event_at FROM notifications WHERE coalesce_key = ANY(@keys) AND state IN (0, 2) FOR UPDATE";

    // A conflict on the pending-coalescing index inserts nothing and returns no row: the caller then replaces
    // the pending row. A new UUID v4 per queued content (retries of the row keep it: the APNs apns-id).
    private const string InsertNotificationSql = """
        INSERT INTO notifications (message_id, tenant_id, registration_id, request_id, lane, platform, token, topic,
            environment, content, collapse_id, expires_at, event_at, due_at, coalesce_key, created_at, state, attempts, last_status)
        VALUES (gen_random_uuid(), @tenant_id, @registration_id, @request_id, @lane, @platform, @token, @topic,
            @environment, @content, @collapse_id, @expires_at, @event_at, @due_at, @coalesce_key, @due_at, 0, 0, 0)
        ON CONFLICT (coalesce_key) WHERE coalesce_key IS NOT NULL AND state IN (0, 2) DO NOTHING
        RETURNING id
        """;

    // Rows without a coalescing key (direct and bulk sends) cannot conflict.
    private const string InsertDirectSql = """
        INSERT INTO notifications (message_id, tenant_id, registration_id, request_id, lane, platform, token, topic,
            environment, content, collapse_id, expires_at, event_at, due_at, created_at, state, attempts, last_status)
        VALUES (gen_random_uuid(), @tenant_id, @registration_id, @request_id, @lane, @platform, @token, @topic,
            @environment, @content, @collapse_id, @expires_at, @event_at, @due_at, @due_at, 0, 0, 0)
        RETURNING id
        """;

    // As SQLite's: due now, except that a retry backoff of the same token is kept. The CASE expressions read
    // the row as it was before this update.
    private const string ReplacePendingSql = """
        UPDATE notifications
        SET message_id = gen_random_uuid(), tenant_id = @tenant_id, registration_id = @registration_id, request_id = @request_id,
            lane = @lane, platform = @platform, token = @token, topic = @topic, environment = @environment, content = @content,
            collapse_id = @collapse_id, expires_at = @expires_at, event_at = @event_at,
            due_at = CASE WHEN state = 2 AND token = @token AND due_at > @due_at THEN due_at ELSE @due_at END,
            state = CASE WHEN state = 2 AND token = @token AND due_at > @due_at THEN 2 ELSE 0 END,
            attempts = 0, lease_owner = NULL, lease_until = NULL, last_status = 0, last_reason = NULL
        WHERE id = @id
        """;

    private const string NotifySql = "SELECT pg_notify('" + QueueChannel + "', '')";

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

    // One pass of a lane's claim, as SQLite's: each tenant offers its oldest @per_tenant due rows, the tenants
    // take turns, and the first @max rows are leased; a row waits while another row with its coalescing key is
    // being sent. For a farm, each tenant's rows are locked with SKIP LOCKED: rows another node is claiming
    // right now are passed over (never claimed twice, never waited for). Candidates locked but not taken stay
    // locked only until this short transaction ends.
    private const string ClaimLaneSql = LaneTenantsCte + """
        ,
        candidates (id, tenant_id, due_at) AS (
            SELECT c.id, c.tenant_id, c.due_at
            FROM lane_tenants AS t
            CROSS JOIN LATERAL (
                SELECT n.id, n.tenant_id, n.due_at FROM notifications AS n
                WHERE n.lane = @lane AND n.tenant_id = t.tid AND n.state IN (0, 2) AND n.due_at <= @now
                    AND (n.coalesce_key IS NULL OR NOT EXISTS (
                        SELECT 1 FROM notifications AS f WHERE f.coalesce_key = n.coalesce_key AND f.state = 1))
                ORDER BY n.due_at, n.id
                LIMIT @per_tenant
                FOR UPDATE OF n SKIP LOCKED) AS c
            WHERE t.tid IS NOT NULL),
        turns (id, turn, due_at) AS (
            SELECT id, ROW_NUMBER() OVER (PARTITION BY tenant_id ORDER BY due_at, id), due_at FROM candidates)
        UPDATE notifications AS u
        SET state = 1, lease_owner = @owner, lease_until = @lease_until, attempts = u.attempts + 1
        WHERE u.id IN (SELECT id FROM turns ORDER BY turn, due_at, id LIMIT @max) AND u.state IN (0, 2)
        RETURNING u.id, u.message_id, u.tenant_id, u.registration_id, u.lane, u.platform, u.token, u.topic, u.environment,
            u.content, u.collapse_id, u.expires_at, u.event_at, u.attempts
        """;

    // Only the owner's rows still being sent: a lease that was reaped is no longer the owner's.
    private const string RenewLeasesSql = """
        UPDATE notifications SET lease_until = @lease_until
        WHERE id = ANY(@ids) AND lease_owner = @owner AND state = 1
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
        "SELECT coalesce_key, content, event_at, token FROM notifications WHERE id = @id AND lease_owner = @owner AND state = 1 FOR UPDATE";

    private const string FoldIntoPendingSql = """
        UPDATE notifications
        SET content = @content, event_at = @event_at,
            due_at = CASE WHEN token = @token AND due_at < @retry_at THEN @retry_at ELSE due_at END,
            state = CASE WHEN token = @token AND due_at < @retry_at THEN 2 ELSE state END
        WHERE id = @id
        """;

    private const string RecordPushSql = """
        UPDATE registrations SET last_push_at = @at, last_push_result = @result
        WHERE id = @id AND (last_push_at IS NULL OR last_push_at <= @at)
        """;

    private const string DeactivateSql = """
        UPDATE registrations SET status = 1, inactive_reason = @reason, inactive_at = @at, updated_at = @at
        WHERE id = @id AND status = 0 AND token = @token
        """;

    private const string FailPendingOfRegistrationSql = """
        UPDATE notifications SET state = 4, last_reason = @reason, completed_at = @at, token = ''
        WHERE registration_id = @registration_id AND state IN (0, 2, 6) AND state IN (0, 2)
        """;

    // Every node's reaper may run at once: each takes the expired leases no other reaper holds.
    private const string SelectExpiredLeasesSql =
        "SELECT id, coalesce_key, content, event_at FROM notifications WHERE state = 1 AND lease_until < @now FOR UPDATE SKIP LOCKED";

    private const string ReleaseManySql =
        "UPDATE notifications SET state = 2, due_at = @due_at, lease_owner = NULL, lease_until = NULL WHERE id = ANY(@ids) AND state = 1";

    private const string SupersedeSql = """
        UPDATE notifications SET state = 4, last_reason = @reason, completed_at = @at, lease_owner = NULL, lease_until = NULL, token = ''
        WHERE id = @id AND state = 1
        """;

    private const string NextDueOfLaneSql = LaneTenantsCte + """

        SELECT MIN((SELECT MIN(n.due_at) FROM notifications AS n WHERE n.lane = @lane AND n.tenant_id = t.tid AND n.state IN (0, 2)))
        FROM lane_tenants AS t
        WHERE t.tid IS NOT NULL
        """;

    private const string RecordColumns =
        "id, tenant_id, registration_id, lane, state, attempts, created_at, due_at, last_status, last_reason, sent_at, platform, token";

    // Several nodes may purge at once: each deletes rows the others are not deleting.
    private const string PurgeSql = """
        DELETE FROM notifications WHERE id IN (
            SELECT id FROM notifications WHERE state IN (3, 4, 5, 6) AND completed_at < @before LIMIT @max FOR UPDATE SKIP LOCKED)
        """;

    /// <summary>The unique index that keeps one pending row per coalescing key.</summary>
    private const string CoalesceIndex = "ux_notifications_coalesce";

    /// <summary>Every lane, in claiming order.</summary>
    internal static readonly Lane[] Lanes = [Lane.Priority, Lane.Standard];

    /// <summary>The <c>last_reason</c> of a row folded into a newer pending row with the same coalescing key.</summary>
    internal const string CoalescedReason = Sqlite.SqliteStore.CoalescedReason;

    /// <inheritdoc />
    public async Task<IReadOnlyList<long>> EnqueueAsync(IReadOnlyList<NewNotification> notifications, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(notifications);
        if (notifications.Count == 0)
        {
            return [];
        }

        var pending = new List<(NewNotification Notification, string Json)>(notifications.Count);
        NotificationContent? lastContent = null;
        string? lastJson = null;
        foreach (var notification in notifications)
        {
            if (notification is null)
            {
                throw new ArgumentException("A notification is null.", nameof(notifications));
            }

            // A bulk request shares one content object among its targets: serialise it once.
            if (!ReferenceEquals(notification.Content, lastContent))
            {
                lastContent = notification.Content ?? throw new ArgumentException("A notification has no content.", nameof(notifications));
                lastJson = StorageJson.Serialize(lastContent);
            }

            pending.Add((notification, lastJson!));
        }

        return await WriteRetryingAsync((c, ct) => EnqueueAsync(c, pending, NowMs, ct), cancellationToken).ConfigureAwait(false);
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

        return await WriteRetryingAsync((c, ct) => ClaimAsync(c, owner, limits, now, lease, ct), cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public async Task<int> RenewLeasesAsync(string owner, IReadOnlyList<long> ids, DateTimeOffset until, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrEmpty(owner);
        ArgumentNullException.ThrowIfNull(ids);
        if (ids.Count == 0)
        {
            return 0;
        }

        ObjectDisposedException.ThrowIf(_disposed, this);
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var command = Pg.Command(connection, RenewLeasesSql).Add("lease_until", until).Add("ids", ids.ToArray()).Add("owner", owner);
        return await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
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

        var applied = await WriteRetryingAsync((c, ct) => CompleteAsync(c, owner, outcomes, ct), cancellationToken).ConfigureAwait(false);
        if (applied < outcomes.Count)
        {
            Interlocked.Add(ref _fencedCompletions, outcomes.Count - applied);
            Log.Fenced(_logger, outcomes.Count - applied, owner);
        }

        return applied;
    }

    /// <inheritdoc />
    public async Task<int> ReleaseExpiredLeasesAsync(DateTimeOffset now, CancellationToken cancellationToken)
    {
        var (released, coalesced) = await WriteRetryingAsync((c, ct) => ReleaseExpiredAsync(c, now, ct), cancellationToken).ConfigureAwait(false);
        if (released > 0)
        {
            Log.LeasesReleased(_logger, released, coalesced);
        }

        return released;
    }

    /// <inheritdoc />
    public Task<DateTimeOffset?> NextDueAsync(CancellationToken cancellationToken)
        => ReadAsync(
            static async (c, ct) =>
            {
                long? next = null;
                foreach (var lane in Lanes)
                {
                    await using var command = Pg.Command(c, NextDueOfLaneSql).Add("lane", (short)lane);
                    if (await command.ExecuteScalarAsync(ct).ConfigureAwait(false) is long ms && (next is null || ms < next))
                    {
                        next = ms;
                    }
                }

                return next is { } due ? Pg.Time(due) : (DateTimeOffset?)null;
            },
            cancellationToken);

    /// <inheritdoc />
    public Task<QueueSnapshot> SnapshotAsync(DateTimeOffset now, CancellationToken cancellationToken)
        => ReadAsync(
            static async (c, ct) =>
            {
                var counts = new Dictionary<(Lane Lane, NotificationState State), long>();
                await using (var command = Pg.Command(c, "SELECT lane, state, COUNT(*) FROM notifications GROUP BY lane, state"))
                await using (var reader = await command.ExecuteReaderAsync(ct).ConfigureAwait(false))
                {
                    while (await reader.ReadAsync(ct).ConfigureAwait(false))
                    {
                        counts[((Lane)reader.GetInt16(0), (NotificationState)reader.GetInt16(1))] = reader.GetInt64(2);
                    }
                }

                await using var oldestCommand = Pg.Command(c, "SELECT MIN(created_at) FROM notifications WHERE state IN (0, 2) AND state = 0");
                var oldest = await oldestCommand.ExecuteScalarAsync(ct).ConfigureAwait(false);
                return new QueueSnapshot(counts, oldest is long ms ? Pg.Time(ms) : null);
            },
            cancellationToken);

    /// <inheritdoc />
    public async Task<int> PurgeCompletedAsync(DateTimeOffset olderThan, int batchSize, CancellationToken cancellationToken)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(batchSize, 1);
        var total = 0;
        while (true)
        {
            // One short transaction per batch, so no lock is held for the whole purge.
            var deleted = await WriteAsync(
                async (c, ct) =>
                {
                    await using var command = Pg.Command(c, PurgeSql).Add("before", olderThan).Add("max", batchSize);
                    return await command.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
                },
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
    /// <see cref="WriteAsync{T}"/>, run again (up to three times) when the transaction lost a race with another
    /// node: a deadlock, a serialization failure, or a pending row with the same coalescing key that another
    /// node committed between this transaction's look and its write. Every attempt starts over, so the work
    /// must depend only on what it reads.
    /// </summary>
    private async Task<T> WriteRetryingAsync<T>(Func<NpgsqlConnection, CancellationToken, Task<T>> work, CancellationToken cancellationToken)
    {
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                return await WriteAsync(work, cancellationToken).ConfigureAwait(false);
            }
            catch (PostgresException ex) when (attempt < 3 && IsLostRace(ex))
            {
                await Task.Delay(TimeSpan.FromMilliseconds(Random.Shared.Next(1, 20) * attempt), _time, cancellationToken).ConfigureAwait(false);
            }
        }
    }

    private static bool IsLostRace(PostgresException ex)
        => ex.SqlState is PostgresErrorCodes.DeadlockDetected or PostgresErrorCodes.SerializationFailure
           || (ex.SqlState == PostgresErrorCodes.UniqueViolation && ex.ConstraintName == CoalesceIndex);

    /// <summary>
    /// Queues notifications in one round trip (one insert per row in a batch), then replaces the pending rows
    /// of the ones whose coalescing key conflicted, as one by one would: merged content, the new target,
    /// attempts reset, due now (or, for the same token, when its retry backoff ends), the older event time.
    /// Sends the wake-up hint in the same transaction. Returns the row ids in order. <paramref name="before"/>
    /// are statements without results to run first in the same round trip.
    /// </summary>
    private static async Task<long[]> EnqueueAsync(
        NpgsqlConnection c, List<(NewNotification Notification, string Json)> items, long nowMs, CancellationToken ct, List<NpgsqlBatchCommand>? before = null)
    {
        var ids = new long[items.Count];
        var conflicts = new List<int>();
        await using (var batch = new NpgsqlBatch(c))
        {
            // Statements that return no rows (the ingest's registration updates) go first, in the same round trip.
            before?.ForEach(batch.BatchCommands.Add);
            foreach (var (notification, json) in items)
            {
                batch.BatchCommands.Add(InsertCommand(notification, json, nowMs));
            }

            batch.BatchCommands.Add(Pg.BatchCommand(NotifySql));
            await using var reader = await batch.ExecuteReaderAsync(ct).ConfigureAwait(false);
            for (var i = 0; i < items.Count; i++)
            {
                if (await reader.ReadAsync(ct).ConfigureAwait(false))
                {
                    ids[i] = reader.GetInt64(0);
                }
                else
                {
                    conflicts.Add(i);
                }

                await reader.NextResultAsync(ct).ConfigureAwait(false);
            }
        }

        // A conflicting key's pending row may be claimed by another node before it is locked here; then the
        // notification is inserted again (it no longer conflicts), a few times at most.
        for (var round = 0; conflicts.Count > 0; round++)
        {
            if (round == 5)
            {
                throw new InvalidOperationException($"Coalescing key '{items[conflicts[0]].Notification.CoalesceKey}' kept conflicting with a pending row that could not be found.");
            }

            conflicts = await ReplaceConflictsAsync(c, items, conflicts, ids, nowMs, ct).ConfigureAwait(false);
        }

        return ids;
    }

    private static NpgsqlBatchCommand InsertCommand(NewNotification n, string json, long nowMs)
    {
        var command = Pg.BatchCommand(n.CoalesceKey is null ? InsertDirectSql : InsertNotificationSql);
        BindNotification(command, n, json, n.EventAt, nowMs);
        if (n.CoalesceKey is not null)
        {
            command.Add("coalesce_key", n.CoalesceKey);
        }

        return command;
    }

    private static void BindNotification(NpgsqlBatchCommand command, NewNotification n, string contentJson, DateTimeOffset? eventAt, long dueMs)
        => command
            .Add("tenant_id", n.TenantId)
            .Add("registration_id", n.RegistrationId)
            .Add("request_id", n.RequestId)
            .Add("lane", (short)n.Lane)
            .Add("platform", (short)n.Platform)
            .Add("token", n.Token)
            .Add("topic", n.Topic)
            .Add("environment", (short)n.Environment)
            .Add("content", contentJson)
            .Add("collapse_id", n.CollapseId)
            .Add("expires_at", n.ExpiresAt)
            .Add("event_at", eventAt)
            .Add("due_at", dueMs);

    /// <summary>Replaces the pending rows of the conflicting notifications; returns those whose pending row vanished.</summary>
    private static async Task<List<int>> ReplaceConflictsAsync(
        NpgsqlConnection c, List<(NewNotification Notification, string Json)> items, List<int> conflicts, long[] ids, long nowMs, CancellationToken ct)
    {
        var keys = new HashSet<string>(StringComparer.Ordinal);
        foreach (var i in conflicts)
        {
            keys.Add(items[i].Notification.CoalesceKey!);
        }

        var pendingByKey = new Dictionary<string, (long Id, NotificationContent Content, DateTimeOffset? EventAt)>(StringComparer.Ordinal);
        await using (var select = Pg.Command(c, SelectPendingByKeysSql).Add("keys", keys.ToArray()))
        await using (var reader = await select.ExecuteReaderAsync(ct).ConfigureAwait(false))
        {
            while (await reader.ReadAsync(ct).ConfigureAwait(false))
            {
                pendingByKey[reader.GetString(1)] = (reader.GetInt64(0), StorageJson.DeserializeContent(reader.GetString(2)), reader.TimeOrNull(3));
            }
        }

        var vanished = new List<int>();
        await using var batch = new NpgsqlBatch(c);
        foreach (var i in conflicts)
        {
            var notification = items[i].Notification;
            var key = notification.CoalesceKey!;
            if (!pendingByKey.TryGetValue(key, out var pending))
            {
                vanished.Add(i);
                continue;
            }

            // Each replacement folds into what the previous one of the same key left.
            var merged = Coalescing.Merge(pending.Content, notification.Content);
            var eventAt = Earlier(pending.EventAt, notification.EventAt);
            var replace = Pg.BatchCommand(ReplacePendingSql);
            BindNotification(replace, notification, StorageJson.Serialize(merged), eventAt, nowMs);
            batch.BatchCommands.Add(replace.Add("id", pending.Id));
            pendingByKey[key] = (pending.Id, merged, eventAt);
            ids[i] = pending.Id;
        }

        if (batch.BatchCommands.Count > 0)
        {
            await batch.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
        }

        if (vanished.Count == 0)
        {
            return vanished;
        }

        // Insert those again, one batch; the ones that conflict again go round once more.
        var again = new List<int>();
        await using var retry = new NpgsqlBatch(c);
        foreach (var i in vanished)
        {
            retry.BatchCommands.Add(InsertCommand(items[i].Notification, items[i].Json, nowMs));
        }

        await using var inserted = await retry.ExecuteReaderAsync(ct).ConfigureAwait(false);
        foreach (var i in vanished)
        {
            if (await inserted.ReadAsync(ct).ConfigureAwait(false))
            {
                ids[i] = inserted.GetInt64(0);
            }
            else
            {
                again.Add(i);
            }

            await inserted.NextResultAsync(ct).ConfigureAwait(false);
        }

        return again;
    }

    /// <summary>
    /// This transaction commits without waiting for the WAL flush (<c>synchronous_commit = off</c>): for claims and
    /// completions only, as the SQLite store's <c>synchronous=NORMAL</c>. PostgreSQL writes the WAL in order, so a crash can
    /// only lose the last such commits (a resend when their leases expire: a duplicate, never a loss), and any later
    /// synchronous commit (an enqueue, an ingest) flushes them with it.
    /// </summary>
    private static async Task RelaxCommitAsync(NpgsqlConnection c, CancellationToken ct)
    {
        await using var command = Pg.Command(c, "SET LOCAL synchronous_commit = off");
        await command.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
    }

    private static DateTimeOffset? Earlier(DateTimeOffset? a, DateTimeOffset? b)
        => a is null ? b : b is null ? a : (a.Value <= b.Value ? a : b);

    private static async Task<List<ClaimedNotification>> ClaimAsync(
        NpgsqlConnection c, string owner, ClaimLimits limits, DateTimeOffset now, TimeSpan lease, CancellationToken ct)
    {
        await RelaxCommitAsync(c, ct).ConfigureAwait(false);
        var claimed = new List<ClaimedNotification>(Math.Min(limits.Total, 1024));
        var perTenant = new Dictionary<string, int>(StringComparer.Ordinal);
        if (limits.Priority > 0)
        {
            await ClaimLaneAsync(c, Lane.Priority, limits.Priority, owner, now, lease, claimed, perTenant, ct).ConfigureAwait(false);
        }

        if (limits.Standard > 0)
        {
            await ClaimLaneAsync(c, Lane.Standard, limits.Standard, owner, now, lease, claimed, perTenant, ct).ConfigureAwait(false);
        }

        // RETURNING yields rows in no particular order; hand them out priority lane first, oldest first.
        claimed.Sort(static (a, b) => a.Lane != b.Lane ? a.Lane.CompareTo(b.Lane) : a.Id.CompareTo(b.Id));
        return claimed;
    }

    /// <summary>
    /// Leases up to <paramref name="max"/> due rows of one lane, tenants taking turns, in passes as the SQLite
    /// store does: an equal share first, then the tenants that used their whole share take the room left.
    /// </summary>
    private static async Task ClaimLaneAsync(
        NpgsqlConnection c, Lane lane, int max, string owner, DateTimeOffset now, TimeSpan lease,
        List<ClaimedNotification> claimed, Dictionary<string, int> perTenant, CancellationToken ct)
    {
        long tenants;
        await using (var count = Pg.Command(c, CountLaneTenantsSql).Add("lane", (short)lane))
        {
            tenants = await count.ExecuteScalarAsync(ct).ConfigureAwait(false) is long n ? n : 0;
        }

        if (tenants == 0)
        {
            return;
        }

        var share = (int)Math.Min(max, (max + tenants - 1) / tenants);
        var left = max;
        while (true)
        {
            perTenant.Clear();
            var taken = await ClaimPassAsync(c, lane, share, left, owner, now, lease, claimed, perTenant, ct).ConfigureAwait(false);
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
                return;
            }

            share = (left + full - 1) / full;
        }
    }

    private static async Task<int> ClaimPassAsync(
        NpgsqlConnection c, Lane lane, int share, int max, string owner, DateTimeOffset now, TimeSpan lease,
        List<ClaimedNotification> claimed, Dictionary<string, int> perTenant, CancellationToken ct)
    {
        var taken = 0;
        await using var command = Pg.Command(c, ClaimLaneSql)
            .Add("lane", (short)lane)
            .Add("now", now)
            .Add("per_tenant", share)
            .Add("owner", owner)
            .Add("lease_until", now + lease)
            .Add("max", max);
        await using var reader = await command.ExecuteReaderAsync(ct).ConfigureAwait(false);
        while (await reader.ReadAsync(ct).ConfigureAwait(false))
        {
            var tenantId = reader.GetString(2);
            claimed.Add(new ClaimedNotification
            {
                Id = reader.GetInt64(0),
                MessageId = reader.GetGuid(1),
                TenantId = tenantId,
                RegistrationId = reader.StringOrNull(3),
                Lane = (Lane)reader.GetInt16(4),
                Platform = (Platform)reader.GetInt16(5),
                Token = reader.GetString(6),
                Topic = reader.GetString(7),
                Environment = (PushEnvironment)reader.GetInt16(8),
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
    /// Records one outcome the long way: retries that fold into a newer pending row with their key, and dead
    /// tokens (which deactivate the registration). Returns whether the row was still leased to <paramref name="owner"/>.
    /// </summary>
    private async Task<bool> CompleteOneAsync(NpgsqlConnection c, string owner, DeliveryOutcome outcome, CancellationToken ct)
    {
        // The leased row, locked: its key and content (to fold) and the token that failed (to deactivate).
        string? key;
        string content;
        DateTimeOffset? eventAt;
        string token;
        await using (var select = Pg.Command(c, SelectLeasedSql).Add("id", outcome.NotificationId).Add("owner", owner))
        await using (var reader = await select.ExecuteReaderAsync(ct).ConfigureAwait(false))
        {
            if (!await reader.ReadAsync(ct).ConfigureAwait(false))
            {
                return false; // not (or no longer) leased to this owner: fenced off
            }

            key = reader.StringOrNull(0);
            content = reader.GetString(1);
            eventAt = reader.TimeOrNull(2);
            token = reader.GetString(3);
        }

        var state = outcome.State;
        var reason = outcome.Reason;
        if (state == NotificationState.Retrying && key is not null
            && await FoldIntoPendingAsync(c, key, content, eventAt, token, outcome.RetryAt ?? outcome.CompletedAt, ct).ConfigureAwait(false))
        {
            state = NotificationState.Failed;
            reason = CoalescedReason;
        }

        var at = outcome.CompletedAt;
        var terminal = state is not NotificationState.Retrying;
        string? registrationId;
        int attempts;
        await using (var complete = Pg.Command(c, CompleteSql)
                         .Add("state", (short)state)
                         .Add("status", outcome.StatusCode)
                         .Add("reason", reason)
                         .Add("due_at", state == NotificationState.Retrying ? outcome.RetryAt ?? at : null)
                         .Add("sent_at", state == NotificationState.Sent ? at : null)
                         .Add("completed_at", terminal ? at : null)
                         .Add("id", outcome.NotificationId)
                         .Add("owner", owner))
        await using (var reader = await complete.ExecuteReaderAsync(ct).ConfigureAwait(false))
        {
            if (!await reader.ReadAsync(ct).ConfigureAwait(false))
            {
                return false;
            }

            registrationId = reader.StringOrNull(0);
            attempts = reader.GetInt32(1);
        }

        await using var batch = new NpgsqlBatch(c);
        batch.BatchCommands.Add(Pg.BatchCommand(InsertAttemptSql)
            .Add("notification_id", outcome.NotificationId)
            .Add("attempt", outcome.Attempt > 0 ? outcome.Attempt : attempts)
            .Add("at", at)
            .Add("outcome", (short)outcome.State)
            .Add("status", outcome.StatusCode)
            .Add("reason", outcome.Reason));
        if (registrationId is not null)
        {
            batch.BatchCommands.Add(Pg.BatchCommand(RecordPushSql).Add("at", at).Add("result", PushResultText(outcome)).Add("id", registrationId));
        }

        await batch.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
        if (registrationId is not null && outcome.DeactivateRegistration)
        {
            var inactiveReason = string.IsNullOrEmpty(outcome.Reason) ? "TokenInvalid" : outcome.Reason;
            int deactivated;
            await using (var deactivate = Pg.Command(c, DeactivateSql).Add("reason", inactiveReason).Add("at", at).Add("id", registrationId).Add("token", token))
            {
                deactivated = await deactivate.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
            }

            if (deactivated > 0)
            {
                await using var fail = new NpgsqlBatch(c) { BatchCommands = { FailPendingOfRegistration(registrationId, "RegistrationInactive", at) } };
                await fail.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
                Log.Deactivated(_logger, registrationId, inactiveReason);
            }
        }

        return true;
    }

    /// <summary>
    /// Folds an older row's content into the pending row with <paramref name="key"/>, when there is one (the
    /// pending row is the newer); for the same token the pending row then waits for <paramref name="retryAt"/>
    /// too. Returns whether it was folded.
    /// </summary>
    private static async Task<bool> FoldIntoPendingAsync(
        NpgsqlConnection c, string key, string olderContent, DateTimeOffset? olderEventAt, string? token, DateTimeOffset? retryAt, CancellationToken ct)
    {
        long pendingId;
        string pendingContent;
        DateTimeOffset? pendingEventAt;
        await using (var select = Pg.Command(c, SelectPendingByKeysSql).Add("keys", new[] { key }))
        await using (var reader = await select.ExecuteReaderAsync(ct).ConfigureAwait(false))
        {
            if (!await reader.ReadAsync(ct).ConfigureAwait(false))
            {
                return false;
            }

            pendingId = reader.GetInt64(0);
            pendingContent = reader.GetString(2);
            pendingEventAt = reader.TimeOrNull(3);
        }

        var merged = Coalescing.Merge(StorageJson.DeserializeContent(olderContent), StorageJson.DeserializeContent(pendingContent));
        await using var fold = Pg.Command(c, FoldIntoPendingSql)
            .Add("content", StorageJson.Serialize(merged))
            .Add("event_at", Earlier(olderEventAt, pendingEventAt))
            .Add("token", token)
            .Add("retry_at", retryAt)
            .Add("id", pendingId);
        await fold.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
        return true;
    }

    private static NpgsqlBatchCommand FailPendingOfRegistration(string registrationId, string reason, DateTimeOffset at)
        => Pg.BatchCommand(FailPendingOfRegistrationSql).Add("reason", reason).Add("at", at).Add("registration_id", registrationId);

    private async Task<(int Released, int Coalesced)> ReleaseExpiredAsync(NpgsqlConnection c, DateTimeOffset now, CancellationToken ct)
    {
        var expired = new List<(long Id, string? Key, string Content, DateTimeOffset? EventAt)>();
        await using (var select = Pg.Command(c, SelectExpiredLeasesSql).Add("now", now))
        await using (var reader = await select.ExecuteReaderAsync(ct).ConfigureAwait(false))
        {
            while (await reader.ReadAsync(ct).ConfigureAwait(false))
            {
                expired.Add((reader.GetInt64(0), reader.StringOrNull(1), reader.GetString(2), reader.TimeOrNull(3)));
            }
        }

        if (expired.Count == 0)
        {
            return (0, 0);
        }

        expired.Sort(static (a, b) => a.Id.CompareTo(b.Id));

        // "Due now" is the clock's now: at start-up a single-node host passes DateTimeOffset.MaxValue.
        var clock = _time.GetUtcNow();
        var due = now < clock ? now : clock;
        var coalesced = 0;
        var release = new List<long>(expired.Count);
        foreach (var (id, key, content, eventAt) in expired)
        {
            if (key is not null && await FoldIntoPendingAsync(c, key, content, eventAt, token: null, retryAt: null, ct).ConfigureAwait(false))
            {
                await using var supersede = Pg.Command(c, SupersedeSql).Add("reason", CoalescedReason).Add("at", clock).Add("id", id);
                await supersede.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
                coalesced++;
                continue;
            }

            release.Add(id);
        }

        if (release.Count > 0)
        {
            await using var batch = new NpgsqlBatch(c)
            {
                BatchCommands =
                {
                    Pg.BatchCommand(ReleaseManySql).Add("due_at", due).Add("ids", release.ToArray()),
                    Pg.BatchCommand(NotifySql),
                },
            };
            await batch.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
        }

        return (expired.Count, coalesced);
    }

    private static NotificationRecord ReadRecord(NpgsqlDataReader reader) => new(
        Id: reader.GetInt64(0),
        TenantId: reader.GetString(1),
        RegistrationId: reader.StringOrNull(2),
        Lane: (Lane)reader.GetInt16(3),
        State: (NotificationState)reader.GetInt16(4),
        Attempts: reader.GetInt32(5),
        CreatedAt: reader.Time(6),
        DueAt: reader.Time(7),
        LastStatus: reader.GetInt32(8),
        LastReason: reader.StringOrNull(9),
        SentAt: reader.TimeOrNull(10))
    {
        Platform = (Platform)reader.GetInt16(11),
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
