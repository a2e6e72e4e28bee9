using Herald.Core.Connectors;

namespace Herald.Core.Ports;

/// <summary>Connectors as stored (settings sealed); <see cref="ConnectorService"/> opens them.</summary>
public interface IConnectorStore
{
    /// <summary>Creates or replaces the tenant's connector <see cref="ConnectorRecord.Name"/>; the creation time of a replaced one is kept.</summary>
    Task UpsertConnectorAsync(ConnectorRecord connector, CancellationToken cancellationToken);

    /// <summary>The tenant's connector, or null.</summary>
    Task<ConnectorRecord?> GetConnectorAsync(string tenantId, string name, CancellationToken cancellationToken);

    /// <summary>The tenant's connectors by name, or every tenant's when <paramref name="tenantId"/> is null.</summary>
    Task<IReadOnlyList<ConnectorRecord>> ListConnectorsAsync(string? tenantId, CancellationToken cancellationToken);

    /// <summary>Deletes the connector; false when there was none.</summary>
    Task<bool> DeleteConnectorAsync(string tenantId, string name, CancellationToken cancellationToken);
}
