using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Herald.Simulators.Fcm;
using Herald.Simulators.Wns;
using Xunit;

namespace Herald.Server.Tests;

/// <summary>EWS push → queue → FCM and WNS through the gateway, against the fake FCM and fake WNS.</summary>
public sealed class MultiProviderEndToEndTests
{
    private const string WnsSid = "ms-app://s-1-15-2-1111-test";
    private const string WnsSecret = "test-wns-secret";

    private static async Task<(GatewayHarness Gateway, FakeFcmServer Fcm, FakeWnsServer Wns)> StartAsync(CancellationToken ct)
    {
        var fcm = await FakeFcmServer.StartAsync(cancellationToken: ct);
        var wns = await FakeWnsServer.StartAsync(cancellationToken: ct);
        wns.AddApplication(WnsSid, WnsSecret);
        var gateway = await GatewayHarness.StartAsync(
            new Dictionary<string, string?>
            {
                ["Herald:Fcm:BaseUrl"] = fcm.BaseUrl,
                ["Herald:Fcm:ServiceAccountJson"] = fcm.CreateServiceAccount("herald-test"),
                ["Herald:Wns:TokenUrl"] = wns.TokenUrl,
                ["Herald:Wns:PackageSid"] = WnsSid,
                ["Herald:Wns:ClientSecret"] = WnsSecret,
                ["Herald:Wns:AllowedChannelHosts:0"] = wns.Authority,
                ["Herald:Wns:AllowHttpChannels"] = "true",
            },
            cancellationToken: ct);
        return (gateway, fcm, wns);
    }

    private static async Task<string> RegisterAsync(GatewayHarness gw, string platform, string token, CancellationToken ct)
    {
        using var response = await gw.Client.PostAsJsonAsync("v1/registrations", new { platform, token, source = "ews-push" }, ct);
        var body = await response.Content.ReadAsStringAsync(ct);
        Assert.True(response.StatusCode == HttpStatusCode.Created, body);
        using var json = JsonDocument.Parse(body);
        return json.RootElement.GetProperty("callbackUrl").GetString()!;
    }

    [Fact]
    public async Task NewMail_ForAnAndroidDevice_ArrivesAtFcmAsAHighPriorityDataWakeUpWithTheBadge()
    {
        var ct = TestContext.Current.CancellationToken;
        var (gw, fcm, wns) = await StartAsync(ct);
        await using var _ = gw;
        await using var __ = fcm;
        await using var ___ = wns;
        const string token = "fcmTestToken:APA91bHunvZ0123456789";
        var callback = await RegisterAsync(gw, "fcm", token, ct);

        var (_, answer) = await Soap.PostAsync(gw.Client, callback, Soap.NewMail("SUB-F", 4), cancellationToken: ct);

        Assert.Equal("OK", Soap.StatusOf(answer));
        var push = await fcm.WaitForRequestAsync(r => r.Token == token, ct);
        Assert.True(push.Accepted);
        Assert.Equal("herald-test", push.Project);
        Assert.Equal("high", push.AndroidPriority);
        Assert.Equal("4", push.Data["badge"]);
        Assert.False(push.HasNotification); // badge style: a silent wake-up, nothing on screen
    }

    [Fact]
    public async Task NewMail_ForAWindowsDevice_ArrivesAtWnsAsABadge()
    {
        var ct = TestContext.Current.CancellationToken;
        var (gw, fcm, wns) = await StartAsync(ct);
        await using var _ = gw;
        await using var __ = fcm;
        await using var ___ = wns;
        var channel = wns.CreateChannel(WnsSid);
        var callback = await RegisterAsync(gw, "wns", channel, ct);

        var (_, answer) = await Soap.PostAsync(gw.Client, callback, Soap.NewMail("SUB-W", 6), cancellationToken: ct);

        Assert.Equal("OK", Soap.StatusOf(answer));
        var push = await wns.WaitForRequestAsync(r => r.Channel == channel, ct);
        Assert.True(push.Accepted);
        Assert.Equal("wns/badge", push.Type);
        Assert.Contains("value=\"6\"", push.Body, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("https://169.254.169.254/latest/meta-data/")]
    [InlineData("https://db5.notify.windows.com.evil.example/?token=x")]
    [InlineData("http://10.0.0.1/w/?token=x")]
    [InlineData("not a uri")]
    public async Task RegisterWns_ChannelOutsideTheAllowList_Answers400(string channel)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var gw = await GatewayHarness.StartAsync(cancellationToken: ct);

        using var response = await gw.Client.PostAsJsonAsync("v1/registrations", new { platform = "wns", token = channel, source = "ews-push" }, ct);

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Contains("'token' for wns", await response.Content.ReadAsStringAsync(ct), StringComparison.Ordinal);
    }
}
