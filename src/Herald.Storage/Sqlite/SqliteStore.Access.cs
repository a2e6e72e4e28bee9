using Herald.Core.Ports;
using Microsoft.Data.Sqlite;

namespace Herald.Storage.Sqlite;

public sealed partial class SqliteStore
{
    /// <summary>The tenant every install has; the admin key acts on it where a tenant is implied.</summary>
    public const string DefaultTenantId = "default";

    private const string InsertTenantIfMissingSql =
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
            s =>
            {
                using var reader = s.Statement(SelectApiKeySql, "@hash").Set(0, hash).Query();
                return reader.Read()
                    ? new ApiKeyRecord(
                        reader.GetString(0),
                        reader.GetString(1),
                        reader.Blob(2),
                        reader.GetInt64(3) != 0,
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
        return WriteAsync(
            s =>
            {
                var insert = s.Statement(InsertApiKeySql, "@id", "@tenant_id", "@hash", "@is_admin", "@created_at", "@revoked_at")
                    .Set(0, key.Id)
                    .Set(1, key.TenantId)
                    .Set(2, key.Hash)
                    .Set(3, key.IsAdmin ? 1 : 0)
                    .Set(4, key.CreatedAt)
                    .Set(5, key.RevokedAt);
                try
                {
                    insert.Execute();
                }
                catch (SqliteException ex) when (ex.SqliteErrorCode == SqliteConstraint)
                {
                    throw ex.SqliteExtendedErrorCode == SqliteConstraintForeignKey
                        ? new InvalidOperationException($"API key {key.Id}: tenant '{key.TenantId}' does not exist.", ex)
                        : new StoreConflictException($"An API key with id '{key.Id}' or the same hash already exists.", ex);
                }
            },
            cancellationToken);
    }

    /// <inheritdoc />
    public Task<bool> AnyActiveAdminKeyAsync(CancellationToken cancellationToken)
        => ReadAsync(static s => s.Statement(AnyActiveAdminKeySql).Scalar() is long exists && exists != 0, cancellationToken);

    /// <inheritdoc />
    public Task<bool> RevokeApiKeyAsync(string id, DateTimeOffset revokedAt, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(id);
        return WriteAsync(s => s.Statement(RevokeApiKeySql, "@at", "@id").Set(0, revokedAt).Set(1, id).Execute() > 0, cancellationToken);
    }

    /// <inheritdoc />
    public Task<Tenant?> GetTenantAsync(string id, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(id);
        return ReadAsync(
            s =>
            {
                using var reader = s.Statement(SelectTenantSql, "@id").Set(0, id).Query();
                return reader.Read() ? new Tenant(reader.GetString(0), reader.GetString(1), reader.Time(2)) : null;
            },
            cancellationToken);
    }

    /// <inheritdoc />
    /// <exception cref="StoreConflictException">A tenant with the id exists.</exception>
    public Task CreateTenantAsync(Tenant tenant, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(tenant);
        return WriteAsync(
            s =>
            {
                var insert = s.Statement(InsertTenantSql, "@id", "@name", "@created_at").Set(0, tenant.Id).Set(1, tenant.Name).Set(2, tenant.CreatedAt);
                try
                {
                    insert.Execute();
                }
                catch (SqliteException ex) when (ex.SqliteErrorCode == SqliteConstraint)
                {
                    throw new StoreConflictException($"A tenant with id '{tenant.Id}' already exists.", ex);
                }
            },
            cancellationToken);
    }
}
