using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using Xunit;

namespace Herald.Server.Tests;

public sealed class RateLimitTests
{
    [Fact]
    public async Task PerKey_OverTheBurst_Answers429WithRetryAfter_OtherKeysUnaffected()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var gw = await GatewayHarness.StartAsync(new Dictionary<string, string?>
        {
            ["Herald:RateLimits:PerKeyPerSecond"] = "1",
            ["Herald:RateLimits:PerKeyBurst"] = "5",
        }, cancellationToken: ct);
        using var tenantKey = await NewTenantKeyClientAsync(gw, ct); // uses 2 of the admin key's 5

        var statuses = new List<HttpStatusCode>();
        for (var i = 0; i < 6; i++)
        {
            using var r = await gw.Client.GetAsync("v1/admin/queue", ct);
            statuses.Add(r.StatusCode);
            if (r.StatusCode == HttpStatusCode.TooManyRequests)
            {
                Assert.True(r.Headers.RetryAfter?.Delta >= TimeSpan.FromSeconds(1));
                Assert.Equal("application/problem+json", r.Content.Headers.ContentType?.MediaType);
            }
        }

        Assert.Contains(HttpStatusCode.TooManyRequests, statuses);
        Assert.Equal(HttpStatusCode.OK, statuses[0]);
        using var other = await tenantKey.GetAsync("v1/connectors", ct);
        Assert.Equal(HttpStatusCode.OK, other.StatusCode);
    }

    [Fact]
    public async Task FailedAuthentications_FromOneAddress_LockItOutWith429()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var gw = await GatewayHarness.StartAsync(new Dictionary<string, string?> { ["Herald:RateLimits:AuthFailuresPerMinute"] = "3" }, cancellationToken: ct);
        using var guesser = new HttpClient { BaseAddress = new Uri(gw.BaseUrl + "/") };

        for (var i = 0; i < 3; i++)
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, "v1/admin/queue");
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", "hk_guess_" + i + "_0123456789abcdef");
            using var r = await guesser.SendAsync(request, ct);
            Assert.Equal(HttpStatusCode.Unauthorized, r.StatusCode);
        }

        // The address is now locked out, even with the right key.
        using var locked = await gw.Client.GetAsync("v1/admin/queue", ct);
        Assert.Equal(HttpStatusCode.TooManyRequests, locked.StatusCode);
        Assert.NotNull(locked.Headers.RetryAfter);
    }

    [Fact]
    public async Task PerAddress_OverTheBurst_Answers429()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var gw = await GatewayHarness.StartAsync(new Dictionary<string, string?>
        {
            ["Herald:RateLimits:PerAddressPerSecond"] = "1",
            ["Herald:RateLimits:PerAddressBurst"] = "3",
        }, cancellationToken: ct);

        var statuses = new List<HttpStatusCode>();
        for (var i = 0; i < 5; i++)
        {
            using var r = await gw.Client.GetAsync("healthz", ct);
            statuses.Add(r.StatusCode);
        }

        Assert.Equal(HttpStatusCode.OK, statuses[0]);
        Assert.Equal(HttpStatusCode.TooManyRequests, statuses[^1]);
    }

    [Fact]
    public async Task RevokedKey_StopsWorkingAtOnce()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var gw = await GatewayHarness.StartAsync(cancellationToken: ct);
        using var tenant = await gw.Client.PostAsJsonAsync("v1/tenants", new { name = "contoso" }, ct);
        var tenantId = (await tenant.Content.ReadFromJsonAsync<JsonElement>(ct)).GetProperty("id").GetString()!;
        using var keyResponse = await gw.Client.PostAsync($"v1/tenants/{tenantId}/keys", null, ct);
        var key = await keyResponse.Content.ReadFromJsonAsync<JsonElement>(ct);
        using var client = new HttpClient { BaseAddress = new Uri(gw.BaseUrl + "/") };
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key.GetProperty("key").GetString());
        using (var before = await client.GetAsync("v1/connectors", ct))
        {
            Assert.Equal(HttpStatusCode.OK, before.StatusCode);
        }

        using var revoke = await gw.Client.DeleteAsync($"v1/tenants/{tenantId}/keys/{key.GetProperty("id").GetString()}", ct);
        Assert.Equal(HttpStatusCode.NoContent, revoke.StatusCode);
        using var after = await client.GetAsync("v1/connectors", ct);
        Assert.Equal(HttpStatusCode.Unauthorized, after.StatusCode);
        using var again = await gw.Client.DeleteAsync($"v1/tenants/{tenantId}/keys/{key.GetProperty("id").GetString()}", ct);
        Assert.Equal(HttpStatusCode.NotFound, again.StatusCode);
    }

    private static async Task<HttpClient> NewTenantKeyClientAsync(GatewayHarness gw, CancellationToken ct)
    {
        using var tenant = await gw.Client.PostAsJsonAsync("v1/tenants", new { name = "fabrikam" }, ct);
        var tenantId = (await tenant.Content.ReadFromJsonAsync<JsonElement>(ct)).GetProperty("id").GetString()!;
        using var keyResponse = await gw.Client.PostAsync($"v1/tenants/{tenantId}/keys", null, ct);
        var key = (await keyResponse.Content.ReadFromJsonAsync<JsonElement>(ct)).GetProperty("key").GetString();
        var client = new HttpClient { BaseAddress = new Uri(gw.BaseUrl + "/") };
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
        return client;
    }
}
