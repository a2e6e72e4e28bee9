using Herald.Core.Ports;
using Microsoft.Extensions.Logging;

namespace Herald.Core.Farm;

/// <summary>A leadership term: the fencing token of the leader lease and its holder.</summary>
public sealed record LeaderTerm(long Term, string Owner);

/// <summary>
/// One leader per farm at a time, through the work lease <see cref="LeaseKey"/>: its token is the term, which
/// grows every time the leadership changes hands. A leader that cannot renew in time stops acting
/// (<see cref="LeaseHandle.Lost"/>) before its lease can expire in the database, so a lost database session
/// never leaves two leaders; and every leader action is preceded by <see cref="ConfirmAsync"/>, which checks the
/// term against the database (fencing).
/// </summary>
public sealed partial class LeaderElection(WorkLeases leases, IFarmStore store, TimeProvider time, ILogger<LeaderElection> logger)
{
    /// <summary>The lease whose holder is the leader.</summary>
    public const string LeaseKey = "farm:leader";

    private long _lastTerm;

    /// <summary>The current term while this node is the leader (by its own clock), else null.</summary>
    public LeaderTerm? Current => leases.Get(LeaseKey) is { } handle ? new LeaderTerm(handle.Token, handle.Owner) : null;

    public bool IsLeader => leases.IsHeld(LeaseKey);

    /// <summary>Becomes the leader when nobody is (renewal is the farm worker's <see cref="WorkLeases.RenewAllAsync"/>).</summary>
    public async Task<LeaseHandle?> TryLeadAsync(CancellationToken cancellationToken)
    {
        if (leases.Get(LeaseKey) is { } held)
        {
            return held;
        }

        var handle = await leases.TryAcquireAsync(LeaseKey, cancellationToken).ConfigureAwait(false);
        if (handle is not null && Interlocked.Exchange(ref _lastTerm, handle.Token) != handle.Token)
        {
            Log.Elected(logger, handle.Owner, handle.Token);
        }

        return handle;
    }

    /// <summary>
    /// The fencing check before a leader action: the lease is valid by this node's clock and the database still
    /// shows this term. Null when this node must not act as the leader.
    /// </summary>
    public async Task<LeaseHandle?> ConfirmAsync(CancellationToken cancellationToken)
    {
        if (leases.Get(LeaseKey) is not { } handle)
        {
            return null;
        }

        if (await store.IsLeaseCurrentAsync(handle.Lease, time.GetUtcNow(), cancellationToken).ConfigureAwait(false) && handle.IsValid)
        {
            return handle;
        }

        Log.Fenced(logger, handle.Token);
        return null;
    }

    /// <summary>Gives the leadership up (shutdown), so another node takes it at once instead of after the lease expires.</summary>
    public Task ResignAsync(CancellationToken cancellationToken) => leases.ReleaseAsync(LeaseKey, cancellationToken);

    private static partial class Log
    {
        [LoggerMessage(EventId = 7101, Level = LogLevel.Information, Message = "This node ({Owner}) is now the farm leader, term {Term}")]
        public static partial void Elected(ILogger logger, string owner, long term);

        [LoggerMessage(EventId = 7102, Level = LogLevel.Warning, Message = "Leader term {Term} is no longer current in the database; not acting as the leader")]
        public static partial void Fenced(ILogger logger, long term);
    }
}
