namespace Herald.Core.Pipeline;

/// <summary>
/// An auto-reset wake-up signal: <see cref="Set"/> wakes one waiter (or the next one to wait).
/// Used so the dispatcher sleeps until work arrives instead of polling.
/// </summary>
public sealed class AsyncSignal : IDisposable
{
    private readonly SemaphoreSlim _semaphore = new(0, 1);

    /// <summary>
    /// Signals; cheap and idempotent while nobody has consumed the previous signal, and a no-op once disposed (a change
    /// announced while its worker stops must not fail the API call that announced it).
    /// </summary>
    public void Set()
    {
        if (_semaphore.CurrentCount == 0)
        {
            try
            {
                _semaphore.Release();
            }
            catch (SemaphoreFullException)
            {
                // Another thread set it first: already signalled.
            }
            catch (ObjectDisposedException)
            {
                // Stopped: nobody waits any more.
            }
        }
    }

    /// <inheritdoc />
    public void Dispose() => _semaphore.Dispose();

    /// <summary>
    /// Waits for the signal or until <paramref name="timeout"/> has passed on <paramref name="time"/>
    /// (so tests with a fake clock do not sleep). True when signalled.
    /// </summary>
    public async Task<bool> WaitAsync(TimeSpan timeout, TimeProvider time, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(time);
        if (_semaphore.Wait(0, CancellationToken.None))
        {
            return true;
        }

        if (timeout <= TimeSpan.Zero)
        {
            return false;
        }

        using var cts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var signalled = _semaphore.WaitAsync(Timeout.Infinite, cts.Token);
        var delay = Task.Delay(timeout, time, cts.Token);
        await Task.WhenAny(signalled, delay).ConfigureAwait(false);
        await cts.CancelAsync().ConfigureAwait(false);
        try
        {
            return await signalled.ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            cancellationToken.ThrowIfCancellationRequested();
            return false;
        }
        finally
        {
            try
            {
                await delay.ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                // The delay was cut short by the signal.
            }
        }
    }
}

/// <summary>The dispatcher's wake-up: set when notifications are enqueued or become due.</summary>
public sealed class QueueSignal : IDisposable
{
    private readonly AsyncSignal _signal = new();

    /// <summary>New work may be waiting.</summary>
    public void Notify() => _signal.Set();

    /// <summary>Waits for new work or the timeout.</summary>
    public Task<bool> WaitAsync(TimeSpan timeout, TimeProvider time, CancellationToken cancellationToken)
        => _signal.WaitAsync(timeout, time, cancellationToken);

    /// <inheritdoc />
    public void Dispose() => _signal.Dispose();
}
