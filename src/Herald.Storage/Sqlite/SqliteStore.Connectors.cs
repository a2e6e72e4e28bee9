using Herald.Core.Connectors;
using Herald.Core.Ports;
using Herald.Core.Registrations;
using Microsoft.Data.Sqlite;

namespace Herald.Storage.Sqlite;

public sealed partial class SqliteStore : IConnectorStore, IMailboxDirectory
{
    private const string ConnectorColumns = "tenant_id, name, kind, sealed_config, created_at, updated_at";

    private const string UpsertConnectorSql = """
        INSERT INTO connectors (tenant_id, name, kind, sealed_config, created_at, updated_at)
        VALUES (@tenant_id, @name, @kind, @sealed_config, @created_at, @updated_at)
        ON CONFLICT (tenant_id, name) DO UPDATE
        SET kind = excluded.kind, sealed_config = excluded.sealed_config, updated_at = excluded.updated_at
        """;

    private const string SelectConnectorSql = "SELECT " + ConnectorColumns + " FROM connectors WHERE tenant_id = @tenant_id AND name = @name";
    private const string SelectTenantConnectorsSql = "SELECT " + ConnectorColumns + " FROM connectors WHERE tenant_id = @tenant_id ORDER BY name";
    private const string SelectAllConnectorsSql = "SELECT " + ConnectorColumns + " FROM connectors ORDER BY tenant_id, name";
    private const string DeleteConnectorSql = "DELETE FROM connectors WHERE tenant_id = @tenant_id AND name = @name";

    private const string SelectMailboxRegistrationsSql =
        "SELECT " + RegistrationColumns + " FROM registrations WHERE tenant_id = @tenant_id AND connector = @connector AND status = 0 AND mailbox_hash IS NOT NULL ORDER BY id";

    private const string CountMailboxRegistrationsSql =
        "SELECT COUNT(*) FROM registrations WHERE tenant_id = @tenant_id AND connector = @connector AND status = 0";

    /// <inheritdoc />
    /// <exception cref="InvalidOperationException">The tenant does not exist.</exception>
    public Task UpsertConnectorAsync(ConnectorRecord connector, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(connector);
        return WriteAsync(
            s =>
            {
                try
                {
                    s.Statement(UpsertConnectorSql, "@tenant_id", "@name", "@kind", "@sealed_config", "@created_at", "@updated_at")
                        .Set(0, connector.TenantId)
                        .Set(1, connector.Name)
                        .Set(2, (long)connector.Kind)
                        .Set(3, connector.SealedConfig)
                        .Set(4, connector.CreatedAt)
                        .Set(5, connector.UpdatedAt)
                        .Execute();
                }
                catch (SqliteException ex) when (ex.SqliteErrorCode == SqliteConstraint && ex.SqliteExtendedErrorCode == SqliteConstraintForeignKey)
                {
                    throw new InvalidOperationException($"Connector {connector.Name}: tenant '{connector.TenantId}' does not exist.", ex);
                }
            },
            cancellationToken);
    }

    /// <inheritdoc />
    public Task<ConnectorRecord?> GetConnectorAsync(string tenantId, string name, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(tenantId);
        ArgumentNullException.ThrowIfNull(name);
        return ReadAsync(
            s =>
            {
                using var reader = s.Statement(SelectConnectorSql, "@tenant_id", "@name").Set(0, tenantId).Set(1, name).Query();
                return reader.Read() ? ReadConnector(reader) : null;
            },
            cancellationToken);
    }

    /// <inheritdoc />
    public Task<IReadOnlyList<ConnectorRecord>> ListConnectorsAsync(string? tenantId, CancellationToken cancellationToken)
        => ReadAsync<IReadOnlyList<ConnectorRecord>>(
            s =>
            {
                var list = new List<ConnectorRecord>();
                using var reader = tenantId is null
                    ? s.Statement(SelectAllConnectorsSql).Query()
                    : s.Statement(SelectTenantConnectorsSql, "@tenant_id").Set(0, tenantId).Query();
                while (reader.Read())
                {
                    list.Add(ReadConnector(reader));
                }

                return list;
            },
            cancellationToken);

    /// <inheritdoc />
    public Task<bool> DeleteConnectorAsync(string tenantId, string name, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(tenantId);
        ArgumentNullException.ThrowIfNull(name);
        return WriteAsync(s => s.Statement(DeleteConnectorSql, "@tenant_id", "@name").Set(0, tenantId).Set(1, name).Execute() > 0, cancellationToken);
    }

    /// <inheritdoc />
    public Task<IReadOnlyList<Registration>> ListByConnectorAsync(string tenantId, string connector, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(tenantId);
        ArgumentNullException.ThrowIfNull(connector);
        return ReadAsync<IReadOnlyList<Registration>>(
            s =>
            {
                var list = new List<Registration>();
                using var reader = s.Statement(SelectMailboxRegistrationsSql, "@tenant_id", "@connector").Set(0, tenantId).Set(1, connector).Query();
                while (reader.Read())
                {
                    list.Add(ReadRegistration(reader));
                }

                return list;
            },
            cancellationToken);
    }

    /// <inheritdoc />
    public Task<int> CountByConnectorAsync(string tenantId, string connector, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(tenantId);
        ArgumentNullException.ThrowIfNull(connector);
        return ReadAsync(
            s => Convert.ToInt32(s.Statement(CountMailboxRegistrationsSql, "@tenant_id", "@connector").Set(0, tenantId).Set(1, connector).Scalar(), System.Globalization.CultureInfo.InvariantCulture),
            cancellationToken);
    }

    private static ConnectorRecord ReadConnector(SqliteDataReader reader) => new(
        reader.GetString(0),
        reader.GetString(1),
        (ConnectorKind)reader.GetInt32(2),
        reader.GetString(3),
        reader.Time(4),
        reader.Time(5));
}
