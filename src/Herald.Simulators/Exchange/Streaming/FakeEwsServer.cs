using System.Globalization;
using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using Herald.Simulators.Common;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;

namespace Herald.Simulators.Exchange.Streaming;

/// <summary>
/// The Exchange side of EWS streaming notifications, on 127.0.0.1 over HTTP/1.1 (HTTPS optional): Autodiscover (SOAP
/// <c>GetUserSettings</c> at <c>/autodiscover/autodiscover.svc</c>, POX at <c>/autodiscover/autodiscover.xml</c>), EWS at
/// <c>/EWS/Exchange.asmx</c> (Subscribe with StreamingSubscriptionRequest, GetStreamingEvents, Unsubscribe, GetItem,
/// GetFolder) and an OAuth2 client-credentials token endpoint at <c>/oauth2/token</c>.
/// </summary>
/// <remarks>
/// <para>It enforces what Exchange enforces: authentication (Basic for the service account, or a Bearer token it issued);
/// the <c>ExchangeImpersonation</c> header on mailbox operations; affinity: a Subscribe without a cookie is routed to
/// the X-AnchorMailbox's backend only with <c>X-PreferServerAffinity: true</c> (and the answer sets
/// <c>X-BackEndOverrideCookie</c>), a request with a cookie goes to the cookie's backend, a request without either goes
/// to another backend (the load balancer); subscriptions live on the backend that created them, so a GetStreamingEvents
/// on another backend gets <c>ErrorSubscriptionNotFound</c>, and a Subscribe for a mailbox (or anchor) that is not on the
/// cookie's backend gets <c>ErrorProxyRequestNotAllowed</c>; the hanging-connection limit per account
/// (<c>ErrorExceededConnectionCount</c>).</para>
/// <para>Events queue in each subscription while no connection reads it (as Exchange keeps them), so a dropped
/// connection loses nothing; an expired subscription loses what happens until the client resubscribes.</para>
/// <para>Heartbeats and connection timeouts follow the <see cref="TimeProvider"/>.</para>
/// </remarks>
public sealed class FakeEwsServer : IAsyncDisposable
{
    /// <summary>The affinity cookie's name.</summary>
    public const string AffinityCookie = "X-BackEndOverrideCookie";

    private const int MaxBody = 1024 * 1024;

    private readonly FakeEwsServerOptions _options;
    private readonly TimeProvider _time;
    private readonly WebApplication _app;
    private readonly Lock _gate = new();
    private readonly Dictionary<string, FakeEwsMailbox> _mailboxes = new(StringComparer.OrdinalIgnoreCase);
    private readonly Dictionary<string, (string? ToAddress, Uri? ToUrl)> _autodiscoverRedirects = new(StringComparer.OrdinalIgnoreCase);
    private readonly Dictionary<string, FakeEwsStreamSubscription> _subscriptions = new(StringComparer.Ordinal);
    private readonly Dictionary<string, FakeEwsItem> _items = new(StringComparer.Ordinal);
    private readonly List<FakeEwsConnection> _connections = [];
    private readonly Dictionary<string, int> _hanging = new(StringComparer.OrdinalIgnoreCase);
    private readonly Dictionary<string, DateTimeOffset> _tokens = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _cookies = new(StringComparer.Ordinal);
    private readonly Queue<(FakeEwsFailure Failure, string? Operation, TimeSpan BackOff)> _failures = new();
    private readonly Queue<FakeEwsRequestRecord> _records = new();
    private readonly List<FakeEwsEmit> _emits = [];
    private readonly Random _random;
    private readonly byte[] _secret = new byte[16];
    private readonly HashSet<Task> _streams = [];
    private long _connectionsOpened;
    private long _tokensIssued;
    private int _nextBackend;
    private int _disposed;

    private FakeEwsServer(FakeEwsServerOptions options, TimeProvider time, X509Certificate2? certificate)
    {
        _options = options;
        _time = time;
#pragma warning disable CA5394 // Simulated ids only need to look random and be reproducible with a seed.
        _random = options.Seed is int seed ? new Random(seed) : new Random();
        _random.NextBytes(_secret);
#pragma warning restore CA5394
        Certificate = certificate;
        foreach (var backend in options.Backends)
        {
            _cookies[CookieOf(backend)] = backend;
        }

        var builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions());
        builder.WebHost.UseKestrelCore();
        if (certificate is not null)
        {
            builder.WebHost.UseKestrelHttpsConfiguration();
        }

        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.AddServerHeader = false;
            kestrel.Limits.MaxRequestBodySize = MaxBody;
            kestrel.Limits.MinResponseDataRate = null;
            kestrel.Limits.MaxConcurrentConnections = null;
            kestrel.Listen(IPAddress.Loopback, options.Port, listen =>
            {
                listen.Protocols = HttpProtocols.Http1; // EWS is HTTP/1.1 with keep-alive
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

    /// <summary>The EWS URL every mailbox's Autodiscover answer names.</summary>
    public string EwsUrl => BaseUrl + "/EWS/Exchange.asmx";

    /// <summary>The SOAP Autodiscover URL.</summary>
    public string AutodiscoverUrl => BaseUrl + "/autodiscover/autodiscover.svc";

    /// <summary>The OAuth2 token endpoint.</summary>
    public string TokenUrl => BaseUrl + "/oauth2/token";

    /// <summary>The self-signed certificate in TLS mode.</summary>
    public X509Certificate2? Certificate { get; }

    /// <summary>The options.</summary>
    public FakeEwsServerOptions Options => _options;

    /// <summary>GetStreamingEvents connections open now.</summary>
    public int OpenConnections
    {
        get { lock (_gate) { return _connections.Count; } }
    }

    /// <summary>GetStreamingEvents connections accepted so far.</summary>
    public long ConnectionsOpened => Interlocked.Read(ref _connectionsOpened);

    /// <summary>Access tokens issued so far.</summary>
    public long TokensIssued => Interlocked.Read(ref _tokensIssued);

    /// <summary>Live streaming subscriptions.</summary>
    public int SubscriptionCount
    {
        get { lock (_gate) { return _subscriptions.Count; } }
    }

    /// <summary>The recorded requests, oldest first.</summary>
    public IReadOnlyList<FakeEwsRequestRecord> Requests
    {
        get { lock (_records) { return [.. _records]; } }
    }

    /// <summary>Every new message emitted, in order.</summary>
    public IReadOnlyList<FakeEwsEmit> Emits
    {
        get { lock (_gate) { return [.. _emits]; } }
    }

    /// <summary>Starts a server on 127.0.0.1.</summary>
    public static async Task<FakeEwsServer> StartAsync(FakeEwsServerOptions? options = null, TimeProvider? timeProvider = null, CancellationToken cancellationToken = default)
    {
        options ??= new FakeEwsServerOptions();
        ArgumentOutOfRangeException.ThrowIfNegative(options.Port);
        ArgumentOutOfRangeException.ThrowIfLessThan(options.HangingConnectionLimit, 1);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(options.HeartbeatInterval, TimeSpan.Zero);
        if (options.Backends.Count == 0)
        {
            throw new ArgumentException("At least one backend is needed.", nameof(options));
        }

        var certificate = options.UseTls ? SelfSignedCertificate.Create("CN=Herald fake Exchange") : null;
        var server = new FakeEwsServer(options, timeProvider ?? TimeProvider.System, certificate);
        try
        {
            await server._app.StartAsync(cancellationToken).ConfigureAwait(false);
            var addresses = server._app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>();
            var bound = addresses?.Addresses.FirstOrDefault() ?? throw new InvalidOperationException("Kestrel reported no address.");
            server.BaseUrl = string.Create(CultureInfo.InvariantCulture, $"{(certificate is null ? "http" : "https")}://127.0.0.1:{new Uri(bound).Port}");
            return server;
        }
        catch
        {
            await server.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>Adds a mailbox on <paramref name="backend"/> (default: the backends in turn).</summary>
    public FakeEwsMailbox AddMailbox(string address, string? backend = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(address);
        lock (_gate)
        {
            if (_mailboxes.TryGetValue(address, out var existing))
            {
                return existing;
            }

            backend ??= _options.Backends[_nextBackend++ % _options.Backends.Count];
            CheckBackend(backend);
            var mailbox = new FakeEwsMailbox(address, backend, NewId("AQMk", 24), NewId("AQMk", 24), NewId("AQMk", 24));
            _mailboxes.Add(address, mailbox);
            return mailbox;
        }
    }

    /// <summary>The mailbox, or null.</summary>
    public FakeEwsMailbox? Mailbox(string address)
    {
        lock (_gate)
        {
            return _mailboxes.GetValueOrDefault(address);
        }
    }

    /// <summary>The GroupingInformation Autodiscover answers for a backend.</summary>
    public static string GroupingInformationOf(string backend) => "DAG-" + backend;

    /// <summary>
    /// A message arrives in the mailbox's inbox: it is stored (for GetItem), the unread count rises, and CreatedEvent,
    /// NewMailEvent and the inbox's ModifiedEvent (with UnreadCount) are queued to every subscription of the mailbox.
    /// </summary>
    public FakeEwsEmit EmitNewMail(string address, string subject, string fromName, string fromAddress)
    {
        ArgumentNullException.ThrowIfNull(subject);
        ArgumentNullException.ThrowIfNull(fromName);
        ArgumentNullException.ThrowIfNull(fromAddress);
        lock (_gate)
        {
            var mailbox = _mailboxes.GetValueOrDefault(address) ?? throw new ArgumentException("Unknown mailbox.", nameof(address));
            var item = new FakeEwsItem(NewId("AAMk", 48), subject, fromName, fromAddress);
            mailbox.Inbox.Add(item);
            _items[item.ItemId] = item;
            mailbox.UnreadCount++;
            var now = _time.GetUtcNow();
            var queued = Queue(mailbox, inbox: true, now,
                ("CreatedEvent", item.ItemId, null, mailbox.InboxId, null),
                ("NewMailEvent", item.ItemId, null, mailbox.InboxId, null),
                ("ModifiedEvent", null, mailbox.InboxId, mailbox.RootId, mailbox.UnreadCount));
            var emit = new FakeEwsEmit(mailbox.Address, item.ItemId, mailbox.UnreadCount, _time.GetTimestamp(), now, queued);
            _emits.Add(emit);
            return emit;
        }
    }

    /// <summary>The oldest unread message is read: the item's and the inbox's ModifiedEvent (lower UnreadCount). False when none is unread.</summary>
    public bool MarkRead(string address)
    {
        lock (_gate)
        {
            var mailbox = _mailboxes.GetValueOrDefault(address) ?? throw new ArgumentException("Unknown mailbox.", nameof(address));
            var item = mailbox.Inbox.FirstOrDefault(i => !i.IsRead);
            if (item is null)
            {
                return false;
            }

            item.IsRead = true;
            mailbox.UnreadCount--;
            Queue(mailbox, inbox: true, _time.GetUtcNow(),
                ("ModifiedEvent", item.ItemId, null, mailbox.InboxId, null),
                ("ModifiedEvent", null, mailbox.InboxId, mailbox.RootId, mailbox.UnreadCount));
            return true;
        }
    }

    /// <summary>Fails the next <paramref name="count"/> EWS requests (of <paramref name="operation"/>, or any) with <paramref name="failure"/>.</summary>
    public void FailNext(int count, FakeEwsFailure failure, string? operation = null, TimeSpan? backOff = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        lock (_gate)
        {
            for (var i = 0; i < count; i++)
            {
                _failures.Enqueue((failure, operation, backOff ?? TimeSpan.FromSeconds(2)));
            }
        }
    }

    /// <summary>Resets every open streaming connection (TCP reset mid-response). Subscriptions survive and keep queueing.</summary>
    public void DropStreamingConnections()
    {
        FakeEwsConnection[] open;
        lock (_gate)
        {
            open = [.. _connections];
        }

        // Outside the lock: cancellation runs the stream's cleanup inline, which takes the lock and edits the list.
        foreach (var connection in open)
        {
            try
            {
                connection.Abort.Cancel();
            }
            catch (ObjectDisposedException)
            {
                // It ended meanwhile.
            }
        }
    }

    /// <summary>Ends every open streaming connection gracefully with <c>ConnectionStatus Closed</c>.</summary>
    public void CloseStreamingConnections()
    {
        lock (_gate)
        {
            foreach (var connection in _connections)
            {
                connection.CloseRequested = true;
                connection.Wake();
            }
        }
    }

    /// <summary>The mailbox's subscriptions expire (as after 30 minutes without a connection, or a server restart); events until the next Subscribe are lost.</summary>
    public int ExpireSubscriptions(string address)
    {
        lock (_gate)
        {
            var gone = _subscriptions.Values.Where(s => string.Equals(s.Mailbox.Address, address, StringComparison.OrdinalIgnoreCase)).ToList();
            foreach (var subscription in gone)
            {
                Remove(subscription);
            }

            return gone.Count;
        }
    }

    /// <summary>
    /// The mailbox's subscriptions miss events (their queue overflowed): a connection reading them gets
    /// <c>ErrorMissedNotificationEvents</c> with their ids, and they end.
    /// </summary>
    public int InjectMissedEvents(string address)
    {
        lock (_gate)
        {
            var hit = _subscriptions.Values.Where(s => string.Equals(s.Mailbox.Address, address, StringComparison.OrdinalIgnoreCase)).ToList();
            foreach (var subscription in hit)
            {
                MarkMissed(subscription);
            }

            return hit.Count;
        }
    }

    /// <summary>
    /// Makes Autodiscover answer a redirect for <paramref name="address"/> (which need not be a mailbox): to another
    /// address (SOAP <c>RedirectAddress</c>, POX <c>redirectAddr</c>), or to another Autodiscover URL (SOAP
    /// <c>RedirectUrl</c>, POX <c>redirectUrl</c>). A URL redirect is answered everywhere except at the target's own path,
    /// which answers normally, so a redirect to an alias path of this server (any path ending in
    /// <c>/autodiscover/autodiscover.svc</c> or <c>.xml</c>) resolves there.
    /// </summary>
    public void RedirectAutodiscover(string address, string? toAddress = null, string? toUrl = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(address);
        if ((toAddress is null) == (toUrl is null))
        {
            throw new ArgumentException("Give exactly one of toAddress and toUrl.", nameof(toAddress));
        }

        lock (_gate)
        {
            _autodiscoverRedirects[address] = (toAddress, toUrl is null ? null : new Uri(toUrl, UriKind.Absolute));
        }
    }

    /// <summary>Moves the mailbox to another backend: its subscriptions end, Autodiscover answers the new GroupingInformation.</summary>
    public void MoveMailbox(string address, string backend)
    {
        lock (_gate)
        {
            CheckBackend(backend);
            var mailbox = _mailboxes.GetValueOrDefault(address) ?? throw new ArgumentException("Unknown mailbox.", nameof(address));
            mailbox.Backend = backend;
            foreach (var subscription in _subscriptions.Values.Where(s => s.Mailbox == mailbox).ToList())
            {
                Remove(subscription);
            }
        }
    }

    /// <summary>The live subscriptions of a mailbox.</summary>
    public int SubscriptionsOf(string address)
    {
        lock (_gate)
        {
            return _subscriptions.Values.Count(s => string.Equals(s.Mailbox.Address, address, StringComparison.OrdinalIgnoreCase));
        }
    }

    /// <summary>Forgets recorded requests.</summary>
    public void ClearRequests()
    {
        lock (_records)
        {
            _records.Clear();
        }
    }

    /// <summary>Stops the server, ending every stream.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        DropStreamingConnections();
        Task[] streams;
        lock (_streams)
        {
            streams = [.. _streams];
        }

        try
        {
            await Task.WhenAll(streams).WaitAsync(TimeSpan.FromSeconds(5)).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is TimeoutException or OperationCanceledException or IOException)
        {
        }

        try
        {
            using var stopTimeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
            await _app.StopAsync(stopTimeout.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }

        await _app.DisposeAsync().ConfigureAwait(false);
        Certificate?.Dispose();
    }

    private async Task HandleAsync(HttpContext context)
    {
        var path = context.Request.Path.Value ?? "/";
        if (!HttpMethods.IsPost(context.Request.Method))
        {
            context.Response.StatusCode = StatusCodes.Status405MethodNotAllowed;
            return;
        }

        if (path.Equals("/oauth2/token", StringComparison.OrdinalIgnoreCase))
        {
            await TokenAsync(context).ConfigureAwait(false);
            return;
        }

        var isEws = path.EndsWith("/EWS/Exchange.asmx", StringComparison.OrdinalIgnoreCase);
        var isSoapAutodiscover = path.EndsWith("/autodiscover/autodiscover.svc", StringComparison.OrdinalIgnoreCase);
        var isPox = path.EndsWith("/autodiscover/autodiscover.xml", StringComparison.OrdinalIgnoreCase);
        if (!isEws && !isPox && !(isSoapAutodiscover && _options.SoapAutodiscover))
        {
            context.Response.StatusCode = StatusCodes.Status404NotFound;
            Record(context, isSoapAutodiscover ? "GetUserSettingsRequestMessage" : "?", null, 404, null);
            return;
        }

        var scheme = Authenticate(context.Request.Headers.Authorization.ToString(), out var principal);
        if (principal is null)
        {
            context.Response.StatusCode = StatusCodes.Status401Unauthorized;
            context.Response.Headers.WWWAuthenticate = "Basic realm=\"fake.herald.test\"";
            Record(context, "?", null, 401, null, scheme);
            return;
        }

        var body = await ReadBodyAsync(context).ConfigureAwait(false);
        var soap = body is null ? null : FakeEwsSoapRequest.Parse(body);
        if (soap?.Operation is null)
        {
            await WriteAsync(context, 500, FakeEwsResponses.Fault("ErrorInvalidRequest"), "?", null, "ErrorInvalidRequest", scheme).ConfigureAwait(false);
            return;
        }

        if (isPox)
        {
            await PoxAsync(context, soap, scheme).ConfigureAwait(false);
            return;
        }

        if (isSoapAutodiscover)
        {
            await GetUserSettingsAsync(context, soap, scheme).ConfigureAwait(false);
            return;
        }

        var operation = soap.Operation;
        (FakeEwsFailure Failure, string? Operation, TimeSpan BackOff)? failure = null;
        lock (_gate)
        {
            if (_failures.TryPeek(out var next) && (next.Operation is null || next.Operation == operation))
            {
                failure = _failures.Dequeue();
            }
        }

        switch (failure?.Failure)
        {
            case FakeEwsFailure.Drop:
                Record(context, operation, soap, 0, "dropped", scheme);
                context.Abort();
                return;
            case FakeEwsFailure.Http503:
                context.Response.StatusCode = StatusCodes.Status503ServiceUnavailable;
                Record(context, operation, soap, 503, null, scheme);
                return;
            case FakeEwsFailure.ServerBusy:
                await WriteAsync(context, 500, FakeEwsResponses.Fault("ErrorServerBusy", failure.Value.BackOff), operation, soap, "ErrorServerBusy", scheme).ConfigureAwait(false);
                return;
            default:
                break;
        }

        // Impersonation: mailbox operations need it; GetStreamingEvents may use it (it then counts against that account).
        FakeEwsMailbox? target = null;
        if (soap.HasImpersonation || operation != "GetStreamingEvents")
        {
            var fault = CheckImpersonation(soap, out target);
            if (fault is not null)
            {
                await WriteAsync(context, 500, FakeEwsResponses.Fault(fault), operation, soap, fault, scheme).ConfigureAwait(false);
                return;
            }
        }

        switch (operation)
        {
            case "Subscribe":
                await SubscribeAsync(context, soap, target!, scheme).ConfigureAwait(false);
                break;
            case "GetStreamingEvents":
                await GetStreamingEventsAsync(context, soap, target?.Address ?? principal, scheme).ConfigureAwait(false);
                break;
            case "Unsubscribe":
                await UnsubscribeAsync(context, soap, scheme).ConfigureAwait(false);
                break;
            case "GetItem":
                await GetItemAsync(context, soap, target!, scheme).ConfigureAwait(false);
                break;
            case "GetFolder":
                await GetFolderAsync(context, soap, target!, scheme).ConfigureAwait(false);
                break;
            default:
                await WriteAsync(context, 500, FakeEwsResponses.Fault("ErrorInvalidRequest"), operation, soap, "ErrorInvalidRequest", scheme).ConfigureAwait(false);
                break;
        }
    }

    private string? CheckImpersonation(FakeEwsSoapRequest soap, out FakeEwsMailbox? mailbox)
    {
        mailbox = null;
        if (string.IsNullOrEmpty(soap.ImpersonatedAddress))
        {
            return "ErrorMissingEmailAddress";
        }

        if (!_options.ImpersonationAllowed)
        {
            return "ErrorImpersonateUserDenied";
        }

        lock (_gate)
        {
            mailbox = _mailboxes.GetValueOrDefault(soap.ImpersonatedAddress);
        }

        return mailbox is null ? "ErrorNonExistentMailbox" : null;
    }

    private async Task SubscribeAsync(HttpContext context, FakeEwsSoapRequest soap, FakeEwsMailbox mailbox, string? scheme)
    {
        if (!soap.IsStreamingSubscription || soap.EventTypes.Count == 0 || soap.DistinguishedFolderIds.Count == 0)
        {
            await WriteAsync(context, 200, FakeEwsResponses.Operation("Subscribe", [("ErrorInvalidSubscriptionRequest", string.Empty)]), "Subscribe", soap, "ErrorInvalidSubscriptionRequest", scheme).ConfigureAwait(false);
            return;
        }

        var error = Route(context, soap, subscribe: true, out var backend, out var setCookie);
        if (error is null && !string.Equals(mailbox.Backend, backend, StringComparison.Ordinal))
        {
            error = "ErrorProxyRequestNotAllowed"; // the mailbox is not on the server this group's cookie pins
        }

        if (error is not null)
        {
            await WriteAsync(context, 200, FakeEwsResponses.Operation("Subscribe", [(error, string.Empty)]), "Subscribe", soap, error, scheme).ConfigureAwait(false);
            return;
        }

        string id;
        lock (_gate)
        {
            id = NewSubscriptionId(backend!);
            var folders = soap.DistinguishedFolderIds;
            _subscriptions[id] = new FakeEwsStreamSubscription(
                id,
                mailbox,
                backend!,
                folders.Contains("inbox", StringComparer.OrdinalIgnoreCase),
                folders.Contains("calendar", StringComparer.OrdinalIgnoreCase),
                new HashSet<string>(soap.EventTypes, StringComparer.Ordinal));
        }

        if (setCookie is not null)
        {
            context.Response.Headers.Append("Set-Cookie", AffinityCookie + "=" + setCookie + "; path=/");
        }

        var inner = "<m:SubscriptionId>" + id + "</m:SubscriptionId>";
        await WriteAsync(context, 200, FakeEwsResponses.Operation("Subscribe", [(null, inner)]), "Subscribe", soap, "NoError", scheme, setCookie).ConfigureAwait(false);
    }

    /// <summary>Picks the backend a request lands on; an error code when the cookie and the anchor disagree.</summary>
    private string? Route(HttpContext context, FakeEwsSoapRequest soap, bool subscribe, out string? backend, out string? setCookie)
    {
        setCookie = null;
        backend = null;
        var anchorAddress = context.Request.Headers["X-AnchorMailbox"].ToString();
        FakeEwsMailbox? anchor;
        lock (_gate)
        {
            anchor = anchorAddress.Length > 0 ? _mailboxes.GetValueOrDefault(anchorAddress) : null;
        }

        if (context.Request.Cookies.TryGetValue(AffinityCookie, out var cookie) && _cookies.TryGetValue(cookie, out var pinned))
        {
            backend = pinned;
            return anchor is not null && !string.Equals(anchor.Backend, pinned, StringComparison.Ordinal) ? "ErrorProxyRequestNotAllowed" : null;
        }

        var prefer = string.Equals(context.Request.Headers["X-PreferServerAffinity"].ToString(), "true", StringComparison.OrdinalIgnoreCase);
        if (subscribe && prefer && anchor is not null)
        {
            backend = anchor.Backend;
            setCookie = CookieOf(backend);
            return null;
        }

        // No affinity: the load balancer picks a server, and in this fake never the one that would have worked.
        FakeEwsMailbox? home;
        lock (_gate)
        {
            home = anchor ?? (soap.ImpersonatedAddress is { Length: > 0 } a ? _mailboxes.GetValueOrDefault(a) : null);
        }

        var index = home is null ? 0 : IndexOf(home.Backend) + 1;
        backend = _options.Backends[index % _options.Backends.Count];
        return null;
    }

    private async Task GetStreamingEventsAsync(HttpContext context, FakeEwsSoapRequest soap, string account, string? scheme)
    {
        if (soap.SubscriptionIds.Count is 0 or > 200 || soap.ConnectionTimeoutMinutes is not (>= 1 and <= 30))
        {
            await WriteAsync(context, 200, FakeEwsResponses.StreamingEnvelope("ErrorInvalidRequest", [], null, "Closed"), "GetStreamingEvents", soap, "ErrorInvalidRequest", scheme).ConfigureAwait(false);
            return;
        }

        var routeError = Route(context, soap, subscribe: false, out var backend, out _);
        FakeEwsConnection? connection = null;
        List<string> unknown = [];
        string? error = routeError;
        lock (_gate)
        {
            if (error is null && _hanging.GetValueOrDefault(account) >= _options.HangingConnectionLimit)
            {
                error = "ErrorExceededConnectionCount";
            }

            if (error is null)
            {
                foreach (var id in soap.SubscriptionIds)
                {
                    if (!_subscriptions.TryGetValue(id, out var s) || !string.Equals(s.Backend, backend, StringComparison.Ordinal))
                    {
                        unknown.Add(id);
                    }
                }

                if (unknown.Count > 0)
                {
                    error = "ErrorSubscriptionNotFound";
                }
            }

            if (error is null)
            {
                connection = new FakeEwsConnection(account, backend!);
                _hanging[account] = _hanging.GetValueOrDefault(account) + 1;
                _connections.Add(connection);
                foreach (var id in soap.SubscriptionIds)
                {
                    var subscription = _subscriptions[id];
                    if (subscription.Connection is { } previous && previous != connection)
                    {
                        previous.Subscriptions.Remove(subscription);
                        if (previous.Subscriptions.Count == 0)
                        {
                            previous.CloseRequested = true;
                            previous.Wake();
                        }
                    }

                    subscription.Connection = connection;
                    connection.Subscriptions.Add(subscription);
                    if (subscription.Missed)
                    {
                        MarkMissed(subscription);
                    }
                }
            }
        }

        if (connection is null)
        {
            await WriteAsync(context, 200, FakeEwsResponses.StreamingEnvelope(error, [], unknown, "Closed"), "GetStreamingEvents", soap, error, scheme).ConfigureAwait(false);
            return;
        }

        Interlocked.Increment(ref _connectionsOpened);
        Record(context, "GetStreamingEvents", soap, 200, "NoError", scheme);
        var run = StreamAsync(context, connection, TimeSpan.FromMinutes(soap.ConnectionTimeoutMinutes!.Value));
        lock (_streams)
        {
            _streams.Add(run);
        }

        try
        {
            await run.ConfigureAwait(false);
        }
        finally
        {
            lock (_streams)
            {
                _streams.Remove(run);
            }
        }
    }

    private async Task StreamAsync(HttpContext context, FakeEwsConnection connection, TimeSpan timeout)
    {
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted, connection.Abort.Token);
        var token = linked.Token;
        try
        {
            context.Response.StatusCode = 200;
            context.Response.ContentType = FakeEwsResponses.ContentType;
            await context.Response.StartAsync(token).ConfigureAwait(false);
            await context.Response.Body.FlushAsync(token).ConfigureAwait(false); // headers go out before the first event
            var deadline = _time.GetTimestamp() + (long)(timeout.TotalSeconds * _time.TimestampFrequency);
            var lastWrite = _time.GetTimestamp();
            Task<bool>? wait = null;
            while (true)
            {
                var (envelopes, close) = Collect(connection);
                foreach (var envelope in envelopes)
                {
                    await context.Response.Body.WriteAsync(envelope, token).ConfigureAwait(false);
                }

                if (envelopes.Count > 0)
                {
                    await context.Response.Body.FlushAsync(token).ConfigureAwait(false);
                    lastWrite = _time.GetTimestamp();
                }

                var now = _time.GetTimestamp();
                if (close || now >= deadline)
                {
                    await context.Response.Body.WriteAsync(FakeEwsResponses.StreamingEnvelope(null, [], null, "Closed"), token).ConfigureAwait(false);
                    await context.Response.Body.FlushAsync(token).ConfigureAwait(false);
                    return;
                }

                var sinceWrite = _time.GetElapsedTime(lastWrite);
                if (sinceWrite >= _options.HeartbeatInterval)
                {
                    await context.Response.Body.WriteAsync(FakeEwsResponses.StreamingEnvelope(null, [], null, "OK"), token).ConfigureAwait(false);
                    await context.Response.Body.FlushAsync(token).ConfigureAwait(false);
                    lastWrite = _time.GetTimestamp();
                    continue;
                }

                var untilDeadline = TimeSpan.FromSeconds((deadline - now) / (double)_time.TimestampFrequency);
                var delay = _options.HeartbeatInterval - sinceWrite;
                if (untilDeadline < delay)
                {
                    delay = untilDeadline;
                }

                wait ??= connection.Signal.Reader.WaitToReadAsync(token).AsTask();
                try
                {
                    await wait.WaitAsync(delay < TimeSpan.FromMilliseconds(1) ? TimeSpan.FromMilliseconds(1) : delay, _time, token).ConfigureAwait(false);
                    connection.Signal.Reader.TryRead(out _);
                    wait = null;
                }
                catch (TimeoutException)
                {
                }
            }
        }
        catch (OperationCanceledException)
        {
            if (connection.Abort.IsCancellationRequested)
            {
                context.Abort(); // a dropped connection: TCP reset, no Closed
            }
        }
        catch (IOException)
        {
        }
        finally
        {
            lock (_gate)
            {
                _connections.Remove(connection);
                var left = _hanging.GetValueOrDefault(connection.Account) - 1;
                if (left <= 0)
                {
                    _hanging.Remove(connection.Account);
                }
                else
                {
                    _hanging[connection.Account] = left;
                }

                foreach (var subscription in connection.Subscriptions)
                {
                    if (subscription.Connection == connection)
                    {
                        subscription.Connection = null;
                    }
                }
            }

            connection.Abort.Dispose();
        }
    }

    /// <summary>Takes what the connection must write now: queued events as one envelope, error envelopes.</summary>
    private (List<byte[]> Envelopes, bool Close) Collect(FakeEwsConnection connection)
    {
        lock (_gate)
        {
            var envelopes = new List<byte[]>(connection.Extra);
            connection.Extra.Clear();
            List<(string, IReadOnlyList<FakeEwsEvent>)>? notifications = null;
            foreach (var subscription in connection.Subscriptions)
            {
                if (subscription.Pending.Count > 0)
                {
                    (notifications ??= []).Add((subscription.Id, [.. subscription.Pending]));
                    subscription.Pending.Clear();
                }
            }

            if (notifications is not null)
            {
                envelopes.Add(FakeEwsResponses.StreamingEnvelope(null, notifications, null, null));
            }

            return (envelopes, connection.CloseRequested);
        }
    }

    private async Task UnsubscribeAsync(HttpContext context, FakeEwsSoapRequest soap, string? scheme)
    {
        lock (_gate)
        {
            foreach (var id in soap.SubscriptionIds)
            {
                if (_subscriptions.TryGetValue(id, out var subscription))
                {
                    Remove(subscription);
                }
            }
        }

        await WriteAsync(context, 200, FakeEwsResponses.Operation("Unsubscribe", [(null, string.Empty)]), "Unsubscribe", soap, "NoError", scheme).ConfigureAwait(false);
    }

    private async Task GetItemAsync(HttpContext context, FakeEwsSoapRequest soap, FakeEwsMailbox mailbox, string? scheme)
    {
        var messages = new List<(string?, string)>();
        lock (_gate)
        {
            foreach (var id in soap.ItemIds)
            {
                if (!_items.TryGetValue(id, out var item) || !mailbox.Inbox.Contains(item))
                {
                    messages.Add(("ErrorItemNotFound", "<m:Items/>"));
                    continue;
                }

                messages.Add((null, "<m:Items><t:Message><t:ItemId Id=\"" + item.ItemId + "\" ChangeKey=\"CQAAAA==\"/><t:Subject>"
                    + FakeEwsResponses.Escape(item.Subject) + "</t:Subject><t:From><t:Mailbox><t:Name>" + FakeEwsResponses.Escape(item.FromName)
                    + "</t:Name><t:EmailAddress>" + FakeEwsResponses.Escape(item.FromAddress) + "</t:EmailAddress><t:RoutingType>SMTP</t:RoutingType></t:Mailbox></t:From>"
                    + "<t:IsRead>" + (item.IsRead ? "true" : "false") + "</t:IsRead></t:Message></m:Items>"));
            }
        }

        if (messages.Count == 0)
        {
            messages.Add(("ErrorInvalidRequest", string.Empty));
        }

        await WriteAsync(context, 200, FakeEwsResponses.Operation("GetItem", messages), "GetItem", soap, messages[0].Item1 ?? "NoError", scheme).ConfigureAwait(false);
    }

    private async Task GetFolderAsync(HttpContext context, FakeEwsSoapRequest soap, FakeEwsMailbox mailbox, string? scheme)
    {
        var messages = new List<(string?, string)>();
        lock (_gate)
        {
            foreach (var name in soap.DistinguishedFolderIds.Concat(soap.FolderIds))
            {
                var isInbox = name.Equals("inbox", StringComparison.OrdinalIgnoreCase) || name == mailbox.InboxId;
                var isCalendar = name.Equals("calendar", StringComparison.OrdinalIgnoreCase) || name == mailbox.CalendarId;
                if (!isInbox && !isCalendar)
                {
                    messages.Add(("ErrorFolderNotFound", "<m:Folders/>"));
                    continue;
                }

                var (id, total, unread, display) = isInbox
                    ? (mailbox.InboxId, mailbox.Inbox.Count, mailbox.UnreadCount, "Inbox")
                    : (mailbox.CalendarId, 0, 0, "Calendar");
                messages.Add((null, string.Create(CultureInfo.InvariantCulture,
                    $"<m:Folders><t:{(isInbox ? "Folder" : "CalendarFolder")}><t:FolderId Id=\"{id}\" ChangeKey=\"AQAAAA==\"/><t:DisplayName>{display}</t:DisplayName><t:TotalCount>{total}</t:TotalCount><t:ChildFolderCount>0</t:ChildFolderCount><t:UnreadCount>{unread}</t:UnreadCount></t:{(isInbox ? "Folder" : "CalendarFolder")}></m:Folders>")));
            }
        }

        if (messages.Count == 0)
        {
            messages.Add(("ErrorInvalidRequest", string.Empty));
        }

        await WriteAsync(context, 200, FakeEwsResponses.Operation("GetFolder", messages), "GetFolder", soap, messages[0].Item1 ?? "NoError", scheme).ConfigureAwait(false);
    }

    /// <summary>The redirect to answer for <paramref name="address"/> asked at <paramref name="path"/> (under the lock), or null.</summary>
    private (string Code, string Target)? RedirectFor(string address, string path, string extension)
    {
        if (!_autodiscoverRedirects.TryGetValue(address, out var rule))
        {
            return null;
        }

        if (rule.ToAddress is { } to)
        {
            return ("RedirectAddress", to);
        }

        var target = rule.ToUrl!;
        var targetPath = target.AbsolutePath[..target.AbsolutePath.LastIndexOf('.')];
        if (path.StartsWith(targetPath, StringComparison.OrdinalIgnoreCase) && path.Length == targetPath.Length + 4)
        {
            return null; // asked at the target: answer normally
        }

        var url = target.GetLeftPart(UriPartial.Authority) + targetPath + extension;
        return ("RedirectUrl", url);
    }

    private async Task GetUserSettingsAsync(HttpContext context, FakeEwsSoapRequest soap, string? scheme)
    {
        if (soap.Operation != "GetUserSettingsRequestMessage" || soap.Mailboxes.Count == 0)
        {
            await WriteAsync(context, 500, FakeEwsResponses.Fault("ErrorInvalidRequest"), soap.Operation ?? "?", soap, "ErrorInvalidRequest", scheme).ConfigureAwait(false);
            return;
        }

        var users = new List<FakeAutodiscoverUser>();
        var path = context.Request.Path.Value ?? "/";
        lock (_gate)
        {
            foreach (var address in soap.Mailboxes)
            {
                if (RedirectFor(address, path, ".svc") is { } redirect)
                {
                    users.Add(new FakeAutodiscoverUser(address, null, redirect.Code, redirect.Target));
                    continue;
                }

                if (!_mailboxes.TryGetValue(address, out var mailbox))
                {
                    users.Add(new FakeAutodiscoverUser(address, null));
                    continue;
                }

                var settings = new List<(string, string)>();
                foreach (var name in soap.RequestedSettings)
                {
                    switch (name)
                    {
                        case "ExternalEwsUrl" or "InternalEwsUrl":
                            settings.Add((name, EwsUrl));
                            break;
                        case "GroupingInformation":
                            settings.Add((name, GroupingInformationOf(mailbox.Backend)));
                            break;
                        case "UserDisplayName":
                            settings.Add((name, mailbox.Address));
                            break;
                        default:
                            break;
                    }
                }

                users.Add(new FakeAutodiscoverUser(address, settings));
            }
        }

        await WriteAsync(context, 200, FakeEwsResponses.GetUserSettings(users), "GetUserSettingsRequestMessage", soap, "NoError", scheme).ConfigureAwait(false);
    }

    private async Task PoxAsync(HttpContext context, FakeEwsSoapRequest soap, string? scheme)
    {
        FakeEwsMailbox? mailbox = null;
        (string Code, string Target)? redirect = null;
        if (soap.Operation == "Autodiscover" && soap.Mailboxes.Count == 1)
        {
            lock (_gate)
            {
                redirect = RedirectFor(soap.Mailboxes[0], context.Request.Path.Value ?? "/", ".xml");
                mailbox = redirect is null ? _mailboxes.GetValueOrDefault(soap.Mailboxes[0]) : null;
            }
        }

        var body = redirect is { } r ? FakeEwsResponses.PoxRedirect(r.Code, r.Target)
            : mailbox is null ? FakeEwsResponses.PoxError()
            : FakeEwsResponses.Pox(mailbox.Address, EwsUrl, GroupingInformationOf(mailbox.Backend));
        await WriteAsync(context, 200, body, "Autodiscover", soap, mailbox is null ? "InvalidUser" : "NoError", scheme).ConfigureAwait(false);
    }

    private async Task TokenAsync(HttpContext context)
    {
        if (!context.Request.HasFormContentType)
        {
            await JsonAsync(context, 400, "{\"error\":\"invalid_request\"}").ConfigureAwait(false);
            return;
        }

        var form = await context.Request.ReadFormAsync(context.RequestAborted).ConfigureAwait(false);
        if (form["grant_type"] != "client_credentials")
        {
            await JsonAsync(context, 400, "{\"error\":\"unsupported_grant_type\"}").ConfigureAwait(false);
            return;
        }

        if (_options.OAuthClientId is null || form["client_id"] != _options.OAuthClientId || form["client_secret"] != _options.OAuthClientSecret)
        {
            await JsonAsync(context, 401, "{\"error\":\"invalid_client\"}").ConfigureAwait(false);
            return;
        }

        var token = Convert.ToBase64String(RandomNumberGenerator.GetBytes(32));
        lock (_gate)
        {
            _tokens[token] = _time.GetUtcNow() + _options.TokenLifetime;
        }

        Interlocked.Increment(ref _tokensIssued);
        Record(context, "token", null, 200, null);
        await JsonAsync(context, 200, string.Create(CultureInfo.InvariantCulture,
            $"{{\"token_type\":\"Bearer\",\"expires_in\":{(long)_options.TokenLifetime.TotalSeconds},\"access_token\":\"{token}\"}}")).ConfigureAwait(false);
    }

    private static async Task JsonAsync(HttpContext context, int status, string json)
    {
        context.Response.StatusCode = status;
        context.Response.ContentType = "application/json";
        await context.Response.WriteAsync(json, context.RequestAborted).ConfigureAwait(false);
    }

    /// <summary>The scheme named, and the principal when the credentials are valid.</summary>
    private string? Authenticate(string authorization, out string? principal)
    {
        principal = null;
        if (authorization.StartsWith("Basic ", StringComparison.OrdinalIgnoreCase))
        {
            try
            {
                var pair = Encoding.UTF8.GetString(Convert.FromBase64String(authorization[6..].Trim()));
                var colon = pair.IndexOf(':', StringComparison.Ordinal);
                if (colon > 0 && _options.BasicUsername is not null
                    && string.Equals(pair[..colon], _options.BasicUsername, StringComparison.OrdinalIgnoreCase)
                    && pair[(colon + 1)..] == _options.BasicPassword)
                {
                    principal = _options.BasicUsername;
                }
            }
            catch (FormatException)
            {
            }

            return "Basic";
        }

        if (authorization.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase))
        {
            var token = authorization[7..].Trim();
            lock (_gate)
            {
                if (_tokens.TryGetValue(token, out var expires) && expires > _time.GetUtcNow())
                {
                    principal = "app:" + _options.OAuthClientId;
                }
            }

            return "Bearer";
        }

        return null;
    }

    private static async Task<byte[]?> ReadBodyAsync(HttpContext context)
    {
        using var buffer = new MemoryStream();
        try
        {
            await context.Request.Body.CopyToAsync(buffer, context.RequestAborted).ConfigureAwait(false);
        }
        catch (Microsoft.AspNetCore.Http.BadHttpRequestException)
        {
            return null;
        }

        return buffer.Length == 0 ? null : buffer.ToArray();
    }

    private async Task WriteAsync(HttpContext context, int status, byte[] body, string operation, FakeEwsSoapRequest? soap, string? responseCode, string? scheme, string? setCookie = null)
    {
        Record(context, operation, soap, status, responseCode, scheme, setCookie);
        context.Response.StatusCode = status;
        context.Response.ContentType = FakeEwsResponses.ContentType;
        context.Response.ContentLength = body.Length;
        await context.Response.Body.WriteAsync(body, context.RequestAborted).ConfigureAwait(false);
    }

    private void Record(HttpContext context, string operation, FakeEwsSoapRequest? soap, int status, string? responseCode, string? scheme = null, string? setCookie = null)
    {
        if (_options.MaxRecordedRequests <= 0)
        {
            return;
        }

        var request = context.Request;
        var record = new FakeEwsRequestRecord(
            request.Path.Value ?? "/",
            operation,
            soap?.ImpersonatedAddress,
            request.Headers["X-AnchorMailbox"].ToString() is { Length: > 0 } anchor ? anchor : null,
            string.Equals(request.Headers["X-PreferServerAffinity"].ToString(), "true", StringComparison.OrdinalIgnoreCase),
            request.Cookies.TryGetValue(AffinityCookie, out var cookie) ? cookie : null,
            setCookie,
            status,
            responseCode,
            scheme);
        lock (_records)
        {
            _records.Enqueue(record);
            while (_records.Count > _options.MaxRecordedRequests)
            {
                _records.Dequeue();
            }
        }
    }

    /// <summary>Queues events to the mailbox's subscriptions (caller holds the lock); returns how many subscriptions got them.</summary>
    private int Queue(FakeEwsMailbox mailbox, bool inbox, DateTimeOffset now, params (string Kind, string? ItemId, string? FolderId, string ParentFolderId, int? UnreadCount)[] events)
    {
        var count = 0;
        List<FakeEwsStreamSubscription>? overflowed = null;
        foreach (var subscription in _subscriptions.Values)
        {
            if (subscription.Mailbox != mailbox || (inbox ? !subscription.Inbox : !subscription.Calendar) || subscription.Missed)
            {
                continue;
            }

            var added = false;
            foreach (var (kind, itemId, folderId, parent, unread) in events)
            {
                if (!subscription.EventTypes.Contains(kind))
                {
                    continue;
                }

                var watermark = Convert.ToBase64String(BitConverter.GetBytes(++mailbox.EventCounter));
                subscription.Pending.Add(new FakeEwsEvent(kind, watermark, now, itemId, folderId, parent, unread));
                added = true;
            }

            if (!added)
            {
                continue;
            }

            count++;
            if (subscription.Pending.Count > _options.MaxQueuedEventsPerSubscription)
            {
                (overflowed ??= []).Add(subscription);
                continue;
            }

            subscription.Connection?.Wake();
        }

        foreach (var subscription in overflowed ?? [])
        {
            MarkMissed(subscription);
        }

        return count;
    }

    /// <summary>The subscription has missed events: its connection (now, or the next) is told, and it ends (lock held).</summary>
    private void MarkMissed(FakeEwsStreamSubscription subscription)
    {
        subscription.Missed = true;
        subscription.Pending.Clear();
        if (subscription.Connection is { } connection)
        {
            connection.Extra.Add(FakeEwsResponses.StreamingEnvelope("ErrorMissedNotificationEvents", [], [subscription.Id], null));
            connection.Subscriptions.Remove(subscription);
            subscription.Connection = null;
            _subscriptions.Remove(subscription.Id);
            connection.Wake();
        }
    }

    private void Remove(FakeEwsStreamSubscription subscription)
    {
        _subscriptions.Remove(subscription.Id);
        if (subscription.Connection is { } connection)
        {
            connection.Subscriptions.Remove(subscription);
            subscription.Connection = null;
        }
    }

    private void CheckBackend(string backend)
    {
        if (IndexOf(backend) < 0)
        {
            throw new ArgumentException("Unknown backend.", nameof(backend));
        }
    }

    private int IndexOf(string backend)
    {
        for (var i = 0; i < _options.Backends.Count; i++)
        {
            if (string.Equals(_options.Backends[i], backend, StringComparison.Ordinal))
            {
                return i;
            }
        }

        return -1;
    }

    private string CookieOf(string backend)
    {
        var mac = HMACSHA256.HashData(_secret, Encoding.UTF8.GetBytes(backend));
        return Convert.ToHexString(mac, 0, 20) + "~" + backend.Length.ToString(CultureInfo.InvariantCulture);
    }

    private string NewId(string prefix, int randomBytes)
    {
        var bytes = new byte[randomBytes];
        lock (_random)
        {
#pragma warning disable CA5394 // See the constructor.
            _random.NextBytes(bytes);
#pragma warning restore CA5394
        }

        return prefix + Convert.ToBase64String(bytes);
    }

    /// <summary>Like Exchange's: a length-prefixed server name, then a GUID, base64.</summary>
    private string NewSubscriptionId(string backend)
    {
        var server = Encoding.ASCII.GetBytes(backend.ToLowerInvariant() + ".fake.herald.test");
        var bytes = new byte[1 + server.Length + 16];
        bytes[0] = (byte)server.Length;
        server.CopyTo(bytes, 1);
        lock (_random)
        {
#pragma warning disable CA5394 // See the constructor.
            _random.NextBytes(bytes.AsSpan(1 + server.Length));
#pragma warning restore CA5394
        }

        return Convert.ToBase64String(bytes);
    }
}
