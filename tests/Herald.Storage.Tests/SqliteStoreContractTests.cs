using System.Reflection;
using System.Text;
using System.Text.RegularExpressions;
using Herald.Core.Notifications;
using Herald.Core.Security;
using Herald.Storage.Sqlite;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Logging.Abstractions;
using Xunit;

namespace Herald.Storage.Tests;

/// <summary>The store contract on a SQLite file, plus what only a file can show.</summary>
public sealed class SqliteStoreContractTests : StoreContractTests
{
    private readonly string _path = Path.Combine(Path.GetTempPath(), "herald-storage-tests", Guid.NewGuid().ToString("N") + ".db");

    private SqliteStore Sqlite => (SqliteStore)Store;

    protected override IHeraldStore CreateStore(TimeProvider time) => new SqliteStore(_path, time, NullLogger.Instance);

    protected override IHeraldStore ReopenStore(TimeProvider time) => new SqliteStore(_path, time, NullLogger.Instance);

    protected override ValueTask DeleteDatabaseAsync()
    {
        foreach (var suffix in new[] { string.Empty, "-wal", "-shm", "-journal" })
        {
            File.Delete(_path + suffix);
        }

        return ValueTask.CompletedTask;
    }

    [Fact]
    public async Task Open_WriteConnection_IsWalWithFullSynchronousAndForeignKeys()
    {
        Assert.Equal("wal", await Sqlite.GetWriterPragmaAsync("journal_mode", Ct));
        Assert.Equal("2", await Sqlite.GetWriterPragmaAsync("synchronous", Ct)); // FULL
        Assert.Equal("1", await Sqlite.GetWriterPragmaAsync("foreign_keys", Ct));
        Assert.Equal("5000", await Sqlite.GetWriterPragmaAsync("busy_timeout", Ct));
    }

    [Fact]
    public async Task DatabaseFile_HoldsNoCallbackKeyInClear()
    {
        var callbackKey = Secrets.NewKey("cb_");
        await CreateRegistrationAsync("reg-1", callbackKey);
        await IngestAsync(NewMailItem(callbackKey));
        var hash = Secrets.Hash(callbackKey);

        await Store.DisposeAsync(); // checkpoints the WAL into the file
        var bytes = ReadAllDatabaseBytes();
        Store = new SqliteStore(_path, Time, NullLogger.Instance);

        Assert.True(bytes.AsSpan().IndexOf(hash) >= 0, "the hash is stored (so the search below would find a key)");
        Assert.True(bytes.AsSpan().IndexOf(Encoding.UTF8.GetBytes(callbackKey)) < 0, "the callback key is in the file in clear");
        Assert.True(bytes.AsSpan().IndexOf(Encoding.UTF8.GetBytes(callbackKey[3..])) < 0, "the callback key's random part is in the file in clear");
    }

    [Fact]
    public async Task Tokens_AreForgottenByDeletedRegistrationsAndFinishedNotifications()
    {
        var registration = await CreateRegistrationAsync("reg-1", "cb_one");
        await CreateRegistrationAsync("reg-2", "cb_two");
        await IngestAsync(NewMailItem("cb_one"));
        await IngestAsync(NewMailItem("cb_two"));
        var claimed = await Store.ClaimAsync(Owner, Both(10), Time.GetUtcNow(), Lease, Ct);
        await Store.CompleteAsync(Owner, [Sent(claimed.Single(c => c.RegistrationId == "reg-2"))], Ct);
        await IngestAsync(NewMailItem("cb_one")); // pending while reg-1's first row is being sent

        Assert.True(await Store.DeleteAsync(Tenant, "reg-1", Time.GetUtcNow(), Ct));
        await Store.CompleteAsync(Owner, [Sent(claimed.Single(c => c.RegistrationId == "reg-1"))], Ct);

        Assert.Equal(string.Empty, QueryScalar("SELECT token FROM registrations WHERE id = 'reg-1'"));
        Assert.Equal(0L, QueryScalar("SELECT COUNT(*) FROM notifications WHERE token <> ''"));
        Assert.Equal(3L, QueryScalar("SELECT COUNT(*) FROM notifications"));
        Assert.NotEqual(string.Empty, registration.Token);
    }

    [Fact]
    public async Task Migrate_DatabaseFromANewerHerald_IsRefused()
    {
        await Store.DisposeAsync();
        using (var connection = new SqliteConnection($"Data Source={_path};Pooling=False"))
        {
            connection.Open();
            using var command = connection.CreateCommand();
            command.CommandText = "INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, '0999_future', 0)";
            command.ExecuteNonQuery();
        }

        Store = new SqliteStore(_path, Time, NullLogger.Instance);
        var ex = await Assert.ThrowsAsync<InvalidOperationException>(() => Store.MigrateAsync(Ct));
        Assert.Contains("999", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Migrations_AreNumberedUniquelyInOrder()
    {
        Assert.NotEmpty(SqliteMigrations.All);
        for (var i = 1; i < SqliteMigrations.All.Count; i++)
        {
            Assert.True(SqliteMigrations.All[i].Version > SqliteMigrations.All[i - 1].Version);
        }

        Assert.Equal("0001_initial", SqliteMigrations.All[0].Name);
    }

    [Fact]
    public void Lanes_AreTheOnesTheStoreKnows()
    {
        // NextDue walks SqliteStore.Lanes; Claim takes the lanes of ClaimLimits. A new lane must be added
        // to both (and here).
        Assert.Equal(Enum.GetValues<Lane>(), SqliteStore.Lanes);
        Assert.Equal(0, (int)Lane.Priority);
        Assert.Equal(1, (int)Lane.Standard);
    }

    [Fact]
    public async Task Write_AfterDispose_ThrowsObjectDisposed()
    {
        await Store.DisposeAsync();

        await Assert.ThrowsAsync<ObjectDisposedException>(() => Store.EnqueueAsync([Badge(1)], Ct));
        await Assert.ThrowsAsync<ObjectDisposedException>(() => Store.NextDueAsync(Ct));
        Store = new SqliteStore(_path, Time, NullLogger.Instance);
    }

    [Fact]
    public async Task Statements_NeverScanAWholeTable()
    {
        // Every prepared statement on the tables that grow is index-driven: a full scan of notifications is
        // harmless in a test and ruinous with millions of finished rows. (Keys, tenants and the settings audit
        // stay small; migrations and the snapshot's counts are not prepared statements.)
        await Store.DisposeAsync();
        var statements = typeof(SqliteStore)
            .GetFields(BindingFlags.NonPublic | BindingFlags.Static)
            .Where(f => f.IsLiteral && f.Name.EndsWith("Sql", StringComparison.Ordinal))
            .Select(f => (f.Name, Sql: (string)f.GetRawConstantValue()!))
            .ToList();
        Assert.True(statements.Count > 30, "the statements were found");

        using var connection = new SqliteConnection($"Data Source={_path};Pooling=False");
        connection.Open();
        var scans = new List<string>();
        foreach (var (name, sql) in statements)
        {
            using var command = connection.CreateCommand();
            command.CommandText = "EXPLAIN QUERY PLAN " + sql;
            foreach (var parameter in Regex.Matches(sql, "@[a-z_]+").Select(m => m.Value).Distinct())
            {
                command.Parameters.AddWithValue(parameter, 1);
            }

            using var reader = command.ExecuteReader();
            while (reader.Read())
            {
                var detail = reader.GetString(3);
                if (Regex.IsMatch(detail, @"^SCAN (notifications|registrations|notification_attempts|notification_requests)\b")
                    && !detail.Contains("USING", StringComparison.Ordinal))
                {
                    scans.Add(name + ": " + detail);
                }
            }
        }

        Store = new SqliteStore(_path, Time, NullLogger.Instance);
        Assert.Empty(scans);
    }

    [Fact]
    public async Task Migrate_DatabaseOfSchemaVersion2_KeepsItsRowsAndGainsTheNewTables()
    {
        await Store.DisposeAsync();
        await DeleteDatabaseAsync();
        using (var connection = new SqliteConnection($"Data Source={_path};Pooling=False"))
        {
            connection.Open();
            using var command = connection.CreateCommand();
            command.CommandText = SqliteMigrations.All[0].Script + SqliteMigrations.All[1].Script + """
                CREATE TABLE schema_migrations (version INTEGER NOT NULL PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL);
                INSERT INTO schema_migrations VALUES (1, '0001_initial', 0), (2, '0002_queue_indexes', 0);
                INSERT INTO tenants VALUES ('default', 'Default', 0);
                INSERT INTO notifications (id, message_id, tenant_id, lane, state, platform, token, topic, environment, content, created_at, due_at, completed_at)
                VALUES (1, zeroblob(16), 'default', 1, 0, 0, 'token-queued', 't', 0, '{"kind":"Badge","badge":1}', 0, 0, NULL),
                       (2, zeroblob(16), 'default', 1, 6, 0, '', 't', 0, '{"kind":"Badge","badge":2}', 0, 0, 0);
                """;
            command.ExecuteNonQuery();
        }

        Store = new SqliteStore(_path, Time, NullLogger.Instance);
        await Store.MigrateAsync(Ct);

        Assert.Equal((long)SqliteMigrations.All[^1].Version, QueryScalar("SELECT MAX(version) FROM schema_migrations"));
        var claimed = Assert.Single(await Store.ClaimAsync(Owner, Both(10), Time.GetUtcNow(), Lease, Ct));
        Assert.Equal("token-queued", claimed.Token);
        Assert.Equal(1, await Store.CompleteAsync(Owner, [Sent(claimed)], Ct));
        Assert.Single(await Store.GetAttemptsAsync(1, Ct));
        Assert.Equal([2L], (await Store.ListDeadAsync(null, 10, Ct)).Select(r => r.Id));

        // A row that died before dead rows kept their token has nothing to be sent to: it stays dead.
        Assert.Equal(0, await Store.RequeueDeadAsync(null, null, Time.GetUtcNow(), Ct));
        Assert.Null(await Store.GetSettingsAsync(Ct));
    }

    [Fact]
    public async Task PurgeCompleted_DeletesTheAttemptsToo()
    {
        await Store.EnqueueAsync([Badge(1), Badge(2)], Ct);
        var claimed = await Store.ClaimAsync(Owner, Both(10), Time.GetUtcNow(), Lease, Ct);
        await Store.CompleteAsync(Owner, [Sent(claimed[0]), Outcome(claimed[1], NotificationState.Dead, 500)], Ct);
        Assert.Equal(1L, QueryScalar("SELECT COUNT(*) FROM notification_attempts")); // a first attempt that was sent is the row itself
        Assert.Single(await Store.GetAttemptsAsync(claimed[0].Id, Ct));

        Assert.Equal(2, await Store.PurgeCompletedAsync(Time.GetUtcNow() + TimeSpan.FromSeconds(1), batchSize: 10, Ct));

        Assert.Equal(0L, QueryScalar("SELECT COUNT(*) FROM notification_attempts"));
    }

    [Fact]
    public async Task DeadRows_KeepTheirTokenWhileFinishedRowsForgetIt()
    {
        await Store.EnqueueAsync([Badge(1, token: "token-sent"), Badge(2, token: "token-failed"), Badge(3, token: "token-dead")], Ct);
        var claimed = await Store.ClaimAsync(Owner, Both(10), Time.GetUtcNow(), Lease, Ct);

        await Store.CompleteAsync(
            Owner,
            [Sent(claimed[0]), Outcome(claimed[1], NotificationState.Failed, 400, "BadDeviceToken"), Outcome(claimed[2], NotificationState.Dead, 503)],
            Ct);

        Assert.Equal("token-dead", QueryScalar("SELECT group_concat(token) FROM notifications WHERE token <> ''"));
    }

    private object? QueryScalar(string sql)
    {
        using var connection = new SqliteConnection($"Data Source={_path};Mode=ReadOnly;Pooling=False");
        connection.Open();
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        return command.ExecuteScalar();
    }

    private byte[] ReadAllDatabaseBytes()
    {
        using var buffer = new MemoryStream();
        foreach (var suffix in new[] { string.Empty, "-wal" })
        {
            if (File.Exists(_path + suffix))
            {
                using var file = new FileStream(_path + suffix, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
                file.CopyTo(buffer);
            }
        }

        return buffer.ToArray();
    }
}
