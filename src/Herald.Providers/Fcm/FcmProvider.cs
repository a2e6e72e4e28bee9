using System.Buffers;
using System.Collections.Concurrent;
using System.Net.Http.Headers;
using Herald.Core.Notifications;
using Herald.Core.Pipeline;
using Herald.Core.Ports;
using Herald.Core.Registrations;
using Herald.Core.Security;
using Herald.Core.Settings;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Herald.Providers.Http;

namespace Herald.Providers.Fcm;

/// <summary>
/// Sends notifications through the FCM HTTP v1 API (<c>POST {BaseUrl}/v1/projects/{project}/messages:send</c>)
/// over one long-lived HTTP/2 connection pool, authenticated with a service account's OAuth2 access token.
/// Every FCM answer and transport fault becomes a <see cref="PushResult"/> following PROTOCOLS.md (only the
/// caller's own cancellation throws). The project is the notification's <see cref="ClaimedNotification.Topic"/>,
/// or the service account's <c>project_id</c> when that is empty. A credential fault (the token endpoint refuses
/// the account, FCM answers 401/403 about it) opens that account's circuit only: its sends go back to retry
/// without a round trip until a probe succeeds, while other accounts keep sending.
/// </summary>
public sealed partial class FcmProvider : IPushProvider, IDisposable
{
    private const int MaxCachedProjects = 1024;
    private const int MaxErrorBody = 8192;
    private const int MaxLoggedMessage = 300;

    // Outage logs: one warning per this interval, the rest at debug level.
    private static readonly TimeSpan WarningInterval = TimeSpan.FromSeconds(10);

    private static readonly MediaTypeHeaderValue JsonContentType = MediaTypeHeaderValue.Parse("application/json; charset=utf-8");

    private readonly IdleAwareInvoker _invoker;
    private readonly string _projectsPrefix;
    private readonly string _host;
    private readonly IFcmCredentialSource _credentials;
    private readonly IFcmTokenCache _tokens;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly TimeSpan _requestTimeout;
    private readonly IDisposable? _owned;
    private readonly CredentialHealth? _health;
    private readonly ConcurrentDictionary<string, Uri> _sendUris = new(StringComparer.Ordinal);
    private long _lastTransportWarning;
    private long _lastCredentialWarning;
    private long _lastNoCredentialWarning;
    private volatile bool _disposed;

    /// <summary>Creates the provider (the constructor dependency injection uses).</summary>
    public FcmProvider(
        IOptions<FcmOptions> options,
        IFcmCredentialSource credentials,
        IFcmTokenCache tokenCache,
        TimeProvider time,
        ILogger<FcmProvider> logger,
        CredentialHealth? health = null,
        ILiveConnectionSettings? liveSettings = null)
        : this(options, credentials, tokenCache, time, logger, owned: null, health, liveSettings)
    {
    }

    private FcmProvider(
        IOptions<FcmOptions> options,
        IFcmCredentialSource credentials,
        IFcmTokenCache tokenCache,
        TimeProvider time,
        ILogger logger,
        IDisposable? owned,
        CredentialHealth? health = null,
        ILiveConnectionSettings? liveSettings = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(credentials);
        ArgumentNullException.ThrowIfNull(tokenCache);
        ArgumentNullException.ThrowIfNull(time);
        ArgumentNullException.ThrowIfNull(logger);
        var o = options.Value;
        var errors = FcmOptions.Validate(o);
        if (errors.Count > 0)
        {
            throw new OptionsValidationException(FcmOptions.SectionName, typeof(FcmOptions), errors);
        }

        _credentials = credentials;
        _tokens = tokenCache;
        _time = time;
        _logger = logger;
        _requestTimeout = o.RequestTimeout;
        var baseUri = new Uri(o.BaseUrl, UriKind.Absolute);
        _host = baseUri.Authority;
        _projectsPrefix = baseUri.GetLeftPart(UriPartial.Path).TrimEnd('/') + "/v1/projects/";
        _invoker = new IdleAwareInvoker(
            idle =>
            {
                using var trusted = FcmHttp.LoadTrustedCertificate(o);
                return new HttpMessageInvoker(FcmHttp.CreateHandler(o, trusted, decompress: false, idle), disposeHandler: true);
            },
            o.IdleTimeout,
            liveSettings,
            time);
        _owned = owned;
        _health = health;
        TokenCache = tokenCache;
        if (credentials is Credentials.TenantFcmCredentialSource tenants)
        {
            // A replaced or deleted account's fault is forgotten; its successor starts with a closed circuit.
            tenants.Replaced += old => _health?.Forget(Platform.Fcm, old.Owner);
        }
    }

    /// <summary>
    /// Creates a provider with the single service account of <paramref name="options"/> and an in-process token
    /// cache, both owned by the provider (for the demo, tools and tests; the server uses dependency injection).
    /// </summary>
    public static FcmProvider Create(FcmOptions options, TimeProvider? time = null, ILoggerFactory? loggerFactory = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        time ??= TimeProvider.System;
        loggerFactory ??= NullLoggerFactory.Instance;
        var wrapped = Options.Create(options);
        var source = new OptionsFcmCredentialSource(wrapped, time);
        var cache = new FcmTokenCache(time, wrapped, loggerFactory.CreateLogger<FcmTokenCache>());
        try
        {
            return new FcmProvider(wrapped, source, cache, time, loggerFactory.CreateLogger<FcmProvider>(), owned: cache);
        }
        catch
        {
            cache.Dispose();
            throw;
        }
    }

    /// <inheritdoc />
    public Platform Platform => Platform.Fcm;

    /// <summary>The token cache in use.</summary>
    public IFcmTokenCache TokenCache { get; }

    /// <inheritdoc />
    public async ValueTask<PushResult> SendAsync(ClaimedNotification notification, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(notification);
        cancellationToken.ThrowIfCancellationRequested();

        if (notification.Content.Kind == PushKind.Mdm)
        {
            // MDM wake-ups are Apple's; nothing on Android receives them. Permanent: retrying cannot help.
            return new PushResult(PushOutcome.Failed, 0, FcmReasons.MdmNotSupportedOnFcm);
        }

        var account = _credentials.Find(notification.TenantId, notification.Topic ?? string.Empty);
        if (account is null)
        {
            if (ShouldWarn(ref _lastNoCredentialWarning))
            {
                Log.NoCredential(_logger, notification.TenantId, notification.Topic);
            }

            return new PushResult(PushOutcome.CredentialFault, 0, FcmReasons.NoCredential);
        }

        var project = string.IsNullOrEmpty(notification.Topic) ? account.ProjectId : notification.Topic;
        if (string.IsNullOrEmpty(project))
        {
            return new PushResult(PushOutcome.Failed, 0, FcmReasons.NoProject);
        }

        if (string.IsNullOrEmpty(notification.Token))
        {
            return new PushResult(PushOutcome.Failed, 0, FcmReasons.MissingToken);
        }

        var body = FcmMessage.Build(notification, _time.GetUtcNow(), out var size);
        if (body is null)
        {
            Log.MessageTooBig(_logger, notification.Id, size, FcmMessage.MaxBytes);
            return new PushResult(PushOutcome.Failed, 0, FcmReasons.MessageTooBig);
        }

        if (!account.Circuit.TryPass())
        {
            // This account was refused and its pause is not over: back to retry without a round trip.
            var fault = account.Circuit.Fault;
            var untilProbe = account.Circuit.UntilProbe;
            return new PushResult(PushOutcome.CredentialFault, fault?.Status ?? 0, fault?.Reason ?? FcmReasons.CredentialPaused, untilProbe > TimeSpan.Zero ? untilProbe : null);
        }

        var result = await SendWithTokenAsync(account, notification, project, body, cancellationToken).ConfigureAwait(false);
        Settle(account, notification, result);
        LogNotable(notification, project, account, result);
        return result;
    }

    private async ValueTask<PushResult> SendWithTokenAsync(FcmServiceAccount account, ClaimedNotification notification, string project, byte[] body, CancellationToken cancellationToken)
    {
        var uri = SendUri(project);
        FcmAccessToken token;
        try
        {
            token = await _tokens.GetAsync(account, cancellationToken).ConfigureAwait(false);
        }
        catch (FcmAuthException ex)
        {
            return AuthFailure(account, ex);
        }

        var result = await SendOnceAsync(uri, notification, body, token, cancellationToken).ConfigureAwait(false);
        if (result.StatusCode == 401 && result.Reason is not (FcmReasons.ThirdPartyAuthError or FcmReasons.ApnsAuthError))
        {
            // Our access token was refused (revoked, or expired early): drop it, get a new one, resend once now.
            FcmAccessToken renewed;
            try
            {
                renewed = await _tokens.RenewRejectedAsync(account, token, cancellationToken).ConfigureAwait(false);
            }
            catch (FcmAuthException ex)
            {
                return AuthFailure(account, ex);
            }

            Log.ResendWithNewToken(_logger, notification.Id, account.Id);
            result = await SendOnceAsync(uri, notification, body, renewed, cancellationToken).ConfigureAwait(false);
        }

        return result;
    }

    /// <summary>Opens or closes the account's circuit by what the token endpoint and FCM answered.</summary>
    private void Settle(FcmServiceAccount account, ClaimedNotification notification, PushResult result)
    {
        switch (result.Outcome)
        {
            case PushOutcome.CredentialFault:
                account.Circuit.Trip(result.StatusCode, result.Reason);
                _health?.ReportCredentialFault(Platform.Fcm, account.Owner, account.Name, _time.GetUtcNow(), result.StatusCode, result.Reason);
                break;
            case PushOutcome.Retry:
                // Transport, timeout, token endpoint or FCM unavailable, quota: says nothing about the account.
                account.Circuit.ProbeInconclusive();
                break;
            default:
                // FCM judged the message itself (sent, invalid, token dead), so it accepted the account.
                if (account.Circuit.IsOpen)
                {
                    Log.CredentialRecovered(_logger, account.Id, notification.TenantId);
                }

                account.Circuit.Reset();
                _health?.ClearCredentialFault(Platform.Fcm, account.Owner, account.Name);
                break;
        }
    }

    /// <summary>Maps an FCM answer to Herald's outcome: the table of PROTOCOLS.md. The FcmError code decides first, then the status.</summary>
    internal static PushResult Map(int status, string? statusName, string? errorCode, TimeSpan? retryAfter)
    {
        if (status is >= 200 and <= 299)
        {
            return PushResult.Ok(status);
        }

        var outcome = errorCode switch
        {
            FcmReasons.Unregistered or FcmReasons.SenderIdMismatch => PushOutcome.TokenInvalid,
            FcmReasons.InvalidArgument => PushOutcome.Failed,
            FcmReasons.QuotaExceeded or FcmReasons.Unavailable or FcmReasons.Internal => PushOutcome.Retry,
            FcmReasons.ThirdPartyAuthError or FcmReasons.ApnsAuthError => PushOutcome.CredentialFault,
            _ => status switch
            {
                // 401 UNAUTHENTICATED after one renewal, 403 PERMISSION_DENIED (the account may not send for the project).
                401 or 403 => PushOutcome.CredentialFault,
                408 or 429 => PushOutcome.Retry,
                >= 500 and <= 599 => PushOutcome.Retry,
                _ => PushOutcome.Failed, // 400, 404 without UNREGISTERED, 413, and anything unexpected
            },
        };

        var reason = errorCode is null or FcmReasons.UnspecifiedError ? statusName ?? errorCode : errorCode;
        return new PushResult(outcome, status, reason, outcome == PushOutcome.Retry ? retryAfter : null);
    }

    private PushResult AuthFailure(FcmServiceAccount account, FcmAuthException exception)
    {
        if (!exception.IsPermanent)
        {
            return new PushResult(PushOutcome.Retry, 0, FcmReasons.AuthUnavailable);
        }

        if (ShouldWarn(ref _lastCredentialWarning))
        {
            Log.AuthFailed(_logger, account.Id, exception.StatusCode, exception.Error);
        }

        // Status 0: this is the token endpoint's refusal (logged with its status), not an FCM answer.
        return new PushResult(PushOutcome.CredentialFault, 0, FcmReasons.AuthFailed);
    }

    private Uri SendUri(string project)
    {
        if (_sendUris.TryGetValue(project, out var uri))
        {
            return uri;
        }

        // Escaped: the project id comes from a registration and must stay one path segment.
        uri = new Uri(_projectsPrefix + Uri.EscapeDataString(project) + "/messages:send", UriKind.Absolute);
        if (_sendUris.Count < MaxCachedProjects)
        {
            _sendUris.TryAdd(project, uri);
        }

        return uri;
    }

    private async ValueTask<PushResult> SendOnceAsync(Uri uri, ClaimedNotification notification, byte[] body, FcmAccessToken token, CancellationToken cancellationToken)
    {
        var content = new GatedByteArrayContent(body); // see HeaderWriteGate
        content.Headers.ContentType = JsonContentType;
        using var request = new HttpRequestMessage(HttpMethod.Post, uri) { Content = content };
        FcmHttp.UseHttp2(request);
        request.Headers.TryAddWithoutValidation("authorization", token.Authorization);

        using var timeout = new LinkedTimeout(_requestTimeout, _time, cancellationToken);
        try
        {
            using var response = await _invoker.SendAsync(request, timeout.Token).ConfigureAwait(false);
            var status = (int)response.StatusCode;
            var buffer = ArrayPool<byte>.Shared.Rent(MaxErrorBody);
            try
            {
                // Read the answer even on success ({"name":...}): leaves the stream cleanly closed, not reset.
                var length = await ReadBodyAsync(response, buffer, timeout.Token).ConfigureAwait(false);
                if (status is >= 200 and <= 299)
                {
                    return PushResult.Ok(status);
                }

                FcmReasons.ParseError(buffer.AsSpan(0, length), out var statusName, out var errorCode, out var message);
                var result = Map(status, statusName, errorCode, RetryAfter(response.Headers.RetryAfter));
                if (result.Outcome == PushOutcome.Failed && message is not null)
                {
                    Log.Rejected(_logger, notification.Id, status, result.Reason, message.Length > MaxLoggedMessage ? message[..MaxLoggedMessage] : message);
                }

                return result;
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(buffer);
            }
        }
        catch (OperationCanceledException ex) when (cancellationToken.IsCancellationRequested)
        {
            throw new OperationCanceledException(ex.Message, ex, cancellationToken);
        }
        catch (OperationCanceledException ex)
        {
            LogTransport(notification.Id, FcmReasons.Timeout, ex);
            return new PushResult(PushOutcome.Retry, 0, FcmReasons.Timeout);
        }
        catch (Exception ex) when (ex is HttpRequestException or IOException or ObjectDisposedException)
        {
            // Connection refused or reset, GOAWAY, RST_STREAM, TLS failure, or shutting down.
            LogTransport(notification.Id, FcmReasons.Transport, ex);
            return new PushResult(PushOutcome.Retry, 0, FcmReasons.Transport);
        }
    }

    private static async ValueTask<int> ReadBodyAsync(HttpResponseMessage response, byte[] buffer, CancellationToken cancellationToken)
    {
        var total = 0;
        try
        {
            var stream = await response.Content.ReadAsStreamAsync(cancellationToken).ConfigureAwait(false);
            await using (stream.ConfigureAwait(false))
            {
                int read;
                while (total < buffer.Length && (read = await stream.ReadAsync(buffer.AsMemory(total), cancellationToken).ConfigureAwait(false)) > 0)
                {
                    total += read;
                }
            }
        }
        catch (Exception ex) when (ex is HttpRequestException or IOException)
        {
            // The status is the answer; the body only refines it.
        }

        return total;
    }

    private TimeSpan? RetryAfter(RetryConditionHeaderValue? header)
    {
        if (header is null)
        {
            return null;
        }

        if (header.Delta is { } delta)
        {
            return delta > TimeSpan.Zero ? delta : null;
        }

        if (header.Date is { } date)
        {
            var wait = date - _time.GetUtcNow();
            return wait > TimeSpan.Zero ? wait : null;
        }

        return null;
    }

    private void LogNotable(ClaimedNotification notification, string project, FcmServiceAccount account, PushResult result)
    {
        switch (result.Outcome)
        {
            case PushOutcome.TokenInvalid when result.Reason == FcmReasons.SenderIdMismatch:
                Log.SenderIdMismatch(_logger, new RedactedToken(notification.Token), project);
                break;
            case PushOutcome.TokenInvalid:
                Log.TokenInvalid(_logger, new RedactedToken(notification.Token), project, result.Reason);
                break;
            case PushOutcome.CredentialFault:
                if (ShouldWarn(ref _lastCredentialWarning))
                {
                    Log.CredentialRejected(_logger, account.Id, project, result.StatusCode, result.Reason);
                }

                break;
        }
    }

    private void LogTransport(long notificationId, string reason, Exception exception)
    {
        if (ShouldWarn(ref _lastTransportWarning))
        {
            Log.TransportFault(_logger, _host, reason, exception);
        }
        else
        {
            Log.TransportFaultRepeated(_logger, notificationId, reason, exception.Message);
        }
    }

    private bool ShouldWarn(ref long lastTimestamp) => WarningThrottle.ShouldWarn(_time, ref lastTimestamp, WarningInterval);

    /// <inheritdoc />
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        _invoker.Dispose();
        _owned?.Dispose();
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 3201, Level = LogLevel.Information, Message = "FCM answered that registration token {Token} is dead ({Reason}) for project {Project}")]
        public static partial void TokenInvalid(ILogger logger, RedactedToken token, string project, string? reason);

        [LoggerMessage(EventId = 3202, Level = LogLevel.Information, Message = "FCM rejected registration token {Token}: it belongs to another sender than project {Project} (SENDER_ID_MISMATCH)")]
        public static partial void SenderIdMismatch(ILogger logger, RedactedToken token, string project);

        [LoggerMessage(EventId = 3203, Level = LogLevel.Warning, Message = "FCM rejected service account {Account} for project {Project}: {Status} {Reason}; its sends are retried later")]
        public static partial void CredentialRejected(ILogger logger, string account, string project, int status, string? reason);

        [LoggerMessage(EventId = 3204, Level = LogLevel.Warning, Message = "FCM endpoint {Host} unreachable ({Reason}); sends are retried")]
        public static partial void TransportFault(ILogger logger, string host, string reason, Exception exception);

        [LoggerMessage(EventId = 3205, Level = LogLevel.Debug, Message = "Notification {Id}: FCM transport fault ({Reason}): {Message}")]
        public static partial void TransportFaultRepeated(ILogger logger, long id, string reason, string message);

        [LoggerMessage(EventId = 3206, Level = LogLevel.Information, Message = "Notification {Id}: FCM answered 401 UNAUTHENTICATED; resending once with a new access token of {Account}")]
        public static partial void ResendWithNewToken(ILogger logger, long id, string account);

        [LoggerMessage(EventId = 3207, Level = LogLevel.Warning, Message = "Notification {Id}: message of {Size} bytes exceeds the FCM limit of {Limit}; not sent")]
        public static partial void MessageTooBig(ILogger logger, long id, int size, int limit);

        [LoggerMessage(EventId = 3208, Level = LogLevel.Warning, Message = "No FCM service account for tenant {TenantId} and project {Project}")]
        public static partial void NoCredential(ILogger logger, string tenantId, string? project);

        [LoggerMessage(EventId = 3209, Level = LogLevel.Warning, Message = "Notification {Id}: FCM rejected the message: {Status} {Reason}: {Message}")]
        public static partial void Rejected(ILogger logger, long id, int status, string? reason, string message);

        [LoggerMessage(EventId = 3210, Level = LogLevel.Warning, Message = "No FCM access token for service account {Account}: the token endpoint refused it ({Status} {Error}); its sends are credential faults")]
        public static partial void AuthFailed(ILogger logger, string account, int? status, string? error);

        [LoggerMessage(EventId = 3211, Level = LogLevel.Information, Message = "FCM accepts service account {Account} again (tenant {TenantId}); its circuit is closed")]
        public static partial void CredentialRecovered(ILogger logger, string account, string tenantId);
    }
}
