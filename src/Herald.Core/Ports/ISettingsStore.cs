using Herald.Core.Settings;

namespace Herald.Core.Ports;

/// <summary>Runtime settings in the database, shared by every node.</summary>
public interface ISettingsStore
{
    /// <summary>The stored settings, or null when none were ever saved (the defaults apply).</summary>
    Task<StoredSettings?> GetSettingsAsync(CancellationToken cancellationToken);

    /// <summary>
    /// Saves new settings and an audit row (actor, time, old → new JSON) in one transaction; the version
    /// grows by one. Returns what is now stored.
    /// </summary>
    Task<StoredSettings> SaveSettingsAsync(QueueSettings settings, string actor, DateTimeOffset now, CancellationToken cancellationToken);

    /// <summary>The latest changes, newest first.</summary>
    Task<IReadOnlyList<SettingsChange>> GetSettingsHistoryAsync(int limit, CancellationToken cancellationToken);
}

/// <summary>Token buckets shared through the database (the farm-wide throttle).</summary>
public interface IThrottleStore
{
    /// <summary>
    /// Atomically refills bucket <paramref name="bucket"/> at <paramref name="ratePerMinute"/> up to
    /// <paramref name="capacity"/> tokens (a new bucket starts full), then takes up to
    /// <paramref name="requested"/> whole tokens. Returns how many were taken.
    /// </summary>
    Task<int> TakeTokensAsync(string bucket, int requested, double ratePerMinute, double capacity, DateTimeOffset now, CancellationToken cancellationToken);

    /// <summary>Gives back tokens that were taken but not used (never above capacity).</summary>
    Task ReturnTokensAsync(string bucket, int count, double capacity, CancellationToken cancellationToken);
}
