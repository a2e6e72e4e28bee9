using Herald.Core.Metrics;
using Herald.Core.Ports;

namespace Herald.Server.Endpoints;

/// <summary><c>GET /metrics</c>: Prometheus text exposition of <see cref="HeraldMetrics"/> (no API key, like <c>/healthz</c>; no tenant data).</summary>
internal static class MetricsEndpoints
{
    public static void Map(IEndpointRouteBuilder app)
        => app.MapGet("/metrics", ScrapeAsync)
            .WithTags("Health")
            .WithSummary("Prometheus metrics (text exposition format 0.0.4); every series carries region and node labels.")
            .Produces<string>(StatusCodes.Status200OK, "text/plain");

    private static async Task<IResult> ScrapeAsync(MetricsCollector collector, QueueGauges gauges, CancellationToken cancellationToken)
    {
        try
        {
            await gauges.RefreshAsync(force: false, cancellationToken);
        }
        catch (System.Data.Common.DbException)
        {
            // The store is down: the other metrics still matter (the queue gauges keep their last value; /readyz says why).
        }

        return TypedResults.Text(collector.WritePrometheus(), MetricsCollector.ContentType);
    }
}

/// <summary>
/// Feeds the queue depth gauges: the store's counts are read at most every <see cref="MaxAge"/> (a scrape, the
/// console's stats and the sampler share them), so scraping often costs the database nothing extra.
/// </summary>
public sealed class QueueGauges(INotificationQueue queue, HeraldMetrics metrics, TimeProvider time) : IDisposable
{
    /// <summary>How old the queue view may be before a reader refreshes it.</summary>
    public static readonly TimeSpan MaxAge = TimeSpan.FromSeconds(3);

    private readonly SemaphoreSlim _gate = new(1, 1);

    /// <summary>Reads the store's queue counts when the cached view is older than <see cref="MaxAge"/> (or always when forced).</summary>
    public async Task RefreshAsync(bool force, CancellationToken cancellationToken)
    {
        if (!force && IsFresh())
        {
            return;
        }

        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (!force && IsFresh())
            {
                return;
            }

            var now = time.GetUtcNow();
            metrics.ObserveQueue(await queue.SnapshotAsync(now, cancellationToken).ConfigureAwait(false), now);
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <inheritdoc />
    public void Dispose() => _gate.Dispose();

    private bool IsFresh() => metrics.QueueObservedAt is { } at && time.GetUtcNow() - at < MaxAge;
}
