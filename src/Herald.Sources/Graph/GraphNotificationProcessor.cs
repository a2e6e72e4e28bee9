using Herald.Core.Connectors;
using Herald.Core.Events;
using Herald.Core.Pipeline;
using Herald.Core.Ports;
using Herald.Core.Registrations;
using Herald.Core.Security;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Herald.Sources.Graph;

/// <summary>
/// Turns stored Graph change notifications into mailbox events: claims a batch, groups it by mailbox, asks Graph for the
/// inbox unread count once per mailbox (a burst of 50 notifications costs one lookup), fetches subject and sender of the
/// newest new message only when a registration of the mailbox has style preview (transient, never stored), hands the
/// events to ingest, and marks the notifications done only once ingest returned. A failed ingest leaves them claimed
/// until the lease runs out, then they are tried again.
/// </summary>
public sealed partial class GraphNotificationProcessor(
    IGraphSubscriptionStore store,
    IMailboxDirectory directory,
    ConnectorService connectors,
    SecretBox secrets,
    GraphClientPool clients,
    IngestService ingest,
    IOptions<GraphSourceOptions> options,
    TimeProvider time,
    ILogger<GraphNotificationProcessor> logger)
{
    /// <summary>The folder id Herald gives the inbox in Graph mailbox events.</summary>
    public const string InboxId = "inbox";

    private readonly GraphSourceOptions _options = options.Value;

    /// <summary>This node's name, the owner of its claims.</summary>
    public string NodeName { get; set; } = Environment.MachineName;

    /// <summary>Processes one batch; returns how many notifications were claimed (0 = nothing waiting).</summary>
    public async Task<int> RunOnceAsync(CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow();
        var claimed = await store.ClaimGraphNotificationsAsync(NodeName, now, now + _options.LeaseDuration, _options.BatchSize, cancellationToken).ConfigureAwait(false);
        if (claimed.Count == 0)
        {
            return 0;
        }

        var done = new List<long>(claimed.Count);
        var groups = new Dictionary<string, (GraphSubscription Subscription, List<GraphPendingNotification> Items)>(StringComparer.Ordinal);
        var subscriptions = new Dictionary<string, GraphSubscription?>(StringComparer.Ordinal);
        foreach (var n in claimed)
        {
            if (!subscriptions.TryGetValue(n.SubscriptionId, out var subscription))
            {
                subscription = await store.GetGraphSubscriptionAsync(n.SubscriptionId, cancellationToken).ConfigureAwait(false);
                subscriptions[n.SubscriptionId] = subscription;
            }

            if (subscription is null)
            {
                // Accepted for a subscription whose create call had not returned yet (matched by clientState): its row gets
                // Graph's id in a moment, so a young one is left claimed and tried again after the lease. An old one belongs
                // to a deleted subscription: nobody wants it.
                if (n.ReceivedAt < now - TimeSpan.FromMinutes(1))
                {
                    done.Add(n.Sequence);
                }

                continue;
            }

            var key = subscription.TenantId + "\n" + subscription.Connector + "\n" + Convert.ToHexString(subscription.MailboxHash);
            if (!groups.TryGetValue(key, out var group))
            {
                group = (subscription, []);
                groups[key] = group;
            }

            group.Items.Add(n);
        }

        var previewWanted = new Dictionary<string, HashSet<string>>(StringComparer.Ordinal);
        foreach (var (subscription, items) in groups.Values)
        {
            try
            {
                await IngestMailboxAsync(subscription, items, previewWanted, cancellationToken).ConfigureAwait(false);
                done.AddRange(items.Select(i => i.Sequence));
            }
            catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
            {
                Log.IngestFailed(logger, subscription.Connector, items.Count, e);
            }
        }

        if (done.Count > 0)
        {
            await store.CompleteGraphNotificationsAsync(done, time.GetUtcNow(), cancellationToken).ConfigureAwait(false);
        }

        return claimed.Count;
    }

    private async Task IngestMailboxAsync(GraphSubscription subscription, List<GraphPendingNotification> items, Dictionary<string, HashSet<string>> previewWanted, CancellationToken cancellationToken)
    {
        var connector = await connectors.GetAsync(subscription.TenantId, subscription.Connector, cancellationToken).ConfigureAwait(false);
        if (connector is null || connector.Kind != ConnectorKind.Graph)
        {
            return; // the connector was deleted; its notifications are dropped
        }

        var client = clients.Get(connector);
        var mailbox = secrets.Open(subscription.SealedMailbox, GraphSubscriptionManager.MailboxPurpose);

        int? unread = null;
        try
        {
            unread = await client.GetInboxUnreadCountAsync(mailbox, cancellationToken).ConfigureAwait(false);
        }
        catch (GraphException e)
        {
            // The planner counts new mail on the last known badge instead.
            Log.BadgeLookupFailed(logger, connector.Name, e.Status, e.Code);
        }

        var events = new List<MailEvent>();
        string? newest = null;
        foreach (var n in items)
        {
            if (n.Kind == GraphChangeKind.Created)
            {
                events.Add(new MailEvent { Kind = MailEventKind.NewMail, ItemId = n.MessageId, ParentFolderId = InboxId, TimeStamp = n.ReceivedAt });
                newest = n.MessageId ?? newest;
            }
        }

        if (unread is { } count)
        {
            events.Add(new MailEvent { Kind = MailEventKind.Modified, FolderId = InboxId, UnreadCount = count });
        }

        if (events.Count == 0)
        {
            return;
        }

        MailPreview? preview = null;
        if (newest is not null && await WantsPreviewAsync(subscription, previewWanted, cancellationToken).ConfigureAwait(false))
        {
            try
            {
                preview = await client.GetMessagePreviewAsync(mailbox, newest, cancellationToken).ConfigureAwait(false);
            }
            catch (GraphException e)
            {
                Log.PreviewLookupFailed(logger, connector.Name, e.Status, e.Code); // the generic alert is shown
            }
        }

        var item = new IngestItem
        {
            Route = IngestRoute.ForMailbox(subscription.TenantId, subscription.Connector, subscription.MailboxHash),
            Notifications = [new MailboxNotification { Events = events }],
            ReceivedAt = items[^1].ReceivedAt,
            Source = SourceKind.Graph,
            Preview = preview,
        };
        await ingest.IngestAsync(item, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Whether any registration of the subscription's mailbox has style preview (one directory read per connector per batch).</summary>
    private async Task<bool> WantsPreviewAsync(GraphSubscription subscription, Dictionary<string, HashSet<string>> cache, CancellationToken cancellationToken)
    {
        var key = subscription.TenantId + "\n" + subscription.Connector;
        if (!cache.TryGetValue(key, out var hashes))
        {
            hashes = new HashSet<string>(StringComparer.Ordinal);
            foreach (var r in await directory.ListByConnectorAsync(subscription.TenantId, subscription.Connector, cancellationToken).ConfigureAwait(false))
            {
                if (r.Style.WantsPreview() && r.MailboxHash is { } h)
                {
                    hashes.Add(Convert.ToHexString(h));
                }
            }

            cache[key] = hashes;
        }

        return hashes.Contains(Convert.ToHexString(subscription.MailboxHash));
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 3311, Level = LogLevel.Error, Message = "Graph connector {Connector}: {Count} notifications could not be stored; tried again after the lease")]
        public static partial void IngestFailed(ILogger logger, string connector, int count, Exception exception);

        [LoggerMessage(EventId = 3312, Level = LogLevel.Warning, Message = "Graph connector {Connector}: the inbox unread count could not be read ({Status} {Code})")]
        public static partial void BadgeLookupFailed(ILogger logger, string connector, int status, string? code);

        [LoggerMessage(EventId = 3313, Level = LogLevel.Warning, Message = "Graph connector {Connector}: the message preview could not be read ({Status} {Code})")]
        public static partial void PreviewLookupFailed(ILogger logger, string connector, int status, string? code);
    }
}
