using System.Text.Json;
using System.Text.Json.Serialization;
using Herald.Core.Ports;
using Herald.Core.Security;

namespace Herald.Core.Connectors;

/// <summary>
/// The tenants' connectors with their settings opened: seals settings (secrets included) on save with the
/// <see cref="SecretBox"/>, so the database never holds a connector password or client secret in clear.
/// </summary>
public sealed class ConnectorService(IConnectorStore store, SecretBox secrets, TimeProvider time)
{
    /// <summary>The sealing purpose of connector settings.</summary>
    public const string Purpose = "connector";

    /// <summary>Raised on this node after a connector was saved (the new one) or deleted (the old one).</summary>
    public event Action<Connector>? Changed;

    /// <summary>The tenant's connector, or null.</summary>
    public async Task<Connector?> GetAsync(string tenantId, string name, CancellationToken cancellationToken)
    {
        var record = await store.GetConnectorAsync(tenantId, name, cancellationToken).ConfigureAwait(false);
        return record is null ? null : Open(record);
    }

    /// <summary>The tenant's connectors by name, or every tenant's when <paramref name="tenantId"/> is null (workers).</summary>
    public async Task<IReadOnlyList<Connector>> ListAsync(string? tenantId, CancellationToken cancellationToken)
    {
        var records = await store.ListConnectorsAsync(tenantId, cancellationToken).ConfigureAwait(false);
        var list = new List<Connector>(records.Count);
        foreach (var record in records)
        {
            list.Add(Open(record));
        }

        return list;
    }

    /// <summary>Creates or replaces a connector; returns it as stored (times set).</summary>
    public async Task<Connector> SaveAsync(Connector connector, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(connector);
        var now = time.GetUtcNow();
        var existing = await store.GetConnectorAsync(connector.TenantId, connector.Name, cancellationToken).ConfigureAwait(false);
        var json = JsonSerializer.Serialize(connector.Config, ConnectorJsonContext.Default.ConnectorConfig);
        var record = new ConnectorRecord(connector.TenantId, connector.Name, connector.Kind, secrets.Seal(json, Purpose), existing?.CreatedAt ?? now, now);
        await store.UpsertConnectorAsync(record, cancellationToken).ConfigureAwait(false);
        var saved = new Connector
        {
            TenantId = record.TenantId,
            Name = record.Name,
            Kind = record.Kind,
            Config = connector.Config,
            CreatedAt = record.CreatedAt,
            UpdatedAt = record.UpdatedAt,
        };
        Changed?.Invoke(saved);
        return saved;
    }

    /// <summary>Deletes a connector; false when there was none.</summary>
    public async Task<bool> DeleteAsync(string tenantId, string name, CancellationToken cancellationToken)
    {
        var record = await store.GetConnectorAsync(tenantId, name, cancellationToken).ConfigureAwait(false);
        if (record is null || !await store.DeleteConnectorAsync(tenantId, name, cancellationToken).ConfigureAwait(false))
        {
            return false;
        }

        Changed?.Invoke(Open(record));
        return true;
    }

    private Connector Open(ConnectorRecord record)
    {
        var json = secrets.Open(record.SealedConfig, Purpose);
        var config = JsonSerializer.Deserialize(json, ConnectorJsonContext.Default.ConnectorConfig)
            ?? throw new InvalidDataException($"Connector {record.TenantId}/{record.Name} has empty settings.");
        return new Connector
        {
            TenantId = record.TenantId,
            Name = record.Name,
            Kind = record.Kind,
            Config = config,
            CreatedAt = record.CreatedAt,
            UpdatedAt = record.UpdatedAt,
        };
    }
}

/// <summary>Source-generated JSON for connector settings as sealed at rest.</summary>
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(ConnectorConfig))]
internal sealed partial class ConnectorJsonContext : JsonSerializerContext;
