using Herald.Core.Events;
using Herald.Core.Security;
using Microsoft.Extensions.Logging;

namespace Herald.Sources.Ews.Streaming;

/// <summary>Receives what the streaming connector hears. Calls for one mailbox come in order; the group waits for each.</summary>
public interface IEwsStreamingSink
{
    /// <summary>Events of <paramref name="mailbox"/>. Return only once they are safely handed on (the group reads no further meanwhile).</summary>
    Task OnNotificationAsync(string mailbox, MailboxNotification notification, CancellationToken cancellationToken);

    /// <summary>Events of <paramref name="mailbox"/> may have been lost (missed events, a subscription that had to be recreated): the device should sync.</summary>
    Task OnMissedAsync(string mailbox, CancellationToken cancellationToken);
}

/// <summary>A snapshot of a group, for tests, metrics and the console.</summary>
/// <param name="Id">The group's number within its connector.</param>
/// <param name="Key">EWS URL and GroupingInformation.</param>
/// <param name="AnchorMailbox">X-AnchorMailbox.</param>
/// <param name="BackEndCookie">The affinity cookie, once known.</param>
/// <param name="Members">Members, alphabetically.</param>
/// <param name="Subscribed">Members with a live subscription.</param>
/// <param name="Connected">Whether a GetStreamingEvents response is open.</param>
/// <param name="ConnectionsOpened">GetStreamingEvents responses opened so far.</param>
/// <param name="LastHeartbeatAt">When the open stream last delivered anything (a heartbeat or events).</param>
/// <param name="LastEventAt">When it last delivered mailbox events.</param>
/// <param name="LastError">The EWS response code (or Herald's reason: HeartbeatTimeout, ConnectionDropped…) of the last failure since a stream last opened; null while healthy.</param>
public sealed record EwsGroupSnapshot(int Id, string Key, string AnchorMailbox, string? BackEndCookie, IReadOnlyList<string> Members, int Subscribed, bool Connected, long ConnectionsOpened,
    DateTimeOffset? LastHeartbeatAt = null, DateTimeOffset? LastEventAt = null, string? LastError = null);

/// <summary>
/// One subscription group: up to 200 mailboxes with the same EWS URL and GroupingInformation, sharing the anchor
/// mailbox, the back-end cookie and one GetStreamingEvents connection. Its loop subscribes members (the first request
/// alone, to learn the cookie), opens the stream, reads envelopes as they arrive, and recovers from each EWS error as
/// Microsoft prescribes.
/// </summary>
internal sealed partial class EwsStreamingGroup : IDisposable
{
    private readonly EwsStreamingConnector _owner;
    private readonly EwsServiceClient _client;
    private readonly IEwsStreamingSink _sink;
    private readonly EwsStreamingOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly Lock _gate = new();
    private readonly SortedDictionary<string, Member> _members = new(StringComparer.OrdinalIgnoreCase);
    private readonly Dictionary<string, Member> _bySubscription = new(StringComparer.Ordinal);
    private readonly CancellationTokenSource _stop = new();
    private CancellationTokenSource _changed = new();
    private Task? _loop;
    private bool _connected;
    private long _connectionsOpened;
    private long _lastHeartbeatMs; // unix ms, 0: never (read by Snapshot without the lock)
    private long _lastEventMs;
    private string? _lastError;
    private int _failures;
    private bool _disposed;

    public EwsStreamingGroup(int id, EwsStreamingConnector owner, EwsGroupPlan plan, EwsServiceClient client, IEwsStreamingSink sink, EwsStreamingOptions options, TimeProvider time, ILogger logger, IReadOnlySet<string>? lost = null)
    {
        Id = id;
        _owner = owner;
        Key = plan.Key;
        EwsUrl = plan.EwsUrl;
        Affinity = new EwsAffinity(plan.AnchorMailbox);
        _client = client;
        _sink = sink;
        _options = options;
        _time = time;
        _logger = logger;
        foreach (var address in plan.Members)
        {
            _members[address] = new Member(address) { Lost = lost?.Contains(address) == true };
        }
    }

    public int Id { get; }

    public string Key { get; }

    public Uri EwsUrl { get; }

    public EwsAffinity Affinity { get; }

    public int Count
    {
        get { lock (_gate) { return _members.Count; } }
    }

    public bool Stopped => _stop.IsCancellationRequested;

    public EwsGroupSnapshot Snapshot()
    {
        lock (_gate)
        {
            return new EwsGroupSnapshot(Id, Key, Affinity.AnchorMailbox, Affinity.BackEndCookie, [.. _members.Keys], _members.Values.Count(m => m.SubscriptionId is not null), _connected, Interlocked.Read(ref _connectionsOpened),
                Ms(Interlocked.Read(ref _lastHeartbeatMs)), Ms(Interlocked.Read(ref _lastEventMs)), Volatile.Read(ref _lastError));
        }

        static DateTimeOffset? Ms(long ms) => ms == 0 ? null : DateTimeOffset.FromUnixTimeMilliseconds(ms);
    }

    private void Touch(ref long field) => Interlocked.Exchange(ref field, _time.GetUtcNow().ToUnixTimeMilliseconds());

    public void Start(CancellationToken lifetime)
    {
        var linked = CancellationTokenSource.CreateLinkedTokenSource(lifetime, _stop.Token);
        _loop = Task.Run(
            async () =>
            {
                try
                {
                    await RunAsync(linked.Token).ConfigureAwait(false);
                }
                finally
                {
                    linked.Dispose();
                }
            },
            CancellationToken.None);
    }

    /// <summary>Asks the loop to end without waiting for it (safe from inside the loop).</summary>
    public void RequestStop()
    {
        lock (_gate)
        {
            if (!_disposed)
            {
                _stop.Cancel();
            }
        }
    }

    /// <summary>Releases the cancellation sources (after the loop ended).</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            _stop.Dispose();
            _changed.Dispose();
        }
    }

    public async Task StopAsync()
    {
        RequestStop();
        if (_loop is not null)
        {
            try
            {
                await _loop.ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
            }
        }
    }

    /// <summary>Adds members (with subscriptions they already hold on this group's backend, when merging).</summary>
    public void Add(IEnumerable<(string Address, string? SubscriptionId)> members, IReadOnlySet<string>? lost = null)
    {
        lock (_gate)
        {
            foreach (var (address, subscriptionId) in members)
            {
                if (_members.ContainsKey(address))
                {
                    continue;
                }

                var member = new Member(address) { SubscriptionId = subscriptionId, Lost = lost?.Contains(address) == true };
                _members[address] = member;
                if (subscriptionId is not null)
                {
                    _bySubscription[subscriptionId] = member;
                }
            }
        }

        Changed();
    }

    /// <summary>Removes members; returns them with their subscription ids (to move them, or to unsubscribe).</summary>
    public List<(string Address, string? SubscriptionId)> Remove(IEnumerable<string> addresses)
    {
        var removed = new List<(string, string?)>();
        lock (_gate)
        {
            foreach (var address in addresses)
            {
                if (_members.Remove(address, out var member))
                {
                    if (member.SubscriptionId is not null)
                    {
                        _bySubscription.Remove(member.SubscriptionId);
                    }

                    removed.Add((member.Address, member.SubscriptionId));
                }
            }
        }

        if (removed.Count > 0)
        {
            Changed();
        }

        return removed;
    }

    /// <summary>Takes every member out (the group is being merged or dissolved).</summary>
    public List<(string Address, string? SubscriptionId)> TakeAll()
    {
        lock (_gate)
        {
            var all = _members.Values.Select(m => (m.Address, m.SubscriptionId)).ToList();
            _members.Clear();
            _bySubscription.Clear();
            return all;
        }
    }

    public Task UnsubscribeAsync(string address, string subscriptionId, CancellationToken cancellationToken) =>
        _client.UnsubscribeAsync(EwsUrl, Affinity, address, subscriptionId, cancellationToken);

    /// <summary>Membership changed: end the current connection so the next one carries the new set.</summary>
    private void Changed()
    {
        CancellationTokenSource old;
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }

            old = _changed;
            _changed = new CancellationTokenSource();
        }

        // Not disposed: the loop may still be linking to its token; a cancelled source holds no timer.
        old.Cancel();
    }

    private async Task RunAsync(CancellationToken cancellationToken)
    {
        while (!cancellationToken.IsCancellationRequested)
        {
            CancellationToken changed;
            lock (_gate)
            {
                changed = _changed.Token;
            }

            try
            {
                var ids = await SubscribeMembersAsync(cancellationToken).ConfigureAwait(false);
                if (ids.Count == 0)
                {
                    await WaitAsync(_options.MinBackOff, changed, cancellationToken).ConfigureAwait(false);
                    continue;
                }

                using var response = await _client.OpenStreamAsync(EwsUrl, Affinity, ids, cancellationToken).ConfigureAwait(false);
                Interlocked.Increment(ref _connectionsOpened);
                Volatile.Write(ref _lastError, null);
                lock (_gate)
                {
                    _connected = true;
                }

                try
                {
                    await ReadStreamAsync(response, changed, cancellationToken).ConfigureAwait(false);
                }
                finally
                {
                    lock (_gate)
                    {
                        _connected = false;
                    }
                }
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                return;
            }
            catch (EwsStreamingException ex)
            {
                Volatile.Write(ref _lastError, ex.ResponseCode ?? ex.Recovery.ToString());
                var delay = await RecoverAsync(ex, cancellationToken).ConfigureAwait(false);
                await WaitAsync(delay, CancellationToken.None, cancellationToken).ConfigureAwait(false);
            }
#pragma warning disable CA1031 // A group loop must survive anything and retry; the error is logged.
            catch (Exception ex)
#pragma warning restore CA1031
            {
                Log.Unexpected(_logger, ex, Id);
                await WaitAsync(NextBackOff(null), CancellationToken.None, cancellationToken).ConfigureAwait(false);
            }
        }
    }

    /// <summary>Subscribes members without a live subscription; returns every live subscription id.</summary>
    private async Task<List<string>> SubscribeMembersAsync(CancellationToken cancellationToken)
    {
        List<Member> pending;
        var now = _time.GetUtcNow();
        lock (_gate)
        {
            pending = [.. _members.Values.Where(m => m.SubscriptionId is null && m.RetryAt <= now)];
        }

        if (pending.Count > 0)
        {
            // Without the cookie, the first Subscribe goes alone (the anchor first, when it is a member) to pin the back end.
            var index = 0;
            while (Affinity.BackEndCookie is null && pending.Count > 0)
            {
                var first = pending.FirstOrDefault(m => string.Equals(m.Address, Affinity.AnchorMailbox, StringComparison.OrdinalIgnoreCase)) ?? pending[0];
                await SubscribeOneAsync(first, cancellationToken).ConfigureAwait(false);
                pending.Remove(first);
            }

            using var gate = new SemaphoreSlim(_options.SubscribeConcurrency);
            var tasks = new List<Task>(pending.Count);
            for (; index < pending.Count; index++)
            {
                await gate.WaitAsync(cancellationToken).ConfigureAwait(false);
                var member = pending[index];
                tasks.Add(Task.Run(
                    async () =>
                    {
                        try
                        {
                            await SubscribeOneAsync(member, cancellationToken).ConfigureAwait(false);
                        }
                        finally
                        {
                            gate.Release();
                        }
                    },
                    CancellationToken.None));
            }

            await Task.WhenAll(tasks).ConfigureAwait(false);
        }

        lock (_gate)
        {
            return [.. _members.Values.Where(m => m.SubscriptionId is not null).Select(m => m.SubscriptionId!)];
        }
    }

    private async Task SubscribeOneAsync(Member member, CancellationToken cancellationToken)
    {
        string id;
        try
        {
            id = await _client.SubscribeAsync(EwsUrl, Affinity, member.Address, cancellationToken).ConfigureAwait(false);
        }
        catch (EwsStreamingException ex) when (ex.Recovery is EwsRecovery.Rediscover)
        {
            // The mailbox is not where this group's cookie pins (it moved, or Autodiscover was stale): place it again.
            Log.MemberRediscover(_logger, Id, new RedactedToken(member.Address), ex.ResponseCode);
            bool wasLost;
            lock (_gate)
            {
                wasLost = member.Lost;
            }

            Remove([member.Address]);
            _owner.Rediscover([member.Address], wasLost);
            return;
        }
        catch (EwsStreamingException ex) when (ex.Recovery is EwsRecovery.MailboxFailed or EwsRecovery.Resubscribe or EwsRecovery.Missed)
        {
            Log.MemberFailed(_logger, Id, new RedactedToken(member.Address), ex.ResponseCode);
            lock (_gate)
            {
                member.RetryAt = _time.GetUtcNow() + _options.MaxBackOff;
            }

            return;
        }

        bool lost;
        lock (_gate)
        {
            if (!_members.TryGetValue(member.Address, out var current) || current != member)
            {
                lost = false; // removed meanwhile; the subscription expires on its own
            }
            else
            {
                member.SubscriptionId = id;
                _bySubscription[id] = member;
                lost = member.Lost;
                member.Lost = false;
            }
        }

        if (lost)
        {
            // The previous subscription vanished: whatever happened in between was not seen.
            await _sink.OnMissedAsync(member.Address, cancellationToken).ConfigureAwait(false);
        }
    }

    private async Task ReadStreamAsync(HttpResponseMessage response, CancellationToken changed, CancellationToken cancellationToken)
    {
        var stream = await response.Content.ReadAsStreamAsync(cancellationToken).ConfigureAwait(false);
        await using var _ = stream.ConfigureAwait(false);
        var splitter = new EwsEnvelopeSplitter();
        var started = _time.GetTimestamp();
        var planned = _options.ConnectionTimeout - _options.ReconnectMargin;
        while (true)
        {
            var remaining = planned - _time.GetElapsedTime(started);
            if (remaining <= TimeSpan.Zero)
            {
                Log.PlannedReconnect(_logger, Id);
                return; // reconnect before the server's ConnectionTimeout
            }

            var watchdog = remaining < _options.HeartbeatTimeout ? remaining : _options.HeartbeatTimeout;
            int read;
            using (var timer = new CancellationTokenSource(watchdog, _time))
            using (var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, changed, timer.Token))
            {
                try
                {
                    read = await stream.ReadAsync(splitter.GetWriteBuffer(), linked.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
                {
                    if (changed.IsCancellationRequested || _time.GetElapsedTime(started) >= planned)
                    {
                        return;
                    }

                    throw new EwsStreamingException(EwsRecovery.Reconnect, "HeartbeatTimeout");
                }
                catch (Exception ex) when (ex is IOException or HttpRequestException)
                {
                    throw new EwsStreamingException(EwsRecovery.Reconnect, "ConnectionDropped", null, null, ex);
                }
            }

            if (read == 0)
            {
                throw new EwsStreamingException(EwsRecovery.Reconnect, "StreamEnded");
            }

            splitter.Advance(read);
            while (true)
            {
                ReadOnlyMemory<byte> body;
                try
                {
                    if (!splitter.TryRead(out body))
                    {
                        break;
                    }
                }
                catch (InvalidDataException ex)
                {
                    throw new EwsStreamingException(EwsRecovery.Reconnect, "InvalidStream", null, null, ex);
                }

                if (!EwsNotificationParser.TryParseEnvelope(body, out var envelope, out var error))
                {
                    Log.BadEnvelope(_logger, Id, error.Code);
                    throw new EwsStreamingException(EwsRecovery.Reconnect, "InvalidEnvelope");
                }

                _failures = 0;
                Touch(ref _lastHeartbeatMs);
                if (await HandleEnvelopeAsync(envelope, cancellationToken).ConfigureAwait(false))
                {
                    return;
                }
            }
        }
    }

    /// <summary>Handles one envelope; true when the connection should end now (Closed, or subscriptions to recreate).</summary>
    private async Task<bool> HandleEnvelopeAsync(EwsEnvelope envelope, CancellationToken cancellationToken)
    {
        foreach (var notification in envelope.Notifications)
        {
            Member? member;
            lock (_gate)
            {
                member = notification.SubscriptionId is { } id ? _bySubscription.GetValueOrDefault(id) : null;
            }

            if (member is null || notification.Events.All(e => e.Kind == MailEventKind.Status))
            {
                continue;
            }

            Touch(ref _lastEventMs);
            await _sink.OnNotificationAsync(member.Address, notification, cancellationToken).ConfigureAwait(false);
        }

        if (envelope.ErrorCode is { } code)
        {
            var recovery = EwsStreamingException.Classify(code);
            if (recovery is EwsRecovery.Missed or EwsRecovery.Resubscribe)
            {
                var affected = TakeSubscriptions(envelope.ErrorSubscriptionIds, lost: recovery == EwsRecovery.Resubscribe);
                Log.SubscriptionsLost(_logger, Id, code, affected.Count);
                if (recovery == EwsRecovery.Missed)
                {
                    foreach (var address in affected)
                    {
                        await _sink.OnMissedAsync(address, cancellationToken).ConfigureAwait(false);
                    }
                }

                return true; // resubscribe them, then reconnect with the new ids
            }

            throw new EwsStreamingException(recovery, code, 200, envelope.BackOff);
        }

        return envelope.ConnectionStatus == EwsConnectionStatus.Closed;
    }

    /// <summary>Forgets the listed subscriptions (all, when none is listed); returns the affected addresses.</summary>
    private List<string> TakeSubscriptions(IReadOnlyList<string> ids, bool lost)
    {
        var affected = new List<string>();
        lock (_gate)
        {
            var members = ids.Count == 0
                ? _members.Values.Where(m => m.SubscriptionId is not null).ToList()
                : ids.Select(id => _bySubscription.GetValueOrDefault(id)).OfType<Member>().ToList();
            foreach (var member in members)
            {
                _bySubscription.Remove(member.SubscriptionId!);
                member.SubscriptionId = null;
                member.Lost = lost;
                affected.Add(member.Address);
            }
        }

        return affected;
    }

    private async Task<TimeSpan> RecoverAsync(EwsStreamingException ex, CancellationToken cancellationToken)
    {
        Log.Failed(_logger, Id, ex.Recovery, ex.ResponseCode, ex.HttpStatus);
        switch (ex.Recovery)
        {
            case EwsRecovery.Resubscribe:
                TakeSubscriptions([], lost: true);
                return TimeSpan.Zero;
            case EwsRecovery.Missed:
                foreach (var address in TakeSubscriptions([], lost: false))
                {
                    await _sink.OnMissedAsync(address, cancellationToken).ConfigureAwait(false);
                }

                return TimeSpan.Zero;
            case EwsRecovery.BackOff when ex.BackOff is TimeSpan wait:
                _failures++;
                return wait;
            case EwsRecovery.Rediscover:
                // The whole group's affinity is wrong: dissolve it and place every member again.
                _owner.Dissolve(this);
                return TimeSpan.Zero;
            case EwsRecovery.ConnectionLimit:
                if (_owner.TryPack(this))
                {
                    return TimeSpan.Zero; // merged into another group's connection; this loop is being stopped
                }

                // Nothing to pack into: a connection of ours the server has not yet seen close may still count.
                return NextBackOff(null);
            case EwsRecovery.Reconnect when _failures == 0:
                _failures++;
                return TimeSpan.Zero; // a dropped connection reconnects at once; repeated failures back off
            default:
                return NextBackOff(null);
        }
    }

    private TimeSpan NextBackOff(TimeSpan? floor)
    {
        var exponent = Math.Min(_failures, 16);
        _failures++;
        var delay = TimeSpan.FromTicks(Math.Min(_options.MaxBackOff.Ticks, _options.MinBackOff.Ticks * (1L << exponent)));
        return floor is TimeSpan f && delay < f ? f : delay;
    }

    private async Task WaitAsync(TimeSpan delay, CancellationToken wake, CancellationToken cancellationToken)
    {
        if (delay <= TimeSpan.Zero)
        {
            return;
        }

        using var linked = CancellationTokenSource.CreateLinkedTokenSource(wake, cancellationToken);
        try
        {
            await Task.Delay(delay, _time, linked.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
        }
    }

    private sealed class Member(string address)
    {
        public string Address { get; } = address;
        public string? SubscriptionId { get; set; }

        /// <summary>The previous subscription vanished: tell the sink once the new one exists.</summary>
        public bool Lost { get; set; }

        public DateTimeOffset RetryAt { get; set; }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 3150, Level = LogLevel.Warning, Message = "EWS streaming group {Group}: {Recovery} after {Code} (HTTP {Status})")]
        public static partial void Failed(ILogger logger, int group, EwsRecovery recovery, string? code, int? status);

        [LoggerMessage(EventId = 3151, Level = LogLevel.Information, Message = "EWS streaming group {Group}: {Code}, {Count} subscriptions to recreate")]
        public static partial void SubscriptionsLost(ILogger logger, int group, string code, int count);

        [LoggerMessage(EventId = 3152, Level = LogLevel.Warning, Message = "EWS streaming group {Group}: mailbox {Mailbox} moves to another group after {Code}")]
        public static partial void MemberRediscover(ILogger logger, int group, RedactedToken mailbox, string? code);

        [LoggerMessage(EventId = 3153, Level = LogLevel.Warning, Message = "EWS streaming group {Group}: mailbox {Mailbox} cannot be subscribed ({Code}); retrying later")]
        public static partial void MemberFailed(ILogger logger, int group, RedactedToken mailbox, string? code);

        [LoggerMessage(EventId = 3154, Level = LogLevel.Debug, Message = "EWS streaming group {Group}: reconnecting before the connection timeout")]
        public static partial void PlannedReconnect(ILogger logger, int group);

        [LoggerMessage(EventId = 3155, Level = LogLevel.Warning, Message = "EWS streaming group {Group}: unreadable envelope ({Code})")]
        public static partial void BadEnvelope(ILogger logger, int group, EwsParseErrorCode code);

        [LoggerMessage(EventId = 3156, Level = LogLevel.Error, Message = "EWS streaming group {Group}: unexpected failure")]
        public static partial void Unexpected(ILogger logger, Exception exception, int group);
    }
}
