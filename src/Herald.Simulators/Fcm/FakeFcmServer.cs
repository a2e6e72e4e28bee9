using System.Buffers;
using System.Collections.Concurrent;
using System.Globalization;
using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using Herald.Simulators.Common;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;

namespace Herald.Simulators.Fcm;

/// <summary>
/// A faithful fake of FCM HTTP v1 and of Google's OAuth2 token endpoint on 127.0.0.1. The token endpoint
/// (<see cref="TokenUrl"/>, <c>POST /token</c>) exchanges RS256 JWT-bearer assertions of registered service
/// accounts for access tokens; the send endpoint (<c>POST /v1/projects/{project}/messages:send</c>) checks
/// the bearer token, validates the message like FCM and answers Google's error JSON
/// <c>{"error":{"code","message","status","details":[{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode"}]}}</c>.
/// A registration-token registry, scripted answers and fault injection let tests drive every outcome;
/// requests are recorded (optionally, bounded) and can be awaited.
/// </summary>
/// <remarks>
/// <para>Token endpoint checks (400 with <c>{"error","error_description"}</c>): grant_type present
/// (invalid_request) and the JWT-bearer grant (unsupported_grant_type); assertion present (invalid_request);
/// a well-formed RS256 JWT (invalid_grant "Invalid JWT Signature."); <c>iss</c> a registered, unrevoked account
/// (invalid_grant "account not found"); <c>kid</c>, when sent, the account's key id and a valid signature
/// (invalid_grant); <c>aud</c> = <see cref="TokenUrl"/> or one of Google's token-endpoint audiences
/// (<c>https://oauth2.googleapis.com/token</c>, which Google.Apis.Auth always sends; invalid_grant otherwise); <c>iat</c>/<c>exp</c> present, exp ≤ iat + 3600,
/// not expired, iat not in the future (invalid_grant); a scope (invalid_scope). Otherwise
/// <c>{"access_token","expires_in","token_type":"Bearer"}</c>.</para>
/// <para>Send endpoint checks, in order (the first failing one answers): path (404 NOT_FOUND); bearer token
/// present and issued here, unexpired, account not revoked (401 UNAUTHENTICATED, no FcmError detail); a token
/// scope of firebase.messaging or cloud-platform (403 PERMISSION_DENIED); the account may send for the
/// project (403 PERMISSION_DENIED); the body (400 INVALID_ARGUMENT with FcmError INVALID_ARGUMENT: JSON,
/// unknown field names, field types, string data values, exactly one of token/topic/condition,
/// android.priority normal|high, android.ttl <c>^\d+(\.\d{1,9})?s$</c> and ≤ 4 weeks, size ≤
/// <see cref="FakeFcmServerOptions.MaxMessageBytes"/>). Then, for a valid request: <see cref="FailNext"/>,
/// the token's <see cref="Script(string, ValueTuple{int, string}[])"/>, the registry (404 UNREGISTERED after
/// <see cref="Unregister"/>, 403 SENDER_ID_MISMATCH for a token registered to another project, 400
/// INVALID_ARGUMENT for unknown tokens in strict mode); otherwise 200 <c>{"name":"projects/{p}/messages/{id}"}</c>.</para>
/// </remarks>
public sealed class FakeFcmServer : IAsyncDisposable
{
    /// <summary>The OAuth2 scope FCM requires.</summary>
    public const string MessagingScope = FakeFcmAuth.MessagingScope;

    /// <summary>The <c>@type</c> of FCM's error detail.</summary>
    public const string FcmErrorType = "type.googleapis.com/google.firebase.fcm.v1.FcmError";

    private const int MaxBodyRead = 64 * 1024;
    private const string ProjectsPrefix = "/v1/projects/";
    private const string SendSuffix = "/messages:send";

    private static readonly JsonWriterOptions WriterOptions = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    private static readonly HashSet<string> FcmErrorCodes =
    [
        "UNSPECIFIED_ERROR", "INVALID_ARGUMENT", "UNREGISTERED", "SENDER_ID_MISMATCH", "QUOTA_EXCEEDED",
        "UNAVAILABLE", "INTERNAL", "THIRD_PARTY_AUTH_ERROR", "APNS_AUTH_ERROR",
    ];

    private readonly FakeFcmServerOptions _options;
    private readonly TimeProvider _time;
    private volatile FakeFaultMix? _faults;
    private readonly WebApplication _app;
    private readonly FakeFcmAuth _auth;
    private readonly RequestRecorder<FakeFcmRequest> _recorder;
    private readonly ConcurrentDictionary<string, string> _registered = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, byte> _unregistered = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, ConcurrentQueue<Injected>> _scripts = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, Injected> _accountFaults = new(StringComparer.Ordinal);
    private readonly List<RSA> _keys = [];
    private volatile bool _hasRegistry;
    private volatile bool _hasScripts;
    private volatile Injected? _failNext;
    private int _failNextRemaining;
    private int _failTokenRemaining;
    private int _failTokenStatus;
    private long _messageCounter;
    private long _tokenRequests;
    private long _tokensIssued;
    private int _accountCounter;
    private int _disposed;

    private FakeFcmServer(FakeFcmServerOptions options, TimeProvider time, X509Certificate2? certificate)
    {
        _options = options;
        _time = time;
        _auth = new FakeFcmAuth(options);
        _recorder = new RequestRecorder<FakeFcmRequest>(options.RecordRequests, options.MaxRecordedRequests);
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
            kestrel.Limits.MaxRequestBodySize = null; // the handler stops reading past its own limit
            kestrel.Limits.MinRequestBodyDataRate = null;
            kestrel.Limits.Http2.MaxStreamsPerConnection = options.MaxStreamsPerConnection;
            kestrel.Listen(IPAddress.Loopback, options.Port, listen =>
            {
                if (certificate is null)
                {
                    listen.Protocols = HttpProtocols.Http2; // h2c with prior knowledge
                }
                else
                {
                    listen.Protocols = HttpProtocols.Http1AndHttp2; // ALPN, as Google's endpoints
                    listen.UseHttps(certificate);
                }
            });
        });

        _app = builder.Build();
        ((IApplicationBuilder)_app).Run(HandleAsync);
    }

    /// <summary>The base URL, e.g. <c>http://127.0.0.1:50123</c> (no trailing slash): the provider's FCM base URL.</summary>
    public string BaseUrl { get; private set; } = string.Empty;

    /// <summary><see cref="BaseUrl"/> as a URI.</summary>
    public Uri BaseAddress => new(BaseUrl);

    /// <summary>The token endpoint (<c>{BaseUrl}/token</c>): the <c>token_uri</c> of the accounts it creates and the <c>aud</c> it requires.</summary>
    public string TokenUrl => BaseUrl + "/token";

    /// <summary>The self-signed server certificate in TLS mode (null for h2c).</summary>
    public X509Certificate2? Certificate { get; }

    /// <summary>The server certificate as PEM in TLS mode, for clients to trust explicitly (null for h2c).</summary>
    public string? CertificatePem { get; }

    /// <summary>Send requests answered 200 so far.</summary>
    public long AcceptedCount => _recorder.Accepted;

    /// <summary>Send requests answered with an error so far.</summary>
    public long RejectedCount => _recorder.Rejected;

    /// <summary>Token-endpoint requests so far (issued or refused).</summary>
    public long TokenRequests => Interlocked.Read(ref _tokenRequests);

    /// <summary>Access tokens issued so far.</summary>
    public long AccessTokensIssued => Interlocked.Read(ref _tokensIssued);

    /// <summary>The recorded send requests, oldest first (empty when recording is off).</summary>
    public IReadOnlyList<FakeFcmRequest> Requests => _recorder.Snapshot();

    /// <summary>Starts a server on 127.0.0.1.</summary>
    /// <param name="options">Settings; defaults when null.</param>
    /// <param name="timeProvider">The clock for assertion and access-token lifetimes and request times (a FakeTimeProvider in tests).</param>
    /// <param name="cancellationToken">Cancels the start.</param>
    public static async Task<FakeFcmServer> StartAsync(FakeFcmServerOptions? options = null, TimeProvider? timeProvider = null, CancellationToken cancellationToken = default)
    {
        options ??= new FakeFcmServerOptions();
        ArgumentOutOfRangeException.ThrowIfNegative(options.Port);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(options.Port, 65535);
        ArgumentOutOfRangeException.ThrowIfLessThan(options.MaxStreamsPerConnection, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(options.MaxRecordedRequests, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(options.MaxMessageBytes, 1);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(options.AccessTokenLifetime, TimeSpan.Zero);

        var certificate = options.UseTls ? SelfSignedCertificate.Create("CN=Herald fake FCM") : null;
        var server = new FakeFcmServer(options, timeProvider ?? TimeProvider.System, certificate);
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

    /// <summary>
    /// Generates an RSA key for a new service account of <paramref name="projectId"/>, registers it, and returns the
    /// service-account key JSON as the Google Cloud console gives it (<c>type</c>, <c>project_id</c>, <c>private_key_id</c>,
    /// <c>private_key</c>, <c>client_email</c>, <c>client_id</c>, <c>auth_uri</c>, <c>token_uri</c> = <see cref="TokenUrl"/>).
    /// </summary>
    public string CreateServiceAccount(string projectId, string? clientEmail = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(projectId);
        var n = Interlocked.Increment(ref _accountCounter);
        clientEmail ??= string.Create(CultureInfo.InvariantCulture, $"herald-{n}@{projectId}.iam.gserviceaccount.com");
        Span<byte> id = stackalloc byte[20];
        RandomNumberGenerator.Fill(id);
        var keyId = Convert.ToHexStringLower(id);
        using var key = RSA.Create(2048);
        AddServiceAccount(clientEmail, projectId, key, keyId);

        var buffer = new ArrayBufferWriter<byte>(2048);
        using (var writer = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true, Encoder = WriterOptions.Encoder }))
        {
            writer.WriteStartObject();
            writer.WriteString("type", "service_account");
            writer.WriteString("project_id", projectId);
            writer.WriteString("private_key_id", keyId);
            writer.WriteString("private_key", key.ExportPkcs8PrivateKeyPem() + "\n");
            writer.WriteString("client_email", clientEmail);
            writer.WriteString("client_id", string.Create(CultureInfo.InvariantCulture, $"1{n:D20}"));
            writer.WriteString("auth_uri", "https://accounts.google.com/o/oauth2/auth");
            writer.WriteString("token_uri", TokenUrl);
            writer.WriteString("universe_domain", "googleapis.com");
            writer.WriteEndObject();
        }

        return Encoding.UTF8.GetString(buffer.WrittenSpan);
    }

    /// <summary>Registers a service account (its public key is copied) that may send for <paramref name="projectId"/>.</summary>
    public void AddServiceAccount(string clientEmail, string projectId, RSA key, string? privateKeyId = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(clientEmail);
        ArgumentException.ThrowIfNullOrWhiteSpace(projectId);
        ArgumentNullException.ThrowIfNull(key);
        var publicKey = RSA.Create(key.ExportParameters(includePrivateParameters: false));
        lock (_keys)
        {
            _keys.Add(publicKey);
        }

        _auth.AddAccount(clientEmail, projectId, publicKey, privateKeyId);
    }

    /// <summary>Lets a registered account also send for <paramref name="projectId"/> (an IAM grant on another project).</summary>
    public void GrantProject(string clientEmail, string projectId)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(projectId);
        if (!_auth.GrantProject(clientEmail, projectId))
        {
            throw new InvalidOperationException("No service account " + clientEmail + " is registered.");
        }
    }

    /// <summary>
    /// Disables an account (as deleting its key would): its token requests get invalid_grant and its access
    /// tokens 401 UNAUTHENTICATED.
    /// </summary>
    public void RevokeServiceAccount(string clientEmail)
    {
        if (!_auth.Revoke(clientEmail))
        {
            throw new InvalidOperationException("No service account " + clientEmail + " is registered.");
        }
    }

    /// <summary>Enables a revoked account again (its key restored): token requests succeed and new access tokens work.</summary>
    public void RestoreServiceAccount(string clientEmail)
    {
        if (!_auth.Restore(clientEmail))
        {
            throw new InvalidOperationException("No service account " + clientEmail + " is registered.");
        }
    }

    /// <summary>
    /// From now on, every authenticated send of <paramref name="clientEmail"/> (whatever the target) is answered with this
    /// error, e.g. 401 THIRD_PARTY_AUTH_ERROR (the APNs key uploaded to Firebase was revoked) or 403 PERMISSION_DENIED
    /// (the account lost its IAM role), until <see cref="ClearServiceAccountFault"/>. Other accounts are not affected.
    /// </summary>
    public void FaultServiceAccount(string clientEmail, int status, string errorCode)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(clientEmail);
        ArgumentException.ThrowIfNullOrEmpty(errorCode);
        ArgumentOutOfRangeException.ThrowIfLessThan(status, 400);
        _accountFaults[clientEmail] = new Injected(status, errorCode, null);
    }

    /// <summary>Ends what <see cref="FaultServiceAccount"/> started.</summary>
    public void ClearServiceAccountFault(string clientEmail) => _accountFaults.TryRemove(clientEmail, out _);

    /// <summary>Forgets every access token issued so far: their next use gets 401 UNAUTHENTICATED (a revocation, or Google expiring them early).</summary>
    public void ExpireAccessTokens() => _auth.ExpireAccessTokens();

    /// <summary>Registers a registration token issued to the app of sender <paramref name="senderProjectId"/>; sends from other projects get 403 SENDER_ID_MISMATCH.</summary>
    public void RegisterToken(string token, string senderProjectId)
    {
        ArgumentException.ThrowIfNullOrEmpty(token);
        ArgumentException.ThrowIfNullOrEmpty(senderProjectId);
        _registered[token] = senderProjectId;
        _unregistered.TryRemove(token, out _);
        _hasRegistry = true;
    }

    /// <summary>The app was uninstalled or the token expired: sends to it get 404 UNREGISTERED.</summary>
    public void Unregister(string token)
    {
        ArgumentException.ThrowIfNullOrEmpty(token);
        _unregistered[token] = 0;
        _hasRegistry = true;
    }

    /// <summary>
    /// Answers for the next valid requests to <paramref name="token"/>, consumed in order (status 200 accepts).
    /// An FCM error code (UNREGISTERED, QUOTA_EXCEEDED, …) is answered with its FcmError detail; a Google status name
    /// (UNAUTHENTICATED, PERMISSION_DENIED, …) without one. Appends to what is already scripted.
    /// </summary>
    public void Script(string token, params (int Status, string ErrorCode)[] responses)
    {
        ArgumentNullException.ThrowIfNull(responses);
        Script(token, responses.Select(static r => (r.Status, r.ErrorCode, (TimeSpan?)null)).ToArray());
    }

    /// <summary>As <see cref="Script(string, ValueTuple{int, string}[])"/>, each answer with an optional <c>Retry-After</c>.</summary>
    public void Script(string token, params (int Status, string ErrorCode, TimeSpan? RetryAfter)[] responses)
    {
        ArgumentException.ThrowIfNullOrEmpty(token);
        ArgumentNullException.ThrowIfNull(responses);
        var queue = _scripts.GetOrAdd(token, static _ => new ConcurrentQueue<Injected>());
        foreach (var (status, errorCode, retryAfter) in responses)
        {
            queue.Enqueue(new Injected(status, errorCode, retryAfter));
        }

        _hasScripts = true;
    }

    /// <summary>Answers the next <paramref name="count"/> valid requests (any target) with this error, e.g. 503 UNAVAILABLE.</summary>
    public void FailNext(int count, int status, string errorCode, TimeSpan? retryAfter = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        ArgumentException.ThrowIfNullOrEmpty(errorCode);
        _failNext = new Injected(status, errorCode, retryAfter);
        Volatile.Write(ref _failNextRemaining, count);
    }

    /// <summary>
    /// Answers the next <paramref name="count"/> token requests with <paramref name="status"/> (an outage of Google's
    /// token endpoint: <c>{"error":"internal_failure"}</c> for 5xx, <c>{"error":"invalid_request"}</c> otherwise), whatever they carry.
    /// </summary>
    public void FailTokenRequests(int count, int status = 503)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        ArgumentOutOfRangeException.ThrowIfLessThan(status, 400);
        Volatile.Write(ref _failTokenStatus, status);
        Volatile.Write(ref _failTokenRemaining, count);
    }

    /// <summary>Send requests rejected with <paramref name="reason"/> (an FcmError code, or the status when there is none) so far.</summary>
    public long RejectedCountFor(string reason) => _recorder.RejectedFor(reason);

    /// <summary>A snapshot of the rejection counters by reason.</summary>
    public IReadOnlyDictionary<string, long> RejectedByReason() => _recorder.RejectedByReason();

    /// <summary>Forgets the recorded requests (counters stay).</summary>
    public void ClearRequests() => _recorder.Clear();

    /// <summary>Completes when <see cref="AcceptedCount"/> reaches <paramref name="count"/>.</summary>
    public Task WaitForAcceptedAsync(long count, CancellationToken cancellationToken) => _recorder.WaitForAcceptedAsync(count, cancellationToken);

    /// <summary>Completes when <see cref="TokenRequests"/> reaches <paramref name="count"/>.</summary>
    public Task WaitForTokenRequestsAsync(long count, CancellationToken cancellationToken) => _recorder.WaitForCountAsync(() => TokenRequests, count, cancellationToken);

    /// <summary>
    /// Completes with the first send request matching <paramref name="predicate"/>: a recorded one, or the next
    /// to arrive (with recording off, only requests answered after this call are seen).
    /// </summary>
    public Task<FakeFcmRequest> WaitForRequestAsync(Func<FakeFcmRequest, bool> predicate, CancellationToken cancellationToken)
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
        _recorder.FailWaiters(new ObjectDisposedException(nameof(FakeFcmServer)));
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

    private Task HandleAsync(HttpContext context)
    {
        var path = context.Request.Path.Value ?? string.Empty;
        if (path == "/token")
        {
            return HandleTokenAsync(context);
        }

        return HandleSendAsync(context, path);
    }

    private async Task HandleTokenAsync(HttpContext context)
    {
        var request = context.Request;
        FakeFcmAuth.TokenVerdict verdict;
        if (!HttpMethods.IsPost(request.Method))
        {
            verdict = FakeFcmAuth.TokenVerdict.Refuse("invalid_request", "The token endpoint accepts POST only.");
        }
        else if (!request.HasFormContentType)
        {
            verdict = FakeFcmAuth.TokenVerdict.Refuse("invalid_request", "Expected application/x-www-form-urlencoded.");
        }
        else
        {
            var form = await request.ReadFormAsync(context.RequestAborted).ConfigureAwait(false);
            verdict = _auth.Exchange(Single(form["grant_type"]), Single(form["assertion"]), TokenUrl, _time.GetUtcNow());
        }

        if (Volatile.Read(ref _failTokenRemaining) > 0 && Interlocked.Decrement(ref _failTokenRemaining) >= 0)
        {
            var status = Volatile.Read(ref _failTokenStatus);
            verdict = status >= 500
                ? new FakeFcmAuth.TokenVerdict(status, "internal_failure", "Backend Error", null)
                : new FakeFcmAuth.TokenVerdict(status, "invalid_request", "Injected failure", null);
        }

        Interlocked.Increment(ref _tokenRequests);
        if (verdict.Token is not null)
        {
            Interlocked.Increment(ref _tokensIssued);
        }

        _recorder.WakeCountWaiters();

        var response = context.Response;
        response.StatusCode = verdict.Status;
        response.ContentType = "application/json; charset=utf-8";
        response.Headers.CacheControl = "no-cache, no-store, max-age=0, must-revalidate";
        response.Headers.Pragma = "no-cache";
        var buffer = new ArrayBufferWriter<byte>(256);
        using (var writer = new Utf8JsonWriter(buffer, WriterOptions))
        {
            writer.WriteStartObject();
            if (verdict.Token is { } token)
            {
                writer.WriteString("access_token"u8, token.Value);
                writer.WriteNumber("expires_in"u8, (long)_options.AccessTokenLifetime.TotalSeconds);
                writer.WriteString("token_type"u8, "Bearer"u8);
            }
            else
            {
                writer.WriteString("error"u8, verdict.Error);
                writer.WriteString("error_description"u8, verdict.Description);
            }

            writer.WriteEndObject();
        }

        response.ContentLength = buffer.WrittenCount;
        await response.Body.WriteAsync(buffer.WrittenMemory, context.RequestAborted).ConfigureAwait(false);
    }

    private async Task HandleSendAsync(HttpContext context, string path)
    {
        var request = context.Request;
        var receivedAt = _time.GetUtcNow();
        byte[]? body = null;
        var length = 0;
        try
        {
            Verdict verdict;
            FakeFcmValidator.Target target = default;
            var project = TryGetProject(path);
            if (!HttpMethods.IsPost(request.Method) || project is null)
            {
                verdict = Verdict.Error(404, "NOT_FOUND", "The requested URL was not found on this server.");
            }
            else
            {
                body = ArrayPool<byte>.Shared.Rent(MaxBodyRead + 1);
                length = await ReadBodyAsync(request.Body, body, context.RequestAborted).ConfigureAwait(false);
                var invalid = length > MaxBodyRead
                    ? "Message is too big"
                    : FakeFcmValidator.Validate(body.AsSpan(0, length), _options.MaxMessageBytes, out target);
                var auth = _auth.Authorize(Single(request.Headers.Authorization), project, receivedAt);
                verdict = auth.Status != 0 ? Verdict.Denied(auth)
                    : !_accountFaults.IsEmpty && _accountFaults.TryGetValue(auth.Token!.Account.ClientEmail, out var accountFault) ? Answer(accountFault)
                    : invalid is not null ? Verdict.Error(400, "INVALID_ARGUMENT", invalid, "INVALID_ARGUMENT")
                    : Decide(target, project);
            }

            var fault = verdict.Status == 200 && !target.ValidateOnly && _faults is { } mix ? mix.Draw() : FakeFault.None;
            if (fault == FakeFault.Unavailable)
            {
                verdict = Verdict.Error(503, "UNAVAILABLE", "The service is currently unavailable.", "UNAVAILABLE");
            }
            else if (fault == FakeFault.Stall)
            {
                await Task.Delay(_faults!.StallDuration, _time, context.RequestAborted).ConfigureAwait(false);
            }

            string? name = null;
            if (verdict.Status == 200)
            {
                name = target.ValidateOnly
                    ? "projects/" + project + "/messages/fake_message_id"
                    : string.Create(CultureInfo.InvariantCulture, $"projects/{project}/messages/0:{receivedAt.ToUnixTimeMilliseconds() * 1000}%{Interlocked.Increment(ref _messageCounter):x16}");
            }

            // Record before answering: a client that has its response must find the request recorded.
            var record = _recorder.WantsRecord ? Record(request, path, project, body, length, receivedAt, verdict, target, name) : null;
            _recorder.Complete(verdict.Status == 200, verdict.Status, verdict.ErrorCode ?? verdict.StatusName, record);
            if (fault == FakeFault.Reset)
            {
                context.Abort(); // delivered, then the stream is reset instead of answered
                return;
            }

            await WriteAsync(context.Response, verdict, name, context.RequestAborted).ConfigureAwait(false);
        }
        finally
        {
            if (body is not null)
            {
                ArrayPool<byte>.Shared.Return(body);
            }
        }
    }

    /// <summary>
    /// Injects a seeded mix of faults into sends the fake would accept (null: none): 503 UNAVAILABLE, delivered then
    /// reset, or answered after a stall on the fake's clock. <see cref="FakeFaultMix.Counts"/> says what was injected.
    /// </summary>
    public void InjectFaults(FakeFaultMix? faults) => _faults = faults;

    private Verdict Decide(FakeFcmValidator.Target target, string project)
    {
        if (Volatile.Read(ref _failNextRemaining) > 0 && Interlocked.Decrement(ref _failNextRemaining) >= 0 && _failNext is { } failure)
        {
            return Answer(failure);
        }

        if (target.Token is not { } token)
        {
            return Verdict.Ok; // topic and condition sends have no registry
        }

        if (_hasScripts && _scripts.TryGetValue(token, out var queue) && queue.TryDequeue(out var scripted))
        {
            return scripted.Status == 200 ? Verdict.Ok : Answer(scripted);
        }

        if (_hasRegistry)
        {
            if (_unregistered.ContainsKey(token))
            {
                return Verdict.Error(404, "NOT_FOUND", "Requested entity was not found.", "UNREGISTERED");
            }

            if (_registered.TryGetValue(token, out var sender))
            {
                return sender == project ? Verdict.Ok : Verdict.Error(403, "PERMISSION_DENIED", "SenderId mismatch", "SENDER_ID_MISMATCH");
            }
        }

        return _options.StrictRegistrationTokens
            ? Verdict.Error(400, "INVALID_ARGUMENT", "The registration token is not a valid FCM registration token", "INVALID_ARGUMENT")
            : Verdict.Ok;
    }

    private static Verdict Answer(Injected injected)
    {
        var statusName = StatusName(injected.Status);
        if (FcmErrorCodes.Contains(injected.ErrorCode))
        {
            return new Verdict(injected.Status, statusName, DefaultMessage(injected.ErrorCode, statusName), injected.ErrorCode, null, injected.RetryAfter);
        }

        // A Google status without an FcmError detail (UNAUTHENTICATED, PERMISSION_DENIED, …).
        var reason = injected.Status switch
        {
            401 => "ACCESS_TOKEN_EXPIRED",
            403 => "IAM_PERMISSION_DENIED",
            _ => null,
        };
        return new Verdict(injected.Status, injected.ErrorCode, DefaultMessage(injected.ErrorCode, statusName), null, reason, injected.RetryAfter);
    }

    private static string StatusName(int status) => status switch
    {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        500 => "INTERNAL",
        501 => "UNIMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "UNKNOWN",
    };

    private static string DefaultMessage(string code, string statusName) => code switch
    {
        "UNREGISTERED" => "Requested entity was not found.",
        "SENDER_ID_MISMATCH" => "SenderId mismatch",
        "INVALID_ARGUMENT" => "Request contains an invalid argument.",
        "QUOTA_EXCEEDED" => "Quota exceeded for quota metric 'Send requests' and limit 'Send requests per minute' of service 'fcm.googleapis.com'.",
        "UNAVAILABLE" => "The service is currently unavailable.",
        "INTERNAL" => "Internal error encountered.",
        "THIRD_PARTY_AUTH_ERROR" or "APNS_AUTH_ERROR" => "Auth error from APNS or Web Push Service",
        "UNAUTHENTICATED" => "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
        "PERMISSION_DENIED" => "The caller does not have permission",
        _ => statusName,
    };

    private static async Task WriteAsync(HttpResponse response, Verdict verdict, string? name, CancellationToken cancellationToken)
    {
        response.StatusCode = verdict.Status;
        response.ContentType = "application/json; charset=UTF-8";
        if (verdict.RetryAfter is { } retryAfter)
        {
            response.Headers.RetryAfter = ((long)Math.Ceiling(retryAfter.TotalSeconds)).ToString(CultureInfo.InvariantCulture);
        }

        var buffer = new ArrayBufferWriter<byte>(256);
        using (var writer = new Utf8JsonWriter(buffer, WriterOptions))
        {
            writer.WriteStartObject();
            if (verdict.Status == 200)
            {
                writer.WriteString("name"u8, name);
            }
            else
            {
                writer.WriteStartObject("error"u8);
                writer.WriteNumber("code"u8, verdict.Status);
                writer.WriteString("message"u8, verdict.Message);
                writer.WriteString("status"u8, verdict.StatusName);
                if (verdict.ErrorCode is not null || verdict.InfoReason is not null)
                {
                    writer.WriteStartArray("details"u8);
                    writer.WriteStartObject();
                    if (verdict.ErrorCode is not null)
                    {
                        writer.WriteString("@type"u8, FcmErrorType);
                        writer.WriteString("errorCode"u8, verdict.ErrorCode);
                    }
                    else
                    {
                        writer.WriteString("@type"u8, "type.googleapis.com/google.rpc.ErrorInfo"u8);
                        writer.WriteString("reason"u8, verdict.InfoReason);
                        writer.WriteString("domain"u8, "googleapis.com"u8);
                    }

                    writer.WriteEndObject();
                    writer.WriteEndArray();
                }

                writer.WriteEndObject();
            }

            writer.WriteEndObject();
        }

        response.ContentLength = buffer.WrittenCount;
        await response.Body.WriteAsync(buffer.WrittenMemory, cancellationToken).ConfigureAwait(false);
    }

    private static FakeFcmRequest Record(HttpRequest request, string path, string? project, byte[]? body, int length, DateTimeOffset receivedAt, Verdict verdict, FakeFcmValidator.Target target, string? name)
        => new()
        {
            Method = request.Method,
            Path = path,
            Project = project ?? string.Empty,
            Protocol = request.Protocol,
            Authorization = Single(request.Headers.Authorization),
            Body = body is null ? null : Encoding.UTF8.GetString(body, 0, Math.Min(length, MaxBodyRead)),
            Token = target.Token,
            Topic = target.Topic,
            Condition = target.Condition,
            ValidateOnly = target.ValidateOnly,
            ReceivedAt = receivedAt,
            Status = verdict.Status,
            ErrorStatus = verdict.StatusName,
            ErrorCode = verdict.ErrorCode,
            ErrorMessage = verdict.Message,
            MessageName = name,
        };

    private static string? TryGetProject(string path)
    {
        if (!path.StartsWith(ProjectsPrefix, StringComparison.Ordinal) || !path.EndsWith(SendSuffix, StringComparison.Ordinal))
        {
            return null;
        }

        var project = path[ProjectsPrefix.Length..^SendSuffix.Length];
        return project.Length == 0 || project.Contains('/', StringComparison.Ordinal) ? null : project;
    }

    private static async ValueTask<int> ReadBodyAsync(Stream stream, byte[] buffer, CancellationToken cancellationToken)
    {
        // Stop past the limit: the verdict only needs to know the body is too large.
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

    private static string? Single(Microsoft.Extensions.Primitives.StringValues values) => values.Count == 0 ? null : values[0];

    private sealed record Injected(int Status, string ErrorCode, TimeSpan? RetryAfter);

    private readonly record struct Verdict(int Status, string? StatusName, string? Message, string? ErrorCode, string? InfoReason, TimeSpan? RetryAfter)
    {
        public static Verdict Ok => new(200, null, null, null, null, null);

        public static Verdict Error(int status, string statusName, string message, string? errorCode = null) => new(status, statusName, message, errorCode, null, null);

        public static Verdict Denied(FakeFcmAuth.SendAuth auth) => new(auth.Status, auth.StatusName, auth.Message, null, auth.Reason, null);
    }
}
