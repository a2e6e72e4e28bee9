using System.Text.Json;
using Xunit;

namespace Herald.Server.Tests;

/// <summary>EWS push callback → durable queue → APNs, on real Kestrel, SQLite and the fake APNs.</summary>
public sealed class EwsPushEndToEndTests
{
    private static string Token(int n) => n.ToString("x2") + new string('a', 62);

    [Fact]
    public async Task NewMail_AfterRegister_FakeApnsReceivesExactlyOneCorrectBadgePush()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var gw = await GatewayHarness.StartAsync(cancellationToken: ct);
        var (id, callback) = await gw.RegisterAsync(Token(1), cancellationToken: ct);
        Assert.StartsWith(gw.BaseUrl + "/ews/notify/", callback);

        var (status, body) = await Soap.PostAsync(gw.Client, callback, Soap.NewMail("SUB-1", 3), cancellationToken: ct);
        Assert.Equal(200, status);
        Assert.Equal("OK", Soap.StatusOf(body));

        var push = await gw.Apns.WaitForRequestAsync(r => r.Token == Token(1), ct);
        Assert.Equal(200, push.Status);
        Assert.Equal("alert", push.PushType);
        Assert.Equal(GatewayHarness.Topic, push.Topic);
        Assert.Equal("10", push.Priority);
        Assert.Equal("herald-mail", push.CollapseId);
        Assert.NotNull(push.Expiration);
        Assert.StartsWith("bearer ", push.Authorization, StringComparison.OrdinalIgnoreCase);
        using (var payload = JsonDocument.Parse(push.Payload!))
        {
            var aps = payload.RootElement.GetProperty("aps");
            Assert.Equal(3, aps.GetProperty("badge").GetInt32());
            Assert.False(aps.TryGetProperty("alert", out _)); // badge style: nothing on the lock screen
        }

        var registration = await WaitForAsync(gw, id, r => r.TryGetProperty("lastPush", out _), ct);
        Assert.True(registration.GetProperty("subscriptionBound").GetBoolean());
        Assert.Equal(3, registration.GetProperty("unreadCount").GetInt32());
        Assert.Single(gw.Apns.Requests, r => r.Token == Token(1));
    }

    [Fact]
    public async Task GenericStyle_Japanese_AlertIsLocalised()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var gw = await GatewayHarness.StartAsync(cancellationToken: ct);
        var (_, callback) = await gw.RegisterAsync(Token(2), style: "generic", locale: "ja-JP", cancellationToken: ct);

        await Soap.PostAsync(gw.Client, callback, Soap.NewMail("SUB-2", 1), cancellationToken: ct);

        var push = await gw.Apns.WaitForRequestAsync(r => r.Token == Token(2), ct);
        using var payload = JsonDocument.Parse(push.Payload!);
        var aps = payload.RootElement.GetProperty("aps");
        Assert.Equal("新着メール", aps.GetProperty("alert").GetProperty("body").GetString());
        Assert.Equal(1, aps.GetProperty("badge").GetInt32());
    }

    [Fact]
    public async Task StatusEvent_IsAHeartbeat_BindsTheSubscriptionAndPushesNothing()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var gw = await GatewayHarness.StartAsync(cancellationToken: ct);
        var (id, callback) = await gw.RegisterAsync(Token(3), cancellationToken: ct);

        var (status, body) = await Soap.PostAsync(gw.Client, callback, Soap.Status("SUB-3"), cancellationToken: ct);

        Assert.Equal(200, status);
        Assert.Equal("OK", Soap.StatusOf(body));
        var registration = await gw.GetRegistrationAsync(id, ct);
        Assert.True(registration.GetProperty("subscriptionBound").GetBoolean());
        Assert.True(registration.TryGetProperty("lastEventAt", out _));
        using var queue = JsonDocument.Parse(await gw.Client.GetStringAsync("v1/admin/queue", ct));
        Assert.Equal(0, TotalQueued(queue.RootElement));
        Assert.Empty(gw.Apns.Requests);
    }

    [Fact]
    public async Task Unregistered_DeactivatesRegistration_AndNextCallbackIsAnsweredUnsubscribe()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var gw = await GatewayHarness.StartAsync(cancellationToken: ct);
        var (id, callback) = await gw.RegisterAsync(Token(4), cancellationToken: ct);
        gw.Apns.Unregister(Token(4), new DateTimeOffset(2026, 11, 1, 0, 0, 0, TimeSpan.Zero));

        var first = await Soap.PostAsync(gw.Client, callback, Soap.NewMail("SUB-4", 1), cancellationToken: ct);
        Assert.Equal("OK", Soap.StatusOf(first.Body));
        var registration = await WaitForAsync(gw, id, r => r.GetProperty("status").GetString() == "inactive", ct);
        Assert.Equal("Unregistered", registration.GetProperty("inactiveReason").GetString());

        var second = await Soap.PostAsync(gw.Client, callback, Soap.NewMail("SUB-4", 2), cancellationToken: ct);
        Assert.Equal(200, second.Status);
        Assert.Equal("Unsubscribe", Soap.StatusOf(second.Body));
        Assert.Single(gw.Apns.Requests, r => r.Token == Token(4));
    }

    [Fact]
    public async Task ServiceUnavailable_IsRetried_AndDelivered()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var gw = await GatewayHarness.StartAsync(cancellationToken: ct);
        var (id, callback) = await gw.RegisterAsync(Token(5), cancellationToken: ct);
        gw.Apns.Script(Token(5), (503, "ServiceUnavailable"), (503, "ServiceUnavailable"));

        await Soap.PostAsync(gw.Client, callback, Soap.NewMail("SUB-5", 2), cancellationToken: ct);

        var delivered = await gw.Apns.WaitForRequestAsync(r => r.Token == Token(5) && r.Accepted, ct);
        var attempts = gw.Apns.Requests.Where(r => r.Token == Token(5)).ToList();
        Assert.Equal(3, attempts.Count);
        Assert.Equal([503, 503, 200], attempts.Select(a => a.Status));
        Assert.All(attempts, a => Assert.Equal(delivered.RequestApnsId, a.RequestApnsId)); // the same apns-id on every attempt
        var registration = await WaitForAsync(gw, id, r => r.TryGetProperty("lastPush", out var p) && p.GetProperty("result").GetString()!.StartsWith("sent", StringComparison.Ordinal), ct);
        Assert.Equal("active", registration.GetProperty("status").GetString());
    }

    [Fact]
    public async Task BurstOfMail_WhileTheTokenIsBackingOff_IsCoalescedIntoOnePushWithTheLastBadge()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var gw = await GatewayHarness.StartAsync(new Dictionary<string, string?> { ["Herald:Retry:MaxDelay"] = "00:00:05" }, cancellationToken: ct);
        var (_, callback) = await gw.RegisterAsync(Token(6), cancellationToken: ct);
        gw.Apns.TooManyRequests(Token(6), 1, TimeSpan.FromSeconds(2)); // Apple asks this token to wait 2 s

        var (_, first) = await Soap.PostAsync(gw.Client, callback, Soap.NewMail("SUB-6", 1), cancellationToken: ct);
        Assert.Equal("OK", Soap.StatusOf(first));
        await gw.Apns.WaitForRequestAsync(r => r.Token == Token(6) && r.Status == 429, ct);
        for (var unread = 2; unread <= 10; unread++)
        {
            var (_, body) = await Soap.PostAsync(gw.Client, callback, Soap.NewMail("SUB-6", unread), cancellationToken: ct);
            Assert.Equal("OK", Soap.StatusOf(body));
        }

        var delivered = await gw.Apns.WaitForRequestAsync(r => r.Token == Token(6) && r.Accepted, ct);
        Assert.Contains("\"badge\":10", delivered.Payload, StringComparison.Ordinal);
        Assert.Equal([429, 200], gw.Apns.Requests.Where(r => r.Token == Token(6)).Select(r => r.Status));
    }

    [Fact]
    public async Task DeletedRegistration_NextCallbackIsAnsweredUnsubscribe()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var gw = await GatewayHarness.StartAsync(cancellationToken: ct);
        var (id, callback) = await gw.RegisterAsync(Token(7), cancellationToken: ct);

        using (var deleted = await gw.Client.DeleteAsync("v1/registrations/" + id, ct))
        {
            Assert.Equal(204, (int)deleted.StatusCode);
        }

        var (status, body) = await Soap.PostAsync(gw.Client, callback, Soap.NewMail("SUB-7", 1), cancellationToken: ct);
        Assert.Equal(200, status);
        Assert.Equal("Unsubscribe", Soap.StatusOf(body));
        using var get = await gw.Client.GetAsync("v1/registrations/" + id, ct);
        Assert.Equal(404, (int)get.StatusCode);
        Assert.Empty(gw.Apns.Requests);
    }

    [Fact]
    public async Task UnknownKey_IsAnsweredUnsubscribe()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var gw = await GatewayHarness.StartAsync(cancellationToken: ct);

        var (status, body) = await Soap.PostAsync(gw.Client, gw.BaseUrl + "/ews/notify/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", Soap.NewMail("SUB-X", 1), cancellationToken: ct);

        Assert.Equal(200, status);
        Assert.Equal("Unsubscribe", Soap.StatusOf(body));
    }

    [Fact]
    public async Task Soap12Request_IsAnsweredInSoap12()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var gw = await GatewayHarness.StartAsync(cancellationToken: ct);
        var (_, callback) = await gw.RegisterAsync(Token(8), cancellationToken: ct);
        var soap12 = Soap.NewMail("SUB-8", 1)
            .Replace("http://schemas.xmlsoap.org/soap/envelope/", "http://www.w3.org/2003/05/soap-envelope", StringComparison.Ordinal);

        var (status, body) = await Soap.PostAsync(gw.Client, callback, soap12, "application/soap+xml; charset=utf-8", ct);

        Assert.Equal(200, status);
        Assert.Contains("http://www.w3.org/2003/05/soap-envelope", body, StringComparison.Ordinal);
        Assert.Equal("OK", Soap.StatusOf(body));
        await gw.Apns.WaitForRequestAsync(r => r.Token == Token(8), ct);
    }

    internal static long TotalQueued(JsonElement queue)
    {
        long total = 0;
        foreach (var lane in queue.GetProperty("lanes").EnumerateObject())
        {
            foreach (var state in lane.Value.EnumerateObject())
            {
                total += state.Value.GetInt64();
            }
        }

        return total;
    }

    internal static async Task<JsonElement> WaitForAsync(GatewayHarness gw, string id, Func<JsonElement, bool> condition, CancellationToken ct)
    {
        // Bounded: 200 looks at the registration, 50 ms apart (10 s), driven by real sends completing.
        for (var i = 0; i < 200; i++)
        {
            var registration = await gw.GetRegistrationAsync(id, ct);
            if (condition(registration))
            {
                return registration;
            }

            await Task.Delay(50, ct);
        }

        throw new TimeoutException("The registration did not reach the expected state: " + (await gw.GetRegistrationAsync(id, ct)).GetRawText());
    }
}
