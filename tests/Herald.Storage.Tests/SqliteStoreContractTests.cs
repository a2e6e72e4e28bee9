using System.Text;
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
        var claimed = await Store.ClaimAsync(Owner, 10, Time.GetUtcNow(), Lease, Ct);
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
    public void Migrations_AreNumberedFromOneWithoutGaps()
    {
        Assert.NotEmpty(SqliteMigrations.All);
        for (var i = 0; i < SqliteMigrations.All.Count; i++)
        {
            Assert.Equal(i + 1, SqliteMigrations.All[i].Version);
        }

        Assert.Equal("0001_initial", SqliteMigrations.All[0].Name);
    }

    [Fact]
    public void Lanes_AreTheOnesTheClaimStatementKnows()
    {
        // ClaimSql and NextDueSql list the lanes (0, 1) so SQLite walks the due index lane by lane.
        // A new lane must be added there (and here).
        Assert.Equal([Lane.Priority, Lane.Standard], Enum.GetValues<Lane>());
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
