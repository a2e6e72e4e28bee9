namespace Herald.Sources.Dovecot;

/// <summary>
/// One request of Dovecot's push_notification OX driver, as parsed. The snippet Dovecot sends (the start of the
/// body text) is read past and never kept; <see cref="Subject"/> and <see cref="From"/> are already RFC 2047
/// decoded and exist only for <c>style: preview</c> alerts: they are never stored.
/// </summary>
public sealed record DovecotNotification
{
    /// <summary>The Dovecot user the METADATA key names (<c>user=</c> of <c>/private/vendor/vendor.dovecot/http-notify</c>).</summary>
    public required string User { get; init; }

    /// <summary>The event as sent: <c>messageNew</c> (observed from 2.3.19) or <c>MessageNew</c> (documented).</summary>
    public required string Event { get; init; }

    /// <summary>The mailbox the message arrived in (the OX driver only reports INBOX deliveries).</summary>
    public string? Folder { get; init; }

    /// <summary>IMAP UIDVALIDITY of <see cref="Folder"/>.</summary>
    public long? UidValidity { get; init; }

    /// <summary>IMAP UID of the new message.</summary>
    public long? Uid { get; init; }

    /// <summary>The sender for display: the decoded display name, else the address (transient).</summary>
    public string? From { get; init; }

    /// <summary>The sender's address, when the From header has one (transient; encrypted previews only).</summary>
    public string? FromAddress { get; init; }

    /// <summary>The decoded subject (transient).</summary>
    public string? Subject { get; init; }

    /// <summary>Unseen messages in INBOX, counting the new one: the badge.</summary>
    public int? Unseen { get; init; }

    /// <summary>Whether the event announces a new message (the only one Herald acts on).</summary>
    public bool IsMessageNew => string.Equals(Event, "messageNew", StringComparison.OrdinalIgnoreCase);
}
