using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using Herald.Core.Settings;
using Herald.Providers.Http;

namespace Herald.Providers.Apns;

/// <summary>
/// One APNs host (production or sandbox) with its long-lived HTTP/2 connection pool: one per environment for
/// token auth, and one per certificate and environment for certificate auth (the TLS client certificate belongs
/// to the connection). Created on demand and kept; requests never create clients or handlers.
/// </summary>
internal sealed class ApnsEndpoint : IDisposable
{
    /// <summary>Requests in flight on a connection before the next one is used.</summary>
    internal const int StreamsBeforeSpreading = 100;

    private readonly IdleAwareInvoker[] _invokers;
    private readonly int[] _inFlight;

    public ApnsEndpoint(
        string name,
        string baseUrl,
        ApnsOptions options,
        X509Certificate2? trustedCertificate,
        X509Certificate2? clientCertificate = null,
        ILiveConnectionSettings? live = null,
        TimeProvider? time = null)
    {
        Name = name;
        var uri = new Uri(baseUrl, UriKind.Absolute);
        Host = uri.Authority;
        DevicePathPrefix = uri.GetLeftPart(UriPartial.Path).TrimEnd('/') + "/3/device/";
        IsCleartext = uri.Scheme == Uri.UriSchemeHttp;

        _invokers = new IdleAwareInvoker[Math.Max(1, options.MaxConnections)];
        _inFlight = new int[_invokers.Length];
        for (var i = 0; i < _invokers.Length; i++)
        {
            _invokers[i] = new IdleAwareInvoker(
                idle => CreateInvoker(options, idle, trustedCertificate, clientCertificate), options.IdleTimeout, live, time ?? TimeProvider.System);
        }
    }

    /// <summary>The idle time the connections were built with (the live setting once a send has seen it).</summary>
    public TimeSpan IdleTimeout => _invokers[0].CurrentIdleTimeout;

    private HttpMessageInvoker CreateInvoker(ApnsOptions options, TimeSpan idleTimeout, X509Certificate2? trustedCertificate, X509Certificate2? clientCertificate)
    {
        var handler = new SocketsHttpHandler
        {
            // More than one connection once a connection's SETTINGS_MAX_CONCURRENT_STREAMS is reached.
            EnableMultipleHttp2Connections = true,
            PooledConnectionIdleTimeout = idleTimeout,
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

        return new HttpMessageInvoker(handler, disposeHandler: true);
    }

    /// <summary>"production" or "sandbox".</summary>
    public string Name { get; }

    /// <summary>host:port, for logs.</summary>
    public string Host { get; }

    /// <summary>"{base}/3/device/": the request URI is this plus the device token.</summary>
    public string DevicePathPrefix { get; }

    /// <summary>True for http:// (HTTP/2 with prior knowledge).</summary>
    public bool IsCleartext { get; }

    /// <summary>
    /// Sends on the first connection that has fewer than <see cref="StreamsBeforeSpreading"/> requests in flight, or else on
    /// the least busy one: a quiet gateway keeps one long-lived connection, a busy one spreads over up to
    /// <see cref="ApnsOptions.MaxConnections"/> (one HTTP/2 connection is one read loop and one write loop on each side, so
    /// a single connection caps throughput long before the stream limit; h2load's best shape against one endpoint was 4 × 100).
    /// With one connection (the default) the send goes straight to it, with no counting and no asynchronous step of its own.
    /// </summary>
    public Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        => _invokers.Length == 1 ? _invokers[0].SendAsync(request, cancellationToken) : SpreadAsync(request, cancellationToken);

    private async Task<HttpResponseMessage> SpreadAsync(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        var pick = 0;
        var least = int.MaxValue;
        for (var i = 0; i < _invokers.Length; i++)
        {
            var busy = Volatile.Read(ref _inFlight[i]);
            if (busy < StreamsBeforeSpreading)
            {
                pick = i;
                break;
            }

            if (busy < least)
            {
                least = busy;
                pick = i;
            }
        }

        Interlocked.Increment(ref _inFlight[pick]);
        try
        {
            return await _invokers[pick].SendAsync(request, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            Interlocked.Decrement(ref _inFlight[pick]);
        }
    }

    /// <summary>Last time a transport fault was logged at warning level (ticks of the provider's clock); rate-limits outage logs.</summary>
    public long LastTransportWarningTimestamp;

    public void Dispose()
    {
        foreach (var invoker in _invokers)
        {
            invoker.Dispose();
        }
    }
}
