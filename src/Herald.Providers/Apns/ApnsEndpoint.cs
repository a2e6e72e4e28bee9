using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using Herald.Providers.Http;

namespace Herald.Providers.Apns;

/// <summary>
/// One APNs host (production or sandbox) with its long-lived HTTP/2 connection pool: one per environment for
/// token auth, and one per certificate and environment for certificate auth (the TLS client certificate belongs
/// to the connection). Created on demand and kept; requests never create clients or handlers.
/// </summary>
internal sealed class ApnsEndpoint : IDisposable
{
    public ApnsEndpoint(string name, string baseUrl, ApnsOptions options, X509Certificate2? trustedCertificate, X509Certificate2? clientCertificate = null)
    {
        Name = name;
        var uri = new Uri(baseUrl, UriKind.Absolute);
        Host = uri.Authority;
        DevicePathPrefix = uri.GetLeftPart(UriPartial.Path).TrimEnd('/') + "/3/device/";
        IsCleartext = uri.Scheme == Uri.UriSchemeHttp;

        var handler = new SocketsHttpHandler
        {
            // More than one connection once a connection's SETTINGS_MAX_CONCURRENT_STREAMS is reached.
            EnableMultipleHttp2Connections = true,
            PooledConnectionIdleTimeout = options.IdleTimeout,
            PooledConnectionLifetime = Timeout.InfiniteTimeSpan, // Apple wants long-lived connections
            ConnectTimeout = options.ConnectTimeout,
            KeepAlivePingDelay = options.KeepAlivePingDelay,
            KeepAlivePingTimeout = options.KeepAlivePingTimeout,
            KeepAlivePingPolicy = HttpKeepAlivePingPolicy.Always,
            AllowAutoRedirect = false,
            UseCookies = false,
            AutomaticDecompression = System.Net.DecompressionMethods.None,
        };

        if (!IsCleartext)
        {
            handler.SslOptions = new SslClientAuthenticationOptions
            {
                EnabledSslProtocols = SslProtocols.Tls12 | SslProtocols.Tls13,
            };
            if (trustedCertificate is not null)
            {
                PinnedCertificate.Pin(handler.SslOptions, trustedCertificate);
            }

            if (clientCertificate is not null)
            {
                // Certificate auth: always present this certificate, whatever CA names the server lists.
                handler.SslOptions.LocalCertificateSelectionCallback = (_, _, _, _, _) => clientCertificate;
            }
        }

        OutboundProxy.Apply(handler, options.Proxy);

        Invoker = new HttpMessageInvoker(handler, disposeHandler: true);
    }

    /// <summary>"production" or "sandbox".</summary>
    public string Name { get; }

    /// <summary>host:port, for logs.</summary>
    public string Host { get; }

    /// <summary>"{base}/3/device/": the request URI is this plus the device token.</summary>
    public string DevicePathPrefix { get; }

    /// <summary>True for http:// (HTTP/2 with prior knowledge).</summary>
    public bool IsCleartext { get; }

    public HttpMessageInvoker Invoker { get; }

    /// <summary>Last time a transport fault was logged at warning level (ticks of the provider's clock); rate-limits outage logs.</summary>
    public long LastTransportWarningTimestamp;

    public void Dispose() => Invoker.Dispose();
}
