using System.Globalization;
using System.Net;
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

namespace Herald.Providers.Wns;

/// <summary>
/// Sends notifications to WNS channel URIs over HTTP/1.1 with an OAuth access token. Channel URIs are checked
/// against <see cref="WnsChannelPolicy"/> before anything is sent; redirects are never followed. Every WNS
/// answer and transport fault becomes a <see cref="PushResult"/> following <see cref="WnsReasons"/> (only the
/// caller's own cancellation throws). Channel URIs are bearer-like secrets: logs show them only as
/// <see cref="RedactedToken"/> fingerprints. A credential fault (the token endpoint refuses the Package SID and
/// secret, WNS answers 401 after a renewal or 403) opens that credential's circuit only: its sends go back to
/// retry without a round trip until a probe succeeds, while other credentials keep sending.
/// </summary>
public sealed partial class WnsProvider : IPushProvider, IDisposable
{
    // Outage and misconfiguration logs: one warning per this interval and kind, the rest at debug level.
    private static readonly TimeSpan WarningInterval = TimeSpan.FromSeconds(10);

    private readonly IdleAwareInvoker _invoker;
    private readonly IWnsCredentialSource _credentials;
    private readonly IWnsTokenCache _tokens;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly TimeSpan _requestTimeout;
    private readonly IDisposable? _owned;
    private readonly CredentialHealth? _health;
    private long _lastCredentialWarning;
    private long _lastNoCredentialWarning;
    private long _lastChannelWarning;
    private long _lastTransportWarning;
    private volatile bool _disposed;

    /// <summary>Creates the provider (the constructor dependency injection uses).</summary>
    public WnsProvider(
        IOptions<WnsOptions> options,
        IWnsCredentialSource credentials,
        IWnsTokenCache tokenCache,
        TimeProvider time,
        ILogger<WnsProvider> logger,
        CredentialHealth? health = null,
        ILiveConnectionSettings? liveSettings = null)
        : this(options, credentials, tokenCache, time, logger, owned: null, health, liveSettings)
    {
    }

    private WnsProvider(
        IOptions<WnsOptions> options,
        IWnsCredentialSource credentials,
        IWnsTokenCache tokenCache,
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
        var errors = WnsOptions.Validate(o);
        if (errors.Count > 0)
        {
            throw new OptionsValidationException(WnsOptions.SectionName, typeof(WnsOptions), errors);
        }

        _credentials = credentials;
        _tokens = tokenCache;
        _time = time;
        _logger = logger;
        _requestTimeout = o.RequestTimeout;
        ChannelPolicy = WnsChannelPolicy.FromOptions(o);
        TokenCache = tokenCache;
        _invoker = new IdleAwareInvoker(idle => WnsHttp.CreateInvoker(o, idle), o.IdleTimeout, liveSettings, time);
        _owned = owned;
        _health = health;
        if (credentials is Credentials.TenantWnsCredentialSource tenants)
        {
            // A replaced or deleted credential's fault is forgotten; its successor starts with a closed circuit.
            tenants.Replaced += old => _health?.Forget(Platform.Wns, old.Owner);
        }
    }

    /// <summary>
    /// Creates a provider with the single credential of <paramref name="options"/>, its own token client and an
    /// in-process token cache, all owned by the provider (for the demo, tools and tests; the server uses
    /// dependency injection).
    /// </summary>
    public static WnsProvider Create(WnsOptions options, TimeProvider? time = null, ILoggerFactory? loggerFactory = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        time ??= TimeProvider.System;
        loggerFactory ??= NullLoggerFactory.Instance;
        var wrapped = Options.Create(options);
        var client = new WnsTokenClient(wrapped, time, loggerFactory.CreateLogger<WnsTokenClient>());
        try
        {
            var cache = new WnsTokenCache(client, time, wrapped, loggerFactory.CreateLogger<WnsTokenCache>());
            return new WnsProvider(wrapped, new OptionsWnsCredentialSource(wrapped, time), cache, time, loggerFactory.CreateLogger<WnsProvider>(), owned: client);
        }
        catch
        {
            client.Dispose();
            throw;
        }
    }

    /// <inheritdoc />
    public Platform Platform => Platform.Wns;

    /// <summary>The token cache in use.</summary>
    public IWnsTokenCache TokenCache { get; }

    /// <summary>The channel URI policy in use (registration endpoints can check URIs with it up front).</summary>
    public WnsChannelPolicy ChannelPolicy { get; }

    /// <inheritdoc />
    public async ValueTask<PushResult> SendAsync(ClaimedNotification notification, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(notification);
        cancellationToken.ThrowIfCancellationRequested();

        var content = notification.Content;
        if (content.Kind == PushKind.Mdm)
        {
            return new PushResult(PushOutcome.Failed, 0, WnsReasons.MdmNotSupportedOnWns);
        }

        // The channel URI is device input: check it before anything else, and send only to the URI checked.
        var verdict = ChannelPolicy.Check(notification.Token, out var channel);
        if (verdict != WnsChannelVerdict.Allowed || channel is null)
        {
            LogChannelRefused(notification, verdict);
            return new PushResult(PushOutcome.Failed, 0, verdict == WnsChannelVerdict.Malformed ? WnsReasons.ChannelUriInvalid : WnsReasons.ChannelHostNotAllowed);
        }

        var credential = _credentials.Find(notification.TenantId, notification.Topic);
        if (credential is null)
        {
            if (ShouldWarn(ref _lastNoCredentialWarning))
            {
                Log.NoCredential(_logger, notification.TenantId, notification.Topic);
            }

            return new PushResult(PushOutcome.CredentialFault, 0, WnsReasons.NoCredential);
        }

        var message = WnsPayload.Build(content);
        if (message.Body.Length > WnsPayload.MaxBytes)
        {
            Log.PayloadTooLarge(_logger, notification.Id, message.Body.Length, WnsPayload.MaxBytes);
            return new PushResult(PushOutcome.Failed, 413, WnsReasons.PayloadTooLarge);
        }

        if (!credential.Circuit.TryPass())
        {
            // This credential was refused and its pause is not over: back to retry without a round trip.
            var fault = credential.Circuit.Fault;
            var untilProbe = credential.Circuit.UntilProbe;
            return new PushResult(PushOutcome.CredentialFault, fault?.Status ?? 0, fault?.Reason ?? WnsReasons.CredentialPaused, untilProbe > TimeSpan.Zero ? untilProbe : null);
        }

        var answer = await SendWithTokenAsync(credential, channel, notification, message, cancellationToken).ConfigureAwait(false);
        Settle(credential, notification, answer.Result);
        LogNotable(notification, credential, channel, answer);
        return answer.Result;
    }

    private async ValueTask<Answer> SendWithTokenAsync(WnsCredential credential, Uri channel, ClaimedNotification notification, WnsMessage message, CancellationToken cancellationToken)
    {
        WnsAccessToken token;
        try
        {
            token = await _tokens.GetAsync(credential, cancellationToken).ConfigureAwait(false);
        }
        catch (WnsTokenException ex)
        {
            return new Answer(AuthFailed(credential, ex));
        }

        var answer = await SendOnceAsync(channel, notification, message, token, cancellationToken).ConfigureAwait(false);
        if (answer.Result.StatusCode == 401)
        {
            // The token expired early or was revoked: drop it, get a new one, resend once.
            WnsAccessToken renewed;
            try
            {
                renewed = await _tokens.RenewAsync(credential, token, cancellationToken).ConfigureAwait(false);
            }
            catch (WnsTokenException ex)
            {
                return new Answer(AuthFailed(credential, ex));
            }

            if (!ReferenceEquals(renewed, token))
            {
                Log.ResendWithNewToken(_logger, notification.Id, credential.Name);
                answer = await SendOnceAsync(channel, notification, message, renewed, cancellationToken).ConfigureAwait(false);
            }
        }

        return answer;
    }

    /// <summary>Opens or closes the credential's circuit by what the token endpoint and WNS answered.</summary>
    private void Settle(WnsCredential credential, ClaimedNotification notification, PushResult result)
    {
        switch (result.Outcome)
        {
            case PushOutcome.CredentialFault:
                credential.Circuit.Trip(result.StatusCode, result.Reason);
                _health?.ReportCredentialFault(Platform.Wns, credential.Owner, credential.Name, _time.GetUtcNow(), result.StatusCode, result.Reason);
                break;
            case PushOutcome.Retry:
                // Transport, timeout, token endpoint or WNS unavailable, throttling: says nothing about the credential.
                credential.Circuit.ProbeInconclusive();
                break;
            default:
                // WNS judged the notification or the channel, so it accepted the credential.
                if (credential.Circuit.IsOpen)
                {
                    Log.CredentialRecovered(_logger, credential.Name, notification.TenantId);
                }

                credential.Circuit.Reset();
                _health?.ClearCredentialFault(Platform.Wns, credential.Owner, credential.Name);
                break;
        }
    }

    private async ValueTask<Answer> SendOnceAsync(
        Uri channel,
        ClaimedNotification notification,
        WnsMessage message,
        WnsAccessToken token,
        CancellationToken cancellationToken)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, channel)
        {
            Version = HttpVersion.Version11,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
            Content = new GatedByteArrayContent(message.Body), // sets Content-Length (WNS does not accept chunked bodies); see HeaderWriteGate
        };
        request.Content.Headers.TryAddWithoutValidation("Content-Type", message.ContentType);

        var headers = request.Headers;
        headers.ExpectContinue = false; // WNS asks clients not to wait for 100-continue
        headers.TryAddWithoutValidation("Authorization", token.Authorization);
        headers.TryAddWithoutValidation("X-WNS-Type", message.Type);
        headers.TryAddWithoutValidation("X-WNS-RequestForStatus", "true");
        if (notification.ExpiresAt is { } expiresAt)
        {
            // Relative to when WNS receives it; at least a second (the dispatcher expires what is already due).
            var seconds = Math.Max(1, (long)Math.Ceiling((expiresAt - _time.GetUtcNow()).TotalSeconds));
            headers.TryAddWithoutValidation("X-WNS-TTL", seconds.ToString(CultureInfo.InvariantCulture));
        }

        if (message.Type == WnsPayload.TypeToast && !string.IsNullOrEmpty(notification.CollapseId))
        {
            // Only toasts are replaced by tag; a badge has no history and a raw notification no tag.
            headers.TryAddWithoutValidation("X-WNS-Tag", WnsPayload.Tag(notification.CollapseId));
        }

        using var timeout = new LinkedTimeout(_requestTimeout, _time, cancellationToken);
        try
        {
            using var response = await _invoker.SendAsync(request, timeout.Token).ConfigureAwait(false);
            var status = (int)response.StatusCode;
            var notificationStatus = Header(response, "X-WNS-Status") ?? Header(response, "X-WNS-NotificationStatus");
            var result = WnsReasons.Map(status, notificationStatus, RetryAfter(response));
            return new Answer(
                result,
                notificationStatus,
                Header(response, "X-WNS-Error-Description"),
                Header(response, "X-WNS-Msg-ID"),
                Header(response, "X-WNS-Debug-Trace"),
                status is >= 300 and < 400 ? response.Headers.Location : null);
        }
        catch (OperationCanceledException ex) when (cancellationToken.IsCancellationRequested)
        {
            throw new OperationCanceledException(ex.Message, ex, cancellationToken);
        }
        catch (OperationCanceledException ex)
        {
            LogTransport(notification.Id, channel, WnsReasons.Timeout, ex);
            return new Answer(new PushResult(PushOutcome.Retry, 0, WnsReasons.Timeout));
        }
        catch (Exception ex) when (ex is HttpRequestException or IOException or ObjectDisposedException)
        {
            // Connection refused or reset, TLS failure, or shutting down.
            LogTransport(notification.Id, channel, WnsReasons.Transport, ex);
            return new Answer(new PushResult(PushOutcome.Retry, 0, WnsReasons.Transport));
        }
    }

    private PushResult AuthFailed(WnsCredential credential, WnsTokenException ex)
    {
        if (!ex.IsRejection)
        {
            // The token endpoint is unreachable, timed out or failed (5xx): an outage, not the credential's fault.
            return new PushResult(PushOutcome.Retry, ex.StatusCode, WnsReasons.AuthUnavailable);
        }

        if (ShouldWarn(ref _lastCredentialWarning))
        {
            Log.AuthFailed(_logger, credential.Name, ex.StatusCode, ex.Error);
        }

        return new PushResult(PushOutcome.CredentialFault, ex.StatusCode, WnsReasons.AuthFailed);
    }

    private TimeSpan? RetryAfter(HttpResponseMessage response)
    {
        TimeSpan? wait = null;
        if (response.Headers.RetryAfter is { } header)
        {
            if (header.Delta is { } delta)
            {
                wait = delta;
            }
            else if (header.Date is { } date)
            {
                wait = date - _time.GetUtcNow();
            }
        }

        // WNS's own throttling hint, in seconds.
        if (Header(response, "X-WNS-CONTINUE-AFTER") is { } continueAfter
            && long.TryParse(continueAfter, NumberStyles.None, CultureInfo.InvariantCulture, out var seconds)
            && seconds <= (long)TimeSpan.FromDays(1).TotalSeconds)
        {
            var hint = TimeSpan.FromSeconds(seconds);
            wait = wait is { } w && w > hint ? w : hint;
        }

        return wait > TimeSpan.Zero ? wait : null;
    }

    private static string? Header(HttpResponseMessage response, string name)
    {
        if (!response.Headers.TryGetValues(name, out var values))
        {
            return null;
        }

        foreach (var value in values)
        {
            return value.Trim();
        }

        return null;
    }

    private void LogNotable(ClaimedNotification notification, WnsCredential credential, Uri channel, Answer answer)
    {
        var result = answer.Result;
        switch (result.Outcome)
        {
            case PushOutcome.Sent when result.Reason == WnsReasons.Dropped:
                Log.Dropped(_logger, notification.Id, new RedactedToken(notification.Token), answer.MessageId);
                break;
            case PushOutcome.CredentialFault:
                if (ShouldWarn(ref _lastCredentialWarning))
                {
                    Log.CredentialRejected(_logger, credential.Name, result.StatusCode, result.Reason, Clean(answer.ErrorDescription), Clean(answer.MessageId), Clean(answer.DebugTrace));
                }

                break;
            case PushOutcome.Failed when !_logger.IsEnabled(LogLevel.Warning):
                break;
            case PushOutcome.Failed when result.Reason == WnsReasons.Redirected:
                Log.RedirectRefused(_logger, notification.Id, channel.Authority, result.StatusCode, Clean(answer.Location?.IsAbsoluteUri == true ? answer.Location.Authority : null));
                break;
            case PushOutcome.Failed:
                Log.Rejected(_logger, notification.Id, result.StatusCode, result.Reason, Clean(answer.ErrorDescription), Clean(answer.MessageId), Clean(answer.DebugTrace));
                break;
        }
    }

    private void LogChannelRefused(ClaimedNotification notification, WnsChannelVerdict verdict)
    {
        if (!ShouldWarn(ref _lastChannelWarning))
        {
            Log.ChannelRefusedRepeated(_logger, notification.Id, new RedactedToken(notification.Token), verdict);
            return;
        }

        // The host (never the whole URI: its query is the channel's secret) tells an operator whether WNS
        // started using a new domain or someone registered a hostile address.
        string? host = null;
        if (notification.Token is { Length: <= WnsChannelPolicy.MaxChannelUriLength } token
            && Uri.TryCreate(token, UriKind.Absolute, out var uri))
        {
            host = uri.IsDefaultPort ? uri.IdnHost : uri.IdnHost + ":" + uri.Port.ToString(CultureInfo.InvariantCulture);
        }

        Log.ChannelRefused(_logger, notification.Id, new RedactedToken(notification.Token), verdict, Clean(host));
    }

    private void LogTransport(long notificationId, Uri channel, string reason, Exception exception)
    {
        if (ShouldWarn(ref _lastTransportWarning))
        {
            Log.TransportFault(_logger, channel.Authority, reason, exception);
        }
        else
        {
            Log.TransportFaultRepeated(_logger, notificationId, channel.Authority, reason, exception.Message);
        }
    }

    private bool ShouldWarn(ref long lastTimestamp) => WarningThrottle.ShouldWarn(_time, ref lastTimestamp, WarningInterval);

    /// <summary>A provider-supplied header for a log line: printable ASCII, at most 200 characters.</summary>
    private static string Clean(string? value)
    {
        if (string.IsNullOrEmpty(value))
        {
            return "-";
        }

        var span = value.AsSpan(0, Math.Min(value.Length, 200));
        return string.Create(span.Length, value, static (destination, source) =>
        {
            for (var i = 0; i < destination.Length; i++)
            {
                var c = source[i];
                destination[i] = c is >= ' ' and <= '~' ? c : '?';
            }
        });
    }

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

    private readonly record struct Answer(
        PushResult Result,
        string? NotificationStatus = null,
        string? ErrorDescription = null,
        string? MessageId = null,
        string? DebugTrace = null,
        Uri? Location = null);

    private static partial class Log
    {
        [LoggerMessage(EventId = 3301, Level = LogLevel.Warning, Message = "Notification {Id}: channel {Token} refused ({Verdict}, host {Host}); nothing was sent. Add the host to Herald:Wns:AllowedChannelHosts if it is a genuine WNS host")]
        public static partial void ChannelRefused(ILogger logger, long id, RedactedToken token, WnsChannelVerdict verdict, string host);

        [LoggerMessage(EventId = 3302, Level = LogLevel.Debug, Message = "Notification {Id}: channel {Token} refused ({Verdict}); nothing was sent")]
        public static partial void ChannelRefusedRepeated(ILogger logger, long id, RedactedToken token, WnsChannelVerdict verdict);

        [LoggerMessage(EventId = 3303, Level = LogLevel.Warning, Message = "WNS rejected credential {Credential}: {Status} {Reason} ({Description}; msg {MessageId}, trace {DebugTrace}); its sends are retried later")]
        public static partial void CredentialRejected(ILogger logger, string credential, int status, string? reason, string description, string messageId, string debugTrace);

        [LoggerMessage(EventId = 3304, Level = LogLevel.Warning, Message = "WNS host {Host} unreachable ({Reason}); sends are retried")]
        public static partial void TransportFault(ILogger logger, string host, string reason, Exception exception);

        [LoggerMessage(EventId = 3305, Level = LogLevel.Debug, Message = "Notification {Id}: WNS host {Host} transport fault ({Reason}): {Message}")]
        public static partial void TransportFaultRepeated(ILogger logger, long id, string host, string reason, string message);

        [LoggerMessage(EventId = 3306, Level = LogLevel.Information, Message = "Notification {Id}: WNS answered 401; resending once with a new access token of {Credential}")]
        public static partial void ResendWithNewToken(ILogger logger, long id, string credential);

        [LoggerMessage(EventId = 3307, Level = LogLevel.Warning, Message = "Notification {Id}: payload of {Size} bytes exceeds the WNS limit of {Limit}; not sent")]
        public static partial void PayloadTooLarge(ILogger logger, long id, int size, int limit);

        [LoggerMessage(EventId = 3308, Level = LogLevel.Warning, Message = "No WNS credential for tenant {TenantId} and topic {Topic}")]
        public static partial void NoCredential(ILogger logger, string tenantId, string topic);

        [LoggerMessage(EventId = 3309, Level = LogLevel.Warning, Message = "Could not get a WNS access token for {Credential} ({Status} {Error}); sends are retried later")]
        public static partial void AuthFailed(ILogger logger, string credential, int status, string error);

        [LoggerMessage(EventId = 3310, Level = LogLevel.Warning, Message = "Notification {Id}: WNS host {Host} answered {Status} redirecting to {Target}; redirects are never followed, not sent")]
        public static partial void RedirectRefused(ILogger logger, long id, string host, int status, string target);

        [LoggerMessage(EventId = 3311, Level = LogLevel.Warning, Message = "Notification {Id}: WNS rejected it: {Status} {Reason} ({Description}; msg {MessageId}, trace {DebugTrace})")]
        public static partial void Rejected(ILogger logger, long id, int status, string? reason, string description, string messageId, string debugTrace);

        [LoggerMessage(EventId = 3312, Level = LogLevel.Debug, Message = "Notification {Id}: WNS accepted it for channel {Token} but dropped it (device offline or notifications refused; msg {MessageId})")]
        public static partial void Dropped(ILogger logger, long id, RedactedToken token, string? messageId);

        [LoggerMessage(EventId = 3313, Level = LogLevel.Information, Message = "WNS accepts credential {Credential} again (tenant {TenantId}); its circuit is closed")]
        public static partial void CredentialRecovered(ILogger logger, string credential, string tenantId);
    }
}
