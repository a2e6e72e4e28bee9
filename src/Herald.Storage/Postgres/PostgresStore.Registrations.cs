using Herald.Core.Registrations;
using Herald.Core.Security;
using Npgsql;

namespace Herald.Storage.Postgres;

public sealed partial class PostgresStore
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

    // Locked: two nodes editing one registration apply one after the other (the token comparison needs the latest).
    private const string SelectEditableSql =
        "SELECT token, topic, environment, status FROM registrations WHERE id = @id AND tenant_id = @tenant_id AND status <> 2 FOR UPDATE";

    private const string UpdateRegistrationSql = """
        UPDATE registrations
        SET token = @token, topic = @topic, environment = @environment, style = @style, folders = @folders, locale = @locale,
            status = @status, inactive_reason = @inactive_reason, inactive_at = @inactive_at, updated_at = @updated_at, token_fp = @token_fp,
            encryption_key = @encryption_key
        WHERE id = @id
        """;

    private const string RetargetPendingSql = """
        UPDATE notifications SET token = @token, topic = @topic, environment = @environment
        WHERE registration_id = @registration_id AND state IN (0, 2, 6)
        """;

    private const string ForgetDeadTokensSql = """
        UPDATE notifications SET token = ''
        WHERE registration_id = @registration_id AND state IN (0, 2, 6) AND state = 6
        """;

    private const string SelectRegistrationsByIdsSql =
        "SELECT " + RegistrationColumns + " FROM registrations WHERE id = ANY(@ids) AND tenant_id = @tenant_id AND status <> 2";

    /// <summary>How many ids one <see cref="GetManyAsync"/> statement looks up.</summary>
    internal const int GetManyChunk = 1000;

    private const string DeleteRegistrationSql = """
        UPDATE registrations
        SET status = 2, token = '', token_fp = NULL, inactive_reason = 'Deleted', inactive_at = @at, updated_at = @at
        WHERE id = @id AND tenant_id = @tenant_id AND status <> 2
        """;

    /// <inheritdoc />
    /// <exception cref="StoreConflictException">The id (or the callback key hash) is already taken.</exception>
    /// <exception cref="InvalidOperationException">The tenant does not exist.</exception>
    public Task CreateAsync(Registration registration, byte[]? callbackKeyHash, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(registration);
        var now = _time.GetUtcNow();
        return ExecuteOnceAsync(
            Pg.BatchCommand(InsertRegistrationSql)
                .Add("id", registration.Id)
                .Add("tenant_id", registration.TenantId)
                .Add("platform", (short)registration.Platform)
                .Add("token", registration.Token)
                .Add("topic", registration.Topic)
                .Add("environment", (short)registration.Environment)
                .Add("source", (short)registration.Source)
                .Add("style", (short)registration.Style)
                .Add("folders", StorageJson.Serialize(registration.Folders ?? []))
                .Add("locale", registration.Locale)
                .Add("status", (short)registration.Status)
                .Add("inactive_reason", registration.InactiveReason)
                .Add("inactive_at", registration.InactiveAt)
                .Add("subscription_id", registration.SubscriptionId)
                .Add("previous_subscription_id", registration.PreviousSubscriptionId)
                .Add("inbox_folder_id", registration.InboxFolderId)
                .Add("unread_count", registration.UnreadCount)
                .Add("created_at", registration.CreatedAt == default ? now : registration.CreatedAt)
                .Add("updated_at", registration.UpdatedAt == default ? now : registration.UpdatedAt)
                .Add("last_event_at", registration.LastEventAt)
                .Add("last_push_at", registration.LastPushAt)
                .Add("last_push_result", registration.LastPushResult)
                .Add("callback_key_hash", callbackKeyHash)
                .Add("connector", registration.Connector)
                .Add("mailbox_hash", registration.MailboxHash)
                .Add("sealed_mailbox", registration.SealedMailbox)
                .Add("token_fp", (long?)TokenFingerprint.Of(registration.Token))
                .Add("encryption_key", registration.EncryptionKey),
            ex => ex.IsForeignKeyViolation()
                ? new InvalidOperationException($"Registration {registration.Id}: tenant '{registration.TenantId}' does not exist.", ex)
                : new StoreConflictException($"A registration with id '{registration.Id}' or the same callback key already exists.", ex),
            cancellationToken);
    }

    /// <inheritdoc />
    public Task<Registration?> GetAsync(string tenantId, string id, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(tenantId);
        ArgumentNullException.ThrowIfNull(id);
        return ReadAsync(
            async (c, ct) =>
            {
                await using var command = Pg.Command(c, SelectRegistrationSql).Add("id", id).Add("tenant_id", tenantId);
                await using var reader = await command.ExecuteReaderAsync(ct).ConfigureAwait(false);
                return await reader.ReadAsync(ct).ConfigureAwait(false) ? ReadRegistration(reader) : null;
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
            async (c, ct) =>
            {
                var found = new Dictionary<string, Registration>(Math.Min(ids.Count, 4096), StringComparer.Ordinal);
                var chunk = new List<string>(Math.Min(ids.Count, GetManyChunk));
                foreach (var id in ids)
                {
                    chunk.Add(id ?? throw new ArgumentException("A registration id is null.", nameof(ids)));
                    if (chunk.Count == GetManyChunk)
                    {
                        await ReadRegistrationsAsync(c, tenantId, chunk, found, ct).ConfigureAwait(false);
                        chunk.Clear();
                    }
                }

                if (chunk.Count > 0)
                {
                    await ReadRegistrationsAsync(c, tenantId, chunk, found, ct).ConfigureAwait(false);
                }

                return found;
            },
            cancellationToken);
    }

    /// <inheritdoc />
    public Task<bool> UpdateAsync(Registration registration, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(registration);
        return WriteAsync((c, ct) => UpdateAsync(c, registration, _time.GetUtcNow(), ct), cancellationToken);
    }

    /// <inheritdoc />
    public Task<bool> DeleteAsync(string tenantId, string id, DateTimeOffset now, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(tenantId);
        ArgumentNullException.ThrowIfNull(id);
        return WriteAsync(
            async (c, ct) =>
            {
                await using (var delete = Pg.Command(c, DeleteRegistrationSql).Add("at", now).Add("id", id).Add("tenant_id", tenantId))
                {
                    if (await delete.ExecuteNonQueryAsync(ct).ConfigureAwait(false) == 0)
                    {
                        return false;
                    }
                }

                await using var batch = new NpgsqlBatch(c)
                {
                    BatchCommands = { FailPendingOfRegistration(id, "RegistrationDeleted", now), ForgetDeadTokens(id) },
                };
                await batch.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
                return true;
            },
            cancellationToken);
    }

    private static async Task<bool> UpdateAsync(NpgsqlConnection c, Registration registration, DateTimeOffset now, CancellationToken ct)
    {
        string token;
        string topic;
        PushEnvironment environment;
        RegistrationStatus status;
        await using (var select = Pg.Command(c, SelectEditableSql).Add("id", registration.Id).Add("tenant_id", registration.TenantId))
        await using (var reader = await select.ExecuteReaderAsync(ct).ConfigureAwait(false))
        {
            if (!await reader.ReadAsync(ct).ConfigureAwait(false))
            {
                return false;
            }

            token = reader.GetString(0);
            topic = reader.GetString(1);
            environment = (PushEnvironment)reader.GetInt16(2);
            status = (RegistrationStatus)reader.GetInt16(3);
        }

        var deleted = registration.Status == RegistrationStatus.Deleted;
        var newToken = deleted ? string.Empty : registration.Token;
        await using var batch = new NpgsqlBatch(c);
        batch.BatchCommands.Add(Pg.BatchCommand(UpdateRegistrationSql)
            .Add("token", newToken)
            .Add("topic", registration.Topic)
            .Add("environment", (short)registration.Environment)
            .Add("style", (short)registration.Style)
            .Add("folders", StorageJson.Serialize(registration.Folders ?? []))
            .Add("locale", registration.Locale)
            .Add("status", (short)registration.Status)
            .Add("inactive_reason", registration.InactiveReason)
            .Add("inactive_at", registration.InactiveAt)
            .Add("updated_at", now)
            .Add("id", registration.Id)
            .Add("token_fp", (long?)TokenFingerprint.Of(newToken))
            .Add("encryption_key", registration.EncryptionKey));

        if (registration.Status != RegistrationStatus.Active && status == RegistrationStatus.Active)
        {
            batch.BatchCommands.Add(FailPendingOfRegistration(registration.Id, deleted ? "RegistrationDeleted" : "RegistrationInactive", now));
        }

        if (deleted)
        {
            batch.BatchCommands.Add(ForgetDeadTokens(registration.Id));
        }

        if (!deleted && (newToken != token || registration.Topic != topic || registration.Environment != environment))
        {
            // Queued work follows the device to its new token (a rotation must not send to the old one).
            batch.BatchCommands.Add(Pg.BatchCommand(RetargetPendingSql)
                .Add("token", newToken)
                .Add("topic", registration.Topic)
                .Add("environment", (short)registration.Environment)
                .Add("registration_id", registration.Id));
        }

        await batch.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
        return true;
    }

    private static async Task ReadRegistrationsAsync(NpgsqlConnection c, string tenantId, List<string> ids, Dictionary<string, Registration> found, CancellationToken ct)
    {
        await using var command = Pg.Command(c, SelectRegistrationsByIdsSql).Add("ids", ids.ToArray()).Add("tenant_id", tenantId);
        await using var reader = await command.ExecuteReaderAsync(ct).ConfigureAwait(false);
        while (await reader.ReadAsync(ct).ConfigureAwait(false))
        {
            var registration = ReadRegistration(reader);
            found[registration.Id] = registration;
        }
    }

    private static NpgsqlBatchCommand ForgetDeadTokens(string registrationId)
        => Pg.BatchCommand(ForgetDeadTokensSql).Add("registration_id", registrationId);

    private static Registration ReadRegistration(NpgsqlDataReader reader) => new()
    {
        Id = reader.GetString(0),
        TenantId = reader.GetString(1),
        Platform = (Platform)reader.GetInt16(2),
        Token = reader.GetString(3),
        Topic = reader.GetString(4),
        Environment = (PushEnvironment)reader.GetInt16(5),
        Source = (SourceKind)reader.GetInt16(6),
        Style = (NotificationStyle)reader.GetInt16(7),
        Folders = StorageJson.DeserializeFolders(reader.GetString(8)),
        Locale = reader.GetString(9),
        Status = (RegistrationStatus)reader.GetInt16(10),
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
        MailboxHash = reader.IsDBNull(23) ? null : reader.GetFieldValue<byte[]>(23),
        SealedMailbox = reader.StringOrNull(24),
        EncryptionKey = reader.IsDBNull(25) ? null : reader.GetFieldValue<byte[]>(25),
    };
}
