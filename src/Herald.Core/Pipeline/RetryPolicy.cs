namespace Herald.Core.Pipeline;

/// <summary>Retry settings: exponential backoff with jitter between the two delays, then dead.</summary>
public sealed class RetryOptions
{
    /// <summary>Attempts in all, including the first; after the last failure the notification is dead.</summary>
    public int MaxAttempts { get; set; } = 5;

    public TimeSpan InitialDelay { get; set; } = TimeSpan.FromSeconds(30);

    public TimeSpan MaxDelay { get; set; } = TimeSpan.FromHours(1);
}

/// <summary>Computes retry delays.</summary>
public static class RetryPolicy
{
    /// <summary>
    /// The delay after failed attempt number <paramref name="attempt"/> (1-based):
    /// InitialDelay × 2^(attempt-1), jittered by ±20 %, clamped to [InitialDelay, MaxDelay];
    /// a provider's Retry-After, when longer, wins (still capped by MaxDelay).
    /// </summary>
    public static TimeSpan NextDelay(RetryOptions options, int attempt, TimeSpan? retryAfter, double jitter01)
    {
        ArgumentNullException.ThrowIfNull(options);
        return NextDelay(options.InitialDelay, options.MaxDelay, attempt, retryAfter, jitter01);
    }

    /// <summary>As <see cref="NextDelay(RetryOptions, int, TimeSpan?, double)"/>, from the runtime settings.</summary>
    public static TimeSpan NextDelay(Settings.RetrySettings settings, int attempt, TimeSpan? retryAfter, double jitter01)
    {
        ArgumentNullException.ThrowIfNull(settings);
        return NextDelay(settings.InitialDelay, settings.MaxDelay, attempt, retryAfter, jitter01);
    }

    private static TimeSpan NextDelay(TimeSpan initialDelay, TimeSpan maxDelay, int attempt, TimeSpan? retryAfter, double jitter01)
    {
        var initial = initialDelay.Ticks;
        var max = Math.Max(initial, maxDelay.Ticks);
        var exponent = Math.Clamp(attempt - 1, 0, 40);
        var baseTicks = Math.Min(max, initial * Math.Pow(2, exponent));
        var jittered = baseTicks * (0.8 + (0.4 * Math.Clamp(jitter01, 0, 1)));
        var ticks = (long)Math.Clamp(jittered, initial, max);
        if (retryAfter is { } ra && ra.Ticks > ticks)
        {
            ticks = Math.Min(ra.Ticks, max);
        }

        return TimeSpan.FromTicks(ticks);
    }
}
