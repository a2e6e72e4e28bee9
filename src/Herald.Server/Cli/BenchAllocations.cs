using System.Collections.Concurrent;
using System.Diagnostics.Tracing;
using System.Globalization;
using System.Text;

namespace Herald.Server.Cli;

/// <summary>
/// Which types a benchmark allocates, from the runtime's sampled allocation events (one GCAllocationTick per ~100 KB
/// allocated on a heap): the same sampling dotnet-trace's gc-verbose profile uses, read in process so a bench run can
/// print it (<c>herald bench dispatch --allocations</c>).
/// </summary>
internal sealed class BenchAllocations : EventListener
{
    private const EventKeywords GcKeyword = (EventKeywords)0x1;
    private readonly ConcurrentDictionary<string, long> _bytes = new(StringComparer.Ordinal);
    private volatile bool _recording;

    /// <summary>Starts counting the allocation samples from now.</summary>
    public void Start() => _recording = true;

    /// <summary>Stops counting.</summary>
    public void Stop() => _recording = false;

    protected override void OnEventSourceCreated(EventSource eventSource)
    {
        if (eventSource.Name == "Microsoft-Windows-DotNETRuntime")
        {
            EnableEvents(eventSource, EventLevel.Verbose, GcKeyword);
        }
    }

    protected override void OnEventWritten(EventWrittenEventArgs eventData)
    {
        if (!_recording || eventData.EventName is not { } name || !name.StartsWith("GCAllocationTick", StringComparison.Ordinal) || eventData.Payload is null || eventData.PayloadNames is null)
        {
            return;
        }

        var type = "?";
        long amount = 0;
        var large = false;
        for (var i = 0; i < eventData.PayloadNames.Count; i++)
        {
            switch (eventData.PayloadNames[i])
            {
                case "TypeName": type = eventData.Payload[i] as string ?? "?"; break;
                case "AllocationAmount64": amount = Convert.ToInt64(eventData.Payload[i], CultureInfo.InvariantCulture); break;
                case "AllocationKind": large = Convert.ToInt32(eventData.Payload[i], CultureInfo.InvariantCulture) == 1; break;
                case "AllocationAmount" when amount == 0: amount = Convert.ToInt64(eventData.Payload[i], CultureInfo.InvariantCulture); break;
            }
        }

        _bytes.AddOrUpdate(large ? type + " (large object heap)" : type, amount, (_, old) => old + amount);
    }

    /// <summary>The top types by sampled bytes, with their share of the bytes sampled and bytes per <paramref name="per"/> unit.</summary>
    public string Report(long per, int top = 25)
    {
        var total = Math.Max(1, _bytes.Values.Sum());
        var text = new StringBuilder();
        foreach (var (type, bytes) in _bytes.OrderByDescending(p => p.Value).Take(top))
        {
            text.Append(CultureInfo.InvariantCulture, $"  {bytes * 100.0 / total,5:0.0} %  {bytes / (double)Math.Max(1, per),8:0} B  {type}").AppendLine();
        }

        return text.ToString();
    }
}
