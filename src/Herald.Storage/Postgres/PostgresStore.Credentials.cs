using System.Text.Json;
using Herald.Core.Credentials;
using Herald.Core.Ports;
using Herald.Core.Registrations;
using Npgsql;

namespace Herald.Storage.Postgres;

public sealed partial class PostgresStore : ICredentialStore
{
    private const string CredentialColumns = "tenant_id, platform, kind, sealed_secret, public_id, topics, thumbprint, expires_at, updated_at, version";

    // The row lock on the stamp also orders concurrent puts from several nodes: versions never repeat.
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

    private const string ResumeBacklogSql = """
        UPDATE notifications SET due_at = @now
        WHERE tenant_id = @tenant_id AND platform = @platform AND state = 2 AND due_at > @now
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

    // Several nodes claim at once: each takes events no other node is claiming.
    private const string ClaimWebhookSql = """
        UPDATE webhook_outbox SET lease_until = @lease_until, attempts = attempts + 1
        WHERE id IN (
            SELECT id FROM webhook_outbox
            WHERE state = 0 AND due_at <= @now AND (lease_until IS NULL OR lease_until <= @now)
            ORDER BY due_at LIMIT @limit
            FOR UPDATE SKIP LOCKED)
        RETURNING
        """ + " " + OutboxColumns;

    private const string CompleteWebhookSql = """
        UPDATE webhook_outbox SET state = @state, due_at = COALESCE(@due_at, due_at), lease_until = NULL, last_status = @status,
            last_error = @error, completed_at = CASE WHEN @state = 0 THEN NULL ELSE @completed END
        WHERE id = @id
        """;

    private const string SelectWebhookSql = "SELECT tenant_id, url, sealed_secret, updated_at FROM webhooks WHERE tenant_id = @tenant_id";

    private const string ListWebhookEventsSql = "SELECT " + OutboxColumns + " FROM webhook_outbox WHERE tenant_id = @tenant_id ORDER BY id DESC LIMIT @limit";

    /// <inheritdoc />
    public Task<StoredCredential> PutCredentialAsync(StoredCredential credential, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(credential);
        return WriteAsync(
            async (c, ct) =>
            {
                long version;
                await using (var bump = Pg.Command(c, BumpCredentialStampSql))
                {
                    version = (long)(await bump.ExecuteScalarAsync(ct).ConfigureAwait(false))!;
                }

                var stored = credential with { Version = version };
                await using var upsert = Pg.Command(c, UpsertCredentialSql)
                    .Add("tenant_id", stored.TenantId)
                    .Add("platform", (short)stored.Platform)
                    .Add("kind", stored.Kind)
                    .Add("sealed_secret", stored.SealedSecret)
                    .Add("public_id", stored.PublicId)
                    .Add("topics", JsonSerializer.Serialize(stored.Topics, StorageJsonContext.Default.IReadOnlyListString))
                    .Add("thumbprint", stored.Thumbprint)
                    .Add("expires_at", stored.ExpiresAt)
                    .Add("updated_at", stored.UpdatedAt)
                    .Add("version", version);
                try
                {
                    await upsert.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
                }
                catch (PostgresException ex) when (ex.IsForeignKeyViolation())
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
            async (c, ct) =>
            {
                await using var command = Pg.Command(c, SelectCredentialSql).Add("tenant_id", tenantId).Add("platform", (short)platform);
                await using var reader = await command.ExecuteReaderAsync(ct).ConfigureAwait(false);
                return await reader.ReadAsync(ct).ConfigureAwait(false) ? ReadCredential(reader) : null;
            },
            cancellationToken);
    }

    /// <inheritdoc />
    public Task<IReadOnlyList<StoredCredential>> ListCredentialsAsync(string? tenantId, CancellationToken cancellationToken)
        => ReadAsync<IReadOnlyList<StoredCredential>>(
            async (c, ct) =>
            {
                var list = new List<StoredCredential>();
                await using var command = tenantId is null
                    ? Pg.Command(c, SelectAllCredentialsSql)
                    : Pg.Command(c, SelectTenantCredentialsSql).Add("tenant_id", tenantId);
                await using var reader = await command.ExecuteReaderAsync(ct).ConfigureAwait(false);
                while (await reader.ReadAsync(ct).ConfigureAwait(false))
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
            async (c, ct) =>
            {
                await using (var delete = Pg.Command(c, DeleteCredentialSql).Add("tenant_id", tenantId).Add("platform", (short)platform))
                {
                    if (await delete.ExecuteNonQueryAsync(ct).ConfigureAwait(false) == 0)
                    {
                        return false;
                    }
                }

                await using var bump = Pg.Command(c, BumpCredentialStampSql);
                await bump.ExecuteScalarAsync(ct).ConfigureAwait(false);
                return true;
            },
            cancellationToken);
    }

    /// <inheritdoc />
    public Task<long> CredentialsStampAsync(CancellationToken cancellationToken)
        => ReadAsync(
            static async (c, ct) =>
            {
                await using var command = Pg.Command(c, "SELECT stamp FROM credential_stamp WHERE id = 1");
                return await command.ExecuteScalarAsync(ct).ConfigureAwait(false) is long stamp ? stamp : 0L;
            },
            cancellationToken);

    /// <inheritdoc />
    public Task<int> ResumeBacklogAsync(string tenantId, Platform platform, DateTimeOffset now, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(tenantId);
        return WriteAsync(
            async (c, ct) =>
            {
                await using var batch = new NpgsqlBatch(c)
                {
                    BatchCommands =
                    {
                        Pg.BatchCommand(ResumeBacklogSql).Add("now", now).Add("tenant_id", tenantId).Add("platform", (short)platform),
                        Pg.BatchCommand(NotifySql),
                    },
                };
                await batch.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
                return batch.BatchCommands[0].RecordsAffected;
            },
            cancellationToken);
    }

    /// <inheritdoc />
    public Task PutWebhookAsync(WebhookRecord webhook, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(webhook);
        return ExecuteOnceAsync(
            Pg.BatchCommand(UpsertWebhookSql)
                .Add("tenant_id", webhook.TenantId)
                .Add("url", webhook.Url)
                .Add("sealed_secret", webhook.SealedSecret)
                .Add("updated_at", webhook.UpdatedAt),
            ex => new InvalidOperationException($"Tenant '{webhook.TenantId}' does not exist.", ex),
            cancellationToken);
    }

    /// <inheritdoc />
    public Task<WebhookRecord?> GetWebhookAsync(string tenantId, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(tenantId);
        return ReadAsync(
            async (c, ct) =>
            {
                await using var command = Pg.Command(c, SelectWebhookSql).Add("tenant_id", tenantId);
                await using var reader = await command.ExecuteReaderAsync(ct).ConfigureAwait(false);
                return await reader.ReadAsync(ct).ConfigureAwait(false)
                    ? new WebhookRecord(reader.GetString(0), reader.GetString(1), reader.GetString(2), reader.Time(3))
                    : null;
            },
            cancellationToken);
    }

    /// <inheritdoc />
    public Task<bool> DeleteWebhookAsync(string tenantId, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(tenantId);
        return WriteAsync(
            async (c, ct) =>
            {
                await using var batch = new NpgsqlBatch(c)
                {
                    BatchCommands =
                    {
                        Pg.BatchCommand("DELETE FROM webhook_outbox WHERE tenant_id = @tenant_id AND state = 0").Add("tenant_id", tenantId),
                        Pg.BatchCommand("DELETE FROM webhooks WHERE tenant_id = @tenant_id").Add("tenant_id", tenantId),
                    },
                };
                await batch.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
                return batch.BatchCommands[1].RecordsAffected > 0;
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
            async (c, ct) =>
            {
                await using var batch = new NpgsqlBatch(c);
                foreach (var e in events)
                {
                    batch.BatchCommands.Add(Pg.BatchCommand(EnqueueWebhookSql).Add("tenant_id", e.TenantId).Add("type", e.Type).Add("body", e.Body).Add("created_at", e.CreatedAt));
                }

                await batch.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
                var stored = 0;
                foreach (var command in batch.BatchCommands)
                {
                    stored += command.RecordsAffected;
                }

                return stored;
            },
            cancellationToken);
    }

    /// <inheritdoc />
    public Task<IReadOnlyList<WebhookDelivery>> ClaimWebhookEventsAsync(DateTimeOffset now, TimeSpan lease, int limit, CancellationToken cancellationToken)
        => WriteAsync<IReadOnlyList<WebhookDelivery>>(
            async (c, ct) =>
            {
                var list = new List<WebhookDelivery>();
                await using var command = Pg.Command(c, ClaimWebhookSql).Add("lease_until", now + lease).Add("now", now).Add("limit", limit);
                await using var reader = await command.ExecuteReaderAsync(ct).ConfigureAwait(false);
                while (await reader.ReadAsync(ct).ConfigureAwait(false))
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
            async (c, ct) =>
            {
                await using var command = Pg.Command(c, CompleteWebhookSql)
                    .Add("state", (short)state)
                    .Add("due_at", result.RetryAt)
                    .Add("status", result.Status)
                    .Add("error", result.Error)
                    .Add("completed", _time.GetUtcNow())
                    .Add("id", id);
                return await command.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
            },
            cancellationToken);
    }

    /// <inheritdoc />
    public Task<IReadOnlyList<WebhookDelivery>> ListWebhookEventsAsync(string tenantId, int limit, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(tenantId);
        return ReadAsync<IReadOnlyList<WebhookDelivery>>(
            async (c, ct) =>
            {
                var list = new List<WebhookDelivery>();
                await using var command = Pg.Command(c, ListWebhookEventsSql).Add("tenant_id", tenantId).Add("limit", limit);
                await using var reader = await command.ExecuteReaderAsync(ct).ConfigureAwait(false);
                while (await reader.ReadAsync(ct).ConfigureAwait(false))
                {
                    list.Add(ReadDelivery(reader));
                }

                return list;
            },
            cancellationToken);
    }

    private static StoredCredential ReadCredential(NpgsqlDataReader reader) => new(
        reader.GetString(0),
        (Platform)reader.GetInt16(1),
        reader.GetString(2),
        reader.GetString(3),
        reader.StringOrNull(4),
        JsonSerializer.Deserialize(reader.GetString(5), StorageJsonContext.Default.IReadOnlyListString) ?? [],
        reader.StringOrNull(6),
        reader.TimeOrNull(7),
        reader.Time(8),
        reader.GetInt64(9));

    private static WebhookDelivery ReadDelivery(NpgsqlDataReader reader) => new(
        reader.GetInt64(0),
        reader.GetString(1),
        reader.GetString(2),
        reader.GetString(3),
        reader.Time(4),
        reader.GetInt32(5),
        reader.Time(6),
        reader.GetInt16(7),
        reader.GetInt32(8),
        reader.StringOrNull(9));
}
