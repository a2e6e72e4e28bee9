using Herald.Core.Ports;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace Herald.Storage.Postgres;

public sealed partial class PostgresStore
{
    /// <summary>The tenant every install has (the same as the SQLite store's).</summary>
    public const string DefaultTenantId = Sqlite.SqliteStore.DefaultTenantId;

    internal const string InsertTenantIfMissingSql =
        "INSERT INTO tenants (id, name, created_at) VALUES (@id, @name, @created_at) ON CONFLICT (id) DO NOTHING";

    private const string InsertTenantSql = "INSERT INTO tenants (id, name, created_at) VALUES (@id, @name, @created_at)";

    private const string SelectTenantSql = "SELECT id, name, created_at FROM tenants WHERE id = @id";

    private const string SelectApiKeySql = "SELECT id, tenant_id, hash, is_admin, created_at, revoked_at FROM api_keys WHERE hash = @hash";

    private const string InsertApiKeySql = """
        INSERT INTO api_keys (id, tenant_id, hash, is_admin, created_at, revoked_at)
        VALUES (@id, @tenant_id, @hash, @is_admin, @created_at, @revoked_at)
        """;

    private const string AnyActiveAdminKeySql = "SELECT EXISTS (SELECT 1 FROM api_keys WHERE is_admin = 1 AND revoked_at IS NULL)";

    private const string RevokeApiKeySql = "UPDATE api_keys SET revoked_at = @at WHERE id = @id AND revoked_at IS NULL";

    /// <inheritdoc />
    public Task<ApiKeyRecord?> FindApiKeyAsync(byte[] hash, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(hash);
        return ReadAsync(
            async (c, ct) =>
            {
                await using var command = Pg.Command(c, SelectApiKeySql).Add("hash", hash);
                await using var reader = await command.ExecuteReaderAsync(ct).ConfigureAwait(false);
                return await reader.ReadAsync(ct).ConfigureAwait(false)
                    ? new ApiKeyRecord(
                        reader.GetString(0),
                        reader.GetString(1),
                        reader.GetFieldValue<byte[]>(2),
                        reader.GetInt16(3) != 0,
                        reader.Time(4),
                        reader.TimeOrNull(5))
                    : null;
            },
            cancellationToken);
    }

    /// <inheritdoc />
    /// <exception cref="StoreConflictException">The id or the hash is already stored.</exception>
    /// <exception cref="InvalidOperationException">The tenant does not exist.</exception>
    public Task AddApiKeyAsync(ApiKeyRecord key, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(key);
        ArgumentNullException.ThrowIfNull(key.Hash, nameof(key));
        return ExecuteOnceAsync(
            Pg.BatchCommand(InsertApiKeySql)
                .Add("id", key.Id)
                .Add("tenant_id", key.TenantId)
                .Add("hash", key.Hash)
                .Add("is_admin", (short)(key.IsAdmin ? 1 : 0))
                .Add("created_at", key.CreatedAt)
                .Add("revoked_at", key.RevokedAt),
            ex => ex.IsForeignKeyViolation()
                ? new InvalidOperationException($"API key {key.Id}: tenant '{key.TenantId}' does not exist.", ex)
                : new StoreConflictException($"An API key with id '{key.Id}' or the same hash already exists.", ex),
            cancellationToken);
    }

    /// <inheritdoc />
    public Task<bool> AnyActiveAdminKeyAsync(CancellationToken cancellationToken)
        => ReadAsync(
            static async (c, ct) =>
            {
                await using var command = Pg.Command(c, AnyActiveAdminKeySql);
                return await command.ExecuteScalarAsync(ct).ConfigureAwait(false) is true;
            },
            cancellationToken);

    /// <inheritdoc />
    public Task<bool> RevokeApiKeyAsync(string id, DateTimeOffset revokedAt, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(id);
        return WriteAsync(
            async (c, ct) =>
            {
                await using var command = Pg.Command(c, RevokeApiKeySql).Add("at", revokedAt).Add("id", id);
                return await command.ExecuteNonQueryAsync(ct).ConfigureAwait(false) > 0;
            },
            cancellationToken);
    }

    /// <inheritdoc />
    public Task<Tenant?> GetTenantAsync(string id, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(id);
        return ReadAsync(
            async (c, ct) =>
            {
                await using var command = Pg.Command(c, SelectTenantSql).Add("id", id);
                await using var reader = await command.ExecuteReaderAsync(ct).ConfigureAwait(false);
                return await reader.ReadAsync(ct).ConfigureAwait(false) ? new Tenant(reader.GetString(0), reader.GetString(1), reader.Time(2)) : null;
            },
            cancellationToken);
    }

    /// <inheritdoc />
    /// <exception cref="StoreConflictException">A tenant with the id exists.</exception>
    public Task CreateTenantAsync(Tenant tenant, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(tenant);
        return ExecuteOnceAsync(
            Pg.BatchCommand(InsertTenantSql).Add("id", tenant.Id).Add("name", tenant.Name).Add("created_at", tenant.CreatedAt),
            ex => new StoreConflictException($"A tenant with id '{tenant.Id}' already exists.", ex),
            cancellationToken);
    }

    /// <summary>
    /// Runs one insert on its own (an implicit transaction); a unique or foreign key violation becomes what
    /// <paramref name="conflict"/> makes of it.
    /// </summary>
    private async Task ExecuteOnceAsync(NpgsqlBatchCommand insert, Func<PostgresException, Exception> conflict, CancellationToken cancellationToken)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var batch = new NpgsqlBatch(connection) { BatchCommands = { insert } };
        try
        {
            await batch.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (PostgresException ex) when (ex.IsUniqueViolation() || ex.IsForeignKeyViolation())
        {
            throw conflict(ex);
        }
    }

    internal static void LogMigrated(ILogger logger, int version, string name, string target) => Log.Migrated(logger, version, name, target);
}
