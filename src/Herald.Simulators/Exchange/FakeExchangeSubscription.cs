using System.Diagnostics.CodeAnalysis;

namespace Herald.Simulators.Exchange;

/// <summary>
/// One push subscription of <see cref="FakeExchange"/>: a simulated mailbox (inbox, unread messages), the events
/// not yet acknowledged, Exchange's retry state, and a record of every post for tests to inspect or await.
/// </summary>
/// <remarks>
/// Posts of one subscription are serialised, as Exchange does. Events that occur while a post is in flight or
/// while a failed one waits for its retry are sent together in the next post. Retries follow Exchange's
/// StatusFrequency rule: the first after 30 seconds, each later one after double the previous delay, and no retry
/// is scheduled that would fall more than StatusFrequency after the first failure; then the subscription expires.
/// (Microsoft's StatusFrequency page says the intervals double but its table lists the retries at 30 s, 1, 2, 4 …
/// minutes after the first failure; this fake follows the text: attempts at +0, +30 s, +90 s, +210 s ….)
/// </remarks>
[SuppressMessage("Design", "CA1001:Types that own disposable fields should be disposable", Justification = "The SemaphoreSlim never allocates a wait handle; the timers are disposed by FakeExchange.DisposeAsync.")]
public sealed class FakeExchangeSubscription
{
    private readonly FakeExchange _exchange;
    private readonly Lock _gate = new();
    private readonly SemaphoreSlim _sendLock = new(1, 1);
    private readonly List<FakeEvent> _pending = [];
    private readonly Queue<string> _unreadItems = new();
    private readonly Queue<ExchangePostAttempt> _attempts = new();
    private readonly List<(int Number, TaskCompletionSource<ExchangePostAttempt> Completion)> _waiters = [];
    private readonly ITimer _retryTimer;
    private readonly ITimer? _heartbeatTimer;

    private FakeSubscriptionState _state;
    private string _watermark;
    private long _watermarkCounter;
    private int _attemptsStarted;
    private int _attemptsFinished;
    private int _inFlight;
    private bool _retryScheduled;
    private TimeSpan _nextDelay;
    private DateTimeOffset? _firstFailureAt;
    private DateTimeOffset? _nextRetryAt;
    private DateTimeOffset? _endedAt;
    private ExchangePostAttempt? _lastAttempt;

    internal FakeExchangeSubscription(FakeExchange exchange, string id, Uri callbackUrl, TimeSpan statusFrequency, bool sendHeartbeats, FakeMailboxIds ids)
    {
        _exchange = exchange;
        Id = id;
        CallbackUrl = callbackUrl;
        StatusFrequency = statusFrequency;
        SendsHeartbeats = sendHeartbeats;
        Ids = ids;
        InboxFolderId = ids.NewFolderId();
        RootFolderId = ids.NewFolderId();
        _watermark = ids.Watermark(0);
        _nextDelay = exchange.Options.InitialRetryDelay;
        _retryTimer = exchange.TimeProvider.CreateTimer(static s => ((FakeExchangeSubscription)s!).OnRetryDue(), this, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        if (sendHeartbeats)
        {
            _heartbeatTimer = exchange.TimeProvider.CreateTimer(static s => ((FakeExchangeSubscription)s!).OnHeartbeatDue(), this, statusFrequency, Timeout.InfiniteTimeSpan);
        }
    }

    /// <summary>The SubscriptionId (base64, like Exchange's).</summary>
    public string Id { get; }

    /// <summary>Where notifications are posted.</summary>
    public Uri CallbackUrl { get; }

    /// <summary>The heartbeat interval, and the limit of the retry period.</summary>
    public TimeSpan StatusFrequency { get; }

    /// <summary>True when a StatusEvent is posted whenever StatusFrequency passes without a post.</summary>
    public bool SendsHeartbeats { get; }

    /// <summary>The mailbox's inbox folder id (parent of delivered items).</summary>
    public string InboxFolderId { get; }

    /// <summary>The id of the inbox's parent folder (msgfolderroot).</summary>
    public string RootFolderId { get; }

    internal FakeMailboxIds Ids { get; }

    /// <summary>Active, Unsubscribed or Expired.</summary>
    public FakeSubscriptionState State
    {
        get { lock (_gate) { return _state; } }
    }

    /// <summary>The inbox's unread count.</summary>
    public int UnreadCount
    {
        get { lock (_gate) { return _unreadItems.Count; } }
    }

    /// <summary>The watermark of the last acknowledged event (the next post's PreviousWatermark).</summary>
    public string Watermark
    {
        get { lock (_gate) { return _watermark; } }
    }

    /// <summary>Events not yet acknowledged by the listener.</summary>
    public int PendingEventCount
    {
        get { lock (_gate) { return _pending.Count; } }
    }

    /// <summary>Posts started so far (incremented before the request is sent).</summary>
    public int AttemptsStarted
    {
        get { lock (_gate) { return _attemptsStarted; } }
    }

    /// <summary>Posts finished so far.</summary>
    public int AttemptCount
    {
        get { lock (_gate) { return _attemptsFinished; } }
    }

    /// <summary>When the failed post will be retried, or null.</summary>
    public DateTimeOffset? NextRetryAt
    {
        get { lock (_gate) { return _nextRetryAt; } }
    }

    /// <summary>When the current run of failures began, or null while posts succeed.</summary>
    public DateTimeOffset? FirstFailureAt
    {
        get { lock (_gate) { return _firstFailureAt; } }
    }

    /// <summary>When the subscription was unsubscribed or expired, or null while active.</summary>
    public DateTimeOffset? EndedAt
    {
        get { lock (_gate) { return _endedAt; } }
    }

    /// <summary>The latest finished attempt, or null.</summary>
    public ExchangePostAttempt? LastAttempt
    {
        get { lock (_gate) { return _lastAttempt; } }
    }

    /// <summary>The most recent attempts (at most <see cref="FakeExchangeOptions.MaxRecordedAttempts"/>), oldest first.</summary>
    public IReadOnlyList<ExchangePostAttempt> Attempts
    {
        get { lock (_gate) { return [.. _attempts]; } }
    }

    /// <summary>
    /// Completes when attempt <paramref name="number"/> (1-based) has finished, with that attempt (or the latest, if
    /// it is no longer recorded). Fails with <see cref="InvalidOperationException"/> when the subscription ended
    /// before making it. Race-free: ask for the number before triggering it (for example <c>AttemptCount + 1</c>).
    /// </summary>
    public Task<ExchangePostAttempt> WaitForAttemptAsync(int number, CancellationToken cancellationToken)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(number, 1);
        lock (_gate)
        {
            if (_attemptsFinished >= number)
            {
                return Task.FromResult(Find(number));
            }

            if (_state != FakeSubscriptionState.Active && _attemptsStarted < number)
            {
                return Task.FromException<ExchangePostAttempt>(Ended());
            }

            var completion = new TaskCompletionSource<ExchangePostAttempt>(TaskCreationOptions.RunContinuationsAsynchronously);
            _waiters.Add((number, completion));
            return completion.Task.WaitAsync(cancellationToken);
        }
    }

    /// <summary>The next attempt to finish after this call (see <see cref="WaitForAttemptAsync"/> for the race-free form).</summary>
    public Task<ExchangePostAttempt> WaitForNextAttemptAsync(CancellationToken cancellationToken)
    {
        int next;
        lock (_gate)
        {
            next = _attemptsFinished + 1;
        }

        return WaitForAttemptAsync(next, cancellationToken);
    }

    /// <summary>A new message arrives in the inbox: Created, NewMail, and the inbox's Modified with its unread count.</summary>
    internal bool AddNewMail()
    {
        var now = EventTime();
        lock (_gate)
        {
            if (_state != FakeSubscriptionState.Active)
            {
                return false;
            }

            DropPendingStatus();
            var item = Ids.NewItemId();
            _unreadItems.Enqueue(item);
            _pending.Add(new FakeEvent(FakeEventType.Created, NextWatermark(), now, ItemId: item, ParentFolderId: InboxFolderId));
            _pending.Add(new FakeEvent(FakeEventType.NewMail, NextWatermark(), now, ItemId: item, ParentFolderId: InboxFolderId));
            _pending.Add(new FakeEvent(FakeEventType.Modified, NextWatermark(), now, FolderId: InboxFolderId, ParentFolderId: RootFolderId, UnreadCount: _unreadItems.Count));
            return true;
        }
    }

    /// <summary>
    /// The <c>SendNotification</c> body this subscription would post for one new message (Created, NewMail and the inbox's
    /// Modified with an unread count of <paramref name="unreadCount"/>), without changing the subscription: for load
    /// generators outside .NET (h2load) that replay one body many times.
    /// </summary>
    public ReadOnlyMemory<byte> NewMailBody(int unreadCount)
    {
        var now = EventTime();
        var item = Ids.NewItemId();
        return ExchangeSoap.WriteSendNotification(_exchange.Options.ServerVersion, Id, Ids.Watermark(1), [
            new FakeEvent(FakeEventType.Created, Ids.Watermark(2), now, ItemId: item, ParentFolderId: InboxFolderId),
            new FakeEvent(FakeEventType.NewMail, Ids.Watermark(3), now, ItemId: item, ParentFolderId: InboxFolderId),
            new FakeEvent(FakeEventType.Modified, Ids.Watermark(4), now, FolderId: InboxFolderId, ParentFolderId: RootFolderId, UnreadCount: unreadCount)]);
    }

    /// <summary>The oldest unread message is read: the item's Modified, then the inbox's Modified with the lower count.</summary>
    internal bool AddMarkRead()
    {
        var now = EventTime();
        lock (_gate)
        {
            if (_state != FakeSubscriptionState.Active || _unreadItems.Count == 0)
            {
                return false;
            }

            DropPendingStatus();
            var item = _unreadItems.Dequeue();
            _pending.Add(new FakeEvent(FakeEventType.Modified, NextWatermark(), now, ItemId: item, ParentFolderId: InboxFolderId));
            _pending.Add(new FakeEvent(FakeEventType.Modified, NextWatermark(), now, FolderId: InboxFolderId, ParentFolderId: RootFolderId, UnreadCount: _unreadItems.Count));
            return true;
        }
    }

    /// <summary>Queues a StatusEvent unless something is already waiting to go (a notification with events is proof of life).</summary>
    internal bool AddStatus()
    {
        lock (_gate)
        {
            if (_state != FakeSubscriptionState.Active || _retryScheduled)
            {
                return false;
            }

            if (_pending.Count == 0)
            {
                _pending.Add(new FakeEvent(FakeEventType.Status, NextWatermark(), EventTime()));
            }

            return true;
        }
    }

    /// <summary>Posts what is pending, unless a retry is scheduled (then the retry carries it). Returns null when nothing was posted.</summary>
    internal async Task<ExchangePostAttempt?> FlushAsync(ExchangePostTrigger trigger, CancellationToken cancellationToken)
    {
        await _sendLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            FakeEvent[] batch;
            string previousWatermark;
            int number;
            lock (_gate)
            {
                if (_state != FakeSubscriptionState.Active || _pending.Count == 0 || (_retryScheduled && trigger != ExchangePostTrigger.Retry))
                {
                    return null;
                }

                _retryScheduled = false;
                _nextRetryAt = null;
                batch = [.. _pending];
                previousWatermark = _watermark;
                number = ++_attemptsStarted;
                _inFlight = batch.Length;
            }

            var startedAt = Now();
            var body = ExchangeSoap.WriteSendNotification(_exchange.Options.ServerVersion, Id, previousWatermark, batch);
            var outcome = await _exchange.PostAsync(CallbackUrl, body).ConfigureAwait(false);
            return Complete(number, trigger, startedAt, batch, outcome);
        }
        finally
        {
            _sendLock.Release();
        }
    }

    private ExchangePostAttempt Complete(int number, ExchangePostTrigger trigger, DateTimeOffset startedAt, FakeEvent[] batch, PostOutcome outcome)
    {
        var now = Now();
        ExchangePostAttempt attempt;
        List<TaskCompletionSource<ExchangePostAttempt>>? done = null;
        List<TaskCompletionSource<ExchangePostAttempt>>? orphaned = null;
        lock (_gate)
        {
            _inFlight = 0;
            switch (outcome.Answer)
            {
                case ExchangeAnswer.Ok:
                    _pending.RemoveRange(0, batch.Length);
                    _watermark = batch[^1].Watermark;
                    _firstFailureAt = null;
                    _nextDelay = _exchange.Options.InitialRetryDelay;
                    _heartbeatTimer?.Change(StatusFrequency, Timeout.InfiniteTimeSpan);
                    break;

                case ExchangeAnswer.Unsubscribe:
                    End(FakeSubscriptionState.Unsubscribed, now);
                    break;

                default:
                    _firstFailureAt ??= startedAt;
                    var retryAt = now + _nextDelay;
                    if (retryAt - _firstFailureAt.Value > StatusFrequency)
                    {
                        End(FakeSubscriptionState.Expired, now);
                    }
                    else
                    {
                        _retryScheduled = true;
                        _nextRetryAt = retryAt;
                        _retryTimer.Change(_nextDelay, Timeout.InfiniteTimeSpan);
                        _nextDelay *= 2;
                    }

                    break;
            }

            attempt = new ExchangePostAttempt
            {
                Number = number,
                Trigger = trigger,
                StartedAt = startedAt,
                FinishedAt = now,
                EventCount = batch.Length,
                HttpStatus = outcome.HttpStatus,
                Error = outcome.Error,
                Answer = outcome.Answer,
                StateAfter = _state,
                NextRetryAt = _nextRetryAt,
            };
            _attemptsFinished = number;
            _lastAttempt = attempt;
            _attempts.Enqueue(attempt);
            while (_attempts.Count > Math.Max(1, _exchange.Options.MaxRecordedAttempts))
            {
                _attempts.Dequeue();
            }

            for (var i = _waiters.Count - 1; i >= 0; i--)
            {
                var (wanted, completion) = _waiters[i];
                if (wanted <= number)
                {
                    (done ??= []).Add(completion);
                    _waiters.RemoveAt(i);
                }
                else if (_state != FakeSubscriptionState.Active)
                {
                    (orphaned ??= []).Add(completion);
                    _waiters.RemoveAt(i);
                }
            }
        }

        _exchange.Count(attempt);
        done?.ForEach(c => c.TrySetResult(attempt));
        orphaned?.ForEach(c => c.TrySetException(Ended()));
        return attempt;
    }

    private void OnRetryDue() => _exchange.RunInBackground(this, ExchangePostTrigger.Retry);

    private void OnHeartbeatDue()
    {
        lock (_gate)
        {
            // A post in flight or a retry waiting re-arms the heartbeat when it succeeds.
            if (_state != FakeSubscriptionState.Active || _retryScheduled || _inFlight > 0)
            {
                return;
            }

            if (_pending.Count == 0)
            {
                _pending.Add(new FakeEvent(FakeEventType.Status, NextWatermark(), EventTime()));
            }
        }

        _exchange.RunInBackground(this, ExchangePostTrigger.Heartbeat);
    }

    /// <summary>Stops the timers and fails waiters (the simulator is being disposed).</summary>
    internal void Shutdown()
    {
        List<TaskCompletionSource<ExchangePostAttempt>> waiters;
        lock (_gate)
        {
            _retryTimer.Dispose();
            _heartbeatTimer?.Dispose();
            waiters = [.. _waiters.Select(w => w.Completion)];
            _waiters.Clear();
        }

        waiters.ForEach(w => w.TrySetCanceled());
    }

    private void End(FakeSubscriptionState state, DateTimeOffset now)
    {
        _state = state;
        _endedAt = now;
        _retryScheduled = false;
        _nextRetryAt = null;
        _pending.Clear();
        _retryTimer.Change(Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        _heartbeatTimer?.Change(Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
    }

    /// <summary>A queued heartbeat is pointless once events wait too (only while nothing is in flight).</summary>
    private void DropPendingStatus()
    {
        if (_inFlight == 0 && _pending.Count > 0)
        {
            _pending.RemoveAll(e => e.Type == FakeEventType.Status);
        }
    }

    private ExchangePostAttempt Find(int number)
    {
        foreach (var attempt in _attempts)
        {
            if (attempt.Number == number)
            {
                return attempt;
            }
        }

        return _lastAttempt!;
    }

    private InvalidOperationException Ended() => new($"The subscription is {_state}: no further attempts will be made.");

    private string NextWatermark() => Ids.Watermark(++_watermarkCounter);

    private DateTimeOffset Now() => _exchange.TimeProvider.GetUtcNow();

    private DateTimeOffset EventTime()
    {
        // Exchange's TimeStamps have whole seconds, in UTC.
        var now = _exchange.TimeProvider.GetUtcNow().UtcDateTime;
        return new DateTimeOffset(now.Ticks - (now.Ticks % TimeSpan.TicksPerSecond), TimeSpan.Zero);
    }
}

/// <summary>The outcome of one HTTP post.</summary>
internal readonly record struct PostOutcome(int? HttpStatus, string? Error, ExchangeAnswer Answer);
