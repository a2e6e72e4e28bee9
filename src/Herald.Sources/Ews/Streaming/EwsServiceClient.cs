using System.Buffers;
using System.Net;
using System.Net.Http.Headers;
using System.Xml;

namespace Herald.Sources.Ews.Streaming;

/// <summary>Affinity headers of one subscription group: the anchor mailbox and the back-end cookie, once known.</summary>
public sealed class EwsAffinity(string anchorMailbox)
{
    /// <summary>The group's anchor: its alphabetically first address when it was formed.</summary>
    public string AnchorMailbox { get; } = anchorMailbox;

    /// <summary>The X-BackEndOverrideCookie value the first Subscribe answer set; replayed on every later request of the group.</summary>
    public string? BackEndCookie { get; set; }
}

/// <summary>
/// The EWS operations of the streaming connector for one connector's credentials: Subscribe, GetStreamingEvents (the
/// open response), Unsubscribe, GetItem, GetFolder. Every request is SOAP 1.1 over HTTP/1.1, impersonates its mailbox,
/// and classifies failures into <see cref="EwsStreamingException"/>.
/// </summary>
public sealed class EwsServiceClient
{
    /// <summary>The affinity cookie's name.</summary>
    public const string AffinityCookie = "X-BackEndOverrideCookie";

    private const int MaxResponseBytes = EwsNotificationParser.MaxBodyBytes;

    private readonly EwsHttp _http;
    private readonly EwsAuthenticator _auth;
    private readonly TimeProvider _time;
    private readonly EwsStreamingOptions _options;

    /// <summary>A client over <paramref name="http"/> signing in with <paramref name="auth"/>.</summary>
    public EwsServiceClient(EwsHttp http, EwsAuthenticator auth, TimeProvider time, EwsStreamingOptions options)
    {
        _http = http ?? throw new ArgumentNullException(nameof(http));
        _auth = auth ?? throw new ArgumentNullException(nameof(auth));
        _time = time ?? throw new ArgumentNullException(nameof(time));
        _options = options ?? throw new ArgumentNullException(nameof(options));
    }

    /// <summary>The authenticator (shared with Autodiscover).</summary>
    public EwsAuthenticator Authenticator => _auth;

    /// <summary>Creates a streaming subscription for <paramref name="mailbox"/> within its group; learns the group's cookie from the first answer.</summary>
    public async Task<string> SubscribeAsync(Uri ewsUrl, EwsAffinity affinity, string mailbox, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(affinity);
        var (status, body, cookie) = await SendAsync(ewsUrl, "Subscribe", EwsRequests.Subscribe(_options.RequestServerVersion, mailbox), affinity, preferAffinity: true, cancellationToken).ConfigureAwait(false);
        var id = Read(() => EwsResponses.ReadSubscriptionId(body, status), status);
        if (cookie is not null)
        {
            affinity.BackEndCookie = cookie;
        }

        return id;
    }

    /// <summary>Ends a subscription (best effort; errors are swallowed: the subscription then expires on its own).</summary>
    public async Task UnsubscribeAsync(Uri ewsUrl, EwsAffinity affinity, string mailbox, string subscriptionId, CancellationToken cancellationToken)
    {
        try
        {
            await SendAsync(ewsUrl, "Unsubscribe", EwsRequests.Unsubscribe(_options.RequestServerVersion, mailbox, subscriptionId), affinity, preferAffinity: false, cancellationToken).ConfigureAwait(false);
        }
        catch (EwsStreamingException)
        {
        }
    }

    /// <summary>The subject and sender of an item (GetItem, impersonated).</summary>
    public async Task<EwsItemPreview> GetPreviewAsync(Uri ewsUrl, string mailbox, string itemId, CancellationToken cancellationToken)
    {
        var (status, body, _) = await SendAsync(ewsUrl, "GetItem", EwsRequests.GetItemPreview(_options.RequestServerVersion, mailbox, itemId), null, preferAffinity: false, cancellationToken).ConfigureAwait(false);
        return Read(() => EwsResponses.ReadPreview(body, status), status);
    }

    /// <summary>The unread count of a distinguished folder (GetFolder, impersonated), or null.</summary>
    public async Task<int?> GetUnreadCountAsync(Uri ewsUrl, string mailbox, string folder, CancellationToken cancellationToken)
    {
        var (status, body, _) = await SendAsync(ewsUrl, "GetFolder", EwsRequests.GetFolderUnread(_options.RequestServerVersion, mailbox, folder), null, preferAffinity: false, cancellationToken).ConfigureAwait(false);
        return Read(() => EwsResponses.ReadUnreadCount(body, status), status);
    }

    /// <summary>
    /// Opens GetStreamingEvents for the group's subscriptions and returns the response once its headers arrived; the
    /// caller reads the body incrementally and disposes the response. An error before the stream starts throws.
    /// </summary>
    public async Task<HttpResponseMessage> OpenStreamAsync(Uri ewsUrl, EwsAffinity affinity, IReadOnlyCollection<string> subscriptionIds, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(affinity);
        ArgumentNullException.ThrowIfNull(subscriptionIds);
        var impersonate = _options.ImpersonateAnchorOnStream ? affinity.AnchorMailbox : null;
        var minutes = (int)_options.ConnectionTimeout.TotalMinutes;
        using var request = await BuildAsync(ewsUrl, "GetStreamingEvents", EwsRequests.GetStreamingEvents(_options.RequestServerVersion, impersonate, subscriptionIds, minutes), affinity, preferAffinity: false, cancellationToken).ConfigureAwait(false);
        using var timeout = new CancellationTokenSource(_options.RequestTimeout, _time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
        HttpResponseMessage response;
        try
        {
            response = await _http.For(ewsUrl).SendAsync(request, HttpCompletionOption.ResponseHeadersRead, linked.Token).ConfigureAwait(false);
        }
        catch (Exception ex) when (IsTransport(ex, cancellationToken))
        {
            throw new EwsStreamingException(EwsRecovery.Reconnect, null, null, null, ex);
        }

        if (response.StatusCode == HttpStatusCode.OK)
        {
            return response;
        }

        using (response)
        {
            var body = await ReadBodyAsync(response, cancellationToken).ConfigureAwait(false);
            throw Failure(response.StatusCode, body);
        }
    }

    private async Task<(int Status, ReadOnlyMemory<byte> Body, string? Cookie)> SendAsync(Uri ewsUrl, string operation, byte[] soap, EwsAffinity? affinity, bool preferAffinity, CancellationToken cancellationToken)
    {
        using var request = await BuildAsync(ewsUrl, operation, soap, affinity, preferAffinity, cancellationToken).ConfigureAwait(false);
        using var timeout = new CancellationTokenSource(_options.RequestTimeout, _time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
        try
        {
            using var response = await _http.For(ewsUrl).SendAsync(request, HttpCompletionOption.ResponseHeadersRead, linked.Token).ConfigureAwait(false);
            var body = await ReadBodyAsync(response, linked.Token).ConfigureAwait(false);
            if (response.StatusCode != HttpStatusCode.OK)
            {
                throw Failure(response.StatusCode, body);
            }

            return ((int)response.StatusCode, body, CookieOf(response));
        }
        catch (Exception ex) when (IsTransport(ex, cancellationToken))
        {
            throw new EwsStreamingException(EwsRecovery.Reconnect, null, null, null, ex);
        }
    }

    private async Task<HttpRequestMessage> BuildAsync(Uri ewsUrl, string operation, byte[] soap, EwsAffinity? affinity, bool preferAffinity, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(ewsUrl);
        var authorization = await _auth.GetAsync(ewsUrl, cancellationToken).ConfigureAwait(false);
        var request = new HttpRequestMessage(HttpMethod.Post, ewsUrl)
        {
            Version = HttpVersion.Version11,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
            Content = new ByteArrayContent(soap),
        };
        request.Content.Headers.ContentType = new MediaTypeHeaderValue("text/xml") { CharSet = "utf-8" };
        request.Headers.Authorization = authorization;
        request.Headers.TryAddWithoutValidation("SOAPAction", EwsRequests.Action(operation));
        request.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue("text/xml"));
        if (affinity is not null)
        {
            request.Headers.TryAddWithoutValidation("X-AnchorMailbox", affinity.AnchorMailbox);
            if (preferAffinity)
            {
                request.Headers.TryAddWithoutValidation("X-PreferServerAffinity", "true");
            }

            if (affinity.BackEndCookie is { } cookie)
            {
                request.Headers.TryAddWithoutValidation("Cookie", AffinityCookie + "=" + cookie);
            }
        }

        return request;
    }

    private EwsStreamingException Failure(HttpStatusCode status, ReadOnlyMemory<byte> body)
    {
        var code = (int)status;
        switch (status)
        {
            case HttpStatusCode.Unauthorized or HttpStatusCode.Forbidden:
                _auth.Invalidate();
                return new EwsStreamingException(EwsRecovery.Unauthorized, null, code);
            case HttpStatusCode.ServiceUnavailable or HttpStatusCode.TooManyRequests:
                return new EwsStreamingException(EwsRecovery.BackOff, null, code);
            default:
                break;
        }

        if (!body.IsEmpty && EwsNotificationParser.TryParseEnvelope(body, out var envelope, out _))
        {
            var ewsCode = envelope.ErrorCode ?? FaultName(envelope.FaultCode);
            if (ewsCode is not null)
            {
                return new EwsStreamingException(EwsStreamingException.Classify(ewsCode), ewsCode, code, envelope.BackOff);
            }
        }

        return new EwsStreamingException(code >= 500 ? EwsRecovery.BackOff : EwsRecovery.Reconnect, null, code);
    }

    private static string? FaultName(string? faultCode)
    {
        if (string.IsNullOrEmpty(faultCode))
        {
            return null;
        }

        var colon = faultCode.LastIndexOf(':');
        return colon >= 0 ? faultCode[(colon + 1)..] : faultCode;
    }

    private static T Read<T>(Func<T> read, int status)
    {
        try
        {
            return read();
        }
        catch (XmlException ex)
        {
            throw new EwsStreamingException(EwsRecovery.Reconnect, "InvalidResponse", status, null, ex);
        }
    }

    private static string? CookieOf(HttpResponseMessage response)
    {
        if (!response.Headers.TryGetValues("Set-Cookie", out var values))
        {
            return null;
        }

        foreach (var value in values)
        {
            var span = value.AsSpan().TrimStart();
            if (span.StartsWith(AffinityCookie + "=", StringComparison.OrdinalIgnoreCase))
            {
                span = span[(AffinityCookie.Length + 1)..];
                var semicolon = span.IndexOf(';');
                return (semicolon >= 0 ? span[..semicolon] : span).Trim().ToString();
            }
        }

        return null;
    }

    /// <summary>Reads a (non-streaming) body, at most 1 MiB.</summary>
    internal static async Task<ReadOnlyMemory<byte>> ReadBodyAsync(HttpResponseMessage response, CancellationToken cancellationToken)
    {
        if (response.Content.Headers.ContentLength > MaxResponseBytes)
        {
            throw new EwsStreamingException(EwsRecovery.Reconnect, "ResponseTooLarge", (int)response.StatusCode);
        }

        var stream = await response.Content.ReadAsStreamAsync(cancellationToken).ConfigureAwait(false);
        await using (stream.ConfigureAwait(false))
        {
            var buffer = ArrayPool<byte>.Shared.Rent(16 * 1024);
            try
            {
                using var output = new MemoryStream();
                while (true)
                {
                    var read = await stream.ReadAsync(buffer, cancellationToken).ConfigureAwait(false);
                    if (read == 0)
                    {
                        break;
                    }

                    if (output.Length + read > MaxResponseBytes)
                    {
                        throw new EwsStreamingException(EwsRecovery.Reconnect, "ResponseTooLarge", (int)response.StatusCode);
                    }

                    output.Write(buffer, 0, read);
                }

                return output.ToArray();
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(buffer);
            }
        }
    }

    internal static bool IsTransport(Exception ex, CancellationToken cancellationToken) =>
        ex is HttpRequestException or IOException || (ex is OperationCanceledException && !cancellationToken.IsCancellationRequested);
}
