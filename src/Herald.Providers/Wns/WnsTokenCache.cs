using System.Collections.Concurrent;
using System.Diagnostics.CodeAnalysis;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace Herald.Providers.Wns;

/// <summary>
/// Holds the current WNS access token of each credential. A token is valid for about a day and every node
/// may use it, so a farm can plug in an implementation backed by the shared database (hence the asynchronous
/// signatures); <see cref="WnsTokenCache"/> serves one process. Implementations throw
/// <see cref="WnsTokenException"/> when no token can be had.
/// </summary>
public interface IWnsTokenCache
{
    /// <summary>The token to use now for <paramref name="credential"/>, fetching one when there is none or it is due for refresh.</summary>
    ValueTask<WnsAccessToken> GetAsync(WnsCredential credential, CancellationToken cancellationToken);

    /// <summary>
    /// WNS answered 401 to <paramref name="rejected"/>: drops it and returns a new token, or the one that already
    /// replaced it. Returns <paramref name="rejected"/> itself when renewal is currently suspended (a renewal
    /// happened moments ago, so another would not help).
    /// </summary>
    ValueTask<WnsAccessToken> RenewAsync(WnsCredential credential, WnsAccessToken rejected, CancellationToken cancellationToken);
}

/// <summary>
/// The in-process <see cref="IWnsTokenCache"/>: one token per credential, fetched once by concurrent callers,
/// replaced at <see cref="WnsAccessToken.RefreshAt"/>. After a failed fetch, callers fail fast for
/// <see cref="WnsOptions.TokenFailureBackoff"/> (a still-valid old token is used meanwhile); 401-driven
/// renewals happen at most once per <see cref="MinRenewInterval"/>. Reads are lock-free.
/// </summary>
public sealed partial class WnsTokenCache : IWnsTokenCache
{
    /// <summary>The least time between two 401-driven renewals of one credential's token.</summary>
    public static readonly TimeSpan MinRenewInterval = TimeSpan.FromSeconds(30);

    private readonly ConcurrentDictionary<string, Entry> _entries = new(StringComparer.Ordinal);
    private readonly WnsTokenClient _client;
    private readonly TimeProvider _time;
    private readonly TimeSpan _failureBackoff;
    private readonly ILogger _logger;

    /// <summary>Creates the cache.</summary>
    public WnsTokenCache(WnsTokenClient client, TimeProvider time, IOptions<WnsOptions> options, ILogger<WnsTokenCache>? logger = null)
    {
        ArgumentNullException.ThrowIfNull(client);
        ArgumentNullException.ThrowIfNull(time);
        ArgumentNullException.ThrowIfNull(options);
        _client = client;
        _time = time;
        _failureBackoff = options.Value.TokenFailureBackoff;
        _logger = (ILogger?)logger ?? NullLogger.Instance;
    }

    /// <inheritdoc />
    public async ValueTask<WnsAccessToken> GetAsync(WnsCredential credential, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(credential);
        var entry = _entries.GetOrAdd(credential.Id, static _ => new Entry());
        var current = Volatile.Read(ref entry.Current);
        if (current is not null && _time.GetUtcNow() < current.RefreshAt)
        {
            return current; // the hot path: no lock, no allocation
        }

        await entry.Gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            current = entry.Current;
            if (current is not null && _time.GetUtcNow() < current.RefreshAt)
            {
                return current; // another caller fetched it while this one waited
            }

            return await FetchLockedAsync(credential, entry, current is null ? "first use" : "refresh", cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            entry.Gate.Release();
        }
    }

    /// <inheritdoc />
    public async ValueTask<WnsAccessToken> RenewAsync(WnsCredential credential, WnsAccessToken rejected, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(credential);
        ArgumentNullException.ThrowIfNull(rejected);
        var entry = _entries.GetOrAdd(credential.Id, static _ => new Entry());
        await entry.Gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var now = _time.GetUtcNow();
            if (entry.Current is { } current && !ReferenceEquals(current, rejected) && now < current.ExpiresAt)
            {
                return current; // another send already replaced it
            }

            if (entry.LastRenewal is { } last && now - last < MinRenewInterval)
            {
                Log.RenewalSuspended(_logger, credential.Name);
                return rejected;
            }

            entry.LastRenewal = now;
            if (ReferenceEquals(entry.Current, rejected))
            {
                Volatile.Write(ref entry.Current, null);
            }

            return await FetchLockedAsync(credential, entry, "rejected with 401", cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            entry.Gate.Release();
        }
    }

    private async ValueTask<WnsAccessToken> FetchLockedAsync(WnsCredential credential, Entry entry, string why, CancellationToken cancellationToken)
    {
        var now = _time.GetUtcNow();
        var current = entry.Current;
        if (entry.LastFailure is { } failure && now < entry.FailedUntil)
        {
            // Fail fast: every queued notification would otherwise ask the token endpoint again.
            if (current is not null && now < current.ExpiresAt)
            {
                return current;
            }

            throw new WnsTokenException(failure.Error, failure.StatusCode, failure.Message, failure);
        }

        try
        {
            var token = await _client.RequestAsync(credential, cancellationToken).ConfigureAwait(false);
            entry.LastFailure = null;
            Volatile.Write(ref entry.Current, token);
            Log.Replaced(_logger, credential.Name, why);
            return token;
        }
        catch (WnsTokenException ex)
        {
            entry.LastFailure = ex;
            entry.FailedUntil = _time.GetUtcNow() + _failureBackoff;
            Log.FetchFailed(_logger, credential.Name, ex.StatusCode, ex.Error, ex.Message);
            if (current is not null && _time.GetUtcNow() < current.ExpiresAt)
            {
                return current; // refresh failed, but the old token still works for a while
            }

            throw;
        }
    }

    [SuppressMessage("Reliability", "CA1001:Types that own disposable fields should be disposable", Justification = "SemaphoreSlim holds nothing to release unless its AvailableWaitHandle is used; entries live as long as the cache.")]
    private sealed class Entry
    {
        public readonly SemaphoreSlim Gate = new(1, 1);
        public WnsAccessToken? Current;

        // Guarded by Gate.
        public WnsTokenException? LastFailure;
        public DateTimeOffset FailedUntil;
        public DateTimeOffset? LastRenewal;
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 3321, Level = LogLevel.Debug, Message = "Replaced the WNS access token of {Credential} ({Why})")]
        public static partial void Replaced(ILogger logger, string credential, string why);

        [LoggerMessage(EventId = 3322, Level = LogLevel.Warning, Message = "Could not get a WNS access token for {Credential}: {Status} {Error}: {Message}")]
        public static partial void FetchFailed(ILogger logger, string credential, int status, string error, string message);

        [LoggerMessage(EventId = 3323, Level = LogLevel.Warning, Message = "WNS rejected a just-renewed access token of {Credential}; not renewing again for now. Is the credential valid for this app's channels?")]
        public static partial void RenewalSuspended(ILogger logger, string credential);
    }
}
