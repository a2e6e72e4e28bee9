using Herald.Core.Connectors;
using Herald.Core.Pipeline;
using Herald.Core.Ports;
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
internal sealed partial class GraphWorker(
    IServiceProvider services,
    GraphWake wake,
    PublicUrls urls,
    NodeIdentity node,
    ConnectorService connectors,
    IHostApplicationLifetime lifetime,
    IOptions<GraphSourceOptions> options,
    TimeProvider time,
    ILogger<GraphWorker> logger) : BackgroundService
{
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
        try
        {
            var nextReconcile = DateTimeOffset.MinValue;
            while (!stoppingToken.IsCancellationRequested)
            {
                var processed = 0;
                try
                {
                    processed = await processor.RunOnceAsync(stoppingToken);
                    if (wake.TakeReconcile() || time.GetUtcNow() >= nextReconcile)
                    {
                        manager.PublicBaseUrl = urls.Base;
                        nextReconcile = await manager.RunOnceAsync(stoppingToken);
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

                var wait = nextReconcile - time.GetUtcNow();
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
        }
    }

    private void OnConnectorChanged(Connector connector)
    {
        if (connector.Kind == ConnectorKind.Graph)
        {
            wake.Reconcile();
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 3321, Level = LogLevel.Warning, Message = "The store does not support the Graph source; Graph connectors are idle on this node")]
        public static partial void Unsupported(ILogger logger);

        [LoggerMessage(EventId = 3322, Level = LogLevel.Error, Message = "A Graph worker pass failed; trying again shortly")]
        public static partial void PassFailed(ILogger logger, Exception exception);
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
