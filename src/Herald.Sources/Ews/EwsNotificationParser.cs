using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Text;
using System.Xml;
using Herald.Core.Events;
using N = Herald.Sources.Ews.EwsNameTable;

namespace Herald.Sources.Ews;

/// <summary>
/// Parses EWS SOAP envelopes: the <c>SendNotification</c> callbacks of push subscriptions, and (for the streaming
/// connector) any envelope that carries <c>Notification</c> elements. Bad input never throws: the parser returns an
/// <see cref="EwsParseError"/> whose message is fixed per error code and never echoes the body.
/// </summary>
/// <remarks>
/// <para>Safe by construction: DTDs are prohibited (so XXE and entity bombs are malformed documents), no resolver,
/// entity expansion capped, document size capped, nesting capped at <see cref="MaxDepth"/>.</para>
/// <para>EWS elements are matched by local name, because real servers put <c>Notification</c> in the messages
/// namespace while clients and documentation differ; the SOAP <c>Envelope</c> and <c>Body</c> must be in the SOAP 1.1
/// or 1.2 namespace. Unknown elements are skipped. The parser is a single forward pass with an
/// <see cref="XmlReader"/> and compares names by reference against atomized constants (see <see cref="EwsNameTable"/>).</para>
/// </remarks>
public static class EwsNotificationParser
{
    /// <summary>The largest body accepted (1 MiB).</summary>
    public const int MaxBodyBytes = 1024 * 1024;

    /// <summary>The deepest element nesting accepted (the root has depth 0; a SendNotification event id sits at 7).</summary>
    public const int MaxDepth = 64;

    [ThreadStatic]
    private static ReaderCache? t_cache;

    /// <summary>
    /// Parses a push callback. Succeeds only for a SOAP envelope whose body is a <c>SendNotification</c> with at least
    /// one <c>Notification</c>, each with a <c>SubscriptionId</c>.
    /// </summary>
    /// <param name="body">The request body, at most <see cref="MaxBodyBytes"/>.</param>
    /// <param name="contentType">The request's Content-Type: picks the version of the fault when the envelope cannot be read.</param>
    /// <param name="notification">The parsed callback, on success.</param>
    /// <param name="error">Why it was rejected, on failure (with the SOAP version to answer the fault in).</param>
    public static bool TryParseSendNotification(
        ReadOnlyMemory<byte> body,
        string? contentType,
        [NotNullWhen(true)] out EwsSendNotification? notification,
        out EwsParseError error)
    {
        var parser = new Parser(sendNotificationOnly: true, EwsSoap.VersionFromContentType(contentType));
        if (!Run(ref parser, body, out error))
        {
            notification = null;
            return false;
        }

        notification = new EwsSendNotification(parser.Version, parser.Notifications!);
        return true;
    }

    /// <summary>
    /// Parses any EWS SOAP envelope and reports every <c>Notification</c> in its body, the streaming
    /// <c>ConnectionStatus</c> and <c>ErrorSubscriptionIds</c>, the first error <c>ResponseCode</c>, and fault details.
    /// Fails only when the body is not a well-formed, bounded SOAP 1.1/1.2 envelope, or a recognised element has an
    /// invalid value.
    /// </summary>
    /// <param name="body">One complete envelope, at most <see cref="MaxBodyBytes"/>.</param>
    /// <param name="envelope">What the envelope says, on success.</param>
    /// <param name="error">Why it was rejected, on failure.</param>
    public static bool TryParseEnvelope(ReadOnlyMemory<byte> body, [NotNullWhen(true)] out EwsEnvelope? envelope, out EwsParseError error)
    {
        var parser = new Parser(sendNotificationOnly: false, SoapVersion.Soap11);
        if (!Run(ref parser, body, out error))
        {
            envelope = null;
            return false;
        }

        envelope = new EwsEnvelope(
            parser.Version,
            parser.Operation,
            parser.IsFault,
            (IReadOnlyList<MailboxNotification>?)parser.Notifications ?? [],
            parser.ConnectionStatus,
            (IReadOnlyList<string>?)parser.ErrorSubscriptionIds ?? [],
            parser.ErrorCode,
            parser.FaultCode,
            parser.BackOff);
        return true;
    }

    private static bool Run(ref Parser parser, ReadOnlyMemory<byte> body, out EwsParseError error)
    {
        if (body.IsEmpty)
        {
            error = new EwsParseError(EwsParseErrorCode.EmptyBody, parser.Version);
            return false;
        }

        if (body.Length > MaxBodyBytes)
        {
            error = new EwsParseError(EwsParseErrorCode.TooLarge, parser.Version);
            return false;
        }

        var cache = t_cache ??= new ReaderCache();
        cache.Reset(body);
        XmlReader? reader = null;
        try
        {
            reader = XmlReader.Create(cache.Stream, cache.Settings);
            parser.Parse(reader);
            error = default;
            return true;
        }
        catch (EwsFormatException ex)
        {
            error = At(ex.Code, parser.Version, reader);
        }
        catch (XmlException ex)
        {
            error = new EwsParseError(EwsParseErrorCode.Malformed, parser.Version, ex.LineNumber, ex.LinePosition);
        }
        catch (Exception ex) when (ex is DecoderFallbackException or ArgumentException or FormatException or OverflowException or InvalidOperationException or NotSupportedException)
        {
            // Defensive: XmlReader reports nearly everything as XmlException, but encoding and conversion paths
            // have thrown these; none may escape to the caller.
            error = At(EwsParseErrorCode.Malformed, parser.Version, reader);
        }
        finally
        {
            reader?.Dispose();
            cache.Reset(default);
        }

        return false;
    }

    private static EwsParseError At(EwsParseErrorCode code, SoapVersion version, XmlReader? reader) =>
        reader is IXmlLineInfo info && info.HasLineInfo()
            ? new EwsParseError(code, version, info.LineNumber, info.LinePosition)
            : new EwsParseError(code, version);

    /// <summary>One thread's reusable reader settings, name table and input stream (parsing is synchronous).</summary>
    private sealed class ReaderCache
    {
        public ReaderCache()
        {
            Settings = new XmlReaderSettings
            {
                DtdProcessing = DtdProcessing.Prohibit,
                XmlResolver = null,
                // 0 would mean "no limit" in .NET. With DTDs prohibited no entity can be declared at all; this is a
                // second fence (the predefined entities and character references do not count against it).
                MaxCharactersFromEntities = 1,
                MaxCharactersInDocument = MaxBodyBytes,
                IgnoreComments = true,
                IgnoreProcessingInstructions = true,
                IgnoreWhitespace = true,
                CloseInput = false,
                NameTable = Names,
            };
        }

        public EwsNameTable Names { get; } = new();
        public ReusableMemoryStream Stream { get; } = new();
        public XmlReaderSettings Settings { get; }

        public void Reset(ReadOnlyMemory<byte> body)
        {
            Names.Reset();
            Stream.Reset(body);
        }
    }

    /// <summary>The state of one parse. A mutable struct, used only through a local or by reference.</summary>
    private struct Parser(bool sendNotificationOnly, SoapVersion fallbackVersion)
    {
        private readonly bool _sendNotificationOnly = sendNotificationOnly;
        private string? _envelopeNamespace;

        public SoapVersion Version = fallbackVersion;
        public string? Operation;
        public bool IsFault;
        public List<MailboxNotification>? Notifications;
        public EwsConnectionStatus? ConnectionStatus;
        public List<string>? ErrorSubscriptionIds;
        public string? ErrorCode;
        public string? FaultCode;
        public TimeSpan? BackOff;

        public void Parse(XmlReader reader)
        {
            if (reader.MoveToContent() != XmlNodeType.Element)
            {
                throw new EwsFormatException(EwsParseErrorCode.NotSoapEnvelope);
            }

            var ns = reader.NamespaceURI;
            if (!ReferenceEquals(reader.LocalName, N.Envelope))
            {
                throw new EwsFormatException(EwsParseErrorCode.NotSoapEnvelope);
            }

            if (ReferenceEquals(ns, EwsSoap.Soap11Namespace))
            {
                Version = SoapVersion.Soap11;
            }
            else if (ReferenceEquals(ns, EwsSoap.Soap12Namespace))
            {
                Version = SoapVersion.Soap12;
            }
            else
            {
                throw new EwsFormatException(EwsParseErrorCode.NotSoapEnvelope);
            }

            _envelopeNamespace = ns;
            if (reader.IsEmptyElement)
            {
                throw new EwsFormatException(EwsParseErrorCode.NotSoapEnvelope);
            }

            var sawBody = false;
            reader.Read();
            while (reader.NodeType != XmlNodeType.EndElement)
            {
                if (reader.NodeType == XmlNodeType.Element)
                {
                    CheckDepth(reader);
                    if (!sawBody && ReferenceEquals(reader.LocalName, N.Body) && ReferenceEquals(reader.NamespaceURI, _envelopeNamespace))
                    {
                        sawBody = true;
                        ReadBody(reader);
                        continue;
                    }

                    // Header, and anything SOAP allows after the Body.
                    Skip(reader);
                    continue;
                }

                Advance(reader);
            }

            // Past </Envelope>: the reader still checks that nothing but comments and whitespace follows, so a
            // document that is not well-formed is reported as such before any complaint about its content.
            while (reader.Read())
            {
            }

            if (!sawBody)
            {
                throw new EwsFormatException(EwsParseErrorCode.NotSoapEnvelope);
            }

            if (_sendNotificationOnly && Operation is null)
            {
                throw new EwsFormatException(EwsParseErrorCode.NotSendNotification);
            }

            if (_sendNotificationOnly && Notifications is null)
            {
                throw new EwsFormatException(EwsParseErrorCode.InvalidContent);
            }
        }

        /// <summary>Walks the Body, collecting what it knows at any depth.</summary>
        private void ReadBody(XmlReader reader)
        {
            if (reader.IsEmptyElement)
            {
                reader.Read();
                return;
            }

            var bodyDepth = reader.Depth;
            reader.Read();
            while (reader.NodeType != XmlNodeType.EndElement || reader.Depth != bodyDepth)
            {
                if (reader.NodeType != XmlNodeType.Element)
                {
                    Advance(reader);
                    continue;
                }

                CheckDepth(reader);
                var name = reader.LocalName;
                if (Operation is null && reader.Depth == bodyDepth + 1)
                {
                    Operation = name;
                    IsFault = ReferenceEquals(name, N.Fault) && ReferenceEquals(reader.NamespaceURI, _envelopeNamespace);
                    if (_sendNotificationOnly && !ReferenceEquals(name, N.SendNotification))
                    {
                        throw new EwsFormatException(EwsParseErrorCode.NotSendNotification);
                    }
                }

                if (ReferenceEquals(name, N.Notification))
                {
                    ReadNotification(reader);
                    continue;
                }

                if (!_sendNotificationOnly && ReadStreamingOrFaultElement(reader, name))
                {
                    continue;
                }

                // Descend: notifications sit several levels below the operation element.
                Advance(reader);
            }

            reader.Read();
        }

        /// <summary>Reads the elements only the general parse reports; true when it consumed the element.</summary>
        private bool ReadStreamingOrFaultElement(XmlReader reader, string name)
        {
            if (ReferenceEquals(name, N.ConnectionStatus))
            {
                var text = ReadText(reader).Trim();
                var status = text switch
                {
                    "OK" => EwsConnectionStatus.Ok,
                    "Closed" => EwsConnectionStatus.Closed,
                    _ => throw new EwsFormatException(EwsParseErrorCode.InvalidContent),
                };
                if (ConnectionStatus != EwsConnectionStatus.Closed)
                {
                    ConnectionStatus = status;
                }

                return true;
            }

            if (ReferenceEquals(name, N.ErrorSubscriptionIds))
            {
                ReadErrorSubscriptionIds(reader);
                return true;
            }

            if (ReferenceEquals(name, N.ResponseCode))
            {
                var code = ReadText(reader).Trim();
                if (ErrorCode is null && code.Length > 0 && code != "NoError")
                {
                    ErrorCode = code;
                }

                return true;
            }

            if (IsFault && ReferenceEquals(name, N.FaultCodeName))
            {
                FaultCode ??= ReadText(reader).Trim();
                return true;
            }

            if (IsFault && ReferenceEquals(name, N.Code) && ReferenceEquals(reader.NamespaceURI, _envelopeNamespace))
            {
                ReadSoap12FaultCode(reader);
                return true;
            }

            if (ReferenceEquals(name, N.Value) && reader.GetAttribute(N.Name) == N.BackOffMilliseconds)
            {
                var text = ReadText(reader);
                if (!long.TryParse(text.AsSpan().Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var ms) || ms > int.MaxValue)
                {
                    throw new EwsFormatException(EwsParseErrorCode.InvalidContent);
                }

                BackOff = TimeSpan.FromMilliseconds(ms);
                return true;
            }

            return false;
        }

        private void ReadSoap12FaultCode(XmlReader reader)
        {
            if (reader.IsEmptyElement)
            {
                reader.Read();
                return;
            }

            var depth = reader.Depth;
            reader.Read();
            while (reader.NodeType != XmlNodeType.EndElement || reader.Depth != depth)
            {
                if (reader.NodeType == XmlNodeType.Element)
                {
                    CheckDepth(reader);
                    if (reader.Depth == depth + 1 && ReferenceEquals(reader.LocalName, N.Value))
                    {
                        FaultCode ??= ReadText(reader).Trim();
                        continue;
                    }

                    Skip(reader);
                    continue;
                }

                Advance(reader);
            }

            reader.Read();
        }

        private void ReadErrorSubscriptionIds(XmlReader reader)
        {
            if (reader.IsEmptyElement)
            {
                reader.Read();
                return;
            }

            var depth = reader.Depth;
            reader.Read();
            while (reader.NodeType != XmlNodeType.EndElement || reader.Depth != depth)
            {
                if (reader.NodeType == XmlNodeType.Element)
                {
                    CheckDepth(reader);
                    if (ReferenceEquals(reader.LocalName, N.SubscriptionId))
                    {
                        (ErrorSubscriptionIds ??= []).Add(ReadText(reader).Trim());
                        continue;
                    }

                    Skip(reader);
                    continue;
                }

                Advance(reader);
            }

            reader.Read();
        }

        private void ReadNotification(XmlReader reader)
        {
            string? subscriptionId = null;
            string? previousWatermark = null;
            var moreEvents = false;
            var events = new List<MailEvent>(4);

            if (reader.IsEmptyElement)
            {
                reader.Read();
            }
            else
            {
                var depth = reader.Depth;
                reader.Read();
                while (reader.NodeType != XmlNodeType.EndElement || reader.Depth != depth)
                {
                    if (reader.NodeType != XmlNodeType.Element)
                    {
                        Advance(reader);
                        continue;
                    }

                    CheckDepth(reader);
                    var name = reader.LocalName;
                    if (ReferenceEquals(name, N.SubscriptionId))
                    {
                        subscriptionId = ReadText(reader).Trim();
                    }
                    else if (ReferenceEquals(name, N.PreviousWatermark))
                    {
                        previousWatermark = ReadText(reader).Trim();
                    }
                    else if (ReferenceEquals(name, N.MoreEvents))
                    {
                        moreEvents = ReadBoolean(reader);
                    }
                    else if (TryGetEventKind(name, out var kind))
                    {
                        events.Add(ReadEvent(reader, kind));
                    }
                    else
                    {
                        Skip(reader);
                    }
                }

                reader.Read();
            }

            if (string.IsNullOrEmpty(subscriptionId))
            {
                throw new EwsFormatException(EwsParseErrorCode.InvalidContent);
            }

            (Notifications ??= new List<MailboxNotification>(1)).Add(new MailboxNotification
            {
                SubscriptionId = subscriptionId,
                PreviousWatermark = string.IsNullOrEmpty(previousWatermark) ? null : previousWatermark,
                MoreEvents = moreEvents,
                Events = events,
            });
        }

        private static bool TryGetEventKind(string name, out MailEventKind kind)
        {
            // Most frequent first: a new message yields Created, NewMail and a folder Modified.
            if (ReferenceEquals(name, N.ModifiedEvent)) { kind = MailEventKind.Modified; return true; }
            if (ReferenceEquals(name, N.CreatedEvent)) { kind = MailEventKind.Created; return true; }
            if (ReferenceEquals(name, N.NewMailEvent)) { kind = MailEventKind.NewMail; return true; }
            if (ReferenceEquals(name, N.StatusEvent)) { kind = MailEventKind.Status; return true; }
            if (ReferenceEquals(name, N.DeletedEvent)) { kind = MailEventKind.Deleted; return true; }
            if (ReferenceEquals(name, N.MovedEvent)) { kind = MailEventKind.Moved; return true; }
            if (ReferenceEquals(name, N.CopiedEvent)) { kind = MailEventKind.Copied; return true; }
            if (ReferenceEquals(name, N.FreeBusyChangedEvent)) { kind = MailEventKind.FreeBusyChanged; return true; }
            kind = default;
            return false;
        }

        private static MailEvent ReadEvent(XmlReader reader, MailEventKind kind)
        {
            string? watermark = null, itemId = null, folderId = null, parentFolderId = null;
            string? oldItemId = null, oldFolderId = null, oldParentFolderId = null;
            DateTimeOffset? timeStamp = null;
            int? unreadCount = null;

            if (reader.IsEmptyElement)
            {
                reader.Read();
            }
            else
            {
                var depth = reader.Depth;
                reader.Read();
                while (reader.NodeType != XmlNodeType.EndElement || reader.Depth != depth)
                {
                    if (reader.NodeType != XmlNodeType.Element)
                    {
                        Advance(reader);
                        continue;
                    }

                    CheckDepth(reader);
                    var name = reader.LocalName;
                    if (ReferenceEquals(name, N.Watermark))
                    {
                        watermark = ReadText(reader).Trim();
                    }
                    else if (ReferenceEquals(name, N.TimeStamp))
                    {
                        timeStamp = ParseTimeStamp(ReadText(reader));
                    }
                    else if (ReferenceEquals(name, N.ItemId))
                    {
                        itemId = ReadId(reader);
                    }
                    else if (ReferenceEquals(name, N.FolderId))
                    {
                        folderId = ReadId(reader);
                    }
                    else if (ReferenceEquals(name, N.ParentFolderId))
                    {
                        parentFolderId = ReadId(reader);
                    }
                    else if (ReferenceEquals(name, N.OldItemId))
                    {
                        oldItemId = ReadId(reader);
                    }
                    else if (ReferenceEquals(name, N.OldFolderId))
                    {
                        oldFolderId = ReadId(reader);
                    }
                    else if (ReferenceEquals(name, N.OldParentFolderId))
                    {
                        oldParentFolderId = ReadId(reader);
                    }
                    else if (ReferenceEquals(name, N.UnreadCount))
                    {
                        unreadCount = ParseCount(ReadText(reader));
                    }
                    else
                    {
                        Skip(reader);
                    }
                }

                reader.Read();
            }

            return new MailEvent
            {
                Kind = kind,
                Watermark = string.IsNullOrEmpty(watermark) ? null : watermark,
                TimeStamp = timeStamp,
                ItemId = itemId,
                FolderId = folderId,
                ParentFolderId = parentFolderId,
                OldItemId = oldItemId,
                OldFolderId = oldFolderId,
                OldParentFolderId = oldParentFolderId,
                UnreadCount = unreadCount,
            };
        }

        /// <summary>Reads the <c>Id</c> attribute of an ItemId/FolderId element and consumes the element.</summary>
        private static string? ReadId(XmlReader reader)
        {
            var id = reader.GetAttribute(N.Id);
            Skip(reader);
            return string.IsNullOrEmpty(id) ? null : id;
        }

        private static bool ReadBoolean(XmlReader reader)
        {
            // xs:boolean with whitespace collapsed.
            return ReadText(reader).AsSpan().Trim() switch
            {
                "true" or "1" => true,
                "false" or "0" => false,
                _ => throw new EwsFormatException(EwsParseErrorCode.InvalidContent),
            };
        }

        private static readonly string[] s_timeStampFormats =
        [
            "yyyy-MM-dd'T'HH:mm:ssK",
            "yyyy-MM-dd'T'HH:mm:ss.FFFFFFFK",
        ];

        private static DateTimeOffset ParseTimeStamp(string text)
        {
            // xs:dateTime; a value without an offset is taken as UTC (Exchange always writes Z).
            if (DateTimeOffset.TryParseExact(
                    text.AsSpan().Trim(),
                    s_timeStampFormats,
                    CultureInfo.InvariantCulture,
                    DateTimeStyles.AssumeUniversal,
                    out var value))
            {
                return value;
            }

            throw new EwsFormatException(EwsParseErrorCode.InvalidContent);
        }

        private static int ParseCount(string text)
        {
            if (int.TryParse(text.AsSpan().Trim(), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var value) && value >= 0)
            {
                return value;
            }

            throw new EwsFormatException(EwsParseErrorCode.InvalidContent);
        }

        /// <summary>The text of a simple element; consumes the element (a child element inside is malformed EWS).</summary>
        private static string ReadText(XmlReader reader) => reader.ReadElementContentAsString();

        private static void CheckDepth(XmlReader reader)
        {
            if (reader.Depth >= MaxDepth)
            {
                throw new EwsFormatException(EwsParseErrorCode.TooDeep);
            }
        }

        private static void Advance(XmlReader reader)
        {
            if (!reader.Read())
            {
                throw new EwsFormatException(EwsParseErrorCode.Malformed);
            }
        }

        /// <summary>
        /// Consumes the current element and its subtree. Unlike <see cref="XmlReader.Skip"/> it enforces
        /// <see cref="MaxDepth"/> on the way, so an unknown element cannot hide a deep tree.
        /// </summary>
        private static void Skip(XmlReader reader)
        {
            if (reader.IsEmptyElement)
            {
                reader.Read();
                return;
            }

            var depth = reader.Depth;
            while (reader.Read())
            {
                if (reader.NodeType == XmlNodeType.Element)
                {
                    CheckDepth(reader);
                }
                else if (reader.NodeType == XmlNodeType.EndElement && reader.Depth == depth)
                {
                    reader.Read();
                    return;
                }
            }

            throw new EwsFormatException(EwsParseErrorCode.Malformed);
        }
    }
}
