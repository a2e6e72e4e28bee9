using System.Buffers;
using System.Collections.Concurrent;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.Json;
using Herald.Simulators.Common;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Server.Kestrel.Https;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Primitives;

namespace Herald.Simulators.Apns;

/// <summary>
/// A faithful fake of Apple's HTTP/2 provider API (<c>POST /3/device/&lt;token&gt;</c>) on 127.0.0.1:
/// validates requests and provider tokens like APNs and answers Apple's status, <c>apns-id</c> and
/// <c>{"reason":...}</c> body. Device registry, scripted answers and fault injection let tests drive every
/// outcome; requests are recorded (optionally, bounded) and can be awaited.
/// </summary>
/// <remarks>
/// Checks, in order (the first failing one answers): method (405 MethodNotAllowed); path (404 BadPath);
/// a header sent twice (400 DuplicateHeaders); token present (400 MissingDeviceToken) and even-length hex
/// (400 BadDeviceToken); <c>apns-id</c> a UUID (400 BadMessageId); with a client certificate on a
/// certificate-auth server (<see cref="FakeApnsServerOptions.ClientCertificateAuthorities"/>): issued by a
/// given authority, valid by the fake's clock and not revoked (403 BadCertificate), for this environment
/// (403 BadCertificateEnvironment), and the topic defaults to a single-topic certificate's topic; otherwise the
/// provider token (403 MissingProviderToken, InvalidProviderToken, ExpiredProviderToken; 429
/// TooManyProviderTokenUpdates); topic present (400 MissingTopic); push type (400 InvalidPushType, also for
/// <c>mdm</c> without a certificate); topic allowed for the key or certificate (400 TopicDisallowed); priority
/// 10, 5 or 1 and not 10 for background (400 BadPriority); collapse id ≤ 64 bytes (400 BadCollapseId);
/// expiration an integer (400 BadExpirationDate); payload present (400 PayloadEmpty), ≤ 4096 bytes, 5120
/// for voip (413 PayloadTooLarge), a JSON object (400 <b>BadPayload</b>: Apple documents no reason for
/// malformed JSON, so the fake uses this one; also for an <c>mdm</c> payload other than exactly
/// <c>{"mdm":"..."}</c>). Then, for a valid request: <see cref="FailNext"/>, the
/// token's <see cref="Script"/>, <see cref="TooManyRequests"/>, and the device registry (410 Unregistered or
/// ExpiredToken,
/// 400 BadDeviceToken for the other environment or unknown tokens in strict mode, 400
/// DeviceTokenNotForTopic); otherwise 200. A would-be 200 may then meet an injected fault (<see cref="InjectFaults"/>:
/// 503, stream or connection reset, stall, GOAWAY every N streams), seeded and counted.
/// </remarks>
public sealed class FakeApnsServer : IAsyncDisposable
{
    /// <summary>The reason the fake answers for a body that is not a JSON object (Apple documents none).</summary>
    public const string BadPayloadReason = "BadPayload";

    private const int MaxPayload = 4096;
    private const int MaxVoipPayload = 5120;
    private const int MaxCollapseIdBytes = 64;
    private const string DevicePath = "/3/device";

    private static readonly string[] UniqueHeaders =
        ["authorization", "apns-id", "apns-topic", "apns-push-type", "apns-priority", "apns-expiration", "apns-collapse-id"];

    private static readonly ConcurrentDictionary<string, byte[]> ReasonBodies = new(StringComparer.Ordinal);

    private readonly FakeApnsServerOptions _options;
    private readonly TimeProvider _time;
    private readonly WebApplication _app;
    private readonly FakeApnsAuth _auth;
    private readonly FakeApnsCertificateAuth? _certificateAuth;
    private readonly RequestRecorder<FakeApnsRequest> _recorder;
    private readonly ConcurrentDictionary<string, Device> _devices = new(StringComparer.OrdinalIgnoreCase);
    private readonly ConcurrentDictionary<string, (DateTimeOffset Since, string Reason)> _unregistered = new(StringComparer.OrdinalIgnoreCase);
    private readonly ConcurrentDictionary<string, ConcurrentQueue<Injected>> _scripts = new(StringComparer.OrdinalIgnoreCase);
    private readonly ConcurrentDictionary<string, TooManyState> _tooMany = new(StringComparer.OrdinalIgnoreCase);
    private readonly List<ECDsa> _keys = [];
    private volatile bool _hasDeviceRules;
    private volatile bool _hasScripts;
    private volatile Injected? _failNext;
    private int _failNextRemaining;
    private int _goAwayEvery;
    private long _answered;
    private long _goAways;
    private int _disposed;
    private readonly ConcurrentDictionary<string, int>? _receipts;
    private volatile FaultPlan? _faultPlan;
    private long _faultSequence;
    private long _faultsUnavailable;
    private long _faultsStreamReset;
    private long _faultsConnectionReset;
    private long _faultsStall;

    private FakeApnsServer(FakeApnsServerOptions options, TimeProvider time, X509Certificate2? certificate)
    {
        _options = options;
        _time = time;
        _auth = new FakeApnsAuth(options);
        if (options.ClientCertificateAuthorities.Count > 0 || options.RequireClientCertificate)
        {
            if (certificate is null)
            {
                throw new ArgumentException("Certificate auth needs UseTls.", nameof(options));
            }

            _certificateAuth = new FakeApnsCertificateAuth([.. options.ClientCertificateAuthorities], options.Environment);
        }

        _recorder = new RequestRecorder<FakeApnsRequest>(options.RecordRequests, options.MaxRecordedRequests);
        _receipts = options.KeepReceipts ? new ConcurrentDictionary<string, int>(StringComparer.OrdinalIgnoreCase) : null;
        if (options.Faults is { } faults)
        {
            InjectFaults(faults);
        }
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
            kestrel.Limits.MaxRequestBodySize = null; // the handler stops reading past the APNs limit itself
            kestrel.Limits.MinRequestBodyDataRate = null;
            kestrel.Limits.Http2.MaxStreamsPerConnection = options.MaxStreamsPerConnection;
            kestrel.Listen(IPAddress.Loopback, options.Port, listen =>
            {
                listen.Protocols = HttpProtocols.Http2; // h2c with prior knowledge without TLS, ALPN h2 with it
                if (certificate is not null && _certificateAuth is null)
                {
                    listen.UseHttps(certificate);
                }
                else if (certificate is not null)
                {
                    listen.UseHttps(new HttpsConnectionAdapterOptions
                    {
                        ServerCertificate = certificate,
                        ClientCertificateMode = options.RequireClientCertificate ? ClientCertificateMode.RequireCertificate : ClientCertificateMode.AllowCertificate,

                        // Judged per request (issuer, validity by the fake's clock, topics), answering Apple's reasons.
                        ClientCertificateValidation = static (_, _, _) => true,
                        CheckCertificateRevocation = false,
                    });
                }
            });
        });

        _app = builder.Build();
        ((IApplicationBuilder)_app).Run(HandleAsync);
    }

    /// <summary>The base URL, e.g. <c>http://127.0.0.1:50123</c> (no trailing slash): the provider's APNs URL.</summary>
    public string BaseUrl { get; private set; } = string.Empty;

    /// <summary><see cref="BaseUrl"/> as a URI.</summary>
    public Uri BaseAddress => new(BaseUrl);

    /// <summary>The self-signed server certificate in TLS mode (null for h2c).</summary>
    public X509Certificate2? Certificate { get; }

    /// <summary>The server certificate as PEM in TLS mode, for clients to trust explicitly (null for h2c).</summary>
    public string? CertificatePem { get; }

    /// <summary>The environment this server plays.</summary>
    public FakeApnsEnvironment Environment => _options.Environment;

    /// <summary>Requests answered 200 so far.</summary>
    public long AcceptedCount => _recorder.Accepted;

    /// <summary>Requests answered with an error so far.</summary>
    public long RejectedCount => _recorder.Rejected;

    /// <summary>The recorded requests, oldest first (empty when recording is off).</summary>
    public IReadOnlyList<FakeApnsRequest> Requests => _recorder.Snapshot();

    /// <summary>Starts a server on 127.0.0.1.</summary>
    /// <param name="options">Settings; defaults when null.</param>
    /// <param name="timeProvider">The clock for provider-token ages and request times (a FakeTimeProvider in tests).</param>
    /// <param name="cancellationToken">Cancels the start.</param>
    public static async Task<FakeApnsServer> StartAsync(FakeApnsServerOptions? options = null, TimeProvider? timeProvider = null, CancellationToken cancellationToken = default)
    {
        options ??= new FakeApnsServerOptions();
        ArgumentOutOfRangeException.ThrowIfNegative(options.Port);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(options.Port, 65535);
        ArgumentOutOfRangeException.ThrowIfLessThan(options.MaxStreamsPerConnection, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(options.MaxRecordedRequests, 1);

        var certificate = !options.UseTls ? null
            : options.ServerCertificate is { } given ? X509CertificateLoader.LoadPkcs12(given.Export(X509ContentType.Pkcs12), null)
            : SelfSignedCertificate.Create("CN=Herald fake APNs");
        var server = new FakeApnsServer(options, timeProvider ?? TimeProvider.System, certificate);
        try
        {
            await server._app.StartAsync(cancellationToken).ConfigureAwait(false);
            var addresses = server._app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>();
            var bound = addresses?.Addresses.FirstOrDefault() ?? throw new InvalidOperationException("Kestrel reported no address.");
            var port = new Uri(bound).Port;
            server.BaseUrl = string.Create(CultureInfo.InvariantCulture, $"{(certificate is null ? "http" : "https")}://127.0.0.1:{port}");
            return server;
        }
        catch
        {
            await server.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>Registers a token signing key (its public part is copied). <paramref name="topics"/>, when given, are the only topics it may push to.</summary>
    public void AddSigningKey(string teamId, string keyId, ECDsa key, params string[] topics)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(teamId);
        ArgumentException.ThrowIfNullOrWhiteSpace(keyId);
        ArgumentNullException.ThrowIfNull(key);
        var publicKey = ECDsa.Create(key.ExportParameters(includePrivateParameters: false));
        lock (_keys)
        {
            _keys.Add(publicKey);
        }

        _auth.AddKey(teamId, keyId, publicKey, topics);
    }

    /// <summary>Registers a token signing key from PEM (public key, or the <c>.p8</c> private key).</summary>
    public void AddSigningKey(string teamId, string keyId, string pem, params string[] topics)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(pem);
        using var key = ECDsa.Create();
        key.ImportFromPem(pem);
        AddSigningKey(teamId, keyId, key, topics);
    }

    /// <summary>Generates a P-256 key, registers it, and returns its private key as PEM (the content of a <c>.p8</c> file).</summary>
    public string GenerateSigningKey(string teamId, string keyId, params string[] topics)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        AddSigningKey(teamId, keyId, key, topics);
        return key.ExportPkcs8PrivateKeyPem();
    }

    /// <summary>Registers a device token for a topic and environment (see the device checks in the remarks).</summary>
    public void RegisterDevice(string token, string topic, FakeApnsEnvironment environment = FakeApnsEnvironment.Production)
    {
        ArgumentException.ThrowIfNullOrEmpty(token);
        ArgumentException.ThrowIfNullOrEmpty(topic);
        _devices[token] = new Device(topic, environment);
        _unregistered.TryRemove(token, out _);
        _hasDeviceRules = true;
    }

    /// <summary>The app was removed from the device: the token gets 410 Unregistered with <paramref name="since"/> as timestamp.</summary>
    public void Unregister(string token, DateTimeOffset since)
    {
        ArgumentException.ThrowIfNullOrEmpty(token);
        _unregistered[token] = (since, "Unregistered");
        _hasDeviceRules = true;
    }

    /// <summary>The token expired (the device was restored or the app reinstalled): 410 ExpiredToken with <paramref name="since"/> as timestamp.</summary>
    public void ExpireToken(string token, DateTimeOffset since)
    {
        ArgumentException.ThrowIfNullOrEmpty(token);
        _unregistered[token] = (since, "ExpiredToken");
        _hasDeviceRules = true;
    }

    /// <summary>Revokes a provider certificate (by SHA-1 thumbprint, as <see cref="X509Certificate2.Thumbprint"/>): it then gets 403 BadCertificate.</summary>
    public void RevokeCertificate(string thumbprint)
    {
        ArgumentException.ThrowIfNullOrEmpty(thumbprint);
        (_certificateAuth ?? throw new InvalidOperationException("The server does not do certificate auth.")).Revoke(thumbprint);
    }

    /// <summary>
    /// After every <paramref name="requests"/>-th answered request, the connection that carried it gets a graceful
    /// GOAWAY (as Apple does when it rotates servers): streams in flight finish, newer ones must go to a new
    /// connection. 0 turns it off. Kestrel sends GOAWAY without debug data, so no JSON reason accompanies it.
    /// </summary>
    public void GoAwayEvery(int requests)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(requests);
        Volatile.Write(ref _goAwayEvery, requests);
    }

    /// <summary>GOAWAY frames requested so far (see <see cref="GoAwayEvery"/>).</summary>
    public long GoAwayCount => Interlocked.Read(ref _goAways);

    /// <summary>
    /// Starts (or replaces, or with null stops) seeded fault injection: 503s, stream and connection resets, stalls and
    /// a GOAWAY every N streams (see <see cref="FakeApnsFaults"/>). The draw sequence (and <see cref="FakeApnsFaultCounts.Drawn"/>)
    /// restarts from the seed; the other counters in <see cref="FaultCounts"/> keep counting.
    /// </summary>
    public void InjectFaults(FakeApnsFaults? faults)
    {
        if (faults is null)
        {
            _faultPlan = null;
            GoAwayEvery(0);
            return;
        }

        faults.Validate();
        Interlocked.Exchange(ref _faultSequence, 0);
        _faultPlan = new FaultPlan(
            unchecked((ulong)faults.Seed),
            faults.ServiceUnavailableRate,
            faults.ServiceUnavailableRate + faults.StreamResetRate,
            faults.ServiceUnavailableRate + faults.StreamResetRate + faults.ConnectionResetRate,
            faults.ServiceUnavailableRate + faults.StreamResetRate + faults.ConnectionResetRate + faults.StallRate,
            faults.StallDuration);
        GoAwayEvery(faults.GoAwayEveryStreams);
    }

    /// <summary>The faults injected so far (a snapshot; GOAWAYs include those of <see cref="GoAwayEvery"/>).</summary>
    public FakeApnsFaultCounts FaultCounts => new(
        Interlocked.Read(ref _faultSequence),
        Interlocked.Read(ref _faultsUnavailable),
        Interlocked.Read(ref _faultsStreamReset),
        Interlocked.Read(ref _faultsConnectionReset),
        Interlocked.Read(ref _faultsStall),
        GoAwayCount);

    /// <summary>
    /// With <see cref="FakeApnsServerOptions.KeepReceipts"/>: how many times each <c>apns-id</c> was delivered (accepted,
    /// including pushes delivered before an injected reset cut off their answer). A count above 1 is a duplicate on the
    /// device. Empty when receipts are off.
    /// </summary>
    public IReadOnlyDictionary<string, int> Receipts => _receipts is null
        ? new Dictionary<string, int>()
        : new Dictionary<string, int>(_receipts, StringComparer.OrdinalIgnoreCase);

    /// <summary>Deliveries of one <c>apns-id</c> so far (0 when never delivered or receipts are off).</summary>
    public int ReceiptCount(string apnsId) => _receipts is not null && _receipts.TryGetValue(apnsId, out var n) ? n : 0;

    /// <summary>Forgets the receipts (e.g. between the phases of a soak, so the ledger stays bounded).</summary>
    public void ClearReceipts() => _receipts?.Clear();

    /// <summary>
    /// Answers for the next valid requests to <paramref name="token"/>, consumed in order (status 200 accepts;
    /// 410 carries the current time as timestamp). Appends to what is already scripted.
    /// </summary>
    public void Script(string token, params (int Status, string Reason)[] responses)
    {
        ArgumentException.ThrowIfNullOrEmpty(token);
        ArgumentNullException.ThrowIfNull(responses);
        var queue = _scripts.GetOrAdd(token, static _ => new ConcurrentQueue<Injected>());
        foreach (var (status, reason) in responses)
        {
            queue.Enqueue(new Injected(status, reason, null));
        }

        _hasScripts = true;
    }

    /// <summary>Answers the next <paramref name="count"/> valid requests (any token) with this status, e.g. 503 ServiceUnavailable.</summary>
    public void FailNext(int count, int status, string reason, TimeSpan? retryAfter = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        _failNext = new Injected(status, reason, retryAfter);
        Volatile.Write(ref _failNextRemaining, count);
    }

    /// <summary>The next <paramref name="count"/> valid requests to <paramref name="token"/> get 429 TooManyRequests.</summary>
    public void TooManyRequests(string token, int count = 1, TimeSpan? retryAfter = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(token);
        _tooMany[token] = new TooManyState(count, retryAfter);
        _hasScripts = true;
    }

    /// <summary>Requests rejected with <paramref name="reason"/> so far.</summary>
    public long RejectedCountFor(string reason) => _recorder.RejectedFor(reason);

    /// <summary>A snapshot of the rejection counters by reason.</summary>
    public IReadOnlyDictionary<string, long> RejectedByReason() => _recorder.RejectedByReason();

    /// <summary>Forgets the recorded requests (counters stay).</summary>
    public void ClearRequests() => _recorder.Clear();

    /// <summary>Completes when <see cref="AcceptedCount"/> reaches <paramref name="count"/>.</summary>
    public Task WaitForAcceptedAsync(long count, CancellationToken cancellationToken) => _recorder.WaitForAcceptedAsync(count, cancellationToken);

    /// <summary>
    /// Completes with the first request matching <paramref name="predicate"/>: a recorded one, or the next
    /// to arrive (with recording off, only requests answered after this call are seen).
    /// </summary>
    public Task<FakeApnsRequest> WaitForRequestAsync(Func<FakeApnsRequest, bool> predicate, CancellationToken cancellationToken)
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
            // Graceful (GOAWAY) first; abort connections still open after a moment.
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
        _recorder.FailWaiters(new ObjectDisposedException(nameof(FakeApnsServer)));
        Certificate?.Dispose();
        lock (_keys)
        {
            foreach (var key in _keys)
            {
                key.Dispose();
            }

            _keys.Clear();
        }
    }

    private async Task HandleAsync(HttpContext context)
    {
        var request = context.Request;
        var headers = request.Headers;
        var receivedAt = _time.GetUtcNow();
        var path = request.Path.Value ?? string.Empty;
        var token = string.Empty;
        byte[]? body = null;
        var length = 0;
        try
        {
            Verdict verdict;
            if (!HttpMethods.IsPost(request.Method))
            {
                verdict = new(405, "MethodNotAllowed");
            }
            else if (!TryGetToken(path, out token))
            {
                verdict = new(404, "BadPath");
            }
            else
            {
                body = ArrayPool<byte>.Shared.Rent(MaxVoipPayload + 1);
                length = await ReadBodyAsync(request.Body, body, context.RequestAborted).ConfigureAwait(false);
                verdict = Decide(headers, token, body.AsSpan(0, length), receivedAt, context.Connection.ClientCertificate);
            }

            var apnsId = Single(headers["apns-id"]);
            if (string.IsNullOrEmpty(apnsId) || verdict.Reason is "BadMessageId" or "DuplicateHeaders")
            {
                apnsId = Guid.NewGuid().ToString("D").ToUpperInvariant(); // Apple generates upper-case UUIDs
            }

            var fault = Fault.None;
            var plan = _faultPlan;
            if (verdict.Status == 200 && plan is not null)
            {
                fault = plan.Draw(Interlocked.Increment(ref _faultSequence));
                if (fault == Fault.ServiceUnavailable)
                {
                    Interlocked.Increment(ref _faultsUnavailable);
                    verdict = new(503, "ServiceUnavailable");
                }
            }

            // Record before answering: a client that has its response must find the request recorded.
            var record = _recorder.WantsRecord ? Record(request, path, token, body, length, receivedAt, verdict, apnsId) : null;
            _recorder.Complete(verdict.Status == 200, verdict.Status, verdict.Reason, record);
            if (verdict.Status == 200)
            {
                _receipts?.AddOrUpdate(apnsId, 1, static (_, n) => n + 1);
            }

            switch (fault)
            {
                case Fault.StreamReset:
                    // Delivered, but the answer never comes: Kestrel resets this stream (RST_STREAM) only.
                    Interlocked.Increment(ref _faultsStreamReset);
                    context.Abort();
                    return;
                case Fault.ConnectionReset:
                    Interlocked.Increment(ref _faultsConnectionReset);
                    AbortConnection(context);
                    return;
                case Fault.Stall:
                    Interlocked.Increment(ref _faultsStall);
                    try
                    {
                        await Task.Delay(plan!.StallDuration, _time, context.RequestAborted).ConfigureAwait(false);
                    }
                    catch (OperationCanceledException)
                    {
                        return; // the client gave up (or the server stops)
                    }

                    break;
            }

            await WriteAsync(context.Response, verdict, apnsId).ConfigureAwait(false);
            var every = Volatile.Read(ref _goAwayEvery);
            if (every > 0 && Interlocked.Increment(ref _answered) % every == 0
                && context.Features.Get<IConnectionLifetimeNotificationFeature>() is { } lifetime)
            {
                Interlocked.Increment(ref _goAways);
                lifetime.RequestClose();
            }
        }
        finally
        {
            if (body is not null)
            {
                ArrayPool<byte>.Shared.Return(body);
            }
        }
    }

    /// <summary>Drops the whole TCP connection with an RST (linger 0), failing every stream in flight on it.</summary>
    private static void AbortConnection(HttpContext context)
    {
        if (context.Features.Get<IConnectionSocketFeature>()?.Socket is { } socket)
        {
            try
            {
                socket.LingerState = new LingerOption(enable: true, seconds: 0);
            }
            catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
            {
                // Already closing: the abort below still ends it.
            }
        }

        if (context.Features.Get<IConnectionLifetimeFeature>() is { } connection)
        {
            connection.Abort();
        }
        else
        {
            context.Abort();
        }
    }

    private Verdict Decide(IHeaderDictionary headers, string token, ReadOnlySpan<byte> body, DateTimeOffset now, X509Certificate2? clientCertificate)
    {
        foreach (var name in UniqueHeaders)
        {
            if (headers[name].Count > 1)
            {
                return new(400, "DuplicateHeaders");
            }
        }

        if (token.Length == 0)
        {
            return new(400, "MissingDeviceToken");
        }

        if (!IsHexToken(token))
        {
            return new(400, "BadDeviceToken");
        }

        var apnsId = Single(headers["apns-id"]);
        if (apnsId is not null && !Guid.TryParseExact(apnsId, "D", out _))
        {
            return new(400, "BadMessageId");
        }

        var topic = Single(headers["apns-topic"]);
        var pushType = Single(headers["apns-push-type"]);
        var certificateAuth = _certificateAuth is not null && clientCertificate is not null;
        if (certificateAuth)
        {
            // Certificate auth: the connection's certificate speaks for the provider; no token is needed.
            var (status, reason) = _certificateAuth!.Check(clientCertificate!, now, out var topics);
            if (status != 0)
            {
                return new(status, reason);
            }

            if (string.IsNullOrEmpty(topic) && topics.Count == 1)
            {
                topic = topics[0]; // a single-topic certificate's topic is the default
            }

            if (string.IsNullOrEmpty(topic))
            {
                return new(400, "MissingTopic");
            }

            if (pushType is not null && !IsPushType(pushType))
            {
                return new(400, "InvalidPushType");
            }

            if (!topics.Contains(topic, StringComparer.Ordinal))
            {
                return new(400, "TopicDisallowed");
            }
        }
        else
        {
            var (authStatus, authReason) = _auth.Check(Single(headers.Authorization), now, out var key);
            if (authStatus != 0)
            {
                return new(authStatus, authReason);
            }

            if (string.IsNullOrEmpty(topic))
            {
                return new(400, "MissingTopic");
            }

            // MDM is certificate-only: a token-authenticated MDM push is not a valid push type.
            if (pushType is not null && (!IsPushType(pushType) || pushType == "mdm"))
            {
                return new(400, "InvalidPushType");
            }

            if (!key!.AllowsTopic(topic))
            {
                return new(400, "TopicDisallowed");
            }
        }

        var priority = Single(headers["apns-priority"]);
        if (priority is not null && (priority is not ("10" or "5" or "1") || (priority == "10" && pushType == "background")))
        {
            return new(400, "BadPriority");
        }

        var collapseId = Single(headers["apns-collapse-id"]);
        if (collapseId is not null && Encoding.UTF8.GetByteCount(collapseId) > MaxCollapseIdBytes)
        {
            return new(400, "BadCollapseId");
        }

        var expiration = Single(headers["apns-expiration"]);
        if (expiration is not null && !long.TryParse(expiration, NumberStyles.None, CultureInfo.InvariantCulture, out _))
        {
            return new(400, "BadExpirationDate");
        }

        if (body.IsEmpty)
        {
            return new(400, "PayloadEmpty");
        }

        if (body.Length > (pushType == "voip" ? MaxVoipPayload : MaxPayload))
        {
            return new(413, "PayloadTooLarge");
        }

        if (!IsJsonObject(body) || (pushType == "mdm" && !IsMdmPayload(body)))
        {
            return new(400, BadPayloadReason);
        }

        return Inject(token, topic, now) ?? new(200, null);
    }

    private Verdict? Inject(string token, string topic, DateTimeOffset now)
    {
        if (Volatile.Read(ref _failNextRemaining) > 0 && Interlocked.Decrement(ref _failNextRemaining) >= 0 && _failNext is { } failure)
        {
            return Answer(failure, now);
        }

        if (_hasScripts)
        {
            if (_scripts.TryGetValue(token, out var queue) && queue.TryDequeue(out var scripted))
            {
                return scripted.Status == 200 ? new(200, null) : Answer(scripted, now);
            }

            if (_tooMany.TryGetValue(token, out var throttle) && Interlocked.Decrement(ref throttle.Remaining) >= 0)
            {
                return new(429, "TooManyRequests", throttle.RetryAfter);
            }
        }

        if (_hasDeviceRules)
        {
            if (_unregistered.TryGetValue(token, out var gone))
            {
                return new(410, gone.Reason, null, gone.Since);
            }

            if (_devices.TryGetValue(token, out var device))
            {
                if (device.Environment != _options.Environment)
                {
                    return new(400, "BadDeviceToken");
                }

                if (!string.Equals(device.Topic, topic, StringComparison.Ordinal))
                {
                    return new(400, "DeviceTokenNotForTopic");
                }

                return null;
            }
        }

        return _options.StrictDeviceTokens ? new(400, "BadDeviceToken") : null;
    }

    private static Verdict Answer(Injected injected, DateTimeOffset now)
        => new(injected.Status, injected.Reason, injected.RetryAfter, injected.Status == 410 ? now : null);

    private static async Task WriteAsync(HttpResponse response, Verdict verdict, string apnsId)
    {
        response.StatusCode = verdict.Status;
        response.Headers["apns-id"] = apnsId;
        if (verdict.RetryAfter is { } retryAfter)
        {
            response.Headers.RetryAfter = ((long)Math.Ceiling(retryAfter.TotalSeconds)).ToString(CultureInfo.InvariantCulture);
        }

        if (verdict.Status == 200)
        {
            return;
        }

        var bytes = verdict.Timestamp is { } timestamp
            ? ErrorBody(verdict.Reason, timestamp)
            : ReasonBodies.GetOrAdd(verdict.Reason ?? string.Empty, static r => ErrorBody(r, null));
        response.ContentType = "application/json";
        response.ContentLength = bytes.Length;
        await response.Body.WriteAsync(bytes).ConfigureAwait(false);
    }

    private static byte[] ErrorBody(string? reason, DateTimeOffset? timestamp)
    {
        var buffer = new ArrayBufferWriter<byte>(96);
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            writer.WriteString("reason"u8, reason);
            if (timestamp is { } t)
            {
                writer.WriteNumber("timestamp"u8, t.ToUnixTimeMilliseconds());
            }

            writer.WriteEndObject();
        }

        return buffer.WrittenSpan.ToArray();
    }

    private static FakeApnsRequest Record(HttpRequest request, string path, string token, byte[]? body, int length, DateTimeOffset receivedAt, Verdict verdict, string apnsId)
    {
        var headers = new Dictionary<string, string>(request.Headers.Count, StringComparer.OrdinalIgnoreCase);
        foreach (var (name, values) in request.Headers)
        {
            headers[name.ToLowerInvariant()] = values.ToString();
        }

        return new FakeApnsRequest
        {
            Method = request.Method,
            Path = path,
            Token = token,
            Headers = headers,
            Payload = body is null ? null : Encoding.UTF8.GetString(body, 0, length),
            ReceivedAt = receivedAt,
            Status = verdict.Status,
            Reason = verdict.Reason,
            ApnsId = apnsId,
            ConnectionId = request.HttpContext.Connection.Id,
        };
    }

    private static async ValueTask<int> ReadBodyAsync(Stream stream, byte[] buffer, CancellationToken cancellationToken)
    {
        // Stop past the largest limit: the verdict only needs to know the payload is too large.
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

    private static bool TryGetToken(string path, out string token)
    {
        token = string.Empty;
        if (!path.StartsWith(DevicePath, StringComparison.Ordinal))
        {
            return false;
        }

        if (path.Length == DevicePath.Length || path.Length == DevicePath.Length + 1)
        {
            return path.Length == DevicePath.Length || path[^1] == '/'; // no token: MissingDeviceToken
        }

        if (path[DevicePath.Length] != '/' || path.IndexOf('/', DevicePath.Length + 1) >= 0)
        {
            return false;
        }

        token = path[(DevicePath.Length + 1)..];
        return true;
    }

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

    private static bool IsPushType(string value) => value is "alert" or "background" or "voip" or "mdm" or "location"
        or "complication" or "fileprovider" or "liveactivity" or "pushtotalk";

    private static bool IsJsonObject(ReadOnlySpan<byte> body)
    {
        try
        {
            var reader = new Utf8JsonReader(body);
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
            {
                return false;
            }

            reader.Skip();
            return !reader.Read();
        }
        catch (JsonException)
        {
            return false;
        }
    }

    /// <summary>Exactly <c>{"mdm":"&lt;PushMagic&gt;"}</c>: one property, a non-empty string.</summary>
    private static bool IsMdmPayload(ReadOnlySpan<byte> body)
    {
        try
        {
            var reader = new Utf8JsonReader(body);
            return reader.Read() && reader.TokenType == JsonTokenType.StartObject
                && reader.Read() && reader.TokenType == JsonTokenType.PropertyName && reader.ValueTextEquals("mdm"u8)
                && reader.Read() && reader.TokenType == JsonTokenType.String && reader.ValueSpan.Length > 0
                && reader.Read() && reader.TokenType == JsonTokenType.EndObject;
        }
        catch (JsonException)
        {
            return false;
        }
    }

    private static string? Single(StringValues values) => values.Count == 0 ? null : values[0];

    private enum Fault
    {
        None,
        ServiceUnavailable,
        StreamReset,
        ConnectionReset,
        Stall,
    }

    /// <summary>Cumulative thresholds of the fault rates; the n-th draw is a pure function of (seed, n).</summary>
    private sealed record FaultPlan(ulong Seed, double Unavailable, double StreamReset, double ConnectionReset, double Stall, TimeSpan StallDuration)
    {
        public Fault Draw(long n)
        {
            // SplitMix64 of (seed, n): stateless, so concurrent requests need no lock and a seed replays exactly.
            var z = unchecked(Seed * 0x9E3779B97F4A7C15UL + (ulong)n * 0xBF58476D1CE4E5B9UL);
            z = unchecked((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL);
            z = unchecked((z ^ (z >> 27)) * 0x94D049BB133111EBUL);
            z ^= z >> 31;
            var u = (z >> 11) * (1.0 / (1UL << 53));
            return u < Unavailable ? Fault.ServiceUnavailable
                : u < StreamReset ? Fault.StreamReset
                : u < ConnectionReset ? Fault.ConnectionReset
                : u < Stall ? Fault.Stall
                : Fault.None;
        }
    }

    private readonly record struct Verdict(int Status, string? Reason, TimeSpan? RetryAfter = null, DateTimeOffset? Timestamp = null);

    private sealed record Injected(int Status, string Reason, TimeSpan? RetryAfter);

    private sealed record Device(string Topic, FakeApnsEnvironment Environment);

    private sealed class TooManyState(int remaining, TimeSpan? retryAfter)
    {
        public int Remaining = remaining;

        public TimeSpan? RetryAfter { get; } = retryAfter;
    }
}
