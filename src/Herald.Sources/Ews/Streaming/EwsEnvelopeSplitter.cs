namespace Herald.Sources.Ews.Streaming;

/// <summary>
/// Frames the body of a GetStreamingEvents response, which is a sequence of complete SOAP envelopes on one HTTP
/// response, into single envelopes as their bytes arrive. Only the envelope being received is buffered (at most
/// <see cref="EwsNotificationParser.MaxBodyBytes"/>); each complete one is then read by <see cref="EwsNotificationParser"/>
/// (a forward-only <see cref="System.Xml.XmlReader"/>). The framing is lexical: it follows tags, quoted attribute
/// values, comments, CDATA and processing instructions (an XML declaration may start each envelope), and refuses a
/// DOCTYPE or text outside the root.
/// </summary>
public sealed class EwsEnvelopeSplitter
{
    private readonly int _max;
    private byte[] _buffer;
    private int _length;   // bytes held
    private int _scan;     // next byte to examine
    private int _start = -1; // where the current document starts, or -1 before its first markup
    private int _depth;
    private bool _rootSeen;

    /// <summary>A splitter that refuses an envelope longer than <paramref name="maxEnvelopeBytes"/>.</summary>
    public EwsEnvelopeSplitter(int maxEnvelopeBytes = EwsNotificationParser.MaxBodyBytes)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxEnvelopeBytes, 64);
        _max = maxEnvelopeBytes;
        _buffer = new byte[Math.Min(16 * 1024, maxEnvelopeBytes)];
    }

    /// <summary>Bytes received but not yet returned as an envelope.</summary>
    public int Buffered => _length - _consumed;

    /// <summary>Where the next read should write; grows the buffer as needed.</summary>
    public Memory<byte> GetWriteBuffer(int sizeHint = 8192)
    {
        if (_buffer.Length - _length < sizeHint)
        {
            Compact();
            if (_buffer.Length - _length < sizeHint)
            {
                var size = Math.Max(_buffer.Length * 2, _length + sizeHint);
                Array.Resize(ref _buffer, Math.Min(size, _max + sizeHint));
            }
        }

        return _buffer.AsMemory(_length);
    }

    /// <summary>Records that <paramref name="count"/> bytes were written into <see cref="GetWriteBuffer"/>'s memory.</summary>
    public void Advance(int count)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        _length += count;
    }

    /// <summary>Appends bytes (tests and non-stream callers).</summary>
    public void Append(ReadOnlySpan<byte> bytes)
    {
        bytes.CopyTo(GetWriteBuffer(bytes.Length).Span);
        Advance(bytes.Length);
    }

    /// <summary>
    /// The next complete envelope, or false when more bytes are needed. The memory is valid until the next call that
    /// changes the splitter. Throws <see cref="InvalidDataException"/> when the stream is not a sequence of XML documents
    /// or an envelope is too large.
    /// </summary>
    public bool TryRead(out ReadOnlyMemory<byte> envelope)
    {
        var data = _buffer.AsSpan(0, _length);
        while (_scan < _length)
        {
            var b = data[_scan];
            if (_start < 0)
            {
                if (b is (byte)' ' or (byte)'\t' or (byte)'\r' or (byte)'\n')
                {
                    _scan++;
                    continue;
                }

                if (b == 0xEF)
                {
                    if (_length - _scan < 3)
                    {
                        break; // maybe a byte order mark: wait for the rest
                    }

                    if (data[_scan + 1] == 0xBB && data[_scan + 2] == 0xBF)
                    {
                        _scan += 3; // a UTF-8 byte order mark
                        continue;
                    }
                }

                if (b != (byte)'<')
                {
                    throw new InvalidDataException("Text outside an XML document in the stream.");
                }

                _start = _scan;
            }

            if (b != (byte)'<')
            {
                if (_depth == 0 && b is not ((byte)' ' or (byte)'\t' or (byte)'\r' or (byte)'\n'))
                {
                    throw new InvalidDataException("Text outside the root element.");
                }

                var next = data[_scan..].IndexOf((byte)'<');
                _scan = next < 0 ? _length : _scan + next;
                continue;
            }

            var end = MarkupEnd(data, _scan, out var kind);
            if (end < 0)
            {
                break; // the construct is not complete yet
            }

            _scan = end;
            switch (kind)
            {
                case Markup.Start:
                    _depth++;
                    _rootSeen = true;
                    break;
                case Markup.End:
                    if (--_depth < 0)
                    {
                        throw new InvalidDataException("An end tag without a start tag.");
                    }

                    break;
                case Markup.Empty:
                    _rootSeen = true;
                    break;
                default:
                    break;
            }

            if (_rootSeen && _depth == 0)
            {
                envelope = _buffer.AsMemory(_start, _scan - _start);
                Consume(_scan);
                return true;
            }
        }

        if (_start >= 0 && _length - _start > _max)
        {
            throw new InvalidDataException("A streamed envelope is too large.");
        }

        envelope = default;
        return false;
    }

    private enum Markup
    {
        Start,
        End,
        Empty,
        Other,
    }

    /// <summary>The index just past the construct at <paramref name="at"/> ('&lt;'), or -1 when incomplete.</summary>
    private static int MarkupEnd(ReadOnlySpan<byte> data, int at, out Markup kind)
    {
        kind = Markup.Other;
        var rest = data[at..];
        if (rest.Length < 2)
        {
            return -1;
        }

        switch (rest[1])
        {
            case (byte)'?':
            {
                var close = rest.IndexOf("?>"u8);
                return close < 0 ? -1 : at + close + 2;
            }

            case (byte)'!':
            {
                if (rest.Length < 4)
                {
                    return -1;
                }

                if (rest.StartsWith("<!--"u8))
                {
                    var close = rest[4..].IndexOf("-->"u8);
                    return close < 0 ? -1 : at + 4 + close + 3;
                }

                if (rest.Length < 9)
                {
                    return -1;
                }

                if (rest.StartsWith("<![CDATA["u8))
                {
                    var close = rest[9..].IndexOf("]]>"u8);
                    return close < 0 ? -1 : at + 9 + close + 3;
                }

                throw new InvalidDataException("A DOCTYPE or unknown declaration in the stream.");
            }

            case (byte)'/':
            {
                var close = rest.IndexOf((byte)'>');
                kind = Markup.End;
                return close < 0 ? -1 : at + close + 1;
            }

            default:
            {
                byte quote = 0;
                for (var i = 1; i < rest.Length; i++)
                {
                    var c = rest[i];
                    if (quote != 0)
                    {
                        if (c == quote)
                        {
                            quote = 0;
                        }
                    }
                    else if (c is (byte)'"' or (byte)'\'')
                    {
                        quote = c;
                    }
                    else if (c == (byte)'>')
                    {
                        kind = rest[i - 1] == (byte)'/' ? Markup.Empty : Markup.Start;
                        return at + i + 1;
                    }
                }

                return -1;
            }
        }
    }

    /// <summary>Forgets bytes before <paramref name="upTo"/> (lazily: the copy happens on the next <see cref="GetWriteBuffer"/>).</summary>
    private void Consume(int upTo)
    {
        _consumed = upTo;
        _start = -1;
        _rootSeen = false;
        _depth = 0;
    }

    private int _consumed;

    private void Compact()
    {
        if (_consumed == 0)
        {
            return;
        }

        _buffer.AsSpan(_consumed, _length - _consumed).CopyTo(_buffer);
        _length -= _consumed;
        _scan -= _consumed;
        if (_start >= 0)
        {
            _start -= _consumed;
        }

        _consumed = 0;
    }
}
