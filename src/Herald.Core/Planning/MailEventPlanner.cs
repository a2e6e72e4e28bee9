using Herald.Core.Events;
using Herald.Core.Notifications;
using Herald.Core.Ports;
using Herald.Core.Registrations;
using Microsoft.Extensions.Options;

namespace Herald.Core.Planning;

/// <summary>Options of the planner.</summary>
public sealed class PlannerOptions
{
    /// <summary>How long a mailbox push may wait for delivery before it is stale and expires.</summary>
    public TimeSpan MailTimeToLive { get; set; } = TimeSpan.FromHours(24);

    /// <summary>The APNs collapse id of mailbox pushes, so a device shows one mail notification, not a pile.</summary>
    public string CollapseId { get; set; } = "herald-mail";
}

/// <summary>
/// Turns mailbox events into at most one pending notification per registration.
/// Badge = the inbox unread count: the latest inbox folder ModifiedEvent's UnreadCount when Exchange
/// gives one, else the last known count plus the new-mail events since. Events are applied in the order
/// the source sent them, which is the mailbox's order.
/// </summary>
public sealed class MailEventPlanner(IOptions<PlannerOptions> options, IPreviewCache? previews = null) : IIngestPlanner
{
    private readonly PlannerOptions _options = options.Value;

    /// <summary>The data key of a sync wake-up (events may have been missed; the app should sync).</summary>
    public const string SyncDataKey = "herald-sync";

    /// <summary>The coalescing key of mailbox pushes: one pending per registration.</summary>
    public static string CoalesceKeyFor(string registrationId) => "reg:" + registrationId;

    /// <summary>
    /// The coalescing key of sync wake-ups: apart from mail pushes, because a badge-only push that replaced a pending
    /// wake-up would not wake the app, and the events it may have missed would stay unsynced.
    /// </summary>
    public static string SyncCoalesceKeyFor(string registrationId) => "sync:" + registrationId;

    /// <inheritdoc />
    public IngestDecision Plan(Registration registration, IngestItem item)
    {
        ArgumentNullException.ThrowIfNull(registration);
        ArgumentNullException.ThrowIfNull(item);

        if (registration.WantsUnsubscribe)
        {
            return new IngestDecision(IngestVerdict.Unsubscribe, false, null);
        }

        var changed = false;
        var newMail = false;
        var missed = false;
        var unread = registration.UnreadCount;
        var applied = 0;

        foreach (var notification in item.Notifications)
        {
            if (!BindSubscription(registration, notification.SubscriptionId, ref changed))
            {
                continue; // a replaced subscription still calling: ignore its events
            }

            applied++;
            foreach (var e in notification.Events)
            {
                switch (e.Kind)
                {
                    case MailEventKind.NewMail:
                        if (e.ParentFolderId is { } parent && registration.InboxFolderId != parent)
                        {
                            registration.InboxFolderId = parent;
                            changed = true;
                        }

                        unread = (unread ?? 0) + 1;
                        newMail = true;
                        break;

                    case MailEventKind.Missed:
                        missed = true;
                        break;

                    case MailEventKind.Modified when e.IsFolderEvent && e.UnreadCount is { } count:
                        // Until the inbox id is learned from a new-mail event, trust any folder count:
                        // push subscriptions are made on the inbox first.
                        if (registration.InboxFolderId is null || e.FolderId == registration.InboxFolderId)
                        {
                            unread = Math.Max(0, count);
                        }

                        break;
                }
            }
        }

        if (applied == 0 && item.Notifications.Count > 0)
        {
            // Every notification came from a subscription this registration has replaced.
            return new IngestDecision(IngestVerdict.Unsubscribe, changed, null);
        }

        registration.LastEventAt = item.ReceivedAt;
        changed = true;

        var badgeChanged = unread != registration.UnreadCount;
        registration.UnreadCount = unread;

        if (!newMail && !badgeChanged && !missed)
        {
            return new IngestDecision(IngestVerdict.Accepted, changed, null);
        }

        var preview = newMail && registration.Style.WantsPreview() && item.Preview is not null && previews is not null
            && (registration.Style != NotificationStyle.PreviewEncrypted || registration.EncryptionKey is not null);
        if (preview)
        {
            previews!.Put(registration.Id, item.Preview!, item.ReceivedAt + _options.MailTimeToLive);
        }

        var content = newMail || badgeChanged
            ? BuildContent(registration, newMail, unread ?? 0, preview)
            : SyncContent;
        var notificationToQueue = new NewNotification
        {
            TenantId = registration.TenantId,
            RegistrationId = registration.Id,
            Lane = Lane.Priority,
            Platform = registration.Platform,
            Token = registration.Token,
            Topic = registration.Topic,
            Environment = registration.Environment,
            Content = content,
            CoalesceKey = ReferenceEquals(content, SyncContent) ? SyncCoalesceKeyFor(registration.Id) : CoalesceKeyFor(registration.Id),
            CollapseId = _options.CollapseId,
            ExpiresAt = item.ReceivedAt + _options.MailTimeToLive,
            EventAt = item.ReceivedAt,
        };
        return new IngestDecision(IngestVerdict.Accepted, changed, notificationToQueue);
    }

    private static bool BindSubscription(Registration registration, string? subscriptionId, ref bool changed)
    {
        if (subscriptionId is null || subscriptionId == registration.SubscriptionId)
        {
            return true;
        }

        if (registration.SubscriptionId is null)
        {
            registration.SubscriptionId = subscriptionId; // first contact binds the subscription
            changed = true;
            return true;
        }

        if (subscriptionId == registration.PreviousSubscriptionId)
        {
            return false;
        }

        // A subscription we have not seen is newer than the bound one (the device recreated it):
        // adopt it, and answer the old one Unsubscribe from now on.
        registration.PreviousSubscriptionId = registration.SubscriptionId;
        registration.SubscriptionId = subscriptionId;
        changed = true;
        return true;
    }

    private static readonly NotificationContent SyncContent = new()
    {
        Kind = PushKind.Background,
        Data = new Dictionary<string, string>(StringComparer.Ordinal) { [SyncDataKey] = "1" },
    };

    private static NotificationContent BuildContent(Registration registration, bool newMail, int badge, bool preview)
    {
        var alert = newMail && registration.Style.ShowsAlert();
        return alert
            ? new NotificationContent
            {
                Kind = PushKind.Alert,
                Body = Localization.NewMail(registration.Locale),
                Badge = badge,
                Sound = "default",
                UsePreview = preview,
                EncryptTo = preview && registration.Style == NotificationStyle.PreviewEncrypted ? registration.EncryptionKey : null,
            }
            : new NotificationContent { Kind = PushKind.Badge, Badge = badge };
    }
}

/// <summary>How a newer notification replaces an unsent older one with the same coalescing key.</summary>
public static class Coalescing
{
    /// <summary>
    /// The newer content wins, except that a badge-only update or a sync wake-up never downgrades a pending alert:
    /// the alert stays, carrying the newer badge.
    /// </summary>
    public static NotificationContent Merge(NotificationContent older, NotificationContent newer)
    {
        ArgumentNullException.ThrowIfNull(older);
        ArgumentNullException.ThrowIfNull(newer);
        return (older.Kind, newer.Kind) switch
        {
            (PushKind.Alert, PushKind.Badge) => older with { Badge = newer.Badge },
            (PushKind.Alert, PushKind.Background) => older, // the alert makes the app sync as well
            _ => newer,
        };
    }
}
