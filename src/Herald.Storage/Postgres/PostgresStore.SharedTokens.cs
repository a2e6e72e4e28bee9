using Herald.Core.Ports;
using Npgsql;

namespace Herald.Storage.Postgres;

public sealed partial class PostgresStore : ISharedTokenStore
{
    private const string SelectSharedTokenSql = "SELECT sealed_value, issued_at FROM shared_tokens WHERE key = @key";

    private const string LockSharedTokenSql = SelectSharedTokenSql + " FOR UPDATE";

    private const string InsertSharedTokenSql = """
        INSERT INTO shared_tokens (key, sealed_value, issued_at) VALUES (@key, @value, @issued_at)
        ON CONFLICT (key) DO NOTHING
        RETURNING key
        """;

    private const string UpdateSharedTokenSql = "UPDATE shared_tokens SET sealed_value = @value, issued_at = @issued_at WHERE key = @key";

    /// <inheritdoc />
    public Task<SharedToken?> GetSharedTokenAsync(string key, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(key);
        return ReadAsync((c, ct) => ReadSharedTokenAsync(c, SelectSharedTokenSql, key, ct), cancellationToken);
    }

    /// <inheritdoc />
    /// <remarks>
    /// The stored row is locked while compared, so of several nodes swapping the same token at once one
    /// replaces it and the others get its replacement; when none is stored, the first insert wins likewise.
    /// </remarks>
    public Task<SharedToken> SwapSharedTokenAsync(string key, SharedToken? expected, SharedToken replacement, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(key);
        ArgumentNullException.ThrowIfNull(replacement);
        return WriteAsync(
            async (c, ct) =>
            {
                var current = await ReadSharedTokenAsync(c, LockSharedTokenSql, key, ct).ConfigureAwait(false);
                if (current is not null && (expected is null || current.IssuedAt != expected.IssuedAt))
                {
                    return current; // another node (or life) stored one first: use it
                }

                if (current is null)
                {
                    await using var insert = Pg.Command(c, InsertSharedTokenSql).Add("key", key).Add("value", replacement.SealedValue).Add("issued_at", replacement.IssuedAt);
                    if (await insert.ExecuteScalarAsync(ct).ConfigureAwait(false) is null)
                    {
                        // Another node inserted it meanwhile (the insert waited for its commit): use theirs.
                        return await ReadSharedTokenAsync(c, SelectSharedTokenSql, key, ct).ConfigureAwait(false) ?? replacement;
                    }

                    return replacement;
                }

                await using var update = Pg.Command(c, UpdateSharedTokenSql).Add("value", replacement.SealedValue).Add("issued_at", replacement.IssuedAt).Add("key", key);
                await update.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
                return replacement;
            },
            cancellationToken);
    }

    private static async Task<SharedToken?> ReadSharedTokenAsync(NpgsqlConnection c, string sql, string key, CancellationToken ct)
    {
        await using var command = Pg.Command(c, sql).Add("key", key);
        await using var reader = await command.ExecuteReaderAsync(ct).ConfigureAwait(false);
        return await reader.ReadAsync(ct).ConfigureAwait(false) ? new SharedToken(reader.GetString(0), reader.Time(1)) : null;
    }
}
