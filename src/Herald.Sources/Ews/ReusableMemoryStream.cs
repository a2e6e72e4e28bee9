namespace Herald.Sources.Ews;

/// <summary>A read-only stream over a <see cref="ReadOnlyMemory{T}"/> that one thread reuses from parse to parse.</summary>
internal sealed class ReusableMemoryStream : Stream
{
    private ReadOnlyMemory<byte> _memory;
    private int _position;

    public void Reset(ReadOnlyMemory<byte> memory)
    {
        _memory = memory;
        _position = 0;
    }

    public override bool CanRead => true;
    public override bool CanSeek => false;
    public override bool CanWrite => false;
    public override long Length => _memory.Length;

    public override long Position
    {
        get => _position;
        set => throw new NotSupportedException();
    }

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override int Read(Span<byte> buffer)
    {
        var n = Math.Min(buffer.Length, _memory.Length - _position);
        _memory.Span.Slice(_position, n).CopyTo(buffer);
        _position += n;
        return n;
    }

    public override void Flush()
    {
    }

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
}
