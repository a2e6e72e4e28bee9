using System.Buffers;
using System.Buffers.Text;
using System.Globalization;
using System.Text;
using System.Xml;

namespace Herald.Simulators.Exchange;

/// <summary>The event types the fake mailbox produces.</summary>
internal enum FakeEventType
{
    Status,
    NewMail,
    Created,
    Modified,
}

/// <summary>One event waiting to be delivered (kept until a post carrying it is answered).</summary>
internal readonly record struct FakeEvent(
    FakeEventType Type,
    string Watermark,
    DateTimeOffset TimeStamp,
    string? ItemId = null,
    string? FolderId = null,
    string? ParentFolderId = null,
    int? UnreadCount = null);

/// <summary>
/// Writes SendNotification requests the way Exchange does (SOAP 1.1, <c>m:Notification</c> in the messages
/// namespace, events in the types namespace), and reads the listener's <c>SendNotificationResult</c>. The simulator
/// builds its XML itself: it shares no code with Herald's parser.
/// </summary>
internal static class ExchangeSoap
{
    public const string Soap11Namespace = "http://schemas.xmlsoap.org/soap/envelope/";
    public const string MessagesNamespace = "http://schemas.microsoft.com/exchange/services/2006/messages";
    public const string TypesNamespace = "http://schemas.microsoft.com/exchange/services/2006/types";
    public const string ContentType = "text/xml; charset=utf-8";

    /// <summary>The SOAPAction of notification-service.wsdl, quoted as SOAP 1.1 requires.</summary>
    public const string SoapAction = "\"http://schemas.microsoft.com/exchange/services/2006/messages/SendNotification\"";

    private const string ItemChangeKey = "CQAAAA==";
    private const string FolderChangeKey = "AQAAAA==";

    public static ReadOnlyMemory<byte> WriteSendNotification(string serverVersion, string subscriptionId, string previousWatermark, IReadOnlyList<FakeEvent> events)
    {
        var buffer = new ArrayBufferWriter<byte>(1024 + (events.Count * 512));
        Append(buffer, "<?xml version=\"1.0\" encoding=\"utf-8\"?>"u8);
        Append(buffer, "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Header><t:RequestServerVersion xmlns:m=\"http://schemas.microsoft.com/exchange/services/2006/messages\" xmlns:t=\"http://schemas.microsoft.com/exchange/services/2006/types\" Version=\""u8);
        AppendEscaped(buffer, serverVersion);
        Append(buffer, "\"/></s:Header><s:Body><m:SendNotification xmlns:t=\"http://schemas.microsoft.com/exchange/services/2006/types\" xmlns:m=\"http://schemas.microsoft.com/exchange/services/2006/messages\"><m:ResponseMessages><m:SendNotificationResponseMessage ResponseClass=\"Success\"><m:ResponseCode>NoError</m:ResponseCode><m:Notification><t:SubscriptionId>"u8);
        AppendEscaped(buffer, subscriptionId);
        Append(buffer, "</t:SubscriptionId><t:PreviousWatermark>"u8);
        AppendEscaped(buffer, previousWatermark);
        Append(buffer, "</t:PreviousWatermark><t:MoreEvents>false</t:MoreEvents>"u8);
        foreach (var e in events)
        {
            WriteEvent(buffer, e);
        }

        Append(buffer, "</m:Notification></m:SendNotificationResponseMessage></m:ResponseMessages></m:SendNotification></s:Body></s:Envelope>"u8);
        return buffer.WrittenMemory;
    }

    private static void WriteEvent(ArrayBufferWriter<byte> buffer, in FakeEvent e)
    {
        var name = e.Type switch
        {
            FakeEventType.Status => "StatusEvent"u8,
            FakeEventType.NewMail => "NewMailEvent"u8,
            FakeEventType.Created => "CreatedEvent"u8,
            _ => "ModifiedEvent"u8,
        };

        Append(buffer, "<t:"u8);
        Append(buffer, name);
        Append(buffer, "><t:Watermark>"u8);
        AppendEscaped(buffer, e.Watermark);
        Append(buffer, "</t:Watermark>"u8);
        if (e.Type != FakeEventType.Status)
        {
            Append(buffer, "<t:TimeStamp>"u8);
            var span = buffer.GetSpan(32);
            e.TimeStamp.UtcDateTime.TryFormat(span, out var written, "yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture);
            buffer.Advance(written);
            Append(buffer, "</t:TimeStamp>"u8);
            if (e.ItemId is not null)
            {
                WriteId(buffer, "ItemId"u8, e.ItemId, ItemChangeKey);
            }
            else
            {
                WriteId(buffer, "FolderId"u8, e.FolderId ?? string.Empty, FolderChangeKey);
            }

            WriteId(buffer, "ParentFolderId"u8, e.ParentFolderId ?? string.Empty, FolderChangeKey);
            if (e.UnreadCount is int unread)
            {
                Append(buffer, "<t:UnreadCount>"u8);
                var digits = buffer.GetSpan(11);
                Utf8Formatter.TryFormat(unread, digits, out written);
                buffer.Advance(written);
                Append(buffer, "</t:UnreadCount>"u8);
            }
        }

        Append(buffer, "</t:"u8);
        Append(buffer, name);
        Append(buffer, ">"u8);
    }

    private static void WriteId(ArrayBufferWriter<byte> buffer, ReadOnlySpan<byte> element, string id, string changeKey)
    {
        Append(buffer, "<t:"u8);
        Append(buffer, element);
        Append(buffer, " Id=\""u8);
        AppendEscaped(buffer, id);
        Append(buffer, "\" ChangeKey=\""u8);
        AppendEscaped(buffer, changeKey);
        Append(buffer, "\"/>"u8);
    }

    private static void Append(ArrayBufferWriter<byte> buffer, ReadOnlySpan<byte> bytes) => buffer.Write(bytes);

    private static void AppendEscaped(ArrayBufferWriter<byte> buffer, string text)
    {
        // Ids are base64, so the fast path is the norm; escape anyway so the writer is correct for any text.
        if (text.AsSpan().IndexOfAny("<>&\"'") < 0)
        {
            var span = buffer.GetSpan(Encoding.UTF8.GetMaxByteCount(text.Length));
            buffer.Advance(Encoding.UTF8.GetBytes(text, span));
            return;
        }

        foreach (var c in text)
        {
            switch (c)
            {
                case '<': Append(buffer, "&lt;"u8); break;
                case '>': Append(buffer, "&gt;"u8); break;
                case '&': Append(buffer, "&amp;"u8); break;
                case '"': Append(buffer, "&quot;"u8); break;
                case '\'': Append(buffer, "&apos;"u8); break;
                default:
                    var span = buffer.GetSpan(4);
                    buffer.Advance(Encoding.UTF8.GetBytes([c], span));
                    break;
            }
        }
    }

    private static readonly XmlReaderSettings s_readerSettings = new()
    {
        DtdProcessing = DtdProcessing.Prohibit,
        XmlResolver = null,
        MaxCharactersFromEntities = 1,
        IgnoreComments = true,
        IgnoreWhitespace = true,
        IgnoreProcessingInstructions = true,
    };

    /// <summary>
    /// The SubscriptionStatus of a SendNotificationResult, as Exchange's deserializer would read it: a well-formed
    /// SOAP 1.1 envelope (the version it asked in) whose Body holds <c>m:SendNotificationResult/m:SubscriptionStatus</c>
    /// with exactly <c>OK</c> or <c>Unsubscribe</c>. Anything else (a fault, another version, garbage) is no answer.
    /// </summary>
    public static ExchangeAnswer ReadAnswer(byte[] buffer, int length)
    {
        if (length == 0)
        {
            return ExchangeAnswer.None;
        }

        try
        {
            var settings = s_readerSettings.Clone();
            settings.MaxCharactersInDocument = length;
            using var stream = new MemoryStream(buffer, 0, length, writable: false);
            using var reader = XmlReader.Create(stream, settings);
            if (reader.MoveToContent() != XmlNodeType.Element || reader.LocalName != "Envelope" || reader.NamespaceURI != Soap11Namespace)
            {
                return ExchangeAnswer.None;
            }

            var answer = ExchangeAnswer.None;
            var inBody = false;
            var inResult = false;
            reader.Read();
            while (!reader.EOF)
            {
                if (reader.NodeType != XmlNodeType.Element)
                {
                    reader.Read();
                    continue;
                }

                if (reader.Depth > 16)
                {
                    return ExchangeAnswer.None;
                }

                if (reader.Depth == 1)
                {
                    inBody = reader.LocalName == "Body" && reader.NamespaceURI == Soap11Namespace;
                }
                else if (inBody && reader.Depth == 2)
                {
                    inResult = reader.LocalName == "SendNotificationResult" && reader.NamespaceURI == MessagesNamespace;
                }
                else if (inBody && inResult && reader.Depth == 3 && reader.LocalName == "SubscriptionStatus" && reader.NamespaceURI == MessagesNamespace)
                {
                    var status = reader.ReadElementContentAsString();
                    if (answer != ExchangeAnswer.None)
                    {
                        return ExchangeAnswer.None; // two statuses: not a valid result
                    }

                    answer = status switch
                    {
                        "OK" => ExchangeAnswer.Ok,
                        "Unsubscribe" => ExchangeAnswer.Unsubscribe,
                        _ => ExchangeAnswer.None,
                    };
                    if (answer == ExchangeAnswer.None)
                    {
                        return answer;
                    }

                    continue; // already on the next node
                }

                reader.Read();
            }

            return answer;
        }
        catch (XmlException)
        {
            return ExchangeAnswer.None;
        }
    }
}
