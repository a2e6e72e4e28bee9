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

    /// <summary>Redirects followed for one mailbox before giving up (the limit Microsoft recommends to break loops).</summary>
    public const int MaxRedirects = 10;

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

    /// <summary>Redirect answers received (address and URL).</summary>
    public int Redirects { get; private set; }

    /// <summary>Redirects not followed: an untrusted host or scheme, or a chain longer than <see cref="MaxRedirects"/>.</summary>
    public int RefusedRedirects { get; private set; }

    /// <summary>
    /// Settings for each address it could resolve (addresses Autodiscover does not know, or whose redirects were refused
    /// or went round more than <see cref="MaxRedirects"/> times, are absent from the answer). Redirects are followed as
    /// Exchange prescribes: <c>RedirectAddress</c> asks again for the new address (the answer is kept under the address
    /// that was asked for), <c>RedirectUrl</c> asks another Autodiscover service, only over HTTPS (never a downgrade)
    /// and only to a host <see cref="IsTrustedRedirect"/> accepts, since the service account's credentials go with it.
    /// Throws <see cref="EwsStreamingException"/> when the service cannot be reached at all.
    /// </summary>
    public async Task<IReadOnlyDictionary<string, EwsUserSettings>> ResolveAsync(IReadOnlyCollection<string> addresses, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(addresses);
        var result = new Dictionary<string, EwsUserSettings>(StringComparer.OrdinalIgnoreCase);
        var now = _time.GetUtcNow();
        var pending = new List<Lookup>();
        var asked = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
        foreach (var address in addresses)
        {
            if (_cache.TryGetValue(address, out var hit) && hit.Expires > now)
            {
                result[address] = hit.Settings;
            }
            else if (!result.ContainsKey(address) && asked.Add(address))
            {
                pending.Add(new Lookup(address, address, ServiceUrl(address)));
            }
        }

        for (var hop = 0; pending.Count > 0; hop++)
        {
            var next = new List<Lookup>();
            foreach (var byService in pending.GroupBy(l => l.Service))
            {
                var list = byService.ToList();
                for (var i = 0; i < list.Count; i += MaxUsersPerRequest)
                {
                    var batch = list.GetRange(i, Math.Min(MaxUsersPerRequest, list.Count - i));
                    var answers = await SoapAsync(byService.Key, batch, cancellationToken).ConfigureAwait(false);
                    for (var j = 0; j < batch.Count; j++)
                    {
                        var lookup = batch[j];
                        var answer = answers is null ? await PoxAsync(byService.Key, lookup.Current, cancellationToken).ConfigureAwait(false) : answers[j];
                        if (answer?.Settings is { } settings)
                        {
                            result[lookup.Original] = settings;
                            _cache[lookup.Original] = (settings, _time.GetUtcNow() + _options.AutodiscoverCacheTtl);
                        }
                        else if (answer?.RedirectAddress is { } redirectAddress)
                        {
                            Redirects++;
                            var service = _configuredUrl is null ? ServiceUrl(redirectAddress) : lookup.Service;
                            next.Add(lookup with { Current = redirectAddress, Service = service });
                        }
                        else if (answer?.RedirectUrl is { } redirectUrl)
                        {
                            Redirects++;
                            if (IsTrustedRedirect(lookup.Service, redirectUrl, lookup.Original))
                            {
                                next.Add(lookup with { Service = SoapUrl(redirectUrl) });
                            }
                            else
                            {
                                RefusedRedirects++;
                            }
                        }
                    }
                }
            }

            if (hop >= MaxRedirects)
            {
                RefusedRedirects += next.Count; // a loop or a chain too long: give up on these mailboxes
                break;
            }

            pending = next;
        }

        return result;
    }

    /// <summary>
    /// Whether a <c>RedirectUrl</c> from <paramref name="from"/> may be followed for <paramref name="mailbox"/>: an
    /// absolute URL without user info, HTTPS (HTTP only when the service that answered was itself HTTP, a lab or a test),
    /// to the same host, a host in the mailbox's own domain, or a host under one of
    /// <see cref="EwsStreamingOptions.AutodiscoverRedirectHosts"/> (Exchange Online's by default).
    /// </summary>
    public bool IsTrustedRedirect(Uri from, Uri target, string mailbox)
    {
        ArgumentNullException.ThrowIfNull(from);
        ArgumentNullException.ThrowIfNull(target);
        ArgumentNullException.ThrowIfNull(mailbox);
        if (!target.IsAbsoluteUri || target.UserInfo.Length > 0)
        {
            return false;
        }

        var schemeOk = target.Scheme == Uri.UriSchemeHttps || (target.Scheme == Uri.UriSchemeHttp && from.Scheme == Uri.UriSchemeHttp);
        if (!schemeOk)
        {
            return false;
        }

        var host = target.IdnHost;
        if (string.Equals(host, from.IdnHost, StringComparison.OrdinalIgnoreCase))
        {
            return true;
        }

        var at = mailbox.LastIndexOf('@');
        if (at >= 0 && IsUnder(host, mailbox[(at + 1)..]))
        {
            return true;
        }

        foreach (var trusted in _options.AutodiscoverRedirectHosts)
        {
            if (IsUnder(host, trusted))
            {
                return true;
            }
        }

        return false;

        static bool IsUnder(string host, string domain)
        {
            domain = domain.Trim().TrimStart('.');
            return domain.Length > 0
                && (string.Equals(host, domain, StringComparison.OrdinalIgnoreCase)
                    || (host.Length > domain.Length + 1 && host.EndsWith("." + domain, StringComparison.OrdinalIgnoreCase)));
        }
    }

    /// <summary>Forgets the cached answer for <paramref name="address"/>.</summary>
    public void Invalidate(string address) => _cache.TryRemove(address, out _);

    /// <summary>The SOAP service URL for an address: the configured one, else <c>https://autodiscover.&lt;domain&gt;/autodiscover/autodiscover.svc</c>.</summary>
    public Uri ServiceUrl(string address)
    {
        if (_configuredUrl is not null)
        {
            return SoapUrl(_configuredUrl);
        }

        ArgumentNullException.ThrowIfNull(address);
        var at = address.LastIndexOf('@');
        var domain = at >= 0 ? address[(at + 1)..] : address;
        return new Uri("https://autodiscover." + domain + "/autodiscover/autodiscover.svc");
    }

    /// <summary>A POX service URL (<c>…/autodiscover.xml</c>) as its SOAP sibling (<c>…/autodiscover.svc</c>); others unchanged.</summary>
    private static Uri SoapUrl(Uri url) =>
        url.AbsolutePath.EndsWith(".xml", StringComparison.OrdinalIgnoreCase) ? new Uri(url, "autodiscover.svc") : url;

    /// <summary>One answer per user, or null when SOAP Autodiscover is not usable.</summary>
    private async Task<IReadOnlyList<EwsAutodiscoverAnswer>?> SoapAsync(Uri url, List<Lookup> batch, CancellationToken cancellationToken)
    {
        SoapRequests++;
        var (status, body) = await PostAsync(url, EwsRequests.GetUserSettings(url, [.. batch.Select(l => l.Current)]), EwsRequests.GetUserSettingsAction, cancellationToken).ConfigureAwait(false);
        if (status != HttpStatusCode.OK)
        {
            return null;
        }

        var users = EwsResponses.ReadUserSettings(body);
        return users is not null && users.Count == batch.Count ? users : null;
    }

    private async Task<EwsAutodiscoverAnswer?> PoxAsync(Uri soapUrl, string address, CancellationToken cancellationToken)
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

    /// <summary>One mailbox being looked up: the address asked for, the address asked now, and the service asked.</summary>
    private sealed record Lookup(string Original, string Current, Uri Service);
}
