using Herald.Core.Connectors;
using Herald.Core.Ports;
using Herald.Core.Registrations;
using Npgsql;

namespace Herald.Storage.Postgres;

public sealed partial class PostgresStore : IConnectorStore, IMailboxDirectory
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
    public async Task UpsertConnectorAsync(ConnectorRecord connector, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(connector);
        ObjectDisposedException.ThrowIf(_disposed, this);
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var command = Pg.Command(connection, UpsertConnectorSql)
            .Add("tenant_id", connector.TenantId)
            .Add("name", connector.Name)
            .Add("kind", (short)connector.Kind)
            .Add("sealed_config", connector.SealedConfig)
            .Add("created_at", connector.CreatedAt)
            .Add("updated_at", connector.UpdatedAt);
        try
        {
            await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (PostgresException ex) when (ex.IsForeignKeyViolation())
        {
            throw new InvalidOperationException($"Connector {connector.Name}: tenant '{connector.TenantId}' does not exist.", ex);
        }
    }

    /// <inheritdoc />
    public Task<ConnectorRecord?> GetConnectorAsync(string tenantId, string name, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(tenantId);
        ArgumentNullException.ThrowIfNull(name);
        return ReadAsync(
            async (c, ct) =>
            {
                await using var command = Pg.Command(c, SelectConnectorSql).Add("tenant_id", tenantId).Add("name", name);
                await using var reader = await command.ExecuteReaderAsync(ct).ConfigureAwait(false);
                return await reader.ReadAsync(ct).ConfigureAwait(false) ? ReadConnector(reader) : null;
            },
            cancellationToken);
    }

    /// <inheritdoc />
    public Task<IReadOnlyList<ConnectorRecord>> ListConnectorsAsync(string? tenantId, CancellationToken cancellationToken)
        => ReadAsync<IReadOnlyList<ConnectorRecord>>(
            async (c, ct) =>
            {
                var list = new List<ConnectorRecord>();
                await using var command = tenantId is null
                    ? Pg.Command(c, SelectAllConnectorsSql)
                    : Pg.Command(c, SelectTenantConnectorsSql).Add("tenant_id", tenantId);
                await using var reader = await command.ExecuteReaderAsync(ct).ConfigureAwait(false);
                while (await reader.ReadAsync(ct).ConfigureAwait(false))
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
        return WriteAsync(
            async (c, ct) =>
            {
                await using var command = Pg.Command(c, DeleteConnectorSql).Add("tenant_id", tenantId).Add("name", name);
                return await command.ExecuteNonQueryAsync(ct).ConfigureAwait(false) > 0;
            },
            cancellationToken);
    }

    /// <inheritdoc />
    public Task<IReadOnlyList<Registration>> ListByConnectorAsync(string tenantId, string connector, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(tenantId);
        ArgumentNullException.ThrowIfNull(connector);
        return ReadAsync<IReadOnlyList<Registration>>(
            async (c, ct) =>
            {
                var list = new List<Registration>();
                await using var command = Pg.Command(c, SelectMailboxRegistrationsSql).Add("tenant_id", tenantId).Add("connector", connector);
                await using var reader = await command.ExecuteReaderAsync(ct).ConfigureAwait(false);
                while (await reader.ReadAsync(ct).ConfigureAwait(false))
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
            async (c, ct) =>
            {
                await using var command = Pg.Command(c, CountMailboxRegistrationsSql).Add("tenant_id", tenantId).Add("connector", connector);
                return Convert.ToInt32(await command.ExecuteScalarAsync(ct).ConfigureAwait(false), System.Globalization.CultureInfo.InvariantCulture);
            },
            cancellationToken);
    }

    private static ConnectorRecord ReadConnector(NpgsqlDataReader reader) => new(
        reader.GetString(0),
        reader.GetString(1),
        (ConnectorKind)reader.GetInt16(2),
        reader.GetString(3),
        reader.Time(4),
        reader.Time(5));
}
