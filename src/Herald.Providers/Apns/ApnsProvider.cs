using System.Buffers;
using System.Collections.Concurrent;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Runtime.CompilerServices;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using Herald.Core.Notifications;
using Herald.Core.Pipeline;
using Herald.Core.Ports;
using Herald.Core.Registrations;
using Herald.Core.Security;
using Herald.Core.Settings;
using Herald.Providers.Http;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace Herald.Providers.Apns;

/// <summary>
/// Sends notifications to APNs over HTTP/2 with token (JWT) or certificate (TLS client certificate)
/// authentication. One long-lived connection pool per environment for tokens, one per certificate and
/// environment for certificates; every provider answer and transport fault becomes a <see cref="PushResult"/>
/// following PROTOCOLS.md (only the caller's own cancellation throws). A credential fault opens that
/// credential's circuit only: its sends go back to retry without a round trip until a probe succeeds.
/// </summary>
public sealed partial class ApnsProvider : IPushProvider, IDisposable
{
    /// <summary>Apple's limit for <c>apns-collapse-id</c>, in UTF-8 bytes.</summary>
    public const int MaxCollapseIdBytes = 64;

    private const string PushTypeAlert = "alert";
    private const string PushTypeBackground = "background";
    private const string PushTypeMdm = "mdm";
    private const string PushTypeVoip = "voip";
    private const string VoipTopicSuffix = ".voip";

    /// <summary>Certificates expiring within this time are warned about (logs and readiness).</summary>
    public static readonly TimeSpan ExpiryWarning = TimeSpan.FromDays(30);

    /// <summary>Sends of a refused stream (REFUSED_STREAM, after SocketsHttpHandler's own three) before it is a retry.</summary>
    internal const int MaxRefusedResends = 2;

    // HTTP/2 error code REFUSED_STREAM (RFC 9113 §7).
    private const long RefusedStreamCode = 0x7;

    private const string PriorityImmediate = "10";
    private const string PriorityPowerAware = "5";

    // Outage logs: one warning per this interval and endpoint, the rest at debug level.
    private static readonly TimeSpan WarningInterval = TimeSpan.FromSeconds(10);

    private readonly ApnsEndpoint _production;
    private readonly ApnsEndpoint _sandbox;
    private readonly IApnsCredentialSource _credentials;
    private readonly IApnsTokenCache _tokens;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly TimeSpan _requestTimeout;
    private readonly string? _defaultTopic;
    private readonly IDisposable? _owned;
    private readonly ApnsOptions _options;
    private readonly X509Certificate2? _trusted;
    private readonly CredentialHealth? _health;
    private readonly ILiveConnectionSettings? _live;
    private readonly ConcurrentDictionary<(string Thumbprint, bool Sandbox), ApnsEndpoint> _certificateEndpoints = new();
    private readonly ConditionalWeakTable<ApnsCertificateCredential, object> _expiryChecked = new();
    private long _lastCredentialWarning;
    private long _lastNoCredentialWarning;
    private volatile bool _disposed;

    /// <summary>Creates the provider (the constructor dependency injection uses).</summary>
    public ApnsProvider(
        IOptions<ApnsOptions> options,
        IApnsCredentialSource credentials,
        IApnsTokenCache tokenCache,
        TimeProvider time,
        ILogger<ApnsProvider> logger,
        CredentialHealth? health = null,
        ILiveConnectionSettings? liveSettings = null)
        : this(options, credentials, tokenCache, time, logger, owned: null, health, liveSettings)
    {
    }

    private ApnsProvider(
        IOptions<ApnsOptions> options,
        IApnsCredentialSource credentials,
        IApnsTokenCache tokenCache,
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
        var errors = ApnsOptions.Validate(o);
        if (errors.Count > 0)
        {
            throw new OptionsValidationException(ApnsOptions.SectionName, typeof(ApnsOptions), errors);
        }

        _credentials = credentials;
        _tokens = tokenCache;
        _time = time;
        _logger = logger;
        _requestTimeout = o.RequestTimeout;
        _defaultTopic = string.IsNullOrWhiteSpace(o.Topic) ? null : o.Topic;

        _options = o;
        _health = health;
        _trusted = string.IsNullOrWhiteSpace(o.TrustedCertificateFile) ? null : LoadCertificate(o.TrustedCertificateFile);
        _live = liveSettings;
        _production = new ApnsEndpoint("production", o.ProductionUrl, o, _trusted, live: liveSettings, time: time);
        _sandbox = new ApnsEndpoint("sandbox", o.SandboxUrl, o, _trusted, live: liveSettings, time: time);
        _owned = owned;
        TokenCache = tokenCache;
        if (credentials is OptionsApnsCredentialSource { Certificate: { } configured })
        {
            CheckExpiry(configured);
        }
        else if (credentials is Credentials.TenantApnsCredentialSource tenants)
        {
            if (tenants.Fallback.Certificate is { } fallback)
            {
                CheckExpiry(fallback);
            }

            // A replaced certificate's connections are closed; its successor opens its own.
            tenants.Replaced += old =>
            {
                if (old is ApnsCertificateCredential replaced)
                {
                    ForgetCertificate(replaced.Certificate.Thumbprint);
                    _health?.Forget(Platform.Apns, replaced.Owner);
                }
                else
                {
                    _health?.Forget(Platform.Apns, old.Owner);
                }
            };
        }
    }

    /// <summary>
    /// Creates a provider with the single credential of <paramref name="options"/> and an in-process token
    /// cache, both owned by the provider (for the demo, tools and tests; the server uses dependency injection).
    /// </summary>
    public static ApnsProvider Create(ApnsOptions options, TimeProvider? time = null, ILoggerFactory? loggerFactory = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        time ??= TimeProvider.System;
        loggerFactory ??= NullLoggerFactory.Instance;
        var wrapped = Options.Create(options);
        var source = new OptionsApnsCredentialSource(wrapped);
        try
        {
            var cache = new ApnsTokenCache(time, wrapped, loggerFactory.CreateLogger<ApnsTokenCache>());
            return new ApnsProvider(wrapped, source, cache, time, loggerFactory.CreateLogger<ApnsProvider>(), owned: source);
        }
        catch
        {
            source.Dispose();
            throw;
        }
    }

    /// <inheritdoc />
    public Platform Platform => Platform.Apns;

    /// <summary>The token cache in use.</summary>
    public IApnsTokenCache TokenCache { get; }

    /// <inheritdoc />
    public async ValueTask<PushResult> SendAsync(ClaimedNotification notification, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(notification);
        cancellationToken.ThrowIfCancellationRequested();

        var topic = string.IsNullOrEmpty(notification.Topic) ? _defaultTopic : notification.Topic;
        if (topic is null)
        {
            return new PushResult(PushOutcome.Failed, 0, ApnsReasons.NoTopic);
        }

        var credential = _credentials.Find(notification.TenantId, topic);
        if (credential is null)
        {
            if (ShouldWarn(ref _lastNoCredentialWarning))
            {
                Log.NoCredential(_logger, notification.TenantId, topic);
            }

            return new PushResult(PushOutcome.CredentialFault, 0, ApnsReasons.NoCredential);
        }

        var content = notification.Content;
        if (content.Kind == PushKind.Mdm)
        {
            if (!credential.SupportsMdm)
            {
                return new PushResult(PushOutcome.Failed, 0, ApnsReasons.MdmRequiresCertificate);
            }

            if (string.IsNullOrEmpty(content.PushMagic))
            {
                return new PushResult(PushOutcome.Failed, 0, ApnsReasons.MissingPushMagic);
            }

            if (!topic.StartsWith(ApnsCertificate.MdmTopicPrefix, StringComparison.Ordinal))
            {
                return new PushResult(PushOutcome.Failed, 400, ApnsReasons.BadTopic);
            }
        }

        var tokenCredential = credential as ApnsTokenCredential;
        var certificateCredential = credential as ApnsCertificateCredential;
        if (tokenCredential is null && certificateCredential is null)
        {
            return new PushResult(PushOutcome.CredentialFault, 0, ApnsReasons.UnsupportedCredential);
        }

        if (certificateCredential is not null && CheckCertificate(certificateCredential, notification, topic) is { } refused)
        {
            return refused;
        }

        if (!credential.Circuit.TryPass())
        {
            // This credential was rejected and its pause is not over: back to retry without a round trip.
            var fault = credential.Circuit.Fault;
            var untilProbe = credential.Circuit.UntilProbe;
            return new PushResult(PushOutcome.CredentialFault, fault?.Status ?? 0, fault?.Reason ?? ApnsReasons.CredentialPaused, untilProbe > TimeSpan.Zero ? untilProbe : null);
        }

        // Refuse locally what APNs would refuse, without a round trip (and keep the URL path safe).
        var deviceToken = notification.Token;
        if (string.IsNullOrEmpty(deviceToken))
        {
            return new PushResult(PushOutcome.Failed, 400, ApnsReasons.MissingDeviceToken);
        }

        if (!IsHexToken(deviceToken))
        {
            return new PushResult(PushOutcome.TokenInvalid, 400, ApnsReasons.BadDeviceToken);
        }

        if (notification.CollapseId is { } collapseId && Encoding.UTF8.GetByteCount(collapseId) > MaxCollapseIdBytes)
        {
            return new PushResult(PushOutcome.Failed, 400, ApnsReasons.BadCollapseId);
        }

        var voip = content.Kind is PushKind.Alert or PushKind.Badge && topic.EndsWith(VoipTopicSuffix, StringComparison.Ordinal);
        var limit = voip ? ApnsPayload.MaxVoipBytes : ApnsPayload.MaxBytes;
        var payload = ApnsPayload.Build(content, out var size, limit);
        if (payload is null)
        {
            Log.PayloadTooLarge(_logger, notification.Id, size, limit);
            return new PushResult(PushOutcome.Failed, 413, ApnsReasons.PayloadTooLarge);
        }

        var sandbox = notification.Environment == PushEnvironment.Sandbox;
        if (certificateCredential is not null)
        {
            var certificateEndpoint = CertificateEndpoint(certificateCredential, sandbox);
            var answer = await SendOnceAsync(certificateEndpoint, notification, topic, payload, null, voip, cancellationToken).ConfigureAwait(false);
            Settle(credential, notification, answer);
            LogNotable(notification, topic, certificateEndpoint, credential, answer);
            return answer;
        }

        var endpoint = sandbox ? _sandbox : _production;
        var key = tokenCredential!.SigningKey;
        var token = await _tokens.GetAsync(key, cancellationToken).ConfigureAwait(false);
        var result = await SendOnceAsync(endpoint, notification, topic, payload, token, voip, cancellationToken).ConfigureAwait(false);

        if (result.StatusCode == 403 && result.Reason == ApnsReasons.ExpiredProviderToken)
        {
            // Our token aged out (clock skew or a long pause in minting): renew it once and resend now.
            var renewed = await _tokens.RenewExpiredAsync(key, token, cancellationToken).ConfigureAwait(false);
            if (!ReferenceEquals(renewed, token))
            {
                Log.ResendWithNewToken(_logger, notification.Id, key.Id);
                result = await SendOnceAsync(endpoint, notification, topic, payload, renewed, voip, cancellationToken).ConfigureAwait(false);
            }
        }

        if (result.StatusCode == 429 && result.Reason == ApnsReasons.TooManyProviderTokenUpdates)
        {
            await _tokens.ReportTooManyUpdatesAsync(key, cancellationToken).ConfigureAwait(false);
        }

        Settle(credential, notification, result);
        LogNotable(notification, topic, endpoint, credential, result);
        return result;
    }

    /// <summary>
    /// Refuses locally what APNs would refuse for a certificate: expired or not yet valid (a credential fault),
    /// a topic it does not hold (TopicDisallowed), an environment it does not serve (BadCertificateEnvironment).
    /// </summary>
    private PushResult? CheckCertificate(ApnsCertificateCredential credential, ClaimedNotification notification, string topic)
    {
        var certificate = credential.Certificate;
        CheckExpiry(credential);
        var now = _time.GetUtcNow();
        if (now > certificate.NotAfter || now < certificate.NotBefore)
        {
            var result = new PushResult(PushOutcome.CredentialFault, 0, ApnsReasons.CertificateExpired);
            if (!credential.Circuit.IsOpen)
            {
                credential.Circuit.Trip(0, ApnsReasons.CertificateExpired);
                _health?.ReportCredentialFault(Platform.Apns, credential.Owner, credential.Name, now, 0, ApnsReasons.CertificateExpired);
                Log.CertificateExpired(_logger, credential.Name, credential.Owner, certificate.NotAfter);
            }

            return result;
        }

        if (certificate.Topics.Count > 0 && !certificate.Allows(topic))
        {
            return new PushResult(PushOutcome.Failed, 400, ApnsReasons.TopicDisallowed);
        }

        var sandbox = notification.Environment == PushEnvironment.Sandbox;
        if (sandbox ? !certificate.ServesSandbox : !certificate.ServesProduction)
        {
            return new PushResult(PushOutcome.Failed, 403, ApnsReasons.BadCertificateEnvironment);
        }

        return null;
    }

    /// <summary>Warns once per certificate that expires within <see cref="ExpiryWarning"/>, and tells readiness its expiry.</summary>
    private void CheckExpiry(ApnsCertificateCredential credential)
    {
        if (_expiryChecked.TryGetValue(credential, out _))
        {
            return;
        }

        _expiryChecked.AddOrUpdate(credential, credential);
        var notAfter = credential.Certificate.NotAfter;
        _health?.ReportExpiry(Platform.Apns, credential.Owner, credential.Name, notAfter);
        var left = notAfter - _time.GetUtcNow();
        if (left < ExpiryWarning)
        {
            Log.CertificateExpiresSoon(_logger, credential.Name, credential.Owner, notAfter, Math.Max(0, (int)left.TotalDays));
        }
    }

    /// <summary>Opens or closes the credential's circuit by what APNs answered.</summary>
    private void Settle(ApnsCredential credential, ClaimedNotification notification, PushResult result)
    {
        switch (result.Outcome)
        {
            case PushOutcome.CredentialFault:
                credential.Circuit.Trip(result.StatusCode, result.Reason);
                _health?.ReportCredentialFault(Platform.Apns, credential.Owner, credential.Name, _time.GetUtcNow(), result.StatusCode, result.Reason);
                break;
            case PushOutcome.Retry when result.StatusCode == 0:
                credential.Circuit.ProbeInconclusive(); // transport: says nothing about the credential
                break;
            case PushOutcome.Retry when result.StatusCode == 403:
                credential.Circuit.ProbeInconclusive();
                break;
            default:
                // APNs judged the request itself, so it accepted the credential.
                if (credential.Circuit.IsOpen)
                {
                    Log.CredentialRecovered(_logger, credential.Name, notification.TenantId);
                }

                credential.Circuit.Reset();
                _health?.ClearCredentialFault(Platform.Apns, credential.Owner, credential.Name);
                break;
        }
    }

    private ApnsEndpoint CertificateEndpoint(ApnsCertificateCredential credential, bool sandbox)
    {
        var key = (credential.Certificate.Thumbprint, sandbox);
        if (_certificateEndpoints.TryGetValue(key, out var endpoint))
        {
            return endpoint;
        }

        lock (_certificateEndpoints)
        {
            if (_certificateEndpoints.TryGetValue(key, out endpoint))
            {
                return endpoint;
            }

            ObjectDisposedException.ThrowIf(_disposed, this);
            endpoint = new ApnsEndpoint(
                sandbox ? "sandbox" : "production",
                sandbox ? _options.SandboxUrl : _options.ProductionUrl,
                _options,
                _trusted,
                credential.Certificate.Certificate,
                _live,
                _time);
            _certificateEndpoints[key] = endpoint;
            return endpoint;
        }
    }

    /// <summary>
    /// Closes the connections of certificates no longer in use (a replaced or deleted credential). Called by
    /// credential sources when a credential changes; connections of current certificates stay open.
    /// </summary>
    public void ForgetCertificate(string thumbprint)
    {
        foreach (var sandbox in (ReadOnlySpan<bool>)[false, true])
        {
            if (_certificateEndpoints.TryRemove((thumbprint, sandbox), out var endpoint))
            {
                endpoint.Dispose();
            }
        }
    }

    /// <summary>Maps an APNs answer to Herald's outcome: the table of PROTOCOLS.md.</summary>
    internal static PushResult Map(int status, string? reason, TimeSpan? retryAfter, DateTimeOffset? timestamp)
    {
        var outcome = status switch
        {
            200 => PushOutcome.Sent,
            400 => reason switch
            {
                ApnsReasons.BadDeviceToken or ApnsReasons.DeviceTokenNotForTopic => PushOutcome.TokenInvalid,
                ApnsReasons.IdleTimeout => PushOutcome.Retry,
                _ => PushOutcome.Failed,
            },

            // ExpiredProviderToken is renewed and resent by SendAsync; reaching the caller it means "again later".
            // Every other 403 is about the credential (including reasons Apple may add later).
            403 => reason == ApnsReasons.ExpiredProviderToken ? PushOutcome.Retry : PushOutcome.CredentialFault,
            410 => PushOutcome.TokenInvalid,
            429 => PushOutcome.Retry,
            >= 500 and <= 599 => PushOutcome.Retry,
            _ => PushOutcome.Failed, // 404, 405, 413, other 4xx, and anything unexpected
        };

        return outcome == PushOutcome.Sent
            ? PushResult.Ok(status)
            : new PushResult(outcome, status, reason, retryAfter, outcome == PushOutcome.TokenInvalid ? timestamp : null);
    }

    /// <summary>
    /// One send as the dispatcher sees it. A stream APNs refused (RST_STREAM REFUSED_STREAM: not processed, RFC 9113
    /// §8.7) that SocketsHttpHandler already resent three times on its own is sent again here, as a new request with the
    /// same apns-id, up to <see cref="MaxRefusedResends"/> times: a burst on a new connection that meets APNs' initial
    /// one-stream limit (SocketsHttpHandler assumes 100 until the server's SETTINGS arrive) then costs no attempt.
    /// </summary>
    private async ValueTask<PushResult> SendOnceAsync(
        ApnsEndpoint endpoint,
        ClaimedNotification notification,
        string topic,
        byte[] payload,
        ApnsProviderToken? token,
        bool voip,
        CancellationToken cancellationToken)
    {
        var kind = notification.Content.Kind;
        for (var resend = 0; ; resend++)
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, new Uri(endpoint.DevicePathPrefix + notification.Token, UriKind.Absolute))
            {
                // On the message itself: HttpMessageInvoker has no defaults, and an http:// URL with
                // RequestVersionExact 2.0 speaks HTTP/2 with prior knowledge.
                Version = HttpVersion.Version20,
                VersionPolicy = HttpVersionPolicy.RequestVersionExact,
                Content = new GatedByteArrayContent(payload), // see HeaderWriteGate
            };

            var headers = request.Headers;
            if (token is not null)
            {
                headers.TryAddWithoutValidation("authorization", token.Authorization);
            }

            headers.TryAddWithoutValidation("apns-push-type", kind switch
            {
                PushKind.Background => PushTypeBackground,
                PushKind.Mdm => PushTypeMdm,
                _ when voip => PushTypeVoip,
                _ => PushTypeAlert, // badge-only pushes are alert pushes
            });
            headers.TryAddWithoutValidation("apns-topic", topic);

            // Never 10 with a content-available-only payload: APNs rejects it (BadPriority).
            headers.TryAddWithoutValidation("apns-priority", kind == PushKind.Background ? PriorityPowerAware : PriorityImmediate);
            headers.TryAddWithoutValidation("apns-id", notification.MessageId.ToString("D")); // lower case
            if (notification.ExpiresAt is { } expiresAt)
            {
                headers.TryAddWithoutValidation("apns-expiration", Math.Max(0, expiresAt.ToUnixTimeSeconds()).ToString(CultureInfo.InvariantCulture));
            }

            if (notification.CollapseId is { } collapseId)
            {
                headers.TryAddWithoutValidation("apns-collapse-id", collapseId);
            }

            using var timeout = new LinkedTimeout(_requestTimeout, _time, cancellationToken);
            try
            {
                using var response = await endpoint.SendAsync(request, timeout.Token).ConfigureAwait(false);
                var status = (int)response.StatusCode;
                if (status == 200)
                {
                    return PushResult.Ok();
                }

                return await ReadFailureAsync(response, status, timeout.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException ex) when (cancellationToken.IsCancellationRequested)
            {
                throw new OperationCanceledException(ex.Message, ex, cancellationToken);
            }
            catch (OperationCanceledException ex)
            {
                LogTransport(endpoint, notification.Id, ApnsReasons.Timeout, ex);
                return new PushResult(PushOutcome.Retry, 0, ApnsReasons.Timeout);
            }
            catch (HttpRequestException ex) when (ex.InnerException is HttpProtocolException { ErrorCode: RefusedStreamCode })
            {
                // Refused again after SocketsHttpHandler's own resends: not processed, safe to send again.
                if (resend >= MaxRefusedResends)
                {
                    LogTransport(endpoint, notification.Id, ApnsReasons.RefusedStream, ex);
                    return new PushResult(PushOutcome.Retry, 0, ApnsReasons.RefusedStream);
                }

                // Not processed: sent again at once, as a new request with the same apns-id.
            }
            catch (Exception ex) when (ex is HttpRequestException or IOException or ObjectDisposedException)
            {
                // Connection refused or reset, GOAWAY, RST_STREAM, TLS failure, or shutting down.
                LogTransport(endpoint, notification.Id, ApnsReasons.Transport, ex);
                return new PushResult(PushOutcome.Retry, 0, ApnsReasons.Transport);
            }
        }
    }

    private async ValueTask<PushResult> ReadFailureAsync(HttpResponseMessage response, int status, CancellationToken cancellationToken)
    {
        var retryAfter = RetryAfter(response.Headers.RetryAfter);
        string? reason = null;
        DateTimeOffset? timestamp = null;
        var buffer = ArrayPool<byte>.Shared.Rent(2048);
        try
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

            ApnsReasons.ParseError(buffer.AsSpan(0, total), out reason, out timestamp);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }

        return Map(status, reason, retryAfter, timestamp);
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

    private static X509Certificate2 LoadCertificate(string pemFile)
        => PinnedCertificate.Load(pemFile, $"{ApnsOptions.SectionName}:{nameof(ApnsOptions.TrustedCertificateFile)}");

    private static bool IsHexToken(string token)
    {
        if ((token.Length & 1) != 0)
        {
            return false;
        }

        foreach (var c in token)
        {
            if (!char.IsAsciiHexDigit(c))
            {
                return false;
            }
        }

        return true;
    }

    private void LogNotable(ClaimedNotification notification, string topic, ApnsEndpoint endpoint, ApnsCredential credential, PushResult result)
    {
        switch (result.Outcome)
        {
            case PushOutcome.TokenInvalid when result.Reason == ApnsReasons.BadDeviceToken:
                Log.BadDeviceToken(
                    _logger,
                    new RedactedToken(notification.Token),
                    endpoint.Name,
                    notification.Environment == PushEnvironment.Sandbox ? "production" : "sandbox");
                break;
            case PushOutcome.TokenInvalid when result.Reason == ApnsReasons.DeviceTokenNotForTopic:
                Log.TokenNotForTopic(_logger, new RedactedToken(notification.Token), topic);
                break;
            case PushOutcome.CredentialFault:
                if (ShouldWarn(ref _lastCredentialWarning))
                {
                    Log.CredentialRejected(_logger, credential.Name, endpoint.Name, result.StatusCode, result.Reason);
                }

                break;
        }
    }

    private void LogTransport(ApnsEndpoint endpoint, long notificationId, string reason, Exception exception)
    {
        if (ShouldWarn(ref endpoint.LastTransportWarningTimestamp))
        {
            Log.TransportFault(_logger, endpoint.Name, endpoint.Host, reason, exception);
        }
        else
        {
            Log.TransportFaultRepeated(_logger, notificationId, endpoint.Name, reason, exception.Message);
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
        _production.Dispose();
        _sandbox.Dispose();
        lock (_certificateEndpoints)
        {
            foreach (var endpoint in _certificateEndpoints.Values)
            {
                endpoint.Dispose();
            }

            _certificateEndpoints.Clear();
        }

        _trusted?.Dispose();
        _owned?.Dispose();
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 3101, Level = LogLevel.Information, Message = "APNs rejected token {Token} as BadDeviceToken on the {Environment} endpoint; if the app was built for {OtherEnvironment}, a sandbox/production mismatch is likely")]
        public static partial void BadDeviceToken(ILogger logger, RedactedToken token, string environment, string otherEnvironment);

        [LoggerMessage(EventId = 3102, Level = LogLevel.Information, Message = "APNs rejected token {Token}: it does not belong to topic {Topic}")]
        public static partial void TokenNotForTopic(ILogger logger, RedactedToken token, string topic);

        [LoggerMessage(EventId = 3103, Level = LogLevel.Warning, Message = "APNs rejected credential {Credential} on the {Environment} endpoint: {Status} {Reason}; its sends are retried later")]
        public static partial void CredentialRejected(ILogger logger, string credential, string environment, int status, string? reason);

        [LoggerMessage(EventId = 3104, Level = LogLevel.Warning, Message = "APNs {Environment} endpoint {Host} unreachable ({Reason}); sends are retried")]
        public static partial void TransportFault(ILogger logger, string environment, string host, string reason, Exception exception);

        [LoggerMessage(EventId = 3105, Level = LogLevel.Debug, Message = "Notification {Id}: APNs {Environment} transport fault ({Reason}): {Message}")]
        public static partial void TransportFaultRepeated(ILogger logger, long id, string environment, string reason, string message);

        [LoggerMessage(EventId = 3106, Level = LogLevel.Information, Message = "Notification {Id}: APNs answered ExpiredProviderToken; resending once with a new token of key {KeyId}")]
        public static partial void ResendWithNewToken(ILogger logger, long id, string keyId);

        [LoggerMessage(EventId = 3107, Level = LogLevel.Warning, Message = "Notification {Id}: payload of {Size} bytes exceeds the APNs limit of {Limit}; not sent")]
        public static partial void PayloadTooLarge(ILogger logger, long id, int size, int limit);

        [LoggerMessage(EventId = 3108, Level = LogLevel.Warning, Message = "No APNs credential for tenant {TenantId} and topic {Topic}")]
        public static partial void NoCredential(ILogger logger, string tenantId, string topic);

        [LoggerMessage(EventId = 3109, Level = LogLevel.Warning, Message = "APNs certificate {Credential} of tenant {TenantId} expires at {NotAfter:u} (in {Days} days): upload a renewed certificate")]
        public static partial void CertificateExpiresSoon(ILogger logger, string credential, string tenantId, DateTimeOffset notAfter, int days);

        [LoggerMessage(EventId = 3110, Level = LogLevel.Error, Message = "APNs certificate {Credential} of tenant {TenantId} expired at {NotAfter:u}; its sends wait in retry until it is replaced")]
        public static partial void CertificateExpired(ILogger logger, string credential, string tenantId, DateTimeOffset notAfter);

        [LoggerMessage(EventId = 3111, Level = LogLevel.Information, Message = "APNs accepts credential {Credential} again (tenant {TenantId}); its circuit is closed")]
        public static partial void CredentialRecovered(ILogger logger, string credential, string tenantId);
    }
}
