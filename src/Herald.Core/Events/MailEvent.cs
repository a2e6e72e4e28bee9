namespace Herald.Core.Events;

/// <summary>The kinds of mailbox event Herald understands (the EWS event types of types.xsd and their equivalents).</summary>
public enum MailEventKind
{
    /// <summary>A heartbeat: the subscription is alive, nothing changed.</summary>
    Status = 0,
    NewMail = 1,
    Created = 2,
    Deleted = 3,
    Modified = 4,
    Moved = 5,
    Copied = 6,
    FreeBusyChanged = 7,

    /// <summary>The source may have lost events (EWS ErrorMissedNotificationEvents, Graph <c>missed</c>): the device should sync.</summary>
    Missed = 8,
}

/// <summary>
/// One mailbox event. Identifiers are opaque strings of the source; no subject, sender or body is kept here.
/// </summary>
public sealed record MailEvent
{
    public required MailEventKind Kind { get; init; }
    public string? Watermark { get; init; }
    public DateTimeOffset? TimeStamp { get; init; }

    /// <summary>The item the event is about, when it is about an item.</summary>
    public string? ItemId { get; init; }

    /// <summary>The folder the event is about, when it is about a folder.</summary>
    public string? FolderId { get; init; }

    public string? ParentFolderId { get; init; }
    public string? OldItemId { get; init; }
    public string? OldFolderId { get; init; }
    public string? OldParentFolderId { get; init; }

    /// <summary>The folder's unread count, carried by folder ModifiedEvents.</summary>
    public int? UnreadCount { get; init; }

    /// <summary>True when the event concerns a folder rather than an item.</summary>
    public bool IsFolderEvent => FolderId is not null && ItemId is null;
}

/// <summary>A batch of events for one subscription, as one source callback delivers it.</summary>
public sealed record MailboxNotification
{
    /// <summary>The source's subscription id (EWS SubscriptionId, Graph subscription id, …).</summary>
    public string? SubscriptionId { get; init; }
    public string? PreviousWatermark { get; init; }
    public bool MoreEvents { get; init; }
    public required IReadOnlyList<MailEvent> Events { get; init; }
}
