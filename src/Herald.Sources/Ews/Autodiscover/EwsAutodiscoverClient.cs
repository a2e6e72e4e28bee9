using System.Collections.Concurrent;
using System.Net;
using System.Net.Http.Headers;
using Herald.Sources.Ews.Streaming;

namespace Herald.Sources.Ews.Autodiscover;

/// <summary>
/// Finds each mailbox's EWS URL and GroupingInformation with Autodiscover: SOAP <c>GetUserSettings</c> (up to 100
/// mailboxes a request), falling back to POX (<c>autodiscover.xml</c>, one mailbox a request) when the SOAP service is
/// missing or answers garbage. Answers are cached per address until <see cref="EwsStreamingOptions.AutodiscoverCacheTtl"/>
/// passes or <see cref="Invalidate"/> (after ErrorProxyRequestNotAllowed / ErrorReadEventsFailed).
/// </summary>
public sealed class EwsAutodiscoverClient
{
    /// <summary>Mailboxes per SOAP GetUserSettings request (Exchange's limit).</summary>
    public const int MaxUsersPerRequest = 100;

    private readonly EwsHttp _http;
    private readonly EwsAuthenticator _auth;
    private readonly TimeProvider _time;
    private readonly EwsStreamingOptions _options;
    private readonly Uri? _configuredUrl;
    private readonly ConcurrentDictionary<string, (EwsUserSettings Settings, DateTimeOffset Expires)> _cache = new(StringComparer.OrdinalIgnoreCase);

    /// <summary>A client; <paramref name="autodiscoverUrl"/> is the SOAP (or POX) service URL, or null to derive it from each domain.</summary>
    public EwsAutodiscoverClient(EwsHttp http, EwsAuthenticator auth, TimeProvider time, EwsStreamingOptions options, Uri? autodiscoverUrl)
    {
        _http = http ?? throw new ArgumentNullException(nameof(http));
        _auth = auth ?? throw new ArgumentNullException(nameof(auth));
        _time = time ?? throw new ArgumentNullException(nameof(time));
        _options = options ?? throw new ArgumentNullException(nameof(options));
        _configuredUrl = autodiscoverUrl;
    }

    /// <summary>SOAP requests sent (for tests and metrics).</summary>
    public int SoapRequests { get; private set; }

    /// <summary>POX requests sent.</summary>
    public int PoxRequests { get; private set; }

    /// <summary>
    /// Settings for each address it could resolve (addresses Autodiscover does not know are absent from the answer).
    /// Throws <see cref="EwsStreamingException"/> when the service cannot be reached at all.
    /// </summary>
    public async Task<IReadOnlyDictionary<string, EwsUserSettings>> ResolveAsync(IReadOnlyCollection<string> addresses, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(addresses);
        var result = new Dictionary<string, EwsUserSettings>(StringComparer.OrdinalIgnoreCase);
        var now = _time.GetUtcNow();
        var missing = new List<string>();
        foreach (var address in addresses)
        {
            if (_cache.TryGetValue(address, out var hit) && hit.Expires > now)
            {
                result[address] = hit.Settings;
            }
            else if (!result.ContainsKey(address))
            {
                missing.Add(address);
            }
        }

        foreach (var byService in missing.GroupBy(ServiceUrl))
        {
            var list = byService.ToList();
            for (var i = 0; i < list.Count; i += MaxUsersPerRequest)
            {
                var batch = list.GetRange(i, Math.Min(MaxUsersPerRequest, list.Count - i));
                var answers = await SoapAsync(byService.Key, batch, cancellationToken).ConfigureAwait(false);
                for (var j = 0; j < batch.Count; j++)
                {
                    var settings = answers is null ? await PoxAsync(byService.Key, batch[j], cancellationToken).ConfigureAwait(false) : answers[j];
                    if (settings is not null)
                    {
                        result[batch[j]] = settings;
                        _cache[batch[j]] = (settings, _time.GetUtcNow() + _options.AutodiscoverCacheTtl);
                    }
                }
            }
        }

        return result;
    }

    /// <summary>Forgets the cached answer for <paramref name="address"/>.</summary>
    public void Invalidate(string address) => _cache.TryRemove(address, out _);

    /// <summary>The SOAP service URL for an address: the configured one, else <c>https://autodiscover.&lt;domain&gt;/autodiscover/autodiscover.svc</c>.</summary>
    public Uri ServiceUrl(string address)
    {
        if (_configuredUrl is not null)
        {
            return _configuredUrl.AbsolutePath.EndsWith(".xml", StringComparison.OrdinalIgnoreCase)
                ? new Uri(_configuredUrl, "autodiscover.svc")
                : _configuredUrl;
        }

        ArgumentNullException.ThrowIfNull(address);
        var at = address.LastIndexOf('@');
        var domain = at >= 0 ? address[(at + 1)..] : address;
        return new Uri("https://autodiscover." + domain + "/autodiscover/autodiscover.svc");
    }

    /// <summary>One answer per user (null for users it reported an error for), or null when SOAP Autodiscover is not usable.</summary>
    private async Task<IReadOnlyList<EwsUserSettings?>?> SoapAsync(Uri url, List<string> batch, CancellationToken cancellationToken)
    {
        SoapRequests++;
        var (status, body) = await PostAsync(url, EwsRequests.GetUserSettings(url, batch), EwsRequests.GetUserSettingsAction, cancellationToken).ConfigureAwait(false);
        if (status != HttpStatusCode.OK)
        {
            return null;
        }

        var users = EwsResponses.ReadUserSettings(body);
        return users is not null && users.Count == batch.Count ? users : null;
    }

    private async Task<EwsUserSettings?> PoxAsync(Uri soapUrl, string address, CancellationToken cancellationToken)
    {
        PoxRequests++;
        var url = new Uri(soapUrl, "autodiscover.xml");
        var (status, body) = await PostAsync(url, EwsRequests.Pox(address), null, cancellationToken).ConfigureAwait(false);
        return status == HttpStatusCode.OK ? EwsResponses.ReadPox(body) : null;
    }

    private async Task<(HttpStatusCode Status, ReadOnlyMemory<byte> Body)> PostAsync(Uri url, byte[] body, string? action, CancellationToken cancellationToken)
    {
        var authorization = await _auth.GetAsync(url, cancellationToken).ConfigureAwait(false);
        using var request = new HttpRequestMessage(HttpMethod.Post, url)
        {
            Version = HttpVersion.Version11,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
            Content = new ByteArrayContent(body),
        };
        request.Content.Headers.ContentType = new MediaTypeHeaderValue("text/xml") { CharSet = "utf-8" };
        request.Headers.Authorization = authorization;
        if (action is not null)
        {
            request.Headers.TryAddWithoutValidation("SOAPAction", action);
        }

        using var timeout = new CancellationTokenSource(_options.RequestTimeout, _time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
        try
        {
            using var response = await _http.For(url).SendAsync(request, HttpCompletionOption.ResponseHeadersRead, linked.Token).ConfigureAwait(false);
            if (response.StatusCode is HttpStatusCode.Unauthorized or HttpStatusCode.Forbidden)
            {
                _auth.Invalidate();
                throw new EwsStreamingException(EwsRecovery.Unauthorized, "AutodiscoverUnauthorized", (int)response.StatusCode);
            }

            var content = response.StatusCode == HttpStatusCode.OK ? await EwsServiceClient.ReadBodyAsync(response, linked.Token).ConfigureAwait(false) : default;
            return (response.StatusCode, content);
        }
        catch (Exception ex) when (EwsServiceClient.IsTransport(ex, cancellationToken))
        {
            throw new EwsStreamingException(EwsRecovery.Reconnect, "AutodiscoverUnreachable", null, null, ex);
        }
    }
}
