using System.Buffers;

namespace Herald.Server.Endpoints;

/// <summary>
/// A mail-system callback's body read whole into a pooled buffer, with a size limit: the EWS, Graph and Dovecot endpoints
/// parse from bytes, so they share this one reader. Dispose returns the buffer to the pool.
/// </summary>
internal readonly struct RequestBody : IDisposable
{
    private RequestBody(byte[] buffer, int length)
    {
        Buffer = buffer;
        Length = length;
    }

    /// <summary>The pooled buffer; only the first <see cref="Length"/> bytes are the body.</summary>
    public byte[] Buffer { get; }

    /// <summary>The body's length, or -1 when it was larger than the limit.</summary>
    public int Length { get; }

    /// <summary>Whether the body was larger than the limit (then nothing of it is kept).</summary>
    public bool TooLarge => Length < 0;

    /// <summary>The body's bytes.</summary>
    public ReadOnlyMemory<byte> Memory => Buffer.AsMemory(0, Math.Max(0, Length));

    /// <summary>Reads the whole body (starting from a buffer the size of Content-Length), growing the buffer up to <paramref name="max"/> + 1 bytes.</summary>
    public static async Task<RequestBody> ReadAsync(HttpRequest request, int max, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (request.ContentLength > max)
        {
            return new RequestBody([], -1);
        }

        var buffer = ArrayPool<byte>.Shared.Rent((int)Math.Min(max + 1, request.ContentLength ?? 16 * 1024) + 1);
        var length = 0;
        try
        {
            while (true)
            {
                if (length == buffer.Length)
                {
                    if (length > max)
                    {
                        return new RequestBody(buffer, -1);
                    }

                    var bigger = ArrayPool<byte>.Shared.Rent(Math.Min(max + 1, buffer.Length * 2));
                    buffer.AsSpan(0, length).CopyTo(bigger);
                    ArrayPool<byte>.Shared.Return(buffer);
                    buffer = bigger;
                }

                var read = await request.Body.ReadAsync(buffer.AsMemory(length), cancellationToken);
                if (read == 0)
                {
                    return new RequestBody(buffer, length > max ? -1 : length);
                }

                length += read;
            }
        }
        catch (BadHttpRequestException)
        {
            return new RequestBody(buffer, -1); // Kestrel's own body limit
        }
        catch
        {
            ArrayPool<byte>.Shared.Return(buffer);
            throw;
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
        if (Buffer is { Length: > 0 })
        {
            ArrayPool<byte>.Shared.Return(Buffer);
        }
    }
}
