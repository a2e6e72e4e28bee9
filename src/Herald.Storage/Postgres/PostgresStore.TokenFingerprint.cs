using Herald.Core.Ports;
using Herald.Core.Registrations;

namespace Herald.Storage.Postgres;

public sealed partial class PostgresStore : IRegistrationSearch
{
    // Both use ix_registrations_token_fp (tenant_id, token_fp, id) or the primary key, never a scan of all tenants.
    private const string SearchByFingerprintSql =
        "SELECT " + RegistrationColumns + " FROM registrations WHERE tenant_id = @tenant_id AND token_fp = @fp AND id > @after AND status <> 2 ORDER BY id LIMIT @limit";

    private const string SearchAllSql =
        "SELECT " + RegistrationColumns + " FROM registrations WHERE tenant_id = @tenant_id AND id > @after AND status <> 2 ORDER BY id LIMIT @limit";

    /// <inheritdoc />
    public Task<IReadOnlyList<Registration>> SearchRegistrationsAsync(RegistrationQuery query, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(query);
        ArgumentOutOfRangeException.ThrowIfLessThan(query.Limit, 1);
        return ReadAsync<IReadOnlyList<Registration>>(
            async (c, ct) =>
            {
                await using var command = query.Fingerprint is { } fp
                    ? Pg.Command(c, SearchByFingerprintSql).Add("tenant_id", query.TenantId).Add("fp", (long)fp).Add("after", query.After ?? string.Empty).Add("limit", query.Limit)
                    : Pg.Command(c, SearchAllSql).Add("tenant_id", query.TenantId).Add("after", query.After ?? string.Empty).Add("limit", query.Limit);
                await using var reader = await command.ExecuteReaderAsync(ct).ConfigureAwait(false);
                var found = new List<Registration>(Math.Min(query.Limit, 256));
                while (await reader.ReadAsync(ct).ConfigureAwait(false))
                {
                    found.Add(ReadRegistration(reader));
                }

                return found;
            },
            cancellationToken);
    }
}
