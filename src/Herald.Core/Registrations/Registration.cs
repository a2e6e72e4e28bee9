namespace Herald.Core.Registrations;

/// <summary>The push platform a device is reached through.</summary>
public enum Platform
{
    /// <summary>Apple Push Notification service.</summary>
    Apns = 0,
    /// <summary>Firebase Cloud Messaging HTTP v1.</summary>
    Fcm = 1,
    /// <summary>Windows Push Notification Services.</summary>
    Wns = 2,
}

/// <summary>APNs environment: the token is only valid in the one it was issued for.</summary>
public enum PushEnvironment
{
    /// <summary>api.push.apple.com.</summary>
    Production = 0,
    /// <summary>api.sandbox.push.apple.com.</summary>
    Sandbox = 1,
}

/// <summary>Where a registration's mailbox events come from.</summary>
public enum SourceKind
{
    /// <summary>No mailbox source: the registration only receives direct sends.</summary>
    None = 0,
    /// <summary>Exchange POSTs EWS push notifications to the registration's callback URL.</summary>
    EwsPush = 1,
    /// <summary>Herald holds an EWS streaming subscription through a connector.</summary>
    EwsStreaming = 2,
    /// <summary>Microsoft Graph change notifications through a connector.</summary>
    Graph = 3,
    /// <summary>Dovecot's push_notification plugin through a connector.</summary>
    Dovecot = 4,
}

/// <summary>What a device is shown when mail arrives.</summary>
public enum NotificationStyle
{
    /// <summary>Only the badge (inbox unread count); nothing on the lock screen.</summary>
    Badge = 0,
    /// <summary>A generic, localised "New mail" alert plus the badge.</summary>
    Generic = 1,
    /// <summary>An alert with subject and sender, for sources that provide them.</summary>
    Preview = 2,
    /// <summary>
    /// A generic alert carrying the preview sealed with HPKE for the device's <see cref="Registration.EncryptionKey"/>:
    /// only the device can read subject and sender (docs/ENCRYPTED-PREVIEWS.md).
    /// </summary>
    PreviewEncrypted = 3,
}

/// <summary>Lifecycle of a registration.</summary>
public enum RegistrationStatus
{
    /// <summary>Receives pushes.</summary>
    Active = 0,
    /// <summary>Its token was rejected by the provider; Exchange is told to unsubscribe.</summary>
    Inactive = 1,
    /// <summary>Deleted through the API; kept as a tombstone so callbacks answer Unsubscribe.</summary>
    Deleted = 2,
}

/// <summary>A device registered for mailbox push. Holds a token and routing data, never mail content.</summary>
public sealed class Registration
{
    public required string Id { get; init; }
    public required string TenantId { get; init; }
    public required Platform Platform { get; set; }
    public required string Token { get; set; }
    public required string Topic { get; set; }
    public PushEnvironment Environment { get; set; }
    public SourceKind Source { get; init; }
    public NotificationStyle Style { get; set; }
    public IReadOnlyList<string> Folders { get; set; } = ["inbox"];
    public string Locale { get; set; } = "en";
    public RegistrationStatus Status { get; set; }
    public string? InactiveReason { get; set; }
    public DateTimeOffset? InactiveAt { get; set; }

    /// <summary>The tenant's connector the mailbox events come through (EWS streaming, Graph, Dovecot), or null.</summary>
    public string? Connector { get; init; }

    /// <summary>The keyed hash of the mailbox address or user id (<c>SecretBox.MailboxHash</c>), for lookups; null without a mailbox.</summary>
    public byte[]? MailboxHash { get; init; }

    /// <summary>The mailbox address sealed with the <c>SecretBox</c> (purpose <c>mailbox</c>); never stored in clear.</summary>
    public string? SealedMailbox { get; init; }

    /// <summary>The EWS subscription currently bound to the callback URL (learned on first contact).</summary>
    public string? SubscriptionId { get; set; }

    /// <summary>The subscription that was replaced by <see cref="SubscriptionId"/>; its callbacks answer Unsubscribe.</summary>
    public string? PreviousSubscriptionId { get; set; }

    /// <summary>The inbox folder id as learned from new-mail events, to tell inbox unread counts from others.</summary>
    public string? InboxFolderId { get; set; }

    /// <summary>The device's HPKE public key (uncompressed P-256 point, 65 bytes) for <see cref="NotificationStyle.PreviewEncrypted"/>; public, not secret.</summary>
    public byte[]? EncryptionKey { get; set; }

    /// <summary>The last known inbox unread count (the badge).</summary>
    public int? UnreadCount { get; set; }

    public DateTimeOffset CreatedAt { get; init; }
    public DateTimeOffset UpdatedAt { get; set; }
    public DateTimeOffset? LastEventAt { get; set; }
    public DateTimeOffset? LastPushAt { get; set; }
    public string? LastPushResult { get; set; }

    /// <summary>Whether callbacks for this registration are answered Unsubscribe.</summary>
    public bool WantsUnsubscribe => Status != RegistrationStatus.Active;
}
