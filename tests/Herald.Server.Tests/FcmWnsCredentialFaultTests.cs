using System.Net;
using System.Text.Json;
using Herald.Simulators.Fcm;
using Herald.Simulators.Wns;
using Xunit;
using static Herald.Server.Tests.CredentialTestKit;

namespace Herald.Server.Tests;

/// <summary>
/// A tenant's refused FCM service account or WNS secret, through the gateway: its work waits in retry (never failed or
/// dead), the default tenant keeps sending, /readyz and the credentials API show the fault, and replacing the
/// credential drains the backlog at once.
/// </summary>
public sealed class FcmWnsCredentialFaultTests
{
    private const string Project = "herald-test";
    private const string DefaultSid = "ms-app://s-1-15-2-1111-default";
    private const string DefaultSecret = "default-wns-secret";
    private const string TenantSid = "ms-app://s-1-15-2-2222-tenant";

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task RefusedFcmServiceAccount_StopsOnlyThatTenant_ShowsInHealthAndTheApi_AndAReplacementDrainsIt()
    {
        var (gw, fcm, wns) = await StartAsync();
        await using var _ = gw;
        await using var __ = fcm;
        await using var ___ = wns;
        var (tenant, client) = await TenantAsync(gw, "fabrikam", Ct);
        using var ____ = client;

        // The tenant's service account loses its key at Google: token requests get invalid_grant.
        var broken = fcm.CreateServiceAccount(Project);
        fcm.RevokeServiceAccount(Email(broken));
        var (put, _, text) = await PutJsonAsync(client, $"v1/tenants/{tenant}/credentials/fcm", new { serviceAccountJson = broken }, Ct);
        Assert.True(put == HttpStatusCode.OK, text);

        var tokens = Enumerable.Range(0, 5).Select(i => "fcm-tenant-token-" + i.ToString(System.Globalization.CultureInfo.InvariantCulture) + ":APA91b").ToArray();
        var backlog = await SendAsync(client, new { lane = "priority", kind = "badge", badge = 2, devices = tokens.Select(t => new { platform = "fcm", token = t, topic = Project }).ToArray() }, Ct);
        await WaitForStatesAsync(client, backlog, s => State(s, "retrying") == tokens.Length, Ct);

        // The default tenant's configured account keeps sending.
        var other = await SendAsync(gw.Client, new { lane = "priority", kind = "badge", badge = 1, devices = new[] { new { platform = "fcm", token = "fcm-default-token:APA91b", topic = Project } } }, Ct);
        await WaitForStatesAsync(gw.Client, other, s => State(s, "sent") == 1, Ct);

        await AssertFaultShownAsync(gw, client, tenant, "fcm", "AuthFailed");

        // A working key: the backlog is due now and drains; the fault is gone.
        var (replaced, _, replacedText) = await PutJsonAsync(client, $"v1/tenants/{tenant}/credentials/fcm", new { serviceAccountJson = fcm.CreateServiceAccount(Project) }, Ct);
        Assert.True(replaced == HttpStatusCode.OK, replacedText);
        var drained = await WaitForStatesAsync(client, backlog, s => State(s, "sent") == tokens.Length, Ct);
        Assert.Equal(0, State(drained.GetProperty("states"), "dead"));
        Assert.Equal(0, State(drained.GetProperty("states"), "failed"));
        await AssertNoFaultAsync(gw, client, tenant, "fcm");
    }

    [Fact]
    public async Task RefusedWnsSecret_StopsOnlyThatTenant_ShowsInHealthAndTheApi_AndAReplacementDrainsIt()
    {
        var (gw, fcm, wns) = await StartAsync();
        await using var _ = gw;
        await using var __ = fcm;
        await using var ___ = wns;
        var (tenant, client) = await TenantAsync(gw, "northwind", Ct);
        using var ____ = client;
        wns.AddApplication(TenantSid, "the-real-secret");

        // A wrong (rotated) secret: the token endpoint answers invalid_client.
        var (put, _, text) = await PutJsonAsync(client, $"v1/tenants/{tenant}/credentials/wns", new { packageSid = TenantSid, clientSecret = "an-old-secret" }, Ct);
        Assert.True(put == HttpStatusCode.OK, text);

        var channels = Enumerable.Range(0, 4).Select(_ => wns.CreateChannel(TenantSid)).ToArray();
        var backlog = await SendAsync(client, new { lane = "priority", kind = "badge", badge = 2, devices = channels.Select(c => new { platform = "wns", token = c, topic = TenantSid }).ToArray() }, Ct);
        await WaitForStatesAsync(client, backlog, s => State(s, "retrying") == channels.Length, Ct);

        var defaultChannel = wns.CreateChannel(DefaultSid);
        var other = await SendAsync(gw.Client, new { lane = "priority", kind = "badge", badge = 1, devices = new[] { new { platform = "wns", token = defaultChannel, topic = DefaultSid } } }, Ct);
        await WaitForStatesAsync(gw.Client, other, s => State(s, "sent") == 1, Ct);

        await AssertFaultShownAsync(gw, client, tenant, "wns", "AuthFailed");

        var (replaced, _, replacedText) = await PutJsonAsync(client, $"v1/tenants/{tenant}/credentials/wns", new { packageSid = TenantSid, clientSecret = "the-real-secret" }, Ct);
        Assert.True(replaced == HttpStatusCode.OK, replacedText);
        var drained = await WaitForStatesAsync(client, backlog, s => State(s, "sent") == channels.Length, Ct);
        Assert.Equal(0, State(drained.GetProperty("states"), "dead"));
        Assert.Equal(0, State(drained.GetProperty("states"), "failed"));
        await AssertNoFaultAsync(gw, client, tenant, "wns");
    }

    private static async Task AssertFaultShownAsync(GatewayHarness gw, HttpClient client, string tenant, string platform, string reason)
    {
        var ready = await ReadyAsync(gw, Ct);
        Assert.Equal("degraded", ready.GetProperty("status").GetString());
        var check = ready.GetProperty("checks").EnumerateArray().Single(c => c.GetProperty("name").GetString()!.StartsWith($"credential:{platform}:{tenant}:", StringComparison.Ordinal));
        Assert.Equal("fail", check.GetProperty("status").GetString());
        Assert.Contains(reason, check.GetProperty("detail").GetString(), StringComparison.Ordinal);

        using var credential = JsonDocument.Parse(await client.GetStringAsync($"v1/tenants/{tenant}/credentials/{platform}", Ct));
        Assert.Equal(reason, credential.RootElement.GetProperty("fault").GetProperty("reason").GetString());
        using var list = JsonDocument.Parse(await client.GetStringAsync($"v1/tenants/{tenant}/credentials", Ct));
        Assert.Equal(reason, list.RootElement.GetProperty("items")[0].GetProperty("fault").GetProperty("reason").GetString());
    }

    private static async Task AssertNoFaultAsync(GatewayHarness gw, HttpClient client, string tenant, string platform)
    {
        var ready = await ReadyAsync(gw, Ct);
        Assert.DoesNotContain(ready.GetProperty("checks").EnumerateArray(), c => c.GetProperty("name").GetString()!.StartsWith($"credential:{platform}:{tenant}:", StringComparison.Ordinal));
        using var credential = JsonDocument.Parse(await client.GetStringAsync($"v1/tenants/{tenant}/credentials/{platform}", Ct));
        Assert.False(credential.RootElement.TryGetProperty("fault", out _));
    }

    private static string Email(string serviceAccountJson)
    {
        using var doc = JsonDocument.Parse(serviceAccountJson);
        return doc.RootElement.GetProperty("client_email").GetString()!;
    }

    private static async Task<(GatewayHarness Gateway, FakeFcmServer Fcm, FakeWnsServer Wns)> StartAsync()
    {
        var fcm = await FakeFcmServer.StartAsync(cancellationToken: Ct);
        var wns = await FakeWnsServer.StartAsync(cancellationToken: Ct);
        wns.AddApplication(DefaultSid, DefaultSecret);

        // Long retry delays: only the replacement can make the backlog due again soon.
        var gateway = await GatewayHarness.StartAsync(
            new Dictionary<string, string?>
            {
                ["Herald:Retry:InitialDelay"] = "00:10:00",
                ["Herald:Retry:MaxDelay"] = "01:00:00",
                ["Herald:Fcm:BaseUrl"] = fcm.BaseUrl,
                ["Herald:Fcm:ServiceAccountJson"] = fcm.CreateServiceAccount(Project),
                ["Herald:Wns:TokenUrl"] = wns.TokenUrl,
                ["Herald:Wns:PackageSid"] = DefaultSid,
                ["Herald:Wns:ClientSecret"] = DefaultSecret,
                ["Herald:Wns:AllowedChannelHosts:0"] = wns.Authority,
                ["Herald:Wns:AllowHttpChannels"] = "true",
            },
            cancellationToken: Ct);
        return (gateway, fcm, wns);
    }
}
