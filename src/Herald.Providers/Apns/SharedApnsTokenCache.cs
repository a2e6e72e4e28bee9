using System.Collections.Concurrent;
using Herald.Core.Ports;
using Herald.Core.Security;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Herald.Providers.Apns;

/// <summary>
/// The farm's <see cref="IApnsTokenCache"/>: one provider token per signing key for every node and every restart, kept
/// (sealed) in the shared database. A node reuses the stored token while it is younger than the refresh age; when it is
/// due, the first node to mint stores its token with a compare-and-swap and the others adopt it. So restarts and several
/// nodes never make Apple see more than one new token per refresh interval (no TooManyProviderTokenUpdates).
/// When the database cannot be reached the node keeps sending with its own token (and says so in the log).
/// </summary>
public sealed partial class SharedApnsTokenCache : IApnsTokenCache, IDisposable
{
    private const string Purpose = "apns-provider-token";

    private readonly ConcurrentDictionary<string, Entry> _entries = new(StringComparer.Ordinal);
    private readonly ISharedTokenStore _store;
    private readonly SecretBox _secrets;
    private readonly TimeProvider _time;
    private readonly TimeSpan _refreshAfter;
    private readonly ILogger _logger;
    private long _mintCount;

    /// <summary>Creates the cache over the shared store.</summary>
    public SharedApnsTokenCache(ISharedTokenStore store, SecretBox secrets, TimeProvider time, IOptions<ApnsOptions> options, ILogger<SharedApnsTokenCache> logger)
    {
        ArgumentNullException.ThrowIfNull(options);
        _store = store;
        _secrets = secrets;
        _time = time;
        var refresh = options.Value.TokenRefreshInterval;
        _refreshAfter = refresh < ApnsOptions.MinTokenRefreshInterval ? ApnsOptions.MinTokenRefreshInterval
            : refresh > ApnsOptions.MaxTokenRefreshInterval ? ApnsOptions.MaxTokenRefreshInterval
            : refresh;
        _logger = logger;
    }

    /// <summary>Tokens minted by this node so far.</summary>
    public long MintCount => Interlocked.Read(ref _mintCount);

    /// <inheritdoc />
    public async ValueTask<ApnsProviderToken> GetAsync(ApnsSigningKey key, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(key);
        var entry = _entries.GetOrAdd(key.Id, static _ => new Entry());
        var current = Volatile.Read(ref entry.Current);
        if (current is not null && _time.GetUtcNow() - current.IssuedAt < _refreshAfter)
        {
            return current; // the hot path: no lock, no database
        }

        await entry.Gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            current = entry.Current;
            var now = _time.GetUtcNow();
            if (current is not null && now - current.IssuedAt < _refreshAfter)
            {
                return current;
            }

            return await RefreshAsync(key, entry, current, now, "refresh", cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            entry.Gate.Release();
        }
    }

    /// <inheritdoc />
    public async ValueTask<ApnsProviderToken> RenewExpiredAsync(ApnsSigningKey key, ApnsProviderToken rejected, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(key);
        ArgumentNullException.ThrowIfNull(rejected);
        var entry = _entries.GetOrAdd(key.Id, static _ => new Entry());
        await entry.Gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (entry.Current is { } current && current.Jwt != rejected.Jwt)
            {
                return current; // already replaced
            }

            return await RefreshAsync(key, entry, rejected, _time.GetUtcNow(), "expired", cancellationToken, rejectedJwt: rejected.Jwt).ConfigureAwait(false);
        }
        finally
        {
            entry.Gate.Release();
        }
    }

    /// <inheritdoc />
    public ValueTask ReportTooManyUpdatesAsync(ApnsSigningKey key, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(key);
        var entry = _entries.GetOrAdd(key.Id, static _ => new Entry());
        var until = _time.GetUtcNow() + ApnsTokenCache.MintBackoff;
        lock (entry)
        {
            if (until > entry.MintBlockedUntil)
            {
                entry.MintBlockedUntil = until;
            }
        }

        Log.MintSuspended(_logger, key.Id, until);
        return ValueTask.CompletedTask;
    }

    private async Task<ApnsProviderToken> RefreshAsync(ApnsSigningKey key, Entry entry, ApnsProviderToken? current, DateTimeOffset now, string why, CancellationToken cancellationToken, string? rejectedJwt = null)
    {
        var storeKey = "apns:" + key.Id;
        SharedToken? stored;
        try
        {
            stored = await _store.GetSharedTokenAsync(storeKey, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            Log.StoreUnavailable(_logger, key.Id, e.Message);
            return Adopt(entry, current is not null && now < entry.MintBlockedUntil ? current : Mint(key, now, why));
        }

        // Another node (or this node's previous life) stored a token that is still fresh: use it.
        if (stored is not null && now - stored.IssuedAt < _refreshAfter && Open(stored, key) is { } shared && shared.Jwt != rejectedJwt)
        {
            return Adopt(entry, shared);
        }

        if (now < entry.MintBlockedUntil && (current ?? (stored is null ? null : Open(stored, key))) is { } keep)
        {
            return Adopt(entry, keep);
        }

        var minted = Mint(key, now, why);
        try
        {
            var winner = await _store.SwapSharedTokenAsync(storeKey, stored, new SharedToken(_secrets.Seal(minted.Jwt, Purpose), minted.IssuedAt), cancellationToken).ConfigureAwait(false);
            return Adopt(entry, winner.IssuedAt == minted.IssuedAt ? minted : Open(winner, key) ?? minted);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            Log.StoreUnavailable(_logger, key.Id, e.Message);
            return Adopt(entry, minted);
        }
    }

    private ApnsProviderToken Mint(ApnsSigningKey key, DateTimeOffset now, string why)
    {
        Interlocked.Increment(ref _mintCount);
        Log.Minted(_logger, key.Id, why);
        return key.Mint(now);
    }

    private ApnsProviderToken? Open(SharedToken stored, ApnsSigningKey key)
    {
        try
        {
            return new ApnsProviderToken(_secrets.Open(stored.SealedValue, Purpose), stored.IssuedAt, key.Id);
        }
        catch (System.Security.Cryptography.CryptographicException)
        {
            return null; // sealed under a key this node does not hold: mint and replace it
        }
    }

    private static ApnsProviderToken Adopt(Entry entry, ApnsProviderToken token)
    {
        Volatile.Write(ref entry.Current, token);
        return token;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (var entry in _entries.Values)
        {
            entry.Dispose();
        }
    }

    private sealed class Entry : IDisposable
    {
        public readonly SemaphoreSlim Gate = new(1, 1);

        public void Dispose() => Gate.Dispose();

        public ApnsProviderToken? Current;
        public DateTimeOffset MintBlockedUntil;
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 3125, Level = LogLevel.Information, Message = "Minted a new APNs provider token for key {KeyId} ({Why}); it is shared through the database")]
        public static partial void Minted(ILogger logger, string keyId, string why);

        [LoggerMessage(EventId = 3126, Level = LogLevel.Warning, Message = "APNs answered TooManyProviderTokenUpdates for key {KeyId}: no new token before {Until}")]
        public static partial void MintSuspended(ILogger logger, string keyId, DateTimeOffset until);

        [LoggerMessage(EventId = 3127, Level = LogLevel.Warning, Message = "The shared token store is unavailable for APNs key {KeyId} ({Error}); this node uses its own token until it is back")]
        public static partial void StoreUnavailable(ILogger logger, string keyId, string error);
    }
}
