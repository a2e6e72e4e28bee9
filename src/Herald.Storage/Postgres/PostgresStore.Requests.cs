using Herald.Core.Notifications;
using Herald.Core.Ports;
using Npgsql;

namespace Herald.Storage.Postgres;

public sealed partial class PostgresStore
{
    private const string SelectNotificationSql = "SELECT " + RecordColumns + " FROM notifications WHERE id = @id";

    // A first attempt that was sent has no attempt row (see CompleteBatchSql): the notification row stands for it, listed
    // last (it ended the notification).
    private const string SelectAttemptsSql = """
        SELECT notification_id, attempt, at, outcome, status, reason, 0 AS k, id AS o FROM notification_attempts
        WHERE notification_id = @id
        UNION ALL
        SELECT id, attempts, sent_at, 3::smallint, last_status, last_reason, 1, 0 FROM notifications
        WHERE id = @id AND state = 3 AND sent_at IS NOT NULL
            AND NOT EXISTS (SELECT 1 FROM notification_attempts WHERE notification_id = @id AND outcome = 3)
        ORDER BY k, o
        """;

    private const string InsertRequestSql = """
        INSERT INTO notification_requests (id, tenant_id, lane, kind, target_count, created_at, created_by)
        VALUES (@id, @tenant_id, @lane, @kind, @target_count, @created_at, @created_by)
        """;

    private const string SelectRequestSql = """
        SELECT id, tenant_id, lane, kind, target_count, created_at, created_by FROM notification_requests
        WHERE id = @id AND tenant_id = @tenant_id
        """;

    private const string RequestCountsSql = """
        SELECT state, COUNT(*) FROM notifications WHERE request_id = @request_id AND tenant_id = @tenant_id GROUP BY state
        """;

    private const string RequestPageSql = "SELECT " + RecordColumns + """
         FROM notifications WHERE id IN (
            SELECT id FROM notifications WHERE request_id = @request_id AND tenant_id = @tenant_id
            ORDER BY id LIMIT @limit OFFSET @offset)
        ORDER BY id
        """;

    private const string ListDeadSql = "SELECT " + RecordColumns + """
         FROM notifications WHERE state = 6 ORDER BY completed_at DESC, id DESC LIMIT @limit
        """;

    private const string ListDeadOfTenantSql = "SELECT " + RecordColumns + """
         FROM notifications WHERE state = 6 AND tenant_id = @tenant_id ORDER BY completed_at DESC, id DESC LIMIT @limit
        """;

    // Dead rows that can go back to the queue (see SqliteStore.Requests), locked so two nodes requeueing at
    // once do not both requeue (or fold) one row.
    private const string RequeueCandidatesCondition = """
         AND (@tenant_id::text IS NULL OR tenant_id = @tenant_id) AND token <> ''
            AND (registration_id IS NULL OR EXISTS (
                SELECT 1 FROM registrations AS r WHERE r.id = notifications.registration_id AND r.status = 0))
        FOR UPDATE OF notifications SKIP LOCKED
        """;

    private const string SelectRequeueAllSql =
        "SELECT id, coalesce_key, content, event_at, token FROM notifications WHERE state = 6" + RequeueCandidatesCondition;

    private const string SelectRequeueIdsSql =
        "SELECT id, coalesce_key, content, event_at, token FROM notifications WHERE id = ANY(@ids) AND state = 6" + RequeueCandidatesCondition;

    private const string RequeueSql = """
        UPDATE notifications
        SET state = 0, attempts = 0, due_at = @due_at, lease_owner = NULL, lease_until = NULL,
            last_status = 0, last_reason = NULL, completed_at = NULL
        WHERE id = @id AND state = 6
        """;

    private const string SupersedeDeadSql = """
        UPDATE notifications SET state = 4, last_reason = @reason, completed_at = @at, token = ''
        WHERE id = @id AND state = 6
        """;

    private const string PurgeDeadAllSql =
        "DELETE FROM notifications WHERE state = 6 AND (@tenant_id::text IS NULL OR tenant_id = @tenant_id)";

    private const string PurgeDeadIdsSql = """
        DELETE FROM notifications
        WHERE id = ANY(@ids) AND state = 6 AND (@tenant_id::text IS NULL OR tenant_id = @tenant_id)
        """;

    /// <inheritdoc />
    public Task<NotificationRecord?> GetNotificationAsync(long id, CancellationToken cancellationToken)
        => ReadAsync(
            async (c, ct) =>
            {
                await using var command = Pg.Command(c, SelectNotificationSql).Add("id", id);
                await using var reader = await command.ExecuteReaderAsync(ct).ConfigureAwait(false);
                return await reader.ReadAsync(ct).ConfigureAwait(false) ? ReadRecord(reader) : null;
            },
            cancellationToken);

    /// <inheritdoc />
    public Task<IReadOnlyList<NotificationAttempt>> GetAttemptsAsync(long notificationId, CancellationToken cancellationToken)
        => ReadAsync<IReadOnlyList<NotificationAttempt>>(
            async (c, ct) =>
            {
                var attempts = new List<NotificationAttempt>();
                await using var command = Pg.Command(c, SelectAttemptsSql).Add("id", notificationId);
                await using var reader = await command.ExecuteReaderAsync(ct).ConfigureAwait(false);
                while (await reader.ReadAsync(ct).ConfigureAwait(false))
                {
                    attempts.Add(new NotificationAttempt(
                        reader.GetInt64(0),
                        reader.GetInt32(1),
                        reader.Time(2),
                        (NotificationState)reader.GetInt16(3),
                        reader.GetInt32(4),
                        reader.StringOrNull(5)));
                }

                return attempts;
            },
            cancellationToken);

    /// <inheritdoc />
    /// <exception cref="StoreConflictException">A request with the id exists.</exception>
    /// <exception cref="InvalidOperationException">The tenant does not exist.</exception>
    public Task SaveRequestAsync(NotificationRequestRecord request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        return ExecuteOnceAsync(
            Pg.BatchCommand(InsertRequestSql)
                .Add("id", request.Id)
                .Add("tenant_id", request.TenantId)
                .Add("lane", (short)request.Lane)
                .Add("kind", (short)request.Kind)
                .Add("target_count", request.TargetCount)
                .Add("created_at", request.CreatedAt)
                .Add("created_by", request.CreatedBy),
            ex => ex.IsForeignKeyViolation()
                ? new InvalidOperationException($"Request {request.Id}: tenant '{request.TenantId}' does not exist.", ex)
                : new StoreConflictException($"A send request with id '{request.Id}' already exists.", ex),
            cancellationToken);
    }

    /// <inheritdoc />
    public Task<NotificationRequestRecord?> GetRequestAsync(string tenantId, string requestId, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(tenantId);
        ArgumentNullException.ThrowIfNull(requestId);
        return ReadAsync(
            async (c, ct) =>
            {
                await using var command = Pg.Command(c, SelectRequestSql).Add("id", requestId).Add("tenant_id", tenantId);
                await using var reader = await command.ExecuteReaderAsync(ct).ConfigureAwait(false);
                return await reader.ReadAsync(ct).ConfigureAwait(false)
                    ? new NotificationRequestRecord(
                        reader.GetString(0),
                        reader.GetString(1),
                        (Lane)reader.GetInt16(2),
                        (PushKind)reader.GetInt16(3),
                        reader.GetInt32(4),
                        reader.Time(5),
                        reader.GetString(6))
                    : null;
            },
            cancellationToken);
    }

    /// <inheritdoc />
    public Task<IReadOnlyDictionary<NotificationState, long>> GetRequestCountsAsync(string tenantId, string requestId, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(tenantId);
        ArgumentNullException.ThrowIfNull(requestId);
        return ReadAsync<IReadOnlyDictionary<NotificationState, long>>(
            async (c, ct) =>
            {
                var counts = new Dictionary<NotificationState, long>();
                await using var command = Pg.Command(c, RequestCountsSql).Add("request_id", requestId).Add("tenant_id", tenantId);
                await using var reader = await command.ExecuteReaderAsync(ct).ConfigureAwait(false);
                while (await reader.ReadAsync(ct).ConfigureAwait(false))
                {
                    counts[(NotificationState)reader.GetInt16(0)] = reader.GetInt64(1);
                }

                return counts;
            },
            cancellationToken);
    }

    /// <inheritdoc />
    public Task<IReadOnlyList<NotificationRecord>> GetRequestNotificationsAsync(string tenantId, string requestId, int offset, int limit, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(tenantId);
        ArgumentNullException.ThrowIfNull(requestId);
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        ArgumentOutOfRangeException.ThrowIfNegative(limit);
        if (limit == 0)
        {
            return Task.FromResult<IReadOnlyList<NotificationRecord>>([]);
        }

        return ReadAsync<IReadOnlyList<NotificationRecord>>(
            async (c, ct) =>
            {
                await using var command = Pg.Command(c, RequestPageSql)
                    .Add("request_id", requestId)
                    .Add("tenant_id", tenantId)
                    .Add("limit", limit)
                    .Add("offset", offset);
                return await ReadRecordsAsync(command, limit, ct).ConfigureAwait(false);
            },
            cancellationToken);
    }

    /// <inheritdoc />
    public Task<IReadOnlyList<NotificationRecord>> ListDeadAsync(string? tenantId, int limit, CancellationToken cancellationToken)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(limit);
        if (limit == 0)
        {
            return Task.FromResult<IReadOnlyList<NotificationRecord>>([]);
        }

        return ReadAsync<IReadOnlyList<NotificationRecord>>(
            async (c, ct) =>
            {
                await using var command = tenantId is null
                    ? Pg.Command(c, ListDeadSql).Add("limit", limit)
                    : Pg.Command(c, ListDeadOfTenantSql).Add("tenant_id", tenantId).Add("limit", limit);
                return await ReadRecordsAsync(command, limit, ct).ConfigureAwait(false);
            },
            cancellationToken);
    }

    /// <inheritdoc />
    /// <remarks>As <see cref="Sqlite.SqliteStore.RequeueDeadAsync"/>; rows another node is requeueing at the same moment are left to it.</remarks>
    public Task<int> RequeueDeadAsync(string? tenantId, IReadOnlyList<long>? ids, DateTimeOffset now, CancellationToken cancellationToken)
    {
        if (ids is { Count: 0 })
        {
            return Task.FromResult(0);
        }

        return WriteRetryingAsync((c, ct) => RequeueDeadAsync(c, tenantId, ids, now, ct), cancellationToken);
    }

    /// <inheritdoc />
    /// <remarks>Their attempt rows are deleted with them.</remarks>
    public Task<int> PurgeDeadAsync(string? tenantId, IReadOnlyList<long>? ids, CancellationToken cancellationToken)
    {
        if (ids is { Count: 0 })
        {
            return Task.FromResult(0);
        }

        return WriteAsync(
            async (c, ct) =>
            {
                await using var command = ids is null
                    ? Pg.Command(c, PurgeDeadAllSql).Add("tenant_id", tenantId)
                    : Pg.Command(c, PurgeDeadIdsSql).Add("ids", ids.ToArray()).Add("tenant_id", tenantId);
                return await command.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
            },
            cancellationToken);
    }

    private static async Task<IReadOnlyList<NotificationRecord>> ReadRecordsAsync(NpgsqlCommand command, int limit, CancellationToken ct)
    {
        var records = new List<NotificationRecord>(Math.Min(limit, 1024));
        await using var reader = await command.ExecuteReaderAsync(ct).ConfigureAwait(false);
        while (await reader.ReadAsync(ct).ConfigureAwait(false))
        {
            records.Add(ReadRecord(reader));
        }

        return records;
    }

    private async Task<int> RequeueDeadAsync(NpgsqlConnection c, string? tenantId, IReadOnlyList<long>? ids, DateTimeOffset now, CancellationToken ct)
    {
        var rows = new List<(long Id, string? Key, string Content, DateTimeOffset? EventAt, string Token)>();
        await using (var select = ids is null
                         ? Pg.Command(c, SelectRequeueAllSql).Add("tenant_id", tenantId)
                         : Pg.Command(c, SelectRequeueIdsSql).Add("ids", ids.ToArray()).Add("tenant_id", tenantId))
        await using (var reader = await select.ExecuteReaderAsync(ct).ConfigureAwait(false))
        {
            while (await reader.ReadAsync(ct).ConfigureAwait(false))
            {
                rows.Add((reader.GetInt64(0), reader.StringOrNull(1), reader.GetString(2), reader.TimeOrNull(3), reader.GetString(4)));
            }
        }

        // Newest first: when several share a coalescing key, the newest is requeued and the older ones fold into it.
        rows.Sort(static (a, b) => b.Id.CompareTo(a.Id));
        var clock = _time.GetUtcNow();
        foreach (var (id, key, content, eventAt, token) in rows)
        {
            if (key is not null && await FoldIntoPendingAsync(c, key, content, eventAt, token, retryAt: null, ct).ConfigureAwait(false))
            {
                await using var supersede = Pg.Command(c, SupersedeDeadSql).Add("reason", CoalescedReason).Add("at", clock).Add("id", id);
                await supersede.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
                continue;
            }

            await using var requeue = Pg.Command(c, RequeueSql).Add("due_at", now).Add("id", id);
            await requeue.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
        }

        if (rows.Count > 0)
        {
            await using var notify = Pg.Command(c, NotifySql);
            await notify.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
        }

        return rows.Count;
    }
}
