using System.Collections.Frozen;
using System.Xml;

namespace Herald.Sources.Ews;

/// <summary>
/// The atomized names the parser compares by reference. They live in one immutable, process-wide set, so a
/// document made of EWS names atomizes into these very instances without a per-request table; names the set does
/// not know go to a small per-document <see cref="NameTable"/> that is dropped after each parse (an attacker's
/// random names never accumulate).
/// </summary>
internal sealed class EwsNameTable : XmlNameTable
{
    // Elements.
    internal const string Envelope = "Envelope";
    internal const string Header = "Header";
    internal const string Body = "Body";
    internal const string Fault = "Fault";
    internal const string FaultCodeName = "faultcode";
    internal const string Code = "Code";
    internal const string Value = "Value";
    internal const string SendNotification = "SendNotification";
    internal const string Notification = "Notification";
    internal const string SubscriptionId = "SubscriptionId";
    internal const string PreviousWatermark = "PreviousWatermark";
    internal const string MoreEvents = "MoreEvents";
    internal const string StatusEvent = "StatusEvent";
    internal const string NewMailEvent = "NewMailEvent";
    internal const string CreatedEvent = "CreatedEvent";
    internal const string DeletedEvent = "DeletedEvent";
    internal const string ModifiedEvent = "ModifiedEvent";
    internal const string MovedEvent = "MovedEvent";
    internal const string CopiedEvent = "CopiedEvent";
    internal const string FreeBusyChangedEvent = "FreeBusyChangedEvent";
    internal const string Watermark = "Watermark";
    internal const string TimeStamp = "TimeStamp";
    internal const string ItemId = "ItemId";
    internal const string FolderId = "FolderId";
    internal const string ParentFolderId = "ParentFolderId";
    internal const string OldItemId = "OldItemId";
    internal const string OldFolderId = "OldFolderId";
    internal const string OldParentFolderId = "OldParentFolderId";
    internal const string UnreadCount = "UnreadCount";
    internal const string ConnectionStatus = "ConnectionStatus";
    internal const string ErrorSubscriptionIds = "ErrorSubscriptionIds";
    internal const string ResponseCode = "ResponseCode";

    // Attributes.
    internal const string Id = "Id";
    internal const string Name = "Name";
    internal const string BackOffMilliseconds = "BackOffMilliseconds";

    // Names every document has: they would otherwise always fill the per-document table.
    private static readonly string[] s_common =
    [
        string.Empty, "xml", "xmlns", "http://www.w3.org/XML/1998/namespace", "http://www.w3.org/2000/xmlns/",
        "s", "soap", "soap12", "env", "m", "t", "h", "e", "a", "xsi", "xsd",
        "http://www.w3.org/2001/XMLSchema-instance", "http://www.w3.org/2001/XMLSchema",
        EwsSoap.Soap11Namespace, EwsSoap.Soap12Namespace, EwsSoap.MessagesNamespace, EwsSoap.TypesNamespace, EwsSoap.ErrorsNamespace,
        "ResponseMessages", "SendNotificationResponseMessage", "GetStreamingEventsResponse", "GetStreamingEventsResponseMessage",
        "Notifications", "ResponseClass", "ChangeKey", "RequestServerVersion", "ServerVersionInfo", "Version",
        "MajorVersion", "MinorVersion", "MajorBuildNumber", "MinorBuildNumber", "MessageText", "DescriptiveLinkKey", "MessageXml",
        "faultstring", "detail", "Reason", "Text", "lang",
    ];

    private static readonly FrozenSet<string> s_known = FrozenSet.Create(
        StringComparer.Ordinal,
        [
            .. s_common,
            Envelope, Header, Body, Fault, FaultCodeName, Code, Value, SendNotification, Notification, SubscriptionId,
            PreviousWatermark, MoreEvents, StatusEvent, NewMailEvent, CreatedEvent, DeletedEvent, ModifiedEvent, MovedEvent,
            CopiedEvent, FreeBusyChangedEvent, Watermark, TimeStamp, ItemId, FolderId, ParentFolderId, OldItemId, OldFolderId,
            OldParentFolderId, UnreadCount, ConnectionStatus, ErrorSubscriptionIds, ResponseCode, Id, Name, BackOffMilliseconds,
        ]);

    private static readonly FrozenSet<string>.AlternateLookup<ReadOnlySpan<char>> s_knownBySpan = s_known.GetAlternateLookup<ReadOnlySpan<char>>();

    private NameTable? _others;

    /// <summary>Forgets the names of the previous document.</summary>
    public void Reset() => _others = null;

    public override string Add(char[] array, int offset, int length)
    {
        if (s_knownBySpan.TryGetValue(new ReadOnlySpan<char>(array, offset, length), out var known))
        {
            return known;
        }

        return (_others ??= new NameTable()).Add(array, offset, length);
    }

    public override string Add(string array)
    {
        if (s_known.TryGetValue(array, out var known))
        {
            return known;
        }

        return (_others ??= new NameTable()).Add(array);
    }

    public override string? Get(char[] array, int offset, int length)
    {
        if (s_knownBySpan.TryGetValue(new ReadOnlySpan<char>(array, offset, length), out var known))
        {
            return known;
        }

        return _others?.Get(array, offset, length);
    }

    public override string? Get(string array)
    {
        if (s_known.TryGetValue(array, out var known))
        {
            return known;
        }

        return _others?.Get(array);
    }
}
