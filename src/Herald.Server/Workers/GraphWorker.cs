using Herald.Core.Connectors;
using Herald.Core.Farm;
using Herald.Core.Pipeline;
using Herald.Core.Ports;
using Herald.Core.Registrations;
using Herald.Server.Endpoints;
using Herald.Server.Hosting;
using Herald.Sources.Graph;
using Herald.Storage;
using Microsoft.Extensions.Options;

namespace Herald.Server.Workers;

/// <summary>Wakes the Graph worker: new notifications to process, or subscriptions to reconcile (lifecycle, connector change).</summary>
internal sealed class GraphWake : IDisposable
{
    private readonly AsyncSignal _signal = new();
    private volatile bool _reconcile;

    /// <summary>Stored notifications are waiting.</summary>
    public void Notifications() => _signal.Set();

    /// <summary>Subscriptions need attention now rather than at the next interval.</summary>
    public void Reconcile()
    {
        _reconcile = true;
        _signal.Set();
    }

    /// <summary>Whether a reconcile was asked for since the last call (and clears the request).</summary>
    public bool TakeReconcile()
    {
        var requested = _reconcile;
        _reconcile = false;
        return requested;
    }

    public Task<bool> WaitAsync(TimeSpan timeout, TimeProvider time, CancellationToken cancellationToken) => _signal.WaitAsync(timeout, time, cancellationToken);

    public void Dispose() => _signal.Dispose();
}

/// <summary>
/// Runs the Graph source on this node: processes stored change notifications (badge lookups, ingest) as they arrive and
/// reconciles subscriptions with registrations (create, renew before expiry, lifecycle requests, delete), at the latest
/// every <see cref="GraphSourceOptions.ReconcileInterval"/> and whenever a renewal falls due. Starts after the server
/// listens, so notification URLs carry the real address. Idle on a store without Graph support.
/// </summary>
/// <remarks>
/// Ownership: each graph connector's mailboxes fall into <see cref="Shares"/> shares by their keyed hash, and each share
/// is a farm work lease (<c>graph-renewals:{tenant}:{connector}#{n}</c>) spread over the live nodes by
/// <see cref="WorkShares"/>, rebalanced every <see cref="FarmOptions.RenewInterval"/>. Only the holder of a mailbox's
/// share creates, renews, recreates or deletes its subscription, under the lease's lost token (fencing), so two nodes
/// never act on one subscription, and a dead node's shares are taken once their leases expire.
/// </remarks>
internal sealed partial class GraphWorker(
    IServiceProvider services,
    GraphWake wake,
    PublicUrls urls,
    NodeIdentity node,
    ConnectorService connectors,
    RegistrationChanges changes,
    WorkLeases leases,
    WorkShares shares,
    IHostApplicationLifetime lifetime,
    IOptions<GraphSourceOptions> options,
    IOptionsMonitor<FarmOptions> farm,
    TimeProvider time,
    ILogger<GraphWorker> logger) : BackgroundService
{
    /// <summary>The prefix of every Graph renewal share lease.</summary>
    public const string LeasePrefix = "graph-renewals:";

    /// <summary>Shares per connector: enough to spread a connector over a farm, few enough to renew cheaply.</summary>
    public const int Shares = 8;

    private readonly HashSet<string> _prefixes = new(StringComparer.Ordinal);
    private Dictionary<string, IReadOnlyDictionary<string, LeaseHandle>> _owned = new(StringComparer.Ordinal);

    /// <summary>The lease key prefix of a connector's shares.</summary>
    internal static string PrefixOf(string tenantId, string connector)
        => LeasePrefix + Uri.EscapeDataString(tenantId) + ":" + Uri.EscapeDataString(connector) + "#";

    /// <summary>The share of a mailbox (by its keyed hash, the same on every node).</summary>
    internal static int ShareOf(byte[] mailboxHash) => mailboxHash.Length == 0 ? 0 : mailboxHash[0] % Shares;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (services.GetRequiredService<IHeraldStore>() is not IGraphSubscriptionStore)
        {
            Log.Unsupported(logger);
            return;
        }

        try
        {
            await Task.Delay(Timeout.InfiniteTimeSpan, lifetime.ApplicationStarted).WaitAsync(stoppingToken);
        }
        catch (OperationCanceledException) when (lifetime.ApplicationStarted.IsCancellationRequested)
        {
            // Started: the server's address is known.
        }
        catch (OperationCanceledException)
        {
            return;
        }

        var manager = services.GetRequiredService<GraphSubscriptionManager>();
        var processor = services.GetRequiredService<GraphNotificationProcessor>();
        manager.NodeName = processor.NodeName = node.LeaseOwner;
        connectors.Changed += OnConnectorChanged;
        changes.Changed += OnRegistrationChanged;
        changes.AllChanged += OnAllRegistrationsChanged;
        leases.Lost += OnLeaseLost;
        try
        {
            var nextReconcile = DateTimeOffset.MinValue;
            var nextBalance = DateTimeOffset.MinValue;
            while (!stoppingToken.IsCancellationRequested)
            {
                var processed = 0;
                try
                {
                    processed = await processor.RunOnceAsync(stoppingToken);
                    var reconcile = wake.TakeReconcile() || time.GetUtcNow() >= nextReconcile;
                    if (reconcile || time.GetUtcNow() >= nextBalance)
                    {
                        // Shares taken since the last pass (a dead node's, a handed one) are reconciled at once.
                        nextBalance = time.GetUtcNow() + farm.CurrentValue.RenewInterval;
                        reconcile |= await BalanceAsync(stoppingToken);
                    }

                    if (reconcile)
                    {
                        manager.PublicBaseUrl = urls.Base;
                        nextReconcile = await ReconcileOwnedAsync(manager, stoppingToken);
                    }
                }
                catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
                {
                    return;
                }
                catch (Exception e)
                {
                    Log.PassFailed(logger, e);
                    nextReconcile = time.GetUtcNow() + TimeSpan.FromSeconds(5);
                    processed = 0;
                }

                if (processed >= options.Value.BatchSize)
                {
                    continue; // more waiting
                }

                var until = nextReconcile < nextBalance ? nextReconcile : nextBalance;
                var wait = until - time.GetUtcNow();
                if (wait > TimeSpan.Zero)
                {
                    await wake.WaitAsync(wait, time, stoppingToken);
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // Stopping.
        }
        finally
        {
            connectors.Changed -= OnConnectorChanged;
            changes.Changed -= OnRegistrationChanged;
            changes.AllChanged -= OnAllRegistrationsChanged;
            leases.Lost -= OnLeaseLost;
        }
    }

    /// <summary>Balances every graph connector's shares; true when this node took a share it did not hold.</summary>
    private async Task<bool> BalanceAsync(CancellationToken cancellationToken)
    {
        var owned = new Dictionary<string, IReadOnlyDictionary<string, LeaseHandle>>(StringComparer.Ordinal);
        var gained = false;
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var connector in await connectors.ListAsync(null, cancellationToken))
        {
            if (connector.Kind != ConnectorKind.Graph)
            {
                continue;
            }

            var prefix = PrefixOf(connector.TenantId, connector.Name);
            seen.Add(prefix);
            _prefixes.Add(prefix);
            var held = await shares.BalanceAsync(prefix, [.. Enumerable.Range(0, Shares).Select(n => prefix + n.ToString(System.Globalization.CultureInfo.InvariantCulture))], cancellationToken);
            var before = _owned.GetValueOrDefault(prefix);
            gained |= held.Any(h => before is null || !before.TryGetValue(h.Key, out var old) || !ReferenceEquals(old, h.Value));
            owned[prefix] = held;
        }

        foreach (var prefix in _prefixes.Where(p => !seen.Contains(p)).ToList())
        {
            await shares.BalanceAsync(prefix, [], cancellationToken); // the connector was deleted
            _prefixes.Remove(prefix);
        }

        _owned = owned;
        return gained;
    }

    /// <summary>Reconciles the mailboxes of the shares this node holds; returns when the next renewal is due.</summary>
    private async Task<DateTimeOffset> ReconcileOwnedAsync(GraphSubscriptionManager manager, CancellationToken cancellationToken)
    {
        var next = time.GetUtcNow() + options.Value.ReconcileInterval;
        foreach (var connector in await connectors.ListAsync(null, cancellationToken))
        {
            var prefix = PrefixOf(connector.TenantId, connector.Name);
            if (connector.Kind != ConnectorKind.Graph || !_owned.TryGetValue(prefix, out var held) || held.Count == 0)
            {
                continue;
            }

            try
            {
                var due = await manager.ReconcileAsync(
                    connector,
                    hash => held.TryGetValue(prefix + ShareOf(hash).ToString(System.Globalization.CultureInfo.InvariantCulture), out var lease) && lease.IsValid ? lease.Lost : null,
                    cancellationToken);
                if (due < next)
                {
                    next = due;
                }
            }
            catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
            {
                Log.ConnectorFailed(logger, connector.Name, e); // a lost share ends here too: the new holder carries on
            }
        }

        return next;
    }

    private void OnConnectorChanged(Connector connector)
    {
        if (connector.Kind == ConnectorKind.Graph)
        {
            wake.Reconcile();
        }
    }

    /// <summary>
    /// A Graph registration was created, changed or deleted (through this node, or through another one via the store's
    /// change feed): its subscription is created or deleted now rather than at the next <see cref="GraphSourceOptions.ReconcileInterval"/>.
    /// </summary>
    private void OnRegistrationChanged(RegistrationChange change)
    {
        if (change.Source == SourceKind.Graph)
        {
            wake.Reconcile();
        }
    }

    private void OnAllRegistrationsChanged() => wake.Reconcile();

    private void OnLeaseLost(string key)
    {
        if (key.StartsWith(LeasePrefix, StringComparison.Ordinal))
        {
            wake.Reconcile(); // rebalance now
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 3321, Level = LogLevel.Warning, Message = "The store does not support the Graph source; Graph connectors are idle on this node")]
        public static partial void Unsupported(ILogger logger);

        [LoggerMessage(EventId = 3322, Level = LogLevel.Error, Message = "A Graph worker pass failed; trying again shortly")]
        public static partial void PassFailed(ILogger logger, Exception exception);

        [LoggerMessage(EventId = 3323, Level = LogLevel.Warning, Message = "Graph connector {Connector}: reconciling its subscriptions stopped; trying again at the next pass")]
        public static partial void ConnectorFailed(ILogger logger, string connector, Exception exception);
    }
}

/// <summary>Registration of the Graph and Dovecot sources (one call from HeraldApp).</summary>
internal static class MailSourceServices
{
    public static void AddGraphAndDovecot(IServiceCollection services)
    {
        services.AddOptions<GraphSourceOptions>().BindConfiguration(GraphSourceOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        services.AddSingleton(sp => (IGraphSubscriptionStore)sp.GetRequiredService<IHeraldStore>());
        services.AddSingleton(sp => new GraphClientPool(
            new HttpClient(new SocketsHttpHandler
            {
                ConnectTimeout = TimeSpan.FromSeconds(10),
                PooledConnectionIdleTimeout = TimeSpan.FromMinutes(2),
                EnableMultipleHttp2Connections = true,
            })
            { Timeout = TimeSpan.FromSeconds(30) },
            sp.GetRequiredService<TimeProvider>()));
        services.AddSingleton<GraphSubscriptionManager>();
        services.AddSingleton<GraphNotificationProcessor>();
        services.AddSingleton<GraphWake>();
        services.AddSingleton<GraphCallbackStats>();
        services.AddSingleton<DovecotServices>();
        services.AddHostedService<GraphWorker>();
    }
}
