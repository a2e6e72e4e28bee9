using Herald.Core.Farm;
using Herald.Core.Pipeline;
using Herald.Core.Ports;
using Herald.Storage.Sqlite;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;
using Xunit;

namespace Herald.Storage.Tests;

/// <summary>
/// Items of long-lived work (EWS streaming groups, Graph renewal shares) spread over the nodes of a farm through
/// fenced work leases, on a real store with a fake clock: an even spread, a late node getting its share by hand-off,
/// a dead node's items taken over once its leases expire, and a node cut off from the store stopping before anyone
/// else starts.
/// </summary>
public sealed class WorkSharesTests : IAsyncLifetime
{
    private const string Prefix = "ews-group:t1:exchange:";
    private static readonly FarmOptions Options = new(); // 15 s leases, renewed every 5 s, 3 s safety margin, down after 30 s
    private static readonly string[] Groups = [.. Enumerable.Range(0, 6).Select(i => Prefix + "https://mail.contoso.test/ews/exchange.asmx|DAG-MBX0" + i + "#0")];
    private readonly string _path = Path.Combine(Path.GetTempPath(), "herald-storage-tests", Guid.NewGuid().ToString("N") + ".db");
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2025, 3, 1, 8, 0, 0, TimeSpan.Zero));
    private SqliteStore _store = null!;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public async ValueTask InitializeAsync()
    {
        _store = await SqliteStore.OpenAndMigrateAsync(_path, _time, NullLogger.Instance, Ct);
    }

    public async ValueTask DisposeAsync()
    {
        await _store.DisposeAsync();
        foreach (var suffix in new[] { string.Empty, "-wal", "-shm" })
        {
            File.Delete(_path + suffix);
        }
    }

    [Fact]
    public async Task ThreeNodes_SixGroups_TwoEach_EveryGroupHeldOnce()
    {
        var nodes = new[] { Node("a"), Node("b"), Node("c") };
        foreach (var node in nodes)
        {
            await node.HeartbeatAsync(_time, Ct);
        }

        foreach (var node in nodes)
        {
            await node.BalanceAsync(Ct);
        }

        Assert.All(nodes, n => Assert.Equal(2, n.Held.Count));
        await AssertEachGroupHeldOnceAsync(nodes);
    }

    [Fact]
    public async Task LoneNode_HoldsEverything_ALateNodeGetsItsShareByHandOff()
    {
        var a = Node("a");
        await a.HeartbeatAsync(_time, Ct);
        await a.BalanceAsync(Ct);
        Assert.Equal(6, a.Held.Count); // single node: every group is its own

        var b = Node("b");
        await b.HeartbeatAsync(_time, Ct);
        await b.BalanceAsync(Ct); // nothing free yet
        Assert.Empty(b.Held);
        await a.BalanceAsync(Ct); // a sees b under its share and hands the surplus over
        Assert.Equal(3, a.Held.Count);
        await b.BalanceAsync(Ct);
        Assert.Equal(3, b.Held.Count);
        await a.BalanceAsync(Ct); // stable: nothing moves any more
        await b.BalanceAsync(Ct);
        Assert.Equal(3, a.Held.Count);
        Assert.Equal(3, b.Held.Count);
        await AssertEachGroupHeldOnceAsync([a, b]);
    }

    [Fact]
    public async Task DeadNode_ItsGroupsAreTakenBySurvivorsWithin30s_BeforeItsHeartbeatCountsAsDown()
    {
        var nodes = new[] { Node("a"), Node("b"), Node("c") };
        foreach (var node in nodes)
        {
            await node.HeartbeatAsync(_time, Ct);
        }

        foreach (var node in nodes)
        {
            await node.BalanceAsync(Ct);
        }

        var dead = nodes[2];
        var orphans = dead.Held.Keys.ToHashSet(StringComparer.Ordinal);
        Assert.Equal(2, orphans.Count);
        var survivors = nodes[..2];

        // The node dies: no renewals, no heartbeats, no passes. The survivors renew every 5 s, heartbeat and balance every second.
        var step = TimeSpan.FromSeconds(1);
        TimeSpan? takenAt = null;
        for (var elapsed = step; elapsed <= TimeSpan.FromSeconds(40) && takenAt is null; elapsed += step)
        {
            _time.Advance(step);
            foreach (var node in survivors)
            {
                if (elapsed.Ticks % Options.RenewInterval.Ticks == 0)
                {
                    Assert.Equal(0, await node.Leases.RenewAllAsync(Ct));
                }

                await node.HeartbeatAsync(_time, Ct);
                await node.BalanceAsync(Ct);
            }

            if (orphans.All(k => survivors.Any(s => s.Held.ContainsKey(k))))
            {
                takenAt = elapsed;
            }
        }

        Assert.NotNull(takenAt);
        Assert.True(takenAt <= Options.LeaseTtl + step, $"taken over after {takenAt}"); // as soon as the leases ran out
        Assert.True(takenAt < Options.DownAfter, "before the heartbeat alone would show the node down");
        Assert.Equal(3, survivors[0].Held.Count);
        Assert.Equal(3, survivors[1].Held.Count);

        // Stable until the dead node's heartbeat goes stale and after: its items are not handed back and forth.
        var settled = survivors.SelectMany(n => n.Held.Values).ToDictionary(h => h.Key, h => h.Token, StringComparer.Ordinal);
        for (var i = 0; i < 25; i++)
        {
            _time.Advance(step);
            foreach (var node in survivors)
            {
                if (_time.GetUtcNow().Ticks % Options.RenewInterval.Ticks == 0)
                {
                    await node.Leases.RenewAllAsync(Ct);
                }

                await node.HeartbeatAsync(_time, Ct);
                await node.BalanceAsync(Ct);
            }

            Assert.Equal(settled, survivors.SelectMany(n => n.Held.Values).ToDictionary(h => h.Key, h => h.Token, StringComparer.Ordinal));
        }

        var leases = await _store.ListLeasesAsync(Prefix, Ct);
        Assert.All(orphans, k => Assert.True(leases.Single(l => l.Key == k).Token >= 2, "a new holder gets a higher fencing token"));
        await AssertEachGroupHeldOnceAsync(survivors);
    }

    [Fact]
    public async Task NodeCutOffFromTheStore_StopsActingOnItsGroupsBeforeAnotherNodeTakesThem()
    {
        var a = Node("a");
        var b = Node("b");
        await a.HeartbeatAsync(_time, Ct);
        await b.HeartbeatAsync(_time, Ct);
        await a.BalanceAsync(Ct);
        await b.BalanceAsync(Ct);
        var handles = a.Held.Values.ToList();
        Assert.Equal(3, handles.Count);
        var lostAt = new Dictionary<string, DateTimeOffset>(StringComparer.Ordinal);
        foreach (var handle in handles)
        {
            handle.Lost.Register(() => lostAt[handle.Key] = _time.GetUtcNow());
        }

        a.Store.Disconnected = true; // node a's database session drops; it keeps running
        var takenAt = new Dictionary<string, DateTimeOffset>(StringComparer.Ordinal);
        var step = TimeSpan.FromMilliseconds(500);
        for (var elapsed = step; elapsed <= TimeSpan.FromSeconds(40) && takenAt.Count < handles.Count; elapsed += step)
        {
            _time.Advance(step);
            if (elapsed.Ticks % Options.RenewInterval.Ticks == 0)
            {
                await a.Leases.RenewAllAsync(Ct); // fails: keeps acting only until its time runs out
                await b.Leases.RenewAllAsync(Ct);
            }

            await b.HeartbeatAsync(_time, Ct);
            await b.BalanceAsync(Ct);
            foreach (var handle in handles.Where(h => b.Held.ContainsKey(h.Key) && !takenAt.ContainsKey(h.Key)))
            {
                Assert.False(handle.IsValid, $"{handle.Key} was taken while node a still held it");
                takenAt[handle.Key] = _time.GetUtcNow();
            }
        }

        Assert.Equal(handles.Count, takenAt.Count);
        foreach (var handle in handles)
        {
            Assert.True(lostAt[handle.Key] < takenAt[handle.Key], "node a stopped before node b started");
        }

        Assert.Equal(6, b.Held.Count);

        // Back online, node a gets its share again by hand-off, with new tokens.
        a.Store.Disconnected = false;
        _time.Advance(TimeSpan.FromSeconds(1));
        await a.HeartbeatAsync(_time, Ct);
        await a.BalanceAsync(Ct);
        await b.BalanceAsync(Ct);
        await a.BalanceAsync(Ct);
        Assert.Equal(3, a.Held.Count);
        Assert.All(a.Held.Values, h => Assert.DoesNotContain(handles, old => old.Key == h.Key && old.Token == h.Token));
        await AssertEachGroupHeldOnceAsync([a, b]);
    }

    [Fact]
    public async Task GroupsThatGoAway_AreReleased()
    {
        var a = Node("a");
        await a.HeartbeatAsync(_time, Ct);
        await a.BalanceAsync(Ct);
        Assert.Equal(6, a.Held.Count);

        a.Held = await a.Shares.BalanceAsync(Prefix, Groups[..2], Ct);
        Assert.Equal(2, a.Held.Count);
        Assert.Equal(2, (await _store.ListLeasesAsync(Prefix, Ct)).Count);
        Assert.Equal(2, a.Leases.HeldKeys.Count);
        await Assert.ThrowsAsync<ArgumentException>(() => a.Shares.BalanceAsync(Prefix, ["graph-renewals:x#0"], Ct));
    }

    private async Task AssertEachGroupHeldOnceAsync(IReadOnlyList<TestNode> nodes)
    {
        foreach (var group in Groups)
        {
            Assert.Single(nodes, n => n.Held.TryGetValue(group, out var h) && h.IsValid);
        }

        var leases = await _store.ListLeasesAsync(Prefix, Ct);
        Assert.Equal(Groups.Length, leases.Count(l => l.ExpiresAt > _time.GetUtcNow()));
    }

    private TestNode Node(string name)
    {
        var store = new FaultyFarmStore(_store, _time);
        var options = new StaticFarmOptions(Options);
        var identity = new NodeIdentity(name);
        var leases = new WorkLeases(store, identity, _time, options, NullLogger<WorkLeases>.Instance);
        return new TestNode(name, store, leases, new WorkShares(leases, store, _time, options, NullLogger<WorkShares>.Instance));
    }

    private sealed class TestNode(string name, FaultyFarmStore store, WorkLeases leases, WorkShares shares)
    {
        public FaultyFarmStore Store => store;

        public WorkLeases Leases => leases;

        public WorkShares Shares => shares;

        public IReadOnlyDictionary<string, LeaseHandle> Held { get; set; } = new Dictionary<string, LeaseHandle>();

        public async Task BalanceAsync(CancellationToken ct) => Held = await shares.BalanceAsync(Prefix, Groups, ct);

        public Task HeartbeatAsync(TimeProvider time, CancellationToken ct) => store.RecordHeartbeatAsync(
            new NodeReport { Name = name, Instance = leases.Owner, Region = "emea", Version = "1", StartedAt = time.GetUtcNow() },
            time.GetUtcNow(),
            ct);
    }

    private sealed class StaticFarmOptions(FarmOptions value) : IOptionsMonitor<FarmOptions>
    {
        public FarmOptions CurrentValue => value;

        public FarmOptions Get(string? name) => value;

        public IDisposable? OnChange(Action<FarmOptions, string?> listener) => null;
    }
}
