using System.Net;
using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using Google.Apis.Http;
using Google.Apis.Util;
using Herald.Providers.Http;

namespace Herald.Providers.Fcm;

/// <summary>The HTTP plumbing shared by the FCM sender and the token cache: handlers, pinned trust, Google.Apis adapters.</summary>
internal static class FcmHttp
{
    /// <summary>
    /// A long-lived HTTP/2 connection pool with the options' timeouts and keep-alive pings; with a pinned
    /// certificate, the peer must present exactly it. <paramref name="decompress"/> accepts gzip answers (token endpoints).
    /// </summary>
    public static SocketsHttpHandler CreateHandler(FcmOptions options, X509Certificate2? trustedCertificate, bool decompress, TimeSpan? idleTimeout = null)
    {
        var handler = new SocketsHttpHandler
        {
            // More than one connection once a connection's SETTINGS_MAX_CONCURRENT_STREAMS is reached.
            EnableMultipleHttp2Connections = true,
            PooledConnectionIdleTimeout = idleTimeout ?? options.IdleTimeout,
            PooledConnectionLifetime = Timeout.InfiniteTimeSpan,
            ConnectTimeout = options.ConnectTimeout,
            KeepAlivePingDelay = options.KeepAlivePingDelay,
            KeepAlivePingTimeout = options.KeepAlivePingTimeout,
            KeepAlivePingPolicy = HttpKeepAlivePingPolicy.WithActiveRequests,
            AllowAutoRedirect = false,
            UseCookies = false,
            AutomaticDecompression = decompress ? DecompressionMethods.GZip | DecompressionMethods.Deflate : DecompressionMethods.None,
            SslOptions = new SslClientAuthenticationOptions
            {
                EnabledSslProtocols = SslProtocols.Tls12 | SslProtocols.Tls13,
            },
        };

        if (trustedCertificate is not null)
        {
            PinnedCertificate.Pin(handler.SslOptions, trustedCertificate);
        }

        OutboundProxy.Apply(handler, options.Proxy);
        return handler;
    }

    /// <summary>
    /// Sets HTTP/2 on a request built by hand: an <c>http://</c> URL then speaks HTTP/2 with prior knowledge
    /// (h2c); over TLS, ALPN negotiates h2 (Google's endpoints support it).
    /// </summary>
    public static void UseHttp2(HttpRequestMessage request)
    {
        request.Version = HttpVersion.Version20;
        request.VersionPolicy = HttpVersionPolicy.RequestVersionExact;
    }

    /// <summary>The first CERTIFICATE block of a PEM file.</summary>
    public static X509Certificate2 LoadCertificate(string pemFile)
        => PinnedCertificate.Load(pemFile, $"{FcmOptions.SectionName}:{nameof(FcmOptions.TrustedCertificateFile)}");

    /// <summary>The options' pinned certificate, or null when none is configured.</summary>
    public static X509Certificate2? LoadTrustedCertificate(FcmOptions options)
        => string.IsNullOrWhiteSpace(options.TrustedCertificateFile) ? null : LoadCertificate(options.TrustedCertificateFile);
}

/// <summary>
/// Google.Apis' HTTP client factory, sending through one Herald invoker (pinned trust, timeouts, HTTP/2)
/// instead of a new <see cref="HttpClientHandler"/> per credential.
/// </summary>
internal sealed class FcmGoogleHttpClientFactory(HttpMessageInvoker invoker) : HttpClientFactory
{
    protected override HttpMessageHandler CreateHandler(CreateHttpClientArgs args) => new ForwardingHandler(invoker);

    /// <summary>Forwards to the shared invoker; disposing it (with its Google client) leaves the invoker alone.</summary>
    private sealed class ForwardingHandler(HttpMessageInvoker invoker) : HttpMessageHandler
    {
        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            FcmHttp.UseHttp2(request);
            return invoker.SendAsync(request, cancellationToken);
        }
    }
}

/// <summary>Google.Apis' clock on a <see cref="TimeProvider"/>, so token lifetimes follow Herald's clock (and a fake one in tests).</summary>
internal sealed class TimeProviderClock(TimeProvider time) : IClock
{
    public DateTime Now => time.GetLocalNow().DateTime;

    public DateTime UtcNow => time.GetUtcNow().UtcDateTime;
}
