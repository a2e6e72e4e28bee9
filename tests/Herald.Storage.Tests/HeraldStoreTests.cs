using Herald.Storage.Sqlite;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using Xunit;

namespace Herald.Storage.Tests;

public sealed class HeraldStoreTests
{
    [Fact]
    public async Task Open_SqlitePath_OpensAMigratableStoreAndCreatesTheFolder()
    {
        var folder = Path.Combine(Path.GetTempPath(), "herald-storage-tests", Guid.NewGuid().ToString("N"));
        var path = Path.Combine(folder, "nested", "herald.db");
        try
        {
            await using (var store = HeraldStore.Open("sqlite:" + path, new FakeTimeProvider(), NullLoggerFactory.Instance))
            {
                Assert.IsType<SqliteStore>(store);
                Assert.True(store.IsSingleNode);
                await store.MigrateAsync(TestContext.Current.CancellationToken);
                Assert.NotNull(await store.GetTenantAsync("default", TestContext.Current.CancellationToken));
            }

            Assert.True(File.Exists(path));
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    [Theory]
    [InlineData("sqlite:herald.db")]
    [InlineData("SQLite: data/herald.db ")]
    public void Parse_Sqlite_ResolvesTheFullPath(string value)
    {
        var (kind, target) = HeraldStore.Parse(value);

        Assert.Equal(HeraldStore.DatabaseKind.Sqlite, kind);
        Assert.True(Path.IsPathFullyQualified(target));
        Assert.EndsWith("herald.db", target, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Open_Postgres_IsAFarmStoreThatOpensNothingYet()
    {
        // No server at this address: opening must not connect (the schema is migrated later, or by `herald migrate`).
        await using var store = HeraldStore.Open("postgres:Host=127.0.0.1;Port=1;Username=herald;Password=secret", TimeProvider.System, NullLoggerFactory.Instance);

        var postgres = Assert.IsType<Storage.Postgres.PostgresStore>(store);
        Assert.False(store.IsSingleNode);
        Assert.DoesNotContain("secret", postgres.Target, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("postgres:")]
    [InlineData("postgres:Host=db;Password=secret;NoSuchKeyword=1")]
    public void Open_PostgresWithoutAValidConnectionString_ThrowsWithoutEchoingSecrets(string value)
    {
        var ex = Assert.Throws<ArgumentException>(() => HeraldStore.Open(value, TimeProvider.System, NullLoggerFactory.Instance));

        Assert.DoesNotContain("secret", ex.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("")]
    [InlineData("   ")]
    [InlineData("sqlite:")]
    [InlineData("sqlite::memory:")]
    [InlineData("mysql:server=x")]
    [InlineData("Host=db;Password=secret")]
    public void Open_InvalidValue_ThrowsArgumentExceptionWithoutEchoingSecrets(string value)
    {
        var ex = Assert.Throws<ArgumentException>(() => HeraldStore.Open(value, TimeProvider.System, NullLoggerFactory.Instance));

        Assert.DoesNotContain("secret", ex.Message, StringComparison.Ordinal);
    }
}
