using Herald.Core.Pipeline;
using Herald.Core.Ports;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Herald.Core.Farm;

/// <summary>
/// One lease this node holds. <see cref="Token"/> is the fencing token to check or pass along with every action
/// on the item; <see cref="Lost"/> is cancelled the moment the node must stop acting on it: the store refused a
/// renewal, or no renewal succeeded in time (<see cref="FarmOptions.LeaseTtl"/> − <see cref="FarmOptions.SafetyMargin"/>
/// after the last successful one was sent, which is before any other node can take it). A lost handle stays lost.
/// </summary>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Reliability", "CA1001", Justification = "Lost must stay readable after the lease ends; cancelling the source (which always happens when a handle is dropped) stops its timer.")]
public sealed class LeaseHandle
{
    private readonly CancellationTokenSource _lost;
    private readonly TimeProvider _time;

    private TimeSpan _actFor;

    internal LeaseHandle(WorkLease lease, long renewSentAt, TimeSpan actFor, TimeProvider time)
    {
        Lease = lease;
        RenewSentAt = renewSentAt;
        _time = time;
        _actFor = actFor;
        _lost = new CancellationTokenSource(Remaining(actFor), time);
    }

    public string Key => Lease.Key;

    public string Owner => Lease.Owner;

    public long Token => Lease.Token;

    /// <summary>The lease as the store last confirmed it.</summary>
    public WorkLease Lease { get; private set; }

    /// <summary>Cancelled when the lease is lost or may be about to be (see the type's remarks).</summary>
    public CancellationToken Lost => _lost.Token;

    /// <summary>
    /// True while this node may act on the item. Checked against the clock too, not only the <see cref="Lost"/> timer:
    /// a process that was frozen (paused VM, SIGSTOP, long GC) must not act in the moment before the timer fires.
    /// </summary>
    public bool IsValid => !_lost.IsCancellationRequested && Remaining(_actFor) > TimeSpan.Zero;

    internal long RenewSentAt { get; private set; }

    internal void Renewed(WorkLease lease, long renewSentAt, TimeSpan actFor)
    {
        Lease = lease;
        RenewSentAt = renewSentAt;
        _actFor = actFor;
        var remaining = Remaining(actFor);
        if (remaining > TimeSpan.Zero)
        {
            _lost.CancelAfter(remaining); // no effect once cancelled: a lost lease stays lost
        }
    }

    internal void MarkLost()
    {
        _lost.Cancel(); // also stops its timer
    }

    private TimeSpan Remaining(TimeSpan actFor)
    {
        var remaining = actFor - _time.GetElapsedTime(RenewSentAt);
        return remaining > TimeSpan.Zero ? remaining : TimeSpan.Zero;
    }
}

/// <summary>
/// The leases this node holds on items of long-lived work (EWS streaming groups, Graph subscription renewals,
/// the leadership): take one with <see cref="TryAcquireAsync"/>, act while its <see cref="LeaseHandle.Lost"/>
/// token is not cancelled, and the farm worker renews every held lease every <see cref="FarmOptions.RenewInterval"/>.
/// When a node dies its leases expire after <see cref="FarmOptions.LeaseTtl"/> and any other node's next
/// <see cref="TryAcquireAsync"/> takes them (with a higher token).
/// </summary>
public sealed partial class WorkLeases : IDisposable
{
    private readonly IFarmStore _store;
    private readonly TimeProvider _time;
    private readonly IOptionsMonitor<FarmOptions> _options;
    private readonly ILogger<WorkLeases> _logger;
    private readonly Dictionary<string, LeaseHandle> _held = new(StringComparer.Ordinal);
    private readonly Lock _lock = new();

    public WorkLeases(IFarmStore store, NodeIdentity node, TimeProvider time, IOptionsMonitor<FarmOptions> options, ILogger<WorkLeases> logger)
    {
        ArgumentNullException.ThrowIfNull(node);
        _store = store;
        _time = time;
        _options = options;
        _logger = logger;
        Owner = node.LeaseOwner;
    }

    /// <summary>This process's owner id on every lease it takes.</summary>
    public string Owner { get; }

    /// <summary>Raised (on the renewing thread) with the key of a lease this node lost.</summary>
    public event Action<string>? Lost;

    /// <summary>The keys held right now (valid leases only).</summary>
    public IReadOnlyList<string> HeldKeys
    {
        get
        {
            lock (_lock)
            {
                return [.. _held.Values.Where(h => h.IsValid).Select(h => h.Key)];
            }
        }
    }

    /// <summary>The handle of a valid lease on <paramref name="key"/>, or null.</summary>
    public LeaseHandle? Get(string key)
    {
        lock (_lock)
        {
            return _held.TryGetValue(key, out var handle) && handle.IsValid ? handle : null;
        }
    }

    /// <summary>True while this node holds a valid lease on <paramref name="key"/>.</summary>
    public bool IsHeld(string key) => Get(key) is not null;

    /// <summary>
    /// Takes the lease on <paramref name="key"/> (or returns the one already held). Null when another node holds it.
    /// Store failures propagate: the caller tries again on its next round.
    /// </summary>
    public async Task<LeaseHandle?> TryAcquireAsync(string key, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrEmpty(key);
        if (Get(key) is { } existing)
        {
            return existing;
        }

        var o = _options.CurrentValue;
        var sentAt = _time.GetTimestamp();
        var lease = await _store.TryAcquireLeaseAsync(key, Owner, o.LeaseTtl, _time.GetUtcNow(), cancellationToken).ConfigureAwait(false);
        if (lease is null)
        {
            return null;
        }

        var handle = new LeaseHandle(lease, sentAt, o.ActFor, _time);
        LeaseHandle? replaced;
        lock (_lock)
        {
            _held.TryGetValue(key, out replaced);
            _held[key] = handle;
        }

        replaced?.MarkLost();
        Log.Acquired(_logger, key, lease.Token);
        return handle;
    }

    /// <summary>Gives the lease on <paramref name="key"/> up, so another node can take it at once.</summary>
    public async Task ReleaseAsync(string key, CancellationToken cancellationToken)
    {
        LeaseHandle? handle;
        lock (_lock)
        {
            if (_held.Remove(key, out handle) is false)
            {
                return;
            }
        }

        handle.MarkLost(); // stop acting before the store hears of it
        await _store.ReleaseLeaseAsync(handle.Lease, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Releases every held lease (shutdown); failures are logged, the leases then expire on their own.</summary>
    public async Task ReleaseAllAsync(CancellationToken cancellationToken)
    {
        string[] keys;
        lock (_lock)
        {
            keys = [.. _held.Keys];
        }

        foreach (var key in keys)
        {
            try
            {
                await ReleaseAsync(key, cancellationToken).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                Log.ReleaseFailed(_logger, key, ex);
            }
        }
    }

    /// <summary>The held (possibly expired) leases whose key starts with <paramref name="prefix"/>, farm-wide.</summary>
    public Task<IReadOnlyList<WorkLease>> ListAsync(string prefix, CancellationToken cancellationToken)
        => _store.ListLeasesAsync(prefix, cancellationToken);

    /// <summary>
    /// Renews every held lease once. A lease the store refuses, or one whose time to act ran out while the store
    /// could not be reached, is dropped and reported through <see cref="Lost"/>. Returns how many were lost.
    /// </summary>
    public async Task<int> RenewAllAsync(CancellationToken cancellationToken)
    {
        LeaseHandle[] handles;
        lock (_lock)
        {
            handles = [.. _held.Values];
        }

        var o = _options.CurrentValue;
        var lost = 0;
        foreach (var handle in handles)
        {
            if (!handle.IsValid)
            {
                lost += Drop(handle, "no renewal succeeded in time") ? 1 : 0;
                continue;
            }

            var sentAt = _time.GetTimestamp();
            WorkLease? renewed;
            try
            {
                using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, handle.Lost);
                timeout.CancelAfter(o.RenewTimeout);
                renewed = await _store.RenewLeaseAsync(handle.Lease, o.LeaseTtl, _time.GetUtcNow(), timeout.Token).ConfigureAwait(false);
            }
            catch (Exception ex) when (!cancellationToken.IsCancellationRequested)
            {
                // The store is unreachable: keep acting until the handle's time runs out, try again next round.
                Log.RenewFailed(_logger, handle.Key, ex);
                if (!handle.IsValid)
                {
                    lost += Drop(handle, "the store could not be reached in time") ? 1 : 0;
                }

                continue;
            }

            if (renewed is null)
            {
                lost += Drop(handle, "another node holds it or it expired") ? 1 : 0;
                continue;
            }

            handle.Renewed(renewed, sentAt, o.ActFor);
            if (!handle.IsValid)
            {
                lost += Drop(handle, "the renewal came back too late") ? 1 : 0;
            }
        }

        return lost;
    }

    private bool Drop(LeaseHandle handle, string why)
    {
        lock (_lock)
        {
            if (!_held.TryGetValue(handle.Key, out var current) || !ReferenceEquals(current, handle))
            {
                return false;
            }

            _held.Remove(handle.Key);
        }

        handle.MarkLost();
        Log.LeaseLost(_logger, handle.Key, handle.Token, why);
        Lost?.Invoke(handle.Key);
        return true;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        lock (_lock)
        {
            foreach (var handle in _held.Values)
            {
                handle.MarkLost();
            }

            _held.Clear();
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 7001, Level = LogLevel.Debug, Message = "Took the lease on {Key} (token {Token})")]
        public static partial void Acquired(ILogger logger, string key, long token);

        [LoggerMessage(EventId = 7002, Level = LogLevel.Warning, Message = "Renewing the lease on {Key} failed; retrying")]
        public static partial void RenewFailed(ILogger logger, string key, Exception exception);

        [LoggerMessage(EventId = 7003, Level = LogLevel.Warning, Message = "Lost the lease on {Key} (token {Token}): {Why}; no longer acting on it")]
        public static partial void LeaseLost(ILogger logger, string key, long token, string why);

        [LoggerMessage(EventId = 7004, Level = LogLevel.Warning, Message = "Releasing the lease on {Key} failed; it expires on its own")]
        public static partial void ReleaseFailed(ILogger logger, string key, Exception exception);
    }
}
