using System.Collections.Concurrent;
using Herald.Core.Connectors;
using Herald.Core.Ports;
using Herald.Core.Registrations;
using Herald.Core.Security;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Herald.Sources.Graph;

/// <summary>One Graph client per connector, rebuilt when the connector's settings change (tokens cached per client).</summary>
public sealed class GraphClientPool(HttpClient http, TimeProvider time)
{
    private readonly ConcurrentDictionary<(string Tenant, string Name), (GraphEndpoint Endpoint, GraphClient Client)> _clients = new();

    /// <summary>The client of a graph connector.</summary>
    /// <exception cref="InvalidOperationException">The connector lacks a base URL or OAuth2 client credentials.</exception>
    public GraphClient Get(Connector connector)
    {
        ArgumentNullException.ThrowIfNull(connector);
        var auth = connector.Config.Auth;
        if (auth is null || !auth.IsOAuth2 || string.IsNullOrEmpty(auth.ClientId) || string.IsNullOrEmpty(auth.ClientSecret) || string.IsNullOrEmpty(auth.TokenUrl))
        {
            throw new InvalidOperationException($"Graph connector {connector.Name} needs auth type oauth2 with tokenUrl, clientId and clientSecret.");
        }

        var endpoint = new GraphEndpoint(
            string.IsNullOrEmpty(connector.Config.BaseUrl) ? "https://graph.microsoft.com" : connector.Config.BaseUrl,
            auth.TokenUrl,
            auth.ClientId,
            auth.ClientSecret,
            string.IsNullOrEmpty(auth.Scope) ? GraphEndpoint.DefaultScope : auth.Scope);
        var key = (connector.TenantId, connector.Name);
        if (_clients.TryGetValue(key, out var entry) && entry.Endpoint == endpoint)
        {
            return entry.Client;
        }

        var client = new GraphClient(endpoint, http, time);
        _clients[key] = (endpoint, client);
        return client;
    }
}

/// <summary>
/// Keeps one Graph subscription per mailbox of each graph connector's registrations: creates missing ones (with a random
/// clientState, stored only as its keyed hash), renews each before the <c>expirationDateTime</c> Graph returned (a quarter
/// of the granted lifetime early, between 30 seconds and an hour), acts on lifecycle requests (reauthorize by renewing;
/// recreate a removed one), and deletes subscriptions of mailboxes nobody is registered for any more. Each subscription is
/// leased before it is touched, so nodes of a farm split the work.
/// </summary>
public sealed partial class GraphSubscriptionManager(
    IGraphSubscriptionStore store,
    IMailboxDirectory directory,
    ConnectorService connectors,
    SecretBox secrets,
    GraphClientPool clients,
    IOptions<GraphSourceOptions> options,
    TimeProvider time,
    ILogger<GraphSubscriptionManager> logger,
    ConnectorHealth? health = null)
{
    private const string Kind = "graph";

    /// <summary>The keyed-hash purpose of clientState values.</summary>
    public const string ClientStatePurpose = "graph-client-state";

    /// <summary>The id prefix of a subscription whose create call has not returned yet.</summary>
    public const string ProvisionalPrefix = "provisional-";

    /// <summary>The sealing purpose of mailbox addresses (as registrations use).</summary>
    public const string MailboxPurpose = "mailbox";

    private readonly GraphSourceOptions _options = options.Value;

    // Consecutive failed renewals or reauthorizations per subscription id (this node's view; a restart starts over).
    private readonly ConcurrentDictionary<string, int> _failures = new(StringComparer.Ordinal);

    /// <summary>The externally reachable base URL of Herald (notification URLs are built on it).</summary>
    public string PublicBaseUrl { get; set; } = "http://127.0.0.1:8080";

    /// <summary>This node's name, the owner of the leases it takes.</summary>
    public string NodeName { get; set; } = Environment.MachineName;

    /// <summary>The notification URL of a connector.</summary>
    public string NotificationUrl(string tenantId, string connector) => PublicBaseUrl.TrimEnd('/') + "/graph/notify/" + Uri.EscapeDataString(tenantId) + "/" + Uri.EscapeDataString(connector);

    /// <summary>The lifecycle notification URL of a connector.</summary>
    public string LifecycleUrl(string tenantId, string connector) => PublicBaseUrl.TrimEnd('/') + "/graph/lifecycle/" + Uri.EscapeDataString(tenantId) + "/" + Uri.EscapeDataString(connector);

    /// <summary>How soon a subscription whose renewal or reauthorization failed is tried again the first time.</summary>
    public static readonly TimeSpan RetryAfterFailure = TimeSpan.FromSeconds(5);

    /// <summary>The longest wait between retries of a subscription that keeps failing (the wait doubles from <see cref="RetryAfterFailure"/>).</summary>
    public static readonly TimeSpan MaxRetryAfterFailure = TimeSpan.FromMinutes(5);

    /// <summary>The wait after <paramref name="failures"/> consecutive failures: 5 s, 10 s, 20 s … up to <see cref="MaxRetryAfterFailure"/>.</summary>
    public static TimeSpan RetryDelay(int failures)
    {
        var doublings = Math.Clamp(failures - 1, 0, 16);
        var ticks = RetryAfterFailure.Ticks << doublings;
        return ticks >= MaxRetryAfterFailure.Ticks ? MaxRetryAfterFailure : TimeSpan.FromTicks(ticks);
    }

    /// <summary>When a subscription is due for renewal: a quarter of its granted lifetime before it expires (30 s – 1 h).</summary>
    public static DateTimeOffset RenewAt(GraphSubscription subscription)
    {
        ArgumentNullException.ThrowIfNull(subscription);
        var lifetime = subscription.ExpiresAt - subscription.RenewedAt;
        var margin = TimeSpan.FromTicks(Math.Clamp(lifetime.Ticks / 4, TimeSpan.FromSeconds(30).Ticks, TimeSpan.FromHours(1).Ticks));
        return subscription.ExpiresAt - margin;
    }

    /// <summary>Reconciles every graph connector; returns when the next renewal is due (at most one reconcile interval away).</summary>
    public async Task<DateTimeOffset> RunOnceAsync(CancellationToken cancellationToken)
    {
        var next = time.GetUtcNow() + _options.ReconcileInterval;
        foreach (var connector in await connectors.ListAsync(null, cancellationToken).ConfigureAwait(false))
        {
            if (connector.Kind != ConnectorKind.Graph)
            {
                continue;
            }

            try
            {
                var due = await ReconcileAsync(connector, cancellationToken).ConfigureAwait(false);
                health?.ReportSuccess(connector.TenantId, connector.Name, "config");
                health?.ReportSuccess(connector.TenantId, connector.Name, "reconcile");
                if (due < next)
                {
                    next = due;
                }
            }
            catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
            {
                Log.ReconcileFailed(logger, connector.Name, e);
                var graph = e as GraphException;
                health?.ReportFailure(connector.TenantId, connector.Name, Kind, graph is not null ? Operation(graph, "reconcile") : e is InvalidOperationException ? "config" : "reconcile", time.GetUtcNow(), graph?.Status ?? 0, graph?.Code);
            }
        }

        return next;
    }

    /// <summary>Brings one connector's subscriptions in line with its registrations; returns the earliest renewal due.</summary>
    public Task<DateTimeOffset> ReconcileAsync(Connector connector, CancellationToken cancellationToken)
        => ReconcileAsync(connector, null, cancellationToken);

    /// <summary>
    /// Like <see cref="ReconcileAsync(Connector, CancellationToken)"/>, for the mailboxes the caller owns through farm
    /// work leases: <paramref name="owner"/> gives, for a mailbox's keyed hash, the token that is cancelled when the caller
    /// loses it (its lease's <c>Lost</c>), or null when it is another node's. Only owned mailboxes are created, renewed,
    /// recreated or deleted, each action under that token (fencing: nothing is done for a mailbox after its lease is lost);
    /// the per-row leases are not used.
    /// </summary>
    public async Task<DateTimeOffset> ReconcileAsync(Connector connector, Func<byte[], CancellationToken?>? owner, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(connector);
        var client = clients.Get(connector);
        var now = time.GetUtcNow();
        var next = DateTimeOffset.MaxValue;

        var wanted = new Dictionary<string, Registration>(StringComparer.Ordinal);
        foreach (var registration in await directory.ListByConnectorAsync(connector.TenantId, connector.Name, cancellationToken).ConfigureAwait(false))
        {
            if (registration.Source == SourceKind.Graph && registration.MailboxHash is { } hash && registration.SealedMailbox is not null
                && (owner is null || owner(hash) is { IsCancellationRequested: false }))
            {
                wanted.TryAdd(Convert.ToHexString(hash), registration);
            }
        }

        var covered = new HashSet<string>(StringComparer.Ordinal);
        foreach (var subscription in await store.ListGraphSubscriptionsAsync(connector.TenantId, connector.Name, cancellationToken).ConfigureAwait(false))
        {
            var key = Convert.ToHexString(subscription.MailboxHash);
            if (owner is not null)
            {
                if (owner(subscription.MailboxHash) is not { } fence || fence.IsCancellationRequested)
                {
                    covered.Add(key); // another node's share
                    continue;
                }

                using var fenced = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, fence);
                var kept = await KeepAsync(connector, client, subscription, key, wanted, covered, now, fenced.Token).ConfigureAwait(false);
                if (kept is { } keptDue && keptDue < next)
                {
                    next = keptDue;
                }

                continue;
            }

            if (!await store.TryLeaseGraphSubscriptionAsync(subscription.Id, NodeName, now, now + _options.LeaseDuration, cancellationToken).ConfigureAwait(false))
            {
                covered.Add(key); // another node manages it
                continue;
            }

            if (!wanted.ContainsKey(key) || !covered.Add(key))
            {
                // Nobody is registered for the mailbox any more, or it is a second subscription of one mailbox.
                await DeleteAsync(client, subscription, cancellationToken).ConfigureAwait(false);
                continue;
            }

            var current = await MaintainAsync(connector, client, subscription, now, cancellationToken).ConfigureAwait(false);
            if (current is null)
            {
                covered.Remove(key); // gone: created again below
                continue;
            }

            var due = NextAttempt(current, now);
            if (due < next)
            {
                next = due;
            }
        }

        foreach (var (key, registration) in wanted)
        {
            if (covered.Contains(key))
            {
                continue;
            }

            try
            {
                using var fenced = owner?.Invoke(registration.MailboxHash!) is { } fence ? CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, fence) : null;
                var created = await CreateAsync(connector, client, registration.MailboxHash!, registration.SealedMailbox!, fenced?.Token ?? cancellationToken).ConfigureAwait(false);
                health?.ReportSuccess(connector.TenantId, connector.Name, "token");
                health?.ReportSuccess(connector.TenantId, connector.Name, "create");
                var due = RenewAt(created);
                if (due < next)
                {
                    next = due;
                }
            }
            catch (GraphException e)
            {
                Log.CreateFailed(logger, connector.Name, e.Status, e.Code, e);
                health?.ReportFailure(connector.TenantId, connector.Name, Kind, Operation(e, "create"), time.GetUtcNow(), e.Status, e.Code);
            }
        }

        return next;
    }

    /// <summary>One owned subscription: deleted when unwanted or a second one, else maintained. Returns its renewal time, or null.</summary>
    private async Task<DateTimeOffset?> KeepAsync(
        Connector connector, GraphClient client, GraphSubscription subscription, string key, Dictionary<string, Registration> wanted, HashSet<string> covered, DateTimeOffset now, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        if (!wanted.ContainsKey(key) || !covered.Add(key))
        {
            await DeleteAsync(client, subscription, cancellationToken).ConfigureAwait(false);
            return null;
        }

        var current = await MaintainAsync(connector, client, subscription, now, cancellationToken).ConfigureAwait(false);
        if (current is null)
        {
            covered.Remove(key); // gone: created again
            return null;
        }

        return NextAttempt(current, now);
    }

    /// <summary>
    /// When a maintained subscription needs attention next: its renewal time, or, when its renewal or reauthorization just
    /// failed (Graph refused or did not answer), after <see cref="RetryDelay"/> of its consecutive failures: not at the next
    /// interval (a reauthorization would wait up to ReconcileInterval), not at once (a due subscription would otherwise be
    /// retried in a tight loop against a failing or throttling Graph), and less often the longer Graph keeps refusing. A retry
    /// is never put off past the subscription's expiry (then it is recreated).
    /// </summary>
    private DateTimeOffset NextAttempt(GraphSubscription current, DateTimeOffset now)
    {
        var due = RenewAt(current);
        if (current.PendingAction == GraphSubscriptionAction.None && due > now)
        {
            _failures.TryRemove(current.Id, out _);
            return due;
        }

        var failures = _failures.AddOrUpdate(current.Id, 1, static (_, n) => n < 64 ? n + 1 : n);
        var at = now + RetryDelay(failures);
        var last = current.ExpiresAt - RetryAfterFailure;
        return at > last && last > now ? last : at;
    }

    /// <summary>Renews, reauthorizes or recreates one subscription as needed; null when it is gone and must be created anew.</summary>
    private async Task<GraphSubscription?> MaintainAsync(Connector connector, GraphClient client, GraphSubscription subscription, DateTimeOffset now, CancellationToken cancellationToken)
    {
        if (subscription.Id.StartsWith(ProvisionalPrefix, StringComparison.Ordinal))
        {
            // Left by a create that never returned (the node stopped): forget it; a new one is created.
            await store.DeleteGraphSubscriptionAsync(subscription.Id, cancellationToken).ConfigureAwait(false);
            return null;
        }

        if (subscription.PendingAction == GraphSubscriptionAction.Recreate || subscription.ExpiresAt <= now)
        {
            Log.Recreating(logger, connector.Name, subscription.PendingAction == GraphSubscriptionAction.Recreate ? "subscriptionRemoved" : "expired");
            await DeleteAsync(client, subscription, cancellationToken).ConfigureAwait(false);
            return null;
        }

        if (subscription.PendingAction != GraphSubscriptionAction.Reauthorize && now < RenewAt(subscription))
        {
            return subscription;
        }

        try
        {
            // Renewing also reauthorizes (Graph accepts either after reauthorizationRequired).
            var renewed = await client.RenewSubscriptionAsync(subscription.Id, now + _options.RequestedLifetime, cancellationToken).ConfigureAwait(false);
            var updated = subscription with
            {
                ExpiresAt = renewed.ExpirationDateTime,
                RenewedAt = now,
                PendingAction = GraphSubscriptionAction.None,
            };
            await store.SaveGraphSubscriptionAsync(updated, cancellationToken).ConfigureAwait(false);
            Log.Renewed(logger, connector.Name, renewed.ExpirationDateTime);
            health?.ReportSuccess(connector.TenantId, connector.Name, "token");
            health?.ReportSuccess(connector.TenantId, connector.Name, "renew");
            return updated;
        }
        catch (GraphException e) when (e.IsNotFound)
        {
            Log.Recreating(logger, connector.Name, "unknown to Graph");
            await store.DeleteGraphSubscriptionAsync(subscription.Id, cancellationToken).ConfigureAwait(false);
            return null;
        }
        catch (GraphException e)
        {
            Log.RenewFailed(logger, connector.Name, e.Status, e.Code, e);
            health?.ReportFailure(connector.TenantId, connector.Name, Kind, Operation(e, "renew"), time.GetUtcNow(), e.Status, e.Code);
            return subscription; // tried again at the next pass; it is still valid until it expires
        }
    }

    private async Task<GraphSubscription> CreateAsync(Connector connector, GraphClient client, byte[] mailboxHash, string sealedMailbox, CancellationToken cancellationToken)
    {
        var mailbox = secrets.Open(sealedMailbox, MailboxPurpose);
        var clientState = Secrets.NewKey("hcs_", 32);
        var now = time.GetUtcNow();

        // Saved under a provisional id first: Graph may notify (or send a lifecycle event) before its create call returns,
        // and the callback endpoint finds the subscription by its clientState until the real id is known.
        var provisional = new GraphSubscription
        {
            Id = ProvisionalPrefix + Guid.NewGuid().ToString("N"),
            TenantId = connector.TenantId,
            Connector = connector.Name,
            MailboxHash = mailboxHash,
            SealedMailbox = sealedMailbox,
            ClientStateHash = secrets.KeyedHash(clientState, ClientStatePurpose),
            ExpiresAt = now + _options.LeaseDuration,
            CreatedAt = now,
            RenewedAt = now,
            LeaseOwner = NodeName,
            LeaseUntil = now + _options.LeaseDuration,
        };
        await store.SaveGraphSubscriptionAsync(provisional, cancellationToken).ConfigureAwait(false);

        GraphSubscriptionInfo info;
        try
        {
            info = await client.CreateSubscriptionAsync(
                "/users/" + Uri.EscapeDataString(mailbox) + "/mailFolders('inbox')/messages",
                _options.ChangeType,
                NotificationUrl(connector.TenantId, connector.Name),
                LifecycleUrl(connector.TenantId, connector.Name),
                clientState,
                now + _options.RequestedLifetime,
                cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            await store.DeleteGraphSubscriptionAsync(provisional.Id, CancellationToken.None).ConfigureAwait(false);
            throw;
        }

        var subscription = provisional with { Id = info.Id, ExpiresAt = info.ExpirationDateTime };
        if (!await store.ConfirmGraphSubscriptionAsync(provisional.Id, info.Id, info.ExpirationDateTime, cancellationToken).ConfigureAwait(false))
        {
            await store.SaveGraphSubscriptionAsync(subscription, cancellationToken).ConfigureAwait(false);
        }

        Log.Created(logger, connector.Name, new RedactedToken(mailbox), info.ExpirationDateTime);
        return subscription;
    }

    /// <summary>What failed, for <see cref="ConnectorHealth"/>: the token endpoint, or Graph's answer to <paramref name="operation"/>.</summary>
    private static string Operation(GraphException e, string operation) => e.FromTokenEndpoint ? "token" : operation;

    private async Task DeleteAsync(GraphClient client, GraphSubscription subscription, CancellationToken cancellationToken)
    {
        _failures.TryRemove(subscription.Id, out _);
        try
        {
            await client.DeleteSubscriptionAsync(subscription.Id, cancellationToken).ConfigureAwait(false);
        }
        catch (GraphException e)
        {
            // It expires by itself; Herald forgets it either way and ignores its notifications.
            Log.DeleteFailed(logger, subscription.Connector, e.Status, e.Code);
        }

        await store.DeleteGraphSubscriptionAsync(subscription.Id, cancellationToken).ConfigureAwait(false);
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 3301, Level = LogLevel.Information, Message = "Graph connector {Connector}: subscription created for {Mailbox}, expires {Expires:o}")]
        public static partial void Created(ILogger logger, string connector, RedactedToken mailbox, DateTimeOffset expires);

        [LoggerMessage(EventId = 3302, Level = LogLevel.Debug, Message = "Graph connector {Connector}: subscription renewed until {Expires:o}")]
        public static partial void Renewed(ILogger logger, string connector, DateTimeOffset expires);

        [LoggerMessage(EventId = 3303, Level = LogLevel.Information, Message = "Graph connector {Connector}: recreating a subscription ({Reason})")]
        public static partial void Recreating(ILogger logger, string connector, string reason);

        [LoggerMessage(EventId = 3304, Level = LogLevel.Warning, Message = "Graph connector {Connector}: creating a subscription failed ({Status} {Code})")]
        public static partial void CreateFailed(ILogger logger, string connector, int status, string? code, Exception exception);

        [LoggerMessage(EventId = 3305, Level = LogLevel.Warning, Message = "Graph connector {Connector}: renewing a subscription failed ({Status} {Code})")]
        public static partial void RenewFailed(ILogger logger, string connector, int status, string? code, Exception exception);

        [LoggerMessage(EventId = 3306, Level = LogLevel.Information, Message = "Graph connector {Connector}: deleting a subscription failed ({Status} {Code}); forgotten anyway")]
        public static partial void DeleteFailed(ILogger logger, string connector, int status, string? code);

        [LoggerMessage(EventId = 3307, Level = LogLevel.Error, Message = "Graph connector {Connector}: reconcile failed")]
        public static partial void ReconcileFailed(ILogger logger, string connector, Exception exception);
    }
}
