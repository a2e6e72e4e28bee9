using System.Text.Json;
using System.Text.Json.Serialization;
using Herald.Core.Metrics;
using Herald.Core.Pipeline;
using Herald.Server.Auth;
using Herald.Server.Hosting;
using Microsoft.Extensions.Options;

namespace Herald.Server.Endpoints;

/// <summary>
/// <c>GET /v1/admin/stats</c>: the dashboard's data. One hour of 10-second samples kept in memory by
/// <see cref="StatsSampler"/> (per node, lost on restart: Prometheus is the long-term store) and live totals.
/// </summary>
internal static class StatsEndpoints
{
    public static void Map(RouteGroupBuilder v1)
        => v1.MapGet("/admin/stats", GetAsync)
            .WithTags("Administration")
            .WithSummary("Dashboard data of this node: the last hour in 10-second samples and live totals (admin key).")
            .Produces<StatsResponse>();

    private static async Task<IResult> GetAsync(HttpContext http, StatsSampler sampler, DateTimeOffset? since, CancellationToken cancellationToken)
    {
        if (!CallerContext.Get(http).IsAdmin)
        {
            return Problems.Forbidden("The dashboard shows the whole node: it needs the admin key.");
        }

        var response = await sampler.ReadAsync(since, cancellationToken);
        return TypedResults.Json(response, StatsJsonContext.Default.StatsResponse);
    }
}

/// <summary>One 10-second sample: rates over the interval and the queue as it was at its end.</summary>
public sealed record StatsSample
{
    public required DateTimeOffset At { get; init; }

    /// <summary>Provider acceptances per second, by platform.</summary>
    public required Dictionary<string, double> SendsPerSecond { get; init; }

    /// <summary>Events received per second, by source.</summary>
    public required Dictionary<string, double> EventsPerSecond { get; init; }

    /// <summary>Provider requests not accepted in the interval, by reason.</summary>
    public required Dictionary<string, long> Failures { get; init; }

    /// <summary>Queue depth by lane, then state.</summary>
    public required Dictionary<string, Dictionary<string, long>> Queue { get; init; }

    public double OldestQueuedAgeSeconds { get; init; }

    /// <summary>Event-to-acceptance latency quantiles over the interval; null when nothing was sent.</summary>
    public double? LatencyP50Seconds { get; init; }

    public double? LatencyP99Seconds { get; init; }
}

/// <summary>Counts since this node started, and the queue now.</summary>
public sealed record StatsTotals
{
    public required DateTimeOffset At { get; init; }
    public long Events { get; init; }
    public long Sent { get; init; }
    public long ProviderRejections { get; init; }
    public long Retried { get; init; }
    public long Failed { get; init; }
    public long Dead { get; init; }
    public long Expired { get; init; }
    public required Dictionary<string, long> EventsBySource { get; init; }
    public required Dictionary<string, long> SentByPlatform { get; init; }
    public required Dictionary<string, long> FailuresByReason { get; init; }
    public required Dictionary<string, Dictionary<string, long>> Queue { get; init; }
    public double OldestQueuedAgeSeconds { get; init; }
    public int OpenConnections { get; init; }
}

/// <summary>The answer of <c>/v1/admin/stats</c>.</summary>
public sealed record StatsResponse(string Region, string Node, int IntervalSeconds, StatsTotals Totals, IReadOnlyList<StatsSample> Samples);

[JsonSourceGenerationOptions(JsonSerializerDefaults.Web, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(StatsResponse))]
internal sealed partial class StatsJsonContext : JsonSerializerContext;

/// <summary>
/// Takes a sample of the metrics every <see cref="Interval"/> and keeps the last hour in a ring, so the
/// console can draw its charts without a time-series database.
/// </summary>
public sealed partial class StatsSampler(
    MetricsCollector collector,
    QueueGauges gauges,
    TimeProvider time,
    IOptions<HeraldOptions> options,
    NodeIdentity node,
    ILogger<StatsSampler> logger) : BackgroundService
{
    /// <summary>The sample interval.</summary>
    public static readonly TimeSpan Interval = TimeSpan.FromSeconds(10);

    /// <summary>Samples kept: one hour.</summary>
    public const int Capacity = 360;

    private readonly Queue<StatsSample> _ring = new(Capacity);
    private readonly Lock _gate = new();
    private Cumulative? _last;

    /// <summary>The samples newer than <paramref name="since"/> (all when null) and fresh totals.</summary>
    public async Task<StatsResponse> ReadAsync(DateTimeOffset? since, CancellationToken cancellationToken)
    {
        await RefreshQueueAsync(force: false, cancellationToken).ConfigureAwait(false);
        var now = Cumulative.Read(collector, time.GetUtcNow());
        StatsSample[] samples;
        lock (_gate)
        {
            samples = since is { } s ? [.. _ring.Where(x => x.At > s)] : [.. _ring];
        }

        var totals = new StatsTotals
        {
            At = now.At,
            Events = now.EventsBySource.Values.Sum(),
            Sent = now.SentByPlatform.Values.Sum(),
            ProviderRejections = now.FailuresByReason.Values.Sum(),
            Retried = now.States.GetValueOrDefault("retrying"),
            Failed = now.States.GetValueOrDefault("failed"),
            Dead = now.States.GetValueOrDefault("dead"),
            Expired = now.States.GetValueOrDefault("expired"),
            EventsBySource = now.EventsBySource,
            SentByPlatform = now.SentByPlatform,
            FailuresByReason = now.FailuresByReason,
            Queue = now.Queue,
            OldestQueuedAgeSeconds = now.OldestAge,
            OpenConnections = now.OpenConnections,
        };
        return new StatsResponse(options.Value.Region, node.NodeName, (int)Interval.TotalSeconds, totals, samples);
    }

    /// <summary>Takes one sample now (the loop calls it every <see cref="Interval"/>; tests may call it directly).</summary>
    public async Task<StatsSample?> SampleAsync(CancellationToken cancellationToken)
    {
        await RefreshQueueAsync(force: true, cancellationToken).ConfigureAwait(false);
        var now = Cumulative.Read(collector, time.GetUtcNow());
        lock (_gate)
        {
            var last = _last;
            _last = now;
            if (last is null)
            {
                return null; // the first reading is the baseline
            }

            var seconds = Math.Max(0.001, (now.At - last.At).TotalSeconds);
            var latency = Delta(now.LatencyBuckets, last.LatencyBuckets);
            var sample = new StatsSample
            {
                At = now.At,
                SendsPerSecond = Rates(now.SentByPlatform, last.SentByPlatform, seconds),
                EventsPerSecond = Rates(now.EventsBySource, last.EventsBySource, seconds),
                Failures = Deltas(now.FailuresByReason, last.FailuresByReason),
                Queue = now.Queue,
                OldestQueuedAgeSeconds = now.OldestAge,
                LatencyP50Seconds = Quantile(0.5, latency),
                LatencyP99Seconds = Quantile(0.99, latency),
            };
            if (_ring.Count == Capacity)
            {
                _ring.Dequeue();
            }

            _ring.Enqueue(sample);
            return sample;
        }
    }

    /// <summary>The quantile of a histogram (non-cumulative bucket counts over <see cref="HeraldMetrics.LatencyBuckets"/>), interpolated as Prometheus' histogram_quantile does.</summary>
    public static double? Quantile(double q, long[] buckets)
    {
        ArgumentNullException.ThrowIfNull(buckets);
        var bounds = HeraldMetrics.LatencyBuckets;
        var total = buckets.Sum();
        if (total == 0)
        {
            return null;
        }

        var rank = q * total;
        long cumulative = 0;
        for (var i = 0; i < buckets.Length; i++)
        {
            var before = cumulative;
            cumulative += buckets[i];
            if (cumulative >= rank && buckets[i] > 0)
            {
                if (i >= bounds.Length)
                {
                    return bounds[^1]; // in the +Inf bucket: the highest finite bound, as Prometheus answers
                }

                var lower = i == 0 ? 0 : bounds[i - 1];
                return lower + ((bounds[i] - lower) * ((rank - before) / buckets[i]));
            }
        }

        return bounds[^1];
    }

    /// <inheritdoc />
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await SampleAsync(stoppingToken).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is not OperationCanceledException || !stoppingToken.IsCancellationRequested)
            {
                Log.SampleFailed(logger, ex);
            }

            try
            {
                await Task.Delay(Interval, time, stoppingToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    private async Task RefreshQueueAsync(bool force, CancellationToken cancellationToken)
    {
        try
        {
            await gauges.RefreshAsync(force, cancellationToken).ConfigureAwait(false);
        }
        catch (System.Data.Common.DbException ex)
        {
            Log.SampleFailed(logger, ex); // the queue keeps its last known counts
        }
    }

    private static Dictionary<string, double> Rates(Dictionary<string, long> now, Dictionary<string, long> last, double seconds)
        => now.ToDictionary(kv => kv.Key, kv => Math.Round((kv.Value - last.GetValueOrDefault(kv.Key)) / seconds, 3), StringComparer.Ordinal);

    private static Dictionary<string, long> Deltas(Dictionary<string, long> now, Dictionary<string, long> last)
    {
        var result = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var (k, v) in now)
        {
            var d = v - last.GetValueOrDefault(k);
            if (d > 0)
            {
                result[k] = d;
            }
        }

        return result;
    }

    private static long[] Delta(long[] now, long[] last)
    {
        var d = new long[now.Length];
        for (var i = 0; i < d.Length; i++)
        {
            d[i] = now[i] - (i < last.Length ? last[i] : 0);
        }

        return d;
    }

    /// <summary>The cumulative numbers the samples are differences of.</summary>
    private sealed record Cumulative(
        DateTimeOffset At,
        Dictionary<string, long> EventsBySource,
        Dictionary<string, long> SentByPlatform,
        Dictionary<string, long> FailuresByReason,
        Dictionary<string, long> States,
        long[] LatencyBuckets,
        Dictionary<string, Dictionary<string, long>> Queue,
        double OldestAge,
        int OpenConnections)
    {
        public static Cumulative Read(MetricsCollector collector, DateTimeOffset at)
        {
            var events = new Dictionary<string, long>(StringComparer.Ordinal);
            var sent = new Dictionary<string, long>(StringComparer.Ordinal) { ["apns"] = 0, ["fcm"] = 0, ["wns"] = 0 };
            var failures = new Dictionary<string, long>(StringComparer.Ordinal);
            var states = new Dictionary<string, long>(StringComparer.Ordinal);
            var latency = new long[HeraldMetrics.LatencyBuckets.Length + 1];
            var queue = new Dictionary<string, Dictionary<string, long>>(StringComparer.Ordinal);
            double oldest = 0;
            var connections = 0;
            foreach (var family in collector.Collect())
            {
                foreach (var p in family.Points)
                {
                    switch (family.Name)
                    {
                        case "herald_events_received_total":
                            Add(events, p.Label("source"), (long)p.Value);
                            break;
                        case "herald_provider_sends_total" when p.Label("result") == "sent":
                            Add(sent, p.Label("platform"), (long)p.Value);
                            break;
                        case "herald_provider_sends_total":
                            Add(failures, p.Label("reason"), (long)p.Value);
                            break;
                        case "herald_notifications_total":
                            Add(states, p.Label("state"), (long)p.Value);
                            break;
                        case "herald_delivery_latency_seconds":
                            for (var i = 0; i < latency.Length && i < p.BucketCounts!.Count; i++)
                            {
                                latency[i] += p.BucketCounts[i];
                            }

                            break;
                        case "herald_queue_depth":
                            var lane = p.Label("lane") ?? "other";
                            if (!queue.TryGetValue(lane, out var byState))
                            {
                                queue[lane] = byState = new Dictionary<string, long>(StringComparer.Ordinal);
                            }

                            Add(byState, p.Label("state"), (long)p.Value);
                            break;
                        case "herald_queue_oldest_age_seconds":
                            oldest = p.Value;
                            break;
                        case "herald_open_connections":
                            connections += (int)p.Value;
                            break;
                    }
                }
            }

            return new Cumulative(at, events, sent, failures, states, latency, queue, oldest, connections);
        }

        private static void Add(Dictionary<string, long> into, string? key, long value)
        {
            key ??= "none";
            into[key] = into.GetValueOrDefault(key) + value;
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 4101, Level = LogLevel.Warning, Message = "Taking a stats sample failed; the next one tries again")]
        public static partial void SampleFailed(ILogger logger, Exception exception);
    }
}
