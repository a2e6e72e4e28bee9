using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;
using Xunit;

namespace Herald.Server.Tests;

/// <summary>The node view and the farm readiness check on a single node (SQLite): a farm of one that leads itself.</summary>
public sealed class NodeViewTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task AdminNodes_SingleNode_IsUpAndLeaderWithRegionAndLoad()
    {
        await using var gw = await GatewayHarness.StartAsync(new Dictionary<string, string?>
        {
            ["Herald:Region"] = "apac",
            ["Herald:NodeName"] = "herald-apac-1",
            ["Herald:Farm:HeartbeatInterval"] = "00:00:00.200",
        }, cancellationToken: Ct);

        JsonElement view = default;
        for (var i = 0; i < 100; i++)
        {
            view = JsonDocument.Parse(await gw.Client.GetStringAsync("v1/admin/nodes", Ct)).RootElement.Clone();
            // Load is counted at each heartbeat: wait for one taken after this test's connection opened.
            if (view.GetProperty("nodes").GetArrayLength() == 1 && view.TryGetProperty("leader", out _)
                && view.GetProperty("nodes")[0].GetProperty("load").GetProperty("connections").GetInt32() >= 1)
            {
                break;
            }

            await Task.Delay(100, Ct);
        }

        Assert.Equal("apac", view.GetProperty("region").GetString());
        Assert.Equal("herald-apac-1", view.GetProperty("node").GetString());
        Assert.Equal("herald-apac-1", view.GetProperty("leader").GetString());
        Assert.True(view.GetProperty("term").GetInt64() >= 1);
        var node = Assert.Single(view.GetProperty("nodes").EnumerateArray());
        Assert.Equal("herald-apac-1", node.GetProperty("name").GetString());
        Assert.Equal("apac", node.GetProperty("region").GetString());
        Assert.Equal("up", node.GetProperty("status").GetString());
        Assert.True(node.GetProperty("leader").GetBoolean());
        Assert.StartsWith("herald-apac-1/", node.GetProperty("instance").GetString(), StringComparison.Ordinal);
        Assert.InRange(node.GetProperty("heartbeatAgeSeconds").GetDouble(), 0, 30);
        var load = node.GetProperty("load");
        Assert.True(load.GetProperty("sendsPerSecond").GetDouble() >= 0);
        Assert.Equal(0, load.GetProperty("queueClaimed").GetInt32());
        Assert.True(load.GetProperty("connections").GetInt32() >= 1, "the test's own connection is open"); // counted at the last heartbeat

        using var ready = JsonDocument.Parse(await gw.Client.GetStringAsync("readyz", Ct));
        Assert.Equal("apac", ready.RootElement.GetProperty("region").GetString());
        Assert.Equal("herald-apac-1", ready.RootElement.GetProperty("node").GetString());
        var farm = ready.RootElement.GetProperty("checks").EnumerateArray().Single(c => c.GetProperty("name").GetString() == "farm");
        Assert.Equal("pass", farm.GetProperty("status").GetString());
        Assert.Contains("leader", farm.GetProperty("detail").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task AdminNodes_TenantKeyOrNoKey_IsRefused()
    {
        await using var gw = await GatewayHarness.StartAsync(cancellationToken: Ct);
        using var created = await gw.Client.PostAsync("v1/tenants", new StringContent("""{"name":"acme"}""", System.Text.Encoding.UTF8, "application/json"), Ct);
        using var tenant = JsonDocument.Parse(await created.Content.ReadAsStringAsync(Ct));
        using var keyResponse = await gw.Client.PostAsync($"v1/tenants/{tenant.RootElement.GetProperty("id").GetString()}/keys", null, Ct);
        using var key = JsonDocument.Parse(await keyResponse.Content.ReadAsStringAsync(Ct));
        using var tenantClient = new HttpClient { BaseAddress = gw.Client.BaseAddress };
        tenantClient.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key.RootElement.GetProperty("key").GetString());
        using var anonymous = new HttpClient { BaseAddress = gw.Client.BaseAddress };

        using var forbidden = await tenantClient.GetAsync("v1/admin/nodes", Ct);
        using var unauthorized = await anonymous.GetAsync("v1/admin/nodes", Ct);

        Assert.Equal(HttpStatusCode.Forbidden, forbidden.StatusCode);
        Assert.Equal("application/problem+json", forbidden.Content.Headers.ContentType?.MediaType);
        Assert.Equal(HttpStatusCode.Unauthorized, unauthorized.StatusCode);
    }
}
