using Herald.Core.Events;

namespace Herald.Core.Ports;

/// <summary>How a source callback finds the registrations it is for.</summary>
public enum RouteKind
{
    /// <summary>The callback URL's key (EWS push): <see cref="IngestRoute.Key"/> is its SHA-256 hash.</summary>
    CallbackKey = 0,

    /// <summary>
    /// A mailbox of a connector (EWS streaming, Graph, Dovecot): <see cref="IngestRoute.Key"/> is the mailbox's keyed hash and
    /// <see cref="IngestRoute.TenantId"/> and <see cref="IngestRoute.Connector"/> name the connector; every active registration of it gets the events.
    /// </summary>
    Mailbox = 1,
}

/// <summary>The lookup key of a source callback.</summary>
public readonly record struct IngestRoute(RouteKind Kind, byte[] Key)
{
    /// <summary>For <see cref="RouteKind.Mailbox"/>: the connector's tenant.</summary>
    public string? TenantId { get; init; }

    /// <summary>For <see cref="RouteKind.Mailbox"/>: the connector's name.</summary>
    public string? Connector { get; init; }

    /// <summary>A route to the registrations of a mailbox on a tenant's connector.</summary>
    public static IngestRoute ForMailbox(string tenantId, string connector, byte[] mailboxHash)
        => new(RouteKind.Mailbox, mailboxHash) { TenantId = tenantId, Connector = connector };
}

/// <summary>
/// Subject and sender of a new message, for registrations with style preview. Transient: the planner hands it to the
/// in-memory <see cref="Planning.IPreviewCache"/>; it is never written to the database.
/// </summary>
public sealed record MailPreview(string? Subject, string? From)
{
    /// <summary>The sender's address, when the source gives it apart from the display name (encrypted previews only).</summary>
    public string? FromAddress { get; init; }

    /// <summary>The source's reference of the message (EWS item id, Graph message id, Dovecot <c>uidvalidity:uid</c>), for the app to open it.</summary>
    public string? MessageRef { get; init; }
}

/// <summary>What Herald tells the source after an ingest.</summary>
public enum IngestVerdict
{
    /// <summary>Not yet decided (the batch has not been applied).</summary>
    Pending = 0,
    /// <summary>Stored durably; keep sending.</summary>
    Accepted = 1,
    /// <summary>Unknown, deleted or inactive: stop sending (EWS <c>Unsubscribe</c>).</summary>
    Unsubscribe = 2,
}

/// <summary>One source callback on its way into the store. The store sets the verdict.</summary>
public sealed class IngestItem
{
    public required IngestRoute Route { get; init; }
    public required IReadOnlyList<MailboxNotification> Notifications { get; init; }
    public required DateTimeOffset ReceivedAt { get; init; }

    /// <summary>The source that delivered the callback (for metrics).</summary>
    public Registrations.SourceKind Source { get; init; } = Registrations.SourceKind.EwsPush;

    /// <summary>Subject and sender of the newest message, when the source provides them (never stored).</summary>
    public MailPreview? Preview { get; init; }

    /// <summary>Set by the store when the batch commits.</summary>
    public IngestVerdict Verdict { get; set; }

    /// <summary>Notifications queued (or replaced by coalescing) for this item, set by the store.</summary>
    public int Enqueued { get; set; }
}

/// <summary>
/// The durable side of ingest. Applies a batch of callbacks in order inside one transaction:
/// finds each item's registrations, lets the planner decide, persists registration state and
/// the resulting notifications, then commits. Only after this returns may a source be answered.
/// </summary>
public interface IIngestStore
{
    /// <summary>Applies the batch atomically; throws if it could not be made durable (then nothing was stored).</summary>
    Task ApplyIngestBatchAsync(IReadOnlyList<IngestItem> batch, IIngestPlanner planner, CancellationToken cancellationToken);
}
