using Herald.Core.Notifications;
using Herald.Core.Ports;
using Xunit;

namespace Herald.Storage.Tests;

/// <summary>The farm port: the node registry and work leases with fencing tokens.</summary>
public abstract partial class StoreContractTests
{
    private static readonly TimeSpan Ttl = TimeSpan.FromSeconds(15);

    private IFarmStore Farm => (IFarmStore)Store;

    private static NodeReport Node(string name, string instance, double sends = 0, int connections = 0) => new()
    {
        Name = name,
        Instance = instance,
        Region = "emea",
        Version = "1.2.3",
        StartedAt = new DateTimeOffset(2025, 3, 1, 7, 0, 0, TimeSpan.Zero),
        SendsPerSecond = sends,
        Connections = connections,
    };

    // ---- node registry ------------------------------------------------------------------------

    [Fact]
    public async Task Heartbeat_TwoNodes_ListedByNameWithLatestReport()
    {
        await Farm.RecordHeartbeatAsync(Node("node-b", "node-b/1", sends: 1.5), Time.GetUtcNow(), Ct);
        await Farm.RecordHeartbeatAsync(Node("node-a", "node-a/1"), Time.GetUtcNow(), Ct);
        Time.Advance(TimeSpan.FromSeconds(5));
        await Farm.RecordHeartbeatAsync(Node("node-b", "node-b/2", sends: 42.25, connections: 7), Time.GetUtcNow(), Ct);

        var nodes = await Farm.ListNodesAsync(Ct);

        Assert.Equal(["node-a", "node-b"], nodes.Select(n => n.Report.Name));
        var b = nodes[1];
        Assert.Equal("node-b/2", b.Report.Instance);
        Assert.Equal("emea", b.Report.Region);
        Assert.Equal("1.2.3", b.Report.Version);
        Assert.Equal(new DateTimeOffset(2025, 3, 1, 7, 0, 0, TimeSpan.Zero), b.Report.StartedAt);
        Assert.Equal(42.25, b.Report.SendsPerSecond);
        Assert.Equal(7, b.Report.Connections);
        Assert.Equal(Time.GetUtcNow(), b.HeartbeatAt);
        Assert.Equal(Time.GetUtcNow() - TimeSpan.FromSeconds(5), nodes[0].HeartbeatAt);
    }

    [Fact]
    public async Task Heartbeat_CountsTheNotificationsLeasedToTheInstance()
    {
        await Store.EnqueueAsync([.. Enumerable.Range(0, 5).Select(i => Badge(1, lane: Lane.Priority, token: "token-" + i))], Ct);
        await Store.ClaimAsync(Owner, new ClaimLimits(3, 0), Time.GetUtcNow(), Lease, Ct);
        await Store.ClaimAsync(OtherOwner, new ClaimLimits(1, 0), Time.GetUtcNow(), Lease, Ct);

        await Farm.RecordHeartbeatAsync(Node("node-a", Owner), Time.GetUtcNow(), Ct);
        await Farm.RecordHeartbeatAsync(Node("node-b", OtherOwner), Time.GetUtcNow(), Ct);

        var nodes = await Farm.ListNodesAsync(Ct);
        Assert.Equal(3, nodes.Single(n => n.Report.Name == "node-a").QueueClaimed);
        Assert.Equal(1, nodes.Single(n => n.Report.Name == "node-b").QueueClaimed);
    }

    [Fact]
    public async Task ForgetNodes_RemovesOnlyNodesSilentSinceBefore()
    {
        await Farm.RecordHeartbeatAsync(Node("old", "old/1"), Time.GetUtcNow(), Ct);
        Time.Advance(TimeSpan.FromHours(2));
        await Farm.RecordHeartbeatAsync(Node("new", "new/1"), Time.GetUtcNow(), Ct);

        Assert.Equal(1, await Farm.ForgetNodesAsync(Time.GetUtcNow() - TimeSpan.FromHours(1), Ct));

        Assert.Equal(["new"], (await Farm.ListNodesAsync(Ct)).Select(n => n.Report.Name));
    }

    // ---- work leases --------------------------------------------------------------------------

    [Fact]
    public async Task Lease_FreeKey_IsTakenWithTokenOneAndRefusedToOthersUntilItExpires()
    {
        var now = Time.GetUtcNow();
        var lease = await Farm.TryAcquireLeaseAsync("ews-group:1", Owner, Ttl, now, Ct);

        Assert.Equal(new WorkLease("ews-group:1", Owner, 1, now + Ttl), lease);
        Assert.Null(await Farm.TryAcquireLeaseAsync("ews-group:1", OtherOwner, Ttl, now, Ct));
        Time.Advance(Ttl - TimeSpan.FromMilliseconds(1));
        Assert.Null(await Farm.TryAcquireLeaseAsync("ews-group:1", OtherOwner, Ttl, Time.GetUtcNow(), Ct));
        Assert.True(await Farm.IsLeaseCurrentAsync(lease!, Time.GetUtcNow(), Ct));

        // Expired: the next holder gets a higher token, and the old holder is fenced off.
        Time.Advance(TimeSpan.FromMilliseconds(1));
        Assert.False(await Farm.IsLeaseCurrentAsync(lease!, Time.GetUtcNow(), Ct));
        var taken = await Farm.TryAcquireLeaseAsync("ews-group:1", OtherOwner, Ttl, Time.GetUtcNow(), Ct);
        Assert.NotNull(taken);
        Assert.Equal(2, taken.Token);
        Assert.Null(await Farm.RenewLeaseAsync(lease!, Ttl, Time.GetUtcNow(), Ct));
        Assert.False(await Farm.ReleaseLeaseAsync(lease!, Ct));
        Assert.True(await Farm.IsLeaseCurrentAsync(taken, Time.GetUtcNow(), Ct));
    }

    [Fact]
    public async Task Lease_Renew_ExtendsWithTheSameToken()
    {
        var lease = await Farm.TryAcquireLeaseAsync("graph-renewals", Owner, Ttl, Time.GetUtcNow(), Ct);
        Time.Advance(TimeSpan.FromSeconds(10));

        var renewed = await Farm.RenewLeaseAsync(lease!, Ttl, Time.GetUtcNow(), Ct);

        Assert.Equal(lease! with { ExpiresAt = Time.GetUtcNow() + Ttl }, renewed);
        Time.Advance(TimeSpan.FromSeconds(10)); // past the first expiry, inside the renewed one
        Assert.Null(await Farm.TryAcquireLeaseAsync("graph-renewals", OtherOwner, Ttl, Time.GetUtcNow(), Ct));
        Assert.True(await Farm.IsLeaseCurrentAsync(renewed!, Time.GetUtcNow(), Ct));
    }

    [Fact]
    public async Task Lease_RenewAfterExpiry_IsRefusedEvenWhenNobodyTookIt()
    {
        var lease = await Farm.TryAcquireLeaseAsync("k", Owner, Ttl, Time.GetUtcNow(), Ct);
        Time.Advance(Ttl);

        Assert.Null(await Farm.RenewLeaseAsync(lease!, Ttl, Time.GetUtcNow(), Ct));
    }

    [Fact]
    public async Task Lease_AcquireByHolder_ExtendsWithTheSameToken()
    {
        var lease = await Farm.TryAcquireLeaseAsync("k", Owner, Ttl, Time.GetUtcNow(), Ct);
        Time.Advance(TimeSpan.FromSeconds(5));

        var again = await Farm.TryAcquireLeaseAsync("k", Owner, Ttl, Time.GetUtcNow(), Ct);

        Assert.Equal(lease!.Token, again!.Token);
        Assert.Equal(Time.GetUtcNow() + Ttl, again.ExpiresAt);
    }

    [Fact]
    public async Task Lease_Release_FreesAtOnceAndTokensKeepGrowing()
    {
        var first = await Farm.TryAcquireLeaseAsync("k", Owner, Ttl, Time.GetUtcNow(), Ct);
        Assert.True(await Farm.ReleaseLeaseAsync(first!, Ct));
        Assert.False(await Farm.IsLeaseCurrentAsync(first!, Time.GetUtcNow(), Ct));
        Assert.Empty(await Farm.ListLeasesAsync("k", Ct));

        var second = await Farm.TryAcquireLeaseAsync("k", OtherOwner, Ttl, Time.GetUtcNow(), Ct);
        Assert.True(await Farm.ReleaseLeaseAsync(second!, Ct));
        var third = await Farm.TryAcquireLeaseAsync("k", Owner, Ttl, Time.GetUtcNow(), Ct);

        Assert.Equal([1L, 2L, 3L], new[] { first!.Token, second!.Token, third!.Token });
    }

    [Fact]
    public async Task Lease_ListByPrefix_ShowsHeldAndExpiredLeasesOnly()
    {
        var now = Time.GetUtcNow();
        await Farm.TryAcquireLeaseAsync("ews-group:b", Owner, Ttl, now, Ct);
        await Farm.TryAcquireLeaseAsync("ews-group:a", OtherOwner, TimeSpan.FromSeconds(1), now, Ct);
        var released = await Farm.TryAcquireLeaseAsync("ews-group:c", Owner, Ttl, now, Ct);
        await Farm.ReleaseLeaseAsync(released!, Ct);
        await Farm.TryAcquireLeaseAsync("graph:x", Owner, Ttl, now, Ct);
        await Farm.TryAcquireLeaseAsync("ews-group", Owner, Ttl, now, Ct); // not under the prefix "ews-group:"
        Time.Advance(TimeSpan.FromSeconds(2));

        var leases = await Farm.ListLeasesAsync("ews-group:", Ct);

        Assert.Equal(
            [new WorkLease("ews-group:a", OtherOwner, 1, now + TimeSpan.FromSeconds(1)), new WorkLease("ews-group:b", Owner, 1, now + Ttl)],
            leases);
        Assert.Equal(4, (await Farm.ListLeasesAsync(string.Empty, Ct)).Count); // all but the released one
    }

    [Fact]
    public async Task Lease_ManyContenders_ExactlyOneWinsEachRound()
    {
        for (var round = 1; round <= 5; round++)
        {
            var now = Time.GetUtcNow();
            var attempts = await Task.WhenAll(Enumerable.Range(0, 8).Select(i => Task.Run(() => Farm.TryAcquireLeaseAsync("farm:leader", "node-" + i + "/x", Ttl, now, Ct))));
            var winner = Assert.Single(attempts, a => a is not null);
            Assert.Equal(round, winner!.Token);
            Time.Advance(Ttl);
        }
    }

    [Fact]
    public async Task EndAllLeases_FreesEveryLeaseKeepingTokens()
    {
        await Farm.TryAcquireLeaseAsync("a", Owner, Ttl, Time.GetUtcNow(), Ct);
        await Farm.TryAcquireLeaseAsync("b", OtherOwner, Ttl, Time.GetUtcNow(), Ct);

        Assert.Equal(2, await Farm.EndAllLeasesAsync(Ct));

        Assert.Empty(await Farm.ListLeasesAsync(string.Empty, Ct));
        Assert.Equal(2, (await Farm.TryAcquireLeaseAsync("a", OtherOwner, Ttl, Time.GetUtcNow(), Ct))!.Token);
    }
}
