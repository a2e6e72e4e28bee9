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
/// Leadership and work leases on a real store with a fake clock: one leader at a time, a leader that loses its
/// database session stops before anyone else can start, fencing, leader duties, and takeover of a dead node's work.
/// </summary>
public sealed class LeaderElectionTests : IAsyncLifetime
{
    private static readonly FarmOptions Options = new(); // 15 s leases, renewed every 5 s, 3 s safety margin
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
    public async Task TwoNodes_OnlyOneLeads_AndKeepsItsTermWhileRenewing()
    {
        var a = Node("a");
        var b = Node("b");

        Assert.NotNull(await a.Election.TryLeadAsync(Ct));
        Assert.Null(await b.Election.TryLeadAsync(Ct));
        var term = a.Election.Current!.Term;

        for (var i = 0; i < 24; i++) // two minutes of renewals
        {
            _time.Advance(Options.RenewInterval);
            Assert.Equal(0, await a.Leases.RenewAllAsync(Ct));
            Assert.Null(await b.Election.TryLeadAsync(Ct));
            Assert.True(a.Election.IsLeader);
            Assert.False(b.Election.IsLeader);
        }

        Assert.Equal(term, a.Election.Current!.Term);
        Assert.NotNull(await a.Election.ConfirmAsync(Ct));
    }

    [Fact]
    public async Task LeaderLosesItsDatabaseSession_StopsActingBeforeAnotherNodeCanLead()
    {
        var a = Node("a");
        var b = Node("b");
        var first = await a.Election.TryLeadAsync(Ct);
        Assert.NotNull(first);
        var lostAt = (TimeSpan?)null;
        first.Lost.Register(() => lostAt = _time.GetUtcNow() - Start);

        a.Store.Disconnected = true; // every call of node a now fails, like a dropped connection
        var step = TimeSpan.FromMilliseconds(250);
        TimeSpan? bLeadsAt = null;
        for (var elapsed = step; elapsed <= TimeSpan.FromSeconds(30); elapsed += step)
        {
            _time.Advance(step);
            if (elapsed.Ticks % Options.RenewInterval.Ticks == 0)
            {
                await a.Leases.RenewAllAsync(Ct);
                await b.Leases.RenewAllAsync(Ct);
            }

            if (await b.Election.TryLeadAsync(Ct) is not null && bLeadsAt is null)
            {
                bLeadsAt = elapsed;
            }

            Assert.False(a.Election.IsLeader && b.Election.IsLeader, $"two leaders at {elapsed}");
        }

        // Node a stopped at lease − margin after its last renewal was sent; b took over at the expiry, with a new term.
        Assert.Equal(Options.LeaseTtl - Options.SafetyMargin, lostAt);
        Assert.Equal(Options.LeaseTtl, bLeadsAt);
        Assert.Equal(first.Token + 1, b.Election.Current!.Term);
        Assert.Null(await a.Election.ConfirmAsync(Ct));

        // The session comes back: the old leader learns it lost and does not lead again while b renews.
        a.Store.Disconnected = false;
        await a.Leases.RenewAllAsync(Ct);
        await b.Leases.RenewAllAsync(Ct);
        Assert.Null(await a.Election.TryLeadAsync(Ct));
        Assert.False(a.Election.IsLeader);
    }

    [Fact]
    public async Task RenewalAnswersLate_LeaderStopsAtItsDeadlineCountedFromTheSend()
    {
        var a = Node("a");
        var handle = await a.Election.TryLeadAsync(Ct);
        _time.Advance(Options.RenewInterval);

        // The renewal is sent at 5 s and its answer arrives 6 s later: the store extended the lease to 5 + 15 s, and
        // the node may act until 5 + 12 s (counted from the send), not until 11 + 12 s (from the answer).
        a.Store.DelayBeforeAnswer = TimeSpan.FromSeconds(6);
        Assert.Equal(0, await a.Leases.RenewAllAsync(Ct));
        a.Store.DelayBeforeAnswer = TimeSpan.Zero;
        _time.Advance(TimeSpan.FromSeconds(5)); // 16 s
        Assert.True(a.Election.IsLeader);
        _time.Advance(TimeSpan.FromSeconds(1)); // 17 s
        Assert.False(a.Election.IsLeader);
        Assert.True(handle!.Lost.IsCancellationRequested);
    }

    [Fact]
    public async Task DatabaseShowsAnotherTerm_ConfirmFencesTheOldLeaderAndRenewalDropsIt()
    {
        var a = Node("a");
        var b = Node("b");
        var handle = await a.Election.TryLeadAsync(Ct);
        var lost = new List<string>();
        a.Leases.Lost += lost.Add;

        // An operator ends every lease (or the row was changed behind the node's back): b leads at once.
        await _store.EndAllLeasesAsync(Ct);
        Assert.NotNull(await b.Election.TryLeadAsync(Ct));

        Assert.True(handle!.IsValid); // by its own clock a still could act, but the term check says no
        Assert.Null(await a.Election.ConfirmAsync(Ct));
        Assert.Equal(1, await a.Leases.RenewAllAsync(Ct));
        Assert.Equal([LeaderElection.LeaseKey], lost);
        Assert.False(a.Election.IsLeader);
    }

    [Fact]
    public async Task Duties_RunOnTheLeaderOnly_AtTheirIntervals_WithTheTerm()
    {
        var a = Node("a");
        var b = Node("b");
        var dutyA = new RecordingDuty(TimeSpan.FromSeconds(10));
        var dutyB = new RecordingDuty(TimeSpan.FromSeconds(10));
        var runnerA = new LeaderDutyRunner([dutyA], a.Election, _time, NullLogger<LeaderDutyRunner>.Instance);
        var runnerB = new LeaderDutyRunner([dutyB], b.Election, _time, NullLogger<LeaderDutyRunner>.Instance);
        await a.Election.TryLeadAsync(Ct);
        await b.Election.TryLeadAsync(Ct);

        for (var i = 0; i < 5; i++) // 25 s
        {
            await runnerA.RunDueAsync(Ct);
            await runnerB.RunDueAsync(Ct);
            _time.Advance(Options.RenewInterval);
            await a.Leases.RenewAllAsync(Ct);
        }

        Assert.Equal([1L, 1L, 1L], dutyA.Terms); // at 0, 10 and 20 s
        Assert.Empty(dutyB.Terms);
        Assert.Equal(TimeSpan.FromSeconds(5), runnerA.UntilNextDue());
    }

    [Fact]
    public async Task Duty_LeadershipLostWhileRunning_IsCancelled()
    {
        var a = Node("a");
        var duty = new BlockingDuty();
        var runner = new LeaderDutyRunner([duty], a.Election, _time, NullLogger<LeaderDutyRunner>.Instance);
        await a.Election.TryLeadAsync(Ct);

        var run = runner.RunDueAsync(Ct);
        await duty.Started.Task.WaitAsync(TimeSpan.FromSeconds(10), Ct);
        _time.Advance(Options.LeaseTtl - Options.SafetyMargin); // no renewal: time to act runs out

        Assert.Equal(0, await run.WaitAsync(TimeSpan.FromSeconds(10), Ct));
        Assert.True(duty.Cancelled);
    }

    [Fact]
    public async Task DeadNodesWorkLeases_AreTakenOverWithinTheLeaseTtl_WithHigherTokens()
    {
        var a = Node("a");
        var b = Node("b");
        string[] groups = ["ews-group:1", "ews-group:2", "ews-group:3"];
        foreach (var key in groups)
        {
            Assert.Equal(1, (await a.Leases.TryAcquireAsync(key, Ct))!.Token);
        }

        // Node a is killed (nothing renews its leases); b looks for free work every second.
        var takenAt = new Dictionary<string, TimeSpan>();
        for (var elapsed = TimeSpan.FromSeconds(1); elapsed <= TimeSpan.FromSeconds(30) && takenAt.Count < groups.Length; elapsed += TimeSpan.FromSeconds(1))
        {
            _time.Advance(TimeSpan.FromSeconds(1));
            foreach (var key in groups)
            {
                if (!takenAt.ContainsKey(key) && await b.Leases.TryAcquireAsync(key, Ct) is { } handle)
                {
                    Assert.Equal(2, handle.Token);
                    takenAt[key] = elapsed;
                }
            }
        }

        Assert.All(groups, key => Assert.Equal(Options.LeaseTtl, takenAt[key]));
        Assert.Equal(groups, b.Leases.HeldKeys.Order(StringComparer.Ordinal));
        Assert.Equal(groups, (await b.Leases.ListAsync("ews-group:", Ct)).Where(l => l.Owner == b.Leases.Owner).Select(l => l.Key));
    }

    [Fact]
    public async Task Release_LetsAnotherNodeTakeTheItemAtOnce()
    {
        var a = Node("a");
        var b = Node("b");
        var handle = await a.Leases.TryAcquireAsync("graph:renewals", Ct);

        await a.Leases.ReleaseAsync("graph:renewals", Ct);

        Assert.True(handle!.Lost.IsCancellationRequested);
        Assert.False(a.Leases.IsHeld("graph:renewals"));
        Assert.Equal(2, (await b.Leases.TryAcquireAsync("graph:renewals", Ct))!.Token);
    }

    private static readonly DateTimeOffset Start = new(2025, 3, 1, 8, 0, 0, TimeSpan.Zero);

    private TestNode Node(string name)
    {
        var store = new FaultyFarmStore(_store, _time);
        var options = new StaticOptions(Options);
        var leases = new WorkLeases(store, new NodeIdentity(name), _time, options, NullLogger<WorkLeases>.Instance);
        return new TestNode(store, leases, new LeaderElection(leases, store, _time, NullLogger<LeaderElection>.Instance));
    }

    private sealed record TestNode(FaultyFarmStore Store, WorkLeases Leases, LeaderElection Election);

    private sealed class StaticOptions(FarmOptions value) : IOptionsMonitor<FarmOptions>
    {
        public FarmOptions CurrentValue => value;

        public FarmOptions Get(string? name) => value;

        public IDisposable? OnChange(Action<FarmOptions, string?> listener) => null;
    }

    private sealed class RecordingDuty(TimeSpan interval) : ILeaderDuty
    {
        public List<long> Terms { get; } = [];

        public string Name => "recording";

        public TimeSpan Interval => interval;

        public Task RunAsync(LeaderTerm term, CancellationToken cancellationToken)
        {
            Terms.Add(term.Term);
            return Task.CompletedTask;
        }
    }

    private sealed class BlockingDuty : ILeaderDuty
    {
        public TaskCompletionSource Started { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public bool Cancelled { get; private set; }

        public string Name => "blocking";

        public TimeSpan Interval => TimeSpan.FromMinutes(1);

        public async Task RunAsync(LeaderTerm term, CancellationToken cancellationToken)
        {
            Started.TrySetResult();
            try
            {
                await Task.Delay(Timeout.Infinite, cancellationToken);
            }
            catch (OperationCanceledException)
            {
                Cancelled = true;
                throw;
            }
        }
    }
}

/// <summary>
/// A node's connection to the real store that can drop (every call fails) or answer late (the fake clock moves on
/// between the send and the answer): the faults a farm sees on a network.
/// </summary>
internal sealed class FaultyFarmStore(IFarmStore inner, FakeTimeProvider time) : IFarmStore
{
    public bool Disconnected { get; set; }

    public TimeSpan DelayBeforeAnswer { get; set; }

    public Task RecordHeartbeatAsync(NodeReport node, DateTimeOffset now, CancellationToken cancellationToken)
        => Call(() => inner.RecordHeartbeatAsync(node, now, cancellationToken));

    public Task<IReadOnlyList<NodeRecord>> ListNodesAsync(CancellationToken cancellationToken) => Call(() => inner.ListNodesAsync(cancellationToken));

    public Task<int> ForgetNodesAsync(DateTimeOffset silentBefore, CancellationToken cancellationToken)
        => Call(() => inner.ForgetNodesAsync(silentBefore, cancellationToken));

    public Task<WorkLease?> TryAcquireLeaseAsync(string key, string owner, TimeSpan ttl, DateTimeOffset now, CancellationToken cancellationToken)
        => Call(() => inner.TryAcquireLeaseAsync(key, owner, ttl, now, cancellationToken));

    public Task<WorkLease?> RenewLeaseAsync(WorkLease lease, TimeSpan ttl, DateTimeOffset now, CancellationToken cancellationToken)
        => Call(() => inner.RenewLeaseAsync(lease, ttl, now, cancellationToken));

    public Task<bool> ReleaseLeaseAsync(WorkLease lease, CancellationToken cancellationToken) => Call(() => inner.ReleaseLeaseAsync(lease, cancellationToken));

    public Task<bool> IsLeaseCurrentAsync(WorkLease lease, DateTimeOffset now, CancellationToken cancellationToken)
        => Call(() => inner.IsLeaseCurrentAsync(lease, now, cancellationToken));

    public Task<IReadOnlyList<WorkLease>> ListLeasesAsync(string prefix, CancellationToken cancellationToken)
        => Call(() => inner.ListLeasesAsync(prefix, cancellationToken));

    public Task<int> EndAllLeasesAsync(CancellationToken cancellationToken) => Call(() => inner.EndAllLeasesAsync(cancellationToken));

    private async Task Call(Func<Task> call) => await Call(async () =>
    {
        await call();
        return true;
    });

    private async Task<T> Call<T>(Func<Task<T>> call)
    {
        if (Disconnected)
        {
            throw new InvalidOperationException("connection lost (simulated)");
        }

        var result = await call();
        if (DelayBeforeAnswer > TimeSpan.Zero)
        {
            time.Advance(DelayBeforeAnswer);
        }

        return result;
    }
}
