using System.Security.Cryptography;
using Herald.Core.Security;
using Herald.Providers.Apns;
using Herald.Storage;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;
using Xunit;

namespace Herald.Server.Tests;

/// <summary>One APNs provider token per signing key for every node and every restart, through the database.</summary>
public sealed class SharedApnsTokenTests
{
    [Fact]
    public async Task TwoNodesAndARestart_ShareOneTokenPerRefreshInterval()
    {
        var ct = TestContext.Current.CancellationToken;
        var directory = Path.Combine(Path.GetTempPath(), "herald-jwt-" + Guid.NewGuid().ToString("N")[..12]);
        Directory.CreateDirectory(directory);
        var time = new FakeTimeProvider(new DateTimeOffset(2026, 11, 23, 9, 0, 0, TimeSpan.Zero));
        await using var store = HeraldStore.Open("sqlite:" + Path.Combine(directory, "herald.db"), time, NullLoggerFactory.Instance);
        await store.MigrateAsync(ct);
        var secrets = SecretBox.CreateEphemeral();
        var options = Options.Create(new ApnsOptions { TokenRefreshInterval = TimeSpan.FromMinutes(40) });
        using var signing = ApnsSigningKey.FromKey("TEAM123456", "KEY1234567", ECDsa.Create(ECCurve.NamedCurves.nistP256));
        var sharedStore = (Herald.Core.Ports.ISharedTokenStore)store;

        using var nodeA = new SharedApnsTokenCache(sharedStore, secrets, time, options, NullLogger<SharedApnsTokenCache>.Instance);
        using var nodeB = new SharedApnsTokenCache(sharedStore, secrets, time, options, NullLogger<SharedApnsTokenCache>.Instance);
        var first = await nodeA.GetAsync(signing, ct);
        Assert.Equal(first.Jwt, (await nodeB.GetAsync(signing, ct)).Jwt);

        // A restart of node A within the interval reuses the stored token.
        time.Advance(TimeSpan.FromMinutes(10));
        using var nodeARestarted = new SharedApnsTokenCache(sharedStore, secrets, time, options, NullLogger<SharedApnsTokenCache>.Instance);
        Assert.Equal(first.Jwt, (await nodeARestarted.GetAsync(signing, ct)).Jwt);

        // Due for refresh: whoever comes first mints, the others adopt its token.
        time.Advance(TimeSpan.FromMinutes(31));
        var second = await nodeB.GetAsync(signing, ct);
        Assert.NotEqual(first.Jwt, second.Jwt);
        Assert.Equal(second.Jwt, (await nodeARestarted.GetAsync(signing, ct)).Jwt);
        Assert.Equal(second.Jwt, (await nodeA.GetAsync(signing, ct)).Jwt);
        Assert.Equal(2, nodeA.MintCount + nodeB.MintCount + nodeARestarted.MintCount);

        // ExpiredProviderToken on the current token: one node renews, the other adopts the renewal.
        time.Advance(TimeSpan.FromMinutes(1));
        var renewed = await nodeA.RenewExpiredAsync(signing, second, ct);
        Assert.NotEqual(second.Jwt, renewed.Jwt);
        Assert.Equal(renewed.Jwt, (await nodeB.RenewExpiredAsync(signing, second, ct)).Jwt);
        Assert.Equal(3, nodeA.MintCount + nodeB.MintCount + nodeARestarted.MintCount);

        // The token is sealed at rest.
        await store.DisposeAsync();
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        var bytes = await File.ReadAllBytesAsync(Path.Combine(directory, "herald.db"), ct);
        var wal = Path.Combine(directory, "herald.db-wal");
        var all = File.Exists(wal) ? [.. bytes, .. await File.ReadAllBytesAsync(wal, ct)] : bytes;
        Assert.True(all.AsSpan().IndexOf(System.Text.Encoding.ASCII.GetBytes(renewed.Jwt[..40])) < 0, "the provider token is stored in clear");
    }
}
