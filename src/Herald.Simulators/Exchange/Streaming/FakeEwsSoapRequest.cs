using System.Globalization;
using System.Xml;

namespace Herald.Simulators.Exchange.Streaming;

/// <summary>What the fake understood of one EWS or Autodiscover SOAP request (elements matched by local name).</summary>
internal sealed class FakeEwsSoapRequest
{
    private const int MaxBodyBytes = 1024 * 1024;

    private static readonly XmlReaderSettings s_settings = new()
    {
        DtdProcessing = DtdProcessing.Prohibit,
        XmlResolver = null,
        MaxCharactersFromEntities = 1,
        MaxCharactersInDocument = MaxBodyBytes,
        IgnoreComments = true,
        IgnoreWhitespace = true,
        IgnoreProcessingInstructions = true,
    };

    /// <summary>The local name of the Body's first element (Subscribe, GetStreamingEvents, GetUserSettingsRequestMessage…).</summary>
    public string? Operation { get; private set; }

    /// <summary>The SOAP envelope namespace.</summary>
    public string? EnvelopeNamespace { get; private set; }

    /// <summary><c>ExchangeImpersonation/ConnectingSID/PrimarySmtpAddress</c> (or SmtpAddress), when present.</summary>
    public string? ImpersonatedAddress { get; private set; }

    /// <summary>True when the header has an ExchangeImpersonation element at all.</summary>
    public bool HasImpersonation { get; private set; }

    /// <summary>Subscribe: a StreamingSubscriptionRequest (not push or pull).</summary>
    public bool IsStreamingSubscription { get; private set; }

    /// <summary>Subscribe/GetFolder: the distinguished folder ids named.</summary>
    public List<string> DistinguishedFolderIds { get; } = [];

    /// <summary>Subscribe: EventType values.</summary>
    public List<string> EventTypes { get; } = [];

    /// <summary>GetStreamingEvents/Unsubscribe: SubscriptionId values.</summary>
    public List<string> SubscriptionIds { get; } = [];

    /// <summary>GetStreamingEvents: ConnectionTimeout minutes, or null when absent or not a number.</summary>
    public int? ConnectionTimeoutMinutes { get; private set; }

    /// <summary>GetItem: ItemId Id attributes (also FolderId Id for GetFolder).</summary>
    public List<string> ItemIds { get; } = [];

    /// <summary>GetFolder: FolderId Id attributes.</summary>
    public List<string> FolderIds { get; } = [];

    /// <summary>Autodiscover GetUserSettings: the Mailbox values; POX: EMailAddress.</summary>
    public List<string> Mailboxes { get; } = [];

    /// <summary>Autodiscover GetUserSettings: the requested setting names.</summary>
    public List<string> RequestedSettings { get; } = [];

    /// <summary>Parses a body; null when it is not well-formed XML.</summary>
    public static FakeEwsSoapRequest? Parse(ReadOnlyMemory<byte> body)
    {
        var request = new FakeEwsSoapRequest();
        try
        {
            using var stream = new MemoryStream(body.ToArray(), writable: false);
            using var reader = XmlReader.Create(stream, s_settings);
            request.Read(reader);
            return request;
        }
        catch (XmlException)
        {
            return null;
        }
    }

    private void Read(XmlReader reader)
    {
        var inHeader = false;
        var inBody = false;
        var bodyDepth = -1;
        var isEnvelope = false;
        var inImpersonation = false;
        var impersonationDepth = -1;
        var positioned = false; // ReadElementContentAsString leaves the reader on the next node already
        while (positioned || reader.Read())
        {
            positioned = false;
            if (reader.NodeType == XmlNodeType.EndElement)
            {
                if (inImpersonation && reader.Depth == impersonationDepth)
                {
                    inImpersonation = false;
                }

                continue;
            }

            if (reader.NodeType != XmlNodeType.Element)
            {
                continue;
            }

            var name = reader.LocalName;
            if (reader.Depth == 0)
            {
                EnvelopeNamespace = reader.NamespaceURI;
                isEnvelope = name == "Envelope";
                if (!isEnvelope)
                {
                    // POX Autodiscover: <Autodiscover><Request><EMailAddress>.
                    Operation = name;
                    inBody = true;
                    bodyDepth = -1;
                }

                continue;
            }

            if (reader.Depth == 1 && isEnvelope && reader.NamespaceURI == EnvelopeNamespace)
            {
                inHeader = name == "Header";
                inBody = name == "Body";
                bodyDepth = 1;
                continue;
            }

            if (inHeader)
            {
                if (name == "ExchangeImpersonation")
                {
                    HasImpersonation = true;
                    inImpersonation = !reader.IsEmptyElement;
                    impersonationDepth = reader.Depth;
                }
                else if (inImpersonation && name is "PrimarySmtpAddress" or "SmtpAddress")
                {
                    ImpersonatedAddress = reader.ReadElementContentAsString().Trim();
                    positioned = true;
                }

                continue;
            }

            if (!inBody)
            {
                continue;
            }

            if (bodyDepth >= 0 && reader.Depth == bodyDepth + 1 && Operation is null)
            {
                Operation = name;
                continue;
            }

            switch (name)
            {
                case "StreamingSubscriptionRequest":
                    IsStreamingSubscription = true;
                    break;
                case "DistinguishedFolderId":
                    if (reader.GetAttribute("Id") is { Length: > 0 } distinguished)
                    {
                        DistinguishedFolderIds.Add(distinguished);
                    }

                    break;
                case "FolderId":
                    if (reader.GetAttribute("Id") is { Length: > 0 } folder)
                    {
                        FolderIds.Add(folder);
                    }

                    break;
                case "ItemId":
                    if (reader.GetAttribute("Id") is { Length: > 0 } item)
                    {
                        ItemIds.Add(item);
                    }

                    break;
                case "EventType":
                    EventTypes.Add(reader.ReadElementContentAsString().Trim());
                    positioned = true;
                    break;
                case "SubscriptionId":
                    SubscriptionIds.Add(reader.ReadElementContentAsString().Trim());
                    positioned = true;
                    break;
                case "ConnectionTimeout":
                    ConnectionTimeoutMinutes = int.TryParse(reader.ReadElementContentAsString().Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var minutes) ? minutes : null;
                    positioned = true;
                    break;
                case "Mailbox" or "EMailAddress":
                    Mailboxes.Add(reader.ReadElementContentAsString().Trim());
                    positioned = true;
                    break;
                case "Setting":
                    RequestedSettings.Add(reader.ReadElementContentAsString().Trim());
                    positioned = true;
                    break;
                default:
                    break;
            }
        }
    }
}
