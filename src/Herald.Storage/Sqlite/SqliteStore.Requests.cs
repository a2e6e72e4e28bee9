using Herald.Core.Notifications;
using Herald.Core.Ports;
using Microsoft.Data.Sqlite;

namespace Herald.Storage.Sqlite;

public sealed partial class SqliteStore
{
    // A first attempt that was sent has no attempt row (see InsertAttemptsBatchSql): the notification row stands for it,
    // listed last (it ended the notification).
    private const string SelectAttemptsSql = """
        SELECT notification_id, attempt, at, outcome, status, reason, 0 AS k, id AS o FROM notification_attempts
        WHERE notification_id = @id
        UNION ALL
        SELECT id, attempts, sent_at, 3, last_status, last_reason, 1, 0 FROM notifications
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

    // The page is cut from ix_notifications_request alone (request, tenant, then id), so a deep offset
    // skips index entries, not rows; only the page's rows are read.
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

    // Dead rows that can go back to the queue: a token to send to (rows that died before tokens were kept
    // for requeueing have none), and no registration, or an active one. Not ordered here: an ORDER BY id
    // would make SQLite walk the whole table in rowid order rather than the dead rows' index.
    private const string RequeueCandidatesCondition = """
         AND (@tenant_id IS NULL OR tenant_id = @tenant_id) AND token <> ''
            AND (registration_id IS NULL OR EXISTS (
                SELECT 1 FROM registrations AS r WHERE r.id = notifications.registration_id AND r.status = 0))
        """;

    private const string SelectRequeueAllSql =
        "SELECT id, coalesce_key, content, event_at, token FROM notifications WHERE state = 6" + RequeueCandidatesCondition;

    private const string SelectRequeueIdsSql =
        "SELECT id, coalesce_key, content, event_at, token FROM notifications WHERE id IN (SELECT value FROM json_each(@ids)) AND state = 6"
        + RequeueCandidatesCondition;

    // A requeued row starts over: attempts from 1, no lease, no last result (its history stays in
    // notification_attempts). It keeps its message id (the provider sees the same notification again).
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
        "DELETE FROM notifications WHERE state = 6 AND (@tenant_id IS NULL OR tenant_id = @tenant_id)";

    private const string PurgeDeadIdsSql = """
        DELETE FROM notifications
        WHERE id IN (SELECT value FROM json_each(@ids)) AND state = 6 AND (@tenant_id IS NULL OR tenant_id = @tenant_id)
        """;

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
    public Task<IReadOnlyList<NotificationAttempt>> GetAttemptsAsync(long notificationId, CancellationToken cancellationToken)
        => ReadAsync<IReadOnlyList<NotificationAttempt>>(
            s =>
            {
                var attempts = new List<NotificationAttempt>();
                using var reader = s.Statement(SelectAttemptsSql, "@id").Set(0, notificationId).Query();
                while (reader.Read())
                {
                    attempts.Add(new NotificationAttempt(
                        reader.GetInt64(0),
                        reader.GetInt32(1),
                        reader.Time(2),
                        (NotificationState)reader.GetInt32(3),
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
        return WriteAsync(
            s =>
            {
                var insert = s.Statement(InsertRequestSql, "@id", "@tenant_id", "@lane", "@kind", "@target_count", "@created_at", "@created_by")
                    .Set(0, request.Id)
                    .Set(1, request.TenantId)
                    .Set(2, (long)request.Lane)
                    .Set(3, (long)request.Kind)
                    .Set(4, request.TargetCount)
                    .Set(5, request.CreatedAt)
                    .Set(6, request.CreatedBy);
                try
                {
                    insert.Execute();
                }
                catch (SqliteException ex) when (ex.SqliteErrorCode == SqliteConstraint)
                {
                    throw ex.SqliteExtendedErrorCode == SqliteConstraintForeignKey
                        ? new InvalidOperationException($"Request {request.Id}: tenant '{request.TenantId}' does not exist.", ex)
                        : new StoreConflictException($"A send request with id '{request.Id}' already exists.", ex);
                }
            },
            cancellationToken);
    }

    /// <inheritdoc />
    public Task<NotificationRequestRecord?> GetRequestAsync(string tenantId, string requestId, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(tenantId);
        ArgumentNullException.ThrowIfNull(requestId);
        return ReadAsync(
            s =>
            {
                using var reader = s.Statement(SelectRequestSql, "@id", "@tenant_id").Set(0, requestId).Set(1, tenantId).Query();
                return reader.Read()
                    ? new NotificationRequestRecord(
                        reader.GetString(0),
                        reader.GetString(1),
                        (Lane)reader.GetInt32(2),
                        (PushKind)reader.GetInt32(3),
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
            s =>
            {
                var counts = new Dictionary<NotificationState, long>();
                using var reader = s.Statement(RequestCountsSql, "@request_id", "@tenant_id").Set(0, requestId).Set(1, tenantId).Query();
                while (reader.Read())
                {
                    counts[(NotificationState)reader.GetInt32(0)] = reader.GetInt64(1);
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
            s =>
            {
                var records = new List<NotificationRecord>(Math.Min(limit, 1024));
                using var reader = s.Statement(RequestPageSql, "@request_id", "@tenant_id", "@limit", "@offset")
                    .Set(0, requestId)
                    .Set(1, tenantId)
                    .Set(2, limit)
                    .Set(3, offset)
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
    public Task<IReadOnlyList<NotificationRecord>> ListDeadAsync(string? tenantId, int limit, CancellationToken cancellationToken)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(limit);
        if (limit == 0)
        {
            return Task.FromResult<IReadOnlyList<NotificationRecord>>([]);
        }

        return ReadAsync<IReadOnlyList<NotificationRecord>>(
            s =>
            {
                var statement = tenantId is null
                    ? s.Statement(ListDeadSql, "@limit").Set(0, limit)
                    : s.Statement(ListDeadOfTenantSql, "@tenant_id", "@limit").Set(0, tenantId).Set(1, limit);
                var records = new List<NotificationRecord>(Math.Min(limit, 1024));
                using var reader = statement.Query();
                while (reader.Read())
                {
                    records.Add(ReadRecord(reader));
                }

                return records;
            },
            cancellationToken);
    }

    /// <inheritdoc />
    /// <remarks>
    /// A requeued row is queued, due at <paramref name="now"/>, with no attempts, no lease and no last
    /// status or reason (the attempt log keeps its history); it keeps its message id. Rows whose token is
    /// gone (they died before dead rows kept tokens, or their registration was deleted) and rows of a
    /// registration that is no longer active are left dead. When a row's coalescing key already has a
    /// pending row, it folds into that row (its content merged as the older one) and ends as failed,
    /// <c>Coalesced</c>; it counts as requeued.
    /// </remarks>
    public Task<int> RequeueDeadAsync(string? tenantId, IReadOnlyList<long>? ids, DateTimeOffset now, CancellationToken cancellationToken)
    {
        if (ids is { Count: 0 })
        {
            return Task.FromResult(0);
        }

        return WriteAsync(s => RequeueDead(s, tenantId, ids, now), cancellationToken);
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
            s => ids is null
                ? s.Statement(PurgeDeadAllSql, "@tenant_id").Set(0, tenantId).Execute()
                : s.Statement(PurgeDeadIdsSql, "@ids", "@tenant_id").Set(0, StorageJson.Serialize(ids)).Set(1, tenantId).Execute(),
            cancellationToken);
    }

    private int RequeueDead(SqliteSession s, string? tenantId, IReadOnlyList<long>? ids, DateTimeOffset now)
    {
        var rows = new List<(long Id, string? Key, string Content, DateTimeOffset? EventAt, string Token)>();
        var select = ids is null
            ? s.Statement(SelectRequeueAllSql, "@tenant_id").Set(0, tenantId)
            : s.Statement(SelectRequeueIdsSql, "@ids", "@tenant_id").Set(0, StorageJson.Serialize(ids)).Set(1, tenantId);
        using (var reader = select.Query())
        {
            while (reader.Read())
            {
                rows.Add((reader.GetInt64(0), reader.StringOrNull(1), reader.GetString(2), reader.TimeOrNull(3), reader.GetString(4)));
            }
        }

        // Newest first: when several share a coalescing key, the newest is requeued and the older ones fold into it.
        rows.Sort(static (a, b) => b.Id.CompareTo(a.Id));
        var clock = _time.GetUtcNow();
        foreach (var (id, key, content, eventAt, token) in rows)
        {
            if (key is not null && FoldIntoPending(s, key, content, eventAt, token, retryAt: null))
            {
                s.Statement(SupersedeDeadSql, "@reason", "@at", "@id").Set(0, CoalescedReason).Set(1, clock).Set(2, id).Execute();
                continue;
            }

            s.Statement(RequeueSql, "@due_at", "@id").Set(0, now).Set(1, id).Execute();
        }

        return rows.Count;
    }
}
