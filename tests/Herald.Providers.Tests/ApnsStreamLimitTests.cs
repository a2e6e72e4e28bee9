using System.Security.Cryptography;
using Herald.Core.Notifications;
using Herald.Core.Registrations;
using Herald.Providers.Apns;
using Herald.Simulators.Apns;
using Xunit;

namespace Herald.Providers.Tests;

/// <summary>
/// What the APNs provider (SocketsHttpHandler underneath) does when the server lowers SETTINGS_MAX_CONCURRENT_STREAMS,
/// refuses streams (RST_STREAM REFUSED_STREAM) or sends GOAWAY with APNs' JSON debug data, against
/// <see cref="ScriptedHttp2Server"/> (Kestrel can do none of these on cue). Nothing is lost: a refused stream, or a stream
/// above GOAWAY's last-stream-id, is resent by SocketsHttpHandler itself (at most three times, same apns-id) and never
/// reaches Herald (a stream still refused after those is sent again by the provider, twice, before it is a Retry); a
/// stream at or below last-stream-id whose connection closes unanswered comes back as Retry (Transport) and is resent by
/// the dispatcher as a new attempt.
/// </summary>
public sealed class ApnsStreamLimitTests
{
    private const string Topic = "com.example.mail";
    private const string Token = "8f1c2a9e0b7d4c3f8f1c2a9e0b7d4c3f8f1c2a9e0b7d4c3f8f1c2a9e0b7d4c3f";

    [Fact]
    public async Task LoweredStreamLimit_RefusedStreamsAreResent_WithinTheNewLimit_AndNothingIsLostOrDoubled()
    {
        await using var server = new ScriptedHttp2Server(Http2Script.LowerLimitAndRefuse, initialLimit: 100) { TriggerAt = 6, LoweredLimit = 2 };
        using var provider = Provider(server);
        const int Count = 10;

        var (sent, retriesSeenByHerald) = await SendAllAsync(provider, Count);

        Assert.Equal(Count, sent);
        Assert.True(server.Triggered);
        Assert.True(server.Refused >= 4, $"refused {server.Refused}"); // at least the 4 held past the new limit
        Assert.Equal(Count, server.Answered.Count);
        Assert.All(server.Answered.Values, n => Assert.Equal(1, n));

        // Once the client acknowledged the lowered limit, no connection carried more streams than that.
        var lowered = server.Limits.Where(l => l.Limit == 2).ToList();
        Assert.NotEmpty(lowered);
        Assert.All(lowered, l => Assert.True(l.MaxOpenAfterAck <= 2, $"{l.MaxOpenAfterAck} streams open at once under a limit of 2"));
        TestContext.Current.TestOutputHelper?.WriteLine($"refused {server.Refused}, streams {server.Requests}, connections {server.Connections}, retries that reached Herald {retriesSeenByHerald}");
    }

    [Fact]
    public async Task RefusedOnEveryAttempt_HttpClientResendsThreeTimes_HeraldTwiceMore_ThenItIsARetry()
    {
        await using var server = new ScriptedHttp2Server(Http2Script.RefuseAll);
        using var provider = Provider(server);

        var result = await provider.SendAsync(Notification(), TestContext.Current.CancellationToken);

        Assert.Equal(new PushResult(PushOutcome.Retry, 0, ApnsReasons.RefusedStream), result);

        // Each send is SocketsHttpHandler's request and its three resends (MaxConnectionFailureRetries).
        Assert.Equal(4 * (1 + ApnsProvider.MaxRefusedResends), server.Requests);
        Assert.Empty(server.Answered);
    }

    [Fact]
    public async Task GoAwayWithJsonReason_StreamsAboveLastStreamIdGoToANewConnection_WithoutHeraldSeeingIt()
    {
        await using var server = new ScriptedHttp2Server(Http2Script.GoAway) { TriggerAt = 6, GoAwayKeep = 3 };
        using var provider = Provider(server);
        const int Count = 10;

        var results = await Task.WhenAll(Enumerable.Range(0, Count).Select(_ => provider.SendAsync(Notification(), TestContext.Current.CancellationToken).AsTask()));

        // The GOAWAY's {"reason":"Shutdown"} never reaches Herald: the sends are plainly sent.
        Assert.All(results, r => Assert.Equal(PushResult.Ok(), r));
        Assert.True(server.Triggered);
        Assert.True(server.Connections >= 2);
        Assert.Equal(Count, server.Answered.Count);
        Assert.All(server.Answered.Values, n => Assert.Equal(1, n));
    }

    [Fact]
    public async Task GoAwayThenClose_StreamsUpToLastStreamIdComeBackAsRetry_TheRestAreResentByHttpClient()
    {
        await using var server = new ScriptedHttp2Server(Http2Script.GoAway) { TriggerAt = 6, GoAwayKeep = 3, AbortAfterGoAway = true };
        using var provider = Provider(server);
        const int Count = 10;

        var first = await Task.WhenAll(Enumerable.Range(0, Count).Select(async _ =>
        {
            var n = Notification();
            return (n, r: await provider.SendAsync(n, TestContext.Current.CancellationToken));
        }));

        // The three streams the server said it might have processed (ids 1, 3, 5) cannot be resent blindly by
        // HttpClient: they surface as transport faults, which the dispatcher resends as new attempts.
        var retried = first.Where(x => x.r.Outcome == PushOutcome.Retry).ToList();
        Assert.Equal(3, retried.Count);
        Assert.All(retried, x => Assert.Equal(new PushResult(PushOutcome.Retry, 0, ApnsReasons.Transport), x.r));
        Assert.Equal(Count - 3, first.Count(x => x.r.Outcome == PushOutcome.Sent));

        foreach (var (n, _) in retried)
        {
            Assert.Equal(PushOutcome.Sent, (await provider.SendAsync(n, TestContext.Current.CancellationToken)).Outcome);
        }

        Assert.Equal(Count, server.Answered.Count);
        Assert.All(server.Answered.Values, n => Assert.Equal(1, n));
    }

    [Fact]
    public async Task FakeApnsWithOneStreamPerConnection_ABurstOnANewConnectionIsRefusedAndResent_NothingLost()
    {
        // Apple allows one stream until the first valid request (PROTOCOLS.md); SocketsHttpHandler assumes 100 until the
        // server's SETTINGS arrive, so a burst on a new connection meets Kestrel's REFUSED_STREAM.
        await using var h = await ApnsTestHarness.StartAsync(server: o => o.MaxStreamsPerConnection = 1);
        const int Count = 20;
        var pending = Enumerable.Range(0, Count).Select(_ => h.Notification()).ToList();
        var retries = new List<string?>();
        for (var round = 0; round < 6 && pending.Count > 0; round++)
        {
            var results = await Task.WhenAll(pending.Select(async n => (n, r: await h.SendAsync(n))));
            Assert.All(results, x => Assert.True(x.r.Outcome is PushOutcome.Sent or PushOutcome.Retry, x.r.ToString()));
            pending = [.. results.Where(x => x.r.Outcome == PushOutcome.Retry).Select(x => x.n)];
            retries.AddRange(results.Where(x => x.r.Outcome == PushOutcome.Retry).Select(x => x.r.Reason));
        }

        Assert.Empty(pending);
        Assert.Equal(Count, h.Production.Requests.Where(r => r.Accepted).Select(r => r.RequestApnsId).Distinct().Count());
        TestContext.Current.TestOutputHelper?.WriteLine($"requests seen by the fake {h.Production.Requests.Count}, retries that reached Herald {retries.Count} ({string.Join(", ", retries.Distinct())})");
    }

    /// <summary>Sends <paramref name="count"/> notifications at once and resends retries as the dispatcher does (bounded rounds).</summary>
    private static async Task<(int Sent, int RetriesSeenByHerald)> SendAllAsync(ApnsProvider provider, int count)
    {
        var pending = Enumerable.Range(0, count).Select(_ => Notification()).ToList();
        var sent = 0;
        var retries = 0;
        for (var round = 0; round < 6 && pending.Count > 0; round++)
        {
            var results = await Task.WhenAll(pending.Select(async n => (n, r: await provider.SendAsync(n, TestContext.Current.CancellationToken))));
            Assert.All(results, x => Assert.True(x.r.Outcome is PushOutcome.Sent or PushOutcome.Retry, x.r.ToString()));
            sent += results.Count(x => x.r.Outcome == PushOutcome.Sent);
            pending = [.. results.Where(x => x.r.Outcome == PushOutcome.Retry).Select(x => x.n)];
            retries += pending.Count;
        }

        return (sent, retries);
    }

    private static ApnsProvider Provider(ScriptedHttp2Server server)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        return ApnsProvider.Create(new ApnsOptions
        {
            ProductionUrl = server.BaseUrl,
            SandboxUrl = server.BaseUrl,
            TeamId = "TEAM123456",
            KeyId = "KEY1234567",
            PrivateKeyPem = key.ExportPkcs8PrivateKeyPem(),
            Topic = Topic,
        });
    }

    private static ClaimedNotification Notification() => new()
    {
        Id = Random.Shared.NextInt64(1, long.MaxValue),
        MessageId = Guid.NewGuid(),
        TenantId = "default",
        RegistrationId = "reg-1",
        Platform = Platform.Apns,
        Token = Token,
        Topic = Topic,
        Content = new NotificationContent { Kind = PushKind.Badge, Badge = 1 },
        Attempt = 1,
    };
}
