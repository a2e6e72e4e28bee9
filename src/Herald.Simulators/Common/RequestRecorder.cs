using System.Collections.Concurrent;
using System.Globalization;
using System.Runtime.CompilerServices;

namespace Herald.Simulators.Common;

/// <summary>
/// Counters, the bounded request log, and waiters of a fake server (no polling: each answered request checks them).
/// Counting is lock-free; the lock is only taken when recording or when someone waits.
/// </summary>
/// <typeparam name="TRequest">The recorded request type.</typeparam>
internal sealed class RequestRecorder<TRequest>(bool record, int maxRecords)
    where TRequest : class
{
    private readonly Lock _gate = new();
    private readonly Queue<TRequest> _records = new();
    private readonly List<PredicateWaiter> _predicateWaiters = [];
    private readonly List<CountWaiter> _countWaiters = [];
    private readonly ConcurrentDictionary<string, StrongBox<long>> _rejectedByReason = new(StringComparer.Ordinal);
    private long _accepted;
    private long _rejected;
    private int _waiters;

    public long Accepted => Interlocked.Read(ref _accepted);

    public long Rejected => Interlocked.Read(ref _rejected);

    /// <summary>Whether the request being answered must be turned into a <typeparamref name="TRequest"/>.</summary>
    public bool WantsRecord => record || Volatile.Read(ref _waiters) > 0;

    public long RejectedFor(string reason) => _rejectedByReason.TryGetValue(reason, out var box) ? Interlocked.Read(ref box.Value) : 0;

    public IReadOnlyDictionary<string, long> RejectedByReason()
    {
        var snapshot = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var (reason, box) in _rejectedByReason)
        {
            snapshot[reason] = Interlocked.Read(ref box.Value);
        }

        return snapshot;
    }

    public IReadOnlyList<TRequest> Snapshot()
    {
        lock (_gate)
        {
            return [.. _records];
        }
    }

    public void Clear()
    {
        lock (_gate)
        {
            _records.Clear();
        }
    }

    /// <summary>
    /// Counts an answer: <paramref name="accepted"/> or a rejection under <paramref name="reason"/>
    /// (its <paramref name="status"/> when it has none), then records it and wakes waiters.
    /// </summary>
    public void Complete(bool accepted, int status, string? reason, TRequest? request)
    {
        if (accepted)
        {
            Interlocked.Increment(ref _accepted);
        }
        else
        {
            Interlocked.Increment(ref _rejected);
            var key = reason ?? status.ToString(CultureInfo.InvariantCulture);
            var box = _rejectedByReason.GetOrAdd(key, static _ => new StrongBox<long>());
            Interlocked.Increment(ref box.Value);
        }

        // Interlocked above is a full fence, so a waiter registered concurrently is either seen here or
        // sees the new count itself (the waits re-check after announcing themselves).
        if (!record && Volatile.Read(ref _waiters) == 0)
        {
            return;
        }

        lock (_gate)
        {
            if (record && request is not null)
            {
                _records.Enqueue(request);
                while (_records.Count > maxRecords)
                {
                    _records.Dequeue();
                }
            }

            if (_waiters > 0)
            {
                WakeLocked(request);
            }
        }
    }

    /// <summary>
    /// Re-checks count waiters after a counter kept outside this recorder moved. Call it after an
    /// <see cref="Interlocked"/> update of that counter (the full fence pairs with the waits' re-check).
    /// </summary>
    public void WakeCountWaiters()
    {
        if (Volatile.Read(ref _waiters) == 0)
        {
            return;
        }

        lock (_gate)
        {
            WakeLocked(null);
        }
    }

    public Task WaitForAcceptedAsync(long count, CancellationToken cancellationToken)
        => WaitForCountAsync(() => Accepted, count, cancellationToken);

    /// <summary>Waits until <paramref name="counter"/> reaches <paramref name="count"/>; see <see cref="WakeCountWaiters"/>.</summary>
    public async Task WaitForCountAsync(Func<long> counter, long count, CancellationToken cancellationToken)
    {
        var waiter = new CountWaiter(count, counter);
        lock (_gate)
        {
            _countWaiters.Add(waiter);
            Interlocked.Increment(ref _waiters);
            if (counter() >= count)
            {
                waiter.Done.TrySetResult();
                WakeLocked(null);
            }
        }

        using (cancellationToken.Register(static s => ((CountWaiter)s!).Done.TrySetCanceled(), waiter))
        {
            await waiter.Done.Task.ConfigureAwait(false);
        }
    }

    public async Task<TRequest> WaitForRequestAsync(Func<TRequest, bool> predicate, CancellationToken cancellationToken)
    {
        var waiter = new PredicateWaiter(predicate);
        lock (_gate)
        {
            foreach (var existing in _records)
            {
                if (predicate(existing))
                {
                    return existing;
                }
            }

            _predicateWaiters.Add(waiter);
            Interlocked.Increment(ref _waiters);
        }

        using (cancellationToken.Register(static s => ((PredicateWaiter)s!).Done.TrySetCanceled(), waiter))
        {
            return await waiter.Done.Task.ConfigureAwait(false);
        }
    }

    public void FailWaiters(Exception exception)
    {
        lock (_gate)
        {
            foreach (var w in _countWaiters)
            {
                w.Done.TrySetException(exception);
            }

            foreach (var w in _predicateWaiters)
            {
                w.Done.TrySetException(exception);
            }

            _countWaiters.Clear();
            _predicateWaiters.Clear();
            _waiters = 0;
        }
    }

    private void WakeLocked(TRequest? request)
    {
        for (var i = _countWaiters.Count - 1; i >= 0; i--)
        {
            var w = _countWaiters[i];
            if (w.Done.Task.IsCompleted || (w.Counter() >= w.Count && w.Done.TrySetResult()))
            {
                _countWaiters.RemoveAt(i);
                Interlocked.Decrement(ref _waiters);
            }
        }

        for (var i = _predicateWaiters.Count - 1; i >= 0; i--)
        {
            var w = _predicateWaiters[i];
            if (w.Done.Task.IsCompleted || (request is not null && Matches(w, request) && w.Done.TrySetResult(request)))
            {
                _predicateWaiters.RemoveAt(i);
                Interlocked.Decrement(ref _waiters);
            }
        }
    }

    private static bool Matches(PredicateWaiter waiter, TRequest request)
    {
        try
        {
            return waiter.Predicate(request);
        }
        catch (Exception ex)
        {
            waiter.Done.TrySetException(ex); // a throwing predicate fails its waiter, not the server
            return false;
        }
    }

    private sealed class CountWaiter(long count, Func<long> counter)
    {
        public long Count { get; } = count;
        public Func<long> Counter { get; } = counter;
        public TaskCompletionSource Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    private sealed class PredicateWaiter(Func<TRequest, bool> predicate)
    {
        public Func<TRequest, bool> Predicate { get; } = predicate;
        public TaskCompletionSource<TRequest> Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }
}
