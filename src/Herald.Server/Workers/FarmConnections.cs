using System.Diagnostics.Metrics;

namespace Herald.Server.Workers;

/// <summary>
/// Counts this node's open inbound HTTP connections (Kestrel's <c>kestrel.active_connections</c> up-down counter),
/// for the load figures in the node's heartbeat.
/// </summary>
internal sealed class FarmConnections : IDisposable
{
    private const string KestrelMeter = "Microsoft.AspNetCore.Server.Kestrel";
    private const string ActiveConnections = "kestrel.active_connections";

    private readonly MeterListener _listener = new();
    private long _open;

    public FarmConnections()
    {
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (instrument.Meter.Name == KestrelMeter && instrument.Name == ActiveConnections)
            {
                listener.EnableMeasurementEvents(instrument);
            }
        };
        _listener.SetMeasurementEventCallback<long>((_, delta, _, _) => Interlocked.Add(ref _open, delta));
        _listener.Start();
    }

    /// <summary>Open connections right now.</summary>
    public int Open => (int)Math.Clamp(Interlocked.Read(ref _open), 0, int.MaxValue);

    public void Dispose() => _listener.Dispose();
}
