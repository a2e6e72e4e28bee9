using System.Threading.Channels;
using Herald.Core.Metrics;
using Herald.Core.Notifications;
using Herald.Core.Planning;
using Herald.Core.Ports;
using Herald.Core.Registrations;
using Herald.Core.Security;
using Herald.Core.Settings;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Herald.Core.Pipeline;

/// <summary>Options of the dispatcher.</summary>
public sealed class DispatchOptions
{
    /// <summary>Notifications claimed in one statement.</summary>
    public int BatchSize { get; set; } = 256;

    /// <summary>Sends in flight at most (two batches: one sending while the next is claimed).</summary>
    public int MaxInFlight { get; set; } = 512;

    /// <summary>How long a claim is ours; after that a reaper gives it to someone else.</summary>
    public TimeSpan Lease { get; set; } = TimeSpan.FromMinutes(2);

    /// <summary>The longest the dispatcher sleeps without a signal: the safety net, not the trigger.</summary>
    public TimeSpan IdlePoll { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>How often expired leases are returned to the queue.</summary>
    public TimeSpan ReaperInterval { get; set; } = TimeSpan.FromSeconds(15);
}

/// <summary>Counters the dispatcher keeps for health and progress.</summary>
public sealed class DispatchCounters(TimeProvider time)
{
    private readonly long[] _sentPerSecond = new long[60];
    private readonly long[] _secondOf = new long[60];
    private long _sent;
    private long _retried;
    private long _failed;
    private long _dead;
    private long _expired;
    private long _deactivated;

    public long Sent => Interlocked.Read(ref _sent);
    public long Retried => Interlocked.Read(ref _retried);
    public long Failed => Interlocked.Read(ref _failed);
    public long Dead => Interlocked.Read(ref _dead);
    public long Expired => Interlocked.Read(ref _expired);
    public long Deactivated => Interlocked.Read(ref _deactivated);

    /// <summary>Accepted sends per second, averaged over the last minute.</summary>
    public double SentPerSecond
    {
        get
        {
            var now = time.GetUtcNow().ToUnixTimeSeconds();
            long total = 0;
            lock (_sentPerSecond)
            {
                for (var i = 0; i < 60; i++)
                {
                    if (now - _secondOf[i] < 60)
                    {
                        total += _sentPerSecond[i];
                    }
                }
            }

            return total / 60.0;
        }
    }

    internal void Count(DeliveryOutcome outcome)
    {
        switch (outcome.State)
        {
            case NotificationState.Sent:
                Interlocked.Increment(ref _sent);
                var second = outcome.CompletedAt.ToUnixTimeSeconds();
                lock (_sentPerSecond)
                {
                    var slot = (int)(second % 60);
                    if (_secondOf[slot] != second)
                    {
                        _secondOf[slot] = second;
                        _sentPerSecond[slot] = 0;
                    }

                    _sentPerSecond[slot]++;
                }

                break;
            case NotificationState.Retrying: Interlocked.Increment(ref _retried); break;
            case NotificationState.Failed: Interlocked.Increment(ref _failed); break;
            case NotificationState.Dead: Interlocked.Increment(ref _dead); break;
            case NotificationState.Expired: Interlocked.Increment(ref _expired); break;
        }

        if (outcome.DeactivateRegistration)
        {
            Interlocked.Increment(ref _deactivated);
        }
    }
}

/// <summary>
/// Notifications out: claims due notifications in batches (leases), sends them concurrently through
/// the providers, and records the outcomes in batches. Sleeps on <see cref="QueueSignal"/> when idle.
/// </summary>
public sealed partial class Dispatcher : IDisposable
{
    private readonly INotificationQueue _queue;
    private readonly Dictionary<Platform, IPushProvider> _providers;
    private readonly QueueSignal _signal;
    private readonly TimeProvider _time;
    private readonly IOptionsMonitor<DispatchOptions> _options;
    private readonly SettingsMonitor _settings;
    private readonly LaneThrottle _throttle;
    private readonly CredentialHealth _credentials;
    private readonly ILogger<Dispatcher> _logger;
    private readonly HeraldMetrics? _metrics;
    private readonly Channel<DeliveryOutcome> _outcomes = Channel.CreateUnbounded<DeliveryOutcome>(new UnboundedChannelOptions { SingleReader = true });
    private readonly AsyncSignal _slotFreed = new();
    private readonly System.Collections.Concurrent.ConcurrentDictionary<long, long> _leased = new(); // in-flight id -> claim timestamp
    private readonly IPreviewCache? _previews;
    private int _inFlight;

    public Dispatcher(
        INotificationQueue queue,
        IEnumerable<IPushProvider> providers,
        QueueSignal signal,
        TimeProvider time,
        IOptionsMonitor<DispatchOptions> options,
        SettingsMonitor settings,
        LaneThrottle throttle,
        CredentialHealth credentials,
        ILogger<Dispatcher> logger,
        NodeIdentity node,
        IPreviewCache? previews = null,
        HeraldMetrics? metrics = null)
    {
        _metrics = metrics;
        ArgumentNullException.ThrowIfNull(providers);
        ArgumentNullException.ThrowIfNull(node);
        _queue = queue;
        _providers = providers.ToDictionary(p => p.Platform);
        _signal = signal;
        _time = time;
        _options = options;
        _settings = settings;
        _throttle = throttle;
        _credentials = credentials;
        _settings.Changed += _ => _signal.Notify(); // a new rate applies at once
        _logger = logger;
        Owner = node.LeaseOwner;
        _previews = previews;
        Counters = new DispatchCounters(time);
    }

    /// <summary>The lease owner name of this process.</summary>
    public string Owner { get; }

    public DispatchCounters Counters { get; }

    /// <summary>Raised after outcomes are recorded (for progress displays and tests).</summary>
    public event Action<IReadOnlyList<DeliveryOutcome>>? Completed;

    /// <summary>Runs the claim loop and the completion loop until cancelled.</summary>
    public async Task RunAsync(CancellationToken cancellationToken)
    {
        var completion = Task.Run(() => CompleteLoopAsync(cancellationToken), CancellationToken.None);
        var renewal = Task.Run(() => RenewLoopAsync(cancellationToken), CancellationToken.None);
        try
        {
            await ClaimLoopAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            // Shutting down.
        }
        finally
        {
            // Let in-flight sends finish (they are cancelled with the host) so their outcomes are recorded;
            // anything still leased after that is returned to the queue by the next start or the reaper.
            for (var i = 0; i < 100 && Volatile.Read(ref _inFlight) > 0; i++)
            {
                await Task.Delay(TimeSpan.FromMilliseconds(50), _time, CancellationToken.None).ConfigureAwait(false);
            }

            _outcomes.Writer.TryComplete();
            await completion.ConfigureAwait(false);
            await renewal.ConfigureAwait(false);
        }
    }

    private async Task ClaimLoopAsync(CancellationToken cancellationToken)
    {
        // Whether standard-lane work may be waiting: cleared when a claim finds none, set again by any
        // wake-up, so an idle throttled lane costs no token round trips.
        var standardBacklog = true;
        var standardCheckedAt = _time.GetTimestamp();
        while (!cancellationToken.IsCancellationRequested)
        {
            if (!standardBacklog && _time.GetElapsedTime(standardCheckedAt) >= TimeSpan.FromMilliseconds(500))
            {
                standardBacklog = true; // busy with priority work: still look at the standard lane twice a second
            }

            var o = _options.CurrentValue;
            var batchSize = Math.Max(1, o.BatchSize);
            var maxInFlight = Math.Max(batchSize, o.MaxInFlight);

            // Keep one batch in flight while the next is claimed; wait for room otherwise.
            if (Volatile.Read(ref _inFlight) + batchSize > maxInFlight)
            {
                await _slotFreed.WaitAsync(TimeSpan.FromSeconds(1), _time, cancellationToken).ConfigureAwait(false);
                continue;
            }

            var settings = _settings.Current;
            var standard = settings.Standard;
            IReadOnlyList<ClaimedNotification> claimed;
            int standardAllowed = 0;
            try
            {
                standardAllowed = standardBacklog ? await _throttle.AcquireAsync(batchSize, standard, cancellationToken).ConfigureAwait(false) : 0;
                claimed = await _queue.ClaimAsync(Owner, new ClaimLimits(batchSize, standardAllowed), _time.GetUtcNow(), o.Lease, cancellationToken).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                Log.ClaimFailed(_logger, ex);
                await Task.Delay(TimeSpan.FromSeconds(1), _time, cancellationToken).ConfigureAwait(false);
                continue;
            }

            var standardClaimed = 0;
            foreach (var n in claimed)
            {
                if (n.Lane == Lane.Standard)
                {
                    standardClaimed++;
                }
            }

            if (standardClaimed < standardAllowed)
            {
                standardBacklog = false; // none (or fewer) due: give the tokens back
                standardCheckedAt = _time.GetTimestamp();
                try
                {
                    await _throttle.ReleaseAsync(standardAllowed - standardClaimed, standard, cancellationToken).ConfigureAwait(false);
                }
                catch (Exception ex) when (ex is not OperationCanceledException)
                {
                    Log.ClaimFailed(_logger, ex);
                }
            }

            if (claimed.Count == 0)
            {
                var throttled = standardBacklog && standardAllowed == 0 && standard.RatePerMinute is not null;
                await WaitForWorkAsync(o, throttled ? _throttle.UntilNextToken(standard) : null, cancellationToken).ConfigureAwait(false);
                standardBacklog = true;
                continue;
            }

            Interlocked.Add(ref _inFlight, claimed.Count);
            var claimedAt = _time.GetTimestamp();
            foreach (var notification in claimed)
            {
                _leased[notification.Id] = claimedAt;
                _ = SendOneAsync(notification, cancellationToken);
            }
        }
    }

    private async Task WaitForWorkAsync(DispatchOptions o, TimeSpan? untilToken, CancellationToken cancellationToken)
    {
        var wait = o.IdlePoll;
        if (untilToken is { } t && t < wait)
        {
            wait = t < TimeSpan.FromMilliseconds(10) ? TimeSpan.FromMilliseconds(10) : t;
        }

        try
        {
            // Only a due time in the future shortens the sleep: a row that is due but not claimable
            // (throttled, or its key is in flight) is woken by a token or a completion instead.
            if (await _queue.NextDueAsync(cancellationToken).ConfigureAwait(false) is { } due)
            {
                var untilDue = due - _time.GetUtcNow();
                if (untilDue > TimeSpan.Zero && untilDue < wait)
                {
                    wait = untilDue;
                }
            }
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            Log.ClaimFailed(_logger, ex);
        }

        await _signal.WaitAsync(wait, _time, cancellationToken).ConfigureAwait(false);
    }

    private async Task SendOneAsync(ClaimedNotification notification, CancellationToken cancellationToken)
    {
        DeliveryOutcome outcome;
        try
        {
            // One asynchronous step per send: this method awaits the provider directly.
            var now = _time.GetUtcNow();
            if (notification.ExpiresAt is { } expires && expires <= now)
            {
                outcome = Outcome(notification, NotificationState.Expired, now, reason: "Expired");
            }
            else if (!_providers.TryGetValue(notification.Platform, out var provider))
            {
                outcome = Outcome(notification, NotificationState.Failed, now, reason: "PlatformNotConfigured");
            }
            else
            {
                var started = _time.GetTimestamp();
                var result = await provider.SendAsync(WithPreview(notification, now), cancellationToken).ConfigureAwait(false);
                _metrics?.ProviderSend(notification.Platform, result, _time.GetElapsedTime(started));
                outcome = Decide(notification, result, _time.GetUtcNow());
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            // Shutting down mid-send: APNs may or may not have it; send again after restart (a duplicate, never a loss).
            outcome = Outcome(notification, NotificationState.Retrying, _time.GetUtcNow(), reason: "Shutdown") with { RetryAt = _time.GetUtcNow() };
        }
        catch (Exception ex)
        {
            // Never lose the claim: an unexpected fault is a transient one.
            Log.SendCrashed(_logger, notification.Id, ex);
            outcome = Decide(notification, new PushResult(PushOutcome.Retry, 0, "InternalError"), _time.GetUtcNow());
        }

        _metrics?.Outcome(notification.Lane, notification.Platform, outcome.State, notification.EventAt, outcome.CompletedAt);
        _outcomes.Writer.TryWrite(outcome);
        _leased.TryRemove(notification.Id, out _);
        var inFlight = Interlocked.Decrement(ref _inFlight);
        if (inFlight <= Math.Max(1, _options.CurrentValue.BatchSize))
        {
            _slotFreed.Set();
        }
    }

    /// <summary>A preview alert with the sender as title and the subject as body, from memory; as queued otherwise (generic text).</summary>
    private ClaimedNotification WithPreview(ClaimedNotification notification, DateTimeOffset now)
    {
        if (!notification.Content.UsePreview || _previews is null || notification.RegistrationId is not { } registrationId
            || !_previews.TryGet(registrationId, now, out var preview))
        {
            return notification;
        }

        if (notification.Content.EncryptTo is not null)
        {
            return notification.WithContent(EncryptedPreview.Seal(notification.Content, registrationId, preview)); // style preview-encrypted
        }

        return notification.WithContent(notification.Content with
        {
            Title = string.IsNullOrEmpty(preview.From) ? notification.Content.Title : preview.From,
            Body = string.IsNullOrEmpty(preview.Subject) ? notification.Content.Body : preview.Subject,
        });
    }

    /// <summary>Maps a provider result to the notification's next state under the retry policy.</summary>
    internal DeliveryOutcome Decide(ClaimedNotification notification, PushResult result, DateTimeOffset now)
    {
        switch (result.Outcome)
        {
            case PushOutcome.Sent:
                _credentials.Clear(notification.Platform);
                return Outcome(notification, NotificationState.Sent, now, result.StatusCode, result.Reason); // e.g. WNS "Dropped"
            case PushOutcome.Failed:
                Log.PermanentFailure(_logger, notification.Id, result.StatusCode, result.Reason);
                return Outcome(notification, NotificationState.Failed, now, result.StatusCode, result.Reason);
            case PushOutcome.TokenInvalid:
                Log.TokenInvalid(_logger, notification.Id, new RedactedToken(notification.Token), result.StatusCode, result.Reason);
                return Outcome(notification, NotificationState.Failed, now, result.StatusCode, result.Reason) with
                {
                    DeactivateRegistration = notification.RegistrationId is not null,
                    TokenInvalidSince = result.TokenInvalidSince,
                };
            default:
                if (result.Outcome == PushOutcome.CredentialFault)
                {
                    _credentials.Report(notification.Platform, now, result.StatusCode, result.Reason);
                }

                var settings = _settings.Current;
                var retry = settings.Retry;

                // A credential fault is not the notification's: its work waits (until its TTL) for a working or
                // replaced credential instead of dying while the credential's circuit is open.
                if (notification.Attempt >= settings.MaxAttemptsFor(notification.Lane) && result.Outcome != PushOutcome.CredentialFault)
                {
                    return Outcome(notification, NotificationState.Dead, now, result.StatusCode, result.Reason);
                }

                var delay = RetryPolicy.NextDelay(retry, notification.Attempt, result.RetryAfter, Random.Shared.NextDouble());
                var at = now + delay;
                if (notification.ExpiresAt is { } expires && at >= expires)
                {
                    return Outcome(notification, NotificationState.Expired, now, result.StatusCode, result.Reason);
                }

                Log.WillRetry(_logger, notification.Id, notification.Attempt, result.StatusCode, result.Reason, delay);
                return Outcome(notification, NotificationState.Retrying, now, result.StatusCode, result.Reason) with { RetryAt = at };
        }
    }

    private static DeliveryOutcome Outcome(ClaimedNotification n, NotificationState state, DateTimeOffset now, int status = 0, string? reason = null)
        => new()
        {
            NotificationId = n.Id,
            RegistrationId = n.RegistrationId,
            State = state,
            StatusCode = status,
            Reason = reason,
            CompletedAt = now,
            Attempt = n.Attempt,
        };

    /// <summary>
    /// Keeps the leases of long sends (a stalled connection, a slow provider) alive: every third of the lease, the sends in
    /// flight for longer than that get their lease extended, so the reaper never hands a row that is still being sent to
    /// another node. A lease this node lost is not renewed (the store fences it), and its completion is then ignored.
    /// </summary>
    private async Task RenewLoopAsync(CancellationToken cancellationToken)
    {
        var ids = new List<long>();
        while (!cancellationToken.IsCancellationRequested)
        {
            var lease = _options.CurrentValue.Lease;
            var every = lease / 3;
            try
            {
                await Task.Delay(every, _time, cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }

            ids.Clear();
            var now = _time.GetTimestamp();
            foreach (var (id, claimedAt) in _leased)
            {
                if (_time.GetElapsedTime(claimedAt, now) >= every)
                {
                    ids.Add(id);
                }
            }

            if (ids.Count == 0)
            {
                continue;
            }

            try
            {
                await _queue.RenewLeasesAsync(Owner, ids, _time.GetUtcNow() + lease, cancellationToken).ConfigureAwait(false);
                foreach (var id in ids)
                {
                    if (_leased.TryGetValue(id, out var old))
                    {
                        _leased.TryUpdate(id, now, old); // not re-added if its send completed meanwhile
                    }
                }
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                Log.ClaimFailed(_logger, ex); // the next round tries again; an expired lease means a resend, never a loss
            }
        }
    }

    private async Task CompleteLoopAsync(CancellationToken cancellationToken)
    {
        var reader = _outcomes.Reader;
        var batch = new List<DeliveryOutcome>(1024);
        while (await reader.WaitToReadAsync(CancellationToken.None).ConfigureAwait(false))
        {
            batch.Clear();
            while (batch.Count < 2048 && reader.TryRead(out var outcome))
            {
                batch.Add(outcome);
            }

            // Outcomes are retried until stored; if we cannot store them, the leases expire and the
            // notifications are sent again: a duplicate, never a loss.
            for (var attempt = 1; ; attempt++)
            {
                try
                {
                    await _queue.CompleteAsync(Owner, batch, CancellationToken.None).ConfigureAwait(false);
                    break;
                }
                catch (Exception ex)
                {
                    Log.CompleteFailed(_logger, batch.Count, attempt, ex);
                    if (cancellationToken.IsCancellationRequested || attempt >= 30)
                    {
                        batch.Clear();
                        break;
                    }

                    await Task.Delay(TimeSpan.FromMilliseconds(Math.Min(2000, 50 * attempt)), _time, CancellationToken.None).ConfigureAwait(false);
                }
            }

            foreach (var outcome in batch)
            {
                Counters.Count(outcome);
            }

            if (batch.Count > 0)
            {
                Completed?.Invoke(batch.ToArray());

                // A completion can make work claimable (a row waiting for its key's send, a new retry time).
                _signal.Notify();
            }
        }
    }

    /// <inheritdoc />
    public void Dispose() => _slotFreed.Dispose();

    private static partial class Log
    {
        [LoggerMessage(EventId = 2001, Level = LogLevel.Error, Message = "Claiming notifications failed; retrying")]
        public static partial void ClaimFailed(ILogger logger, Exception exception);

        [LoggerMessage(EventId = 2002, Level = LogLevel.Error, Message = "Recording {Count} outcomes failed (attempt {Attempt})")]
        public static partial void CompleteFailed(ILogger logger, int count, int attempt, Exception exception);

        [LoggerMessage(EventId = 2003, Level = LogLevel.Error, Message = "Sending notification {Id} failed unexpectedly; it will be retried")]
        public static partial void SendCrashed(ILogger logger, long id, Exception exception);

        [LoggerMessage(EventId = 2004, Level = LogLevel.Warning, Message = "Notification {Id} failed permanently: {Status} {Reason}")]
        public static partial void PermanentFailure(ILogger logger, long id, int status, string? reason);

        [LoggerMessage(EventId = 2005, Level = LogLevel.Information, Message = "Notification {Id}: token {Token} is no longer valid ({Status} {Reason}); deactivating its registration")]
        public static partial void TokenInvalid(ILogger logger, long id, RedactedToken token, int status, string? reason);

        [LoggerMessage(EventId = 2006, Level = LogLevel.Debug, Message = "Notification {Id} attempt {Attempt} got {Status} {Reason}; retrying in {Delay}")]
        public static partial void WillRetry(ILogger logger, long id, int attempt, int status, string? reason, TimeSpan delay);
    }
}

/// <summary>Who this process is: the node name and a per-process lease owner id.</summary>
public sealed class NodeIdentity(string nodeName)
{
    public string NodeName { get; } = nodeName;

    /// <summary>Unique per process start, so a restarted node never mistakes a dead process's leases for its own.</summary>
    public string LeaseOwner { get; } = nodeName + "/" + Guid.NewGuid().ToString("N")[..12];
}

/// <summary>Returns expired leases to the queue periodically (the safety net for crashed senders).</summary>
public sealed class LeaseReaper(INotificationQueue queue, QueueSignal signal, TimeProvider time, IOptionsMonitor<DispatchOptions> options)
{
    /// <summary>Runs one sweep; returns how many leases were released.</summary>
    public async Task<int> SweepAsync(CancellationToken cancellationToken)
    {
        var released = await queue.ReleaseExpiredLeasesAsync(time.GetUtcNow(), cancellationToken).ConfigureAwait(false);
        if (released > 0)
        {
            signal.Notify();
        }

        return released;
    }

    /// <summary>Sweeps every <see cref="DispatchOptions.ReaperInterval"/> until cancelled.</summary>
    public async Task RunAsync(CancellationToken cancellationToken)
    {
        while (!cancellationToken.IsCancellationRequested)
        {
            try
            {
                await SweepAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                // Logged by the host's worker wrapper; the next sweep tries again.
                _ = ex;
            }

            await Task.Delay(options.CurrentValue.ReaperInterval, time, cancellationToken).ConfigureAwait(false);
        }
    }
}
