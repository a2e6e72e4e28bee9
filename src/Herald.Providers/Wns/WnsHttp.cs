using System.Net;
using System.Net.Security;
using System.Security.Authentication;
using Herald.Providers.Http;

namespace Herald.Providers.Wns;

/// <summary>The HTTP/1.1 connection pools of the WNS provider and token client: created once, never per request.</summary>
internal static class WnsHttp
{
    /// <summary>
    /// A long-lived invoker with keep-alive pooling. Redirects are never followed: a channel host that answers
    /// 3xx could otherwise send our bearer token, or our request, anywhere.
    /// </summary>
    public static HttpMessageInvoker CreateInvoker(WnsOptions options, TimeSpan? idleTimeout = null)
    {
        var handler = new SocketsHttpHandler
        {
            AllowAutoRedirect = false,
            UseCookies = false,
            AutomaticDecompression = DecompressionMethods.None,
            ConnectTimeout = options.ConnectTimeout,
            PooledConnectionIdleTimeout = idleTimeout ?? options.IdleTimeout,
            PooledConnectionLifetime = options.ConnectionLifetime,
            MaxConnectionsPerServer = options.MaxConnectionsPerHost,
            SslOptions = new SslClientAuthenticationOptions
            {
                EnabledSslProtocols = SslProtocols.Tls12 | SslProtocols.Tls13,
            },
        };

        if (!string.IsNullOrWhiteSpace(options.TrustedCertificateFile))
        {
            using var trusted = PinnedCertificate.Load(options.TrustedCertificateFile, $"{WnsOptions.SectionName}:{nameof(WnsOptions.TrustedCertificateFile)}");
            PinnedCertificate.Pin(handler.SslOptions, trusted);
        }

        OutboundProxy.Apply(handler, options.Proxy);
        return new HttpMessageInvoker(handler, disposeHandler: true);
    }

    /// <summary>Reads at most <paramref name="limit"/> bytes of a response body; faults while reading yield what was read.</summary>
    public static async ValueTask<byte[]> ReadBoundedAsync(HttpContent content, int limit, CancellationToken cancellationToken)
    {
        var buffer = new byte[limit];
        var total = 0;
        try
        {
            var stream = await content.ReadAsStreamAsync(cancellationToken).ConfigureAwait(false);
            await using (stream.ConfigureAwait(false))
            {
                int read;
                while (total < buffer.Length && (read = await stream.ReadAsync(buffer.AsMemory(total), cancellationToken).ConfigureAwait(false)) > 0)
                {
                    total += read;
                }
            }
        }
        catch (Exception ex) when (ex is HttpRequestException or IOException)
        {
            // The status is the answer; the body only refines it.
        }

        return buffer.AsSpan(0, total).ToArray();
    }
}
