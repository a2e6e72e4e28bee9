using Herald.Core.Pipeline;
using Herald.Core.Ports;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Herald.Core.Settings;

/// <summary>
/// The queue settings in force on this node. Read from the store at start, re-read when this node
/// changes them (at once) and every <see cref="RefreshInterval"/> (so a change made on another node
/// applies here within that time, well inside the 5 seconds promised), without a restart.
/// </summary>
public sealed partial class SettingsMonitor : ILiveConnectionSettings, IDisposable
{
    /// <summary>How often the store is asked whether another node changed the settings.</summary>
    public static readonly TimeSpan RefreshInterval = TimeSpan.FromSeconds(2);

    private readonly ISettingsStore _store;
    private readonly TimeProvider _time;
    private readonly ILogger<SettingsMonitor> _logger;
    private readonly AsyncSignal _changed = new();
    private volatile StoredSettings _current;

    public SettingsMonitor(ISettingsStore store, TimeProvider time, IOptions<RetryOptions> retryDefaults, ILogger<SettingsMonitor> logger)
    {
        ArgumentNullException.ThrowIfNull(retryDefaults);
        _store = store;
        _time = time;
        _logger = logger;
        var r = retryDefaults.Value;
        Defaults = QueueSettings.Default with
        {
            Retry = new RetrySettings { MaxAttempts = r.MaxAttempts, InitialDelay = r.InitialDelay, MaxDelay = r.MaxDelay },
        };
        _current = new StoredSettings(Defaults, 0, DateTimeOffset.UnixEpoch, "defaults");
    }

    /// <summary>What applies while nothing was ever saved: the documented defaults, with the retry schedule from configuration.</summary>
    public QueueSettings Defaults { get; }

    /// <summary>The settings in force now.</summary>
    public QueueSettings Current => _current.Settings;

    /// <inheritdoc />
    public TimeSpan? IdleTimeout => _current.Settings.Connections.IdleTimeout;

    /// <summary>The settings in force with their version and last change.</summary>
    public StoredSettings CurrentStored => _current;

    /// <summary>Raised when the settings in force change.</summary>
    public event Action<QueueSettings>? Changed;

    /// <summary>Reads the store now; returns true when the settings changed.</summary>
    public async Task<bool> RefreshAsync(CancellationToken cancellationToken)
    {
        var stored = await _store.GetSettingsAsync(cancellationToken).ConfigureAwait(false);
        if (stored is null || stored.Version == _current.Version)
        {
            return false;
        }

        _current = stored;
        Log.Applied(_logger, stored.Version, stored.UpdatedBy);
        Changed?.Invoke(stored.Settings);
        return true;
    }

    /// <summary>Validates and saves new settings, and applies them on this node at once.</summary>
    public async Task<StoredSettings> SaveAsync(QueueSettings settings, string actor, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(settings);
        var errors = settings.Validate();
        if (errors.Count > 0)
        {
            throw new ArgumentException(string.Join(" ", errors), nameof(settings));
        }

        var stored = await _store.SaveSettingsAsync(settings, actor, _time.GetUtcNow(), cancellationToken).ConfigureAwait(false);
        _changed.Set();
        await RefreshAsync(cancellationToken).ConfigureAwait(false);
        return stored;
    }

    /// <summary>Refreshes on every local change and every <see cref="RefreshInterval"/> until cancelled.</summary>
    public async Task RunAsync(CancellationToken cancellationToken)
    {
        while (!cancellationToken.IsCancellationRequested)
        {
            try
            {
                await RefreshAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                Log.RefreshFailed(_logger, ex);
            }

            await _changed.WaitAsync(RefreshInterval, _time, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <inheritdoc />
    public void Dispose() => _changed.Dispose();

    private static partial class Log
    {
        [LoggerMessage(EventId = 1201, Level = LogLevel.Information, Message = "Queue settings version {Version} (changed by {Actor}) are now in force")]
        public static partial void Applied(ILogger logger, long version, string actor);

        [LoggerMessage(EventId = 1202, Level = LogLevel.Warning, Message = "Could not read the queue settings; keeping the ones in force")]
        public static partial void RefreshFailed(ILogger logger, Exception exception);
    }
}
