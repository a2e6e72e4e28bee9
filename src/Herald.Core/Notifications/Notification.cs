using Herald.Core.Registrations;

namespace Herald.Core.Notifications;

/// <summary>Queue lanes: priority is never throttled and is served first.</summary>
public enum Lane
{
    /// <summary>User-initiated: mailbox events and interactive sends.</summary>
    Priority = 0,
    /// <summary>Administrative bulk: throttled.</summary>
    Standard = 1,
}

/// <summary>The life of one notification to one target.</summary>
public enum NotificationState
{
    Queued = 0,
    Sending = 1,
    Retrying = 2,
    Sent = 3,
    /// <summary>Permanently rejected by the provider (with its reason).</summary>
    Failed = 4,
    /// <summary>Its time to live passed before it could be sent.</summary>
    Expired = 5,
    /// <summary>Attempts exhausted.</summary>
    Dead = 6,
}

/// <summary>What kind of push a notification becomes.</summary>
public enum PushKind
{
    /// <summary>Only a badge number.</summary>
    Badge = 0,
    /// <summary>A visible alert (title and body), with an optional badge.</summary>
    Alert = 1,
    /// <summary>A silent, content-available wake-up.</summary>
    Background = 2,
    /// <summary>An MDM wake-up carrying the device's PushMagic.</summary>
    Mdm = 3,
}

/// <summary>
/// The platform-neutral content of a push. Providers turn it into their wire format at send time,
/// so one queue row serves APNs, FCM and WNS alike.
/// </summary>
public sealed record NotificationContent
{
    public required PushKind Kind { get; init; }
    public int? Badge { get; init; }
    public string? Title { get; init; }
    public string? Body { get; init; }
    public string? Sound { get; init; }
    public string? PushMagic { get; init; }

    /// <summary>Custom key/value data (string values) passed to the app.</summary>
    public IReadOnlyDictionary<string, string>? Data { get; init; }

    /// <summary>
    /// An alert whose title (sender) and body (subject) are filled at send time from the in-memory preview cache;
    /// <see cref="Body"/> holds the generic text used when no preview is held.
    /// </summary>
    public bool UsePreview { get; init; }

    /// <summary>
    /// With <see cref="UsePreview"/>: the device's HPKE public key (style preview-encrypted). The preview is then sealed for
    /// it at send time into <see cref="Sealed"/> instead of being shown in clear; <see cref="Body"/> stays the generic text.
    /// A public key, not a secret.
    /// </summary>
    public byte[]? EncryptTo { get; init; }

    /// <summary>The sealed preview, set by the dispatcher at send time only: never stored (not serialised), never logged.</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public SealedPreview? Sealed { get; init; }
}

/// <summary>An HPKE-sealed preview: the encapsulated key and the ciphertext, both base64url (docs/ENCRYPTED-PREVIEWS.md).</summary>
public sealed record SealedPreview(string Enc, string Ciphertext)
{
    /// <summary>The wire format version (<c>hx.v</c>).</summary>
    public const int Version = 1;
}

/// <summary>A notification to put on the queue.</summary>
public sealed record NewNotification
{
    public required string TenantId { get; init; }
    public string? RegistrationId { get; init; }

    /// <summary>The API request (bulk send) this notification belongs to, if any.</summary>
    public string? RequestId { get; init; }

    public Lane Lane { get; init; }
    public required Platform Platform { get; init; }
    public required string Token { get; init; }
    public required string Topic { get; init; }
    public PushEnvironment Environment { get; init; }
    public required NotificationContent Content { get; init; }

    /// <summary>Notifications with the same key replace each other while unsent (coalescing).</summary>
    public string? CoalesceKey { get; init; }

    public string? CollapseId { get; init; }
    public DateTimeOffset? ExpiresAt { get; init; }

    /// <summary>When the event that caused it was received, for end-to-end latency.</summary>
    public DateTimeOffset? EventAt { get; init; }
}

/// <summary>A notification leased to this node for sending.</summary>
public sealed class ClaimedNotification
{
    public required long Id { get; init; }

    /// <summary>A stable UUID for the provider (APNs <c>apns-id</c>), the same on every attempt.</summary>
    public required Guid MessageId { get; init; }

    public required string TenantId { get; init; }
    public string? RegistrationId { get; init; }
    public Lane Lane { get; init; }
    public required Platform Platform { get; init; }
    public required string Token { get; init; }
    public required string Topic { get; init; }
    public PushEnvironment Environment { get; init; }
    public required NotificationContent Content { get; init; }
    public string? CollapseId { get; init; }
    public DateTimeOffset? ExpiresAt { get; init; }
    public DateTimeOffset? EventAt { get; init; }

    /// <summary>Attempts including this one.</summary>
    public int Attempt { get; init; }

    /// <summary>A copy with other content (the same message id, so a retry stays the same message).</summary>
    public ClaimedNotification WithContent(NotificationContent content) => new()
    {
        Id = Id,
        MessageId = MessageId,
        TenantId = TenantId,
        RegistrationId = RegistrationId,
        Lane = Lane,
        Platform = Platform,
        Token = Token,
        Topic = Topic,
        Environment = Environment,
        Content = content,
        CollapseId = CollapseId,
        ExpiresAt = ExpiresAt,
        EventAt = EventAt,
        Attempt = Attempt,
    };
}
