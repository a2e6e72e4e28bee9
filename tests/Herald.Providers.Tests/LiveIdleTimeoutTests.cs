using Herald.Core.Notifications;
using Herald.Core.Settings;
using Herald.Providers.Http;
using Microsoft.Extensions.Time.Testing;
using Xunit;

namespace Herald.Providers.Tests;

/// <summary>Live connection settings a test can change (the server's are <see cref="SettingsMonitor"/>).</summary>
internal sealed class MutableConnectionSettings : ILiveConnectionSettings
{
    public TimeSpan? IdleTimeout { get; set; }
}

/// <summary>The idle time of provider connections follows <c>connections.idleTimeout</c> without a restart.</summary>
public sealed class LiveIdleTimeoutTests
{
    [Fact]
    public async Task Invoker_IsRebuiltWhenTheSettingChanges_AndTheOldPoolIsRetiredAfterItsSendsFinish()
    {
        var time = new FakeTimeProvider();
        var live = new MutableConnectionSettings();
        var built = new List<(TimeSpan Idle, CountingHandler Handler)>();
        using var invoker = new IdleAwareInvoker(
            idle =>
            {
                var handler = new CountingHandler();
                built.Add((idle, handler));
                return new HttpMessageInvoker(handler, disposeHandler: true);
            },
            TimeSpan.FromSeconds(60),
            live,
            time);

        var first = invoker.Invoker;
        Assert.Same(first, invoker.Invoker); // no change, no rebuild
        Assert.Equal([TimeSpan.FromSeconds(60)], built.Select(b => b.Idle));

        live.IdleTimeout = TimeSpan.FromSeconds(15);
        var second = invoker.Invoker;
        Assert.NotSame(first, second);
        Assert.Equal(TimeSpan.FromSeconds(15), invoker.CurrentIdleTimeout);
        Assert.Equal(1, invoker.Rebuilds);
        using (var response = await first.SendAsync(new HttpRequestMessage(HttpMethod.Get, "http://127.0.0.1/"), TestContext.Current.CancellationToken))
        {
            Assert.True(response.IsSuccessStatusCode); // the old pool still serves the sends already on it
        }

        time.Advance(IdleAwareInvoker.RetireAfter - TimeSpan.FromSeconds(1));
        Assert.False(built[0].Handler.Disposed);
        time.Advance(TimeSpan.FromSeconds(1));
        Assert.True(built[0].Handler.Disposed);
        Assert.False(built[1].Handler.Disposed);

        live.IdleTimeout = null; // back to the configured idle time
        Assert.Equal(TimeSpan.FromSeconds(60), invoker.Effective);
        _ = invoker.Invoker;
        Assert.Equal(TimeSpan.FromSeconds(60), built[^1].Idle);
        Assert.Equal(3, built.Count);
    }

    [Fact]
    public async Task Apns_ConnectionsCloseAfterTheLiveIdleTime()
    {
        await using var h = await ApnsTestHarness.StartAsync();
        var ct = TestContext.Current.CancellationToken;

        // The configured 60 s: a send 1.5 s after the first reuses its connection.
        Assert.Equal(PushOutcome.Sent, (await h.SendAsync(h.Notification())).Outcome);
        await Task.Delay(1500, ct);
        Assert.Equal(PushOutcome.Sent, (await h.SendAsync(h.Notification())).Outcome);
        var requests = h.Production.Requests;
        Assert.Equal(requests[0].ConnectionId, requests[1].ConnectionId);

        // Saved live as 500 ms: the next send opens a pool with the new idle time, whose connection is closed after
        // 500 ms without sends, so a send 1.5 s later needs a new connection.
        h.Live.IdleTimeout = TimeSpan.FromMilliseconds(500);
        Assert.Equal(PushOutcome.Sent, (await h.SendAsync(h.Notification())).Outcome);
        await Task.Delay(1500, ct);
        Assert.Equal(PushOutcome.Sent, (await h.SendAsync(h.Notification())).Outcome);
        requests = h.Production.Requests;
        Assert.Equal(4, requests.Count);
        Assert.NotEqual(requests[1].ConnectionId, requests[2].ConnectionId);
        Assert.NotEqual(requests[2].ConnectionId, requests[3].ConnectionId);
        Assert.Equal(4, requests.Count(r => r.Accepted));
    }

    private sealed class CountingHandler : HttpMessageHandler
    {
        public bool Disposed { get; private set; }

        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
            => Task.FromResult(new HttpResponseMessage(System.Net.HttpStatusCode.OK) { RequestMessage = request });

        protected override void Dispose(bool disposing)
        {
            Disposed = true;
            base.Dispose(disposing);
        }
    }
}
