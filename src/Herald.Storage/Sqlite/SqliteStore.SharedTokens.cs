using Herald.Core.Ports;

namespace Herald.Storage.Sqlite;

public sealed partial class SqliteStore : ISharedTokenStore
{
    private const string SelectSharedTokenSql = "SELECT sealed_value, issued_at FROM shared_tokens WHERE key = @key";

    /// <inheritdoc />
    public Task<SharedToken?> GetSharedTokenAsync(string key, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(key);
        return ReadAsync(s => ReadSharedToken(s, key), cancellationToken);
    }

    /// <inheritdoc />
    public Task<SharedToken> SwapSharedTokenAsync(string key, SharedToken? expected, SharedToken replacement, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(key);
        ArgumentNullException.ThrowIfNull(replacement);
        return WriteAsync(
            s =>
            {
                var current = ReadSharedToken(s, key);
                if (current is not null && (expected is null || current.IssuedAt != expected.IssuedAt))
                {
                    return current; // another node (or life) stored one first: use it
                }

                s.Statement(
                        "INSERT INTO shared_tokens (key, sealed_value, issued_at) VALUES (@key, @value, @issued_at) ON CONFLICT (key) DO UPDATE SET sealed_value = excluded.sealed_value, issued_at = excluded.issued_at",
                        "@key", "@value", "@issued_at")
                    .Set(0, key)
                    .Set(1, replacement.SealedValue)
                    .Set(2, replacement.IssuedAt)
                    .Execute();
                return replacement;
            },
            cancellationToken);
    }

    private static SharedToken? ReadSharedToken(SqliteSession s, string key)
    {
        using var reader = s.Statement(SelectSharedTokenSql, "@key").Set(0, key).Query();
        return reader.Read() ? new SharedToken(reader.GetString(0), reader.Time(1)) : null;
    }
}
