namespace Herald.Simulators.Exchange.Streaming;

/// <summary>A message in a simulated mailbox.</summary>
/// <param name="ItemId">Its EWS item id.</param>
/// <param name="Subject">The subject.</param>
/// <param name="FromName">The sender's display name.</param>
/// <param name="FromAddress">The sender's SMTP address.</param>
public sealed record FakeEwsItem(string ItemId, string Subject, string FromName, string FromAddress)
{
    /// <summary>Whether it has been read.</summary>
    public bool IsRead { get; internal set; }
}

/// <summary>A new message the fake delivered: the item and when (for latency measurements).</summary>
/// <param name="Address">The mailbox.</param>
/// <param name="ItemId">The new item's id.</param>
/// <param name="UnreadCount">The inbox unread count after delivery.</param>
/// <param name="EmittedTimestamp">The <see cref="TimeProvider.GetTimestamp"/> of the emit.</param>
/// <param name="EmittedAt">The wall-clock time of the emit (the fake's TimeProvider).</param>
/// <param name="Subscriptions">How many live subscriptions the events were queued to (0: nobody was listening).</param>
public sealed record FakeEwsEmit(string Address, string ItemId, int UnreadCount, long EmittedTimestamp, DateTimeOffset EmittedAt, int Subscriptions);

/// <summary>
/// One simulated mailbox: its backend (mailbox server, hence GroupingInformation), inbox and calendar folders, messages
/// and unread count. Thread-safe through the server's lock.
/// </summary>
public sealed class FakeEwsMailbox
{
    internal FakeEwsMailbox(string address, string backend, string inboxId, string calendarId, string rootId)
    {
        Address = address;
        Backend = backend;
        InboxId = inboxId;
        CalendarId = calendarId;
        RootId = rootId;
    }

    /// <summary>The primary SMTP address.</summary>
    public string Address { get; }

    /// <summary>The mailbox server it lives on (changes with <see cref="FakeEwsServer.MoveMailbox"/>).</summary>
    public string Backend { get; internal set; }

    /// <summary>The inbox folder id.</summary>
    public string InboxId { get; }

    /// <summary>The calendar folder id.</summary>
    public string CalendarId { get; }

    /// <summary>The msgfolderroot id (parent of inbox and calendar).</summary>
    public string RootId { get; }

    internal List<FakeEwsItem> Inbox { get; } = [];

    internal long EventCounter;

    /// <summary>Unread messages in the inbox.</summary>
    public int UnreadCount { get; internal set; }
}
