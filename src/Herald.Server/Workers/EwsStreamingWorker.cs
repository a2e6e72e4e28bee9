using System.Collections.Concurrent;
using Herald.Core.Connectors;
using Herald.Core.Events;
using Herald.Core.Farm;
using Herald.Core.Pipeline;
using Herald.Core.Ports;
using Herald.Core.Registrations;
using Herald.Core.Security;
using Herald.Sources.Ews.Streaming;
using Microsoft.Extensions.Options;

namespace Herald.Server.Workers;

/// <summary>Options of the EWS streaming worker (<c>Herald:EwsStreaming</c>); the connector's own options bind from the same section.</summary>
public sealed class EwsStreamingWorkerOptions
{
    /// <summary>The configuration section.</summary>
    public const string Section = "Herald:EwsStreaming";

    /// <summary>How often connectors and their registrations are re-read (connector changes on this node wake it at once).</summary>
    public TimeSpan PollInterval { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>How long a preview's GetItem may take before the push goes without subject and sender.</summary>
    public TimeSpan PreviewTimeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>PEM file of a certificate to trust for EWS (an on-premises Exchange with a private CA); empty: the system store.</summary>
    public string? TrustedCertificatePath { get; set; }
}

/// <summary>
/// Runs the EWS streaming connector on this node: for every <c>ews</c> connector whose work lease this node holds, it
/// streams the mailboxes of the connector's <c>ews-streaming</c> registrations and turns what it hears into ingests
/// (route: the mailbox's keyed hash on the tenant's connector). Badges come from the inbox's folder ModifiedEvent
/// UnreadCount, or GetFolder when a new-mail notification carries none; previews (style preview only) from GetItem,
/// transient. Connectors and registrations are re-read every <see cref="EwsStreamingWorkerOptions.PollInterval"/>.
/// </summary>
/// <remarks>
/// Ownership: one work lease per connector (<c>ews-streaming:{tenant}:{connector}</c>), so each connector's groups run
/// on one node of a farm and another node takes them over when that node dies (the lease expires). Groups are formed
/// from Autodiscover answers inside the connector, so a lease per group would need every node to agree on the groups
/// before leasing them; per connector is the seam for that.
/// </remarks>
internal sealed partial class EwsStreamingWorker : BackgroundService
{
    private readonly ConnectorService connectors;
    private readonly IMailboxDirectory directory;
    private readonly IngestService ingest;
    private readonly SecretBox secrets;
    private readonly WorkLeases leases;
    private readonly EwsHttp http;
    private readonly IOptions<EwsStreamingOptions> streamingOptions;
    private readonly IOptions<EwsStreamingWorkerOptions> options;
    private readonly TimeProvider time;
    private readonly ILoggerFactory loggers;
    private readonly ILogger<EwsStreamingWorker> logger;

    public EwsStreamingWorker(
        ConnectorService connectors,
        IMailboxDirectory directory,
        IngestService ingest,
        SecretBox secrets,
        WorkLeases leases,
        EwsHttp http,
        IOptions<EwsStreamingOptions> streamingOptions,
        IOptions<EwsStreamingWorkerOptions> options,
        TimeProvider time,
        ILoggerFactory loggers,
        ILogger<EwsStreamingWorker> logger)
    {
        this.connectors = connectors;
        this.directory = directory;
        this.ingest = ingest;
        this.secrets = secrets;
        this.leases = leases;
        this.http = http;
        this.streamingOptions = streamingOptions;
        this.options = options;
        this.time = time;
        this.loggers = loggers;
        this.logger = logger;
    }

    private readonly ConcurrentDictionary<string, Runtime> _runtimes = new(StringComparer.Ordinal);
    private readonly AsyncSignal _wake = new();

    /// <summary>The connectors this node streams now, by lease key (for tests and the console).</summary>
    internal IReadOnlyDictionary<string, EwsStreamingConnector> Running => _runtimes.ToDictionary(p => p.Key, p => p.Value.Connector);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        connectors.Changed += OnConnectorChanged;
        try
        {
            while (!stoppingToken.IsCancellationRequested)
            {
                try
                {
                    await PassAsync(stoppingToken);
                }
                catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
                {
                    break;
                }
                catch (Exception ex)
                {
                    Log.PassFailed(logger, ex);
                }

                await _wake.WaitAsync(options.Value.PollInterval, time, stoppingToken);
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // Stopping.
        }
        finally
        {
            connectors.Changed -= OnConnectorChanged;
            foreach (var key in _runtimes.Keys.ToList())
            {
                await StopAsync(key);
            }

            _wake.Dispose();
        }
    }

    /// <summary>One reconciliation: lease, start, update and stop connectors.</summary>
    private async Task PassAsync(CancellationToken cancellationToken)
    {
        var all = await connectors.ListAsync(null, cancellationToken);
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var connector in all.Where(c => c.Kind == ConnectorKind.Ews))
        {
            var key = LeaseKey(connector);
            seen.Add(key);
            try
            {
                await ReconcileAsync(key, connector, cancellationToken);
            }
            catch (Exception ex) when (ex is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
            {
                Log.ConnectorFailed(logger, ex, connector.TenantId, connector.Name);
            }
        }

        foreach (var key in _runtimes.Keys.Where(k => !seen.Contains(k)).ToList())
        {
            await StopAsync(key); // the connector was deleted
            await leases.ReleaseAsync(key, cancellationToken);
        }
    }

    private async Task ReconcileAsync(string key, Connector connector, CancellationToken cancellationToken)
    {
        var registrations = (await directory.ListByConnectorAsync(connector.TenantId, connector.Name, cancellationToken))
            .Where(r => r.Source == SourceKind.EwsStreaming && r.Status == RegistrationStatus.Active && r.SealedMailbox is not null)
            .ToList();
        if (registrations.Count == 0)
        {
            if (_runtimes.ContainsKey(key))
            {
                await StopAsync(key);
                await leases.ReleaseAsync(key, cancellationToken);
            }

            return;
        }

        var lease = await leases.TryAcquireAsync(key, cancellationToken);
        if (lease is null || !lease.IsValid)
        {
            await StopAsync(key); // another node streams this connector
            return;
        }

        if (_runtimes.TryGetValue(key, out var runtime) && (runtime.UpdatedAt != connector.UpdatedAt || runtime.Lease != lease))
        {
            await StopAsync(key); // settings changed (or the lease was taken anew): start over with the new ones
            runtime = null;
        }

        if (runtime is null)
        {
            runtime = new Runtime(this, connector, lease);
            _runtimes[key] = runtime;
            Log.Started(logger, connector.TenantId, connector.Name);
        }

        var mailboxes = new Dictionary<string, MailboxInfo>(StringComparer.OrdinalIgnoreCase);
        var opened = new Dictionary<string, (string Sealed, string Address)>(registrations.Count, StringComparer.Ordinal);
        foreach (var registration in registrations)
        {
            // Opening is AES-GCM per registration: only new or changed ones, not all of them every pass.
            string address;
            if (runtime.Opened.TryGetValue(registration.Id, out var known) && known.Sealed == registration.SealedMailbox)
            {
                address = known.Address;
            }
            else
            {
                try
                {
                    address = secrets.Open(registration.SealedMailbox!, "mailbox").Trim();
                }
                catch (Exception ex) when (ex is System.Security.Cryptography.CryptographicException or FormatException)
                {
                    Log.CannotOpen(logger, connector.TenantId, connector.Name);
                    continue;
                }
            }

            opened[registration.Id] = (registration.SealedMailbox!, address);
            var hash = registration.MailboxHash ?? secrets.MailboxHash(address);
            var wantsPreview = registration.Style == NotificationStyle.Preview;
            mailboxes[address] = mailboxes.TryGetValue(address, out var info)
                ? info with { WantsPreview = info.WantsPreview || wantsPreview }
                : new MailboxInfo(hash, wantsPreview);
        }

        runtime.Opened = opened;
        runtime.Mailboxes = mailboxes;
        await runtime.Connector.SetMailboxesAsync(mailboxes.Keys, cancellationToken);
    }

    private async Task StopAsync(string key)
    {
        if (_runtimes.TryRemove(key, out var runtime))
        {
            await runtime.Connector.DisposeAsync();
            Log.Stopped(logger, runtime.TenantId, runtime.Name);
        }
    }

    private void OnConnectorChanged(Connector connector)
    {
        if (connector.Kind == ConnectorKind.Ews)
        {
            _wake.Set();
        }
    }

    private static string LeaseKey(Connector connector) => "ews-streaming:" + connector.TenantId + ":" + connector.Name;

    /// <summary>What the worker knows of a streamed mailbox.</summary>
    private sealed record MailboxInfo(byte[] Hash, bool WantsPreview);

    /// <summary>One connector streamed by this node, and the sink its groups report to.</summary>
    private sealed class Runtime : IEwsStreamingSink
    {
        private readonly EwsStreamingWorker _worker;

        public Runtime(EwsStreamingWorker worker, Connector connector, LeaseHandle lease)
        {
            _worker = worker;
            TenantId = connector.TenantId;
            Name = connector.Name;
            UpdatedAt = connector.UpdatedAt;
            Lease = lease;
            Connector = new EwsStreamingConnector(
                connector.Config,
                CopyOptions(worker.streamingOptions.Value),
                this,
                worker.http,
                worker.time,
                worker.loggers.CreateLogger<EwsStreamingConnector>());
        }

        public string TenantId { get; }
        public string Name { get; }
        public DateTimeOffset UpdatedAt { get; }
        public LeaseHandle Lease { get; }
        public EwsStreamingConnector Connector { get; }
        public Dictionary<string, MailboxInfo> Mailboxes { get; set; } = [];

        /// <summary>Registration id → its sealed mailbox and the address it opens to (so a pass opens only new ones).</summary>
        public Dictionary<string, (string Sealed, string Address)> Opened { get; set; } = [];

        public async Task OnNotificationAsync(string mailbox, MailboxNotification notification, CancellationToken cancellationToken)
        {
            if (!Mailboxes.TryGetValue(mailbox, out var info) || !Lease.IsValid)
            {
                return; // removed meanwhile, or the lease is gone: the new owner streams it
            }

            var events = notification.Events;
            var newest = events.LastOrDefault(e => e.Kind == MailEventKind.NewMail);
            if (newest is not null && !events.Any(e => e.Kind == MailEventKind.Modified && e.IsFolderEvent && e.UnreadCount is not null))
            {
                // No folder count in this notification: ask for the inbox's (the badge must be the real count).
                var unread = await TryAsync(c => Connector.Client.GetUnreadCountAsync(Url(mailbox), mailbox, "inbox", c), cancellationToken);
                if (unread is int count)
                {
                    events = [.. events, new MailEvent { Kind = MailEventKind.Modified, FolderId = newest.ParentFolderId ?? "inbox", UnreadCount = count }];
                }
            }

            MailPreview? preview = null;
            if (newest?.ItemId is { } itemId && info.WantsPreview)
            {
                var item = await TryAsync(c => Connector.Client.GetPreviewAsync(Url(mailbox), mailbox, itemId, c), cancellationToken);
                if (item is not null)
                {
                    preview = new MailPreview(item.Subject, string.IsNullOrEmpty(item.FromName) ? item.FromAddress : item.FromName);
                }
            }

            // The subscription is Herald's own, not the device's: the planner must not bind it.
            await IngestAsync(info, [notification with { SubscriptionId = null, Events = events }], preview, cancellationToken);
        }

        public async Task OnMissedAsync(string mailbox, CancellationToken cancellationToken)
        {
            if (!Mailboxes.TryGetValue(mailbox, out var info) || !Lease.IsValid)
            {
                return;
            }

            await IngestAsync(info, [new MailboxNotification { Events = [new MailEvent { Kind = MailEventKind.Missed }] }], null, cancellationToken);
        }

        private Uri Url(string mailbox) => Connector.EwsUrlOf(mailbox) ?? throw new EwsStreamingException(EwsRecovery.Rediscover, "MailboxNotPlaced");

        /// <summary>A GetItem/GetFolder within the preview timeout; null when it fails (the push goes without it).</summary>
        private async Task<T?> TryAsync<T>(Func<CancellationToken, Task<T>> call, CancellationToken cancellationToken)
        {
            using var timeout = new CancellationTokenSource(_worker.options.Value.PreviewTimeout, _worker.time);
            using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
            try
            {
                return await call(linked.Token);
            }
            catch (Exception ex) when (ex is EwsStreamingException || (ex is OperationCanceledException && !cancellationToken.IsCancellationRequested))
            {
                Log.LookupFailed(_worker.logger, TenantId, Name, (ex as EwsStreamingException)?.ResponseCode);
                return default;
            }
        }

        /// <summary>Ingests, retrying while the store cannot take it: a streamed event has no redelivery, so it is not dropped.</summary>
        private async Task IngestAsync(MailboxInfo info, IReadOnlyList<MailboxNotification> notifications, MailPreview? preview, CancellationToken cancellationToken)
        {
            var delay = TimeSpan.FromMilliseconds(200);
            while (true)
            {
                var item = new IngestItem
                {
                    Route = IngestRoute.ForMailbox(TenantId, Name, info.Hash),
                    Notifications = notifications,
                    ReceivedAt = _worker.time.GetUtcNow(),
                    Source = SourceKind.EwsStreaming,
                    Preview = preview,
                };
                try
                {
                    await _worker.ingest.IngestAsync(item, cancellationToken);
                    return;
                }
                catch (Exception ex) when (ex is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
                {
                    Log.IngestRetry(_worker.logger, ex, TenantId, Name, delay);
                    await Task.Delay(delay, _worker.time, cancellationToken);
                    delay = delay * 2 > TimeSpan.FromSeconds(30) ? TimeSpan.FromSeconds(30) : delay * 2;
                }
            }
        }

        private static EwsStreamingOptions CopyOptions(EwsStreamingOptions o) => new()
        {
            ConnectionTimeout = o.ConnectionTimeout,
            ReconnectMargin = o.ReconnectMargin,
            HeartbeatTimeout = o.HeartbeatTimeout,
            MaxGroupSize = o.MaxGroupSize,
            ImpersonateAnchorOnStream = o.ImpersonateAnchorOnStream,
            AutodiscoverCacheTtl = o.AutodiscoverCacheTtl,
            AutodiscoverRedirectHosts = [.. o.AutodiscoverRedirectHosts],
            MinBackOff = o.MinBackOff,
            MaxBackOff = o.MaxBackOff,
            RequestTimeout = o.RequestTimeout,
            SubscribeConcurrency = o.SubscribeConcurrency,
            AllowInsecureHttp = o.AllowInsecureHttp,
            RequestServerVersion = o.RequestServerVersion,
        };
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 3170, Level = LogLevel.Information, Message = "EWS streaming started for connector {Tenant}/{Connector}")]
        public static partial void Started(ILogger logger, string tenant, string connector);

        [LoggerMessage(EventId = 3171, Level = LogLevel.Information, Message = "EWS streaming stopped for connector {Tenant}/{Connector}")]
        public static partial void Stopped(ILogger logger, string tenant, string connector);

        [LoggerMessage(EventId = 3172, Level = LogLevel.Error, Message = "EWS streaming pass failed")]
        public static partial void PassFailed(ILogger logger, Exception exception);

        [LoggerMessage(EventId = 3173, Level = LogLevel.Error, Message = "EWS streaming for connector {Tenant}/{Connector} failed")]
        public static partial void ConnectorFailed(ILogger logger, Exception exception, string tenant, string connector);

        [LoggerMessage(EventId = 3174, Level = LogLevel.Error, Message = "A mailbox of connector {Tenant}/{Connector} cannot be opened with the current keys")]
        public static partial void CannotOpen(ILogger logger, string tenant, string connector);

        [LoggerMessage(EventId = 3175, Level = LogLevel.Warning, Message = "EWS lookup for connector {Tenant}/{Connector} failed ({Code}); pushing without it")]
        public static partial void LookupFailed(ILogger logger, string tenant, string connector, string? code);

        [LoggerMessage(EventId = 3176, Level = LogLevel.Warning, Message = "Ingest of an EWS streaming event for {Tenant}/{Connector} failed; retrying in {Delay}")]
        public static partial void IngestRetry(ILogger logger, Exception exception, string tenant, string connector, TimeSpan delay);
    }
}

/// <summary>The EWS streaming source's services: one call from the host's composition.</summary>
internal static class EwsStreamingServices
{
    public static void Add(IServiceCollection services)
    {
        services.AddOptions<EwsStreamingOptions>().BindConfiguration(EwsStreamingWorkerOptions.Section)
            .Validate(o =>
            {
                try
                {
                    o.Validate();
                    return true;
                }
                catch (ArgumentException)
                {
                    return false;
                }
            }, "Herald:EwsStreaming is invalid: ConnectionTimeout whole minutes 1-30, ReconnectMargin shorter, MaxGroupSize 1-200, positive back-offs.")
            .ValidateOnStart();
        services.AddOptions<EwsStreamingWorkerOptions>().BindConfiguration(EwsStreamingWorkerOptions.Section)
            .Validate(o => o.PollInterval > TimeSpan.Zero && o.PreviewTimeout > TimeSpan.Zero, "Herald:EwsStreaming:PollInterval and PreviewTimeout must be positive.")
            .ValidateOnStart();
        services.AddSingleton(sp =>
        {
            var path = sp.GetRequiredService<IOptions<EwsStreamingWorkerOptions>>().Value.TrustedCertificatePath;
            return new EwsHttp(string.IsNullOrEmpty(path) ? null : System.Security.Cryptography.X509Certificates.X509Certificate2.CreateFromPemFile(path));
        });
        services.AddSingleton<EwsStreamingWorker>();
        services.AddHostedService(sp => sp.GetRequiredService<EwsStreamingWorker>());
    }
}
