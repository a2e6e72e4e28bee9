using System.Text.Json;
using Herald.Core.Credentials;
using Herald.Core.Ports;
using Herald.Core.Registrations;
using Microsoft.Data.Sqlite;

namespace Herald.Storage.Sqlite;

public sealed partial class SqliteStore : ICredentialStore
{
    private const string CredentialColumns = "tenant_id, platform, kind, sealed_secret, public_id, topics, thumbprint, expires_at, updated_at, version";

    private const string BumpCredentialStampSql = "UPDATE credential_stamp SET stamp = stamp + 1 WHERE id = 1 RETURNING stamp";

    private const string UpsertCredentialSql = """
        INSERT INTO credentials (tenant_id, platform, kind, sealed_secret, public_id, topics, thumbprint, expires_at, updated_at, version)
        VALUES (@tenant_id, @platform, @kind, @sealed_secret, @public_id, @topics, @thumbprint, @expires_at, @updated_at, @version)
        ON CONFLICT (tenant_id, platform) DO UPDATE
        SET kind = excluded.kind, sealed_secret = excluded.sealed_secret, public_id = excluded.public_id, topics = excluded.topics,
            thumbprint = excluded.thumbprint, expires_at = excluded.expires_at, updated_at = excluded.updated_at, version = excluded.version
        """;

    private const string SelectCredentialSql = "SELECT " + CredentialColumns + " FROM credentials WHERE tenant_id = @tenant_id AND platform = @platform";
    private const string SelectTenantCredentialsSql = "SELECT " + CredentialColumns + " FROM credentials WHERE tenant_id = @tenant_id ORDER BY platform";
    private const string SelectAllCredentialsSql = "SELECT " + CredentialColumns + " FROM credentials ORDER BY tenant_id, platform";
    private const string DeleteCredentialSql = "DELETE FROM credentials WHERE tenant_id = @tenant_id AND platform = @platform";

    // Spelled so the pending index (lane, tenant_id, due_at) WHERE state IN (0, 2) serves it: no scan of the whole table.
    private const string ResumeBacklogSql = """
        UPDATE notifications SET due_at = @now
        WHERE lane IN (0, 1) AND tenant_id = @tenant_id AND due_at > @now AND state IN (0, 2)
          AND state = 2 AND platform = @platform
        """;

    private const string UpsertWebhookSql = """
        INSERT INTO webhooks (tenant_id, url, sealed_secret, updated_at) VALUES (@tenant_id, @url, @sealed_secret, @updated_at)
        ON CONFLICT (tenant_id) DO UPDATE SET url = excluded.url, sealed_secret = excluded.sealed_secret, updated_at = excluded.updated_at
        """;

    private const string OutboxColumns = "id, tenant_id, type, body, created_at, attempts, due_at, state, last_status, last_error";

    private const string EnqueueWebhookSql = """
        INSERT INTO webhook_outbox (tenant_id, type, body, created_at, due_at)
        SELECT @tenant_id, @type, @body, @created_at, @created_at WHERE EXISTS (SELECT 1 FROM webhooks WHERE tenant_id = @tenant_id)
        """;

    private const string ClaimWebhookSql = """
        UPDATE webhook_outbox SET lease_until = @lease_until, attempts = attempts + 1
        WHERE id IN (
            SELECT id FROM webhook_outbox
            WHERE state = 0 AND due_at <= @now AND (lease_until IS NULL OR lease_until <= @now)
            ORDER BY due_at LIMIT @limit)
        RETURNING
        """ + " " + OutboxColumns;

    /// <inheritdoc />
    public Task<StoredCredential> PutCredentialAsync(StoredCredential credential, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(credential);
        return WriteAsync(
            s =>
            {
                var version = (long)s.Statement(BumpCredentialStampSql).Scalar()!;
                var stored = credential with { Version = version };
                try
                {
                    s.Statement(UpsertCredentialSql, "@tenant_id", "@platform", "@kind", "@sealed_secret", "@public_id", "@topics", "@thumbprint", "@expires_at", "@updated_at", "@version")
                        .Set(0, stored.TenantId)
                        .Set(1, (long)stored.Platform)
                        .Set(2, stored.Kind)
                        .Set(3, stored.SealedSecret)
                        .Set(4, stored.PublicId)
                        .Set(5, JsonSerializer.Serialize(stored.Topics, StorageJsonContext.Default.IReadOnlyListString))
                        .Set(6, stored.Thumbprint)
                        .Set(7, stored.ExpiresAt)
                        .Set(8, stored.UpdatedAt)
                        .Set(9, version)
                        .Execute();
                }
                catch (SqliteException ex) when (ex.SqliteErrorCode == SqliteConstraint && ex.SqliteExtendedErrorCode == SqliteConstraintForeignKey)
                {
                    throw new InvalidOperationException($"Tenant '{credential.TenantId}' does not exist.", ex);
                }

                return stored;
            },
            cancellationToken);
    }

    /// <inheritdoc />
    public Task<StoredCredential?> GetCredentialAsync(string tenantId, Platform platform, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(tenantId);
        return ReadAsync(
            s =>
            {
                using var reader = s.Statement(SelectCredentialSql, "@tenant_id", "@platform").Set(0, tenantId).Set(1, (long)platform).Query();
                return reader.Read() ? ReadCredential(reader) : null;
            },
            cancellationToken);
    }

    /// <inheritdoc />
    public Task<IReadOnlyList<StoredCredential>> ListCredentialsAsync(string? tenantId, CancellationToken cancellationToken)
        => ReadAsync<IReadOnlyList<StoredCredential>>(
            s =>
            {
                var list = new List<StoredCredential>();
                using var reader = tenantId is null
                    ? s.Statement(SelectAllCredentialsSql).Query()
                    : s.Statement(SelectTenantCredentialsSql, "@tenant_id").Set(0, tenantId).Query();
                while (reader.Read())
                {
                    list.Add(ReadCredential(reader));
                }

                return list;
            },
            cancellationToken);

    /// <inheritdoc />
    public Task<bool> DeleteCredentialAsync(string tenantId, Platform platform, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(tenantId);
        return WriteAsync(
            s =>
            {
                var deleted = s.Statement(DeleteCredentialSql, "@tenant_id", "@platform").Set(0, tenantId).Set(1, (long)platform).Execute() > 0;
                if (deleted)
                {
                    s.Statement(BumpCredentialStampSql).Scalar();
                }

                return deleted;
            },
            cancellationToken);
    }

    /// <inheritdoc />
    public Task<long> CredentialsStampAsync(CancellationToken cancellationToken)
        => ReadAsync(s => (long)(s.Statement("SELECT stamp FROM credential_stamp WHERE id = 1").Scalar() ?? 0L), cancellationToken);

    /// <inheritdoc />
    public Task<int> ResumeBacklogAsync(string tenantId, Platform platform, DateTimeOffset now, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(tenantId);
        return WriteAsync(
            s => s.Statement(ResumeBacklogSql, "@now", "@tenant_id", "@platform").Set(0, now).Set(1, tenantId).Set(2, (long)platform).Execute(),
            cancellationToken);
    }

    /// <inheritdoc />
    public Task PutWebhookAsync(WebhookRecord webhook, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(webhook);
        return WriteAsync(
            s =>
            {
                try
                {
                    s.Statement(UpsertWebhookSql, "@tenant_id", "@url", "@sealed_secret", "@updated_at")
                        .Set(0, webhook.TenantId).Set(1, webhook.Url).Set(2, webhook.SealedSecret).Set(3, webhook.UpdatedAt).Execute();
                }
                catch (SqliteException ex) when (ex.SqliteErrorCode == SqliteConstraint && ex.SqliteExtendedErrorCode == SqliteConstraintForeignKey)
                {
                    throw new InvalidOperationException($"Tenant '{webhook.TenantId}' does not exist.", ex);
                }
            },
            cancellationToken);
    }

    /// <inheritdoc />
    public Task<WebhookRecord?> GetWebhookAsync(string tenantId, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(tenantId);
        return ReadAsync(
            s =>
            {
                using var reader = s.Statement("SELECT tenant_id, url, sealed_secret, updated_at FROM webhooks WHERE tenant_id = @tenant_id", "@tenant_id").Set(0, tenantId).Query();
                return reader.Read() ? new WebhookRecord(reader.GetString(0), reader.GetString(1), reader.GetString(2), reader.Time(3)) : null;
            },
            cancellationToken);
    }

    /// <inheritdoc />
    public Task<bool> DeleteWebhookAsync(string tenantId, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(tenantId);
        return WriteAsync(
            s =>
            {
                s.Statement("DELETE FROM webhook_outbox WHERE tenant_id = @tenant_id AND state = 0", "@tenant_id").Set(0, tenantId).Execute();
                return s.Statement("DELETE FROM webhooks WHERE tenant_id = @tenant_id", "@tenant_id").Set(0, tenantId).Execute() > 0;
            },
            cancellationToken);
    }

    /// <inheritdoc />
    public Task<int> EnqueueWebhookEventsAsync(IReadOnlyList<WebhookEvent> events, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(events);
        if (events.Count == 0)
        {
            return Task.FromResult(0);
        }

        return WriteAsync(
            s =>
            {
                var stored = 0;
                using var insert = s.Statement(EnqueueWebhookSql, "@tenant_id", "@type", "@body", "@created_at");
                foreach (var e in events)
                {
                    stored += insert.Set(0, e.TenantId).Set(1, e.Type).Set(2, e.Body).Set(3, e.CreatedAt).Execute();
                }

                return stored;
            },
            cancellationToken);
    }

    /// <inheritdoc />
    public Task<IReadOnlyList<WebhookDelivery>> ClaimWebhookEventsAsync(DateTimeOffset now, TimeSpan lease, int limit, CancellationToken cancellationToken)
        => WriteAsync<IReadOnlyList<WebhookDelivery>>(
            s =>
            {
                var list = new List<WebhookDelivery>();
                using var reader = s.Statement(ClaimWebhookSql, "@lease_until", "@now", "@limit").Set(0, now + lease).Set(1, now).Set(2, (long)limit).Query();
                while (reader.Read())
                {
                    list.Add(ReadDelivery(reader));
                }

                return list;
            },
            cancellationToken);

    /// <inheritdoc />
    public Task CompleteWebhookEventAsync(long id, WebhookAttemptResult result, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(result);
        var state = result.Delivered ? WebhookStates.Delivered : result.RetryAt is null ? WebhookStates.Failed : WebhookStates.Pending;
        return WriteAsync(
            s => s.Statement(
                    "UPDATE webhook_outbox SET state = @state, due_at = COALESCE(@due_at, due_at), lease_until = NULL, last_status = @status, last_error = @error, completed_at = CASE WHEN @state = 0 THEN NULL ELSE @completed END WHERE id = @id",
                    "@state", "@due_at", "@status", "@error", "@completed", "@id")
                .Set(0, (long)state)
                .Set(1, result.RetryAt)
                .Set(2, (long)result.Status)
                .Set(3, result.Error)
                .Set(4, DateTimeOffset.UtcNow)
                .Set(5, id)
                .Execute(),
            cancellationToken);
    }

    /// <inheritdoc />
    public Task<IReadOnlyList<WebhookDelivery>> ListWebhookEventsAsync(string tenantId, int limit, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(tenantId);
        return ReadAsync<IReadOnlyList<WebhookDelivery>>(
            s =>
            {
                var list = new List<WebhookDelivery>();
                using var reader = s.Statement("SELECT " + OutboxColumns + " FROM webhook_outbox WHERE tenant_id = @tenant_id ORDER BY id DESC LIMIT @limit", "@tenant_id", "@limit")
                    .Set(0, tenantId).Set(1, (long)limit).Query();
                while (reader.Read())
                {
                    list.Add(ReadDelivery(reader));
                }

                return list;
            },
            cancellationToken);
    }

    private static StoredCredential ReadCredential(SqliteDataReader reader) => new(
        reader.GetString(0),
        (Platform)reader.GetInt32(1),
        reader.GetString(2),
        reader.GetString(3),
        reader.StringOrNull(4),
        JsonSerializer.Deserialize(reader.GetString(5), StorageJsonContext.Default.IReadOnlyListString) ?? [],
        reader.StringOrNull(6),
        reader.Int64OrNull(7) is { } expires ? Db.Time(expires) : null,
        reader.Time(8),
        reader.GetInt64(9));

    private static WebhookDelivery ReadDelivery(SqliteDataReader reader) => new(
        reader.GetInt64(0),
        reader.GetString(1),
        reader.GetString(2),
        reader.GetString(3),
        reader.Time(4),
        reader.GetInt32(5),
        reader.Time(6),
        reader.GetInt32(7),
        reader.GetInt32(8),
        reader.StringOrNull(9));
}
