using System.Collections.Concurrent;
using System.Security.Cryptography;
using Google.Apis.Auth.OAuth2;
using Google.Apis.Auth.OAuth2.Responses;
using Google.Apis.Http;
using Herald.Providers.Http;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace Herald.Providers.Fcm;

/// <summary>
/// Holds the current OAuth2 access token of each service account. Google issues tokens for an hour; a
/// token is reused by every send until shortly before it expires. The in-process <see cref="FcmTokenCache"/>
/// serves one node; a farm can plug in an implementation shared through the database (hence the
/// asynchronous signatures).
/// </summary>
public interface IFcmTokenCache
{
    /// <summary>
    /// The access token to use now for <paramref name="account"/>, requesting one from the account's
    /// <c>token_uri</c> when there is none or it is about to expire.
    /// </summary>
    /// <exception cref="FcmAuthException">The token endpoint refused the account or could not be reached.</exception>
    ValueTask<FcmAccessToken> GetAsync(FcmServiceAccount account, CancellationToken cancellationToken);

    /// <summary>
    /// FCM answered 401 for <paramref name="rejected"/>: drops it if it is still the current token and returns
    /// a new one (or the one that already replaced it).
    /// </summary>
    /// <exception cref="FcmAuthException">The token endpoint refused the account or could not be reached.</exception>
    ValueTask<FcmAccessToken> RenewRejectedAsync(FcmServiceAccount account, FcmAccessToken rejected, CancellationToken cancellationToken);
}

/// <summary>An OAuth2 access token with its ready-made <c>Authorization</c> header value.</summary>
public sealed class FcmAccessToken
{
    /// <summary>Creates a token record.</summary>
    public FcmAccessToken(string accessToken, DateTimeOffset? expiresAt, string accountId)
    {
        ArgumentException.ThrowIfNullOrEmpty(accessToken);
        AccessToken = accessToken;
        ExpiresAt = expiresAt;
        AccountId = accountId;
        Authorization = "Bearer " + accessToken;
    }

    /// <summary>The token itself (a secret: never log it).</summary>
    public string AccessToken { get; }

    /// <summary>"Bearer " + token, cached so every request reuses the same string.</summary>
    public string Authorization { get; }

    /// <summary>When the token expires, when the endpoint said (<c>expires_in</c>).</summary>
    public DateTimeOffset? ExpiresAt { get; }

    /// <summary>The <see cref="FcmServiceAccount.Id"/> it was issued to.</summary>
    public string AccountId { get; }

    /// <inheritdoc />
    public override string ToString() => "access token of " + AccountId + (ExpiresAt is { } e ? ", expires " + e.ToString("O", System.Globalization.CultureInfo.InvariantCulture) : string.Empty);
}

/// <summary>An access token could not be obtained.</summary>
public sealed class FcmAuthException : Exception
{
    /// <summary>Creates the exception.</summary>
    public FcmAuthException(string message, bool isPermanent, string? error, int? statusCode, Exception? innerException = null)
        : base(message, innerException)
    {
        IsPermanent = isPermanent;
        Error = error;
        StatusCode = statusCode;
    }

    /// <summary>
    /// True when the token endpoint refused the account (<c>invalid_grant</c>, a disabled account, a deleted
    /// key, a bad key): a credential fault. False for outages (5xx, 429, transport, timeout): retry later.
    /// </summary>
    public bool IsPermanent { get; }

    /// <summary>The OAuth2 error code (<c>invalid_grant</c>, …) when the endpoint gave one, or Herald's reason.</summary>
    public string? Error { get; }

    /// <summary>The token endpoint's HTTP status, when it answered.</summary>
    public int? StatusCode { get; }
}

/// <summary>
/// The in-process <see cref="IFcmTokenCache"/> on Google.Apis.Auth: one <see cref="ServiceAccountCredential"/>
/// per service account, which signs the RS256 assertion, posts it to the account's <c>token_uri</c> and
/// caches the token (Google.Apis.Auth 1.78: refreshed in the background from 3 min 45 s before expiry while
/// the current token is still used, and before use in the last minute). Token requests go through Herald's own connection pool (pinned trust, timeouts) and
/// Herald's clock. After a failure the account is not asked again for <see cref="PermanentFailureHold"/>
/// (refused) or <see cref="TransientFailureHold"/> (outage), so a broken credential does not turn every
/// send into a token request.
/// </summary>
public sealed partial class FcmTokenCache : IFcmTokenCache, IDisposable
{
    /// <summary>The OAuth2 scope FCM HTTP v1 requires.</summary>
    public const string MessagingScope = "https://www.googleapis.com/auth/firebase.messaging";

    /// <summary>How long a refused account fails fast before its token endpoint is asked again.</summary>
    public static readonly TimeSpan PermanentFailureHold = TimeSpan.FromSeconds(60);

    /// <summary>How long an unreachable token endpoint fails fast before it is asked again.</summary>
    public static readonly TimeSpan TransientFailureHold = TimeSpan.FromSeconds(5);

    private readonly ConcurrentDictionary<string, Lazy<Entry>> _entries = new(StringComparer.Ordinal);
    private readonly TimeProvider _time;
    private readonly TimeSpan _timeout;
    private readonly HttpMessageInvoker _invoker;
    private readonly FcmGoogleHttpClientFactory _httpClientFactory;
    private readonly TimeProviderClock _clock;
    private readonly ILogger _logger;
    private long _fetchCount;

    /// <summary>Creates the cache; token requests use the options' timeouts and pinned certificate.</summary>
    public FcmTokenCache(TimeProvider time, IOptions<FcmOptions> options, ILogger<FcmTokenCache>? logger = null)
    {
        ArgumentNullException.ThrowIfNull(time);
        ArgumentNullException.ThrowIfNull(options);
        var o = options.Value;
        _time = time;
        _timeout = o.RequestTimeout > TimeSpan.Zero ? o.RequestTimeout : TimeSpan.FromSeconds(30);
        _clock = new TimeProviderClock(time);
        _logger = (ILogger?)logger ?? NullLogger.Instance;
        using var trusted = FcmHttp.LoadTrustedCertificate(o);
        _invoker = new HttpMessageInvoker(FcmHttp.CreateHandler(o, trusted, decompress: true), disposeHandler: true);
        _httpClientFactory = new FcmGoogleHttpClientFactory(_invoker);
    }

    /// <summary>New access tokens obtained so far (all accounts), as seen by the sends that use them.</summary>
    public long FetchCount => Interlocked.Read(ref _fetchCount);

    /// <inheritdoc />
    public async ValueTask<FcmAccessToken> GetAsync(FcmServiceAccount account, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(account);
        var entry = GetEntry(account);
        ThrowIfHeld(entry, account);
        return await FetchAsync(entry, account, cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public async ValueTask<FcmAccessToken> RenewRejectedAsync(FcmServiceAccount account, FcmAccessToken rejected, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(account);
        ArgumentNullException.ThrowIfNull(rejected);
        var entry = GetEntry(account);
        if (entry.Broken is { } broken)
        {
            throw broken;
        }

        lock (entry.Gate)
        {
            // Only the first of several concurrent 401s drops the token; the others find its replacement.
            if (entry.Credential.Token is { } current && current.AccessToken == rejected.AccessToken)
            {
                entry.Credential.Token = null;
                Log.Dropped(_logger, account.Id);
            }
        }

        ThrowIfHeld(entry, account);
        return await FetchAsync(entry, account, cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public void Dispose() => _invoker.Dispose();

    private Entry GetEntry(FcmServiceAccount account)
        => _entries.GetOrAdd(account.CacheKey, static (_, state) => new Lazy<Entry>(() => state.Self.CreateEntry(state.Account)), (Self: this, Account: account)).Value;

    private Entry CreateEntry(FcmServiceAccount account)
    {
        try
        {
            var initializer = new ServiceAccountCredential.Initializer(account.ClientEmail, account.TokenUri)
            {
                ProjectId = account.ProjectId,
                KeyId = account.PrivateKeyId,
                Scopes = [MessagingScope],
                Clock = _clock,
                HttpClientFactory = _httpClientFactory,

                // Herald retries whole notifications with its own backoff; the library must not retry inside a send.
                DefaultExponentialBackOffPolicy = ExponentialBackOffPolicy.None,
            }.FromPrivateKey(account.PrivateKeyPem);
            return new Entry(new ServiceAccountCredential(initializer), null);
        }
        catch (Exception ex) when (ex is ArgumentException or CryptographicException or FormatException or InvalidOperationException)
        {
            // A key that parsed but cannot sign: every send of this account is a credential fault.
            return new Entry(null!, new FcmAuthException($"The private key of {account.Id} cannot be used: {ex.Message}", isPermanent: true, FcmReasons.AuthFailed, null, ex));
        }
    }

    private void ThrowIfHeld(Entry entry, FcmServiceAccount account)
    {
        if (entry.Broken is { } broken)
        {
            throw broken;
        }

        var failure = Volatile.Read(ref entry.LastFailure);
        if (failure is not null && _time.GetUtcNow() < failure.Until)
        {
            throw new FcmAuthException(
                $"No access token for {account.Id}: the last attempt failed less than {(failure.Exception.IsPermanent ? PermanentFailureHold : TransientFailureHold).TotalSeconds:0} s ago ({failure.Exception.Message})",
                failure.Exception.IsPermanent,
                failure.Exception.Error,
                failure.Exception.StatusCode,
                failure.Exception);
        }
    }

    private async ValueTask<FcmAccessToken> FetchAsync(Entry entry, FcmServiceAccount account, CancellationToken cancellationToken)
    {
        var credential = entry.Credential;
        string value;
        using var timeout = new LinkedTimeout(_timeout, _time, cancellationToken);
        try
        {
            // The library shares one refresh among concurrent callers; cancelling only stops this wait.
            value = await credential.GetAccessTokenForRequestAsync(null, timeout.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            throw;
        }
        catch (OperationCanceledException ex)
        {
            throw Fail(entry, account, new FcmAuthException($"The token endpoint of {account.Id} did not answer within {_timeout.TotalSeconds:0} s.", isPermanent: false, FcmReasons.Timeout, null, ex));
        }
        catch (TokenResponseException ex)
        {
            var status = ex.StatusCode is { } code ? (int)code : (int?)null;

            // 4xx (invalid_grant, invalid_client, invalid_scope, unauthorized_client): the account is refused.
            var permanent = status is null or (>= 400 and < 500 and not 408 and not 429);
            var error = ex.Error?.Error;
            throw Fail(entry, account, new FcmAuthException(
                $"The token endpoint refused {account.Id}: {status?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "-"} {error} {ex.Error?.ErrorDescription}".TrimEnd(),
                permanent,
                string.IsNullOrEmpty(error) ? null : error,
                status,
                ex));
        }
        catch (Exception ex) when (ex is HttpRequestException or IOException or InvalidOperationException or ObjectDisposedException)
        {
            // Connection refused or reset, TLS failure; InvalidOperationException: the library gave up after its own timeouts.
            throw Fail(entry, account, new FcmAuthException($"The token endpoint of {account.Id} is unreachable: {ex.Message}", isPermanent: false, FcmReasons.Transport, null, ex));
        }
        catch (CryptographicException ex)
        {
            throw Fail(entry, account, new FcmAuthException($"The private key of {account.Id} cannot sign: {ex.Message}", isPermanent: true, FcmReasons.AuthFailed, null, ex));
        }

        Volatile.Write(ref entry.LastFailure, null);
        var current = Volatile.Read(ref entry.Current);
        if (current is not null && string.Equals(current.AccessToken, value, StringComparison.Ordinal))
        {
            return current; // the hot path: the same token as last time, no allocation
        }

        DateTimeOffset? expiresAt = null;
        if (credential.Token is { AccessToken: { } issued, ExpiresInSeconds: { } seconds } response && issued == value)
        {
            expiresAt = new DateTimeOffset(DateTime.SpecifyKind(response.IssuedUtc, DateTimeKind.Utc)).AddSeconds(seconds);
        }

        var token = new FcmAccessToken(value, expiresAt, account.Id);
        var previous = Interlocked.CompareExchange(ref entry.Current, token, current);
        if (!ReferenceEquals(previous, current))
        {
            return previous is not null && previous.AccessToken == value ? previous : token;
        }

        Interlocked.Increment(ref _fetchCount);
        Log.Obtained(_logger, account.Id, expiresAt);
        return token;
    }

    private FcmAuthException Fail(Entry entry, FcmServiceAccount account, FcmAuthException exception)
    {
        var now = _time.GetUtcNow();
        var until = now + (exception.IsPermanent ? PermanentFailureHold : TransientFailureHold);
        var previous = Interlocked.Exchange(ref entry.LastFailure, new Failure(exception, until));

        // Concurrent sends that shared the failed request: one log line is enough.
        var repeated = previous is not null && now < previous.Until;
        if (!repeated && exception.IsPermanent)
        {
            Log.Refused(_logger, account.Id, exception.StatusCode, exception.Error, exception.InnerException?.Message);
        }
        else if (!repeated)
        {
            Log.Unavailable(_logger, account.Id, exception.Error, exception.InnerException?.Message);
        }

        return exception;
    }

    private sealed class Entry(ServiceAccountCredential credential, FcmAuthException? broken)
    {
        public readonly Lock Gate = new();
        public readonly ServiceAccountCredential Credential = credential;
        public readonly FcmAuthException? Broken = broken;
        public FcmAccessToken? Current;
        public Failure? LastFailure;
    }

    private sealed record Failure(FcmAuthException Exception, DateTimeOffset Until);

    private static partial class Log
    {
        [LoggerMessage(EventId = 3220, Level = LogLevel.Information, Message = "Obtained an FCM access token for {Account}, valid until {ExpiresAt}")]
        public static partial void Obtained(ILogger logger, string account, DateTimeOffset? expiresAt);

        [LoggerMessage(EventId = 3221, Level = LogLevel.Information, Message = "FCM rejected the access token of {Account} (401): dropped it; requesting a new one")]
        public static partial void Dropped(ILogger logger, string account);

        [LoggerMessage(EventId = 3222, Level = LogLevel.Warning, Message = "The token endpoint refused service account {Account}: {Status} {Error} ({Detail}); its sends are credential faults for now")]
        public static partial void Refused(ILogger logger, string account, int? status, string? error, string? detail);

        [LoggerMessage(EventId = 3223, Level = LogLevel.Warning, Message = "The token endpoint of service account {Account} is unavailable ({Reason}: {Detail}); sends are retried")]
        public static partial void Unavailable(ILogger logger, string account, string? reason, string? detail);
    }
}
