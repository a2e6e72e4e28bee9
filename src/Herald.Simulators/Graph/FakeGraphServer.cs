using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;

namespace Herald.Simulators.Graph;

/// <summary>
/// A faithful fake of the Microsoft Graph parts Herald uses, and of the Entra ID token endpoint, on 127.0.0.1.
/// </summary>
/// <remarks>
/// <para>Token: <c>POST /{tenant}/oauth2/v2.0/token</c> with the client-credentials grant of a registered
/// application and scope <c>https://graph.microsoft.com/.default</c> (AADSTS-style errors otherwise).</para>
/// <para>Subscriptions: <c>POST /v1.0/subscriptions</c> checks the bearer token, the body (changeType of
/// created/updated/deleted, resource <c>/users/{id}/mailFolders('inbox')/messages</c> or <c>/users/{id}/messages</c> of a
/// known mailbox, clientState ≤ 128 characters, an expirationDateTime in the future and within
/// <see cref="FakeGraphOptions.MaxSubscriptionLifetime"/>), then validates <c>notificationUrl</c> and
/// <c>lifecycleNotificationUrl</c> exactly as Graph does: <c>POST {url}?validationToken={token}</c> with an empty
/// <c>text/plain</c> body, expecting 200, <c>text/plain</c> and the decoded token within
/// <see cref="FakeGraphOptions.ValidationTimeout"/>; a failure is answered 400 and nothing is created. <c>PATCH</c>
/// renews, <c>DELETE</c> deletes, <c>POST …/reauthorize</c> reauthorizes; unknown or expired ids are 404.</para>
/// <para>Mail: <see cref="DeliverAsync"/> adds a message and POSTs a <c>created</c> change notification to every
/// matching subscription (resource <c>Users/{objectId}/Messages/{id}</c>, the subscription's clientState); an answer
/// that is not 2xx within <see cref="FakeGraphOptions.NotificationTimeout"/> is retried with doubling delays.
/// <c>GET /v1.0/users/{id}/mailFolders/inbox</c> gives the unread count and <c>GET /v1.0/users/{id}/messages/{id}</c>
/// the subject and sender. Lifecycle events are sent with <see cref="SendLifecycleAsync"/>.</para>
/// </remarks>
public sealed partial class FakeGraphServer : IAsyncDisposable
{
    /// <summary>The scope of app-only Graph tokens.</summary>
    public const string DefaultScope = "https://graph.microsoft.com/.default";

    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    private readonly FakeGraphOptions _options;
    private readonly TimeProvider _time;
    private readonly WebApplication _app;
    private readonly HttpClient _callbacks;
    private readonly ConcurrentDictionary<string, string> _applications = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, (string ClientId, DateTimeOffset Expires)> _tokens = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, Mailbox> _mailboxes = new(StringComparer.OrdinalIgnoreCase);
    private readonly ConcurrentDictionary<string, FakeGraphSubscription> _subscriptions = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, string> _lastNotification = new(StringComparer.Ordinal);
    private readonly ConcurrentQueue<FakeGraphValidation> _validations = new();
    private readonly ConcurrentQueue<FakeGraphDelivery> _deliveries = new();
    private readonly ConcurrentDictionary<string, ConcurrentQueue<(int Status, string Code)>> _failures = new(StringComparer.Ordinal);
    private long _tokenRequests;
    private long _inboxReads;
    private long _messageReads;
    private long _counter;
    private int _loseAnswers;

    private FakeGraphServer(FakeGraphOptions options, TimeProvider time)
    {
        _options = options;
        _time = time;
        _callbacks = new HttpClient(new SocketsHttpHandler { PooledConnectionIdleTimeout = TimeSpan.FromSeconds(30) }) { Timeout = Timeout.InfiniteTimeSpan };
        var builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions());
        builder.WebHost.UseKestrelCore();
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.AddServerHeader = false;
            k.Listen(IPAddress.Loopback, options.Port);
        });
        _app = builder.Build();
        ((IApplicationBuilder)_app).Run(HandleAsync);
    }

    /// <summary>The server, e.g. <c>http://127.0.0.1:50123</c>: the connector's Graph <c>baseUrl</c> (the API is under <c>/v1.0</c>).</summary>
    public string BaseUrl { get; private set; } = string.Empty;

    /// <summary>The client-credentials token endpoint of <see cref="FakeGraphOptions.TenantId"/>.</summary>
    public string TokenUrl => BaseUrl + "/" + _options.TenantId + "/oauth2/v2.0/token";

    /// <summary>The directory tenant id.</summary>
    public string TenantId => _options.TenantId;

    /// <summary>Token requests so far.</summary>
    public long TokenRequests => Interlocked.Read(ref _tokenRequests);

    /// <summary>Inbox reads (<c>GET …/mailFolders/inbox</c>) so far: the badge lookups clients made.</summary>
    public long InboxReads => Interlocked.Read(ref _inboxReads);

    /// <summary>Message reads so far: the preview lookups clients made.</summary>
    public long MessageReads => Interlocked.Read(ref _messageReads);

    /// <summary>The live subscriptions (expired ones excluded).</summary>
    public IReadOnlyList<FakeGraphSubscription> Subscriptions
        => [.. _subscriptions.Values.Where(s => s.ExpirationDateTime > _time.GetUtcNow()).OrderBy(s => s.Id, StringComparer.Ordinal)];

    /// <summary>Every validation request sent, oldest first.</summary>
    public IReadOnlyList<FakeGraphValidation> Validations => [.. _validations];

    /// <summary>Every notification POST made, oldest first.</summary>
    public IReadOnlyList<FakeGraphDelivery> Deliveries => [.. _deliveries];

    /// <summary>Starts a server on 127.0.0.1.</summary>
    public static async Task<FakeGraphServer> StartAsync(FakeGraphOptions? options = null, TimeProvider? timeProvider = null, CancellationToken cancellationToken = default)
    {
        options ??= new FakeGraphOptions();
        ArgumentOutOfRangeException.ThrowIfLessThan(options.MaxDeliveryAttempts, 1);
        var server = new FakeGraphServer(options, timeProvider ?? TimeProvider.System);
        try
        {
            await server._app.StartAsync(cancellationToken).ConfigureAwait(false);
            var bound = server._app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()?.Addresses.FirstOrDefault()
                ?? throw new InvalidOperationException("Kestrel reported no address.");
            server.BaseUrl = string.Create(CultureInfo.InvariantCulture, $"http://127.0.0.1:{new Uri(bound).Port}");
            return server;
        }
        catch
        {
            await server.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>Registers an application (app registration with Mail.Read application permission) and its secret.</summary>
    public void RegisterApplication(string clientId, string clientSecret)
    {
        ArgumentException.ThrowIfNullOrEmpty(clientId);
        ArgumentException.ThrowIfNullOrEmpty(clientSecret);
        _applications[clientId] = clientSecret;
    }

    /// <summary>Adds a mailbox reachable as <c>/users/{address}</c> and <c>/users/{objectId}</c>; returns its object id.</summary>
    public string AddMailbox(string address)
    {
        ArgumentException.ThrowIfNullOrEmpty(address);
        var mailbox = new Mailbox(Guid.NewGuid().ToString(), address);
        _mailboxes[address] = mailbox;
        _mailboxes[mailbox.ObjectId] = mailbox;
        return mailbox.ObjectId;
    }

    /// <summary>The unread messages of a mailbox's inbox.</summary>
    public int UnreadCount(string user) => GetMailbox(user).Unread;

    /// <summary>Forgets issued access tokens: their next use is 401 InvalidAuthenticationToken.</summary>
    public void ExpireAccessTokens() => _tokens.Clear();

    /// <summary>
    /// Answers the next <paramref name="count"/> requests of <paramref name="operation"/> (<c>token</c>, <c>create</c>,
    /// <c>renew</c>, <c>delete</c>, <c>reauthorize</c>, <c>inbox</c>, <c>message</c>) with this Graph error.
    /// </summary>
    public void FailNext(string operation, int count, int status, string code)
    {
        var queue = _failures.GetOrAdd(operation, static _ => new ConcurrentQueue<(int, string)>());
        for (var i = 0; i < count; i++)
        {
            queue.Enqueue((status, code));
        }
    }

    /// <summary>
    /// The next <paramref name="count"/> notification answers are lost on the way back (the client stored the notification,
    /// Graph never saw the 2xx): Graph counts those deliveries as failed (status 0) and retries them.
    /// </summary>
    public void LoseAnswers(int count) => Volatile.Write(ref _loseAnswers, count);

    /// <summary>Removes a subscription without telling the client (as when Graph drops it silently).</summary>
    public bool DropSubscription(string id) => _subscriptions.TryRemove(id, out _);

    /// <summary>
    /// Delivers a message to the inbox of <paramref name="user"/> and POSTs a <c>created</c> notification to every
    /// subscription on it, retrying undelivered ones; returns the message id once every delivery finished.
    /// </summary>
    public async Task<string> DeliverAsync(string user, string subject, string fromName, string fromAddress, CancellationToken cancellationToken = default)
    {
        var mailbox = GetMailbox(user);
        var id = "AAMkAD" + Interlocked.Increment(ref _counter).ToString("D8", CultureInfo.InvariantCulture) + "=";
        mailbox.Messages[id] = new FakeGraphMessage(id, subject, fromName, fromAddress, _time.GetUtcNow(), IsRead: false);
        await NotifyAsync(mailbox, id, "created", cancellationToken).ConfigureAwait(false);
        return id;
    }

    /// <summary>Marks a message read and POSTs an <c>updated</c> notification.</summary>
    public async Task MarkReadAsync(string user, string messageId, CancellationToken cancellationToken = default)
    {
        var mailbox = GetMailbox(user);
        mailbox.Messages[messageId] = mailbox.Messages[messageId] with { IsRead = true };
        await NotifyAsync(mailbox, messageId, "updated", cancellationToken).ConfigureAwait(false);
    }

    /// <summary>POSTs the last change notification of <paramref name="subscriptionId"/> again, as Graph does when it did not see the answer.</summary>
    public async Task<int> RedeliverAsync(string subscriptionId, CancellationToken cancellationToken = default)
    {
        var subscription = _subscriptions[subscriptionId];
        var body = _lastNotification[subscriptionId];
        return await PostAsync(subscription.Id, subscription.NotificationUrl, "change", body, attempt: 2, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// POSTs a lifecycle notification (<c>reauthorizationRequired</c>, <c>subscriptionRemoved</c>, <c>missed</c>) to the
    /// subscription's lifecycleNotificationUrl; <c>subscriptionRemoved</c> deletes the subscription first and
    /// <c>reauthorizationRequired</c> marks it until it is reauthorized or renewed. Returns the client's status.
    /// </summary>
    public async Task<int> SendLifecycleAsync(string subscriptionId, string lifecycleEvent, CancellationToken cancellationToken = default)
    {
        if (!_subscriptions.TryGetValue(subscriptionId, out var subscription) || subscription.LifecycleNotificationUrl is null)
        {
            throw new InvalidOperationException("No subscription " + subscriptionId + " with a lifecycleNotificationUrl.");
        }

        if (lifecycleEvent == "subscriptionRemoved")
        {
            _subscriptions.TryRemove(subscriptionId, out _);
        }
        else if (lifecycleEvent == "reauthorizationRequired")
        {
            _subscriptions[subscriptionId] = subscription with { NeedsReauthorization = true };
        }

        var body = JsonSerializer.Serialize(new
        {
            value = new[]
            {
                new Dictionary<string, object?>
                {
                    ["subscriptionId"] = subscription.Id,
                    ["subscriptionExpirationDateTime"] = Format(subscription.ExpirationDateTime),
                    ["tenantId"] = _options.TenantId,
                    ["clientState"] = subscription.ClientState,
                    ["lifecycleEvent"] = lifecycleEvent,
                },
            },
        });
        return await DeliverWithRetriesAsync(subscription.Id, subscription.LifecycleNotificationUrl, "lifecycle", body, cancellationToken).ConfigureAwait(false);
    }

    private async Task NotifyAsync(Mailbox mailbox, string messageId, string changeType, CancellationToken cancellationToken)
    {
        var now = _time.GetUtcNow();
        var targets = _subscriptions.Values
            .Where(s => s.ExpirationDateTime > now && mailbox.Matches(s.UserId) && s.ChangeType.Split(',').Contains(changeType, StringComparer.Ordinal))
            .ToList();
        var tasks = new List<Task>(targets.Count);
        foreach (var s in targets)
        {
            var resource = "Users/" + mailbox.ObjectId + "/Messages/" + messageId;
            var body = JsonSerializer.Serialize(new
            {
                value = new[]
                {
                    new Dictionary<string, object?>
                    {
                        ["subscriptionId"] = s.Id,
                        ["subscriptionExpirationDateTime"] = Format(s.ExpirationDateTime),
                        ["changeType"] = changeType,
                        ["resource"] = resource,
                        ["resourceData"] = new Dictionary<string, object?>
                        {
                            ["@odata.type"] = "#Microsoft.Graph.Message",
                            ["@odata.id"] = resource,
                            ["@odata.etag"] = "W/\"CQAAABYAAAB" + messageId.Length.ToString(CultureInfo.InvariantCulture) + "\"",
                            ["id"] = messageId,
                        },
                        ["clientState"] = s.ClientState,
                        ["tenantId"] = _options.TenantId,
                    },
                },
            });
            _lastNotification[s.Id] = body;
            tasks.Add(DeliverWithRetriesAsync(s.Id, s.NotificationUrl, "change", body, cancellationToken));
        }

        await Task.WhenAll(tasks).ConfigureAwait(false);
    }

    private async Task<int> DeliverWithRetriesAsync(string subscriptionId, string url, string kind, string body, CancellationToken cancellationToken)
    {
        var delay = _options.RetryDelay;
        var status = 0;
        for (var attempt = 1; attempt <= _options.MaxDeliveryAttempts; attempt++)
        {
            status = await PostAsync(subscriptionId, url, kind, body, attempt, cancellationToken).ConfigureAwait(false);
            if (status is >= 200 and < 300)
            {
                return status;
            }

            if (attempt < _options.MaxDeliveryAttempts)
            {
                await Task.Delay(delay, cancellationToken).ConfigureAwait(false);
                delay *= 2;
            }
        }

        return status;
    }

    private async Task<int> PostAsync(string subscriptionId, string url, string kind, string body, int attempt, CancellationToken cancellationToken)
    {
        var started = Stopwatch.GetTimestamp();
        int status;
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(_options.NotificationTimeout);
        try
        {
            using var content = new StringContent(body, Encoding.UTF8, "application/json");
            using var response = await _callbacks.PostAsync(url, content, timeout.Token).ConfigureAwait(false);
            status = (int)response.StatusCode;
            if (Interlocked.Decrement(ref _loseAnswers) >= 0)
            {
                status = 0;
            }
            else
            {
                Interlocked.Exchange(ref _loseAnswers, 0);
            }
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            status = 0; // too slow: Graph counts it as undelivered
        }
        catch (HttpRequestException)
        {
            status = 0;
        }

        _deliveries.Enqueue(new FakeGraphDelivery(subscriptionId, url, kind, attempt, status, Stopwatch.GetElapsedTime(started), body));
        return status;
    }

    private Mailbox GetMailbox(string user)
        => _mailboxes.TryGetValue(user, out var m) ? m : throw new InvalidOperationException("No mailbox " + user + "; call AddMailbox first.");

    private static string Format(DateTimeOffset t) => t.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.fffffff'Z'", CultureInfo.InvariantCulture);

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync().ConfigureAwait(false);
        await _app.DisposeAsync().ConfigureAwait(false);
        _callbacks.Dispose();
    }

    // ---- HTTP ----

    private async Task HandleAsync(HttpContext http)
    {
        var path = http.Request.Path.Value ?? "/";
        var method = http.Request.Method;
        if (method == "POST" && path.EndsWith("/oauth2/v2.0/token", StringComparison.Ordinal))
        {
            await TokenAsync(http).ConfigureAwait(false);
            return;
        }

        if (!path.StartsWith("/v1.0/", StringComparison.Ordinal))
        {
            await ErrorAsync(http, 400, "BadRequest", "Invalid version: the path must start with /v1.0/.").ConfigureAwait(false);
            return;
        }

        if (!Authorized(http))
        {
            await ErrorAsync(http, 401, "InvalidAuthenticationToken", "Access token is empty or has expired.").ConfigureAwait(false);
            return;
        }

        var rest = path["/v1.0/".Length..];
        var segments = rest.Split('/');
        if (segments[0] == "subscriptions")
        {
            await SubscriptionsAsync(http, segments).ConfigureAwait(false);
            return;
        }

        if (method == "GET" && segments.Length >= 3 && segments[0].Equals("users", StringComparison.OrdinalIgnoreCase))
        {
            var user = Uri.UnescapeDataString(segments[1]);
            if (!_mailboxes.TryGetValue(user, out var mailbox))
            {
                await ErrorAsync(http, 404, "ErrorInvalidUser", "The requested user '" + user + "' is invalid.").ConfigureAwait(false);
                return;
            }

            if (segments.Length == 3 && InboxSegment().IsMatch(segments[2]) || segments.Length == 4 && segments[2].Equals("mailFolders", StringComparison.OrdinalIgnoreCase) && segments[3].Equals("inbox", StringComparison.OrdinalIgnoreCase))
            {
                if (await InjectedAsync(http, "inbox").ConfigureAwait(false))
                {
                    return;
                }

                Interlocked.Increment(ref _inboxReads);
                await WriteJsonAsync(http, 200, new Dictionary<string, object?>
                {
                    ["@odata.context"] = BaseUrl + "/v1.0/$metadata#users('" + mailbox.ObjectId + "')/mailFolders/$entity",
                    ["id"] = "AAMkADInbox" + mailbox.ObjectId[..8] + "=",
                    ["displayName"] = "Inbox",
                    ["parentFolderId"] = "AAMkADRoot=",
                    ["childFolderCount"] = 0,
                    ["unreadItemCount"] = mailbox.Unread,
                    ["totalItemCount"] = mailbox.Messages.Count,
                    ["isHidden"] = false,
                }).ConfigureAwait(false);
                return;
            }

            if (segments.Length == 4 && segments[2].Equals("messages", StringComparison.OrdinalIgnoreCase))
            {
                if (await InjectedAsync(http, "message").ConfigureAwait(false))
                {
                    return;
                }

                Interlocked.Increment(ref _messageReads);
                if (!mailbox.Messages.TryGetValue(Uri.UnescapeDataString(segments[3]), out var message))
                {
                    await ErrorAsync(http, 404, "ErrorItemNotFound", "The specified object was not found in the store.").ConfigureAwait(false);
                    return;
                }

                await WriteJsonAsync(http, 200, new Dictionary<string, object?>
                {
                    ["id"] = message.Id,
                    ["subject"] = message.Subject,
                    ["isRead"] = message.IsRead,
                    ["receivedDateTime"] = Format(message.ReceivedAt),
                    ["from"] = new { emailAddress = new { name = message.FromName, address = message.FromAddress } },
                }).ConfigureAwait(false);
                return;
            }
        }

        await ErrorAsync(http, 400, "BadRequest", "Resource not found for the segment '" + segments[0] + "'.").ConfigureAwait(false);
    }

    private async Task TokenAsync(HttpContext http)
    {
        Interlocked.Increment(ref _tokenRequests);
        if (_failures.TryGetValue("token", out var q) && q.TryDequeue(out var f))
        {
            await WriteJsonAsync(http, f.Status, new { error = f.Code, error_description = "AADSTS50000: Injected failure." }).ConfigureAwait(false);
            return;
        }

        if (!http.Request.HasFormContentType)
        {
            await WriteJsonAsync(http, 400, new { error = "invalid_request", error_description = "AADSTS900144: The request body must contain the following parameter: 'grant_type'." }).ConfigureAwait(false);
            return;
        }

        var form = await http.Request.ReadFormAsync(http.RequestAborted).ConfigureAwait(false);
        var segments = (http.Request.Path.Value ?? string.Empty).Split('/', StringSplitOptions.RemoveEmptyEntries);
        if (segments.Length == 0 || !string.Equals(segments[0], _options.TenantId, StringComparison.OrdinalIgnoreCase))
        {
            await WriteJsonAsync(http, 400, new { error = "invalid_request", error_description = "AADSTS90002: Tenant '" + (segments.Length > 0 ? segments[0] : string.Empty) + "' not found." }).ConfigureAwait(false);
            return;
        }

        if (form["grant_type"] != "client_credentials")
        {
            await WriteJsonAsync(http, 400, new { error = "unsupported_grant_type", error_description = "AADSTS70003: The app requested an unsupported grant type." }).ConfigureAwait(false);
            return;
        }

        var clientId = form["client_id"].ToString();
        if (!_applications.TryGetValue(clientId, out var secret))
        {
            await WriteJsonAsync(http, 400, new { error = "unauthorized_client", error_description = "AADSTS700016: Application with identifier '" + clientId + "' was not found in the directory." }).ConfigureAwait(false);
            return;
        }

        if (!CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(secret), Encoding.UTF8.GetBytes(form["client_secret"].ToString())))
        {
            await WriteJsonAsync(http, 401, new { error = "invalid_client", error_description = "AADSTS7000215: Invalid client secret provided." }).ConfigureAwait(false);
            return;
        }

        if (form["scope"] != DefaultScope)
        {
            await WriteJsonAsync(http, 400, new { error = "invalid_scope", error_description = "AADSTS1002012: The provided value for scope is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier." }).ConfigureAwait(false);
            return;
        }

        var token = "eyJ0eXAi." + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(24));
        _tokens[token] = (clientId, _time.GetUtcNow() + _options.AccessTokenLifetime);
        await WriteJsonAsync(http, 200, new Dictionary<string, object>
        {
            ["token_type"] = "Bearer",
            ["expires_in"] = (int)_options.AccessTokenLifetime.TotalSeconds,
            ["ext_expires_in"] = (int)_options.AccessTokenLifetime.TotalSeconds,
            ["access_token"] = token,
        }).ConfigureAwait(false);
    }

    private bool Authorized(HttpContext http)
    {
        var header = http.Request.Headers.Authorization.ToString();
        if (!header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase))
        {
            return false;
        }

        var token = header["Bearer ".Length..].Trim();
        if (!_tokens.TryGetValue(token, out var entry) || entry.Expires <= _time.GetUtcNow())
        {
            return false;
        }

        http.Items["app"] = entry.ClientId;
        return true;
    }

    private async Task SubscriptionsAsync(HttpContext http, string[] segments)
    {
        var method = http.Request.Method;
        if (segments.Length == 1 && method == "POST")
        {
            await CreateAsync(http).ConfigureAwait(false);
            return;
        }

        if (segments.Length == 1 && method == "GET")
        {
            await WriteJsonAsync(http, 200, new { value = Subscriptions.Select(Describe).ToArray() }).ConfigureAwait(false);
            return;
        }

        var id = segments.Length >= 2 ? Uri.UnescapeDataString(segments[1]) : string.Empty;
        var live = _subscriptions.TryGetValue(id, out var subscription) && subscription.ExpirationDateTime > _time.GetUtcNow();
        if (segments.Length == 3 && segments[2] == "reauthorize" && method == "POST")
        {
            if (await InjectedAsync(http, "reauthorize").ConfigureAwait(false))
            {
                return;
            }

            if (!live)
            {
                await NotFoundAsync(http, id).ConfigureAwait(false);
                return;
            }

            _subscriptions[id] = subscription! with { NeedsReauthorization = false };
            http.Response.StatusCode = 204;
            return;
        }

        if (segments.Length != 2)
        {
            await ErrorAsync(http, 400, "BadRequest", "Unsupported subscriptions path.").ConfigureAwait(false);
            return;
        }

        switch (method)
        {
            case "GET" when live:
                await WriteJsonAsync(http, 200, Describe(subscription!)).ConfigureAwait(false);
                return;
            case "PATCH":
                if (await InjectedAsync(http, "renew").ConfigureAwait(false))
                {
                    return;
                }

                if (!live)
                {
                    await NotFoundAsync(http, id).ConfigureAwait(false);
                    return;
                }

                using (var doc = await ReadJsonAsync(http).ConfigureAwait(false))
                {
                    if (doc is null || !doc.RootElement.TryGetProperty("expirationDateTime", out var e) || e.ValueKind != JsonValueKind.String || !e.TryGetDateTimeOffset(out var requested))
                    {
                        await ErrorAsync(http, 400, "InvalidRequest", "expirationDateTime is required.").ConfigureAwait(false);
                        return;
                    }

                    if (!TryGrant(requested, out var granted, out var problem))
                    {
                        await ErrorAsync(http, 400, "InvalidRequest", problem!).ConfigureAwait(false);
                        return;
                    }

                    var renewed = subscription! with { ExpirationDateTime = granted, NeedsReauthorization = false, Renewals = subscription.Renewals + 1 };
                    _subscriptions[id] = renewed;
                    await WriteJsonAsync(http, 200, Describe(renewed)).ConfigureAwait(false);
                }

                return;
            case "DELETE":
                if (await InjectedAsync(http, "delete").ConfigureAwait(false))
                {
                    return;
                }

                if (!_subscriptions.TryRemove(id, out _) || !live)
                {
                    await NotFoundAsync(http, id).ConfigureAwait(false);
                    return;
                }

                http.Response.StatusCode = 204;
                return;
            default:
                await NotFoundAsync(http, id).ConfigureAwait(false);
                return;
        }
    }

    private async Task CreateAsync(HttpContext http)
    {
        if (await InjectedAsync(http, "create").ConfigureAwait(false))
        {
            return;
        }

        using var doc = await ReadJsonAsync(http).ConfigureAwait(false);
        if (doc is null || doc.RootElement.ValueKind != JsonValueKind.Object)
        {
            await ErrorAsync(http, 400, "InvalidRequest", "The request body is not a JSON object.").ConfigureAwait(false);
            return;
        }

        var root = doc.RootElement;
        string? Str(string name) => root.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;
        var changeType = Str("changeType");
        var notificationUrl = Str("notificationUrl");
        var lifecycleUrl = Str("lifecycleNotificationUrl");
        var resource = Str("resource");
        var clientState = Str("clientState");
        var expiration = Str("expirationDateTime");

        if (string.IsNullOrEmpty(changeType) || changeType.Split(',').Any(c => c is not ("created" or "updated" or "deleted")))
        {
            await ErrorAsync(http, 400, "InvalidRequest", "changeType must be a comma-separated list of created, updated, deleted.").ConfigureAwait(false);
            return;
        }

        if (!ValidUrl(notificationUrl) || lifecycleUrl is not null && !ValidUrl(lifecycleUrl))
        {
            await ErrorAsync(http, 400, "InvalidRequest", _options.RequireHttps ? "notificationUrl and lifecycleNotificationUrl must be https URLs." : "notificationUrl and lifecycleNotificationUrl must be absolute http(s) URLs.").ConfigureAwait(false);
            return;
        }

        var match = resource is null ? null : ResourcePattern().Match(resource);
        if (match is null || !match.Success)
        {
            await ErrorAsync(http, 400, "ExtensionError", "Operation: Create; Exception: [Status Code: BadRequest; Reason: Unsupported resource '" + resource + "']").ConfigureAwait(false);
            return;
        }

        var user = Uri.UnescapeDataString(match.Groups["user"].Value).Trim('\'');
        if (!_mailboxes.ContainsKey(user))
        {
            await ErrorAsync(http, 404, "ExtensionError", "Operation: Create; Exception: [Status Code: NotFound; Reason: The mailbox '" + user + "' was not found]").ConfigureAwait(false);
            return;
        }

        if (clientState is { Length: > 128 })
        {
            await ErrorAsync(http, 400, "InvalidRequest", "clientState must be at most 128 characters.").ConfigureAwait(false);
            return;
        }

        if (expiration is null || !DateTimeOffset.TryParse(expiration, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var requested))
        {
            await ErrorAsync(http, 400, "InvalidRequest", "expirationDateTime is required.").ConfigureAwait(false);
            return;
        }

        if (!TryGrant(requested, out var granted, out var problem))
        {
            await ErrorAsync(http, 400, "InvalidRequest", problem!).ConfigureAwait(false);
            return;
        }

        foreach (var url in lifecycleUrl is null ? new[] { notificationUrl! } : [notificationUrl!, lifecycleUrl])
        {
            var failure = await ValidateAsync(url, http.RequestAborted).ConfigureAwait(false);
            if (failure is not null)
            {
                await ErrorAsync(http, 400, "ValidationError", "Subscription validation request failed. " + failure).ConfigureAwait(false);
                return;
            }
        }

        var subscription = new FakeGraphSubscription
        {
            Id = Guid.NewGuid().ToString(),
            Resource = resource!,
            UserId = user,
            ChangeType = changeType,
            NotificationUrl = notificationUrl!,
            LifecycleNotificationUrl = lifecycleUrl,
            ClientState = clientState,
            ExpirationDateTime = granted,
            ApplicationId = (string)http.Items["app"]!,
        };
        _subscriptions[subscription.Id] = subscription;
        await WriteJsonAsync(http, 201, Describe(subscription)).ConfigureAwait(false);
    }

    /// <summary>Graph's validation handshake: null when the endpoint echoed the token in time as text/plain with 200.</summary>
    private async Task<string?> ValidateAsync(string url, CancellationToken cancellationToken)
    {
        // A token with characters that must be URL-decoded, as Graph's are.
        var token = "Validation: Testing client application reachability for subscription Request-Id: " + Guid.NewGuid() + " +&=/";
        var target = url + (url.Contains('?', StringComparison.Ordinal) ? "&" : "?") + "validationToken=" + Uri.EscapeDataString(token);
        var started = Stopwatch.GetTimestamp();
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(_options.ValidationTimeout);
        int status = 0;
        string? contentType = null, body = null, failure;
        try
        {
            using var content = new StringContent(string.Empty, Encoding.UTF8, "text/plain");
            using var response = await _callbacks.PostAsync(target, content, timeout.Token).ConfigureAwait(false);
            status = (int)response.StatusCode;
            contentType = response.Content.Headers.ContentType?.MediaType;
            body = await response.Content.ReadAsStringAsync(timeout.Token).ConfigureAwait(false);
            failure = status != 200 ? "Notification endpoint must respond with 200 OK to validation request."
                : !string.Equals(contentType, "text/plain", StringComparison.OrdinalIgnoreCase) ? "The response Content-Type must be text/plain."
                : body != token ? "The response body must be the decoded validation token."
                : null;
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            failure = "The validation request timed out after " + _options.ValidationTimeout.TotalSeconds.ToString(CultureInfo.InvariantCulture) + " seconds.";
        }
        catch (HttpRequestException e)
        {
            failure = "The notification endpoint could not be reached: " + e.Message;
        }

        _validations.Enqueue(new FakeGraphValidation(url, token, status, contentType, body, Stopwatch.GetElapsedTime(started), failure is null, failure));
        return failure;
    }

    private bool TryGrant(DateTimeOffset requested, out DateTimeOffset granted, out string? problem)
    {
        var now = _time.GetUtcNow();
        granted = requested;
        if (requested <= now)
        {
            problem = "Subscription expiration must be in the future.";
            return false;
        }

        if (requested > now + _options.MaxSubscriptionLifetime + TimeSpan.FromMinutes(1))
        {
            problem = "Subscription expiration can only be " + _options.MaxSubscriptionLifetime.TotalMinutes.ToString(CultureInfo.InvariantCulture) + " minutes in the future.";
            return false;
        }

        if (_options.GrantedLifetime is { } max && requested > now + max)
        {
            granted = now + max;
        }

        problem = null;
        return true;
    }

    private bool ValidUrl(string? url)
        => Uri.TryCreate(url, UriKind.Absolute, out var u)
            && (u.Scheme == Uri.UriSchemeHttps || !_options.RequireHttps && u.Scheme == Uri.UriSchemeHttp);

    private Dictionary<string, object?> Describe(FakeGraphSubscription s) => new()
    {
        ["@odata.context"] = BaseUrl + "/v1.0/$metadata#subscriptions/$entity",
        ["id"] = s.Id,
        ["resource"] = s.Resource,
        ["applicationId"] = s.ApplicationId,
        ["changeType"] = s.ChangeType,
        ["clientState"] = s.ClientState,
        ["notificationUrl"] = s.NotificationUrl,
        ["notificationQueryOptions"] = null,
        ["lifecycleNotificationUrl"] = s.LifecycleNotificationUrl,
        ["expirationDateTime"] = Format(s.ExpirationDateTime),
        ["creatorId"] = s.ApplicationId,
        ["includeResourceData"] = false,
        ["latestSupportedTlsVersion"] = "v1_2",
        ["encryptionCertificate"] = null,
        ["encryptionCertificateId"] = null,
        ["notificationUrlAppId"] = null,
    };

    private async Task<bool> InjectedAsync(HttpContext http, string operation)
    {
        if (_failures.TryGetValue(operation, out var q) && q.TryDequeue(out var f))
        {
            await ErrorAsync(http, f.Status, f.Code, "Injected failure of " + operation + ".").ConfigureAwait(false);
            return true;
        }

        return false;
    }

    private static async Task<JsonDocument?> ReadJsonAsync(HttpContext http)
    {
        try
        {
            return await JsonDocument.ParseAsync(http.Request.Body, default, http.RequestAborted).ConfigureAwait(false);
        }
        catch (JsonException)
        {
            return null;
        }
    }

    private static Task NotFoundAsync(HttpContext http, string id)
        => ErrorAsync(http, 404, "ResourceNotFound", "The object was not found. Subscription '" + id + "' does not exist.");

    private static Task ErrorAsync(HttpContext http, int status, string code, string message)
        => WriteJsonAsync(http, status, new
        {
            error = new
            {
                code,
                message,
                innerError = new Dictionary<string, string>
                {
                    ["date"] = DateTimeOffset.UtcNow.ToString("yyyy-MM-dd'T'HH:mm:ss", CultureInfo.InvariantCulture),
                    ["request-id"] = Guid.NewGuid().ToString(),
                    ["client-request-id"] = http.Request.Headers["client-request-id"].ToString(),
                },
            },
        });

    private static async Task WriteJsonAsync<T>(HttpContext http, int status, T value)
    {
        http.Response.StatusCode = status;
        http.Response.ContentType = "application/json; odata.metadata=minimal; odata.streaming=true; IEEE754Compatible=false; charset=utf-8";
        await JsonSerializer.SerializeAsync(http.Response.Body, value, Json, http.RequestAborted).ConfigureAwait(false);
    }

    [GeneratedRegex(@"^/?users/(?<user>[^/]+)/(mailFolders(\('inbox'\)|/inbox)/)?messages$", RegexOptions.IgnoreCase | RegexOptions.CultureInvariant)]
    private static partial Regex ResourcePattern();

    [GeneratedRegex(@"^mailFolders\('inbox'\)$", RegexOptions.IgnoreCase | RegexOptions.CultureInvariant)]
    private static partial Regex InboxSegment();

    private sealed class Mailbox(string objectId, string address)
    {
        public string ObjectId { get; } = objectId;
        public string Address { get; } = address;
        public ConcurrentDictionary<string, FakeGraphMessage> Messages { get; } = new(StringComparer.Ordinal);
        public int Unread => Messages.Values.Count(m => !m.IsRead);

        public bool Matches(string user)
            => string.Equals(user, ObjectId, StringComparison.OrdinalIgnoreCase) || string.Equals(user, Address, StringComparison.OrdinalIgnoreCase);
    }
}
