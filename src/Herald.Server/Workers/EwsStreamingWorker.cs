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

    /// <summary>
    /// How often the worker balances its groups' work leases over the farm (takes its share, takes over a dead node's
    /// groups, picks up moved mailboxes) and retries what failed. No store read of registrations happens on this beat:
    /// they are re-read on a change signal or every <see cref="ReconcileInterval"/>.
    /// </summary>
    public TimeSpan PollInterval { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// The safety net: how often the connectors and every streaming registration are re-read from the store although no
    /// change was signalled. Registrations created, patched or deleted and connectors saved or deleted through this
    /// node's API are reconciled at once (a change signal), so on a single node this re-read only catches what the API
    /// did not do (a registration the dispatcher deactivated). In a farm on PostgreSQL, registration changes committed
    /// through any node (the dispatcher's deactivations too) are signalled to every node by LISTEN/NOTIFY, and a
    /// reconnected listener triggers one full re-read; this interval then bounds only what a notification missed, a
    /// connector saved through another node, and farms with <c>Herald:Postgres:Listen</c> off. Default 60 s; positive,
    /// at most a day.
    /// </summary>
    public TimeSpan ReconcileInterval { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>The longest <see cref="ReconcileInterval"/> accepted.</summary>
    public static readonly TimeSpan MaxReconcileInterval = TimeSpan.FromDays(1);

    /// <summary>How long a preview's GetItem may take before the push goes without subject and sender.</summary>
    public TimeSpan PreviewTimeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>PEM file of a certificate to trust for EWS (an on-premises Exchange with a private CA); empty: the system store.</summary>
    public string? TrustedCertificatePath { get; set; }
}

/// <summary>An EWS streaming group this node owns in the farm, for tests and the console.</summary>
/// <param name="LeaseKey">The group's work lease: <c>ews-group:{tenant}:{connector}:{EWS URL|GroupingInformation}#{n}</c>.</param>
/// <param name="TenantId">The tenant.</param>
/// <param name="Connector">The connector's name.</param>
/// <param name="GroupKey">EWS URL and GroupingInformation.</param>
/// <param name="Index">The group's number among the groups of its key (a key with more than 200 mailboxes has several).</param>
/// <param name="Mailboxes">How many mailboxes the group streams.</param>
/// <param name="Owner">The lease owner (this process).</param>
/// <param name="Token">The lease's fencing token.</param>
/// <param name="Valid">Whether the lease is valid right now (false only in the moment between losing it and stopping the group).</param>
internal sealed record EwsOwnedGroup(string LeaseKey, string TenantId, string Connector, string GroupKey, int Index, int Mailboxes, string Owner, long Token, bool Valid);

/// <summary>
/// Runs the EWS streaming connector on this node: for every <c>ews</c> connector it forms the subscription groups of the
/// connector's <c>ews-streaming</c> registrations, takes its share of them through farm work leases, streams the mailboxes
/// of the groups it owns and turns what it hears into ingests (route: the mailbox's keyed hash on the tenant's connector).
/// Badges come from the inbox's folder ModifiedEvent UnreadCount, or GetFolder when a new-mail notification carries none;
/// previews (style preview only) from GetItem, transient. A connector's registrations are re-read when this node signals
/// a change to them (<see cref="RegistrationChanges"/>, which in a farm on PostgreSQL also carries changes committed
/// through other nodes, and <see cref="ConnectorService.Changed"/>), every connector's when changes may have been missed
/// (<see cref="RegistrationChanges.AllChanged"/>), and all of them every
/// <see cref="EwsStreamingWorkerOptions.ReconcileInterval"/> as a safety net; every
/// <see cref="EwsStreamingWorkerOptions.PollInterval"/> the groups' leases are balanced from what was read last.
/// </summary>
/// <remarks>
/// Ownership: one work lease per subscription group. Every node forms the same groups from the same registrations:
/// each mailbox's EWS URL and GroupingInformation (Autodiscover, cached; the last known placement while Autodiscover
/// cannot answer), then <see cref="EwsGrouping.Plan"/> (by key, addresses sorted, chunks of MaxGroupSize, which must be
/// the same on every node), and the lease key is the connector, the grouping key and the chunk's number. Nodes take
/// their fair share (<see cref="WorkShares"/>); a node that loses a lease stops that group's mailboxes at once and drops
/// anything they still deliver (fencing: nothing is ingested without a valid lease), and the node that takes a group
/// from another subscribes its mailboxes anew and, once subscribed, gives each a missed-events wake-up for the window
/// nobody streamed it. On a single node every group is this node's.
/// </remarks>
internal sealed partial class EwsStreamingWorker : BackgroundService
{
    /// <summary>The prefix of every EWS streaming group lease.</summary>
    public const string LeasePrefix = "ews-group:";

    private readonly ConnectorService connectors;
    private readonly RegistrationChanges changes;
    private readonly IMailboxDirectory directory;
    private readonly IngestService ingest;
    private readonly SecretBox secrets;
    private readonly WorkLeases leases;
    private readonly WorkShares shares;
    private readonly EwsHttp http;
    private readonly IOptions<EwsStreamingOptions> streamingOptions;
    private readonly IOptions<EwsStreamingWorkerOptions> options;
    private readonly TimeProvider time;
    private readonly ILoggerFactory loggers;
    private readonly ILogger<EwsStreamingWorker> logger;

    public EwsStreamingWorker(
        ConnectorService connectors,
        RegistrationChanges changes,
        IMailboxDirectory directory,
        IngestService ingest,
        SecretBox secrets,
        WorkLeases leases,
        WorkShares shares,
        EwsHttp http,
        IOptions<EwsStreamingOptions> streamingOptions,
        IOptions<EwsStreamingWorkerOptions> options,
        TimeProvider time,
        ILoggerFactory loggers,
        ILogger<EwsStreamingWorker> logger)
    {
        this.connectors = connectors;
        this.changes = changes;
        this.directory = directory;
        this.ingest = ingest;
        this.secrets = secrets;
        this.leases = leases;
        this.shares = shares;
        this.http = http;
        this.streamingOptions = streamingOptions;
        this.options = options;
        this.time = time;
        this.loggers = loggers;
        this.logger = logger;
    }

    /// <summary>At most this many connectors wait for a reconcile by name; beyond, the next pass re-reads all of them.</summary>
    private const int MaxPending = 1024;

    private readonly ConcurrentDictionary<string, Runtime> _runtimes = new(StringComparer.Ordinal);
    private readonly AsyncSignal _wake = new();

    // Connectors (tenant:name) whose registrations changed on this node since the last pass: a set, so a burst of
    // changes to one connector coalesces into one re-read; bounded, overflowing into a re-read of all.
    private readonly ConcurrentDictionary<string, byte> _pending = new(StringComparer.Ordinal);
    private int _pendingAll; // 1: re-read every connector on the next pass

    // The worker loop's own state (one pass at a time): the EWS connectors and what their registrations were when last read.
    private IReadOnlyList<Connector>? _known;
    private readonly Dictionary<string, Loaded> _loaded = new(StringComparer.Ordinal);
    private DateTimeOffset _nextFull = DateTimeOffset.MinValue;

    /// <summary>The connectors this node runs now, by <c>{tenant}:{connector}</c> (for tests and the console).</summary>
    internal IReadOnlyDictionary<string, EwsStreamingConnector> Running => _runtimes.ToDictionary(p => p.Key, p => p.Value.Connector);

    /// <summary>A read-only snapshot of one connector's streaming groups on this node (empty when it streams none), for the console.</summary>
    internal IReadOnlyList<EwsGroupSnapshot> GroupsOf(string tenantId, string connector)
        => _runtimes.Values.FirstOrDefault(r => r.TenantId == tenantId && r.Name == connector)?.Connector.Groups ?? [];

    /// <summary>The streaming groups this node owns now, by lease key (for tests and the console).</summary>
    internal IReadOnlyList<EwsOwnedGroup> OwnedGroups
        => [.. _runtimes.Values.SelectMany(r => r.Owned).OrderBy(g => g.LeaseKey, StringComparer.Ordinal)];

    /// <summary>The lease key prefix of a connector's groups (tenant and name escaped, so no two connectors share one).</summary>
    internal static string PrefixOf(string tenantId, string connector)
        => LeasePrefix + Uri.EscapeDataString(tenantId) + ":" + Uri.EscapeDataString(connector) + ":";

    /// <summary>The lease key of a planned group: the connector, the grouping key and its number among that key's groups.</summary>
    internal static string LeaseKeyOf(string prefix, string groupKey, int index)
        => prefix + groupKey + "#" + index.ToString(System.Globalization.CultureInfo.InvariantCulture);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        connectors.Changed += OnConnectorChanged;
        changes.Changed += OnRegistrationsChanged;
        changes.AllChanged += OnAllRegistrationsChanged;
        leases.Lost += OnLeaseLost;
        try
        {
            while (!stoppingToken.IsCancellationRequested)
            {
                try
                {
                    await StopLostAsync(stoppingToken);
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

                // Until a change signal, the next lease balancing, or the safety-net re-read, whichever comes first.
                var untilFull = _nextFull - time.GetUtcNow();
                var poll = options.Value.PollInterval;
                await _wake.WaitAsync(untilFull < poll ? untilFull : poll, time, stoppingToken);
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // Stopping.
        }
        finally
        {
            connectors.Changed -= OnConnectorChanged;
            changes.Changed -= OnRegistrationsChanged;
            changes.AllChanged -= OnAllRegistrationsChanged;
            leases.Lost -= OnLeaseLost;
            foreach (var key in _runtimes.Keys.ToList())
            {
                await StopAsync(key);
            }

            _wake.Dispose();
        }
    }

    /// <summary>
    /// Stops the mailboxes of groups whose lease was lost, without the store (it may be what failed): the next pass
    /// decides about taking them again.
    /// </summary>
    private async Task StopLostAsync(CancellationToken cancellationToken)
    {
        foreach (var runtime in _runtimes.Values)
        {
            var lost = runtime.Handles.Where(h => !h.Value.IsValid).Select(h => h.Key).ToHashSet(StringComparer.OrdinalIgnoreCase);
            if (lost.Count == 0)
            {
                continue;
            }

            Log.GroupsLost(logger, runtime.TenantId, runtime.Name, lost.Count);
            runtime.Handles = runtime.Handles.Where(h => !lost.Contains(h.Key)).ToDictionary(StringComparer.OrdinalIgnoreCase);
            runtime.Owned = [.. runtime.Owned.Where(g => leases.IsHeld(g.LeaseKey))];
            runtime.PreviousMine.ExceptWith(lost);
            await runtime.Connector.SetMailboxesAsync(runtime.Handles.Keys, cancellationToken);
        }
    }

    /// <summary>
    /// One pass: re-read the connectors and the registrations of those signalled as changed (all of them when the safety
    /// net is due), then for every connector form the groups, balance their leases, start, update and stop streaming.
    /// </summary>
    private async Task PassAsync(CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow();
        var full = Interlocked.Exchange(ref _pendingAll, 0) == 1 || now >= _nextFull;
        var changed = new HashSet<string>(StringComparer.Ordinal);
        foreach (var key in _pending.Keys)
        {
            if (_pending.TryRemove(key, out _))
            {
                changed.Add(key);
            }
        }

        if (full)
        {
            _nextFull = now + options.Value.ReconcileInterval;
        }

        if (full || changed.Count > 0 || _known is null)
        {
            try
            {
                _known = [.. (await connectors.ListAsync(null, cancellationToken)).Where(c => c.Kind == ConnectorKind.Ews)];
            }
            catch
            {
                Requeue(changed, full); // the next pass (not at once: the store may be what failed) tries again
                throw;
            }
        }

        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var connector in _known)
        {
            var key = connector.TenantId + ":" + connector.Name;
            seen.Add(key);
            var read = full || changed.Contains(key) || !_loaded.ContainsKey(key);
            try
            {
                await ReconcileAsync(key, connector, read, cancellationToken);
            }
            catch (Exception ex) when (ex is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
            {
                if (read)
                {
                    Requeue([key], false);
                }

                Log.ConnectorFailed(logger, ex, connector.TenantId, connector.Name);
            }
        }

        foreach (var key in _loaded.Keys.Where(k => !seen.Contains(k)).ToList())
        {
            _loaded.Remove(key);
        }

        foreach (var (key, runtime) in _runtimes.Where(r => !seen.Contains(r.Key)).ToList())
        {
            await StopAsync(key); // the connector was deleted
            await shares.BalanceAsync(PrefixOf(runtime.TenantId, runtime.Name), [], cancellationToken);
        }
    }

    /// <summary>Marks connectors (or all, <paramref name="all"/>) for a re-read on the next pass, without waking it.</summary>
    private void Requeue(IEnumerable<string> keys, bool all)
    {
        if (all)
        {
            Volatile.Write(ref _pendingAll, 1);
        }

        foreach (var key in keys)
        {
            MarkChanged(key);
        }
    }

    private void MarkChanged(string key)
    {
        if (_pending.Count >= MaxPending)
        {
            Volatile.Write(ref _pendingAll, 1); // bounded: too many to track by name, so re-read everything once
        }
        else
        {
            _pending.TryAdd(key, 0);
        }
    }

    /// <summary>Reconciles one connector; <paramref name="read"/>: its registrations are re-read first (else the last read serves).</summary>
    private async Task ReconcileAsync(string key, Connector connector, bool read, CancellationToken cancellationToken)
    {
        var prefix = PrefixOf(connector.TenantId, connector.Name);
        if (read || !_loaded.TryGetValue(key, out var loaded))
        {
            loaded = await ReadAsync(key, connector, cancellationToken);
            _loaded[key] = loaded;
        }

        var mailboxes = loaded.Mailboxes;
        if (mailboxes.Count == 0)
        {
            await StopAsync(key);
            await shares.BalanceAsync(prefix, [], cancellationToken); // gives up any groups of it
            return;
        }

        if (_runtimes.TryGetValue(key, out var runtime) && runtime.UpdatedAt != connector.UpdatedAt)
        {
            await StopAsync(key); // settings changed: start over with the new ones
            runtime = null;
        }

        if (runtime is null)
        {
            runtime = new Runtime(this, connector);
            _runtimes[key] = runtime;
            Log.Started(logger, connector.TenantId, connector.Name);
        }

        runtime.Mailboxes = mailboxes;

        // The groups, as every node forms them: placements (the last known one while Autodiscover cannot answer), then the plan.
        var placements = new Dictionary<string, EwsMailboxPlacement>(StringComparer.OrdinalIgnoreCase);
        foreach (var placement in await runtime.Connector.ResolvePlacementsAsync(mailboxes.Keys, cancellationToken))
        {
            placements[placement.Address] = placement;
        }

        foreach (var address in mailboxes.Keys.Where(a => !placements.ContainsKey(a)))
        {
            if (runtime.Placements.TryGetValue(address, out var last))
            {
                placements[address] = last;
            }
        }

        runtime.Placements = placements;
        var plans = new List<(string LeaseKey, int Index, EwsGroupPlan Plan)>();
        foreach (var byKey in EwsGrouping.Plan(placements.Values, streamingOptions.Value.MaxGroupSize).GroupBy(p => p.Key, StringComparer.Ordinal))
        {
            var index = 0;
            foreach (var plan in byKey)
            {
                plans.Add((LeaseKeyOf(prefix, plan.Key, index), index, plan));
                index++;
            }
        }

        var owned = await shares.BalanceAsync(prefix, [.. plans.Select(p => p.LeaseKey)], cancellationToken);
        var handles = new Dictionary<string, LeaseHandle>(StringComparer.OrdinalIgnoreCase);
        var groups = new List<EwsOwnedGroup>();
        foreach (var (leaseKey, index, plan) in plans)
        {
            if (owned.TryGetValue(leaseKey, out var handle) && handle.IsValid)
            {
                foreach (var member in plan.Members)
                {
                    handles[member] = handle;
                }

                groups.Add(new EwsOwnedGroup(leaseKey, connector.TenantId, connector.Name, plan.Key, index, plan.Members.Count, handle.Owner, handle.Token, true));
            }
        }

        // Mailboxes this node did not stream on its last pass although they were planned then: another node (or
        // nobody) streamed them until now, so events in between may be lost; they get a sync wake-up once subscribed.
        var movedIn = handles.Keys.Where(a => runtime.PreviousAll.Contains(a) && !runtime.PreviousMine.Contains(a)).ToList();
        if (movedIn.Count > 0)
        {
            Log.TookGroups(logger, connector.TenantId, connector.Name, movedIn.Count);
        }

        runtime.Handles = handles;
        runtime.Owned = groups;
        await runtime.Connector.SetMailboxesAsync(handles.Keys, cancellationToken, movedIn);
        runtime.PreviousAll = new HashSet<string>(placements.Keys, StringComparer.OrdinalIgnoreCase);
        runtime.PreviousMine = new HashSet<string>(handles.Keys, StringComparer.OrdinalIgnoreCase);
    }

    /// <summary>Reads the connector's active streaming registrations and opens their mailboxes (only new or changed ones).</summary>
    private async Task<Loaded> ReadAsync(string key, Connector connector, CancellationToken cancellationToken)
    {
        var registrations = (await directory.ListByConnectorAsync(connector.TenantId, connector.Name, cancellationToken))
            .Where(r => r.Source == SourceKind.EwsStreaming && r.Status == RegistrationStatus.Active && r.SealedMailbox is not null)
            .ToList();
        var previous = _loaded.TryGetValue(key, out var last) ? last.Opened : [];
        var mailboxes = new Dictionary<string, MailboxInfo>(StringComparer.OrdinalIgnoreCase);
        var opened = new Dictionary<string, (string Sealed, string Address)>(registrations.Count, StringComparer.Ordinal);
        foreach (var registration in registrations)
        {
            // Opening is AES-GCM per registration: only new or changed ones, not all of them every read.
            string address;
            if (previous.TryGetValue(registration.Id, out var known) && known.Sealed == registration.SealedMailbox)
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
            var wantsPreview = registration.Style.WantsPreview();
            mailboxes[address] = mailboxes.TryGetValue(address, out var info)
                ? info with { WantsPreview = info.WantsPreview || wantsPreview }
                : new MailboxInfo(hash, wantsPreview);
        }

        return new Loaded(mailboxes, opened);
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
            MarkChanged(connector.TenantId + ":" + connector.Name);
            Wake();
        }
    }

    private void OnRegistrationsChanged(RegistrationChange change)
    {
        if (change.Source == SourceKind.EwsStreaming)
        {
            MarkChanged(change.TenantId + ":" + change.Connector);
            Wake(); // reconcile that connector now, not at the safety-net re-read
        }
    }

    private void OnAllRegistrationsChanged()
    {
        Volatile.Write(ref _pendingAll, 1); // the farm's change feed reconnected: what it missed is re-read now
        Wake();
    }

    private void Wake() => _wake.Set(); // a no-op once the worker stopped

    private void OnLeaseLost(string key)
    {
        if (key.StartsWith(LeasePrefix, StringComparison.Ordinal))
        {
            _wake.Set(); // stop that group now, not at the next poll
        }
    }

    /// <summary>What the worker knows of a streamed mailbox.</summary>
    private sealed record MailboxInfo(byte[] Hash, bool WantsPreview);

    /// <summary>A connector's streaming registrations as last read: mailbox → what the worker knows of it, and registration id → its sealed and opened mailbox.</summary>
    private sealed record Loaded(Dictionary<string, MailboxInfo> Mailboxes, Dictionary<string, (string Sealed, string Address)> Opened);

    /// <summary>One connector on this node (streaming the groups this node owns), and the sink its groups report to.</summary>
    private sealed class Runtime : IEwsStreamingSink
    {
        private readonly EwsStreamingWorker _worker;

        public Runtime(EwsStreamingWorker worker, Connector connector)
        {
            _worker = worker;
            TenantId = connector.TenantId;
            Name = connector.Name;
            UpdatedAt = connector.UpdatedAt;
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
        public EwsStreamingConnector Connector { get; }
        public Dictionary<string, MailboxInfo> Mailboxes { get; set; } = [];

        /// <summary>Streamed mailbox → the lease of its group (replaced as a whole by each pass).</summary>
        public Dictionary<string, LeaseHandle> Handles { get; set; } = new(StringComparer.OrdinalIgnoreCase);

        /// <summary>The groups this node owns, as of the last pass.</summary>
        public IReadOnlyList<EwsOwnedGroup> Owned { get; set; } = [];

        /// <summary>The last known placement of each mailbox (used while Autodiscover cannot answer).</summary>
        public Dictionary<string, EwsMailboxPlacement> Placements { get; set; } = new(StringComparer.OrdinalIgnoreCase);

        /// <summary>Every planned mailbox and this node's mailboxes at the last pass (to tell a group taken from another node).</summary>
        public HashSet<string> PreviousAll { get; set; } = new(StringComparer.OrdinalIgnoreCase);

        public HashSet<string> PreviousMine { get; set; } = new(StringComparer.OrdinalIgnoreCase);

        public async Task OnNotificationAsync(string mailbox, MailboxNotification notification, CancellationToken cancellationToken)
        {
            if (!Mailboxes.TryGetValue(mailbox, out var info) || Lease(mailbox) is not { } lease)
            {
                return; // removed meanwhile, or its group's lease is gone: the new owner streams it (and wakes the device)
            }

            using var fenced = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, lease.Lost);
            try
            {
                var events = notification.Events;
                var newest = events.LastOrDefault(e => e.Kind == MailEventKind.NewMail);
                if (newest is not null && !events.Any(e => e.Kind == MailEventKind.Modified && e.IsFolderEvent && e.UnreadCount is not null))
                {
                    // No folder count in this notification: ask for the inbox's (the badge must be the real count).
                    var unread = await TryAsync(c => Connector.Client.GetUnreadCountAsync(Url(mailbox), mailbox, "inbox", c), fenced.Token);
                    if (unread is int count)
                    {
                        events = [.. events, new MailEvent { Kind = MailEventKind.Modified, FolderId = newest.ParentFolderId ?? "inbox", UnreadCount = count }];
                    }
                }

                MailPreview? preview = null;
                if (newest?.ItemId is { } itemId && info.WantsPreview)
                {
                    var item = await TryAsync(c => Connector.Client.GetPreviewAsync(Url(mailbox), mailbox, itemId, c), fenced.Token);
                    if (item is not null)
                    {
                        preview = new MailPreview(item.Subject, string.IsNullOrEmpty(item.FromName) ? item.FromAddress : item.FromName) { FromAddress = item.FromAddress, MessageRef = itemId };
                    }
                }

                // The subscription is Herald's own, not the device's: the planner must not bind it.
                await IngestAsync(info, [notification with { SubscriptionId = null, Events = events }], preview, lease, fenced.Token);
            }
            catch (OperationCanceledException) when (lease.Lost.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
            {
                Log.Fenced(_worker.logger, TenantId, Name, lease.Token);
            }
        }

        public async Task OnMissedAsync(string mailbox, CancellationToken cancellationToken)
        {
            if (!Mailboxes.TryGetValue(mailbox, out var info) || Lease(mailbox) is not { } lease)
            {
                return;
            }

            using var fenced = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, lease.Lost);
            try
            {
                await IngestAsync(info, [new MailboxNotification { Events = [new MailEvent { Kind = MailEventKind.Missed }] }], null, lease, fenced.Token);
            }
            catch (OperationCanceledException) when (lease.Lost.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
            {
                Log.Fenced(_worker.logger, TenantId, Name, lease.Token);
            }
        }

        /// <summary>The valid lease of the group streaming <paramref name="mailbox"/> on this node, or null.</summary>
        private LeaseHandle? Lease(string mailbox) => Handles.TryGetValue(mailbox, out var handle) && handle.IsValid ? handle : null;

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

        /// <summary>
        /// Ingests, retrying while the store cannot take it: a streamed event has no redelivery, so it is not dropped while
        /// this node owns the group (once it does not, the new owner's sync wake-up covers it).
        /// </summary>
        private async Task IngestAsync(MailboxInfo info, IReadOnlyList<MailboxNotification> notifications, MailPreview? preview, LeaseHandle lease, CancellationToken cancellationToken)
        {
            var delay = TimeSpan.FromMilliseconds(200);
            while (true)
            {
                if (!lease.IsValid)
                {
                    throw new OperationCanceledException(lease.Lost); // fencing: never act on a group after losing it
                }

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

        [LoggerMessage(EventId = 3177, Level = LogLevel.Warning, Message = "EWS streaming for {Tenant}/{Connector}: lost the lease of groups with {Count} mailboxes; stopped them")]
        public static partial void GroupsLost(ILogger logger, string tenant, string connector, int count);

        [LoggerMessage(EventId = 3178, Level = LogLevel.Information, Message = "EWS streaming for {Tenant}/{Connector}: took groups with {Count} mailboxes from another node; they get a sync wake-up once subscribed")]
        public static partial void TookGroups(ILogger logger, string tenant, string connector, int count);

        [LoggerMessage(EventId = 3179, Level = LogLevel.Warning, Message = "EWS streaming for {Tenant}/{Connector}: an event arrived after the group's lease (token {Token}) was lost; dropped, the new owner wakes the device")]
        public static partial void Fenced(ILogger logger, string tenant, string connector, long token);
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
            .Validate(o => o.ReconcileInterval > TimeSpan.Zero && o.ReconcileInterval <= EwsStreamingWorkerOptions.MaxReconcileInterval, "Herald:EwsStreaming:ReconcileInterval must be positive and at most a day.")
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
