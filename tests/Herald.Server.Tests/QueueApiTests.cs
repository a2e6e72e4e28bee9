using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Xunit;

namespace Herald.Server.Tests;

/// <summary>Issue 4 through the API: live settings, lanes and throttling, bulk sends, dead letters, fairness.</summary>
public sealed class QueueApiTests
{
    private static string Token(int tenant, int n) => tenant.ToString("x2") + n.ToString("x8") + new string('b', 54);

    private static StringContent Json(string body) => new(body, Encoding.UTF8, "application/json");

    private static async Task<JsonElement> PutSettingsAsync(HttpClient client, string body, CancellationToken ct)
    {
        using var response = await client.PutAsync("v1/admin/settings", Json(body), ct);
        var text = await response.Content.ReadAsStringAsync(ct);
        Assert.True(response.IsSuccessStatusCode, text);
        return JsonDocument.Parse(text).RootElement.Clone();
    }

    private static async Task<string> SendAsync(HttpClient client, object request, CancellationToken ct)
    {
        using var response = await client.PostAsJsonAsync("v1/notifications", request, ct);
        var text = await response.Content.ReadAsStringAsync(ct);
        Assert.True(response.StatusCode == HttpStatusCode.Accepted, text);
        using var json = JsonDocument.Parse(text);
        return json.RootElement.GetProperty("id").GetString()!;
    }

    private static object Devices(IEnumerable<string> tokens, string lane, int badge = 1)
        => new { lane, kind = "badge", badge, devices = tokens.Select(t => new { platform = "apns", token = t }).ToArray() };

    private static async Task<JsonElement> StatusAsync(HttpClient client, string id, CancellationToken ct)
        => JsonDocument.Parse(await client.GetStringAsync("v1/notifications/" + id, ct)).RootElement.Clone();

    private static async Task<JsonElement> WaitForStatesAsync(HttpClient client, string id, Func<JsonElement, bool> done, CancellationToken ct)
    {
        for (var i = 0; i < 300; i++)
        {
            var status = await StatusAsync(client, id, ct);
            if (done(status.GetProperty("states")))
            {
                return status;
            }

            await Task.Delay(50, ct);
        }

        throw new TimeoutException("request did not reach the state: " + (await StatusAsync(client, id, ct)).GetRawText());
    }

    [Fact]
    public async Task Settings_DefaultsChangeAndAudit()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var gw = await GatewayHarness.StartAsync(cancellationToken: ct);

        using var initial = JsonDocument.Parse(await gw.Client.GetStringAsync("v1/admin/settings", ct));
        Assert.Equal(50, initial.RootElement.GetProperty("lanes").GetProperty("standard").GetProperty("ratePerMinute").GetInt32());
        Assert.Equal("farm", initial.RootElement.GetProperty("lanes").GetProperty("standard").GetProperty("scope").GetString());

        var saved = await PutSettingsAsync(gw.Client, """{"lanes":{"standard":{"ratePerMinute":120,"scope":"node"}},"retry":{"maxAttempts":7}}""", ct);
        Assert.Equal(120, saved.GetProperty("lanes").GetProperty("standard").GetProperty("ratePerMinute").GetInt32());
        Assert.Equal("node", saved.GetProperty("lanes").GetProperty("standard").GetProperty("scope").GetString());
        Assert.Equal(7, saved.GetProperty("retry").GetProperty("maxAttempts").GetInt32());
        Assert.Equal(1, saved.GetProperty("version").GetInt64());

        using var history = JsonDocument.Parse(await gw.Client.GetStringAsync("v1/admin/settings/history", ct));
        var change = history.RootElement[0];
        Assert.Equal(1, change.GetProperty("version").GetInt64());
        Assert.StartsWith("key_", change.GetProperty("actor").GetString());
        Assert.Contains("50", change.GetProperty("old").GetRawText(), StringComparison.Ordinal);
        Assert.Contains("120", change.GetProperty("new").GetRawText(), StringComparison.Ordinal);

        using var bad = await gw.Client.PutAsync("v1/admin/settings", Json("""{"lanes":{"standard":{"ratePerMinute":0}}}"""), ct);
        Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode);
        using var badScope = await gw.Client.PutAsync("v1/admin/settings", Json("""{"lanes":{"standard":{"scope":"galaxy"}}}"""), ct);
        Assert.Equal(HttpStatusCode.BadRequest, badScope.StatusCode);
    }

    [Fact]
    public async Task Settings_ConnectionIdleTime_IsValidatedSavedAndReadLive()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var gw = await GatewayHarness.StartAsync(cancellationToken: ct);
        var live = gw.App.Services.GetRequiredService<Herald.Core.Settings.ILiveConnectionSettings>();

        using var initial = JsonDocument.Parse(await gw.Client.GetStringAsync("v1/admin/settings", ct));
        Assert.False(initial.RootElement.GetProperty("connections").TryGetProperty("idleTimeout", out _)); // null: not written
        Assert.Null(live.IdleTimeout); // each provider's configured idle time

        var saved = await PutSettingsAsync(gw.Client, """{"connections":{"idleTimeout":"00:02:30"}}""", ct);
        Assert.Equal("00:02:30", saved.GetProperty("connections").GetProperty("idleTimeout").GetString());
        Assert.Equal(50, saved.GetProperty("lanes").GetProperty("standard").GetProperty("ratePerMinute").GetInt32()); // the rest kept
        Assert.Equal(TimeSpan.FromSeconds(150), live.IdleTimeout); // what the providers read on their next send

        foreach (var bad in new[] { "00:00:01", "02:00:00", "soon" })
        {
            using var response = await gw.Client.PutAsync("v1/admin/settings", Json("{\"connections\":{\"idleTimeout\":\"" + bad + "\"}}"), ct);
            Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
            Assert.Contains("connections.idleTimeout", await response.Content.ReadAsStringAsync(ct), StringComparison.Ordinal);
        }

        await PutSettingsAsync(gw.Client, """{"connections":{"idleTimeout":null}}""", ct);
        Assert.Null(live.IdleTimeout);
    }

    [Fact]
    public async Task Bulk_DirectDevices_AcceptedAt202_AndEveryTargetEndsSent()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var gw = await GatewayHarness.StartAsync(cancellationToken: ct);
        await PutSettingsAsync(gw.Client, """{"lanes":{"standard":{"ratePerMinute":null}}}""", ct);
        var tokens = Enumerable.Range(0, 2000).Select(i => Token(1, i)).ToList();

        var id = await SendAsync(gw.Client, Devices(tokens, "standard", 4), ct);

        var status = await WaitForStatesAsync(gw.Client, id, s => s.GetProperty("sent").GetInt64() == 2000, ct);
        Assert.Equal(2000, status.GetProperty("count").GetInt32());
        Assert.Equal("standard", status.GetProperty("lane").GetString());
        var target = status.GetProperty("targets")[0];
        Assert.Equal("sent", target.GetProperty("state").GetString());
        Assert.False(target.TryGetProperty("tokenFingerprint", out _)); // a finished notification forgets its token
        Assert.Equal(2000, gw.Apns.Requests.Count(r => r.Accepted && r.Payload == """{"aps":{"badge":4}}"""));
    }

    [Fact]
    public async Task Throttle_FullStandardLane_NeverDelaysPriority_AndARateChangeAppliesWithinSeconds()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var gw = await GatewayHarness.StartAsync(cancellationToken: ct);
        await PutSettingsAsync(gw.Client, """{"lanes":{"standard":{"ratePerMinute":1,"scope":"farm"}}}""", ct);
        var bulk = await SendAsync(gw.Client, Devices(Enumerable.Range(0, 50).Select(i => Token(2, i)), "standard"), ct);

        var priorityToken = Token(3, 1);
        var started = DateTimeOffset.UtcNow;
        await SendAsync(gw.Client, Devices([priorityToken], "priority"), ct);
        var push = await gw.Apns.WaitForRequestAsync(r => r.Token == priorityToken && r.Accepted, ct);
        Assert.True(push.ReceivedAt - started < TimeSpan.FromSeconds(3), "a priority send waited behind the throttled standard lane");
        Assert.InRange(gw.Apns.Requests.Count(r => r.Token.StartsWith("02", StringComparison.Ordinal)), 0, 2); // 1 a minute

        // Raise the limit: the backlog drains within the promised 5 seconds.
        await PutSettingsAsync(gw.Client, """{"lanes":{"standard":{"ratePerMinute":60000,"scope":"farm"}}}""", ct);
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(ct);
        deadline.CancelAfter(TimeSpan.FromSeconds(5));
        await WaitForStatesAsync(gw.Client, bulk, s => s.GetProperty("sent").GetInt64() == 50, deadline.Token);
    }

    [Fact]
    public async Task DeadLetters_AttemptsExhausted_ListedRequeuedAndPurged()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var gw = await GatewayHarness.StartAsync(cancellationToken: ct);
        await PutSettingsAsync(gw.Client, """{"lanes":{"priority":{"ratePerMinute":null}},"retry":{"maxAttempts":2,"initialDelay":"00:00:00.050","maxDelay":"00:00:00.100"}}""", ct);
        var token = Token(4, 1);
        gw.Apns.Script(token, (503, "ServiceUnavailable"), (503, "ServiceUnavailable"));

        var id = await SendAsync(gw.Client, Devices([token], "priority"), ct);
        await WaitForStatesAsync(gw.Client, id, s => s.GetProperty("dead").GetInt64() == 1, ct);

        using (var dead = JsonDocument.Parse(await gw.Client.GetStringAsync("v1/admin/dead", ct)))
        {
            var item = Assert.Single(dead.RootElement.GetProperty("items").EnumerateArray());
            Assert.Equal(2, item.GetProperty("attempts").GetInt32());
            Assert.Equal("ServiceUnavailable", item.GetProperty("lastReason").GetString());
        }

        using (var requeue = await gw.Client.PostAsync("v1/admin/dead/requeue", Json("{}"), ct))
        {
            using var count = JsonDocument.Parse(await requeue.Content.ReadAsStringAsync(ct));
            Assert.Equal(1, count.RootElement.GetProperty("count").GetInt32());
        }

        await WaitForStatesAsync(gw.Client, id, s => s.GetProperty("sent").GetInt64() == 1, ct);
        Assert.Equal([503, 503, 200], gw.Apns.Requests.Where(r => r.Token == token).Select(r => r.Status));

        // A second one dies and is purged.
        var other = Token(4, 2);
        gw.Apns.Script(other, (503, "ServiceUnavailable"), (503, "ServiceUnavailable"));
        var id2 = await SendAsync(gw.Client, Devices([other], "priority"), ct);
        await WaitForStatesAsync(gw.Client, id2, s => s.GetProperty("dead").GetInt64() == 1, ct);
        using (var purge = await gw.Client.PostAsync("v1/admin/dead/purge", Json("{}"), ct))
        {
            using var count = JsonDocument.Parse(await purge.Content.ReadAsStringAsync(ct));
            Assert.Equal(1, count.RootElement.GetProperty("count").GetInt32());
        }

        using var empty = JsonDocument.Parse(await gw.Client.GetStringAsync("v1/admin/dead", ct));
        Assert.Empty(empty.RootElement.GetProperty("items").EnumerateArray());
    }

    [Fact]
    public async Task Fairness_TenantBsPrioritySend_IsNotStuckBehindTenantAsBigJob()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var gw = await GatewayHarness.StartAsync(cancellationToken: ct);
        var a = await TenantClientAsync(gw, "tenant-a", ct);
        var b = await TenantClientAsync(gw, "tenant-b", ct);

        await SendAsync(a, Devices(Enumerable.Range(0, 100_000).Select(i => Token(10, i)), "priority"), ct);
        var bToken = Token(11, 1);
        await SendAsync(b, Devices([bToken], "priority"), ct);

        await gw.Apns.WaitForRequestAsync(r => r.Token == bToken && r.Accepted, ct);
        var aSentBefore = gw.Apns.Requests.TakeWhile(r => r.Token != bToken).Count();
        Assert.True(aSentBefore < 5_000, $"tenant B's send waited for {aSentBefore} of tenant A's");
    }

    [Fact]
    public async Task Notifications_BadRequests_AreClear400s()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var gw = await GatewayHarness.StartAsync(cancellationToken: ct);
        var cases = new (string Body, string Detail)[]
        {
            ("""{"kind":"badge","badge":1}""", "either 'registrations'"),
            ("""{"kind":"badge","badge":1,"registrations":["x"],"devices":[{"token":"aa"}]}""", "either 'registrations'"),
            ("""{"kind":"shout","devices":[{"token":"aaaaaaaaaaaaaaaa"}]}""", "'kind'"),
            ("""{"kind":"badge","devices":[{"token":"aaaaaaaaaaaaaaaa"}]}""", "needs 'badge'"),
            ("""{"kind":"mdm","devices":[{"token":"aaaaaaaaaaaaaaaa","topic":"com.apple.mgmt.External.1"}]}""", "pushMagic"),
            ("""{"kind":"mdm","devices":[{"token":"aaaaaaaaaaaaaaaa","pushMagic":"x"}]}""", "com.apple.mgmt"),
            ("""{"kind":"badge","badge":1,"lane":"fast","devices":[{"token":"aaaaaaaaaaaaaaaa"}]}""", "'lane'"),
            ("""{"kind":"badge","badge":1,"ttlSeconds":-5,"devices":[{"token":"aaaaaaaaaaaaaaaa"}]}""", "'ttlSeconds'"),
            ("""{"kind":"badge","badge":1,"devices":[{"token":"zz"}]}""", "devices[0]"),
        };
        foreach (var (body, detail) in cases)
        {
            using var response = await gw.Client.PostAsync("v1/notifications", Json(body), ct);
            var text = await response.Content.ReadAsStringAsync(ct);
            Assert.True(response.StatusCode == HttpStatusCode.BadRequest, body + " → " + text);
            Assert.Contains(detail, text, StringComparison.Ordinal);
        }

        using var missing = await gw.Client.GetAsync("v1/notifications/ntf_nope", ct);
        Assert.Equal(HttpStatusCode.NotFound, missing.StatusCode);
    }

    private static async Task<HttpClient> TenantClientAsync(GatewayHarness gw, string name, CancellationToken ct)
    {
        using var created = await gw.Client.PostAsJsonAsync("v1/tenants", new { name }, ct);
        Assert.Equal(HttpStatusCode.Created, created.StatusCode);
        using var tenant = JsonDocument.Parse(await created.Content.ReadAsStringAsync(ct));
        var id = tenant.RootElement.GetProperty("id").GetString();
        using var keyResponse = await gw.Client.PostAsync($"v1/tenants/{id}/keys", null, ct);
        Assert.Equal(HttpStatusCode.Created, keyResponse.StatusCode);
        using var key = JsonDocument.Parse(await keyResponse.Content.ReadAsStringAsync(ct));
        var client = new HttpClient { BaseAddress = gw.Client.BaseAddress };
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key.RootElement.GetProperty("key").GetString());
        return client;
    }
}
