using System.Collections.Concurrent;
using System.Net.Security;
using System.Security.Cryptography.X509Certificates;

namespace Herald.Sources.Ews.Streaming;

/// <summary>
/// One long-lived <see cref="HttpClient"/> per EWS host (scheme, host, port), over a <see cref="SocketsHttpHandler"/>
/// with HTTP/1.1 keep-alive as EWS uses: each streaming group holds one connection for its GetStreamingEvents, and the
/// short requests (Subscribe, GetItem, GetFolder) reuse pooled connections. Cookies are not kept by the handler: each
/// group replays its own affinity cookie.
/// </summary>
public sealed class EwsHttp : IDisposable
{
    private readonly ConcurrentDictionary<string, HttpClient> _clients = new(StringComparer.OrdinalIgnoreCase);
    private readonly RemoteCertificateValidationCallback? _certificateCheck;
    private bool _disposed;

    /// <summary>A pool; <paramref name="trustedCertificate"/>, when given, is the only server certificate accepted (tests, pinned on-premises CAs).</summary>
    public EwsHttp(X509Certificate2? trustedCertificate = null)
    {
        if (trustedCertificate is not null)
        {
            var pinned = trustedCertificate.RawData;
            _certificateCheck = (_, certificate, _, errors) =>
                errors == SslPolicyErrors.None || (certificate is not null && certificate.GetRawCertData().AsSpan().SequenceEqual(pinned));
        }
    }

    /// <summary>The client for <paramref name="uri"/>'s host.</summary>
    public HttpClient For(Uri uri)
    {
        ArgumentNullException.ThrowIfNull(uri);
        ObjectDisposedException.ThrowIf(_disposed, this);
        return _clients.GetOrAdd(uri.GetLeftPart(UriPartial.Authority), static (_, self) => self.Create(), this);
    }

    /// <summary>Disposes every client.</summary>
    public void Dispose()
    {
        _disposed = true;
        foreach (var client in _clients.Values)
        {
            client.Dispose();
        }

        _clients.Clear();
    }

    private HttpClient Create()
    {
        var handler = new SocketsHttpHandler
        {
            UseCookies = false,
            AllowAutoRedirect = false,
            ConnectTimeout = TimeSpan.FromSeconds(15),
            PooledConnectionIdleTimeout = TimeSpan.FromSeconds(90),
            PooledConnectionLifetime = Timeout.InfiniteTimeSpan,
            MaxConnectionsPerServer = int.MaxValue,
            AutomaticDecompression = System.Net.DecompressionMethods.None,
        };
        if (_certificateCheck is not null)
        {
            handler.SslOptions = new SslClientAuthenticationOptions { RemoteCertificateValidationCallback = _certificateCheck };
        }

        return new HttpClient(handler, disposeHandler: true)
        {
            Timeout = Timeout.InfiniteTimeSpan, // streaming responses last up to 30 minutes; requests carry their own timeouts
            DefaultRequestVersion = System.Net.HttpVersion.Version11,
            DefaultVersionPolicy = HttpVersionPolicy.RequestVersionExact,
        };
    }
}
