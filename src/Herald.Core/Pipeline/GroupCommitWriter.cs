using System.Threading.Channels;
using Microsoft.Extensions.Logging;

namespace Herald.Core.Pipeline;

/// <summary>
/// Group commit: many concurrent writers hand their item to one loop, which applies whatever has
/// accumulated in one transaction and then completes every waiting caller. Callers therefore learn
/// "durable" only after the commit, while the store sees a few large transactions instead of many
/// small ones. The channel is bounded, so a slow store pushes back on callers instead of growing memory.
/// </summary>
public sealed partial class GroupCommitWriter<TItem> : IAsyncDisposable
    where TItem : class
{
    private readonly Channel<Pending> _channel;
    private readonly Func<IReadOnlyList<TItem>, CancellationToken, Task> _applyBatch;
    private readonly Action<IReadOnlyList<TItem>>? _afterCommit;
    private readonly int _maxBatch;
    private readonly ILogger _logger;
    private readonly string _name;

    public GroupCommitWriter(
        string name,
        Func<IReadOnlyList<TItem>, CancellationToken, Task> applyBatch,
        ILogger logger,
        int capacity = 8192,
        int maxBatch = 512,
        Action<IReadOnlyList<TItem>>? afterCommit = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxBatch, 1);
        _name = name;
        _applyBatch = applyBatch;
        _afterCommit = afterCommit;
        _maxBatch = maxBatch;
        _logger = logger;
        _channel = Channel.CreateBounded<Pending>(new BoundedChannelOptions(capacity)
        {
            SingleReader = true,
            SingleWriter = false,
            FullMode = BoundedChannelFullMode.Wait,
        });
    }

    /// <summary>Completes when the item is committed; throws when it could not be.</summary>
    public async Task SubmitAsync(TItem item, CancellationToken cancellationToken)
    {
        var pending = new Pending(item);
        await _channel.Writer.WriteAsync(pending, cancellationToken).ConfigureAwait(false);
        await pending.Completion.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>The writer loop; run it once, for the life of the process.</summary>
    public async Task RunAsync(CancellationToken cancellationToken)
    {
        var reader = _channel.Reader;
        var batch = new List<Pending>(_maxBatch);
        var items = new List<TItem>(_maxBatch);
        try
        {
            while (await reader.WaitToReadAsync(cancellationToken).ConfigureAwait(false))
            {
                batch.Clear();
                items.Clear();
                while (batch.Count < _maxBatch && reader.TryRead(out var pending))
                {
                    batch.Add(pending);
                    items.Add(pending.Item);
                }

                await CommitAsync(batch, items, cancellationToken).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            // Shutting down.
        }
        finally
        {
            if (cancellationToken.IsCancellationRequested)
            {
                // Shutting down: refuse new items and fail the waiting ones (their callers answer 5xx, so the source retries).
                _channel.Writer.TryComplete();
                while (reader.TryRead(out var pending))
                {
                    pending.Completion.TrySetException(new OperationCanceledException("The writer stopped before this item was stored."));
                }
            }
        }
    }

    private async Task CommitAsync(List<Pending> batch, List<TItem> items, CancellationToken cancellationToken)
    {
        try
        {
            await _applyBatch(items, cancellationToken).ConfigureAwait(false);
            Complete(batch, items);
            return;
        }
        catch (Exception ex) when (batch.Count > 1 && ex is not OperationCanceledException)
        {
            // One bad item must not fail its neighbours: apply them one by one to isolate it.
            Log.BatchFailed(_logger, _name, batch.Count, ex);
        }
        catch (Exception ex)
        {
            Log.ItemFailed(_logger, _name, ex);
            batch[0].Completion.TrySetException(ex);
            return;
        }

        foreach (var pending in batch)
        {
            try
            {
                await _applyBatch([pending.Item], cancellationToken).ConfigureAwait(false);
                Complete([pending], [pending.Item]);
            }
            catch (Exception ex)
            {
                Log.ItemFailed(_logger, _name, ex);
                pending.Completion.TrySetException(ex);
            }
        }
    }

    private void Complete(List<Pending> batch, List<TItem> items)
    {
        try
        {
            _afterCommit?.Invoke(items);
        }
        catch (Exception ex)
        {
            Log.AfterCommitFailed(_logger, _name, ex);
        }

        foreach (var pending in batch)
        {
            pending.Completion.TrySetResult();
        }
    }

    /// <inheritdoc />
    public ValueTask DisposeAsync()
    {
        _channel.Writer.TryComplete();
        return ValueTask.CompletedTask;
    }

    private sealed class Pending(TItem item)
    {
        public TItem Item { get; } = item;
        public TaskCompletionSource Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 1101, Level = LogLevel.Warning, Message = "{Writer}: a batch of {Count} failed to commit; applying its items one by one")]
        public static partial void BatchFailed(ILogger logger, string writer, int count, Exception exception);

        [LoggerMessage(EventId = 1102, Level = LogLevel.Error, Message = "{Writer}: an item could not be stored")]
        public static partial void ItemFailed(ILogger logger, string writer, Exception exception);

        [LoggerMessage(EventId = 1103, Level = LogLevel.Error, Message = "{Writer}: the after-commit hook failed")]
        public static partial void AfterCommitFailed(ILogger logger, string writer, Exception exception);
    }
}
