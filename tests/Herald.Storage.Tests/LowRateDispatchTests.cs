using System.Collections.Concurrent;
using Herald.Core.Notifications;
using Herald.Core.Pipeline;
using Herald.Core.Ports;
using Herald.Core.Registrations;
using Herald.Core.Settings;
using Herald.Storage.Sqlite;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;
using Xunit;

namespace Herald.Storage.Tests;

/// <summary>
/// The low-rate path of the dispatcher on a real SQLite store, with a fake clock that never moves: every notification
/// must go out on a wake-up signal (the enqueue's, or a completion's for a row that waited for its key's send), never
/// on the idle poll. A missed signal would leave a notification waiting for a 5 s poll that this clock never reaches,
/// so the test would time out instead of passing slowly. No speed is asserted.
/// </summary>
public sealed class LowRateDispatchTests : IAsyncLifetime
{
    private readonly string _path = Path.Combine(Path.GetTempPath(), "herald-storage-tests", Guid.NewGuid().ToString("N") + ".db");
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2025, 3, 1, 8, 0, 0, TimeSpan.Zero));
    private SqliteStore _store = null!;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public async ValueTask InitializeAsync()
        => _store = await SqliteStore.OpenAndMigrateAsync(_path, _time, NullLogger.Instance, Ct);

    public async ValueTask DisposeAsync()
    {
        await _store.DisposeAsync();
        foreach (var suffix in new[] { "", "-wal", "-shm" })
        {
            File.Delete(_path + suffix);
        }
    }

    [Fact]
    public async Task OneAtATime_EachIsSentOnItsSignal_NotOnThePoll()
    {
        var provider = new RecordingProvider();
        await using var run = Start(provider, out var signal);

        for (var i = 0; i < 20; i++)
        {
            var sent = provider.Expect($"token-{i}");
            await _store.EnqueueAsync([Badge($"token-{i}", key: null)], Ct);
            signal.Notify(); // as the ingest writer does after its commit
            await WaitAsync(sent, $"notification {i} was not sent on its wake-up signal");
            await WaitAsync(run.Completed(i + 1), $"the outcome of notification {i} was not recorded");
        }

        Assert.Equal(TimeSpan.Zero, _time.GetUtcNow() - new DateTimeOffset(2025, 3, 1, 8, 0, 0, TimeSpan.Zero));
    }

    [Fact]
    public async Task NewerEventForADeviceBeingSent_IsSentWhenTheFirstCompletes_WithoutThePoll()
    {
        var provider = new RecordingProvider();
        await using var run = Start(provider, out var signal);

        for (var round = 0; round < 5; round++)
        {
            // The first event's push is in flight when the second arrives: the second waits for the key (one in flight per
            // device), and only the completion's signal can wake the claim loop for it.
            var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            provider.Hold($"first-{round}", release.Task);
            var first = provider.Expect($"first-{round}");
            await _store.EnqueueAsync([Badge($"first-{round}", key: $"reg:{round}")], Ct);
            signal.Notify();
            await WaitAsync(first, "the first push was not sent");

            var second = provider.Expect($"second-{round}");
            var sleeps = run.Sleeps;
            await _store.EnqueueAsync([Badge($"second-{round}", key: $"reg:{round}")], Ct);
            signal.Notify();
            await WaitAsync(run.Idle(sleeps), "the dispatcher did not go back to sleep while the first push was in flight");
            Assert.False(second.IsCompleted); // one in flight per device: it waits for the first
            release.SetResult();
            await WaitAsync(second, "the newer push waited for the poll instead of the completion's signal");
            await WaitAsync(run.Completed(2 * (round + 1)), "the newer push's outcome was not recorded");
        }
    }

    [Fact]
    public async Task SmallCommits_AreCheckpointedInTheBackground()
    {
        for (var i = 0; i < SqliteStore.CheckpointEveryCommits * 3; i++)
        {
            await _store.EnqueueAsync([Badge($"t-{i}", key: null)], Ct);
        }

        for (var i = 0; i < 200 && _store.Checkpoints == 0; i++)
        {
            await Task.Delay(25, Ct);
        }

        Assert.True(_store.Checkpoints > 0, "no background checkpoint ran");
        Assert.Equal(SqliteStore.CheckpointEveryCommits * 3, (await _store.SnapshotAsync(_time.GetUtcNow(), Ct)).Counts[(Lane.Priority, NotificationState.Queued)]);
    }

    private static async Task WaitAsync(Task task, string failure)
    {
        // Wall-clock bound only so a missed wake-up fails instead of hanging; the fake clock never reaches the poll.
        var done = await Task.WhenAny(task, Task.Delay(TimeSpan.FromSeconds(20), Ct));
        Assert.True(done == task, failure);
        await task;
    }

    private static NewNotification Badge(string token, string? key) => new()
    {
        TenantId = "default",
        Lane = Lane.Priority,
        Platform = Platform.Apns,
        Token = token,
        Topic = "org.herald.test",
        Content = new NotificationContent { Kind = PushKind.Badge, Badge = 1 },
        CoalesceKey = key,
    };

    private Running Start(RecordingProvider provider, out QueueSignal signal)
    {
        signal = new QueueSignal();
        var options = new DispatchOptions();
        var settings = new SettingsMonitor(_store, _time, Options.Create(new RetryOptions()), NullLogger<SettingsMonitor>.Instance);
        var queue = new SleepCountingQueue(_store);
        var dispatcher = new Dispatcher(
            queue,
            [provider],
            signal,
            _time,
            new StaticOptions(options),
            settings,
            new LaneThrottle(_store, _time),
            new CredentialHealth(),
            NullLogger<Dispatcher>.Instance,
            new NodeIdentity("test"));
        return new Running(dispatcher, signal, settings, queue);
    }

    private sealed class Running : IAsyncDisposable
    {
        private readonly SleepCountingQueue _queue;
        private readonly Dispatcher _dispatcher;
        private readonly QueueSignal _signal;
        private readonly SettingsMonitor _settings;
        private readonly CancellationTokenSource _stop = new();
        private readonly Task _run;
        private readonly ConcurrentDictionary<long, bool> _completed = new();

        public Running(Dispatcher dispatcher, QueueSignal signal, SettingsMonitor settings, SleepCountingQueue queue)
        {
            _queue = queue;
            _dispatcher = dispatcher;
            _signal = signal;
            _settings = settings;
            dispatcher.Completed += outcomes =>
            {
                foreach (var o in outcomes)
                {
                    _completed[o.NotificationId] = true;
                }
            };
            _run = Task.Run(() => dispatcher.RunAsync(_stop.Token));
        }

        /// <summary>Completes once <paramref name="count"/> outcomes are recorded.</summary>
        public async Task Completed(int count)
        {
            while (_completed.Count < count)
            {
                await Task.Delay(5, Ct);
            }
        }

        /// <summary>Completes when the claim loop has gone to sleep since <paramref name="sleepsBefore"/> (it asks for the next due time first).</summary>
        public async Task Idle(int sleepsBefore)
        {
            while (_queue.Sleeps <= sleepsBefore)
            {
                await Task.Delay(5, Ct);
            }
        }

        public int Sleeps => _queue.Sleeps;

        public async ValueTask DisposeAsync()
        {
            await _stop.CancelAsync();
            await _run;
            _dispatcher.Dispose();
            _signal.Dispose();
            _settings.Dispose();
            _stop.Dispose();
        }
    }

    private sealed class RecordingProvider : IPushProvider
    {
        private readonly ConcurrentDictionary<string, TaskCompletionSource> _expected = new();
        private readonly ConcurrentDictionary<string, Task> _holds = new();

        public Platform Platform => Platform.Apns;

        public Task Expect(string token) => _expected.GetOrAdd(token, _ => new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).Task;

        /// <summary>The send to <paramref name="token"/> waits for <paramref name="hold"/> (a push in flight).</summary>
        public void Hold(string token, Task hold) => _holds[token] = hold;

        public async ValueTask<PushResult> SendAsync(ClaimedNotification notification, CancellationToken cancellationToken)
        {
            _expected.GetOrAdd(notification.Token, _ => new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult();
            if (_holds.TryGetValue(notification.Token, out var hold))
            {
                await hold.WaitAsync(cancellationToken);
            }

            return PushResult.Ok();
        }
    }

    /// <summary>The store, counting how often the claim loop asks for the next due time: it does so just before it sleeps.</summary>
    private sealed class SleepCountingQueue(SqliteStore store) : INotificationQueue
    {
        private int _sleeps;

        public int Sleeps => Volatile.Read(ref _sleeps);

        public Task<DateTimeOffset?> NextDueAsync(CancellationToken cancellationToken)
        {
            Interlocked.Increment(ref _sleeps);
            return store.NextDueAsync(cancellationToken);
        }

        public Task<IReadOnlyList<long>> EnqueueAsync(IReadOnlyList<NewNotification> notifications, CancellationToken cancellationToken) => store.EnqueueAsync(notifications, cancellationToken);

        public Task<IReadOnlyList<ClaimedNotification>> ClaimAsync(string owner, ClaimLimits limits, DateTimeOffset now, TimeSpan lease, CancellationToken cancellationToken)
            => store.ClaimAsync(owner, limits, now, lease, cancellationToken);

        public Task<int> CompleteAsync(string owner, IReadOnlyList<DeliveryOutcome> outcomes, CancellationToken cancellationToken) => store.CompleteAsync(owner, outcomes, cancellationToken);

        public Task<int> RenewLeasesAsync(string owner, IReadOnlyList<long> ids, DateTimeOffset until, CancellationToken cancellationToken) => store.RenewLeasesAsync(owner, ids, until, cancellationToken);

        public Task<int> ReleaseExpiredLeasesAsync(DateTimeOffset now, CancellationToken cancellationToken) => store.ReleaseExpiredLeasesAsync(now, cancellationToken);

        public Task<QueueSnapshot> SnapshotAsync(DateTimeOffset now, CancellationToken cancellationToken) => store.SnapshotAsync(now, cancellationToken);

        public Task<NotificationRecord?> GetNotificationAsync(long id, CancellationToken cancellationToken) => store.GetNotificationAsync(id, cancellationToken);

        public Task<IReadOnlyList<NotificationAttempt>> GetAttemptsAsync(long notificationId, CancellationToken cancellationToken) => store.GetAttemptsAsync(notificationId, cancellationToken);

        public Task SaveRequestAsync(NotificationRequestRecord request, CancellationToken cancellationToken) => store.SaveRequestAsync(request, cancellationToken);

        public Task<NotificationRequestRecord?> GetRequestAsync(string tenantId, string requestId, CancellationToken cancellationToken) => store.GetRequestAsync(tenantId, requestId, cancellationToken);

        public Task<IReadOnlyDictionary<NotificationState, long>> GetRequestCountsAsync(string tenantId, string requestId, CancellationToken cancellationToken)
            => store.GetRequestCountsAsync(tenantId, requestId, cancellationToken);

        public Task<IReadOnlyList<NotificationRecord>> GetRequestNotificationsAsync(string tenantId, string requestId, int offset, int limit, CancellationToken cancellationToken)
            => store.GetRequestNotificationsAsync(tenantId, requestId, offset, limit, cancellationToken);

        public Task<IReadOnlyList<NotificationRecord>> ListDeadAsync(string? tenantId, int limit, CancellationToken cancellationToken) => store.ListDeadAsync(tenantId, limit, cancellationToken);

        public Task<int> RequeueDeadAsync(string? tenantId, IReadOnlyList<long>? ids, DateTimeOffset now, CancellationToken cancellationToken) => store.RequeueDeadAsync(tenantId, ids, now, cancellationToken);

        public Task<int> PurgeDeadAsync(string? tenantId, IReadOnlyList<long>? ids, CancellationToken cancellationToken) => store.PurgeDeadAsync(tenantId, ids, cancellationToken);
    }

    private sealed class StaticOptions(DispatchOptions value) : IOptionsMonitor<DispatchOptions>
    {
        public DispatchOptions CurrentValue => value;

        public DispatchOptions Get(string? name) => value;

        public IDisposable? OnChange(Action<DispatchOptions, string?> listener) => null;
    }
}
