using System.Collections.Concurrent;
using Herald.Core.Notifications;
using Herald.Providers.Apns;
using Herald.Providers.Http;
using Xunit;

namespace Herald.Providers.Tests;

/// <summary>Connections under stress (GOAWAY under load), both 410 reasons, and the outbound CONNECT proxy.</summary>
public sealed class ApnsTransportTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task GoAwayUnderLoad_LosesNothing_EveryNotificationIsAcceptedOnce()
    {
        await using var h = await ApnsTestHarness.StartAsync();
        h.Production.GoAwayEvery(25);
        const int Count = 400;
        var pending = Enumerable.Range(0, Count).Select(_ => h.Notification()).ToList();
        var sent = new ConcurrentBag<Guid>();

        // As the dispatcher does: a transport fault is a retry, sent again until APNs accepted it.
        for (var round = 0; round < 10 && pending.Count > 0; round++)
        {
            var results = await Task.WhenAll(pending.Select(async n => (n, r: await h.SendAsync(n))));
            foreach (var (n, r) in results.Where(x => x.r.Outcome == PushOutcome.Sent))
            {
                sent.Add(n.MessageId);
            }

            Assert.All(results, x => Assert.True(x.r.Outcome is PushOutcome.Sent or PushOutcome.Retry, x.r.ToString()));
            pending = [.. results.Where(x => x.r.Outcome == PushOutcome.Retry).Select(x => x.n)];
        }

        Assert.Empty(pending);
        Assert.Equal(Count, sent.Distinct().Count());
        var accepted = h.Production.Requests.Where(r => r.Accepted).Select(r => r.RequestApnsId).ToList();
        Assert.Equal(Count, accepted.Distinct().Count());
        Assert.True(h.Production.GoAwayCount >= Count / 25 - 1, $"only {h.Production.GoAwayCount} GOAWAYs");
    }

    [Fact]
    public async Task ExpiredToken410_DeactivatesWithTheTimestamp()
    {
        await using var h = await ApnsTestHarness.StartAsync();
        var since = new DateTimeOffset(2025, 5, 30, 12, 0, 0, TimeSpan.Zero);
        h.Production.ExpireToken(ApnsTestHarness.Token, since);

        var result = await h.SendAsync(h.Notification());

        Assert.Equal(new PushResult(PushOutcome.TokenInvalid, 410, ApnsReasons.ExpiredToken, null, since), result);
    }

    [Fact]
    public async Task Unregistered410_DeactivatesWithTheTimestamp()
    {
        await using var h = await ApnsTestHarness.StartAsync();
        var since = new DateTimeOffset(2025, 5, 31, 8, 30, 0, TimeSpan.Zero);
        h.Production.Unregister(ApnsTestHarness.Token, since);

        var result = await h.SendAsync(h.Notification());

        Assert.Equal(new PushResult(PushOutcome.TokenInvalid, 410, ApnsReasons.Unregistered, null, since), result);
    }

    [Fact]
    public async Task Proxy_AllConnectionsGoThroughConnectTunnels()
    {
        await using var proxy = new ConnectProxy();
        await using var h = await ApnsTestHarness.StartAsync(o => o.Proxy = new OutboundProxyOptions { Url = proxy.Url }, tls: true, trustCertificate: true);

        for (var i = 0; i < 5; i++)
        {
            Assert.Equal(PushOutcome.Sent, (await h.SendAsync(h.Notification())).Outcome);
        }

        Assert.Equal(1, proxy.Connects); // one long-lived HTTP/2 connection through one tunnel
        Assert.Equal(new Uri(h.Production.BaseUrl).Authority, Assert.Single(proxy.Targets));
        Assert.Equal(5, h.Production.AcceptedCount);
    }

    [Fact]
    public async Task Proxy_WithCredentials_AnswersTheChallenge()
    {
        await using var proxy = new ConnectProxy("herald", "pr0xy-pass");
        await using var h = await ApnsTestHarness.StartAsync(
            o => o.Proxy = new OutboundProxyOptions { Url = proxy.Url, Username = "herald", Password = "pr0xy-pass" },
            tls: true,
            trustCertificate: true);

        var result = await h.SendAsync(h.Notification());

        Assert.Equal(PushOutcome.Sent, result.Outcome);
        Assert.Equal(1, proxy.Connects);
        Assert.True(proxy.Refused >= 1); // challenged first, then authenticated
    }

    [Fact]
    public async Task Proxy_BypassedHost_ConnectsDirectly()
    {
        await using var proxy = new ConnectProxy();
        var options = new OutboundProxyOptions { Url = proxy.Url };
        options.Bypass.Add("127.0.0.1");
        await using var h = await ApnsTestHarness.StartAsync(o => o.Proxy = options, tls: true, trustCertificate: true);

        var result = await h.SendAsync(h.Notification());

        Assert.Equal(PushOutcome.Sent, result.Outcome);
        Assert.Equal(0, proxy.Connects);
    }

    [Theory]
    [InlineData("api.push.apple.com", "*.apple.com", true)]
    [InlineData("apple.com", "*.apple.com", false)]
    [InlineData("fcm.googleapis.com", "fcm.googleapis.com", true)]
    [InlineData("intranet", "<local>", true)]
    [InlineData("localhost", "<local>", true)]
    [InlineData("api.push.apple.com", "<local>", false)]
    [InlineData("wns2-par02p.notify.windows.com", "*.NOTIFY.windows.com", true)]
    public void Proxy_BypassPatterns(string host, string pattern, bool bypassed)
    {
        var options = new OutboundProxyOptions { Url = "http://proxy.corp.example:3128" };
        options.Bypass.Add(pattern);
        var proxy = OutboundProxy.Create(options)!;

        Assert.Equal(bypassed, proxy.IsBypassed(new Uri("https://" + host + "/")));
        Assert.Equal(bypassed ? null : new Uri("http://proxy.corp.example:3128"), proxy.GetProxy(new Uri("https://" + host + "/")));
    }

    [Theory]
    [InlineData("ftp://proxy:21", null, null)]
    [InlineData("http://user:pw@proxy:3128", null, null)]
    [InlineData("http://proxy:3128", "user", null)]
    public void Proxy_InvalidOptions_AreRejected(string url, string? user, string? password)
    {
        var errors = OutboundProxyOptions.Validate(new OutboundProxyOptions { Url = url, Username = user, Password = password });

        Assert.NotEmpty(errors);
        Assert.NotEmpty(ApnsOptions.Validate(new ApnsOptions { Proxy = new OutboundProxyOptions { Url = url, Username = user, Password = password } }));
    }

    [Fact]
    public void Proxy_IsAppliedToTheFcmHandlers()
    {
        var options = new Herald.Providers.Fcm.FcmOptions { Proxy = new OutboundProxyOptions { Url = "http://proxy.corp.example:3128" } };

        using var handler = Herald.Providers.Fcm.FcmHttp.CreateHandler(options, null, decompress: false);

        Assert.True(handler.UseProxy);
        Assert.Equal(new Uri("http://proxy.corp.example:3128"), handler.Proxy!.GetProxy(new Uri("https://fcm.googleapis.com/")));
    }

    [Fact]
    public void Proxy_NotConfigured_LeavesTheHandlerAlone()
    {
        using var handler = new SocketsHttpHandler();
        var before = handler.Proxy;

        OutboundProxy.Apply(handler, new OutboundProxyOptions());

        Assert.Same(before, handler.Proxy);
        Assert.Null(OutboundProxy.Create(null));
        _ = Ct;
    }
}
