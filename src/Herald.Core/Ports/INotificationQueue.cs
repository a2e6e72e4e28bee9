using Herald.Core.Notifications;

namespace Herald.Core.Ports;

/// <summary>Counts of the queue by lane and state.</summary>
public sealed record QueueSnapshot(IReadOnlyDictionary<(Lane Lane, NotificationState State), long> Counts, DateTimeOffset? OldestQueuedAt);

/// <summary>
/// The durable notification queue. Claims are leases: a claimed row belongs to its owner until the
/// lease ends; completion is fenced on the owner, and expired leases are returned to the queue.
/// </summary>
public interface INotificationQueue
{
    /// <summary>Enqueues notifications in one transaction, coalescing on <see cref="NewNotification.CoalesceKey"/>.</summary>
    Task<IReadOnlyList<long>> EnqueueAsync(IReadOnlyList<NewNotification> notifications, CancellationToken cancellationToken);

    /// <summary>
    /// Leases due notifications to <paramref name="owner"/>: up to <see cref="ClaimLimits.Priority"/> of the
    /// priority lane and up to <see cref="ClaimLimits.Standard"/> of the standard lane. Within a lane, tenants
    /// take turns (each tenant's oldest due rows first), so one tenant's bulk job cannot starve another's sends.
    /// </summary>
    Task<IReadOnlyList<ClaimedNotification>> ClaimAsync(string owner, ClaimLimits limits, DateTimeOffset now, TimeSpan lease, CancellationToken cancellationToken);

    /// <summary>
    /// Records outcomes in one transaction, and one attempt row per outcome (time, attempt number, state,
    /// status, reason); rows no longer leased to <paramref name="owner"/> are left alone.
    /// </summary>
    Task<int> CompleteAsync(string owner, IReadOnlyList<DeliveryOutcome> outcomes, CancellationToken cancellationToken);

    /// <summary>
    /// Extends the leases of <paramref name="ids"/> that <paramref name="owner"/> still holds to <paramref name="until"/>, so a long
    /// send is not reaped. Returns how many were renewed (a lease already reaped is not: its completion will be fenced off).
    /// </summary>
    Task<int> RenewLeasesAsync(string owner, IReadOnlyList<long> ids, DateTimeOffset until, CancellationToken cancellationToken);

    /// <summary>Returns rows whose lease has expired to the queue (as retrying). Returns how many.</summary>
    Task<int> ReleaseExpiredLeasesAsync(DateTimeOffset now, CancellationToken cancellationToken);

    /// <summary>When the earliest queued or retrying notification is due, or null when none is waiting.</summary>
    Task<DateTimeOffset?> NextDueAsync(CancellationToken cancellationToken);

    Task<QueueSnapshot> SnapshotAsync(DateTimeOffset now, CancellationToken cancellationToken);

    /// <summary>State of one notification, for the API and tests.</summary>
    Task<NotificationRecord?> GetNotificationAsync(long id, CancellationToken cancellationToken);

    /// <summary>Every recorded attempt of a notification, oldest first.</summary>
    Task<IReadOnlyList<NotificationAttempt>> GetAttemptsAsync(long notificationId, CancellationToken cancellationToken);

    /// <summary>Stores a send request (bulk or single); its notifications are enqueued with its id as RequestId.</summary>
    Task SaveRequestAsync(NotificationRequestRecord request, CancellationToken cancellationToken);

    /// <summary>The tenant's send request, or null.</summary>
    Task<NotificationRequestRecord?> GetRequestAsync(string tenantId, string requestId, CancellationToken cancellationToken);

    /// <summary>How many of a request's notifications are in each state.</summary>
    Task<IReadOnlyDictionary<NotificationState, long>> GetRequestCountsAsync(string tenantId, string requestId, CancellationToken cancellationToken);

    /// <summary>A page of a request's notifications, by id.</summary>
    Task<IReadOnlyList<NotificationRecord>> GetRequestNotificationsAsync(string tenantId, string requestId, int offset, int limit, CancellationToken cancellationToken);

    /// <summary>Dead notifications (attempts exhausted), newest first; all tenants when <paramref name="tenantId"/> is null.</summary>
    Task<IReadOnlyList<NotificationRecord>> ListDeadAsync(string? tenantId, int limit, CancellationToken cancellationToken);

    /// <summary>Puts dead notifications back in the queue (attempts reset, due now); all of them when <paramref name="ids"/> is null. Returns how many.</summary>
    Task<int> RequeueDeadAsync(string? tenantId, IReadOnlyList<long>? ids, DateTimeOffset now, CancellationToken cancellationToken);

    /// <summary>Deletes dead notifications; all of them when <paramref name="ids"/> is null. Returns how many.</summary>
    Task<int> PurgeDeadAsync(string? tenantId, IReadOnlyList<long>? ids, CancellationToken cancellationToken);
}

/// <summary>How many notifications one claim may take from each lane.</summary>
public readonly record struct ClaimLimits(int Priority, int Standard)
{
    public int Total => Priority + Standard;
}

/// <summary>One send attempt as recorded.</summary>
public sealed record NotificationAttempt(long NotificationId, int Attempt, DateTimeOffset At, NotificationState Outcome, int Status, string? Reason);

/// <summary>A send request made through <c>POST /v1/notifications</c>.</summary>
public sealed record NotificationRequestRecord(string Id, string TenantId, Lane Lane, PushKind Kind, int TargetCount, DateTimeOffset CreatedAt, string CreatedBy);

/// <summary>A notification as stored, for reading.</summary>
public sealed record NotificationRecord(
    long Id,
    string TenantId,
    string? RegistrationId,
    Lane Lane,
    NotificationState State,
    int Attempts,
    DateTimeOffset CreatedAt,
    DateTimeOffset DueAt,
    int LastStatus,
    string? LastReason,
    DateTimeOffset? SentAt)
{
    /// <summary>The platform of the target (for per-target views).</summary>
    public Registrations.Platform Platform { get; init; }

    /// <summary>A fingerprint of the target token (never the token), when it is still stored.</summary>
    public string? TokenFingerprint { get; init; }
}
