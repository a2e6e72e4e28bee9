using Herald.Core.Ports;
using Herald.Core.Settings;

namespace Herald.Core.Pipeline;

/// <summary>
/// A token bucket on a <see cref="TimeProvider"/>: <c>rate</c> tokens a minute, holding at most
/// <c>capacity</c>. Starts full. Not thread-safe: one dispatcher owns it.
/// </summary>
public sealed class TokenBucket(TimeProvider time)
{
    private double _tokens = double.NaN;
    private long _stamp;

    /// <summary>Refills for the time passed, then takes up to <paramref name="requested"/> whole tokens.</summary>
    public int Take(int requested, double ratePerMinute, double capacity)
    {
        Refill(ratePerMinute, capacity);
        var taken = (int)Math.Min(requested, Math.Floor(_tokens));
        _tokens -= taken;
        return Math.Max(0, taken);
    }

    /// <summary>Gives back unused tokens (never above capacity).</summary>
    public void Return(int count, double capacity) => _tokens = Math.Min(capacity, _tokens + count);

    /// <summary>How long until one whole token is available.</summary>
    public TimeSpan UntilNextToken(double ratePerMinute)
        => _tokens >= 1 || ratePerMinute <= 0 ? TimeSpan.Zero : TimeSpan.FromMinutes((1 - _tokens) / ratePerMinute);

    private void Refill(double ratePerMinute, double capacity)
    {
        var now = time.GetTimestamp();
        if (double.IsNaN(_tokens))
        {
            _tokens = capacity;
        }
        else
        {
            var minutes = time.GetElapsedTime(_stamp, now).TotalMinutes;
            _tokens = Math.Min(capacity, _tokens + (minutes * ratePerMinute));
        }

        _stamp = now;
    }
}

/// <summary>
/// The standard lane's rate limit. <c>scope: node</c> uses a bucket in this process; <c>scope: farm</c>
/// uses one bucket in the database shared by all nodes. The bucket holds about one second of sends, so a
/// limit of 50 a minute sends 50 a minute, not a burst of 50 and then 50 a minute.
/// </summary>
public sealed class LaneThrottle(IThrottleStore store, TimeProvider time)
{
    /// <summary>The database bucket of the farm-wide standard lane.</summary>
    public const string FarmBucket = "lane:standard";

    private readonly TokenBucket _node = new(time);

    /// <summary>The bucket size for a rate: one second of sends, at least one.</summary>
    public static double CapacityFor(int ratePerMinute) => Math.Max(1.0, ratePerMinute / 60.0);

    /// <summary>How many standard-lane notifications may be sent now (up to <paramref name="wanted"/>).</summary>
    public async ValueTask<int> AcquireAsync(int wanted, LaneSettings lane, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(lane);
        if (lane.RatePerMinute is not { } rate)
        {
            return wanted;
        }

        return lane.Scope == ThrottleScope.Node
            ? _node.Take(wanted, rate, CapacityFor(rate))
            : await store.TakeTokensAsync(FarmBucket, wanted, rate, CapacityFor(rate), time.GetUtcNow(), cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Gives back what was acquired but not used (no rows to send).</summary>
    public async ValueTask ReleaseAsync(int unused, LaneSettings lane, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(lane);
        if (unused <= 0 || lane.RatePerMinute is not { } rate)
        {
            return;
        }

        if (lane.Scope == ThrottleScope.Node)
        {
            _node.Return(unused, CapacityFor(rate));
        }
        else
        {
            await store.ReturnTokensAsync(FarmBucket, unused, CapacityFor(rate), cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>About how long until the next send is allowed, for sleeping.</summary>
    public TimeSpan UntilNextToken(LaneSettings lane)
    {
        ArgumentNullException.ThrowIfNull(lane);
        if (lane.RatePerMinute is not { } rate)
        {
            return TimeSpan.Zero;
        }

        return lane.Scope == ThrottleScope.Node ? _node.UntilNextToken(rate) : TimeSpan.FromMinutes(1.0 / rate);
    }
}
