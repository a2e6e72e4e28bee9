namespace Herald.Core.Ports;

/// <summary>A tenant: the unit of isolation for registrations, credentials and keys.</summary>
public sealed record Tenant(string Id, string Name, DateTimeOffset CreatedAt);

/// <summary>An API key as stored: only its hash.</summary>
public sealed record ApiKeyRecord(string Id, string TenantId, byte[] Hash, bool IsAdmin, DateTimeOffset CreatedAt, DateTimeOffset? RevokedAt);

/// <summary>Tenants and API keys.</summary>
public interface IAccessStore
{
    Task<ApiKeyRecord?> FindApiKeyAsync(byte[] hash, CancellationToken cancellationToken);
    Task AddApiKeyAsync(ApiKeyRecord key, CancellationToken cancellationToken);
    Task<bool> AnyActiveAdminKeyAsync(CancellationToken cancellationToken);
    Task<Tenant?> GetTenantAsync(string id, CancellationToken cancellationToken);
    Task CreateTenantAsync(Tenant tenant, CancellationToken cancellationToken);
}

/// <summary>Schema lifecycle and liveness of the store.</summary>
public interface IStoreAdmin
{
    /// <summary>Creates or migrates the schema; idempotent.</summary>
    Task MigrateAsync(CancellationToken cancellationToken);

    /// <summary>A cheap round trip proving the store answers.</summary>
    Task<bool> PingAsync(CancellationToken cancellationToken);
}
