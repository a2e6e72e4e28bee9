using System.Text.Json;
using Herald.Simulators.Exchange;
using Xunit;

namespace Herald.Server.Tests;

/// <summary>The fake Exchange (which behaves as Exchange does: retries, heartbeats, Unsubscribe) against the real gateway.</summary>
public sealed class FakeExchangeEndToEndTests
{
    [Fact]
    public async Task FakeExchangeNewMail_FakeApnsReceivesExactlyOneCorrectRequest()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var gw = await GatewayHarness.StartAsync(cancellationToken: ct);
        var token = "0123456789abcdef" + new string('9', 48);
        var (_, callback) = await gw.RegisterAsync(token, cancellationToken: ct);
        await using var exchange = new FakeExchange(new HttpClient(), TimeProvider.System);
        var subscription = exchange.Subscribe(new Uri(callback), TimeSpan.FromMinutes(30));

        var attempt = await exchange.DeliverNewMailAsync(subscription, ct);

        Assert.Equal(ExchangeAnswer.Ok, attempt!.Answer);
        var push = await gw.Apns.WaitForRequestAsync(r => r.Token == token, ct);
        Assert.True(push.Accepted);
        Assert.Equal("POST", push.Method);
        Assert.Equal("/3/device/" + token, push.Path);
        using var payload = JsonDocument.Parse(push.Payload!);
        Assert.Equal("""{"aps":{"badge":1}}""", payload.RootElement.GetRawText());
        Assert.True(Guid.TryParse(push.RequestApnsId, out _));
        Assert.Equal(push.RequestApnsId, push.RequestApnsId!.ToLowerInvariant());

        // Nothing else arrives: a heartbeat is not a push.
        var heartbeat = await exchange.SendStatusAsync(subscription, ct);
        Assert.Equal(ExchangeAnswer.Ok, heartbeat!.Answer);
        await WaitForSentAsync(gw, 1, ct);

        Assert.Single(gw.Apns.Requests);
    }

    [Fact]
    public async Task DeadToken_FakeExchangeIsToldToUnsubscribe_AndStopsPosting()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var gw = await GatewayHarness.StartAsync(cancellationToken: ct);
        var token = new string('7', 64);
        var (id, callback) = await gw.RegisterAsync(token, cancellationToken: ct);
        gw.Apns.Unregister(token, DateTimeOffset.UtcNow.AddDays(-1));
        await using var exchange = new FakeExchange(new HttpClient(), TimeProvider.System);
        var subscription = exchange.Subscribe(new Uri(callback), TimeSpan.FromMinutes(30));

        Assert.Equal(ExchangeAnswer.Ok, (await exchange.DeliverNewMailAsync(subscription, ct))!.Answer);
        await EwsPushEndToEndTests.WaitForAsync(gw, id, r => r.GetProperty("status").GetString() == "inactive", ct);
        Assert.Equal(ExchangeAnswer.Unsubscribe, (await exchange.DeliverNewMailAsync(subscription, ct))!.Answer);

        Assert.Equal(FakeSubscriptionState.Unsubscribed, subscription.State);
        Assert.Null(await exchange.DeliverNewMailAsync(subscription, ct)); // Exchange has stopped
    }

    private static async Task WaitForSentAsync(GatewayHarness gw, long sent, CancellationToken ct)
    {
        // The outcome is recorded just after APNs answers; look a bounded number of times.
        for (var i = 0; i < 100; i++)
        {
            using var queue = JsonDocument.Parse(await gw.Client.GetStringAsync("v1/admin/queue", ct));
            var lane = queue.RootElement.GetProperty("lanes").GetProperty("priority");
            if (lane.GetProperty("sent").GetInt64() == sent && lane.GetProperty("sending").GetInt64() == 0 && lane.GetProperty("queued").GetInt64() == 0)
            {
                return;
            }

            await Task.Delay(50, ct);
        }

        Assert.Fail("the queue did not show exactly " + sent + " sent: " + await gw.Client.GetStringAsync("v1/admin/queue", ct));
    }
}
