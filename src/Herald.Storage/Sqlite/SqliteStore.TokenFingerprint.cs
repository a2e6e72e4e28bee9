using Herald.Core.Ports;
using Herald.Core.Registrations;
using Herald.Core.Security;
using Microsoft.Data.Sqlite;

namespace Herald.Storage.Sqlite;

public sealed partial class SqliteStore : IRegistrationSearch
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
            s =>
            {
                var statement = query.Fingerprint is { } fp
                    ? s.Statement(SearchByFingerprintSql, "@tenant_id", "@fp", "@after", "@limit").Set(0, query.TenantId).Set(1, (long)fp).Set(2, query.After ?? string.Empty).Set(3, query.Limit)
                    : s.Statement(SearchAllSql, "@tenant_id", "@after", "@limit").Set(0, query.TenantId).Set(1, query.After ?? string.Empty).Set(2, query.Limit);
                using var reader = statement.Query();
                var found = new List<Registration>(Math.Min(query.Limit, 256));
                while (reader.Read())
                {
                    found.Add(ReadRegistration(reader));
                }

                return found;
            },
            cancellationToken);
    }

    /// <summary>
    /// Registers <c>herald_token_fp(token)</c> (<see cref="TokenFingerprint.Of"/>) on a connection, for the migration
    /// that fills the fingerprint of rows stored before it existed.
    /// </summary>
    internal static void RegisterTokenFingerprintFunction(SqliteConnection connection)
        => connection.CreateFunction<string?, long?>("herald_token_fp", static token => TokenFingerprint.Of(token), isDeterministic: true);
}
