using System.Net.Sockets;
using System.Text;

namespace Herald.Simulators.Tests.Apns;

/// <summary>
/// Sends one HTTP/2 request over h2c exactly as given, header fields repeated if asked: HttpClient joins
/// repeated values into one field, so it cannot send what APNs answers with DuplicateHeaders.
/// HPACK literals without indexing or Huffman; reads the response status and body of stream 1.
/// </summary>
internal static class RawHttp2Client
{
    private const byte Data = 0x0, Headers = 0x1, RstStream = 0x3, Settings = 0x4, GoAway = 0x7;

    public static async Task<(int Status, string Body)> SendAsync(Uri baseUrl, string path, IReadOnlyList<(string Name, string Value)> headers, string body, CancellationToken cancellationToken)
    {
        using var tcp = new TcpClient();
        await tcp.ConnectAsync(baseUrl.Host, baseUrl.Port, cancellationToken);
        var stream = tcp.GetStream();

        var block = new List<byte> { 0x83, 0x86 }; // :method POST, :scheme http (static table)
        Literal(block, 4, null, path);             // :path (static name 4)
        Literal(block, 1, null, baseUrl.Authority); // :authority (static name 1)
        foreach (var (name, value) in headers)
        {
            Literal(block, 0, name, value);
        }

        var payload = Encoding.UTF8.GetBytes(body);
        var output = new List<byte>();
        output.AddRange("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"u8.ToArray());
        Frame(output, Settings, 0, 0, []);
        Frame(output, Headers, 0x4, 1, [.. block]);  // END_HEADERS
        Frame(output, Data, 0x1, 1, payload);       // END_STREAM
        await stream.WriteAsync(output.ToArray(), cancellationToken);

        int? status = null;
        var responseBody = new StringBuilder();
        var header = new byte[9];
        while (true)
        {
            await stream.ReadExactlyAsync(header, cancellationToken);
            var length = (header[0] << 16) | (header[1] << 8) | header[2];
            var type = header[3];
            var flags = header[4];
            var streamId = ((header[5] & 0x7F) << 24) | (header[6] << 16) | (header[7] << 8) | header[8];
            var frame = new byte[length];
            await stream.ReadExactlyAsync(frame, cancellationToken);

            if (type == Settings && (flags & 0x1) == 0)
            {
                var ack = new List<byte>();
                Frame(ack, Settings, 0x1, 0, []);
                await stream.WriteAsync(ack.ToArray(), cancellationToken);
            }
            else if (type == Headers && streamId == 1)
            {
                status = DecodeStatus(frame);
                if ((flags & 0x1) != 0)
                {
                    break;
                }
            }
            else if (type == Data && streamId == 1)
            {
                responseBody.Append(Encoding.UTF8.GetString(frame));
                if ((flags & 0x1) != 0)
                {
                    break;
                }
            }
            else if (type == GoAway || (type == RstStream && streamId == 1))
            {
                break;
            }
        }

        return (status ?? 0, responseBody.ToString());
    }

    // The first field of a response is :status; Kestrel sends the common ones indexed and others as a
    // literal with the static name :status (index 8), without Huffman.
    private static int DecodeStatus(byte[] block)
    {
        var first = block[0];
        if ((first & 0x80) != 0)
        {
            return (first & 0x7F) switch { 8 => 200, 9 => 204, 10 => 206, 11 => 304, 12 => 400, 13 => 404, 14 => 500, _ => 0 };
        }

        var valueLength = block[1] & 0x7F; // the name index fits the first byte; the value follows
        return int.Parse(Encoding.ASCII.GetString(block, 2, valueLength), System.Globalization.CultureInfo.InvariantCulture);
    }

    private static void Literal(List<byte> block, int nameIndex, string? name, string value)
    {
        Integer(block, 0x00, 4, nameIndex); // literal header field without indexing
        if (name is not null)
        {
            String(block, name);
        }

        String(block, value);
    }

    private static void String(List<byte> block, string text)
    {
        var bytes = Encoding.UTF8.GetBytes(text);
        Integer(block, 0x00, 7, bytes.Length); // no Huffman
        block.AddRange(bytes);
    }

    private static void Integer(List<byte> block, byte pattern, int prefixBits, int value)
    {
        var max = (1 << prefixBits) - 1;
        if (value < max)
        {
            block.Add((byte)(pattern | value));
            return;
        }

        block.Add((byte)(pattern | max));
        value -= max;
        while (value >= 128)
        {
            block.Add((byte)((value % 128) + 128));
            value /= 128;
        }

        block.Add((byte)value);
    }

    private static void Frame(List<byte> output, byte type, byte flags, int streamId, byte[] payload)
    {
        output.Add((byte)(payload.Length >> 16));
        output.Add((byte)(payload.Length >> 8));
        output.Add((byte)payload.Length);
        output.Add(type);
        output.Add(flags);
        output.Add((byte)((streamId >> 24) & 0x7F));
        output.Add((byte)(streamId >> 16));
        output.Add((byte)(streamId >> 8));
        output.Add((byte)streamId);
        output.AddRange(payload);
    }
}
