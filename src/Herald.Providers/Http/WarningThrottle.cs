namespace Herald.Providers.Http;

/// <summary>
/// Rate-limits repeated warnings (transport and credential faults): a fault that hits every send is
/// logged as a warning at most once per interval, the repeats at debug level.
/// </summary>
internal static class WarningThrottle
{
    /// <summary>True when the last warning of this kind (its timestamp in <paramref name="lastTimestamp"/>) is older than <paramref name="interval"/>; claims the slot atomically.</summary>
    public static bool ShouldWarn(TimeProvider time, ref long lastTimestamp, TimeSpan interval)
    {
        var now = time.GetTimestamp();
        var last = Interlocked.Read(ref lastTimestamp);
        if (last != 0 && time.GetElapsedTime(last, now) < interval)
        {
            return false;
        }

        return Interlocked.CompareExchange(ref lastTimestamp, now, last) == last;
    }
}
