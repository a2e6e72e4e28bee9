using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Herald.Core.Ports;

namespace Herald.Sources.Graph;

/// <summary>A Graph error answer: the HTTP status and Graph's <c>error.code</c>.</summary>
public sealed class GraphException(int status, string? code, string message) : Exception(message)
{
    /// <summary>The HTTP status (0 when the server could not be reached).</summary>
    public int Status { get; } = status;

    /// <summary>Graph's error code (<c>ResourceNotFound</c>, <c>InvalidRequest</c>, …) or the OAuth2 error.</summary>
    public string? Code { get; } = code;

    /// <summary>Whether the subscription is gone on the server (renew or reauthorize cannot help; create a new one).</summary>
    public bool IsNotFound => Status == (int)HttpStatusCode.NotFound;

    /// <summary>Whether the token endpoint failed (client id or secret refused, endpoint unreachable), not Graph itself.</summary>
    public bool FromTokenEndpoint { get; private init; }

    internal static GraphException OfToken(GraphException e) => new(e.Status, e.Code, e.Message) { FromTokenEndpoint = true };
}

/// <summary>Where and as whom a graph connector reaches Microsoft Graph.</summary>
public sealed record GraphEndpoint(string BaseUrl, string TokenUrl, string ClientId, string ClientSecret, string Scope)
{
    /// <summary>The scope of app-only Graph tokens.</summary>
    public const string DefaultScope = "https://graph.microsoft.com/.default";
}

/// <summary>What Graph returned for a created or renewed subscription.</summary>
public sealed record GraphSubscriptionInfo(string Id, DateTimeOffset ExpirationDateTime);

/// <summary>
/// Microsoft Graph for one connector: OAuth2 client credentials (the token is cached until five minutes before it
/// expires, or half its lifetime when that is shorter; a 401 drops it and the call is tried once more), the
/// subscriptions API, the inbox unread count and a message's subject and sender. The HTTP client is shared.
/// </summary>
public sealed class GraphClient(GraphEndpoint endpoint, HttpClient http, TimeProvider time) : IDisposable
{
    /// <summary>How long a refused token request (4xx: a wrong secret, an unknown client) is answered from memory.</summary>
    public static readonly TimeSpan TokenRefusalHold = TimeSpan.FromSeconds(30);

    /// <summary>How long an unreachable or failing (5xx) token endpoint is answered from memory.</summary>
    public static readonly TimeSpan TokenOutageHold = TimeSpan.FromSeconds(5);

    private readonly SemaphoreSlim _tokenGate = new(1, 1);
    private string? _token;
    private DateTimeOffset _tokenRefreshAt;
    private (GraphException Error, DateTimeOffset Until)? _tokenFailure;

    /// <summary>The connector's settings.</summary>
    public GraphEndpoint Endpoint { get; } = endpoint;

    /// <summary>Token requests made so far.</summary>
    public int TokenRequests { get; private set; }

    /// <inheritdoc />
    public void Dispose() => _tokenGate.Dispose();

    /// <summary><c>POST /v1.0/subscriptions</c>; Graph validates both URLs before it answers.</summary>
    public async Task<GraphSubscriptionInfo> CreateSubscriptionAsync(string resource, string changeType, string notificationUrl, string lifecycleNotificationUrl, string clientState, DateTimeOffset expiration, CancellationToken cancellationToken)
    {
        var body = JsonSerializer.Serialize(new Dictionary<string, string>
        {
            ["changeType"] = changeType,
            ["notificationUrl"] = notificationUrl,
            ["lifecycleNotificationUrl"] = lifecycleNotificationUrl,
            ["resource"] = resource,
            ["expirationDateTime"] = Format(expiration),
            ["clientState"] = clientState,
        }, GraphJsonContext.Default.DictionaryStringString);
        using var doc = await SendAsync(HttpMethod.Post, "subscriptions", body, cancellationToken).ConfigureAwait(false);
        return ReadSubscription(doc!.RootElement);
    }

    /// <summary><c>PATCH /v1.0/subscriptions/{id}</c> with a new expirationDateTime; returns what Graph granted.</summary>
    public async Task<GraphSubscriptionInfo> RenewSubscriptionAsync(string id, DateTimeOffset expiration, CancellationToken cancellationToken)
    {
        var body = JsonSerializer.Serialize(new Dictionary<string, string> { ["expirationDateTime"] = Format(expiration) }, GraphJsonContext.Default.DictionaryStringString);
        using var doc = await SendAsync(HttpMethod.Patch, "subscriptions/" + Uri.EscapeDataString(id), body, cancellationToken).ConfigureAwait(false);
        return ReadSubscription(doc!.RootElement);
    }

    /// <summary><c>POST /v1.0/subscriptions/{id}/reauthorize</c>.</summary>
    public async Task ReauthorizeSubscriptionAsync(string id, CancellationToken cancellationToken)
    {
        using var _ = await SendAsync(HttpMethod.Post, "subscriptions/" + Uri.EscapeDataString(id) + "/reauthorize", string.Empty, cancellationToken).ConfigureAwait(false);
    }

    /// <summary><c>DELETE /v1.0/subscriptions/{id}</c>; a subscription already gone is not an error.</summary>
    public async Task DeleteSubscriptionAsync(string id, CancellationToken cancellationToken)
    {
        try
        {
            using var _ = await SendAsync(HttpMethod.Delete, "subscriptions/" + Uri.EscapeDataString(id), null, cancellationToken).ConfigureAwait(false);
        }
        catch (GraphException e) when (e.IsNotFound)
        {
            // Already gone.
        }
    }

    /// <summary>The inbox's <c>unreadItemCount</c>: <c>GET /v1.0/users/{user}/mailFolders/inbox?$select=unreadItemCount</c>.</summary>
    public async Task<int> GetInboxUnreadCountAsync(string user, CancellationToken cancellationToken)
    {
        using var doc = await SendAsync(HttpMethod.Get, "users/" + Uri.EscapeDataString(user) + "/mailFolders/inbox?$select=unreadItemCount", null, cancellationToken).ConfigureAwait(false);
        return doc!.RootElement.TryGetProperty("unreadItemCount", out var n) && n.TryGetInt32(out var count)
            ? count
            : throw new GraphException(200, "UnexpectedResponse", "The mail folder has no unreadItemCount.");
    }

    /// <summary>Subject and sender (display name, else address) of a message, for preview alerts only (never stored).</summary>
    public async Task<MailPreview> GetMessagePreviewAsync(string user, string messageId, CancellationToken cancellationToken)
    {
        using var doc = await SendAsync(HttpMethod.Get, "users/" + Uri.EscapeDataString(user) + "/messages/" + Uri.EscapeDataString(messageId) + "?$select=subject,from", null, cancellationToken).ConfigureAwait(false);
        var root = doc!.RootElement;
        var subject = root.TryGetProperty("subject", out var s) && s.ValueKind == JsonValueKind.String ? s.GetString() : null;
        string? from = null;
        string? address = null;
        if (root.TryGetProperty("from", out var f) && f.ValueKind == JsonValueKind.Object && f.TryGetProperty("emailAddress", out var e) && e.ValueKind == JsonValueKind.Object)
        {
            var name = e.TryGetProperty("name", out var n) && n.ValueKind == JsonValueKind.String ? n.GetString() : null;
            address = e.TryGetProperty("address", out var a) && a.ValueKind == JsonValueKind.String ? a.GetString() : null;
            from = string.IsNullOrWhiteSpace(name) ? address : name;
        }

        return new MailPreview(subject, from) { FromAddress = address, MessageRef = messageId };
    }

    private async Task<JsonDocument?> SendAsync(HttpMethod method, string path, string? json, CancellationToken cancellationToken)
    {
        for (var attempt = 1; ; attempt++)
        {
            var token = await GetTokenAsync(cancellationToken).ConfigureAwait(false);
            using var request = new HttpRequestMessage(method, Endpoint.BaseUrl.TrimEnd('/') + "/v1.0/" + path);
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
            if (json is not null)
            {
                request.Content = new StringContent(json, Encoding.UTF8, "application/json");
            }

            HttpResponseMessage response;
            try
            {
                response = await http.SendAsync(request, cancellationToken).ConfigureAwait(false);
            }
            catch (HttpRequestException e)
            {
                throw new GraphException(0, "Unreachable", "Graph could not be reached: " + e.Message);
            }

            using (response)
            {
                if (response.StatusCode == HttpStatusCode.Unauthorized && attempt == 1)
                {
                    InvalidateToken(token);
                    continue;
                }

                var text = await response.Content.ReadAsStringAsync(cancellationToken).ConfigureAwait(false);
                if (!response.IsSuccessStatusCode)
                {
                    throw Error((int)response.StatusCode, text);
                }

                return text.Length == 0 ? null : JsonDocument.Parse(text);
            }
        }
    }

    private async Task<string> GetTokenAsync(CancellationToken cancellationToken)
    {
        var token = Volatile.Read(ref _token);
        if (token is not null && time.GetUtcNow() < _tokenRefreshAt)
        {
            return token;
        }

        await _tokenGate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (_token is not null && time.GetUtcNow() < _tokenRefreshAt)
            {
                return _token;
            }

            // Every subscription of the connector needs a token: while the endpoint refuses (or is down), they all get
            // the last answer instead of one request each. A fixed secret is a new endpoint, hence a new client.
            if (_tokenFailure is { } failure && time.GetUtcNow() < failure.Until)
            {
                throw failure.Error;
            }

            try
            {
                return await RequestTokenAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (GraphException e)
            {
                var hold = e.Status is >= 400 and < 500 ? TokenRefusalHold : TokenOutageHold;
                _tokenFailure = (e, time.GetUtcNow() + hold);
                throw;
            }
        }
        finally
        {
            _tokenGate.Release();
        }
    }

    private async Task<string> RequestTokenAsync(CancellationToken cancellationToken)
    {
        using var form = new FormUrlEncodedContent(new Dictionary<string, string>
        {
            ["grant_type"] = "client_credentials",
            ["client_id"] = Endpoint.ClientId,
            ["client_secret"] = Endpoint.ClientSecret,
            ["scope"] = Endpoint.Scope,
        });
        TokenRequests++;
        HttpResponseMessage response;
        try
        {
            response = await http.PostAsync(Endpoint.TokenUrl, form, cancellationToken).ConfigureAwait(false);
        }
        catch (HttpRequestException e)
        {
            throw GraphException.OfToken(new GraphException(0, "Unreachable", "The token endpoint could not be reached: " + e.Message));
        }

        using (response)
        {
            var text = await response.Content.ReadAsStringAsync(cancellationToken).ConfigureAwait(false);
            if (!response.IsSuccessStatusCode)
            {
                throw GraphException.OfToken(Error((int)response.StatusCode, text));
            }

            using var doc = JsonDocument.Parse(text);
            var root = doc.RootElement;
            var access = root.TryGetProperty("access_token", out var a) && a.ValueKind == JsonValueKind.String ? a.GetString() : null;
            var expiresIn = root.TryGetProperty("expires_in", out var e) && e.TryGetInt32(out var seconds) ? seconds : 3599;
            if (string.IsNullOrEmpty(access))
            {
                throw GraphException.OfToken(new GraphException((int)response.StatusCode, "invalid_response", "The token endpoint answered without an access_token."));
            }

            var lifetime = TimeSpan.FromSeconds(Math.Max(expiresIn, 1));
            var margin = TimeSpan.FromTicks(Math.Min(TimeSpan.FromMinutes(5).Ticks, lifetime.Ticks / 2));
            _tokenRefreshAt = time.GetUtcNow() + lifetime - margin;
            Volatile.Write(ref _token, access);
            _tokenFailure = null;
            return access;
        }
    }

    private void InvalidateToken(string token) => Interlocked.CompareExchange(ref _token, null, token);

    private static GraphException Error(int status, string text)
    {
        string? code = null, message = null;
        try
        {
            using var doc = JsonDocument.Parse(text);
            var root = doc.RootElement;
            if (root.TryGetProperty("error", out var error))
            {
                if (error.ValueKind == JsonValueKind.Object)
                {
                    code = error.TryGetProperty("code", out var c) ? c.GetString() : null;
                    message = error.TryGetProperty("message", out var m) ? m.GetString() : null;
                }
                else if (error.ValueKind == JsonValueKind.String)
                {
                    code = error.GetString();
                    message = root.TryGetProperty("error_description", out var d) ? d.GetString() : null;
                }
            }
        }
        catch (JsonException)
        {
            // Not Graph's JSON (a proxy's page): the status says enough.
        }

        return new GraphException(status, code, string.Create(CultureInfo.InvariantCulture, $"Graph answered {status} {code}: {message}"));
    }

    private static GraphSubscriptionInfo ReadSubscription(JsonElement root)
    {
        var id = root.TryGetProperty("id", out var i) && i.ValueKind == JsonValueKind.String ? i.GetString() : null;
        if (string.IsNullOrEmpty(id) || !root.TryGetProperty("expirationDateTime", out var e) || e.ValueKind != JsonValueKind.String || !e.TryGetDateTimeOffset(out var expiration))
        {
            throw new GraphException(200, "UnexpectedResponse", "The subscription has no id or expirationDateTime.");
        }

        return new GraphSubscriptionInfo(id, expiration);
    }

    private static string Format(DateTimeOffset t) => t.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.fffffff'Z'", CultureInfo.InvariantCulture);
}

/// <summary>Source-generated JSON of the Graph client's request bodies.</summary>
[System.Text.Json.Serialization.JsonSerializable(typeof(Dictionary<string, string>))]
internal sealed partial class GraphJsonContext : System.Text.Json.Serialization.JsonSerializerContext;
