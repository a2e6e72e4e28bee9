using System.Reflection;
using Herald.Core.Farm;
using Herald.Core.Pipeline;
using Herald.Core.Ports;
using Herald.Server.Hosting;
using Herald.Storage;
using Microsoft.Extensions.Options;

namespace Herald.Server.Workers;

/// <summary>
/// What makes this process a node of a farm: a heartbeat with its load every few seconds, renewal of the work
/// leases it holds (its own and other workers'), the leader election, and, while it leads, the leader duties.
/// On a SQLite file the same runs with one node, which then always leads.
/// </summary>
internal sealed partial class FarmWorker(
    IFarmStore store,
    WorkLeases leases,
    LeaderElection election,
    LeaderDutyRunner duties,
    FarmConnections connections,
    Dispatcher dispatcher,
    NodeIdentity node,
    IOptions<HeraldOptions> herald,
    TimeProvider time,
    IOptionsMonitor<FarmOptions> options,
    ILogger<FarmWorker> logger) : BackgroundService
{
    /// <summary>The version every node reports (the informational version of the server assembly).</summary>
    public static string Version { get; } =
        typeof(FarmWorker).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion.Split('+')[0]
        ?? typeof(FarmWorker).Assembly.GetName().Version?.ToString() ?? "0";

    private readonly DateTimeOffset _startedAt = time.GetUtcNow();

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        await base.StopAsync(cancellationToken);

        // Hand the leadership and every work item over at once instead of after the leases expire.
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(TimeSpan.FromSeconds(3));
        try
        {
            await leases.ReleaseAllAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            // They expire on their own.
        }
    }

    protected override Task ExecuteAsync(CancellationToken stoppingToken)
        => Task.WhenAll(
            Task.Run(() => HeartbeatLoopAsync(stoppingToken), CancellationToken.None),
            Task.Run(() => LeaseLoopAsync(stoppingToken), CancellationToken.None),
            Task.Run(() => DutyLoopAsync(stoppingToken), CancellationToken.None));

    /// <summary>This node's report for the next heartbeat.</summary>
    internal NodeReport Report() => new()
    {
        Name = node.NodeName,
        Instance = node.LeaseOwner,
        Region = herald.Value.Region,
        Version = Version,
        StartedAt = _startedAt,
        SendsPerSecond = Math.Round(dispatcher.Counters.SentPerSecond, 2),
        Connections = connections.Open,
    };

    private async Task HeartbeatLoopAsync(CancellationToken stoppingToken)
    {
        var failing = false;
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await store.RecordHeartbeatAsync(Report(), time.GetUtcNow(), stoppingToken);
                if (failing)
                {
                    Log.HeartbeatRecovered(logger);
                    failing = false;
                }
            }
            catch (Exception ex) when (ex is not OperationCanceledException || !stoppingToken.IsCancellationRequested)
            {
                if (!failing)
                {
                    Log.HeartbeatFailed(logger, ex); // once per outage, not every few seconds
                    failing = true;
                }
            }

            if (!await DelayAsync(options.CurrentValue.HeartbeatInterval, stoppingToken))
            {
                return;
            }
        }
    }

    /// <summary>Renews every held lease, and stands for leader when nobody leads.</summary>
    private async Task LeaseLoopAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await leases.RenewAllAsync(stoppingToken);
                if (!election.IsLeader && await election.TryLeadAsync(stoppingToken) is not null)
                {
                    duties.Reset(); // a new leader runs every duty at once
                }
            }
            catch (Exception ex) when (ex is not OperationCanceledException || !stoppingToken.IsCancellationRequested)
            {
                Log.ElectionFailed(logger, ex);
            }

            if (!await DelayAsync(options.CurrentValue.RenewInterval, stoppingToken))
            {
                return;
            }
        }
    }

    /// <summary>Runs the leader duties when due (its own loop, so a long purge never holds up lease renewals).</summary>
    private async Task DutyLoopAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            var wait = TimeSpan.FromSeconds(1);
            if (election.IsLeader)
            {
                try
                {
                    await duties.RunDueAsync(stoppingToken);
                }
                catch (Exception ex) when (ex is not OperationCanceledException || !stoppingToken.IsCancellationRequested)
                {
                    Log.ElectionFailed(logger, ex);
                }

                var next = duties.UntilNextDue();
                wait = next < wait ? (next < TimeSpan.FromMilliseconds(50) ? TimeSpan.FromMilliseconds(50) : next) : wait;
            }

            if (!await DelayAsync(wait, stoppingToken))
            {
                return;
            }
        }
    }

    private async Task<bool> DelayAsync(TimeSpan delay, CancellationToken stoppingToken)
    {
        try
        {
            await Task.Delay(delay, time, stoppingToken);
            return true;
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 7301, Level = LogLevel.Warning, Message = "Recording this node's heartbeat failed; the farm sees it as down after a while if this goes on")]
        public static partial void HeartbeatFailed(ILogger logger, Exception exception);

        [LoggerMessage(EventId = 7302, Level = LogLevel.Information, Message = "This node's heartbeat is recorded again")]
        public static partial void HeartbeatRecovered(ILogger logger);

        [LoggerMessage(EventId = 7303, Level = LogLevel.Warning, Message = "The leader election or a leader duty failed; trying again")]
        public static partial void ElectionFailed(ILogger logger, Exception exception);
    }
}

/// <summary>Leader duty: deletes finished notifications older than <see cref="FarmOptions.KeepCompleted"/>, in batches.</summary>
internal sealed partial class PurgeCompletedDuty(IHeraldStore store, TimeProvider time, IOptionsMonitor<FarmOptions> options, ILogger<PurgeCompletedDuty> logger) : ILeaderDuty
{
    public string Name => "purge-completed";

    public TimeSpan Interval => options.CurrentValue.PurgeInterval;

    public async Task RunAsync(LeaderTerm term, CancellationToken cancellationToken)
    {
        var o = options.CurrentValue;
        var purged = await store.PurgeCompletedAsync(time.GetUtcNow() - o.KeepCompleted, o.PurgeBatchSize, cancellationToken);
        if (purged > 0)
        {
            Log.Purged(logger, purged, term.Term);
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 7311, Level = LogLevel.Information, Message = "Leader (term {Term}) purged {Count} finished notifications")]
        public static partial void Purged(ILogger logger, int count, long term);
    }
}

/// <summary>The farm's services: one call from the host's composition.</summary>
internal static class FarmServices
{
    public static void Add(IServiceCollection services)
    {
        services.AddOptions<FarmOptions>().BindConfiguration(FarmOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        services.AddSingleton(sp => (IFarmStore)sp.GetRequiredService<IHeraldStore>());
        services.AddSingleton<WorkLeases>();
        services.AddSingleton<LeaderElection>();
        services.AddSingleton<WorkShares>();
        services.AddSingleton<LeaderDutyRunner>();
        services.AddSingleton<FarmConnections>();

        // Leader duties; other workers add theirs the same way (services.AddSingleton<ILeaderDuty, …>()).
        services.AddSingleton<ILeaderDuty, QueueReaperDuty>();
        services.AddSingleton<ILeaderDuty, PurgeCompletedDuty>();
        services.AddSingleton<ILeaderDuty, ForgetSilentNodesDuty>();
        services.AddHostedService<FarmWorker>();
    }
}
