using Herald.Core.Ports;
using Herald.Core.Security;
using Herald.Storage.Postgres;
using Herald.Storage.Sqlite;
using Herald.Testing;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;
using Xunit;

namespace Herald.Storage.Tests;

/// <summary>Migration 0011 fills the token fingerprint of registrations stored before it, in both dialects.</summary>
public sealed class TokenFingerprintMigrationTests(PostgresServer server)
{
    private const string InsertOldRegistrations = """
        INSERT INTO tenants (id, name, created_at) VALUES ('default', 'Default', 0);
        INSERT INTO registrations (id, tenant_id, platform, token, topic, environment, source, style, folders, locale, status, created_at, updated_at)
        VALUES ('reg-old', 'default', 0, 'a0b1c2d3e4f5deadbeef', 't', 0, 1, 0, '["inbox"]', 'en', 0, 0, 0),
               ('reg-gone', 'default', 0, '', 't', 0, 1, 0, '["inbox"]', 'en', 2, 0, 0);
        """;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public void Fingerprint_PrintsAsRedactDoesAndParsesBothForms()
    {
        const string token = "a0b1c2d3e4f5deadbeef";
        var fp = TokenFingerprint.Of(token)!.Value;
        Assert.Equal(Redact.Token(token), TokenFingerprint.Format(fp));
        Assert.True(TokenFingerprint.TryParse(Redact.Token(token).ToUpperInvariant(), out var parsed));
        Assert.Equal(fp, parsed);
        Assert.True(TokenFingerprint.TryParse(" " + Redact.Token(token)[4..] + " ", out parsed));
        Assert.Equal(fp, parsed);
        Assert.Null(TokenFingerprint.Of(string.Empty));
        foreach (var bad in new[] { null, string.Empty, "tok:", "tok:123", "tok:1234567g", "123456789", "tok:-1234567", "0x123456" })
        {
            Assert.False(TokenFingerprint.TryParse(bad, out _), bad);
        }
    }

    [Fact]
    public async Task Sqlite_RowsFromBefore0011_AreFoundByFingerprintAfterMigrating()
    {
        var path = Path.Combine(Path.GetTempPath(), "herald-storage-tests", Guid.NewGuid().ToString("N") + ".db");
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        try
        {
            using (var connection = new SqliteConnection($"Data Source={path};Pooling=False"))
            {
                connection.Open();
                using var command = connection.CreateCommand();
                var before = SqliteMigrations.All.Where(m => m.Version < 11).ToList();
                command.CommandText = string.Concat(before.Select(m => m.Script))
                    + "CREATE TABLE schema_migrations (version INTEGER NOT NULL PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL);"
                    + string.Concat(before.Select(m => $"INSERT INTO schema_migrations VALUES ({m.Version}, '{m.Name}', 0);"))
                    + InsertOldRegistrations;
                command.ExecuteNonQuery();
            }

            await using var store = new SqliteStore(path, TimeProvider.System, NullLogger.Instance);
            await store.MigrateAsync(Ct);
            await AssertFoundAsync(store);
        }
        finally
        {
            SqliteConnection.ClearAllPools();
            foreach (var suffix in new[] { string.Empty, "-wal", "-shm", "-journal" })
            {
                File.Delete(path + suffix);
            }
        }
    }

    [Fact]
    public async Task Postgres_RowsFromBefore0011_AreFoundByFingerprintAfterMigrating()
    {
        var connectionString = await server.CreateDatabaseAsync("fp");
        try
        {
            await using (var connection = new NpgsqlConnection(connectionString))
            {
                await connection.OpenAsync(Ct);
                var before = PostgresMigrator.All.Where(m => m.Version < 11).ToList();
                var sql = string.Concat(before.Select(m => m.Script))
                    + "CREATE TABLE schema_migrations (version integer NOT NULL PRIMARY KEY, name text NOT NULL, applied_at bigint NOT NULL);"
                    + string.Concat(before.Select(m => $"INSERT INTO schema_migrations VALUES ({m.Version}, '{m.Name}', 0);"))
                    + InsertOldRegistrations;
                await using var command = new NpgsqlCommand(sql, connection);
                await command.ExecuteNonQueryAsync(Ct);
            }

            await using var store = new PostgresStore(connectionString, new PostgresStoreOptions(), TimeProvider.System, NullLogger.Instance);
            await store.MigrateAsync(Ct);
            await AssertFoundAsync(store);

            // Unsigned: a fingerprint with the top bit set is stored as the same positive number the API parses.
            await using var check = new NpgsqlConnection(connectionString);
            await check.OpenAsync(Ct);
            await using var max = new NpgsqlCommand("SELECT ('x' || 'ffffffff')::bit(32)::bigint", check);
            Assert.Equal((long)uint.MaxValue, (long)(await max.ExecuteScalarAsync(Ct))!);
        }
        finally
        {
            await server.DropDatabaseAsync(connectionString);
        }
    }

    private static async Task AssertFoundAsync(IRegistrationSearch search)
    {
        var fp = TokenFingerprint.Of("a0b1c2d3e4f5deadbeef")!.Value;
        var found = await search.SearchRegistrationsAsync(new RegistrationQuery("default", fp, null, 10), Ct);
        Assert.Equal("reg-old", Assert.Single(found).Id);
        Assert.Equal(["reg-old"], (await search.SearchRegistrationsAsync(new RegistrationQuery("default", null, null, 10), Ct)).Select(r => r.Id));
    }
}
