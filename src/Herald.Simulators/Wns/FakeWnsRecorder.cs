using System.Collections.Concurrent;
using System.Globalization;
using System.Runtime.CompilerServices;

namespace Herald.Simulators.Wns;

/// <summary>
/// Counters, the bounded request log, and waiters (no polling: each answered request checks them).
/// Counting is lock-free; the lock is only taken when recording or when someone waits.
/// </summary>
internal sealed class FakeWnsRecorder(bool record, int maxRecords)
{
    private readonly Lock _gate = new();
    private readonly Queue<FakeWnsRequest> _records = new();
    private readonly List<PredicateWaiter> _predicateWaiters = [];
    private readonly List<CountWaiter> _countWaiters = [];
    private readonly ConcurrentDictionary<string, StrongBox<long>> _rejectedByReason = new(StringComparer.Ordinal);
    private long _accepted;
    private long _rejected;
    private int _waiters;

    public long Accepted => Interlocked.Read(ref _accepted);

    public long Rejected => Interlocked.Read(ref _rejected);

    /// <summary>Whether the request being answered must be turned into a <see cref="FakeWnsRequest"/>.</summary>
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

    public IReadOnlyList<FakeWnsRequest> Snapshot()
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

    /// <summary>Counts an answer: <paramref name="accepted"/> for 200 <c>received</c>, otherwise a rejection under <paramref name="reason"/>.</summary>
    public void Complete(bool accepted, int status, string? reason, FakeWnsRequest? request)
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

        // Interlocked above is a full fence: a waiter registered concurrently is either seen here or sees
        // the new count itself (WaitForAcceptedAsync re-checks after announcing itself).
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

    public async Task WaitForAcceptedAsync(long count, CancellationToken cancellationToken)
    {
        var waiter = new CountWaiter(count);
        lock (_gate)
        {
            _countWaiters.Add(waiter);
            Interlocked.Increment(ref _waiters);
            if (Accepted >= count)
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

    public async Task<FakeWnsRequest> WaitForRequestAsync(Func<FakeWnsRequest, bool> predicate, CancellationToken cancellationToken)
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

    private void WakeLocked(FakeWnsRequest? request)
    {
        var accepted = Accepted;
        for (var i = _countWaiters.Count - 1; i >= 0; i--)
        {
            var w = _countWaiters[i];
            if (w.Done.Task.IsCompleted || (accepted >= w.Count && w.Done.TrySetResult()))
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

    private static bool Matches(PredicateWaiter waiter, FakeWnsRequest request)
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

    private sealed class CountWaiter(long count)
    {
        public long Count { get; } = count;
        public TaskCompletionSource Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    private sealed class PredicateWaiter(Func<FakeWnsRequest, bool> predicate)
    {
        public Func<FakeWnsRequest, bool> Predicate { get; } = predicate;
        public TaskCompletionSource<FakeWnsRequest> Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }
}
