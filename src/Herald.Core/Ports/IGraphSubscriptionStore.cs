namespace Herald.Core.Ports;

/// <summary>What a Graph lifecycle event asked Herald to do with a subscription (stored, so a restart still does it).</summary>
public enum GraphSubscriptionAction
{
    /// <summary>Nothing pending.</summary>
    None = 0,
    /// <summary><c>reauthorizationRequired</c>: reauthorize (or renew) it.</summary>
    Reauthorize = 1,
    /// <summary><c>subscriptionRemoved</c>: Graph dropped it; create a new one.</summary>
    Recreate = 2,
}

/// <summary>
/// A Graph change-notification subscription Herald holds for one mailbox of a tenant's graph connector. The clientState
/// is kept only as its keyed hash (it is compared, never sent again); the mailbox address is sealed.
/// </summary>
public sealed record GraphSubscription
{
    /// <summary>Graph's subscription id.</summary>
    public required string Id { get; init; }
    public required string TenantId { get; init; }
    public required string Connector { get; init; }

    /// <summary>SecretBox.MailboxHash of the mailbox (the ingest route key).</summary>
    public required byte[] MailboxHash { get; init; }

    /// <summary>The mailbox (user id or address) sealed with purpose <c>mailbox</c>.</summary>
    public required string SealedMailbox { get; init; }

    /// <summary>SecretBox.KeyedHash(clientState, "graph-client-state").</summary>
    public required byte[] ClientStateHash { get; init; }

    /// <summary>The <c>expirationDateTime</c> Graph returned last.</summary>
    public required DateTimeOffset ExpiresAt { get; init; }

    public required DateTimeOffset CreatedAt { get; init; }

    /// <summary>The last successful create or renew (the start of the current lifetime).</summary>
    public required DateTimeOffset RenewedAt { get; init; }

    /// <summary>A lifecycle event's pending request.</summary>
    public GraphSubscriptionAction PendingAction { get; init; }

    /// <summary>The node that manages the subscription until <see cref="LeaseUntil"/> (so a farm can split renewals).</summary>
    public string? LeaseOwner { get; init; }
    public DateTimeOffset? LeaseUntil { get; init; }
}

/// <summary>The kind of a stored Graph change notification.</summary>
public enum GraphChangeKind
{
    Created = 0,
    Updated = 1,
    Deleted = 2,
}

/// <summary>A change notification stored before Graph was answered, waiting for the worker to fetch the badge.</summary>
public sealed record GraphPendingNotification
{
    /// <summary>Store-assigned sequence (0 before it is stored).</summary>
    public long Sequence { get; init; }

    /// <summary>SHA-256 of subscription id, change type and resource: a Graph retry has the same key.</summary>
    public required byte[] DedupKey { get; init; }
    public required string SubscriptionId { get; init; }
    public required GraphChangeKind Kind { get; init; }

    /// <summary>The message id of <c>resourceData.id</c> (an opaque Graph id; needed to fetch a preview).</summary>
    public string? MessageId { get; init; }
    public required DateTimeOffset ReceivedAt { get; init; }

    /// <summary>Until when a processed notification still absorbs retries of itself.</summary>
    public required DateTimeOffset KeepUntil { get; init; }
}

/// <summary>Storage of Herald's Graph subscriptions and of the change notifications received for them.</summary>
public interface IGraphSubscriptionStore
{
    /// <summary>Creates or replaces a subscription.</summary>
    Task SaveGraphSubscriptionAsync(GraphSubscription subscription, CancellationToken cancellationToken);

    /// <summary>One subscription, or null.</summary>
    Task<GraphSubscription?> GetGraphSubscriptionAsync(string id, CancellationToken cancellationToken);

    /// <summary>
    /// The subscription with this clientState hash, or null: finds a subscription whose create call is still in flight (saved
    /// under a provisional id, so notifications Graph sends before the create returns are not lost).
    /// </summary>
    Task<GraphSubscription?> FindGraphSubscriptionByClientStateAsync(byte[] clientStateHash, CancellationToken cancellationToken);

    /// <summary>Gives a provisional subscription its Graph id and expiry once the create returned (a pending action is kept); false when it is gone.</summary>
    Task<bool> ConfirmGraphSubscriptionAsync(string provisionalId, string id, DateTimeOffset expiresAt, CancellationToken cancellationToken);

    /// <summary>The subscriptions of a tenant's connector, by id.</summary>
    Task<IReadOnlyList<GraphSubscription>> ListGraphSubscriptionsAsync(string tenantId, string connector, CancellationToken cancellationToken);

    /// <summary>Deletes a subscription (its pending notifications stay until processed); false when there was none.</summary>
    Task<bool> DeleteGraphSubscriptionAsync(string id, CancellationToken cancellationToken);

    /// <summary>Records a lifecycle event's request durably; false when the subscription is unknown.</summary>
    Task<bool> SetGraphSubscriptionActionAsync(string id, GraphSubscriptionAction action, CancellationToken cancellationToken);

    /// <summary>
    /// Takes the subscription's lease for <paramref name="owner"/> until <paramref name="until"/> when it is free, expired or
    /// already the owner's; false when another node holds it.
    /// </summary>
    Task<bool> TryLeaseGraphSubscriptionAsync(string id, string owner, DateTimeOffset now, DateTimeOffset until, CancellationToken cancellationToken);

    /// <summary>Stores notifications, ignoring those whose dedup key is already present; returns how many were new.</summary>
    Task<int> AddGraphNotificationsAsync(IReadOnlyList<GraphPendingNotification> notifications, CancellationToken cancellationToken);

    /// <summary>Claims up to <paramref name="max"/> unprocessed notifications (unleased or with an expired lease), oldest first.</summary>
    Task<IReadOnlyList<GraphPendingNotification>> ClaimGraphNotificationsAsync(string owner, DateTimeOffset now, DateTimeOffset leaseUntil, int max, CancellationToken cancellationToken);

    /// <summary>Marks notifications processed and drops processed ones whose dedup window has passed.</summary>
    Task CompleteGraphNotificationsAsync(IReadOnlyList<long> sequences, DateTimeOffset now, CancellationToken cancellationToken);
}
