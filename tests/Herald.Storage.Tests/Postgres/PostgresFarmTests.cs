using Herald.Core.Notifications;
using Herald.Core.Ports;
using Herald.Core.Registrations;
using Herald.Storage.Postgres;
using Herald.Testing;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using Npgsql;
using Xunit;

namespace Herald.Storage.Tests.Postgres;

/// <summary>
/// What only a shared database shows: several store instances (as several nodes would hold) on one
/// PostgreSQL database, claiming, completing, waking and throttling together.
/// </summary>
public sealed class PostgresFarmTests(PostgresServer server) : IAsyncLifetime
{
    private static readonly TimeSpan Lease = TimeSpan.FromMinutes(2);
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2025, 3, 1, 8, 0, 0, TimeSpan.Zero));
    private readonly List<PostgresStore> _stores = [];
    private string _connectionString = null!;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public async ValueTask InitializeAsync()
    {
        _connectionString = await server.CreateDatabaseAsync("farm");
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var store in _stores)
        {
            await store.DisposeAsync();
        }

        await server.DropDatabaseAsync(_connectionString);
    }

    [Fact]
    public async Task Claim_TwoNodesAtOnce_NeverLeaseTheSameRowAndTakeEveryRow()
    {
        var a = await NodeAsync();
        var b = await NodeAsync();
        var tenants = new[] { "default", "t2", "t3" };
        foreach (var tenant in tenants.Skip(1))
        {
            await a.CreateTenantAsync(new Tenant(tenant, tenant, _time.GetUtcNow()), Ct);
        }

        const int Rows = 1500;
        await a.EnqueueAsync(
            [.. Enumerable.Range(0, Rows).Select(i => Badge(i, tenant: tenants[i % 3], lane: i % 4 == 0 ? Lane.Priority : Lane.Standard))],
            Ct);

        var seen = new System.Collections.Concurrent.ConcurrentDictionary<long, string>();
        var duplicates = 0;
        async Task DrainAsync(PostgresStore store, string owner)
        {
            for (var round = 0; round < 400; round++)
            {
                var claimed = await store.ClaimAsync(owner, new ClaimLimits(17, 23), _time.GetUtcNow(), Lease, Ct);
                if (claimed.Count == 0)
                {
                    return;
                }

                foreach (var c in claimed)
                {
                    if (!seen.TryAdd(c.Id, owner))
                    {
                        Interlocked.Increment(ref duplicates);
                    }
                }

                Assert.Equal(claimed.Count, await store.CompleteAsync(owner, [.. claimed.Select(c => Sent(c))], Ct));
            }
        }

        await Task.WhenAll(
            Task.Run(() => DrainAsync(a, "node-a/1"), Ct),
            Task.Run(() => DrainAsync(b, "node-b/1"), Ct),
            Task.Run(() => DrainAsync(a, "node-a/2"), Ct),
            Task.Run(() => DrainAsync(b, "node-b/2"), Ct));

        Assert.Equal(0, duplicates);
        Assert.Equal(Rows, seen.Count);
        Assert.Contains(seen.Values, o => o.StartsWith("node-a", StringComparison.Ordinal));
        Assert.Contains(seen.Values, o => o.StartsWith("node-b", StringComparison.Ordinal));
        var snapshot = await b.SnapshotAsync(_time.GetUtcNow(), Ct);
        Assert.Equal(Rows, snapshot.Counts.Where(c => c.Key.State == NotificationState.Sent).Sum(c => c.Value));
        Assert.Equal(0, a.FencedCompletions + b.FencedCompletions);
    }

    [Fact]
    public async Task Complete_AfterTheLeaseWasReapedAndTakenByAnotherNode_IsFencedOffAndCounted()
    {
        var a = await NodeAsync();
        var b = await NodeAsync();
        await a.EnqueueAsync([Badge(1), Badge(2)], Ct);
        var stale = await a.ClaimAsync("node-a/1", new ClaimLimits(10, 10), _time.GetUtcNow(), Lease, Ct);
        Assert.Equal(2, stale.Count);

        // node-a stalls past its lease; node-b's reaper releases both, and node-b sends them.
        _time.Advance(Lease + TimeSpan.FromSeconds(1));
        Assert.Equal(2, await b.ReleaseExpiredLeasesAsync(_time.GetUtcNow(), Ct));
        var taken = await b.ClaimAsync("node-b/1", new ClaimLimits(10, 10), _time.GetUtcNow(), Lease, Ct);
        Assert.Equal(stale.Select(c => c.Id).Order(), taken.Select(c => c.Id).Order());
        Assert.All(taken, c => Assert.Equal(2, c.Attempt));

        // node-a wakes up and reports: a failure for one and a retry for the other. Neither counts.
        var applied = await a.CompleteAsync(
            "node-a/1",
            [Outcome(stale[0], NotificationState.Failed, 400, "BadDeviceToken"), Outcome(stale[1], NotificationState.Retrying, 503) with { RetryAt = _time.GetUtcNow() }],
            Ct);

        Assert.Equal(0, applied);
        Assert.Equal(2, a.FencedCompletions);
        foreach (var c in taken)
        {
            var record = await a.GetNotificationAsync(c.Id, Ct);
            Assert.Equal(NotificationState.Sending, record!.State);
            Assert.Empty(await a.GetAttemptsAsync(c.Id, Ct));
        }

        Assert.Equal(2, await b.CompleteAsync("node-b/1", [.. taken.Select(c => Sent(c))], Ct));
        Assert.Equal(0, b.FencedCompletions);
        Assert.All(await Task.WhenAll(taken.Select(c => b.GetNotificationAsync(c.Id, Ct))), r => Assert.Equal(NotificationState.Sent, r!.State));
    }

    [Fact]
    public async Task RenewLeases_KeepsALongSendFromTheReaperButNotALeaseAlreadyReaped()
    {
        var a = await NodeAsync();
        await a.EnqueueAsync([Badge(1), Badge(2)], Ct);
        var claimed = await a.ClaimAsync("node-a/1", new ClaimLimits(10, 10), _time.GetUtcNow(), Lease, Ct);

        _time.Advance(TimeSpan.FromMinutes(1));
        Assert.Equal(1, await a.RenewLeasesAsync("node-a/1", [claimed[0].Id], _time.GetUtcNow() + Lease, Ct));
        Assert.Equal(0, await a.RenewLeasesAsync("node-b/1", [claimed[1].Id], _time.GetUtcNow() + Lease, Ct)); // not its lease

        _time.Advance(TimeSpan.FromMinutes(1) + TimeSpan.FromSeconds(1));
        Assert.Equal(1, await a.ReleaseExpiredLeasesAsync(_time.GetUtcNow(), Ct)); // only the one not renewed
        Assert.Equal(NotificationState.Sending, (await a.GetNotificationAsync(claimed[0].Id, Ct))!.State);
        Assert.Equal(NotificationState.Retrying, (await a.GetNotificationAsync(claimed[1].Id, Ct))!.State);
        Assert.Equal(0, await a.RenewLeasesAsync("node-a/1", [claimed[1].Id], _time.GetUtcNow() + Lease, Ct)); // reaped: gone

        Assert.Equal(1, await a.CompleteAsync("node-a/1", [Sent(claimed[0]), Sent(claimed[1])], Ct));
    }

    [Fact]
    public async Task Enqueue_OnOneNode_WakesTheOtherThroughListenNotify()
    {
        var a = await NodeAsync();
        var b = await NodeAsync();
        var woken = new SemaphoreSlim(0);
        b.QueueWake += () => woken.Release();
        await WaitUntilAsync(() => b.IsListening, "node-b listens");
        while (woken.CurrentCount > 0)
        {
            await woken.WaitAsync(Ct); // the wake-up every (re)connection raises
        }

        await a.EnqueueAsync([Badge(1)], Ct);

        Assert.True(await woken.WaitAsync(TimeSpan.FromSeconds(10), Ct), "node-b was not woken by node-a's enqueue");
        Assert.Single(await b.ClaimAsync("node-b/1", new ClaimLimits(10, 10), _time.GetUtcNow(), Lease, Ct));
    }

    [Fact]
    public async Task Ingest_OnOneNode_WakesTheOtherToo()
    {
        var a = await NodeAsync();
        var b = await NodeAsync();
        var woken = new SemaphoreSlim(0);
        b.QueueWake += () => woken.Release();
        await WaitUntilAsync(() => b.IsListening, "node-b listens");
        while (woken.CurrentCount > 0)
        {
            await woken.WaitAsync(Ct);
        }

        // Nothing is enqueued by an unknown callback: nothing to wake for (the hint rides on the enqueue).
        var hash = Core.Security.Secrets.Hash("cb_one");
        await a.CreateAsync(Registration("reg-1"), hash, Ct);
        var item = new IngestItem { Route = new IngestRoute(RouteKind.CallbackKey, hash), Notifications = [NewMail()], ReceivedAt = _time.GetUtcNow() };
        await a.ApplyIngestBatchAsync([item], new Core.Planning.MailEventPlanner(Microsoft.Extensions.Options.Options.Create(new Core.Planning.PlannerOptions())), Ct);

        Assert.Equal(IngestVerdict.Accepted, item.Verdict);
        Assert.True(await woken.WaitAsync(TimeSpan.FromSeconds(10), Ct), "node-b was not woken by node-a's ingest");
    }

    [Fact]
    public async Task ListenOff_HoldsNoListenConnectionAndStillSharesTheQueue()
    {
        var a = await NodeAsync();
        var b = await NodeAsync(new PostgresStoreOptions { Listen = false });
        var on = await NodeAsync();
        var wakes = 0;
        b.QueueWake += () => Interlocked.Increment(ref wakes);
        on.QueueWake += () => { };
        await WaitUntilAsync(() => on.IsListening, "the listening node listens");

        await a.EnqueueAsync([Badge(1)], Ct);

        // One LISTEN session on the database (the listening node's), none for the node with Listen off.
        Assert.Equal(1L, await ScalarAsync<long>("SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%'"));
        Assert.False(b.IsListening);
        Assert.Equal(0, Volatile.Read(ref wakes));

        // Polling finds the work all the same.
        Assert.Single(await b.ClaimAsync("node-b/1", new ClaimLimits(10, 10), _time.GetUtcNow(), Lease, Ct));
    }

    [Fact]
    public async Task Migrate_ManyNodesAtOnceAndAgain_AppliesEachMigrationOnce()
    {
        var nodes = new List<PostgresStore>();
        for (var i = 0; i < 4; i++)
        {
            nodes.Add(Track(new PostgresStore(_connectionString, new PostgresStoreOptions(), _time, NullLogger.Instance)));
        }

        await Task.WhenAll(nodes.Select(n => Task.Run(() => n.MigrateAsync(Ct), Ct)));
        await nodes[0].MigrateAsync(Ct);

        Assert.Equal((long)PostgresMigrator.All.Count, await ScalarAsync<long>("SELECT COUNT(*) FROM schema_migrations"));
        Assert.Equal((long)PostgresMigrator.All.Count, await ScalarAsync<long>("SELECT COUNT(DISTINCT version) FROM schema_migrations"));
        Assert.Equal(1L, await ScalarAsync<long>("SELECT COUNT(*) FROM tenants"));
        Assert.True(await nodes[3].PingAsync(Ct));
    }

    [Fact]
    public async Task Migrate_DatabaseFromANewerHerald_IsRefused()
    {
        var a = await NodeAsync();
        await ExecuteAsync("INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, '0999_future', 0)");

        var ex = await Assert.ThrowsAsync<InvalidOperationException>(() => a.MigrateAsync(Ct));

        Assert.Contains("999", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Migrations_MirrorTheSqliteOnesByNumberAndName()
    {
        var sqlite = Sqlite.SqliteMigrations.All.ToDictionary(m => m.Version, m => m.Name);
        Assert.NotEmpty(PostgresMigrator.All);
        foreach (var migration in PostgresMigrator.All)
        {
            Assert.True(sqlite.TryGetValue(migration.Version, out var name), $"PostgreSQL migration {migration.Name} has no SQLite twin");
            Assert.Equal(name, migration.Name);
        }
    }

    [Fact]
    public async Task Throttle_TwoNodesTakingAtOnce_ShareOneBucket()
    {
        var a = await NodeAsync();
        var b = await NodeAsync();
        var now = _time.GetUtcNow();
        var takes = new List<Task<int>>();
        for (var i = 0; i < 40; i++)
        {
            var store = i % 2 == 0 ? a : b;
            takes.Add(Task.Run(() => store.TakeTokensAsync("farm:standard", 7, ratePerMinute: 0, capacity: 100, now, Ct), Ct));
        }

        var taken = await Task.WhenAll(takes);

        Assert.Equal(100, taken.Sum()); // a new bucket starts full; no refill at rate 0; never more than it held
        Assert.Equal(0, await b.TakeTokensAsync("farm:standard", 1, 0, 100, now, Ct));

        // Refill is shared too: a minute at 60 a minute is 60 tokens for the whole farm, whoever asks.
        _time.Advance(TimeSpan.FromMinutes(1));
        var later = _time.GetUtcNow();
        var refill = await Task.WhenAll(a.TakeTokensAsync("farm:standard", 50, 60, 100, later, Ct), b.TakeTokensAsync("farm:standard", 50, 60, 100, later, Ct));
        Assert.Equal(60, refill.Sum());

        await a.ReturnTokensAsync("farm:standard", 5, 100, Ct);
        Assert.Equal(5, await b.TakeTokensAsync("farm:standard", 50, 60, 100, later, Ct));
    }

    [Fact]
    public async Task Enqueue_TwoNodesCoalescingOneKeyAtOnce_KeepOnePendingRowWithTheMergedBadge()
    {
        var a = await NodeAsync();
        var b = await NodeAsync();

        await Task.WhenAll(Enumerable.Range(1, 40).Select(i => Task.Run(() => (i % 2 == 0 ? a : b).EnqueueAsync([Badge(i, key: "k1")], Ct), Ct)));

        var claimed = Assert.Single(await a.ClaimAsync("node-a/1", new ClaimLimits(100, 100), _time.GetUtcNow(), Lease, Ct));
        Assert.InRange(claimed.Content.Badge!.Value, 1, 40);
        Assert.Equal(1L, await ScalarAsync<long>("SELECT COUNT(*) FROM notifications"));
    }

    [Fact]
    public async Task Connectors_AndMailboxRoute_StoreAndFindTheMailboxRegistrations()
    {
        var a = await NodeAsync();
        var created = _time.GetUtcNow();
        await a.UpsertConnectorAsync(new Core.Connectors.ConnectorRecord("default", "graph-1", Core.Connectors.ConnectorKind.Graph, "sealed-1", created, created), Ct);
        _time.Advance(TimeSpan.FromSeconds(1));
        await a.UpsertConnectorAsync(new Core.Connectors.ConnectorRecord("default", "graph-1", Core.Connectors.ConnectorKind.Graph, "sealed-2", _time.GetUtcNow(), _time.GetUtcNow()), Ct);
        await Assert.ThrowsAsync<InvalidOperationException>(
            () => a.UpsertConnectorAsync(new Core.Connectors.ConnectorRecord("nobody", "x", Core.Connectors.ConnectorKind.Ews, "s", created, created), Ct));

        var connector = await a.GetConnectorAsync("default", "graph-1", Ct);
        Assert.Equal("sealed-2", connector!.SealedConfig);
        Assert.Equal(created, connector.CreatedAt);
        Assert.Equal(_time.GetUtcNow(), connector.UpdatedAt);
        Assert.Single(await a.ListConnectorsAsync(null, Ct));

        var mailbox = new byte[] { 1, 2, 3, 4 };
        await a.CreateAsync(Registration("reg-1", "graph-1", mailbox, "sealed-mailbox"), null, Ct);
        var listed = Assert.Single(await a.ListByConnectorAsync("default", "graph-1", Ct));
        Assert.Equal(mailbox, listed.MailboxHash);
        Assert.Equal("sealed-mailbox", listed.SealedMailbox);
        Assert.Equal(1, await a.CountByConnectorAsync("default", "graph-1", Ct));

        var item = new IngestItem { Route = IngestRoute.ForMailbox("default", "graph-1", mailbox), Notifications = [NewMail()], ReceivedAt = _time.GetUtcNow() };
        var other = new IngestItem { Route = IngestRoute.ForMailbox("default", "graph-2", mailbox), Notifications = [NewMail()], ReceivedAt = _time.GetUtcNow() };
        await a.ApplyIngestBatchAsync([item, other], new Core.Planning.MailEventPlanner(Microsoft.Extensions.Options.Options.Create(new Core.Planning.PlannerOptions())), Ct);
        Assert.Equal(IngestVerdict.Accepted, item.Verdict);
        Assert.Equal(1, item.Enqueued);
        Assert.Equal(IngestVerdict.Unsubscribe, other.Verdict);

        Assert.True(await a.DeleteConnectorAsync("default", "graph-1", Ct));
        Assert.Null(await a.GetConnectorAsync("default", "graph-1", Ct));
    }

    [Fact]
    public async Task Listener_DatabaseRestarted_ReconnectsAndWakesAgain()
    {
        // A cluster of its own: restarting the shared one would break the other tests.
        var own = new PostgresServer();
        await own.InitializeAsync();
        try
        {
            var connectionString = await own.CreateDatabaseAsync("restart");
            var a = Track(new PostgresStore(connectionString, new PostgresStoreOptions(), _time, NullLogger.Instance));
            var b = Track(new PostgresStore(connectionString, new PostgresStoreOptions(), TimeProvider.System, NullLogger.Instance));
            await a.MigrateAsync(Ct);
            var woken = new SemaphoreSlim(0);
            b.QueueWake += () => woken.Release();
            await WaitUntilAsync(() => b.IsListening, "node-b listens");

            await own.StopAsync();
            await WaitUntilAsync(() => !b.IsListening, "node-b notices the database is gone");
            await Assert.ThrowsAnyAsync<NpgsqlException>(() => a.EnqueueAsync([Badge(1)], Ct));
            await own.StartAsync();
            await WaitUntilAsync(() => b.IsListening, "node-b listens again");
            while (woken.CurrentCount > 0)
            {
                await woken.WaitAsync(Ct);
            }

            await a.EnqueueAsync([Badge(2)], Ct);

            Assert.True(await woken.WaitAsync(TimeSpan.FromSeconds(10), Ct), "node-b was not woken after reconnecting");
            var claimed = Assert.Single(await b.ClaimAsync("node-b/1", new ClaimLimits(10, 10), _time.GetUtcNow(), Lease, Ct));
            Assert.Equal(2, claimed.Content.Badge);
        }
        finally
        {
            foreach (var store in _stores)
            {
                await store.DisposeAsync();
            }

            _stores.Clear();
            await own.DisposeAsync();
        }
    }

    private async Task<PostgresStore> NodeAsync(PostgresStoreOptions? options = null)
    {
        var store = Track(new PostgresStore(_connectionString, options ?? new PostgresStoreOptions(), _time, NullLogger.Instance));
        await store.MigrateAsync(Ct);
        return store;
    }

    private PostgresStore Track(PostgresStore store)
    {
        _stores.Add(store);
        return store;
    }

    private async Task<T> ScalarAsync<T>(string sql)
    {
        await using var connection = new NpgsqlConnection(_connectionString);
        await connection.OpenAsync(Ct);
        await using var command = new NpgsqlCommand(sql, connection);
        return (T)(await command.ExecuteScalarAsync(Ct))!;
    }

    private async Task ExecuteAsync(string sql)
    {
        await using var connection = new NpgsqlConnection(_connectionString);
        await connection.OpenAsync(Ct);
        await using var command = new NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync(Ct);
    }

    private static async Task WaitUntilAsync(Func<bool> condition, string what)
    {
        for (var i = 0; i < 300 && !condition(); i++)
        {
            await Task.Delay(100, Ct);
        }

        Assert.True(condition(), "timed out waiting until " + what);
    }

    private NewNotification Badge(int badge, string? key = null, string tenant = "default", Lane lane = Lane.Priority) => new()
    {
        TenantId = tenant,
        Lane = lane,
        Platform = Platform.Apns,
        Token = "token-" + badge,
        Topic = "com.example.mail",
        Content = new NotificationContent { Kind = PushKind.Badge, Badge = badge },
        CoalesceKey = key,
        EventAt = _time.GetUtcNow(),
    };

    private Registration Registration(string id, string? connector = null, byte[]? mailbox = null, string? sealedMailbox = null) => new()
    {
        Connector = connector,
        MailboxHash = mailbox,
        SealedMailbox = sealedMailbox,
        Id = id,
        TenantId = "default",
        Platform = Platform.Apns,
        Token = "token-" + id,
        Topic = "com.example.mail",
        Source = SourceKind.EwsPush,
        Style = NotificationStyle.Badge,
        CreatedAt = _time.GetUtcNow(),
        UpdatedAt = _time.GetUtcNow(),
    };

    private static Core.Events.MailboxNotification NewMail() => new()
    {
        SubscriptionId = "sub-1",
        Events = [new Core.Events.MailEvent { Kind = Core.Events.MailEventKind.NewMail, ItemId = "item-1", ParentFolderId = "inbox-folder" }],
    };

    private DeliveryOutcome Sent(ClaimedNotification c) => Outcome(c, NotificationState.Sent, 200);

    private DeliveryOutcome Outcome(ClaimedNotification c, NotificationState state, int status, string? reason = null) => new()
    {
        NotificationId = c.Id,
        RegistrationId = c.RegistrationId,
        State = state,
        StatusCode = status,
        Reason = reason,
        CompletedAt = _time.GetUtcNow(),
        Attempt = c.Attempt,
    };
}
