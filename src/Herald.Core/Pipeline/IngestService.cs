using Herald.Core.Metrics;
using Herald.Core.Ports;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Herald.Core.Pipeline;

/// <summary>Options of the ingest writer.</summary>
public sealed class IngestOptions
{
    /// <summary>Callbacks waiting for the writer before new ones wait for room.</summary>
    public int Capacity { get; set; } = 8192;

    /// <summary>Callbacks committed in one transaction at most.</summary>
    public int MaxBatch { get; set; } = 512;
}

/// <summary>
/// Mailbox events in: sources hand parsed callbacks here and get the verdict once it is durable.
/// One group-commit writer serialises all ingest, so the planner sees each registration's events in order.
/// </summary>
public sealed class IngestService : IAsyncDisposable
{
    private readonly GroupCommitWriter<IngestItem> _writer;
    private readonly HeraldMetrics? _metrics;

    public IngestService(IIngestStore store, IIngestPlanner planner, QueueSignal signal, IOptions<IngestOptions> options, ILogger<IngestService> logger, HeraldMetrics? metrics = null)
    {
        _metrics = metrics;
        ArgumentNullException.ThrowIfNull(store);
        ArgumentNullException.ThrowIfNull(signal);
        ArgumentNullException.ThrowIfNull(options);
        var o = options.Value;
        _writer = new GroupCommitWriter<IngestItem>(
            "ingest",
            (batch, ct) => store.ApplyIngestBatchAsync(batch, planner, ct),
            logger,
            o.Capacity,
            o.MaxBatch,
            afterCommit: batch =>
            {
                foreach (var item in batch)
                {
                    if (item.Enqueued > 0)
                    {
                        signal.Notify();
                        return;
                    }
                }
            });
    }

    /// <summary>Stores the item's events and returns the verdict; throws if they could not be stored.</summary>
    public async Task<IngestVerdict> IngestAsync(IngestItem item, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(item);
        await _writer.SubmitAsync(item, cancellationToken).ConfigureAwait(false);
        if (_metrics is not null)
        {
            var events = 0;
            foreach (var n in item.Notifications)
            {
                events += n.Events.Count;
            }

            _metrics.Ingested(item.Source, events, item.Verdict, item.Enqueued);
        }

        return item.Verdict;
    }

    /// <summary>The writer loop (run by the host).</summary>
    public Task RunAsync(CancellationToken cancellationToken) => _writer.RunAsync(cancellationToken);

    /// <inheritdoc />
    public ValueTask DisposeAsync() => _writer.DisposeAsync();
}
