using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Engines;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Toolchains.InProcess.Emit;
using Herald.Core.Notifications;
using Herald.Core.Ports;
using Herald.Core.Registrations;
using Herald.Storage.Sqlite;
using Microsoft.Extensions.Logging.Abstractions;

namespace Herald.Bench;

/// <summary>
/// Short runs, in this process: each invocation moves tens of thousands of rows through a real SQLite
/// file (WAL, <c>synchronous=FULL</c>), so a few iterations already give stable numbers.
/// </summary>
public sealed class ShortStoreConfig : ManualConfig
{
    public ShortStoreConfig()
    {
        AddJob(Job.Default
            .WithToolchain(InProcessEmitToolchain.Instance)
            .WithStrategy(RunStrategy.Monitoring)
            .WithLaunchCount(1)
            .WithWarmupCount(1)
            .WithIterationCount(5)
            .WithInvocationCount(1)
            .WithUnrollFactor(1)
            .WithId("Short"));
        AddDiagnoser(BenchmarkDotNet.Diagnosers.MemoryDiagnoser.Default);

        // Reports and logs next to the binaries (ignored by git), not in the working directory.
        ArtifactsPath = Path.Combine(AppContext.BaseDirectory, "BenchmarkDotNet.Artifacts");
    }
}

/// <summary>A fresh store on a temporary SQLite file, and notifications shaped like Herald's traffic.</summary>
public abstract class StoreBenchmarkBase
{
    protected const string Tenant = SqliteStore.DefaultTenantId;
    private string _folder = string.Empty;

    protected SqliteStore Store { get; private set; } = null!;

    protected static CancellationToken Ct => CancellationToken.None;

    protected void OpenFreshStore(params string[] tenants)
    {
        _folder = Path.Combine(Path.GetTempPath(), "herald-bench", Guid.NewGuid().ToString("N"));
        Store = SqliteStore.OpenAndMigrateAsync(Path.Combine(_folder, "herald.db"), TimeProvider.System, NullLogger.Instance, Ct).GetAwaiter().GetResult();
        foreach (var tenant in tenants)
        {
            Store.CreateTenantAsync(new Tenant(tenant, tenant, DateTimeOffset.UtcNow), Ct).GetAwaiter().GetResult();
        }
    }

    protected void DeleteStore()
    {
        Store.Dispose();
        Directory.Delete(_folder, recursive: true);
    }

    /// <summary>A notification to registration <paramref name="i"/>: a 64-hex-digit APNs token, its own content unless one is given.</summary>
    protected static NewNotification Notification(int i, string tenant, Lane lane, string? coalesceKey, NotificationContent? content = null, string? requestId = null) => new()
    {
        TenantId = tenant,
        RegistrationId = "reg-" + i.ToString("D7", System.Globalization.CultureInfo.InvariantCulture),
        RequestId = requestId,
        Lane = lane,
        Platform = Platform.Apns,
        Token = i.ToString("x8", System.Globalization.CultureInfo.InvariantCulture).PadLeft(64, 'a'),
        Topic = "com.example.securemail",
        Content = content ?? new NotificationContent { Kind = PushKind.Badge, Badge = (i % 50) + 1 },
        CoalesceKey = coalesceKey,
        CollapseId = "herald-mail",
        ExpiresAt = DateTimeOffset.UtcNow.AddDays(1),
        EventAt = DateTimeOffset.UtcNow,
    };
}

/// <summary>
/// The queue's round trip: enqueue in batches of 512 (half each lane, four tenants), claim with
/// <c>ClaimLimits(256, 256)</c>, complete each claimed batch in one call. Reported per notification.
/// </summary>
[Config(typeof(ShortStoreConfig))]
public class StoreThroughputBenchmarks : StoreBenchmarkBase
{
    private const int Batch = 512;
    private const int Rounds = 100;
    private const int Total = Batch * Rounds;
    private static readonly string[] Tenants = ["default", "t1", "t2", "t3"];
    private readonly List<List<NewNotification>> _batches = [];

    /// <summary>Mailbox events carry a coalescing key per registration (the insert may replace); direct sends none.</summary>
    [Params(false, true)]
    public bool CoalesceKeys { get; set; }

    [IterationSetup]
    public void Setup()
    {
        OpenFreshStore("t1", "t2", "t3");
        _batches.Clear();
        for (var round = 0; round < Rounds; round++)
        {
            var batch = new List<NewNotification>(Batch);
            for (var j = 0; j < Batch; j++)
            {
                var i = (round * Batch) + j;
                batch.Add(Notification(i, Tenants[i % Tenants.Length], j % 2 == 0 ? Lane.Priority : Lane.Standard, CoalesceKeys ? "reg:" + i : null));
            }

            _batches.Add(batch);
        }
    }

    [IterationCleanup]
    public void Cleanup() => DeleteStore();

    /// <summary>Each round: enqueue 512, claim up to 256 + 256, complete what was claimed.</summary>
    [Benchmark(OperationsPerInvoke = Total)]
    public async Task<int> EnqueueClaimComplete()
    {
        var completed = 0;
        var outcomes = new List<DeliveryOutcome>(Batch);
        foreach (var batch in _batches)
        {
            await Store.EnqueueAsync(batch, Ct);
            completed += await ClaimAndCompleteAsync(outcomes);
        }

        while (await ClaimAndCompleteAsync(outcomes) is var n && n > 0)
        {
            completed += n;
        }

        return completed == Total ? completed : throw new InvalidOperationException($"Completed {completed} of {Total}.");
    }

    private async Task<int> ClaimAndCompleteAsync(List<DeliveryOutcome> outcomes)
    {
        var claimed = await Store.ClaimAsync("bench/1", new ClaimLimits(256, 256), DateTimeOffset.UtcNow, TimeSpan.FromMinutes(2), Ct);
        if (claimed.Count == 0)
        {
            return 0;
        }

        outcomes.Clear();
        var now = DateTimeOffset.UtcNow;
        foreach (var n in claimed)
        {
            outcomes.Add(new DeliveryOutcome
            {
                NotificationId = n.Id,
                RegistrationId = n.RegistrationId,
                State = NotificationState.Sent,
                StatusCode = 200,
                CompletedAt = now,
                Attempt = n.Attempt,
            });
        }

        return await Store.CompleteAsync("bench/1", outcomes, Ct);
    }
}

/// <summary>
/// <c>POST /v1/notifications</c> with 100,000 targets: the API enqueues them in batches of 5,000 within the
/// request. Direct sends: no coalescing key, one shared content. Reported per request (all 100,000).
/// </summary>
[Config(typeof(ShortStoreConfig))]
public class StoreBulkEnqueueBenchmarks : StoreBenchmarkBase
{
    private const int Targets = 100_000;
    private const int Batch = 5_000;
    private readonly List<List<NewNotification>> _batches = [];

    [IterationSetup]
    public void Setup()
    {
        OpenFreshStore();
        _batches.Clear();
        var content = new NotificationContent { Kind = PushKind.Alert, Title = "Maintenance", Body = "Mail will be unavailable tonight from 22:00.", Badge = 1 };
        for (var i = 0; i < Targets; i += Batch)
        {
            var batch = new List<NewNotification>(Batch);
            for (var j = i; j < i + Batch; j++)
            {
                batch.Add(Notification(j, Tenant, Lane.Standard, coalesceKey: null, content, requestId: "req-bench"));
            }

            _batches.Add(batch);
        }
    }

    [IterationCleanup]
    public void Cleanup() => DeleteStore();

    [Benchmark]
    public async Task<int> BulkEnqueue100k()
    {
        var queued = 0;
        foreach (var batch in _batches)
        {
            queued += (await Store.EnqueueAsync(batch, Ct)).Count;
        }

        return queued;
    }
}

/// <summary>
/// One claim of <c>ClaimLimits(0, 512)</c> from a standard-lane backlog of 200,000 due rows: one tenant with
/// 190,500 and 19 tenants with 500 each (the turns then span every tenant), so the cost of fairness over a
/// deep queue shows. Reported per claimed notification.
/// </summary>
[Config(typeof(ShortStoreConfig))]
public class StoreClaimFromBacklogBenchmarks : StoreBenchmarkBase
{
    private const int Claim = 512;

    [GlobalSetup]
    public void Setup()
    {
        var tenants = new string[20];
        for (var t = 0; t < tenants.Length; t++)
        {
            tenants[t] = "tenant-" + t.ToString("D2", System.Globalization.CultureInfo.InvariantCulture);
        }

        OpenFreshStore(tenants);
        var batch = new List<NewNotification>(5_000);
        var i = 0;
        for (var t = 0; t < tenants.Length; t++)
        {
            var rows = t == 0 ? 190_500 : 500;
            for (var k = 0; k < rows; k++, i++)
            {
                batch.Add(Notification(i, tenants[t], Lane.Standard, coalesceKey: null));
                if (batch.Count == batch.Capacity)
                {
                    Store.EnqueueAsync(batch, Ct).GetAwaiter().GetResult();
                    batch.Clear();
                }
            }
        }

        if (batch.Count > 0)
        {
            Store.EnqueueAsync(batch, Ct).GetAwaiter().GetResult();
        }
    }

    [GlobalCleanup]
    public void Cleanup() => DeleteStore();

    /// <summary>Leases 512 rows (they stay leased: 6 invocations take 3,072 of the 200,000).</summary>
    [Benchmark(OperationsPerInvoke = Claim)]
    public async Task<int> ClaimFairFromDeepBacklog()
    {
        var claimed = await Store.ClaimAsync("bench/1", new ClaimLimits(0, Claim), DateTimeOffset.UtcNow, TimeSpan.FromMinutes(2), Ct);
        return claimed.Count == Claim ? claimed.Count : throw new InvalidOperationException($"Claimed {claimed.Count}.");
    }
}
