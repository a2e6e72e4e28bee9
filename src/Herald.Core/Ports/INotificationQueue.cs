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

    /// <summary>Leases up to <paramref name="max"/> due notifications to <paramref name="owner"/>, priority lane first.</summary>
    Task<IReadOnlyList<ClaimedNotification>> ClaimAsync(string owner, int max, DateTimeOffset now, TimeSpan lease, CancellationToken cancellationToken);

    /// <summary>Records outcomes in one transaction; rows no longer leased to <paramref name="owner"/> are left alone.</summary>
    Task<int> CompleteAsync(string owner, IReadOnlyList<DeliveryOutcome> outcomes, CancellationToken cancellationToken);

    /// <summary>Returns rows whose lease has expired to the queue (as retrying). Returns how many.</summary>
    Task<int> ReleaseExpiredLeasesAsync(DateTimeOffset now, CancellationToken cancellationToken);

    /// <summary>When the earliest queued or retrying notification is due, or null when none is waiting.</summary>
    Task<DateTimeOffset?> NextDueAsync(CancellationToken cancellationToken);

    Task<QueueSnapshot> SnapshotAsync(DateTimeOffset now, CancellationToken cancellationToken);

    /// <summary>State of one notification, for the API and tests.</summary>
    Task<NotificationRecord?> GetNotificationAsync(long id, CancellationToken cancellationToken);
}

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
    DateTimeOffset? SentAt);
