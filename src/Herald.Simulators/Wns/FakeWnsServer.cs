using System.Buffers;
using System.Buffers.Text;
using System.Collections.Concurrent;
using System.Globalization;
using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.Json;
using System.Xml;
using Herald.Simulators.Common;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.WebUtilities;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Primitives;

namespace Herald.Simulators.Wns;

/// <summary>
/// A faithful fake of Windows Push Notification Services on 127.0.0.1 (HTTP/1.1, optionally TLS): the
/// access-token endpoint of login.live.com (<c>POST /accesstoken.srf</c>) and channel URIs
/// (<c>POST /?token=…</c>, made with <see cref="CreateChannel"/>). It validates requests as WNS documents
/// and answers WNS's statuses and <c>X-WNS-*</c> headers. Channel expiry, scripted answers and fault
/// injection let tests drive every outcome; notification requests are recorded (optionally, bounded) and
/// can be awaited.
/// </summary>
/// <remarks>
/// <para>Token endpoint: POST only (405); an <c>application/x-www-form-urlencoded</c> body (400
/// <c>invalid_request</c>); <c>grant_type=client_credentials</c> (400 <c>unsupported_grant_type</c>);
/// <c>scope=notify.windows.com</c> (400 <c>invalid_scope</c>); a <c>client_id</c> and <c>client_secret</c>
/// registered with <see cref="AddApplication"/> (400 <c>invalid_client</c>). Success answers
/// <c>{"access_token","token_type":"bearer","expires_in"}</c>.</para>
/// <para>Channel endpoint checks, in order (the first failing one answers; the fake's reason code is in
/// <see cref="FakeWnsRequest.Reason"/>): method POST (405 MethodNotAllowed); path <c>/</c> with a
/// <c>token</c> query (404 ChannelNotFound); <c>Authorization: Bearer</c> with a token this server issued
/// (401 MissingToken, InvalidToken, TokenExpired, with <c>WWW-Authenticate</c>); the channel exists (404
/// ChannelNotFound), has not expired (410 ChannelExpired) and belongs to the token's application (403
/// WrongApplication); a Content-Length, as WNS does not accept chunked bodies (411 LengthRequired);
/// <c>X-WNS-Type</c> is wns/badge, wns/toast, wns/tile or wns/raw (400 InvalidType); Content-Type is
/// text/xml, or application/octet-stream for raw (400 InvalidContentType); <c>X-WNS-TTL</c> a non-negative
/// integer (400 InvalidTtl); <c>X-WNS-Tag</c> at most 16 letters and digits (400 InvalidTag);
/// <c>X-WNS-RequestForStatus</c> true or false (400 InvalidRequestForStatus); <c>X-WNS-Cache-Policy</c>
/// cache or no-cache (400 InvalidCachePolicy); a body (400 EmptyPayload) of at most 5,000 bytes (413
/// PayloadTooLarge); for badge, toast and tile a well-formed XML document with the root element of its type,
/// and for a badge a <c>value</c> that is a non-negative number or a known glyph (400 InvalidXml, InvalidBadge).
/// WNS itself leaves some payload checks to the device, which silently drops bad XML; the fake answers 400
/// so that such bugs are visible. Then, for a valid request: <see cref="FailNext"/>, the channel's
/// <see cref="Script"/> and <see cref="Redirect"/>; otherwise 200 with <c>X-WNS-Status: received</c>.</para>
/// <para>Every answer carries <c>X-WNS-Msg-ID</c> (16 hex digits) and <c>X-WNS-Debug-Trace</c>; errors carry
/// <c>X-WNS-Error-Description</c>; a 200 carries the notification status (<c>X-WNS-Status</c>, or
/// <c>X-WNS-NotificationStatus</c> with <see cref="FakeWnsServerOptions.LegacyStatusHeader"/>) and, when the
/// request asked with <c>X-WNS-RequestForStatus: true</c>, <c>X-WNS-DeviceConnectionStatus: connected</c>;
/// 406 and <c>channelthrottled</c> carry <c>X-WNS-CONTINUE-AFTER</c>.</para>
/// </remarks>
public sealed class FakeWnsServer : IAsyncDisposable
{
    /// <summary>The path of the access-token endpoint (login.live.com's).</summary>
    public const string TokenPath = "/accesstoken.srf";

    /// <summary>The only scope WNS tokens are issued for.</summary>
    public const string Scope = "notify.windows.com";

    /// <summary>WNS's payload limit in bytes.</summary>
    public const int MaxPayloadBytes = 5000;

    /// <summary>The notification status of an accepted notification.</summary>
    public const string StatusReceived = "received";

    /// <summary>The notification status of a notification WNS dropped (device offline for toasts, or rejected by the client).</summary>
    public const string StatusDropped = "dropped";

    /// <summary>The notification status of a notification dropped because the channel's rate limit was exceeded.</summary>
    public const string StatusChannelThrottled = "channelthrottled";

    private const int MaxTagLength = 16;

    private static readonly string[] BadgeGlyphs =
        ["none", "activity", "alarm", "alert", "attention", "available", "away", "busy", "error", "newMessage", "paused", "playing", "unavailable"];

    private readonly FakeWnsServerOptions _options;
    private readonly TimeProvider _time;
    private volatile FakeFaultMix? _faults;
    private readonly WebApplication _app;
    private readonly RequestRecorder<FakeWnsRequest> _recorder;
    private readonly ConcurrentDictionary<string, byte[]> _applications = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, AccessToken> _tokens = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, Channel> _channels = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, ConcurrentQueue<Verdict>> _scripts = new(StringComparer.Ordinal);
    private volatile Verdict? _failNext;
    private int _failNextRemaining;
    private volatile int _failTokenStatus;
    private int _failTokenRemaining;
    private long _tokenRequests;
    private long _tokensIssued;
    private int _disposed;

    private FakeWnsServer(FakeWnsServerOptions options, TimeProvider time, X509Certificate2? certificate)
    {
        _options = options;
        _time = time;
        _recorder = new RequestRecorder<FakeWnsRequest>(options.RecordRequests, options.MaxRecordedRequests);
        Certificate = certificate;
        CertificatePem = certificate?.ExportCertificatePem();

        var builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions());
        builder.WebHost.UseKestrelCore();
        if (certificate is not null)
        {
            builder.WebHost.UseKestrelHttpsConfiguration();
        }

        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.AddServerHeader = false;
            kestrel.Limits.MaxRequestBodySize = null; // the handler stops reading past the WNS limit itself
            kestrel.Limits.MinRequestBodyDataRate = null;
            kestrel.Listen(IPAddress.Loopback, options.Port, listen =>
            {
                listen.Protocols = HttpProtocols.Http1; // WNS speaks HTTP/1.1
                if (certificate is not null)
                {
                    listen.UseHttps(certificate);
                }
            });
        });

        _app = builder.Build();
        ((IApplicationBuilder)_app).Run(HandleAsync);
    }

    /// <summary>The base URL, e.g. <c>http://127.0.0.1:50123</c> (no trailing slash).</summary>
    public string BaseUrl { get; private set; } = string.Empty;

    /// <summary><see cref="BaseUrl"/> as a URI.</summary>
    public Uri BaseAddress => new(BaseUrl);

    /// <summary>"127.0.0.1:port": the allow-list entry a client needs for this server's channels.</summary>
    public string Authority { get; private set; } = string.Empty;

    /// <summary>The access-token endpoint, e.g. <c>http://127.0.0.1:50123/accesstoken.srf</c>.</summary>
    public string TokenUrl => BaseUrl + TokenPath;

    /// <summary>The self-signed server certificate in TLS mode (null without TLS).</summary>
    public X509Certificate2? Certificate { get; }

    /// <summary>The server certificate as PEM in TLS mode, for clients to trust explicitly (null without TLS).</summary>
    public string? CertificatePem { get; }

    /// <summary>Notification requests answered 200 <c>received</c> so far.</summary>
    public long AcceptedCount => _recorder.Accepted;

    /// <summary>Notification requests answered otherwise (errors, <c>dropped</c>, <c>channelthrottled</c>, redirects) so far.</summary>
    public long RejectedCount => _recorder.Rejected;

    /// <summary>Requests to the access-token endpoint so far (successful or not).</summary>
    public long TokenRequests => Interlocked.Read(ref _tokenRequests);

    /// <summary>Access tokens issued so far.</summary>
    public long TokensIssued => Interlocked.Read(ref _tokensIssued);

    /// <summary>The recorded notification requests, oldest first (empty when recording is off).</summary>
    public IReadOnlyList<FakeWnsRequest> Requests => _recorder.Snapshot();

    /// <summary>Starts a server on 127.0.0.1.</summary>
    /// <param name="options">Settings; defaults when null.</param>
    /// <param name="timeProvider">The clock for token lifetimes and request times (a FakeTimeProvider in tests).</param>
    /// <param name="cancellationToken">Cancels the start.</param>
    public static async Task<FakeWnsServer> StartAsync(FakeWnsServerOptions? options = null, TimeProvider? timeProvider = null, CancellationToken cancellationToken = default)
    {
        options ??= new FakeWnsServerOptions();
        ArgumentOutOfRangeException.ThrowIfNegative(options.Port);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(options.Port, 65535);
        ArgumentOutOfRangeException.ThrowIfLessThan(options.MaxRecordedRequests, 1);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(options.AccessTokenLifetime, TimeSpan.Zero);

        var certificate = options.UseTls ? SelfSignedCertificate.Create("CN=Herald fake WNS") : null;
        var server = new FakeWnsServer(options, timeProvider ?? TimeProvider.System, certificate);
        try
        {
            await server._app.StartAsync(cancellationToken).ConfigureAwait(false);
            var addresses = server._app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>();
            var bound = addresses?.Addresses.FirstOrDefault() ?? throw new InvalidOperationException("Kestrel reported no address.");
            var port = new Uri(bound).Port;
            server.Authority = string.Create(CultureInfo.InvariantCulture, $"127.0.0.1:{port}");
            server.BaseUrl = (certificate is null ? "http://" : "https://") + server.Authority;
            return server;
        }
        catch
        {
            await server.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>Registers an application (cloud service): its Package SID (<c>client_id</c>) and secret (<c>client_secret</c>).</summary>
    public void AddApplication(string packageSid, string clientSecret)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(packageSid);
        ArgumentException.ThrowIfNullOrEmpty(clientSecret);
        _applications[packageSid] = Encoding.UTF8.GetBytes(clientSecret);
    }

    /// <summary>
    /// Creates a channel, as a device's app does, and returns its URI (<c>{BaseUrl}/?token=…</c>). With
    /// <paramref name="packageSid"/>, only tokens of that application may push to it (others get 403);
    /// without, any application's may.
    /// </summary>
    public string CreateChannel(string? packageSid = null)
    {
        Span<byte> random = stackalloc byte[24];
        RandomNumberGenerator.Fill(random);
        var id = Base64Url.EncodeToString(random);
        _channels[id] = new Channel(packageSid);
        return BaseUrl + "/?token=" + id;
    }

    /// <summary>The channel expired (the app did not renew it): pushes to it get 410.</summary>
    public void Expire(string channel) => GetChannel(channel).Expired = true;

    /// <summary>
    /// Answers for the next valid requests to <paramref name="channel"/>, consumed in order. Status 200 answers
    /// with <paramref name="responses"/>' notification status (<see cref="StatusReceived"/> when null), e.g.
    /// <see cref="StatusDropped"/> or <see cref="StatusChannelThrottled"/>; other statuses (406, 401, 500, 503…)
    /// answer with that status. Appends to what is already scripted.
    /// </summary>
    public void Script(string channel, params (int Status, string? NotificationStatus)[] responses)
    {
        ArgumentNullException.ThrowIfNull(responses);
        var queue = _scripts.GetOrAdd(ChannelId(channel), static _ => new ConcurrentQueue<Verdict>());
        foreach (var (status, notificationStatus) in responses)
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(status, 100);
            queue.Enqueue(Scripted(status, status == 200 ? notificationStatus ?? StatusReceived : null, location: null));
        }
    }

    /// <summary>The next valid request to <paramref name="channel"/> is answered <c>302 Found</c> with <c>Location: <paramref name="location"/></c>.</summary>
    public void Redirect(string channel, string location)
    {
        ArgumentException.ThrowIfNullOrEmpty(location);
        _scripts.GetOrAdd(ChannelId(channel), static _ => new ConcurrentQueue<Verdict>())
            .Enqueue(Scripted(302, null, location));
    }

    /// <summary>
    /// Injects a seeded mix of faults into notifications the fake would accept (null: none): 503, delivered then the
    /// connection reset, or answered after a stall on the fake's clock. <see cref="FakeFaultMix.Counts"/> says what was injected.
    /// </summary>
    public void InjectFaults(FakeFaultMix? faults) => _faults = faults;

    /// <summary>Answers the next <paramref name="count"/> valid notification requests (any channel) with <paramref name="status"/>, e.g. 503.</summary>
    public void FailNext(int count, int status)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        _failNext = Scripted(status, status == 200 ? StatusReceived : null, null);
        Volatile.Write(ref _failNextRemaining, count);
    }

    /// <summary>Answers the next <paramref name="count"/> access-token requests with <paramref name="status"/> (e.g. 500 or 503).</summary>
    public void FailTokenRequests(int count, int status)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        ArgumentOutOfRangeException.ThrowIfLessThan(status, 400);
        _failTokenStatus = status;
        Volatile.Write(ref _failTokenRemaining, count);
    }

    /// <summary>Invalidates every access token issued so far: pushes with them get 401 until the client fetches a new one.</summary>
    public void RevokeAccessTokens() => _tokens.Clear();

    /// <summary>
    /// Revokes an application's client secret (as deleting or rotating it in Partner Center does): its token requests
    /// get 400 <c>invalid_client</c> and the access tokens issued to it 401, while other applications keep working.
    /// <see cref="AddApplication"/> registers it again (with the same or a new secret).
    /// </summary>
    public void RevokeApplication(string packageSid)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(packageSid);
        _applications.TryRemove(packageSid, out _);
        foreach (var (value, token) in _tokens)
        {
            if (string.Equals(token.PackageSid, packageSid, StringComparison.Ordinal))
            {
                _tokens.TryRemove(value, out _);
            }
        }
    }

    /// <summary>Notification requests rejected with the fake's reason code <paramref name="reason"/> (or <c>dropped</c> / <c>channelthrottled</c>) so far.</summary>
    public long RejectedCountFor(string reason) => _recorder.RejectedFor(reason);

    /// <summary>A snapshot of the rejection counters by reason.</summary>
    public IReadOnlyDictionary<string, long> RejectedByReason() => _recorder.RejectedByReason();

    /// <summary>Forgets the recorded requests (counters stay).</summary>
    public void ClearRequests() => _recorder.Clear();

    /// <summary>Completes when <see cref="AcceptedCount"/> reaches <paramref name="count"/>.</summary>
    public Task WaitForAcceptedAsync(long count, CancellationToken cancellationToken) => _recorder.WaitForAcceptedAsync(count, cancellationToken);

    /// <summary>
    /// Completes with the first notification request matching <paramref name="predicate"/>: a recorded one, or
    /// the next to arrive (with recording off, only requests answered after this call are seen).
    /// </summary>
    public Task<FakeWnsRequest> WaitForRequestAsync(Func<FakeWnsRequest, bool> predicate, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(predicate);
        return _recorder.WaitForRequestAsync(predicate, cancellationToken);
    }

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        try
        {
            using var stopTimeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
            await _app.StopAsync(stopTimeout.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            // Connections were aborted.
        }
        catch (InvalidOperationException)
        {
            // Never started.
        }

        await _app.DisposeAsync().ConfigureAwait(false);
        _recorder.FailWaiters(new ObjectDisposedException(nameof(FakeWnsServer)));
        Certificate?.Dispose();
    }

    private Channel GetChannel(string channel)
        => _channels.TryGetValue(ChannelId(channel), out var state)
            ? state
            : throw new ArgumentException("Not a channel of this server (use CreateChannel).", nameof(channel));

    /// <summary>The channel id (the <c>token</c> query value) of a channel URI; a bare id is returned as is.</summary>
    private static string ChannelId(string channel)
    {
        ArgumentException.ThrowIfNullOrEmpty(channel);
        if (Uri.TryCreate(channel, UriKind.Absolute, out var uri)
            && QueryHelpers.ParseQuery(uri.Query).TryGetValue("token", out var token)
            && token.Count == 1
            && !string.IsNullOrEmpty(token[0]))
        {
            return token[0]!;
        }

        return channel;
    }

    private static Verdict Scripted(int status, string? notificationStatus, string? location)
        => status == 200
            ? new(200, null, null, notificationStatus)
            : new(status, location is null ? "Scripted" : "Redirect", Describe(status), null, location, status == 401 ? "Bearer error=\"invalid_token\"" : null);

    private static string Describe(int status) => status switch
    {
        400 => "Bad request",
        401 => "Invalid token",
        403 => "Forbidden",
        404 => "Channel not found",
        406 => "Throttle limit exceeded",
        410 => "Channel expired",
        413 => "Payload too large",
        500 => "Internal server error",
        503 => "Service unavailable",
        _ => "Status " + status.ToString(CultureInfo.InvariantCulture),
    };

    private Task HandleAsync(HttpContext context)
        => string.Equals(context.Request.Path.Value, TokenPath, StringComparison.OrdinalIgnoreCase)
            ? HandleTokenAsync(context)
            : HandleChannelAsync(context);

    private async Task HandleTokenAsync(HttpContext context)
    {
        Interlocked.Increment(ref _tokenRequests);
        var request = context.Request;
        var response = context.Response;
        response.Headers.CacheControl = "no-store";
        if (!HttpMethods.IsPost(request.Method))
        {
            response.StatusCode = 405;
            return;
        }

        if (Volatile.Read(ref _failTokenRemaining) > 0 && Interlocked.Decrement(ref _failTokenRemaining) >= 0)
        {
            await WriteTokenErrorAsync(response, _failTokenStatus, "server_error", "Injected failure").ConfigureAwait(false);
            return;
        }

        if (!request.HasFormContentType)
        {
            await WriteTokenErrorAsync(response, 400, "invalid_request", "The body must be application/x-www-form-urlencoded").ConfigureAwait(false);
            return;
        }

        IFormCollection form;
        try
        {
            form = await request.ReadFormAsync(context.RequestAborted).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is InvalidDataException or IOException)
        {
            await WriteTokenErrorAsync(response, 400, "invalid_request", "Malformed form body").ConfigureAwait(false);
            return;
        }

        if (Single(form["grant_type"]) != "client_credentials")
        {
            await WriteTokenErrorAsync(response, 400, "unsupported_grant_type", "grant_type must be client_credentials").ConfigureAwait(false);
            return;
        }

        if (Single(form["scope"]) != Scope)
        {
            await WriteTokenErrorAsync(response, 400, "invalid_scope", "scope must be notify.windows.com").ConfigureAwait(false);
            return;
        }

        var clientId = Single(form["client_id"]);
        var secret = Single(form["client_secret"]);
        if (clientId is null
            || secret is null
            || !_applications.TryGetValue(clientId, out var expected)
            || !CryptographicOperations.FixedTimeEquals(expected, Encoding.UTF8.GetBytes(secret)))
        {
            await WriteTokenErrorAsync(response, 400, "invalid_client", "Invalid client id or secret").ConfigureAwait(false);
            return;
        }

        var bytes = new byte[48];
        RandomNumberGenerator.Fill(bytes);
        var token = Convert.ToBase64String(bytes); // like WNS's: standard base64 with '+', '/' and '='
        _tokens[token] = new AccessToken(clientId, _time.GetUtcNow() + _options.AccessTokenLifetime);
        Interlocked.Increment(ref _tokensIssued);

        var body = new ArrayBufferWriter<byte>(128);
        using (var writer = new Utf8JsonWriter(body))
        {
            writer.WriteStartObject();
            writer.WriteString("access_token"u8, token);
            writer.WriteString("token_type"u8, "bearer"u8);
            writer.WriteNumber("expires_in"u8, (long)_options.AccessTokenLifetime.TotalSeconds);
            writer.WriteEndObject();
        }

        response.StatusCode = 200;
        response.ContentType = "application/json";
        response.ContentLength = body.WrittenCount;
        await response.Body.WriteAsync(body.WrittenMemory, context.RequestAborted).ConfigureAwait(false);
    }

    private static async Task WriteTokenErrorAsync(HttpResponse response, int status, string error, string description)
    {
        var body = new ArrayBufferWriter<byte>(128);
        using (var writer = new Utf8JsonWriter(body))
        {
            writer.WriteStartObject();
            writer.WriteString("error"u8, error);
            writer.WriteString("error_description"u8, description);
            writer.WriteEndObject();
        }

        response.StatusCode = status;
        response.ContentType = "application/json";
        response.ContentLength = body.WrittenCount;
        await response.Body.WriteAsync(body.WrittenMemory).ConfigureAwait(false);
    }

    private async Task HandleChannelAsync(HttpContext context)
    {
        var request = context.Request;
        var receivedAt = _time.GetUtcNow();
        byte[]? body = null;
        var length = 0;
        try
        {
            Verdict verdict;
            var channelId = request.Path.Value == "/" ? Single(request.Query["token"]) : null;
            if (!HttpMethods.IsPost(request.Method))
            {
                verdict = new(405, "MethodNotAllowed", "Only POST is allowed");
            }
            else if (string.IsNullOrEmpty(channelId))
            {
                verdict = new(404, "ChannelNotFound", "The channel URI is not valid");
            }
            else
            {
                body = ArrayPool<byte>.Shared.Rent(MaxPayloadBytes + 1);
                length = await ReadBodyAsync(request.Body, body, context.RequestAborted).ConfigureAwait(false);
                verdict = Decide(request, channelId, body.AsSpan(0, length), receivedAt);
            }

            var fault = verdict.Status == 200 && verdict.NotificationStatus == StatusReceived && _faults is { } mix ? mix.Draw() : FakeFault.None;
            if (fault == FakeFault.Unavailable)
            {
                verdict = new(503, "ServiceUnavailable", "Service unavailable");
            }
            else if (fault == FakeFault.Stall)
            {
                await Task.Delay(_faults!.StallDuration, _time, context.RequestAborted).ConfigureAwait(false);
            }

            var messageId = NewMessageId();

            // Record before answering: a client that has its response must find the request recorded.
            var record = _recorder.WantsRecord ? Record(request, body, length, receivedAt, verdict, messageId) : null;
            var accepted = verdict.Status == 200 && verdict.NotificationStatus == StatusReceived;
            _recorder.Complete(accepted, verdict.Status, verdict.Reason ?? verdict.NotificationStatus, record);
            if (fault == FakeFault.Reset)
            {
                context.Abort(); // delivered, then the connection is reset instead of answered
                return;
            }

            Write(context.Response, request, verdict, messageId);
        }
        finally
        {
            if (body is not null)
            {
                ArrayPool<byte>.Shared.Return(body);
            }
        }
    }

    private Verdict Decide(HttpRequest request, string channelId, ReadOnlySpan<byte> body, DateTimeOffset now)
    {
        var headers = request.Headers;

        // Authentication.
        var authorization = Single(headers.Authorization);
        const string Scheme = "Bearer ";
        if (string.IsNullOrEmpty(authorization) || !authorization.StartsWith(Scheme, StringComparison.OrdinalIgnoreCase))
        {
            return new(401, "MissingToken", "Missing or malformed Authorization header", Challenge: "Bearer error=\"invalid_request\"");
        }

        if (!_tokens.TryGetValue(authorization[Scheme.Length..].Trim(), out var token))
        {
            return new(401, "InvalidToken", "Invalid token", Challenge: "Bearer error=\"invalid_token\"");
        }

        if (now >= token.ExpiresAt)
        {
            return new(401, "TokenExpired", "Token expired", Challenge: "Bearer error=\"invalid_token\", error_description=\"Token expired\"");
        }

        // The channel.
        if (!_channels.TryGetValue(channelId, out var channel))
        {
            return new(404, "ChannelNotFound", "The channel URI is not valid");
        }

        if (channel.Expired)
        {
            return new(410, "ChannelExpired", "The channel expired");
        }

        if (channel.PackageSid is not null && !string.Equals(channel.PackageSid, token.PackageSid, StringComparison.Ordinal))
        {
            return new(403, "WrongApplication", "The token does not belong to the application that created the channel");
        }

        // Headers.
        if (request.ContentLength is null)
        {
            return new(411, "LengthRequired", "Content-Length is required (chunked bodies are not supported)");
        }

        var type = Single(headers["X-WNS-Type"]);
        if (type is not ("wns/badge" or "wns/toast" or "wns/tile" or "wns/raw"))
        {
            return new(400, "InvalidType", "X-WNS-Type must be wns/badge, wns/toast, wns/tile or wns/raw");
        }

        var mediaType = MediaType(request.ContentType);
        var expectedType = type == "wns/raw" ? "application/octet-stream" : "text/xml";
        if (!string.Equals(mediaType, expectedType, StringComparison.OrdinalIgnoreCase))
        {
            return new(400, "InvalidContentType", "Content-Type must be " + expectedType + " for " + type);
        }

        var ttl = Single(headers["X-WNS-TTL"]);
        if (ttl is not null && !long.TryParse(ttl, NumberStyles.None, CultureInfo.InvariantCulture, out _))
        {
            return new(400, "InvalidTtl", "X-WNS-TTL must be a non-negative integer (seconds)");
        }

        var tag = Single(headers["X-WNS-Tag"]);
        if (tag is not null && (tag.Length is 0 or > MaxTagLength || !tag.All(char.IsAsciiLetterOrDigit)))
        {
            return new(400, "InvalidTag", "X-WNS-Tag must be 1 to 16 letters and digits");
        }

        var requestForStatus = Single(headers["X-WNS-RequestForStatus"]);
        if (requestForStatus is not null && !IsBoolean(requestForStatus))
        {
            return new(400, "InvalidRequestForStatus", "X-WNS-RequestForStatus must be true or false");
        }

        var cachePolicy = Single(headers["X-WNS-Cache-Policy"]);
        if (cachePolicy is not null && cachePolicy is not ("cache" or "no-cache"))
        {
            return new(400, "InvalidCachePolicy", "X-WNS-Cache-Policy must be cache or no-cache");
        }

        // The payload.
        if (body.IsEmpty)
        {
            return new(400, "EmptyPayload", "The notification payload is empty");
        }

        if (body.Length > MaxPayloadBytes)
        {
            return new(413, "PayloadTooLarge", "The notification payload exceeds the 5000 byte size limit");
        }

        if (type != "wns/raw" && CheckXml(type, body) is { } xmlProblem)
        {
            return xmlProblem;
        }

        return Inject(channelId) ?? new(200, null, null, StatusReceived);
    }

    private Verdict? Inject(string channelId)
    {
        if (Volatile.Read(ref _failNextRemaining) > 0 && Interlocked.Decrement(ref _failNextRemaining) >= 0 && _failNext is { } failure)
        {
            return failure;
        }

        return _scripts.TryGetValue(channelId, out var queue) && queue.TryDequeue(out var scripted) ? scripted : null;
    }

    private static Verdict? CheckXml(string type, ReadOnlySpan<byte> body)
    {
        var expectedRoot = type["wns/".Length..];
        var settings = new XmlReaderSettings
        {
            DtdProcessing = DtdProcessing.Prohibit,
            XmlResolver = null,
            MaxCharactersInDocument = MaxPayloadBytes * 4,
            IgnoreComments = true,
            IgnoreWhitespace = true,
        };

        try
        {
            using var stream = new MemoryStream(body.ToArray(), writable: false);
            using var reader = XmlReader.Create(stream, settings);
            reader.MoveToContent();
            if (reader.NodeType != XmlNodeType.Element || reader.LocalName != expectedRoot)
            {
                return new(400, "InvalidXml", "The root element must be <" + expectedRoot + "> for " + type);
            }

            if (expectedRoot == "badge")
            {
                var value = reader.GetAttribute("value");
                if (value is null
                    || (!long.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out _) && !BadgeGlyphs.Contains(value, StringComparer.Ordinal)))
                {
                    return new(400, "InvalidBadge", "<badge> needs a value that is a non-negative number or a glyph");
                }
            }

            while (reader.Read())
            {
                // Reading to the end proves the document well-formed.
            }

            return null;
        }
        catch (XmlException)
        {
            return new(400, "InvalidXml", "The payload is not well-formed XML");
        }
    }

    private void Write(HttpResponse response, HttpRequest request, Verdict verdict, string messageId)
    {
        response.StatusCode = verdict.Status;
        var headers = response.Headers;
        headers["X-WNS-Msg-ID"] = messageId;
        headers["X-WNS-Debug-Trace"] = "HERALD-FAKE-WNS";
        if (verdict.Status == 200)
        {
            headers[_options.LegacyStatusHeader ? "X-WNS-NotificationStatus" : "X-WNS-Status"] = verdict.NotificationStatus;
            if (string.Equals(Single(request.Headers["X-WNS-RequestForStatus"]), "true", StringComparison.OrdinalIgnoreCase))
            {
                headers["X-WNS-DeviceConnectionStatus"] = "connected";
            }
        }

        if (verdict.Description is not null)
        {
            headers["X-WNS-Error-Description"] = verdict.Description;
        }

        if (verdict.Challenge is not null)
        {
            headers.WWWAuthenticate = verdict.Challenge;
        }

        if (verdict.Location is not null)
        {
            headers.Location = verdict.Location;
        }

        if ((verdict.Status == 406 || verdict.NotificationStatus == StatusChannelThrottled) && _options.ThrottleContinueAfter is { } continueAfter)
        {
            headers["X-WNS-CONTINUE-AFTER"] = ((long)Math.Ceiling(continueAfter.TotalSeconds)).ToString(CultureInfo.InvariantCulture);
        }

        response.ContentLength = 0;
    }

    private FakeWnsRequest Record(HttpRequest request, byte[]? body, int length, DateTimeOffset receivedAt, Verdict verdict, string messageId)
    {
        var headers = new Dictionary<string, string>(request.Headers.Count, StringComparer.OrdinalIgnoreCase);
        foreach (var (name, values) in request.Headers)
        {
            headers[name.ToLowerInvariant()] = values.ToString();
        }

        return new FakeWnsRequest
        {
            Method = request.Method,
            Path = request.Path.Value ?? string.Empty,
            Channel = BaseUrl + request.Path.Value + request.QueryString.Value,
            Headers = headers,
            Body = body is null ? null : Encoding.UTF8.GetString(body, 0, length),
            BodyLength = length,
            ReceivedAt = receivedAt,
            Status = verdict.Status,
            Reason = verdict.Reason,
            NotificationStatus = verdict.NotificationStatus,
            MessageId = messageId,
            ErrorDescription = verdict.Description,
        };
    }

    private static async ValueTask<int> ReadBodyAsync(Stream stream, byte[] buffer, CancellationToken cancellationToken)
    {
        // Stop just past the limit: the verdict only needs to know the payload is too large.
        var total = 0;
        while (total < buffer.Length)
        {
            var read = await stream.ReadAsync(buffer.AsMemory(total), cancellationToken).ConfigureAwait(false);
            if (read == 0)
            {
                break;
            }

            total += read;
        }

        return total;
    }

    private static string NewMessageId()
    {
        Span<byte> random = stackalloc byte[8];
        RandomNumberGenerator.Fill(random);
        return Convert.ToHexString(random); // 16 characters, as WNS's
    }

    private static string? MediaType(string? contentType)
    {
        if (contentType is null)
        {
            return null;
        }

        var semicolon = contentType.IndexOf(';', StringComparison.Ordinal);
        return (semicolon < 0 ? contentType : contentType[..semicolon]).Trim();
    }

    private static bool IsBoolean(string value)
        => string.Equals(value, "true", StringComparison.OrdinalIgnoreCase) || string.Equals(value, "false", StringComparison.OrdinalIgnoreCase);

    private static string? Single(StringValues values) => values.Count == 1 ? values[0] : null;

    private sealed record Verdict(
        int Status,
        string? Reason,
        string? Description,
        string? NotificationStatus = null,
        string? Location = null,
        string? Challenge = null);

    private sealed record AccessToken(string PackageSid, DateTimeOffset ExpiresAt);

    private sealed class Channel(string? packageSid)
    {
        public string? PackageSid { get; } = packageSid;

        public volatile bool Expired;
    }
}
