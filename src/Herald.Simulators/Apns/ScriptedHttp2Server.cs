using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Herald.Simulators.Apns;

/// <summary>What <see cref="ScriptedHttp2Server"/> does to the first connection once it holds enough requests.</summary>
public enum Http2Script
{
    /// <summary>Answers every complete request with 200 at once.</summary>
    AnswerAll,

    /// <summary>
    /// When the first connection holds <see cref="ScriptedHttp2Server.TriggerAt"/> complete requests: sends SETTINGS lowering
    /// MAX_CONCURRENT_STREAMS to <see cref="ScriptedHttp2Server.LoweredLimit"/>, answers that many of them and refuses the
    /// rest with RST_STREAM(REFUSED_STREAM). From then on every connection advertises and enforces the lowered limit and
    /// answers each request after <see cref="ScriptedHttp2Server.Hold"/> (so a client that ignored the limit would show it).
    /// </summary>
    LowerLimitAndRefuse,

    /// <summary>
    /// When the first connection holds <see cref="ScriptedHttp2Server.TriggerAt"/> complete requests: sends GOAWAY (NO_ERROR,
    /// last-stream-id = the <see cref="ScriptedHttp2Server.GoAwayKeep"/>-th stream, debug data <c>{"reason":"Shutdown"}</c> as
    /// APNs does), answers the streams up to last-stream-id unless <see cref="ScriptedHttp2Server.AbortAfterGoAway"/>, ignores
    /// newer ones, and closes the connection. Later connections answer at once.
    /// </summary>
    GoAway,

    /// <summary>Refuses every stream with RST_STREAM(REFUSED_STREAM).</summary>
    RefuseAll,
}

/// <summary>
/// A minimal HTTP/2 server over cleartext (prior knowledge) for what Kestrel cannot be made to do: lower
/// SETTINGS_MAX_CONCURRENT_STREAMS on a live connection, refuse streams with REFUSED_STREAM on cue, and send GOAWAY
/// with debug data. It answers <c>:status 200</c> (HPACK static index 8) with no body, reads each request's
/// <c>apns-id</c> (the .NET client sends literals without Huffman coding or the dynamic table), and records per
/// connection how many streams were open at once. It is the fake APNs' frame-level companion: <see cref="FakeApnsServer"/>
/// (Kestrel) covers the API and its rules, this one APNs' connection behaviour (a GOAWAY carrying
/// <c>{"reason":"Shutdown"}</c>, a stream limit lowered after the connection opened, refused streams). For tests only:
/// small frames, no flow control beyond the defaults.
/// </summary>
public sealed class ScriptedHttp2Server : IAsyncDisposable
{
    private const byte Data = 0x0, Headers = 0x1, RstStream = 0x3, Settings = 0x4, Ping = 0x6, GoAwayFrame = 0x7, Continuation = 0x9;
    private const byte EndStream = 0x1, Ack = 0x1, EndHeaders = 0x4, Padded = 0x8, Priority = 0x20;
    private const int RefusedStream = 0x7;
    private const ushort MaxConcurrentStreams = 0x3;

    private readonly TcpListener _listener;
    private readonly CancellationTokenSource _stop = new();
    private readonly ConcurrentBag<Connection> _connections = [];
    private readonly ConcurrentBag<Task> _tasks = [];
    private readonly ConcurrentDictionary<string, int> _answered = new(StringComparer.OrdinalIgnoreCase);
    private int _triggered;
    private int _connectionCount;
    private long _refused;
    private long _requests;
    private volatile int _limit;

    public ScriptedHttp2Server(Http2Script script, int initialLimit = 100)
    {
        Script = script;
        _limit = initialLimit;
        _listener = new TcpListener(IPAddress.Loopback, 0);
        _listener.Start();
        BaseUrl = "http://127.0.0.1:" + ((IPEndPoint)_listener.LocalEndpoint).Port.ToString(System.Globalization.CultureInfo.InvariantCulture);
        _tasks.Add(AcceptLoopAsync());
    }

    public Http2Script Script { get; }

    public string BaseUrl { get; }

    public int TriggerAt { get; init; } = 6;

    public int LoweredLimit { get; init; } = 2;

    public int GoAwayKeep { get; init; } = 3;

    public bool AbortAfterGoAway { get; init; }

    public TimeSpan Hold { get; init; } = TimeSpan.FromMilliseconds(20);

    /// <summary>Requests answered 200, by apns-id, with how often each was answered.</summary>
    public IReadOnlyDictionary<string, int> Answered => _answered;

    /// <summary>Streams refused with REFUSED_STREAM.</summary>
    public long Refused => Interlocked.Read(ref _refused);

    /// <summary>Request streams opened (HEADERS received), refused or not.</summary>
    public long Requests => Interlocked.Read(ref _requests);

    public int Connections => Volatile.Read(ref _connectionCount);

    /// <summary>Whether the script's trigger fired.</summary>
    public bool Triggered => Volatile.Read(ref _triggered) != 0;

    /// <summary>
    /// Per connection: the most streams open at once among those the client opened after it acknowledged the limit now in
    /// force (SETTINGS ACK), and that limit.
    /// </summary>
    public IReadOnlyList<(int Limit, int MaxOpenAfterAck)> Limits => [.. _connections.Select(c => (c.AckedLimit, c.MaxOpenAfterAck))];

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

            var connection = new Connection(this, client, Interlocked.Increment(ref _connectionCount));
            _connections.Add(connection);
            _tasks.Add(connection.RunAsync(_stop.Token));
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Stop();
        foreach (var c in _connections)
        {
            c.Close();
        }

        try
        {
            await Task.WhenAll(_tasks).WaitAsync(TimeSpan.FromSeconds(5));
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException or SocketException or TimeoutException or ObjectDisposedException)
        {
        }

        foreach (var c in _connections)
        {
            c.Dispose();
        }

        _stop.Dispose();
    }

    private sealed class Connection(ScriptedHttp2Server server, TcpClient client, int number) : IDisposable
    {
        private readonly NetworkStream _stream = client.GetStream();
        private readonly SemaphoreSlim _write = new(1, 1);
        private readonly Lock _gate = new();
        private readonly Dictionary<int, Request> _open = [];
        private int _limit;          // what this connection advertised last
        private int _pendingLimit;   // advertised, not yet acknowledged
        private int _goAwayLast = int.MaxValue;

        public int AckedLimit { get; private set; } = -1;

        public int MaxOpenAfterAck { get; private set; }

        public void Close() => client.Dispose();

        public void Dispose()
        {
            client.Dispose();
            _write.Dispose();
        }

        public async Task RunAsync(CancellationToken cancellationToken)
        {
            try
            {
                var preface = new byte[24];
                await _stream.ReadExactlyAsync(preface, cancellationToken);
                _limit = server._limit;
                _pendingLimit = _limit;
                await SendSettingsAsync(_limit, cancellationToken);
                var header = new byte[9];
                while (!cancellationToken.IsCancellationRequested)
                {
                    await _stream.ReadExactlyAsync(header, cancellationToken);
                    var length = (header[0] << 16) | (header[1] << 8) | header[2];
                    var type = header[3];
                    var flags = header[4];
                    var streamId = BinaryPrimitives.ReadInt32BigEndian(header.AsSpan(5)) & 0x7FFFFFFF;
                    var payload = new byte[length];
                    await _stream.ReadExactlyAsync(payload, cancellationToken);
                    await OnFrameAsync(type, flags, streamId, payload, cancellationToken);
                }
            }
            catch (Exception ex) when (ex is OperationCanceledException or IOException or SocketException or ObjectDisposedException or EndOfStreamException)
            {
                // The client or the test closed the connection.
            }
            finally
            {
                client.Dispose();
            }
        }

        private async Task OnFrameAsync(byte type, byte flags, int streamId, byte[] payload, CancellationToken cancellationToken)
        {
            switch (type)
            {
                case Settings when (flags & Ack) != 0:
                    lock (_gate)
                    {
                        AckedLimit = _pendingLimit;
                        MaxOpenAfterAck = 0;
                    }

                    break;
                case Settings:
                    await WriteFrameAsync(Settings, Ack, 0, [], cancellationToken);
                    break;
                case Ping when (flags & Ack) == 0:
                    await WriteFrameAsync(Ping, Ack, 0, payload, cancellationToken);
                    break;
                case Headers:
                    await OnHeadersAsync(flags, streamId, payload, cancellationToken);
                    break;
                case Continuation:
                    throw new InvalidOperationException("CONTINUATION is not supported by this test server.");
                case Data when (flags & EndStream) != 0:
                    await OnCompleteAsync(streamId, cancellationToken);
                    break;
            }
        }

        private async Task OnHeadersAsync(byte flags, int streamId, byte[] payload, CancellationToken cancellationToken)
        {
            lock (_gate)
            {
                if (streamId > _goAwayLast)
                {
                    return; // after GOAWAY, newer streams are ignored (RFC 9113 §6.8)
                }
            }

            Interlocked.Increment(ref server._requests);
            var block = payload.AsSpan();
            if ((flags & Padded) != 0)
            {
                block = block[1..^block[0]];
            }

            if ((flags & Priority) != 0)
            {
                block = block[5..];
            }

            var apnsId = ReadHeader(block, "apns-id") ?? "stream-" + streamId.ToString(System.Globalization.CultureInfo.InvariantCulture);
            bool refuse;
            lock (_gate)
            {
                // Counted before refusing: a client that ignored an acknowledged limit shows here.
                var attempted = _open.Count + 1;
                if (AckedLimit == _limit)
                {
                    MaxOpenAfterAck = Math.Max(MaxOpenAfterAck, attempted);
                }

                refuse = server.Script == Http2Script.RefuseAll || attempted > _limit;
                if (!refuse)
                {
                    _open[streamId] = new Request(apnsId);
                }
            }

            if (refuse)
            {
                Interlocked.Increment(ref server._refused);
                await ResetAsync(streamId, cancellationToken);
                return;
            }

            if ((flags & EndStream) != 0)
            {
                await OnCompleteAsync(streamId, cancellationToken);
            }
        }

        private async Task OnCompleteAsync(int streamId, CancellationToken cancellationToken)
        {
            List<int> complete;
            lock (_gate)
            {
                if (streamId > _goAwayLast || !_open.TryGetValue(streamId, out var request))
                {
                    return;
                }

                request.Complete = true;
                complete = [.. _open.Where(p => p.Value.Complete).Select(p => p.Key).Order()];
            }

            var first = number == 1 && server.Script is Http2Script.LowerLimitAndRefuse or Http2Script.GoAway;
            if (first && complete.Count >= server.TriggerAt && Interlocked.Exchange(ref server._triggered, 1) == 0)
            {
                if (server.Script == Http2Script.LowerLimitAndRefuse)
                {
                    await LowerAndRefuseAsync(complete, cancellationToken);
                }
                else
                {
                    await GoAwayAsync(complete, cancellationToken);
                }

                return;
            }

            if (first && !server.Triggered)
            {
                return; // held until the trigger
            }

            if (server.Script == Http2Script.LowerLimitAndRefuse)
            {
                // Answered later, off the read loop: the client may open more streams meanwhile, if it ignores the limit.
                server._tasks.Add(AnswerLaterAsync(streamId, cancellationToken));
                return;
            }

            await AnswerAsync(streamId, cancellationToken);
        }

        private async Task AnswerLaterAsync(int streamId, CancellationToken cancellationToken)
        {
            try
            {
                await Task.Delay(server.Hold, cancellationToken);
                await AnswerAsync(streamId, cancellationToken);
            }
            catch (Exception ex) when (ex is OperationCanceledException or IOException or SocketException or ObjectDisposedException)
            {
            }
        }

        private async Task LowerAndRefuseAsync(List<int> held, CancellationToken cancellationToken)
        {
            var limit = server.LoweredLimit;
            server._limit = limit; // later connections advertise it from the start
            lock (_gate)
            {
                _limit = limit;
                _pendingLimit = limit;
            }

            await SendSettingsAsync(limit, cancellationToken);
            foreach (var id in held.Skip(limit))
            {
                lock (_gate)
                {
                    _open.Remove(id);
                }

                Interlocked.Increment(ref server._refused);
                await ResetAsync(id, cancellationToken);
            }

            foreach (var id in held.Take(limit))
            {
                await AnswerAsync(id, cancellationToken);
            }

            // Streams the client opened before it saw the new limit and that are still open: refuse those beyond it too.
            List<int> excess;
            lock (_gate)
            {
                excess = [.. _open.Keys.Order().Skip(limit)];
                foreach (var id in excess)
                {
                    _open.Remove(id);
                }
            }

            foreach (var id in excess)
            {
                Interlocked.Increment(ref server._refused);
                await ResetAsync(id, cancellationToken);
            }
        }

        private async Task GoAwayAsync(List<int> held, CancellationToken cancellationToken)
        {
            var last = held[Math.Min(server.GoAwayKeep, held.Count) - 1];
            lock (_gate)
            {
                // Streams above last-stream-id are not processed, whatever arrives for them later.
                _goAwayLast = last;
                foreach (var id in _open.Keys.Where(id => id > last).ToList())
                {
                    _open.Remove(id);
                }
            }

            var debug = Encoding.UTF8.GetBytes("{\"reason\":\"Shutdown\"}");
            var payload = new byte[8 + debug.Length];
            BinaryPrimitives.WriteInt32BigEndian(payload, last);
            BinaryPrimitives.WriteInt32BigEndian(payload.AsSpan(4), 0); // NO_ERROR
            debug.CopyTo(payload, 8);
            await WriteFrameAsync(GoAwayFrame, 0, 0, payload, cancellationToken);
            if (!server.AbortAfterGoAway)
            {
                foreach (var id in held.Where(id => id <= last))
                {
                    await AnswerAsync(id, cancellationToken);
                }
            }

            // Closed a moment later, while the read loop keeps draining what the client still sends.
            server._tasks.Add(CloseLaterAsync(cancellationToken));
        }

        private async Task CloseLaterAsync(CancellationToken cancellationToken)
        {
            try
            {
                await Task.Delay(TimeSpan.FromMilliseconds(200), cancellationToken);
            }
            catch (OperationCanceledException)
            {
            }

            client.Dispose();
        }

        private async Task AnswerAsync(int streamId, CancellationToken cancellationToken)
        {
            Request? request;
            lock (_gate)
            {
                _open.Remove(streamId, out request);
            }

            if (request is null)
            {
                return;
            }

            server._answered.AddOrUpdate(request.ApnsId, 1, static (_, n) => n + 1);
            await WriteFrameAsync(Headers, EndStream | EndHeaders, streamId, [0x88], cancellationToken); // :status 200
        }

        private Task ResetAsync(int streamId, CancellationToken cancellationToken)
        {
            var code = new byte[4];
            BinaryPrimitives.WriteInt32BigEndian(code, RefusedStream);
            return WriteFrameAsync(RstStream, 0, streamId, code, cancellationToken);
        }

        private Task SendSettingsAsync(int maxConcurrentStreams, CancellationToken cancellationToken)
        {
            var payload = new byte[6];
            BinaryPrimitives.WriteUInt16BigEndian(payload, MaxConcurrentStreams);
            BinaryPrimitives.WriteUInt32BigEndian(payload.AsSpan(2), (uint)maxConcurrentStreams);
            return WriteFrameAsync(Settings, 0, 0, payload, cancellationToken);
        }

        private async Task WriteFrameAsync(byte type, byte flags, int streamId, byte[] payload, CancellationToken cancellationToken)
        {
            var frame = new byte[9 + payload.Length];
            frame[0] = (byte)(payload.Length >> 16);
            frame[1] = (byte)(payload.Length >> 8);
            frame[2] = (byte)payload.Length;
            frame[3] = type;
            frame[4] = flags;
            BinaryPrimitives.WriteInt32BigEndian(frame.AsSpan(5), streamId);
            payload.CopyTo(frame, 9);
            await _write.WaitAsync(cancellationToken);
            try
            {
                await _stream.WriteAsync(frame, cancellationToken);
            }
            finally
            {
                _write.Release();
            }
        }

        /// <summary>Finds a header's value in an HPACK block of literals without Huffman coding (what the .NET client sends).</summary>
        private static string? ReadHeader(ReadOnlySpan<byte> block, string wanted)
        {
            var i = 0;
            while (i < block.Length)
            {
                var b = block[i];
                if ((b & 0x80) != 0)
                {
                    ReadInteger(block, ref i, 7); // indexed field
                    continue;
                }

                if ((b & 0xE0) == 0x20)
                {
                    ReadInteger(block, ref i, 5); // dynamic table size update
                    continue;
                }

                var prefix = (b & 0x40) != 0 ? 6 : 4;
                var nameIndex = ReadInteger(block, ref i, prefix);
                var name = nameIndex == 0 ? ReadString(block, ref i) : null;
                var value = ReadString(block, ref i);
                if (name == wanted)
                {
                    return value;
                }
            }

            return null;
        }

        private static string? ReadString(ReadOnlySpan<byte> block, ref int i)
        {
            var huffman = (block[i] & 0x80) != 0;
            var length = ReadInteger(block, ref i, 7);
            var text = huffman ? null : Encoding.ASCII.GetString(block.Slice(i, length));
            i += length;
            return text;
        }

        private static int ReadInteger(ReadOnlySpan<byte> block, ref int i, int prefixBits)
        {
            var max = (1 << prefixBits) - 1;
            var value = block[i++] & max;
            if (value < max)
            {
                return value;
            }

            var shift = 0;
            byte next;
            do
            {
                next = block[i++];
                value += (next & 0x7F) << shift;
                shift += 7;
            }
            while ((next & 0x80) != 0);
            return value;
        }

        private sealed class Request(string apnsId)
        {
            public string ApnsId { get; } = apnsId;

            public bool Complete { get; set; }
        }
    }
}
