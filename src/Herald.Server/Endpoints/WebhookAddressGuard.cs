using System.Net;
using System.Net.Sockets;

namespace Herald.Server.Endpoints;

/// <summary>
/// Tenants choose webhook URLs, so a webhook must not become a way into the gateway's own network (SSRF): connections to
/// link-local addresses (cloud metadata endpoints), unspecified and multicast addresses are refused, and loopback unless
/// allowed. The check runs on the resolved address at connect time, so DNS tricks do not get around it.
/// </summary>
internal static class WebhookAddressGuard
{
    /// <summary>Whether a webhook may connect to <paramref name="address"/>.</summary>
    public static bool IsAllowed(IPAddress address, bool allowLoopback)
    {
        ArgumentNullException.ThrowIfNull(address);
        if (address.IsIPv4MappedToIPv6)
        {
            address = address.MapToIPv4();
        }

        if (IPAddress.IsLoopback(address))
        {
            return allowLoopback;
        }

        if (address.Equals(IPAddress.Any) || address.Equals(IPAddress.IPv6Any) || address.Equals(IPAddress.Broadcast))
        {
            return false;
        }

        if (address.AddressFamily == AddressFamily.InterNetwork)
        {
            var b = address.GetAddressBytes();
            return !(b[0] == 169 && b[1] == 254) // link-local, cloud metadata
                && !(b[0] == 0)                 // "this network"
                && b[0] < 224;                  // multicast and reserved
        }

        return !address.IsIPv6LinkLocal && !address.IsIPv6Multicast && !address.IsIPv6SiteLocal;
    }

    /// <summary>A <see cref="SocketsHttpHandler.ConnectCallback"/> that resolves, checks and connects.</summary>
    public static async ValueTask<Stream> ConnectAsync(SocketsHttpConnectionContext context, bool allowLoopback, CancellationToken cancellationToken)
    {
        var endPoint = context.DnsEndPoint;
        var addresses = IPAddress.TryParse(endPoint.Host, out var literal)
            ? [literal]
            : await Dns.GetHostAddressesAsync(endPoint.Host, cancellationToken).ConfigureAwait(false);
        var allowed = addresses.Where(a => IsAllowed(a, allowLoopback)).ToArray();
        if (allowed.Length == 0)
        {
            throw new HttpRequestException($"The webhook host {endPoint.Host} resolves only to addresses a webhook may not reach (loopback, link-local, multicast).");
        }

        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            await socket.ConnectAsync(allowed, endPoint.Port, cancellationToken).ConfigureAwait(false);
            return new NetworkStream(socket, ownsSocket: true);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }
}
