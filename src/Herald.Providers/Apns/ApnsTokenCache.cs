using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace Herald.Providers.Apns;

/// <summary>
/// Holds the current provider token of each signing key. Apple wants one token per key, replaced no
/// more often than every 20 minutes and before it is an hour old; every process sharing a key must
/// share its token. The in-process <see cref="ApnsTokenCache"/> serves one node; a farm can plug in an
/// implementation backed by the shared database (hence the asynchronous signatures).
/// </summary>
public interface IApnsTokenCache
{
    /// <summary>The token to use now for <paramref name="key"/>, minting one when there is none or it is due for refresh.</summary>
    ValueTask<ApnsProviderToken> GetAsync(ApnsSigningKey key, CancellationToken cancellationToken);

    /// <summary>
    /// APNs answered ExpiredProviderToken for <paramref name="rejected"/>: returns a new token if
    /// <paramref name="rejected"/> is still the current one (otherwise the one that already replaced it).
    /// Returns <paramref name="rejected"/> itself when minting is currently suspended.
    /// </summary>
    ValueTask<ApnsProviderToken> RenewExpiredAsync(ApnsSigningKey key, ApnsProviderToken rejected, CancellationToken cancellationToken);

    /// <summary>APNs answered TooManyProviderTokenUpdates: keep the current token and mint no new one for a while.</summary>
    ValueTask ReportTooManyUpdatesAsync(ApnsSigningKey key, CancellationToken cancellationToken);
}

/// <summary>
/// The in-process <see cref="IApnsTokenCache"/>: one token per signing key, refreshed when it is
/// <see cref="ApnsOptions.TokenRefreshInterval"/> old; after TooManyProviderTokenUpdates no token is
/// minted for <see cref="MintBackoff"/>. Reads are lock-free; minting is serialised per key.
/// </summary>
public sealed partial class ApnsTokenCache : IApnsTokenCache
{
    /// <summary>How long minting stops after TooManyProviderTokenUpdates (Apple's minimum refresh interval).</summary>
    public static readonly TimeSpan MintBackoff = TimeSpan.FromMinutes(20);

    private readonly ConcurrentDictionary<string, Entry> _entries = new(StringComparer.Ordinal);
    private readonly TimeProvider _time;
    private readonly TimeSpan _refreshAfter;
    private readonly ILogger _logger;
    private long _mintCount;

    /// <summary>Creates the cache; the refresh age comes from <see cref="ApnsOptions.TokenRefreshInterval"/> (clamped to 20–55 minutes).</summary>
    public ApnsTokenCache(TimeProvider time, IOptions<ApnsOptions> options, ILogger<ApnsTokenCache>? logger = null)
    {
        ArgumentNullException.ThrowIfNull(time);
        ArgumentNullException.ThrowIfNull(options);
        _time = time;
        var refresh = options.Value.TokenRefreshInterval;
        _refreshAfter = refresh < ApnsOptions.MinTokenRefreshInterval ? ApnsOptions.MinTokenRefreshInterval
            : refresh > ApnsOptions.MaxTokenRefreshInterval ? ApnsOptions.MaxTokenRefreshInterval
            : refresh;
        _logger = (ILogger?)logger ?? NullLogger.Instance;
    }

    /// <summary>Tokens minted so far (all keys).</summary>
    public long MintCount => Interlocked.Read(ref _mintCount);

    /// <inheritdoc />
    public ValueTask<ApnsProviderToken> GetAsync(ApnsSigningKey key, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(key);
        var entry = _entries.GetOrAdd(key.Id, static _ => new Entry());
        var current = Volatile.Read(ref entry.Current);
        if (current is not null && _time.GetUtcNow() - current.IssuedAt < _refreshAfter)
        {
            return ValueTask.FromResult(current); // the hot path: no lock, no allocation
        }

        lock (entry.Gate)
        {
            var now = _time.GetUtcNow();
            current = entry.Current;
            if (current is not null && (now - current.IssuedAt < _refreshAfter || now < entry.MintBlockedUntil))
            {
                return ValueTask.FromResult(current);
            }

            return ValueTask.FromResult(Mint(key, entry, now, current is null ? "first use" : "refresh"));
        }
    }

    /// <inheritdoc />
    public ValueTask<ApnsProviderToken> RenewExpiredAsync(ApnsSigningKey key, ApnsProviderToken rejected, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(key);
        ArgumentNullException.ThrowIfNull(rejected);
        var entry = _entries.GetOrAdd(key.Id, static _ => new Entry());
        lock (entry.Gate)
        {
            var now = _time.GetUtcNow();
            if (entry.Current is { } current && !ReferenceEquals(current, rejected))
            {
                return ValueTask.FromResult(current); // another send already replaced it
            }

            if (now < entry.MintBlockedUntil)
            {
                return ValueTask.FromResult(rejected);
            }

            return ValueTask.FromResult(Mint(key, entry, now, "expired"));
        }
    }

    /// <inheritdoc />
    public ValueTask ReportTooManyUpdatesAsync(ApnsSigningKey key, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(key);
        var entry = _entries.GetOrAdd(key.Id, static _ => new Entry());
        lock (entry.Gate)
        {
            var until = _time.GetUtcNow() + MintBackoff;
            if (until > entry.MintBlockedUntil)
            {
                entry.MintBlockedUntil = until;
                Log.MintSuspended(_logger, key.Id, until);
            }
        }

        return ValueTask.CompletedTask;
    }

    private ApnsProviderToken Mint(ApnsSigningKey key, Entry entry, DateTimeOffset now, string why)
    {
        var token = key.Mint(now);
        Volatile.Write(ref entry.Current, token);
        Interlocked.Increment(ref _mintCount);
        Log.Minted(_logger, key.Id, why);
        return token;
    }

    private sealed class Entry
    {
        public readonly Lock Gate = new();
        public ApnsProviderToken? Current;
        public DateTimeOffset MintBlockedUntil;
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 3120, Level = LogLevel.Information, Message = "Minted a new APNs provider token for key {KeyId} ({Why})")]
        public static partial void Minted(ILogger logger, string keyId, string why);

        [LoggerMessage(EventId = 3121, Level = LogLevel.Warning, Message = "APNs answered TooManyProviderTokenUpdates for key {KeyId}: reusing the current token, no new one before {Until}. Do several processes share this key without sharing its token?")]
        public static partial void MintSuspended(ILogger logger, string keyId, DateTimeOffset until);
    }
}
