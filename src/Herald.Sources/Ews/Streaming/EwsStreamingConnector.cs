using Herald.Core.Connectors;
using Herald.Sources.Ews.Autodiscover;
using Microsoft.Extensions.Logging;

namespace Herald.Sources.Ews.Streaming;

/// <summary>
/// The EWS streaming connector of one tenant's <c>ews</c> connector: holds a streaming subscription for every mailbox
/// it is given, grouped for affinity (<see cref="EwsGrouping"/>), one GetStreamingEvents connection per group, and hands
/// what it hears to an <see cref="IEwsStreamingSink"/>. Mailboxes come and go with <see cref="SetMailboxesAsync"/>; the
/// groups regroup themselves when Exchange says the affinity is wrong, and pack into fewer connections when the
/// account's hanging-connection limit is reached.
/// </summary>
public sealed partial class EwsStreamingConnector : IAsyncDisposable
{
    private readonly EwsStreamingOptions _options;
    private readonly IEwsStreamingSink _sink;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly EwsAuthenticator _auth;
    private readonly EwsAutodiscoverClient? _autodiscover;
    private readonly Uri? _staticUrl;
    private readonly SemaphoreSlim _placement = new(1, 1);
    private readonly Lock _gate = new();
    private readonly List<EwsStreamingGroup> _groups = [];
    private readonly Dictionary<string, EwsStreamingGroup> _placed = new(StringComparer.OrdinalIgnoreCase);
    private readonly Dictionary<string, Uri> _urls = new(StringComparer.OrdinalIgnoreCase);
    private readonly HashSet<string> _unplaced = new(StringComparer.OrdinalIgnoreCase);
    private readonly HashSet<string> _lost = new(StringComparer.OrdinalIgnoreCase); // to be told "missed" once subscribed again
    private readonly HashSet<Task> _background = [];
    private readonly CancellationTokenSource _lifetime = new();
    private int _nextGroupId;
    private bool _disposed;

    /// <summary>A connector for <paramref name="config"/> (an <c>ews</c> connector's settings, secrets opened).</summary>
    public EwsStreamingConnector(ConnectorConfig config, EwsStreamingOptions options, IEwsStreamingSink sink, EwsHttp http, TimeProvider time, ILogger logger)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(http);
        _options = options ?? throw new ArgumentNullException(nameof(options));
        _options.Validate();
        _sink = sink ?? throw new ArgumentNullException(nameof(sink));
        _time = time ?? throw new ArgumentNullException(nameof(time));
        _logger = logger ?? throw new ArgumentNullException(nameof(logger));
        if (config.Auth is null)
        {
            throw new ArgumentException("An ews connector needs auth.", nameof(config));
        }

        _auth = new EwsAuthenticator(config.Auth, http, time, options);
        Client = new EwsServiceClient(http, _auth, time, options);
        if (!string.IsNullOrEmpty(config.EwsUrl) && !config.Autodiscover)
        {
            _staticUrl = new Uri(config.EwsUrl, UriKind.Absolute);
        }
        else
        {
            var autodiscoverUrl = string.IsNullOrEmpty(config.AutodiscoverUrl) ? null : new Uri(config.AutodiscoverUrl, UriKind.Absolute);
            _autodiscover = new EwsAutodiscoverClient(http, _auth, time, options, autodiscoverUrl);
            if (!string.IsNullOrEmpty(config.EwsUrl))
            {
                _staticUrl = new Uri(config.EwsUrl, UriKind.Absolute); // the fallback when Autodiscover does not know a mailbox
            }
        }
    }

    /// <summary>The EWS operations (GetItem and GetFolder for previews and badges).</summary>
    public EwsServiceClient Client { get; }

    /// <summary>The Autodiscover client, when this connector uses Autodiscover.</summary>
    public EwsAutodiscoverClient? Autodiscover => _autodiscover;

    /// <summary>The running groups.</summary>
    public IReadOnlyList<EwsGroupSnapshot> Groups
    {
        get
        {
            lock (_gate)
            {
                return [.. _groups.Where(g => !g.Stopped).Select(g => g.Snapshot()).OrderBy(g => g.Id)];
            }
        }
    }

    /// <summary>Mailboxes that could not be placed yet (Autodiscover did not answer for them); retried on the next <see cref="SetMailboxesAsync"/>.</summary>
    public IReadOnlyCollection<string> Unplaced
    {
        get { lock (_gate) { return [.. _unplaced]; } }
    }

    /// <summary>The EWS URL of a placed mailbox, or null.</summary>
    public Uri? EwsUrlOf(string mailbox)
    {
        lock (_gate)
        {
            return _urls.GetValueOrDefault(mailbox);
        }
    }

    /// <summary>
    /// Makes the set of streamed mailboxes <paramref name="mailboxes"/>: new ones are resolved, grouped and subscribed,
    /// missing ones unsubscribed, unplaced ones retried. New mailboxes in <paramref name="missed"/> (streamed elsewhere
    /// until now, e.g. by another node of a farm) get a missed-events notice once subscribed, so their devices sync.
    /// </summary>
    public async Task SetMailboxesAsync(IReadOnlyCollection<string> mailboxes, CancellationToken cancellationToken, IReadOnlyCollection<string>? missed = null)
    {
        ArgumentNullException.ThrowIfNull(mailboxes);
        ObjectDisposedException.ThrowIf(_disposed, this);
        await _placement.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var desired = new HashSet<string>(mailboxes, StringComparer.OrdinalIgnoreCase);
            List<string> toPlace;
            var removals = new List<(EwsStreamingGroup Group, List<string> Addresses)>();
            lock (_gate)
            {
                _unplaced.IntersectWith(desired);
                _lost.IntersectWith(desired);
                if (missed is not null)
                {
                    _lost.UnionWith(missed.Where(a => desired.Contains(a) && !_placed.ContainsKey(a)));
                }
                foreach (var byGroup in _placed.Where(p => !desired.Contains(p.Key)).GroupBy(p => p.Value))
                {
                    removals.Add((byGroup.Key, byGroup.Select(p => p.Key).ToList()));
                }

                foreach (var (_, addresses) in removals)
                {
                    foreach (var address in addresses)
                    {
                        _placed.Remove(address);
                        _urls.Remove(address);
                    }
                }

                toPlace = desired.Where(a => !_placed.ContainsKey(a)).ToList();
            }

            foreach (var (group, addresses) in removals)
            {
                var gone = group.Remove(addresses);
                Background(async token =>
                {
                    foreach (var (address, subscriptionId) in gone)
                    {
                        if (subscriptionId is not null)
                        {
                            await group.UnsubscribeAsync(address, subscriptionId, token).ConfigureAwait(false);
                        }
                    }
                });
                if (group.Count == 0)
                {
                    RemoveGroup(group);
                }
            }

            if (toPlace.Count > 0)
            {
                await PlaceAsync(toPlace, cancellationToken).ConfigureAwait(false);
            }
        }
        finally
        {
            _placement.Release();
        }
    }

    /// <summary>Stops every group and waits for them.</summary>
    public async ValueTask DisposeAsync()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        await _lifetime.CancelAsync().ConfigureAwait(false);
        EwsStreamingGroup[] groups;
        Task[] background;
        lock (_gate)
        {
            groups = [.. _groups];
            _groups.Clear();
        }

        lock (_background)
        {
            background = [.. _background];
        }

        await Task.WhenAll(groups.Select(g => g.StopAsync())).ConfigureAwait(false);
        foreach (var group in groups)
        {
            group.Dispose();
        }

        try
        {
            await Task.WhenAll(background).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }

        _auth.Dispose();
        _lifetime.Dispose();
    }

    /// <summary>Addresses a group could not subscribe where its cookie pins: forget their Autodiscover answer and place them again.</summary>
    internal void Rediscover(IReadOnlyList<string> addresses, bool lost)
    {
        lock (_gate)
        {
            foreach (var address in addresses)
            {
                if (lost)
                {
                    _lost.Add(address);
                }

                _placed.Remove(address);
                _urls.Remove(address);
                _autodiscover?.Invalidate(address);
            }
        }

        Background(async token =>
        {
            await _placement.WaitAsync(token).ConfigureAwait(false);
            try
            {
                await PlaceAsync(addresses.Where(a => !IsPlaced(a)).ToList(), token).ConfigureAwait(false);
            }
            finally
            {
                _placement.Release();
            }
        });
    }

    /// <summary>The group's affinity is wrong as a whole (ErrorProxyRequestNotAllowed, ErrorReadEventsFailed): dissolve and place again.</summary>
    internal void Dissolve(EwsStreamingGroup group)
    {
        var members = group.TakeAll();
        RemoveGroup(group);
        Log.Dissolved(_logger, group.Id, members.Count);
        Rediscover([.. members.Select(m => m.Address)], lost: true); // events queued on the abandoned subscriptions are never read
    }

    /// <summary>
    /// ErrorExceededConnectionCount: move the group's members (and their subscriptions, which live on the same back
    /// end) into another group of the same key with room, so one connection fewer is needed. False when none has room.
    /// </summary>
    internal bool TryPack(EwsStreamingGroup group)
    {
        lock (_gate)
        {
            var size = group.Count;
            var target = _groups
                .Where(g => g != group && !g.Stopped && g.Key == group.Key && g.Count + size <= EwsGrouping.MaxPerConnection)
                .OrderByDescending(g => g.Count)
                .FirstOrDefault();
            if (target is null)
            {
                return false;
            }

            var members = group.TakeAll();
            _groups.Remove(group);
            group.RequestStop();
            target.Add(members);
            foreach (var (address, _) in members)
            {
                _placed[address] = target;
            }

            Log.Packed(_logger, group.Id, target.Id, members.Count);
            return true;
        }
    }

    private bool IsPlaced(string address)
    {
        lock (_gate)
        {
            return _placed.ContainsKey(address);
        }
    }

    /// <summary>
    /// Where each of <paramref name="addresses"/> must be streamed (EWS URL and grouping), by Autodiscover (cached) or
    /// the static EWS URL; addresses Autodiscover cannot place yet are left out. A farm forms the same groups on every
    /// node from these (<see cref="EwsGrouping.Plan"/>) to lease them.
    /// </summary>
    public async Task<IReadOnlyList<EwsMailboxPlacement>> ResolvePlacementsAsync(IReadOnlyCollection<string> addresses, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(addresses);
        var placements = new List<EwsMailboxPlacement>(addresses.Count);
        if (addresses.Count == 0)
        {
            return placements;
        }

        if (_autodiscover is null)
        {
            placements.AddRange(addresses.Select(a => new EwsMailboxPlacement(a, _staticUrl!, string.Empty)));
            return placements;
        }

        IReadOnlyDictionary<string, EwsUserSettings> resolved;
        try
        {
            resolved = await _autodiscover.ResolveAsync(addresses, cancellationToken).ConfigureAwait(false);
        }
        catch (EwsStreamingException ex)
        {
            Log.AutodiscoverFailed(_logger, ex.ResponseCode, ex.HttpStatus, addresses.Count);
            resolved = new Dictionary<string, EwsUserSettings>();
        }

        foreach (var address in addresses)
        {
            if (resolved.TryGetValue(address, out var settings))
            {
                placements.Add(new EwsMailboxPlacement(address, settings.EwsUrl, settings.GroupingInformation));
            }
            else if (_staticUrl is not null)
            {
                placements.Add(new EwsMailboxPlacement(address, _staticUrl, string.Empty));
            }
        }

        return placements;
    }

    /// <summary>Resolves and groups <paramref name="addresses"/> (caller holds the placement lock).</summary>
    private async Task PlaceAsync(List<string> addresses, CancellationToken cancellationToken)
    {
        if (addresses.Count == 0)
        {
            return;
        }

        var placements = await ResolvePlacementsAsync(addresses, cancellationToken).ConfigureAwait(false);
        if (placements.Count < addresses.Count)
        {
            var placed = placements.Select(p => p.Address).ToHashSet(StringComparer.OrdinalIgnoreCase);
            lock (_gate)
            {
                _unplaced.UnionWith(addresses.Where(a => !placed.Contains(a)));
            }
        }

        var started = new List<EwsStreamingGroup>();
        lock (_gate)
        {
            var leftover = new List<EwsMailboxPlacement>();
            foreach (var byKey in placements.GroupBy(p => p.Key, StringComparer.Ordinal))
            {
                var queue = new Queue<EwsMailboxPlacement>(byKey.OrderBy(p => p.Address, StringComparer.OrdinalIgnoreCase));
                foreach (var group in _groups.Where(g => !g.Stopped && g.Key == byKey.Key))
                {
                    var room = _options.MaxGroupSize - group.Count;
                    var batch = new List<(string, string?)>();
                    while (room-- > 0 && queue.Count > 0)
                    {
                        var placement = queue.Dequeue();
                        batch.Add((placement.Address, null));
                        Placed(placement, group);
                    }

                    if (batch.Count > 0)
                    {
                        group.Add(batch, _lost);
                    }
                }

                leftover.AddRange(queue);
            }

            foreach (var plan in EwsGrouping.Plan(leftover, _options.MaxGroupSize))
            {
                var group = new EwsStreamingGroup(++_nextGroupId, this, plan, Client, _sink, _options, _time, _logger, _lost);
                _groups.Add(group);
                foreach (var placement in leftover.Where(p => p.Key == plan.Key && plan.Members.Contains(p.Address, StringComparer.OrdinalIgnoreCase)))
                {
                    Placed(placement, group);
                }

                started.Add(group);
            }

            _lost.ExceptWith(_placed.Keys);
        }

        foreach (var group in started)
        {
            Log.GroupStarted(_logger, group.Id, group.Count);
            group.Start(_lifetime.Token);
        }
    }

    private void Placed(EwsMailboxPlacement placement, EwsStreamingGroup group)
    {
        _placed[placement.Address] = group;
        _urls[placement.Address] = placement.EwsUrl;
        _unplaced.Remove(placement.Address);
    }

    private void RemoveGroup(EwsStreamingGroup group)
    {
        lock (_gate)
        {
            _groups.Remove(group);
        }

        group.RequestStop();
    }

    private void Background(Func<CancellationToken, Task> work)
    {
        lock (_background)
        {
            if (_lifetime.IsCancellationRequested)
            {
                return;
            }

            var token = _lifetime.Token;
            var task = Task.Run(
                async () =>
                {
                    try
                    {
                        await work(token).ConfigureAwait(false);
                    }
                    catch (OperationCanceledException) when (token.IsCancellationRequested)
                    {
                    }
#pragma warning disable CA1031 // Background placement must not crash the process; it is logged and retried by the next update.
                    catch (Exception ex)
#pragma warning restore CA1031
                    {
                        Log.BackgroundFailed(_logger, ex);
                    }
                },
                CancellationToken.None);
            _background.Add(task);
            _ = task.ContinueWith(
                t =>
                {
                    lock (_background)
                    {
                        _background.Remove(t);
                    }
                },
                CancellationToken.None,
                TaskContinuationOptions.ExecuteSynchronously,
                TaskScheduler.Default);
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 3160, Level = LogLevel.Information, Message = "EWS streaming group {Group} started with {Count} mailboxes")]
        public static partial void GroupStarted(ILogger logger, int group, int count);

        [LoggerMessage(EventId = 3161, Level = LogLevel.Warning, Message = "EWS streaming group {Group} dissolved ({Count} mailboxes to place again)")]
        public static partial void Dissolved(ILogger logger, int group, int count);

        [LoggerMessage(EventId = 3162, Level = LogLevel.Information, Message = "EWS streaming group {Group} packed into group {Target} ({Count} mailboxes) to respect the connection limit")]
        public static partial void Packed(ILogger logger, int group, int target, int count);

        [LoggerMessage(EventId = 3163, Level = LogLevel.Warning, Message = "EWS Autodiscover failed ({Code}, HTTP {Status}) for {Count} mailboxes; retrying later")]
        public static partial void AutodiscoverFailed(ILogger logger, string? code, int? status, int count);

        [LoggerMessage(EventId = 3164, Level = LogLevel.Error, Message = "EWS streaming background work failed")]
        public static partial void BackgroundFailed(ILogger logger, Exception exception);
    }
}
