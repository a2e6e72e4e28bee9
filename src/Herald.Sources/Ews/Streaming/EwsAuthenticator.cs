using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Herald.Core.Connectors;

namespace Herald.Sources.Ews.Streaming;

/// <summary>
/// The Authorization header of a connector's EWS requests: HTTP Basic for an on-premises service account (over HTTPS
/// only), or an OAuth2 client-credentials access token (app-only, e.g. Exchange Online's <c>full_access_as_app</c>)
/// fetched from the configured token URL and cached until shortly before it expires.
/// </summary>
public sealed class EwsAuthenticator : IDisposable
{
    private static readonly TimeSpan s_refreshEarly = TimeSpan.FromMinutes(5);

    private readonly ConnectorAuth _auth;
    private readonly EwsHttp _http;
    private readonly TimeProvider _time;
    private readonly EwsStreamingOptions _options;
    private readonly SemaphoreSlim _refresh = new(1, 1);
    private readonly AuthenticationHeaderValue? _basic;
    private AuthenticationHeaderValue? _bearer;
    private DateTimeOffset _bearerExpires;

    /// <summary>An authenticator for <paramref name="auth"/>; throws <see cref="ArgumentException"/> when it is incomplete.</summary>
    public EwsAuthenticator(ConnectorAuth auth, EwsHttp http, TimeProvider time, EwsStreamingOptions options)
    {
        ArgumentNullException.ThrowIfNull(auth);
        _auth = auth;
        _http = http ?? throw new ArgumentNullException(nameof(http));
        _time = time ?? throw new ArgumentNullException(nameof(time));
        _options = options ?? throw new ArgumentNullException(nameof(options));
        if (auth.IsBasic)
        {
            if (string.IsNullOrEmpty(auth.Username) || auth.Password is null)
            {
                throw new ArgumentException("Basic authentication needs a username and a password.", nameof(auth));
            }

            _basic = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes(auth.Username + ":" + auth.Password)));
        }
        else if (auth.IsOAuth2)
        {
            if (string.IsNullOrEmpty(auth.TokenUrl) || string.IsNullOrEmpty(auth.ClientId) || auth.ClientSecret is null)
            {
                throw new ArgumentException("OAuth2 needs tokenUrl, clientId and clientSecret.", nameof(auth));
            }

            CheckScheme(new Uri(auth.TokenUrl, UriKind.Absolute));
        }
        else
        {
            throw new ArgumentException("Authentication type must be oauth2 or basic.", nameof(auth));
        }
    }

    /// <summary>Access tokens fetched so far (for tests and metrics).</summary>
    public int TokensFetched { get; private set; }

    /// <summary>The header for a request to <paramref name="target"/>; refuses plain HTTP unless allowed.</summary>
    public async ValueTask<AuthenticationHeaderValue> GetAsync(Uri target, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(target);
        CheckScheme(target);
        if (_basic is not null)
        {
            return _basic;
        }

        var current = Volatile.Read(ref _bearer);
        if (current is not null && _time.GetUtcNow() < _bearerExpires)
        {
            return current;
        }

        await _refresh.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (_bearer is not null && _time.GetUtcNow() < _bearerExpires)
            {
                return _bearer;
            }

            var (token, lifetime) = await FetchTokenAsync(cancellationToken).ConfigureAwait(false);
            _bearer = new AuthenticationHeaderValue("Bearer", token);
            var early = lifetime > s_refreshEarly * 2 ? s_refreshEarly : lifetime / 2;
            _bearerExpires = _time.GetUtcNow() + lifetime - early;
            TokensFetched++;
            return _bearer;
        }
        finally
        {
            _refresh.Release();
        }
    }

    /// <summary>Releases the refresh lock.</summary>
    public void Dispose() => _refresh.Dispose();

    /// <summary>Forgets the cached token (after a 401), so the next request fetches a new one.</summary>
    public void Invalidate()
    {
        Volatile.Write(ref _bearer, null);
    }

    private async Task<(string Token, TimeSpan Lifetime)> FetchTokenAsync(CancellationToken cancellationToken)
    {
        var url = new Uri(_auth.TokenUrl!, UriKind.Absolute);
        var form = new List<KeyValuePair<string, string>>
        {
            new("grant_type", "client_credentials"),
            new("client_id", _auth.ClientId!),
            new("client_secret", _auth.ClientSecret!),
        };
        if (!string.IsNullOrEmpty(_auth.Scope))
        {
            form.Add(new("scope", _auth.Scope));
        }

        using var timeout = new CancellationTokenSource(_options.RequestTimeout, _time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
        using var request = new HttpRequestMessage(HttpMethod.Post, url) { Content = new FormUrlEncodedContent(form) };
        HttpResponseMessage response;
        try
        {
            response = await _http.For(url).SendAsync(request, linked.Token).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is HttpRequestException or IOException || (ex is OperationCanceledException && !cancellationToken.IsCancellationRequested))
        {
            throw new EwsStreamingException(EwsRecovery.Reconnect, "TokenEndpointUnreachable", null, null, ex);
        }

        using (response)
        {
            if (!response.IsSuccessStatusCode)
            {
                throw new EwsStreamingException(EwsRecovery.Unauthorized, "TokenRefused", (int)response.StatusCode);
            }

            var body = await response.Content.ReadAsByteArrayAsync(linked.Token).ConfigureAwait(false);
            try
            {
                using var json = JsonDocument.Parse(body);
                var root = json.RootElement;
                var token = root.GetProperty("access_token").GetString();
                var seconds = root.TryGetProperty("expires_in", out var e) && e.ValueKind == JsonValueKind.Number ? e.GetInt64()
                    : root.TryGetProperty("expires_in", out e) && long.TryParse(e.GetString(), out var parsed) ? parsed : 3600;
                if (string.IsNullOrEmpty(token) || seconds <= 0)
                {
                    throw new EwsStreamingException(EwsRecovery.Unauthorized, "TokenInvalid", (int)response.StatusCode);
                }

                return (token, TimeSpan.FromSeconds(seconds));
            }
            catch (Exception ex) when (ex is JsonException or KeyNotFoundException or InvalidOperationException)
            {
                throw new EwsStreamingException(EwsRecovery.Unauthorized, "TokenInvalid", (int)response.StatusCode, null, ex);
            }
        }
    }

    private void CheckScheme(Uri target)
    {
        // Plain HTTP only to a loopback peer (a local test Exchange) or when explicitly allowed: credentials never travel in clear.
        if (target.Scheme != Uri.UriSchemeHttps && !(target.Scheme == Uri.UriSchemeHttp && (_options.AllowInsecureHttp || target.IsLoopback)))
        {
            throw new EwsStreamingException(EwsRecovery.MailboxFailed, "InsecureTransportRefused");
        }
    }
}
