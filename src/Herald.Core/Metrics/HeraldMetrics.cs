using System.Diagnostics;
using System.Diagnostics.Metrics;
using Herald.Core.Notifications;
using Herald.Core.Ports;
using Herald.Core.Registrations;

namespace Herald.Core.Metrics;

/// <summary>A credential's expiry, for the <c>herald_credential_expiry_seconds</c> gauge.</summary>
/// <param name="Platform">apns, fcm, wns.</param>
/// <param name="Credential">A stable, non-secret name of the credential (an id or thumbprint prefix).</param>
/// <param name="NotAfter">When it stops being valid.</param>
public readonly record struct CredentialExpiry(string Platform, string Credential, DateTimeOffset NotAfter);

/// <summary>
/// Herald's instruments (System.Diagnostics.Metrics), one set per gateway instance so two gateways in one
/// process (tests) never mix their numbers. Label values come from fixed tables, so recording allocates nothing.
/// Exported in Prometheus text by <see cref="MetricsCollector"/>.
/// </summary>
public sealed class HeraldMetrics : IDisposable
{
    /// <summary>The meter name.</summary>
    public const string MeterName = "Herald";

    /// <summary>Latency buckets, seconds: a mail push should be well under a second end to end.</summary>
    public static readonly double[] LatencyBuckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800];

    private static readonly string[] PlatformNames = ["apns", "fcm", "wns"];
    private static readonly string[] LaneNames = ["priority", "standard"];
    private static readonly string[] StateNames = ["queued", "sending", "retrying", "sent", "failed", "expired", "dead"];
    private static readonly string[] SourceNames = ["api", "ews-push", "ews-streaming", "graph", "dovecot"];
    private static readonly string[] OutcomeNames = ["sent", "retry", "failed", "token_invalid", "credential_fault"];

    private readonly TimeProvider _time;
    private readonly Counter<long> _eventsReceived;
    private readonly Counter<long> _callbacks;
    private readonly Counter<long> _enqueued;
    private readonly Counter<long> _notifications;
    private readonly Counter<long> _providerSends;
    private readonly Histogram<double> _latency;
    private readonly Histogram<double> _sendDuration;
    private readonly List<Func<IEnumerable<CredentialExpiry>>> _credentialSources = [];
    private volatile QueueView? _queue;

    /// <summary>Creates the meter and its instruments.</summary>
    public HeraldMetrics(TimeProvider time)
    {
        _time = time ?? throw new ArgumentNullException(nameof(time));
        Meter = new Meter(MeterName, typeof(HeraldMetrics).Assembly.GetName().Version?.ToString());
        _eventsReceived = Meter.CreateCounter<long>("herald_events_received", "{event}", "Mailbox events and API send requests received, by source.");
        _callbacks = Meter.CreateCounter<long>("herald_source_callbacks", "{callback}", "Source callbacks stored, by source and verdict (accepted, unsubscribe).");
        _enqueued = Meter.CreateCounter<long>("herald_notifications_enqueued", "{notification}", "Notifications queued (or coalesced into a queued one), by source.");
        _notifications = Meter.CreateCounter<long>("herald_notifications", "{notification}", "Send attempts' results as notification states, by lane and state (sent, retrying, failed, dead, expired).");
        _providerSends = Meter.CreateCounter<long>("herald_provider_sends", "{request}", "Requests to push providers, by platform, result and the provider's reason.");
        _latency = Meter.CreateHistogram<double>(
            "herald_delivery_latency_seconds", "s", "From the mailbox event (or API request) to the provider's acceptance.",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = LatencyBuckets });
        _sendDuration = Meter.CreateHistogram<double>(
            "herald_provider_request_duration_seconds", "s", "Duration of one request to a push provider, by platform.",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = LatencyBuckets });
        Meter.CreateObservableGauge("herald_queue_depth", ObserveQueueDepth, "{notification}", "Notifications in the queue, by lane and state (refreshed at most every few seconds).");
        Meter.CreateObservableGauge("herald_queue_oldest_age_seconds", ObserveOldest, "s", "Age of the oldest queued notification (0 when none waits).");
        Meter.CreateObservableGauge("herald_credential_expiry_seconds", ObserveCredentials, "s", "Seconds until a provider credential expires (negative: expired).");
    }

    /// <summary>The meter (one per instance).</summary>
    public Meter Meter { get; }

    /// <summary>The time source of gauges that show ages.</summary>
    public TimeProvider Time => _time;

    /// <summary>A source callback's events (any source but the API).</summary>
    public void Ingested(SourceKind source, int events, IngestVerdict verdict, int enqueued)
    {
        var name = SourceName(source);
        if (events > 0)
        {
            _eventsReceived.Add(events, new KeyValuePair<string, object?>("source", name));
        }

        _callbacks.Add(1, new KeyValuePair<string, object?>("source", name), new KeyValuePair<string, object?>("verdict", verdict == IngestVerdict.Unsubscribe ? "unsubscribe" : "accepted"));
        if (enqueued > 0)
        {
            _enqueued.Add(enqueued, new KeyValuePair<string, object?>("source", name));
        }
    }

    /// <summary>An API send request stored with its targets.</summary>
    public void ApiRequest(int targets)
    {
        _eventsReceived.Add(1, new KeyValuePair<string, object?>("source", "api"));
        if (targets > 0)
        {
            _enqueued.Add(targets, new KeyValuePair<string, object?>("source", "api"));
        }
    }

    /// <summary>One provider request finished (any result).</summary>
    public void ProviderSend(Platform platform, in PushResult result, TimeSpan duration)
    {
        var p = PlatformName(platform);
        var outcome = (uint)result.Outcome < (uint)OutcomeNames.Length ? OutcomeNames[(int)result.Outcome] : "other";
        _providerSends.Add(1, new KeyValuePair<string, object?>("platform", p), new KeyValuePair<string, object?>("result", outcome), new KeyValuePair<string, object?>("reason", ReasonLabel(result.Reason)));
        _sendDuration.Record(duration.TotalSeconds, new KeyValuePair<string, object?>("platform", p));
    }

    /// <summary>A notification reached a state after an attempt; <paramref name="eventAt"/> gives the latency of an accepted one.</summary>
    public void Outcome(Lane lane, Platform platform, NotificationState state, DateTimeOffset? eventAt, DateTimeOffset completedAt)
    {
        var l = (uint)lane < (uint)LaneNames.Length ? LaneNames[(int)lane] : "other";
        var s = (uint)state < (uint)StateNames.Length ? StateNames[(int)state] : "other";
        _notifications.Add(1, new KeyValuePair<string, object?>("lane", l), new KeyValuePair<string, object?>("state", s));
        if (state == NotificationState.Sent && eventAt is { } at)
        {
            var seconds = Math.Max(0, (completedAt - at).TotalSeconds);
            _latency.Record(seconds, new KeyValuePair<string, object?>("platform", PlatformName(platform)), new KeyValuePair<string, object?>("lane", l));
        }
    }

    /// <summary>Replaces the queue view the depth gauges report (the server refreshes it, cached a few seconds).</summary>
    public void ObserveQueue(QueueSnapshot snapshot, DateTimeOffset at)
    {
        ArgumentNullException.ThrowIfNull(snapshot);
        _queue = new QueueView(snapshot, at);
    }

    /// <summary>When the queue view was last refreshed, or null.</summary>
    public DateTimeOffset? QueueObservedAt => _queue?.At;

    /// <summary>Adds a source of credential expiries (read at each scrape; it must be cheap and not block).</summary>
    public void AddCredentialExpirySource(Func<IEnumerable<CredentialExpiry>> source)
    {
        ArgumentNullException.ThrowIfNull(source);
        lock (_credentialSources)
        {
            _credentialSources.Add(source);
        }
    }

    /// <summary>The label value of a platform.</summary>
    public static string PlatformName(Platform platform) => (uint)platform < (uint)PlatformNames.Length ? PlatformNames[(int)platform] : "other";

    /// <summary>The label value of a source (<see cref="SourceKind.None"/> is the API).</summary>
    public static string SourceName(SourceKind source) => source switch
    {
        SourceKind.EwsPush => "ews-push",
        SourceKind.EwsStreaming => "ews-streaming",
        SourceKind.Graph => "graph",
        SourceKind.Dovecot => "dovecot",
        _ => SourceNames[0],
    };

    /// <summary>
    /// A provider reason as a label value: the reason itself when it is a short identifier (APNs, FCM and WNS
    /// reasons are), else <c>other</c>, so a misbehaving peer cannot blow up the number of series.
    /// </summary>
    public static string ReasonLabel(string? reason)
    {
        if (string.IsNullOrEmpty(reason))
        {
            return "none";
        }

        if (reason.Length > 48)
        {
            return "other";
        }

        foreach (var c in reason)
        {
            if (!char.IsAsciiLetterOrDigit(c) && c is not ('_' or '-' or '.'))
            {
                return "other";
            }
        }

        return reason;
    }

    private IEnumerable<Measurement<long>> ObserveQueueDepth()
    {
        var view = _queue;
        if (view is null)
        {
            yield break;
        }

        for (var lane = 0; lane < LaneNames.Length; lane++)
        {
            for (var state = 0; state < StateNames.Length; state++)
            {
                var n = view.Snapshot.Counts.TryGetValue(((Lane)lane, (NotificationState)state), out var c) ? c : 0;
                yield return new Measurement<long>(n, new KeyValuePair<string, object?>("lane", LaneNames[lane]), new KeyValuePair<string, object?>("state", StateNames[state]));
            }
        }
    }

    private IEnumerable<Measurement<double>> ObserveOldest()
    {
        var view = _queue;
        if (view is null)
        {
            yield break;
        }

        yield return new Measurement<double>(view.Snapshot.OldestQueuedAt is { } oldest ? Math.Max(0, (view.At - oldest).TotalSeconds) : 0);
    }

    private IEnumerable<Measurement<double>> ObserveCredentials()
    {
        Func<IEnumerable<CredentialExpiry>>[] sources;
        lock (_credentialSources)
        {
            sources = [.. _credentialSources];
        }

        var now = _time.GetUtcNow();
        var list = new List<Measurement<double>>();
        foreach (var source in sources)
        {
            try
            {
                foreach (var c in source())
                {
                    list.Add(new Measurement<double>(
                        Math.Round((c.NotAfter - now).TotalSeconds),
                        new KeyValuePair<string, object?>("platform", c.Platform),
                        new KeyValuePair<string, object?>("credential", c.Credential)));
                }
            }
            catch (Exception ex) when (ex is InvalidOperationException or ObjectDisposedException)
            {
                Debug.WriteLine(ex); // a source that is shutting down reports nothing this time
            }
        }

        return list;
    }

    /// <inheritdoc />
    public void Dispose() => Meter.Dispose();

    private sealed record QueueView(QueueSnapshot Snapshot, DateTimeOffset At);
}
