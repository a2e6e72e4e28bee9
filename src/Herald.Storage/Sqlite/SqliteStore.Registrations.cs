using Herald.Core.Registrations;
using Herald.Core.Security;
using Microsoft.Data.Sqlite;

namespace Herald.Storage.Sqlite;

public sealed partial class SqliteStore
{
    private const string RegistrationColumns = """
        id, tenant_id, platform, token, topic, environment, source, style, folders, locale, status, inactive_reason,
        inactive_at, subscription_id, previous_subscription_id, inbox_folder_id, unread_count, created_at, updated_at,
        last_event_at, last_push_at, last_push_result, connector, mailbox_hash, sealed_mailbox, encryption_key
        """;

    private const string InsertRegistrationSql = """
        INSERT INTO registrations (id, tenant_id, platform, token, topic, environment, source, style, folders, locale,
            status, inactive_reason, inactive_at, subscription_id, previous_subscription_id, inbox_folder_id, unread_count,
            created_at, updated_at, last_event_at, last_push_at, last_push_result, callback_key_hash, connector, mailbox_hash, sealed_mailbox, token_fp, encryption_key)
        VALUES (@id, @tenant_id, @platform, @token, @topic, @environment, @source, @style, @folders, @locale,
            @status, @inactive_reason, @inactive_at, @subscription_id, @previous_subscription_id, @inbox_folder_id, @unread_count,
            @created_at, @updated_at, @last_event_at, @last_push_at, @last_push_result, @callback_key_hash, @connector, @mailbox_hash, @sealed_mailbox, @token_fp, @encryption_key)
        """;

    private const string SelectRegistrationSql =
        "SELECT " + RegistrationColumns + " FROM registrations WHERE id = @id AND tenant_id = @tenant_id AND status <> 2";

    private const string SelectEditableSql =
        "SELECT token, topic, environment, status FROM registrations WHERE id = @id AND tenant_id = @tenant_id AND status <> 2";

    private const string UpdateRegistrationSql = """
        UPDATE registrations
        SET token = @token, topic = @topic, environment = @environment, style = @style, folders = @folders, locale = @locale,
            status = @status, inactive_reason = @inactive_reason, inactive_at = @inactive_at, updated_at = @updated_at, token_fp = @token_fp,
            encryption_key = @encryption_key
        WHERE id = @id
        """;

    // Pending and dead rows (a dead row may be requeued) follow the registration to its new token.
    private const string RetargetPendingSql = """
        UPDATE notifications SET token = @token, topic = @topic, environment = @environment
        WHERE registration_id = @registration_id AND state IN (0, 2, 6)
        """;

    // A deleted registration's dead rows forget their token too (they can no longer be requeued).
    private const string ForgetDeadTokensSql = """
        UPDATE notifications SET token = ''
        WHERE registration_id = @registration_id AND state IN (0, 2, 6) AND state = 6
        """;

    // The ids come as one JSON array, so one prepared statement serves any number of them. `+tenant_id`
    // keeps SQLite from walking the tenant's index (every registration of the tenant) instead of looking
    // the ids up by primary key.
    private const string SelectRegistrationsByIdsSql =
        "SELECT " + RegistrationColumns + " FROM registrations WHERE id IN (SELECT value FROM json_each(@ids)) AND +tenant_id = @tenant_id AND status <> 2";

    /// <summary>How many ids one <see cref="GetManyAsync"/> statement looks up.</summary>
    internal const int GetManyChunk = 500;

    private const string DeleteRegistrationSql = """
        UPDATE registrations
        SET status = 2, token = '', token_fp = NULL, inactive_reason = 'Deleted', inactive_at = @at, updated_at = @at
        WHERE id = @id AND tenant_id = @tenant_id AND status <> 2
        """;

    private const int SqliteConstraint = 19;
    private const int SqliteConstraintForeignKey = 787;

    /// <inheritdoc />
    /// <exception cref="StoreConflictException">The id (or the callback key hash) is already taken.</exception>
    /// <exception cref="InvalidOperationException">The tenant does not exist.</exception>
    public Task CreateAsync(Registration registration, byte[]? callbackKeyHash, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(registration);
        return WriteAsync(s => InsertRegistration(InsertRegistrationStatement(s), registration, callbackKeyHash, _time.GetUtcNow()), cancellationToken);
    }

    /// <summary>The prepared insert of a registration (one per write, reused for every row of a bulk load).</summary>
    private static SqliteStatement InsertRegistrationStatement(SqliteSession s) => s.Statement(
        InsertRegistrationSql,
        "@id", "@tenant_id", "@platform", "@token", "@topic", "@environment", "@source", "@style", "@folders", "@locale",
        "@status", "@inactive_reason", "@inactive_at", "@subscription_id", "@previous_subscription_id", "@inbox_folder_id",
        "@unread_count", "@created_at", "@updated_at", "@last_event_at", "@last_push_at", "@last_push_result", "@callback_key_hash",
        "@connector", "@mailbox_hash", "@sealed_mailbox", "@token_fp", "@encryption_key");

    /// <summary>Inserts one registration with the prepared statement.</summary>
    /// <exception cref="StoreConflictException">The id (or the callback key hash) is already taken.</exception>
    /// <exception cref="InvalidOperationException">The tenant does not exist.</exception>
    private static void InsertRegistration(SqliteStatement insert, Registration registration, byte[]? callbackKeyHash, DateTimeOffset now)
    {
        insert
            .Set(0, registration.Id)
            .Set(1, registration.TenantId)
            .Set(2, (long)registration.Platform)
            .Set(3, registration.Token)
            .Set(4, registration.Topic)
            .Set(5, (long)registration.Environment)
            .Set(6, (long)registration.Source)
            .Set(7, (long)registration.Style)
            .Set(8, StorageJson.Serialize(registration.Folders ?? []))
            .Set(9, registration.Locale)
            .Set(10, (long)registration.Status)
            .Set(11, registration.InactiveReason)
            .Set(12, registration.InactiveAt)
            .Set(13, registration.SubscriptionId)
            .Set(14, registration.PreviousSubscriptionId)
            .Set(15, registration.InboxFolderId)
            .Set(16, registration.UnreadCount)
            .Set(17, registration.CreatedAt == default ? now : registration.CreatedAt)
            .Set(18, registration.UpdatedAt == default ? now : registration.UpdatedAt)
            .Set(19, registration.LastEventAt)
            .Set(20, registration.LastPushAt)
            .Set(21, registration.LastPushResult)
            .Set(22, callbackKeyHash)
            .Set(23, registration.Connector)
            .Set(24, registration.MailboxHash)
            .Set(25, registration.SealedMailbox)
            .Set(26, (long?)TokenFingerprint.Of(registration.Token))
            .Set(27, registration.EncryptionKey);
        try
        {
            insert.Execute();
        }
        catch (SqliteException ex) when (ex.SqliteErrorCode == SqliteConstraint)
        {
            throw ex.SqliteExtendedErrorCode == SqliteConstraintForeignKey
                ? new InvalidOperationException($"Registration {registration.Id}: tenant '{registration.TenantId}' does not exist.", ex)
                : new StoreConflictException($"A registration with id '{registration.Id}' or the same callback key already exists.", ex);
        }
    }

    /// <inheritdoc />
    public Task<Registration?> GetAsync(string tenantId, string id, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(tenantId);
        ArgumentNullException.ThrowIfNull(id);
        return ReadAsync(
            s =>
            {
                using var reader = s.Statement(SelectRegistrationSql, "@id", "@tenant_id").Set(0, id).Set(1, tenantId).Query();
                return reader.Read() ? ReadRegistration(reader) : null;
            },
            cancellationToken);
    }

    /// <inheritdoc />
    public Task<IReadOnlyDictionary<string, Registration>> GetManyAsync(string tenantId, IReadOnlyCollection<string> ids, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(tenantId);
        ArgumentNullException.ThrowIfNull(ids);
        if (ids.Count == 0)
        {
            return Task.FromResult<IReadOnlyDictionary<string, Registration>>(new Dictionary<string, Registration>(StringComparer.Ordinal));
        }

        return ReadAsync<IReadOnlyDictionary<string, Registration>>(
            s =>
            {
                var found = new Dictionary<string, Registration>(Math.Min(ids.Count, 4096), StringComparer.Ordinal);
                var chunk = new List<string>(Math.Min(ids.Count, GetManyChunk));
                foreach (var id in ids)
                {
                    chunk.Add(id ?? throw new ArgumentException("A registration id is null.", nameof(ids)));
                    if (chunk.Count == GetManyChunk)
                    {
                        ReadRegistrations(s, tenantId, chunk, found);
                        chunk.Clear();
                    }
                }

                if (chunk.Count > 0)
                {
                    ReadRegistrations(s, tenantId, chunk, found);
                }

                return found;
            },
            cancellationToken);
    }

    /// <inheritdoc />
    public Task<bool> UpdateAsync(Registration registration, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(registration);
        return WriteAsync(s => Update(s, registration, _time.GetUtcNow()), cancellationToken);
    }

    /// <inheritdoc />
    public Task<bool> DeleteAsync(string tenantId, string id, DateTimeOffset now, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(tenantId);
        ArgumentNullException.ThrowIfNull(id);
        return WriteAsync(
            s =>
            {
                if (s.Statement(DeleteRegistrationSql, "@at", "@id", "@tenant_id").Set(0, now).Set(1, id).Set(2, tenantId).Execute() == 0)
                {
                    return false;
                }

                // The callback key hash stays, so the next callback for it answers Unsubscribe. Failing the
                // pending rows also drops the token from them; a row being sent forgets it when completed.
                FailPendingOfRegistration(s, id, "RegistrationDeleted", now);
                ForgetDeadTokens(s, id);
                return true;
            },
            cancellationToken);
    }

    private static bool Update(SqliteSession s, Registration registration, DateTimeOffset now)
    {
        string token;
        string topic;
        PushEnvironment environment;
        RegistrationStatus status;
        using (var reader = s.Statement(SelectEditableSql, "@id", "@tenant_id").Set(0, registration.Id).Set(1, registration.TenantId).Query())
        {
            if (!reader.Read())
            {
                return false;
            }

            token = reader.GetString(0);
            topic = reader.GetString(1);
            environment = (PushEnvironment)reader.GetInt32(2);
            status = (RegistrationStatus)reader.GetInt32(3);
        }

        var deleted = registration.Status == RegistrationStatus.Deleted;
        var newToken = deleted ? string.Empty : registration.Token;
        s.Statement(
                UpdateRegistrationSql,
                "@token", "@topic", "@environment", "@style", "@folders", "@locale", "@status", "@inactive_reason", "@inactive_at", "@updated_at", "@id", "@token_fp", "@encryption_key")
            .Set(0, newToken)
            .Set(1, registration.Topic)
            .Set(2, (long)registration.Environment)
            .Set(3, (long)registration.Style)
            .Set(4, StorageJson.Serialize(registration.Folders ?? []))
            .Set(5, registration.Locale)
            .Set(6, (long)registration.Status)
            .Set(7, registration.InactiveReason)
            .Set(8, registration.InactiveAt)
            .Set(9, now)
            .Set(10, registration.Id)
            .Set(11, (long?)TokenFingerprint.Of(newToken))
            .Set(12, registration.EncryptionKey)
            .Execute();

        if (registration.Status != RegistrationStatus.Active && status == RegistrationStatus.Active)
        {
            FailPendingOfRegistration(s, registration.Id, deleted ? "RegistrationDeleted" : "RegistrationInactive", now);
        }

        if (deleted)
        {
            ForgetDeadTokens(s, registration.Id);
        }

        if (!deleted && (newToken != token || registration.Topic != topic || registration.Environment != environment))
        {
            // Queued work follows the device to its new token (a rotation must not send to the old one).
            s.Statement(RetargetPendingSql, "@token", "@topic", "@environment", "@registration_id")
                .Set(0, newToken)
                .Set(1, registration.Topic)
                .Set(2, (long)registration.Environment)
                .Set(3, registration.Id)
                .Execute();
        }

        return true;
    }

    private static void ReadRegistrations(SqliteSession s, string tenantId, List<string> ids, Dictionary<string, Registration> found)
    {
        using var reader = s.Statement(SelectRegistrationsByIdsSql, "@ids", "@tenant_id")
            .Set(0, StorageJson.Serialize(ids))
            .Set(1, tenantId)
            .Query();
        while (reader.Read())
        {
            var registration = ReadRegistration(reader);
            found[registration.Id] = registration;
        }
    }

    private static void ForgetDeadTokens(SqliteSession s, string registrationId)
        => s.Statement(ForgetDeadTokensSql, "@registration_id").Set(0, registrationId).Execute();

    private static Registration ReadRegistration(SqliteDataReader reader) => new()
    {
        Id = reader.GetString(0),
        TenantId = reader.GetString(1),
        Platform = (Platform)reader.GetInt32(2),
        Token = reader.GetString(3),
        Topic = reader.GetString(4),
        Environment = (PushEnvironment)reader.GetInt32(5),
        Source = (SourceKind)reader.GetInt32(6),
        Style = (NotificationStyle)reader.GetInt32(7),
        Folders = StorageJson.DeserializeFolders(reader.GetString(8)),
        Locale = reader.GetString(9),
        Status = (RegistrationStatus)reader.GetInt32(10),
        InactiveReason = reader.StringOrNull(11),
        InactiveAt = reader.TimeOrNull(12),
        SubscriptionId = reader.StringOrNull(13),
        PreviousSubscriptionId = reader.StringOrNull(14),
        InboxFolderId = reader.StringOrNull(15),
        UnreadCount = reader.Int32OrNull(16),
        CreatedAt = reader.Time(17),
        UpdatedAt = reader.Time(18),
        LastEventAt = reader.TimeOrNull(19),
        LastPushAt = reader.TimeOrNull(20),
        LastPushResult = reader.StringOrNull(21),
        Connector = reader.StringOrNull(22),
        MailboxHash = reader.IsDBNull(23) ? null : (byte[])reader.GetValue(23),
        SealedMailbox = reader.StringOrNull(24),
        EncryptionKey = reader.IsDBNull(25) ? null : (byte[])reader.GetValue(25),
    };
}
