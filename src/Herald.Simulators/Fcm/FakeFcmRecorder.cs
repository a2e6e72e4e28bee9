using System.Collections.Concurrent;
using System.Runtime.CompilerServices;

namespace Herald.Simulators.Fcm;

/// <summary>
/// Counters, the bounded request log, and waiters (no polling: each completed request checks them).
/// Counting is lock-free; the lock is only taken when recording or when someone waits.
/// </summary>
internal sealed class FakeFcmRecorder(bool record, int maxRecords)
{
    private readonly Lock _gate = new();
    private readonly Queue<FakeFcmRequest> _records = new();
    private readonly List<PredicateWaiter> _predicateWaiters = [];
    private readonly List<CountWaiter> _countWaiters = [];
    private readonly ConcurrentDictionary<string, StrongBox<long>> _rejectedByReason = new(StringComparer.Ordinal);
    private long _accepted;
    private long _rejected;
    private long _tokenRequests;
    private long _tokensIssued;
    private int _waiters;

    public long Accepted => Interlocked.Read(ref _accepted);

    public long Rejected => Interlocked.Read(ref _rejected);

    public long TokenRequests => Interlocked.Read(ref _tokenRequests);

    public long TokensIssued => Interlocked.Read(ref _tokensIssued);

    /// <summary>Whether the request being answered must be turned into a <see cref="FakeFcmRequest"/>.</summary>
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

    public IReadOnlyList<FakeFcmRequest> Snapshot()
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

    /// <summary>A send request was answered; <paramref name="reason"/> is its errorCode, or its status when it has none.</summary>
    public void Complete(int status, string? reason, FakeFcmRequest? request)
    {
        if (status == 200)
        {
            Interlocked.Increment(ref _accepted);
        }
        else
        {
            Interlocked.Increment(ref _rejected);
            var box = _rejectedByReason.GetOrAdd(reason ?? status.ToString(System.Globalization.CultureInfo.InvariantCulture), static _ => new StrongBox<long>());
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

    /// <summary>A token request was answered (issued or refused).</summary>
    public void CompleteTokenRequest(bool issued)
    {
        Interlocked.Increment(ref _tokenRequests);
        if (issued)
        {
            Interlocked.Increment(ref _tokensIssued);
        }

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
        => WaitForCountAsync(new CountWaiter(count, static r => r.Accepted), cancellationToken);

    public Task WaitForTokenRequestsAsync(long count, CancellationToken cancellationToken)
        => WaitForCountAsync(new CountWaiter(count, static r => r.TokenRequests), cancellationToken);

    public async Task<FakeFcmRequest> WaitForRequestAsync(Func<FakeFcmRequest, bool> predicate, CancellationToken cancellationToken)
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

    private async Task WaitForCountAsync(CountWaiter waiter, CancellationToken cancellationToken)
    {
        lock (_gate)
        {
            _countWaiters.Add(waiter);
            Interlocked.Increment(ref _waiters);
            if (waiter.Counter(this) >= waiter.Count)
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

    private void WakeLocked(FakeFcmRequest? request)
    {
        for (var i = _countWaiters.Count - 1; i >= 0; i--)
        {
            var w = _countWaiters[i];
            if (w.Done.Task.IsCompleted || (w.Counter(this) >= w.Count && w.Done.TrySetResult()))
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

    private static bool Matches(PredicateWaiter waiter, FakeFcmRequest request)
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

    private sealed class CountWaiter(long count, Func<FakeFcmRecorder, long> counter)
    {
        public long Count { get; } = count;
        public Func<FakeFcmRecorder, long> Counter { get; } = counter;
        public TaskCompletionSource Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    private sealed class PredicateWaiter(Func<FakeFcmRequest, bool> predicate)
    {
        public Func<FakeFcmRequest, bool> Predicate { get; } = predicate;
        public TaskCompletionSource<FakeFcmRequest> Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }
}
