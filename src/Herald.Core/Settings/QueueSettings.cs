namespace Herald.Core.Settings;

/// <summary>Where a lane's rate limit applies.</summary>
public enum ThrottleScope
{
    /// <summary>One limit shared by every node of the farm (kept in the database).</summary>
    Farm = 0,
    /// <summary>The limit applies on each node separately.</summary>
    Node = 1,
}

/// <summary>One lane's settings.</summary>
public sealed record LaneSettings
{
    /// <summary>Sends per minute; null = not throttled.</summary>
    public int? RatePerMinute { get; init; }

    public ThrottleScope Scope { get; init; } = ThrottleScope.Farm;

    /// <summary>Overrides <see cref="RetrySettings.MaxAttempts"/> for this lane when set.</summary>
    public int? MaxAttempts { get; init; }
}

/// <summary>The retry schedule: exponential backoff with jitter between the delays, then dead.</summary>
public sealed record RetrySettings
{
    public int MaxAttempts { get; init; } = 5;
    public TimeSpan InitialDelay { get; init; } = TimeSpan.FromSeconds(30);
    public TimeSpan MaxDelay { get; init; } = TimeSpan.FromHours(1);
}

/// <summary>Provider connection settings that change at runtime.</summary>
public sealed record ConnectionSettings
{
    /// <summary>The shortest idle time a live setting may ask for.</summary>
    public static readonly TimeSpan MinIdleTimeout = TimeSpan.FromSeconds(5);

    /// <summary>The longest idle time a live setting may ask for.</summary>
    public static readonly TimeSpan MaxIdleTimeout = TimeSpan.FromHours(1);

    /// <summary>
    /// How long an APNs, FCM or WNS connection stays open without sends before it is closed; null = each provider's
    /// configured <c>IdleTimeout</c> (60 s by default).
    /// </summary>
    public TimeSpan? IdleTimeout { get; init; }
}

/// <summary>
/// The queue settings that change at runtime (CONTRACT §3 <c>/v1/admin/settings</c>): stored in the
/// database, applied on every node within seconds, every change audited.
/// </summary>
public sealed record QueueSettings
{
    /// <summary>User-initiated sends: never throttled by default.</summary>
    public LaneSettings Priority { get; init; } = new();

    /// <summary>Administrative bulk: 50 a minute across the farm by default.</summary>
    public LaneSettings Standard { get; init; } = new() { RatePerMinute = 50 };

    public RetrySettings Retry { get; init; } = new();

    /// <summary>Provider connections (idle time).</summary>
    public ConnectionSettings Connections { get; init; } = new();

    /// <summary>Defaults as documented.</summary>
    public static QueueSettings Default { get; } = new();

    /// <summary>Checks the settings; one clear message per problem (empty when valid).</summary>
    public IReadOnlyList<string> Validate()
    {
        var errors = new List<string>();
        ValidateLane(errors, "lanes.priority", Priority);
        ValidateLane(errors, "lanes.standard", Standard);
        if (Retry.MaxAttempts is < 1 or > 100)
        {
            errors.Add("retry.maxAttempts must be between 1 and 100.");
        }

        if (Retry.InitialDelay < TimeSpan.FromMilliseconds(10) || Retry.InitialDelay > TimeSpan.FromDays(1))
        {
            errors.Add("retry.initialDelay must be between 00:00:00.010 and 1.00:00:00.");
        }

        if (Retry.MaxDelay < Retry.InitialDelay || Retry.MaxDelay > TimeSpan.FromDays(7))
        {
            errors.Add("retry.maxDelay must be at least retry.initialDelay and at most 7.00:00:00.");
        }

        if (Connections.IdleTimeout is { } idle && (idle < ConnectionSettings.MinIdleTimeout || idle > ConnectionSettings.MaxIdleTimeout))
        {
            errors.Add("connections.idleTimeout must be between 00:00:05 and 01:00:00, or null for the configured default.");
        }

        return errors;
    }

    /// <summary>The attempts allowed in a lane.</summary>
    public int MaxAttemptsFor(Notifications.Lane lane)
        => (lane == Notifications.Lane.Priority ? Priority.MaxAttempts : Standard.MaxAttempts) ?? Retry.MaxAttempts;

    private static void ValidateLane(List<string> errors, string name, LaneSettings lane)
    {
        if (lane.RatePerMinute is { } rate && (rate < 1 || rate > 10_000_000))
        {
            errors.Add($"{name}.ratePerMinute must be between 1 and 10000000, or null for no limit.");
        }

        if (lane.MaxAttempts is { } attempts && (attempts < 1 || attempts > 100))
        {
            errors.Add($"{name}.maxAttempts must be between 1 and 100.");
        }

        if (!Enum.IsDefined(lane.Scope))
        {
            errors.Add($"{name}.scope must be 'farm' or 'node'.");
        }
    }
}

/// <summary>Settings as stored, with their version and who changed them last.</summary>
public sealed record StoredSettings(QueueSettings Settings, long Version, DateTimeOffset UpdatedAt, string UpdatedBy);

/// <summary>One audited change: who, when, and the settings before and after (as JSON).</summary>
public sealed record SettingsChange(long Version, DateTimeOffset At, string Actor, string OldJson, string NewJson);
