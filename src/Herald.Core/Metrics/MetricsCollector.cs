using System.Diagnostics.Metrics;
using System.Globalization;
using System.Text;

namespace Herald.Core.Metrics;

/// <summary>The kind of an exported metric family.</summary>
public enum MetricKind
{
    Counter = 0,
    Gauge = 1,
    Histogram = 2,
}

/// <summary>One series at collection time: cumulative for counters and histograms, current for gauges.</summary>
public sealed record MetricPoint(string Name, MetricKind Kind, IReadOnlyList<KeyValuePair<string, string>> Labels, double Value, IReadOnlyList<double>? Bounds = null, IReadOnlyList<long>? BucketCounts = null, long Count = 0)
{
    /// <summary>The value of a label, or null.</summary>
    public string? Label(string name)
    {
        foreach (var kv in Labels)
        {
            if (kv.Key == name)
            {
                return kv.Value;
            }
        }

        return null;
    }
}

/// <summary>One exported metric family and its series.</summary>
public sealed record MetricFamily(string Name, MetricKind Kind, string Help, IReadOnlyList<MetricPoint> Points);

/// <summary>
/// Aggregates the measurements of one <see cref="HeraldMetrics"/> (and the runtime's outbound HTTP connection
/// count) with a <see cref="MeterListener"/> and writes them in the Prometheus text exposition format 0.0.4.
/// Recording is lock-free after a series' first measurement and allocates nothing.
/// </summary>
public sealed class MetricsCollector : IDisposable
{
    /// <summary>The content type of the exposition.</summary>
    public const string ContentType = "text/plain; version=0.0.4; charset=utf-8";

    /// <summary>Series per instrument at most; further label combinations are dropped (and counted).</summary>
    public const int MaxSeriesPerInstrument = 2000;

    private const string HttpMeter = "System.Net.Http";
    private const string HttpOpenConnections = "http.client.open_connections";

    private readonly HeraldMetrics _metrics;
    private readonly KeyValuePair<string, string>[] _constantLabels;
    private readonly MeterListener _listener;
    private readonly Dictionary<Instrument, Family> _families = [];
    private readonly Lock _collectGate = new();
    private long _dropped;

    /// <summary>Starts listening to <paramref name="metrics"/>; <paramref name="region"/> and <paramref name="node"/> label every series.</summary>
    public MetricsCollector(HeraldMetrics metrics, string region, string node)
    {
        _metrics = metrics ?? throw new ArgumentNullException(nameof(metrics));
        _constantLabels = [new("region", region ?? string.Empty), new("node", node ?? string.Empty)];
        _listener = new MeterListener
        {
            InstrumentPublished = (instrument, listener) =>
            {
                var family = Describe(instrument);
                if (family is null)
                {
                    return;
                }

                lock (_families)
                {
                    _families[instrument] = family;
                }

                listener.EnableMeasurementEvents(instrument, family);
            },
            MeasurementsCompleted = (instrument, _) =>
            {
                lock (_families)
                {
                    _families.Remove(instrument);
                }
            },
        };
        _listener.SetMeasurementEventCallback<long>(static (_, value, tags, state) => ((Family)state!).Record(value, tags));
        _listener.SetMeasurementEventCallback<int>(static (_, value, tags, state) => ((Family)state!).Record(value, tags));
        _listener.SetMeasurementEventCallback<double>(static (_, value, tags, state) => ((Family)state!).Record(value, tags));
        _listener.Start();
    }

    /// <summary>Measurements dropped because an instrument had too many series.</summary>
    public long Dropped => Interlocked.Read(ref _dropped);

    /// <summary>Reads the observable instruments and returns every family with its series, sorted by name.</summary>
    public IReadOnlyList<MetricFamily> Collect()
    {
        lock (_collectGate)
        {
            Family[] families;
            lock (_families)
            {
                families = [.. _families.Values];
            }

            foreach (var f in families)
            {
                if (f.Observable)
                {
                    f.Reset();
                }
            }

            _listener.RecordObservableInstruments();
            var result = new List<MetricFamily>(families.Length);
            foreach (var f in families.OrderBy(f => f.Name, StringComparer.Ordinal))
            {
                result.Add(new MetricFamily(f.Name, f.Kind, f.Help, f.Points(_constantLabels)));
            }

            return result;
        }
    }

    /// <summary>Writes the Prometheus text exposition (format 0.0.4).</summary>
    public string WritePrometheus()
    {
        var families = Collect();
        var sb = new StringBuilder(4096);
        foreach (var f in families)
        {
            sb.Append("# HELP ").Append(f.Name).Append(' ').Append(EscapeHelp(f.Help)).Append('\n');
            sb.Append("# TYPE ").Append(f.Name).Append(' ').Append(f.Kind switch { MetricKind.Counter => "counter", MetricKind.Histogram => "histogram", _ => "gauge" }).Append('\n');
            foreach (var p in f.Points)
            {
                if (f.Kind == MetricKind.Histogram)
                {
                    long cumulative = 0;
                    for (var i = 0; i < p.BucketCounts!.Count; i++)
                    {
                        cumulative += p.BucketCounts[i];
                        var le = i < p.Bounds!.Count ? Number(p.Bounds[i]) : "+Inf";
                        Sample(sb, f.Name + "_bucket", p.Labels, ("le", le), cumulative);
                    }

                    Sample(sb, f.Name + "_sum", p.Labels, null, p.Value);
                    Sample(sb, f.Name + "_count", p.Labels, null, p.Count);
                }
                else
                {
                    Sample(sb, f.Name, p.Labels, null, p.Value);
                }
            }
        }

        sb.Append("# HELP herald_metrics_dropped_total Measurements dropped because an instrument had too many label combinations.\n");
        sb.Append("# TYPE herald_metrics_dropped_total counter\n");
        Sample(sb, "herald_metrics_dropped_total", _constantLabels, null, Dropped);
        sb.Append("# HELP herald_info Always 1; its labels name this node.\n# TYPE herald_info gauge\n");
        Sample(sb, "herald_info", _constantLabels, ("version", _metrics.Meter.Version ?? "0"), 1);
        return sb.ToString();
    }

    /// <inheritdoc />
    public void Dispose() => _listener.Dispose();

    /// <summary>Formats a sample value as Prometheus expects (shortest round-trip form, +Inf, -Inf, NaN).</summary>
    public static string Number(double value)
        => double.IsPositiveInfinity(value) ? "+Inf"
        : double.IsNegativeInfinity(value) ? "-Inf"
        : double.IsNaN(value) ? "NaN"
        : value.ToString("R", CultureInfo.InvariantCulture);

    /// <summary>Escapes a label value: backslash, double quote and line feed.</summary>
    public static string EscapeLabel(string value)
    {
        if (value.AsSpan().IndexOfAny("\\\"\n") < 0)
        {
            return value;
        }

        return value.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\"", "\\\"", StringComparison.Ordinal).Replace("\n", "\\n", StringComparison.Ordinal);
    }

    private static string EscapeHelp(string value) => value.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\n", "\\n", StringComparison.Ordinal);

    private static void Sample(StringBuilder sb, string name, IReadOnlyList<KeyValuePair<string, string>> labels, (string Key, string Value)? extra, double value)
    {
        sb.Append(name);
        if (labels.Count > 0 || extra is not null)
        {
            sb.Append('{');
            var first = true;
            foreach (var kv in labels)
            {
                if (!first)
                {
                    sb.Append(',');
                }

                first = false;
                sb.Append(kv.Key).Append("=\"").Append(EscapeLabel(kv.Value)).Append('"');
            }

            if (extra is { } e)
            {
                if (!first)
                {
                    sb.Append(',');
                }

                sb.Append(e.Key).Append("=\"").Append(EscapeLabel(e.Value)).Append('"');
            }

            sb.Append('}');
        }

        sb.Append(' ').Append(Number(value)).Append('\n');
    }

    private Family? Describe(Instrument instrument)
    {
        if (ReferenceEquals(instrument.Meter, _metrics.Meter))
        {
            var (kind, observable) = instrument switch
            {
                Counter<long> or Counter<double> => (MetricKind.Counter, false),
                Histogram<double> or Histogram<long> => (MetricKind.Histogram, false),
                UpDownCounter<long> or UpDownCounter<double> => (MetricKind.Gauge, false),
                ObservableCounter<long> or ObservableCounter<double> => (MetricKind.Counter, true),
                _ => (MetricKind.Gauge, true),
            };
            var name = kind == MetricKind.Counter ? instrument.Name + "_total" : instrument.Name;
            var bounds = kind == MetricKind.Histogram ? HeraldMetrics.LatencyBuckets : null;
            return new Family(this, name, kind, instrument.Description ?? string.Empty, observable, bounds, null);
        }

        // The runtime's connection pool gauge: outbound connections (providers and connectors) by peer.
        if (instrument.Meter.Name == HttpMeter && instrument.Name == HttpOpenConnections)
        {
            return new Family(this, "herald_open_connections", MetricKind.Gauge, "Open outbound HTTP connections (push providers, connectors), by peer host, protocol and state (active, idle).", false, null, HttpTag);
        }

        return null;
    }

    private static string? HttpTag(string key) => key switch
    {
        "server.address" => "peer",
        "network.protocol.version" => "protocol",
        "http.connection.state" => "state",
        _ => null,
    };

    private void CountDropped() => Interlocked.Increment(ref _dropped);

    /// <summary>One exported family: its series in a copy-on-write array, found by a hash of their label values.</summary>
    private sealed class Family(MetricsCollector owner, string name, MetricKind kind, string help, bool observable, double[]? bounds, Func<string, string?>? rename)
    {
        private readonly Lock _gate = new();
        private Series[] _series = [];

        public string Name { get; } = name;
        public MetricKind Kind { get; } = kind;
        public string Help { get; } = help;
        public bool Observable { get; } = observable;

        public void Reset()
        {
            lock (_gate)
            {
                _series = [];
            }
        }

        public void Record(double value, ReadOnlySpan<KeyValuePair<string, object?>> tags)
        {
            var series = Find(tags);
            if (series is null)
            {
                return;
            }

            switch (Kind)
            {
                case MetricKind.Histogram:
                    series.Observe(value, bounds!);
                    break;
                case MetricKind.Gauge when Observable:
                    series.Set(value);
                    break;
                default:
                    series.Add(value);
                    break;
            }
        }

        public List<MetricPoint> Points(KeyValuePair<string, string>[] constant)
        {
            var all = Volatile.Read(ref _series);
            var points = new List<MetricPoint>(all.Length);
            foreach (var s in all.OrderBy(s => string.Join('\u0001', s.Labels.Select(l => l.Value)), StringComparer.Ordinal))
            {
                var labels = new List<KeyValuePair<string, string>>(constant.Length + s.Labels.Length);
                labels.AddRange(constant);
                labels.AddRange(s.Labels);
                points.Add(Kind == MetricKind.Histogram
                    ? new MetricPoint(Name, Kind, labels, s.Value, bounds, s.SnapshotBuckets(), s.Count)
                    : new MetricPoint(Name, Kind, labels, s.Value));
            }

            return points;
        }

        private Series? Find(ReadOnlySpan<KeyValuePair<string, object?>> tags)
        {
            var hash = 17;
            foreach (var t in tags)
            {
                if (rename is null || rename(t.Key) is not null)
                {
                    hash = unchecked((hash * 31) + (t.Value as string ?? string.Empty).GetHashCode(StringComparison.Ordinal));
                }
            }

            foreach (var s in Volatile.Read(ref _series))
            {
                if (s.Hash == hash && s.Matches(tags, rename))
                {
                    return s;
                }
            }

            lock (_gate)
            {
                foreach (var s in _series)
                {
                    if (s.Hash == hash && s.Matches(tags, rename))
                    {
                        return s;
                    }
                }

                if (_series.Length >= MaxSeriesPerInstrument)
                {
                    owner.CountDropped();
                    return null;
                }

                var labels = new List<KeyValuePair<string, string>>(tags.Length);
                foreach (var t in tags)
                {
                    var key = rename is null ? t.Key : rename(t.Key);
                    if (key is not null)
                    {
                        labels.Add(new(key, t.Value as string ?? string.Empty));
                    }
                }

                var created = new Series(hash, [.. labels], bounds?.Length + 1 ?? 0);
                _series = [.. _series, created];
                return created;
            }
        }
    }

    private sealed class Series(int hash, KeyValuePair<string, string>[] labels, int buckets)
    {
        private readonly long[] _buckets = new long[buckets];
        private double _value;
        private long _count;

        public int Hash { get; } = hash;
        public KeyValuePair<string, string>[] Labels { get; } = labels;
        public double Value => Volatile.Read(ref _value);
        public long Count => Interlocked.Read(ref _count);

        public bool Matches(ReadOnlySpan<KeyValuePair<string, object?>> tags, Func<string, string?>? rename)
        {
            var i = 0;
            foreach (var t in tags)
            {
                var key = rename is null ? t.Key : rename(t.Key);
                if (key is null)
                {
                    continue;
                }

                if (i >= Labels.Length
                    || !string.Equals(Labels[i].Key, key, StringComparison.Ordinal)
                    || !string.Equals(Labels[i].Value, t.Value as string ?? string.Empty, StringComparison.Ordinal))
                {
                    return false;
                }

                i++;
            }

            return i == Labels.Length;
        }

        public void Set(double value) => Volatile.Write(ref _value, value);

        public void Add(double value)
        {
            double seen, next;
            do
            {
                seen = Volatile.Read(ref _value);
                next = seen + value;
            }
            while (Interlocked.CompareExchange(ref _value, next, seen) != seen);
        }

        public void Observe(double value, double[] bounds)
        {
            var i = 0;
            while (i < bounds.Length && value > bounds[i])
            {
                i++;
            }

            Interlocked.Increment(ref _buckets[i]);
            Interlocked.Increment(ref _count);
            Add(value);
        }

        public long[] SnapshotBuckets()
        {
            var copy = new long[_buckets.Length];
            for (var i = 0; i < copy.Length; i++)
            {
                copy[i] = Interlocked.Read(ref _buckets[i]);
            }

            return copy;
        }
    }
}
