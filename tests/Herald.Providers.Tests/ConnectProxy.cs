using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Herald.Providers.Tests;

/// <summary>
/// A tiny HTTP CONNECT proxy on 127.0.0.1 for tests: answers CONNECT host:port with 200 and pipes bytes both ways
/// (optionally demanding Basic credentials first, with 407), and counts the tunnels it opened.
/// </summary>
internal sealed class ConnectProxy : IAsyncDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly CancellationTokenSource _stop = new();
    private readonly string? _expectedAuthorization;
    private readonly List<Task> _tunnels = [];
    private readonly Task _accept;
    private int _connects;
    private int _refused;

    public ConnectProxy(string? user = null, string? password = null)
    {
        _expectedAuthorization = user is null ? null : "Basic " + Convert.ToBase64String(Encoding.UTF8.GetBytes(user + ":" + password));
        _listener.Start();
        _accept = AcceptLoopAsync();
    }

    public string Url => "http://127.0.0.1:" + ((IPEndPoint)_listener.LocalEndpoint).Port.ToString(System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>Tunnels opened.</summary>
    public int Connects => Volatile.Read(ref _connects);

    /// <summary>CONNECTs answered 407.</summary>
    public int Refused => Volatile.Read(ref _refused);

    /// <summary>The targets of the CONNECTs, in order.</summary>
    public List<string> Targets { get; } = [];

    private async Task AcceptLoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            TcpClient client;
            try
            {
                client = await _listener.AcceptTcpClientAsync(_stop.Token);
            }
            catch (Exception ex) when (ex is OperationCanceledException or SocketException or ObjectDisposedException)
            {
                return;
            }

            lock (_tunnels)
            {
                _tunnels.Add(ServeAsync(client));
            }
        }
    }

    private async Task ServeAsync(TcpClient client)
    {
        using var _ = client;
        var stream = client.GetStream();
        try
        {
            while (true)
            {
                var head = await ReadHeadAsync(stream, _stop.Token);
                if (head is null)
                {
                    return;
                }

                var lines = head.Split("\r\n");
                var parts = lines[0].Split(' ');
                if (parts.Length < 2 || parts[0] != "CONNECT")
                {
                    await stream.WriteAsync("HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n"u8.ToArray(), _stop.Token);
                    return;
                }

                if (_expectedAuthorization is not null
                    && !lines.Any(l => l.StartsWith("Proxy-Authorization:", StringComparison.OrdinalIgnoreCase) && l["Proxy-Authorization:".Length..].Trim() == _expectedAuthorization))
                {
                    Interlocked.Increment(ref _refused);
                    await stream.WriteAsync("HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"test\"\r\nContent-Length: 0\r\n\r\n"u8.ToArray(), _stop.Token);
                    continue; // the client answers the challenge on the same connection
                }

                var target = parts[1];
                lock (Targets)
                {
                    Targets.Add(target);
                }

                var colon = target.LastIndexOf(':');
                using var upstream = new TcpClient();
                await upstream.ConnectAsync(target[..colon].Trim('[', ']'), int.Parse(target[(colon + 1)..], System.Globalization.CultureInfo.InvariantCulture), _stop.Token);
                Interlocked.Increment(ref _connects);
                await stream.WriteAsync("HTTP/1.1 200 Connection established\r\n\r\n"u8.ToArray(), _stop.Token);
                var up = upstream.GetStream();
                var a = stream.CopyToAsync(up, _stop.Token);
                var b = up.CopyToAsync(stream, _stop.Token);
                await Task.WhenAny(a, b);
                return;
            }
        }
        catch (Exception ex) when (ex is IOException or SocketException or OperationCanceledException or ObjectDisposedException)
        {
            // A tunnel ends when either side closes.
        }
    }

    private static async Task<string?> ReadHeadAsync(NetworkStream stream, CancellationToken cancellationToken)
    {
        var buffer = new List<byte>(512);
        var one = new byte[1];
        while (buffer.Count < 16 * 1024)
        {
            if (await stream.ReadAsync(one, cancellationToken) == 0)
            {
                return null;
            }

            buffer.Add(one[0]);
            var n = buffer.Count;
            if (n >= 4 && buffer[n - 4] == '\r' && buffer[n - 3] == '\n' && buffer[n - 2] == '\r' && buffer[n - 1] == '\n')
            {
                return Encoding.ASCII.GetString([.. buffer]);
            }
        }

        return null;
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Stop();
        Task[] tunnels;
        lock (_tunnels)
        {
            tunnels = [.. _tunnels];
        }

        await Task.WhenAll(tunnels.Append(_accept));
        _stop.Dispose();
    }
}
