using Herald.Core.Pipeline;
using Herald.Core.Ports;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Herald.Core.Farm;

/// <summary>
/// Work that one node of the farm does for all of them, on the leader only: register an implementation as a
/// singleton <see cref="ILeaderDuty"/> and the farm worker runs it every <see cref="Interval"/> while this node
/// leads. The cancellation token passed to <see cref="RunAsync"/> is cancelled the moment the leadership is
/// lost; a duty that writes may also pass the term to the store as a fencing token.
/// </summary>
public interface ILeaderDuty
{
    /// <summary>A short name for logs.</summary>
    string Name { get; }

    /// <summary>How often the duty runs (read before every run, so options can change it live).</summary>
    TimeSpan Interval { get; }

    Task RunAsync(LeaderTerm term, CancellationToken cancellationToken);
}

/// <summary>Runs the registered <see cref="ILeaderDuty"/> instances when they are due, each after a fencing check.</summary>
public sealed partial class LeaderDutyRunner(IEnumerable<ILeaderDuty> duties, LeaderElection election, TimeProvider time, ILogger<LeaderDutyRunner> logger)
{
    private readonly ILeaderDuty[] _duties = [.. duties];
    private readonly Dictionary<ILeaderDuty, long> _lastRun = [];

    /// <summary>The duties, for the node view and tests.</summary>
    public IReadOnlyList<ILeaderDuty> Duties => _duties;

    /// <summary>Forgets when duties last ran: a node that becomes leader runs them all at once.</summary>
    public void Reset() => _lastRun.Clear();

    /// <summary>Runs every duty that is due, while this node is the leader. Returns how many ran to completion.</summary>
    public async Task<int> RunDueAsync(CancellationToken cancellationToken)
    {
        var ran = 0;
        foreach (var duty in _duties)
        {
            if (_lastRun.TryGetValue(duty, out var last) && time.GetElapsedTime(last) < duty.Interval)
            {
                continue;
            }

            // Fencing: the term must still be ours in the database, right before each action.
            var handle = await election.ConfirmAsync(cancellationToken).ConfigureAwait(false);
            if (handle is null)
            {
                return ran;
            }

            _lastRun[duty] = time.GetTimestamp();
            using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, handle.Lost);
            try
            {
                await duty.RunAsync(new LeaderTerm(handle.Token, handle.Owner), linked.Token).ConfigureAwait(false);
                ran++;
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                Log.DutyStopped(logger, duty.Name, handle.Token);
                return ran;
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                Log.DutyFailed(logger, duty.Name, ex);
            }
        }

        return ran;
    }

    /// <summary>How long until the next duty is due (zero when one is due now).</summary>
    public TimeSpan UntilNextDue()
    {
        var next = TimeSpan.MaxValue;
        foreach (var duty in _duties)
        {
            var wait = _lastRun.TryGetValue(duty, out var last) ? duty.Interval - time.GetElapsedTime(last) : TimeSpan.Zero;
            next = wait < next ? wait : next;
        }

        return next < TimeSpan.Zero ? TimeSpan.Zero : next;
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 7201, Level = LogLevel.Warning, Message = "Leader duty {Duty} stopped: leadership (term {Term}) lost")]
        public static partial void DutyStopped(ILogger logger, string duty, long term);

        [LoggerMessage(EventId = 7202, Level = LogLevel.Error, Message = "Leader duty {Duty} failed; it runs again at its next interval")]
        public static partial void DutyFailed(ILogger logger, string duty, Exception exception);
    }
}

/// <summary>Leader duty: returns expired notification leases (a dead node's claims) to the queue.</summary>
public sealed class QueueReaperDuty(LeaseReaper reaper, IOptionsMonitor<DispatchOptions> options) : ILeaderDuty
{
    public string Name => "lease-reaper";

    public TimeSpan Interval => options.CurrentValue.ReaperInterval;

    public Task RunAsync(LeaderTerm term, CancellationToken cancellationToken) => reaper.SweepAsync(cancellationToken);
}

/// <summary>Leader duty: removes nodes silent for longer than <see cref="FarmOptions.ForgetAfter"/> from the node view.</summary>
public sealed class ForgetSilentNodesDuty(IFarmStore store, TimeProvider time, IOptionsMonitor<FarmOptions> options) : ILeaderDuty
{
    public string Name => "forget-silent-nodes";

    public TimeSpan Interval => options.CurrentValue.PurgeInterval;

    public Task RunAsync(LeaderTerm term, CancellationToken cancellationToken)
        => store.ForgetNodesAsync(time.GetUtcNow() - options.CurrentValue.ForgetAfter, cancellationToken);
}
