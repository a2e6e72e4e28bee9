using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Herald.Core.Ports;
using Herald.Server.Endpoints;
using Herald.Simulators.Graph;
using Herald.Storage;
using Microsoft.Extensions.DependencyInjection;
using Xunit;

namespace Herald.Server.Tests;

/// <summary>
/// The Graph callback endpoints against the fake Graph, for what the end-to-end tests leave open: the handshake does not
/// depend on the store (it is answered while the database is locked, when notifications are refused with 503 and stored on
/// Graph's retry), a body mixing a forged and a real notification, and graph connectors of a tenant other than the default.
/// </summary>
public sealed class GraphCallbackTests
{
    private const string ClientId = "11111111-2222-3333-4444-555555555555";
    private const string ClientSecret = "graph-secret-value";
    private const string Alice = "alice@contoso.com";
    private const string Bob = "bob@contoso.com";

    private static readonly Dictionary<string, string?> Fast = new() { ["Herald:Graph:ReconcileInterval"] = "00:00:00.200" };

    private static string Token(int n) => "9b" + n.ToString("x2") + new string('c', 60);

    private static object ConnectorBody(FakeGraphServer graph) => new
    {
        kind = "graph",
        baseUrl = graph.BaseUrl,
        auth = new { type = "oauth2", tokenUrl = graph.TokenUrl, clientId = ClientId, clientSecret = ClientSecret },
    };

    private static async Task RegisterAsync(HttpClient client, string token, string mailbox, CancellationToken ct)
    {
        using var reg = await client.PostAsJsonAsync("v1/registrations", new { platform = "apns", token, source = "graph", mailbox, connector = "o365", style = "badge" }, ct);
        Assert.True(reg.IsSuccessStatusCode, await reg.Content.ReadAsStringAsync(ct));
    }

    private static async Task<IReadOnlyList<FakeGraphSubscription>> WaitForSubscriptionsAsync(FakeGraphServer graph, int count, CancellationToken ct)
    {
        for (var i = 0; i < 300; i++)
        {
            var live = graph.Subscriptions;
            if (live.Count >= count)
            {
                return live;
            }

            await Task.Delay(50, ct);
        }

        throw new TimeoutException($"Fewer than {count} Graph subscriptions within 15 s; validations: " + string.Join("; ", graph.Validations.Select(v => v.Failure ?? "ok")));
    }

    private static async Task<HttpResponseMessage> PostJsonAsync(HttpClient raw, string url, object body, CancellationToken ct)
        => await raw.PostAsync(url, new StringContent(JsonSerializer.Serialize(body), Encoding.UTF8, "application/json"), ct);

    [Fact]
    public async Task StoreLocked_HandshakeIsStillAnswered_NotificationIs503_GraphsRetryIsStoredAndPushedOnce()
    {
        var ct = TestContext.Current.CancellationToken;

        // Graph waits long enough here to see Herald's 503 (SQLite gives up on the lock after its busy timeout).
        await using var graph = await FakeGraphServer.StartAsync(new FakeGraphOptions { NotificationTimeout = TimeSpan.FromSeconds(20), RetryDelay = TimeSpan.FromMilliseconds(200), MaxDeliveryAttempts = 12 }, cancellationToken: ct);
        graph.RegisterApplication(ClientId, ClientSecret);
        graph.AddMailbox(Alice);
        await using var gw = await GatewayHarness.StartAsync(Fast, cancellationToken: ct);
        using (var put = await gw.Client.PutAsJsonAsync("v1/connectors/o365", ConnectorBody(graph), ct))
        {
            Assert.True(put.IsSuccessStatusCode, await put.Content.ReadAsStringAsync(ct));
        }

        await RegisterAsync(gw.Client, Token(1), Alice, ct);
        await WaitForSubscriptionsAsync(graph, 1, ct);
        using var raw = new HttpClient();

        Task<string> delivery;
        await using (var blocker = new Microsoft.Data.Sqlite.SqliteConnection($"Data Source={gw.DatabasePath};Pooling=False"))
        {
            await blocker.OpenAsync(ct);
            await using (var begin = blocker.CreateCommand())
            {
                begin.CommandText = "BEGIN EXCLUSIVE";
                await begin.ExecuteNonQueryAsync(ct);
            }

            delivery = graph.DeliverAsync(Alice, "While locked", "A", "a@contoso.com", ct);

            // The handshake needs nothing from the store: both URLs answer it while the database is locked.
            foreach (var path in new[] { "/graph/notify/default/o365", "/graph/lifecycle/default/o365" })
            {
                const string token = "Validation: Testing client application reachability +&=/";
                var started = Stopwatch.GetTimestamp();
                using var content = new StringContent(string.Empty, Encoding.UTF8, "text/plain");
                using var response = await raw.PostAsync(gw.BaseUrl + path + "?validationToken=" + Uri.EscapeDataString(token), content, ct);
                Assert.True(Stopwatch.GetElapsedTime(started) < TimeSpan.FromSeconds(10), "Graph's 10 s deadline");
                Assert.Equal(HttpStatusCode.OK, response.StatusCode);
                Assert.Equal("text/plain", response.Content.Headers.ContentType?.MediaType);
                Assert.Equal(token, await response.Content.ReadAsStringAsync(ct));
            }

            // The notification cannot be stored: 503 (never a 202 for something not stored).
            for (var i = 0; i < 300 && !graph.Deliveries.Any(d => d.Status == 503); i++)
            {
                await Task.Delay(100, ct);
            }

            Assert.Contains(graph.Deliveries, d => d.Status == 503);
            Assert.DoesNotContain(graph.Deliveries, d => d.Status == 202);
            Assert.DoesNotContain(gw.Apns.Requests, r => r.Token == Token(1));

            await using var rollback = blocker.CreateCommand();
            rollback.CommandText = "ROLLBACK";
            await rollback.ExecuteNonQueryAsync(ct);
        }

        // Graph's retry, once the lock is gone, is stored and pushed; the notification reaches the device once.
        await delivery.WaitAsync(TimeSpan.FromSeconds(60), ct);
        var statuses = graph.Deliveries.Select(d => d.Status).ToList();
        Assert.Equal(503, statuses[0]);
        Assert.Equal(202, statuses[^1]);
        var push = await gw.Apns.WaitForRequestAsync(r => r.Token == Token(1), ct).WaitAsync(TimeSpan.FromSeconds(30), ct);
        Assert.Contains("\"badge\":1", push.Payload!, StringComparison.Ordinal);

        await graph.DeliverAsync(Alice, "After", "A", "a@contoso.com", ct);
        await gw.Apns.WaitForRequestAsync(r => r.Token == Token(1) && r.Payload!.Contains("\"badge\":2", StringComparison.Ordinal), ct).WaitAsync(TimeSpan.FromSeconds(30), ct);
        Assert.Equal(2, gw.Apns.Requests.Count(r => r.Token == Token(1)));
    }

    [Fact]
    public async Task LifecycleUrl_BadBodiesAndAnOverlongValidationToken_AreRejectedClearly()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var gw = await GatewayHarness.StartAsync(new Dictionary<string, string?> { ["Herald:MaxRequestBodyBytes"] = "4194304" }, cancellationToken: ct);
        using var raw = new HttpClient();
        var lifecycle = gw.BaseUrl + "/graph/lifecycle/default/o365";

        foreach (var (body, expected) in new[] { ("{\"value\":", "not valid JSON"), ("{\"value\":[{\"lifecycleEvent\":\"missed\"}]}", "subscriptionId is required"), ("{\"value\":[{\"subscriptionId\":\"s\",\"lifecycleEvent\":[]}]}", "must be a string") })
        {
            using var response = await raw.PostAsync(lifecycle, new StringContent(body, Encoding.UTF8, "application/json"), ct);
            Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
            Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
            Assert.Contains(expected, await response.Content.ReadAsStringAsync(ct), StringComparison.Ordinal);
        }

        var huge = "{\"value\":[{\"subscriptionId\":\"s\",\"lifecycleEvent\":\"missed\",\"x\":\"" + new string('x', 1100 * 1024) + "\"}]}";
        using (var request = new HttpRequestMessage(HttpMethod.Post, lifecycle) { Content = new StringContent(huge, Encoding.UTF8, "application/json") })
        {
            request.Headers.ExpectContinue = true;
            using var tooLarge = await raw.SendAsync(request, ct);
            Assert.Equal(HttpStatusCode.RequestEntityTooLarge, tooLarge.StatusCode);
            Assert.Equal("application/problem+json", tooLarge.Content.Headers.ContentType?.MediaType);
        }

        using var content = new StringContent(string.Empty, Encoding.UTF8, "text/plain");
        using var overlong = await raw.PostAsync(lifecycle + "?validationToken=" + new string('v', GraphEndpoints.MaxValidationTokenLength + 1), content, ct);
        Assert.Equal(HttpStatusCode.BadRequest, overlong.StatusCode);
        Assert.Equal("application/problem+json", overlong.Content.Headers.ContentType?.MediaType);
        Assert.DoesNotContain("vvvvvvvv", await overlong.Content.ReadAsStringAsync(ct), StringComparison.Ordinal); // not echoed
    }

    [Fact]
    public async Task MixedBody_ForgedItemIsCountedAndDropped_RealItemIsStored()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var graph = await FakeGraphServer.StartAsync(cancellationToken: ct);
        graph.RegisterApplication(ClientId, ClientSecret);
        graph.AddMailbox(Alice);
        await using var gw = await GatewayHarness.StartAsync(Fast, cancellationToken: ct);
        using (var put = await gw.Client.PutAsJsonAsync("v1/connectors/o365", ConnectorBody(graph), ct))
        {
            Assert.True(put.IsSuccessStatusCode, await put.Content.ReadAsStringAsync(ct));
        }

        await RegisterAsync(gw.Client, Token(2), Alice, ct);
        var subscription = Assert.Single(await WaitForSubscriptionsAsync(graph, 1, ct));

        // Until Herald has stored Graph's id (its create call returned), a notification is matched by its clientState
        // alone, so a forged item cannot be told apart from one for another subscription: wait for the confirmed id.
        var subscriptions = (IGraphSubscriptionStore)gw.App.Services.GetRequiredService<IHeraldStore>();
        for (var i = 0; i < 300 && await subscriptions.GetGraphSubscriptionAsync(subscription.Id, ct) is null; i++)
        {
            await Task.Delay(50, ct);
        }

        Assert.NotNull(await subscriptions.GetGraphSubscriptionAsync(subscription.Id, ct));
        var stats = gw.App.Services.GetRequiredService<GraphCallbackStats>();
        var body = new
        {
            value = new object[]
            {
                new { subscriptionId = subscription.Id, clientState = subscription.ClientState, changeType = "created", resource = "Users/x/Messages/m-real", resourceData = new { id = "m-real" }, tenantId = graph.TenantId },
                new { subscriptionId = subscription.Id, clientState = "guessed", changeType = "created", resource = "Users/x/Messages/m-forged", resourceData = new { id = "m-forged" }, tenantId = graph.TenantId },
            },
        };
        using var raw = new HttpClient();

        using (var first = await PostJsonAsync(raw, gw.BaseUrl + "/graph/notify/default/o365", body, ct))
        {
            Assert.Equal(HttpStatusCode.Accepted, first.StatusCode); // the real one is accepted
        }

        Assert.Equal(1, stats.ClientStateMismatches);
        Assert.Equal(0, stats.Duplicates);

        // The same body again (Graph's retry): the real item was stored (its dedup key absorbs it), the forged one was not.
        using (var again = await PostJsonAsync(raw, gw.BaseUrl + "/graph/notify/default/o365", body, ct))
        {
            Assert.Equal(HttpStatusCode.Accepted, again.StatusCode);
        }

        Assert.Equal(2, stats.ClientStateMismatches);
        Assert.Equal(1, stats.Duplicates);

        // A body of nothing but the forged item is refused.
        using (var forged = await PostJsonAsync(raw, gw.BaseUrl + "/graph/notify/default/o365", new { value = new[] { body.value[1] } }, ct))
        {
            Assert.Equal(HttpStatusCode.BadRequest, forged.StatusCode);
            Assert.Equal("application/problem+json", forged.Content.Headers.ContentType?.MediaType);
        }

        Assert.Equal(3, stats.ClientStateMismatches);
    }

    [Fact]
    public async Task TenantConnector_SubscribesOnTenantUrls_WithADistinctClientStatePerMailbox_AndIgnoresAnotherTenantsUrl()
    {
        var ct = TestContext.Current.CancellationToken;

        // Graph waits long here, so a slow answer on a loaded machine is not retried (which would count a duplicate).
        await using var graph = await FakeGraphServer.StartAsync(new FakeGraphOptions { NotificationTimeout = TimeSpan.FromSeconds(30) }, cancellationToken: ct);
        graph.RegisterApplication(ClientId, ClientSecret);
        var aliceObjectId = graph.AddMailbox(Alice);
        graph.AddMailbox(Bob);
        await using var gw = await GatewayHarness.StartAsync(Fast, cancellationToken: ct);

        using var tenantResponse = await gw.Client.PostAsJsonAsync("v1/tenants", new { name = "contoso" }, ct);
        Assert.True(tenantResponse.IsSuccessStatusCode, await tenantResponse.Content.ReadAsStringAsync(ct));
        var tenantId = (await tenantResponse.Content.ReadFromJsonAsync<JsonElement>(ct)).GetProperty("id").GetString()!;
        using var keyResponse = await gw.Client.PostAsync($"v1/tenants/{tenantId}/keys", null, ct);
        var key = (await keyResponse.Content.ReadFromJsonAsync<JsonElement>(ct)).GetProperty("key").GetString();
        using var tenant = new HttpClient { BaseAddress = new Uri(gw.BaseUrl + "/") };
        tenant.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);

        using (var put = await tenant.PutAsJsonAsync("v1/connectors/o365", ConnectorBody(graph), ct))
        {
            Assert.True(put.IsSuccessStatusCode, await put.Content.ReadAsStringAsync(ct));
        }

        await RegisterAsync(tenant, Token(3), Alice, ct);
        await RegisterAsync(tenant, Token(4), Bob, ct);
        var subscriptions = await WaitForSubscriptionsAsync(graph, 2, ct);

        // One subscription per mailbox, on the tenant's URLs, each with its own random clientState (Graph allows 128 characters).
        Assert.Equal(2, subscriptions.Count);
        var tenantPath = "/graph/notify/" + Uri.EscapeDataString(tenantId) + "/o365";
        Assert.All(subscriptions, s =>
        {
            Assert.EndsWith(tenantPath, s.NotificationUrl, StringComparison.Ordinal);
            Assert.EndsWith("/graph/lifecycle/" + Uri.EscapeDataString(tenantId) + "/o365", s.LifecycleNotificationUrl, StringComparison.Ordinal);
            Assert.Equal("created,updated", s.ChangeType);
            Assert.InRange(s.ClientState!.Length, 32, 128);
        });
        Assert.NotEqual(subscriptions[0].ClientState, subscriptions[1].ClientState);
        var alice = Assert.Single(subscriptions, s => s.Resource.Contains("alice", StringComparison.Ordinal));

        // Alice's next notification, posted first to the default tenant's URL: not this subscription's connector, dropped.
        const string messageId = "AAMkAD00000001="; // the fake Graph's first message id
        var resource = "Users/" + aliceObjectId + "/Messages/" + messageId;
        var early = new { value = new[] { new { subscriptionId = alice.Id, clientState = alice.ClientState, changeType = "created", resource, resourceData = new { id = messageId }, tenantId = graph.TenantId } } };
        using var raw = new HttpClient();
        using (var wrongTenant = await PostJsonAsync(raw, gw.BaseUrl + "/graph/notify/default/o365", early, ct))
        {
            Assert.Equal(HttpStatusCode.Accepted, wrongTenant.StatusCode);
        }

        // The real delivery on the tenant's URL is therefore new (no duplicate) and pushed to alice's device only.
        Assert.Equal(messageId, await graph.DeliverAsync(Alice, "Hello", "Carol", "carol@contoso.com", ct));
        Assert.Equal(202, Assert.Single(graph.Deliveries).Status);
        Assert.EndsWith(tenantPath, graph.Deliveries[^1].Url, StringComparison.Ordinal);
        var push = await gw.Apns.WaitForRequestAsync(r => r.Token == Token(3), ct).WaitAsync(TimeSpan.FromSeconds(30), ct);
        Assert.Contains("\"badge\":1", push.Payload!, StringComparison.Ordinal);
        Assert.Equal(0, gw.App.Services.GetRequiredService<GraphCallbackStats>().Duplicates);

        await graph.DeliverAsync(Bob, "Hi Bob", "Carol", "carol@contoso.com", ct);
        var bobPush = await gw.Apns.WaitForRequestAsync(r => r.Token == Token(4), ct).WaitAsync(TimeSpan.FromSeconds(30), ct);
        Assert.Contains("\"badge\":1", bobPush.Payload!, StringComparison.Ordinal);
        Assert.Single(gw.Apns.Requests, r => r.Token == Token(3));
    }
}
