using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Xunit;

namespace Herald.Server.Tests;

public sealed class RegistrationApiTests
{
    [Fact]
    public async Task Create_ReturnsCallbackUrlWithAtLeast128RandomBits_AndGetNeverShowsTheToken()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var gw = await GatewayHarness.StartAsync(cancellationToken: ct);
        var token = "<" + string.Concat(Enumerable.Repeat("ABCDEF01 ", 8)).Trim() + ">"; // as some MDM servers print it

        using var response = await gw.Client.PostAsJsonAsync("v1/registrations", new { platform = "apns", token, source = "ews-push", style = "generic", folders = new[] { "inbox", "calendar" }, locale = "ja-JP" }, ct);

        Assert.Equal(HttpStatusCode.Created, response.StatusCode);
        using var created = JsonDocument.Parse(await response.Content.ReadAsStringAsync(ct));
        var root = created.RootElement;
        var id = root.GetProperty("id").GetString()!;
        Assert.Equal("/v1/registrations/" + id, response.Headers.Location?.ToString());
        Assert.Equal("active", root.GetProperty("status").GetString());
        var key = root.GetProperty("callbackUrl").GetString()!.Split('/')[^1];
        Assert.True(key.Length * 6 >= 128, "callback key must carry at least 128 random bits");

        var again = await gw.GetRegistrationAsync(id, ct);
        Assert.False(again.TryGetProperty("callbackUrl", out _)); // the key is only stored hashed
        Assert.StartsWith("tok:", again.GetProperty("tokenFingerprint").GetString());
        Assert.DoesNotContain("abcdef01", again.GetRawText(), StringComparison.OrdinalIgnoreCase);
        Assert.Equal("generic", again.GetProperty("style").GetString());
        Assert.Equal(["inbox", "calendar"], again.GetProperty("folders").EnumerateArray().Select(f => f.GetString()));
        Assert.Equal("ja-JP", again.GetProperty("locale").GetString());
    }

    [Fact]
    public async Task Patch_RotatedToken_RevivesAnInactiveRegistration_AndPushesGoToTheNewToken()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var gw = await GatewayHarness.StartAsync(cancellationToken: ct);
        var oldToken = new string('e', 64);
        var newToken = new string('f', 64);
        var (id, callback) = await gw.RegisterAsync(oldToken, cancellationToken: ct);
        gw.Apns.Unregister(oldToken, DateTimeOffset.UnixEpoch);
        await Soap.PostAsync(gw.Client, callback, Soap.NewMail("S", 1), cancellationToken: ct);
        await EwsPushEndToEndTests.WaitForAsync(gw, id, r => r.GetProperty("status").GetString() == "inactive", ct);

        using var patch = await gw.Client.PatchAsync("v1/registrations/" + id, new StringContent($"{{\"token\":\"{newToken}\",\"style\":\"generic\"}}", Encoding.UTF8, "application/json"), ct);
        Assert.Equal(HttpStatusCode.OK, patch.StatusCode);
        using var patched = JsonDocument.Parse(await patch.Content.ReadAsStringAsync(ct));
        Assert.Equal("active", patched.RootElement.GetProperty("status").GetString());

        var (_, body) = await Soap.PostAsync(gw.Client, callback, Soap.NewMail("S", 2), cancellationToken: ct);
        Assert.Equal("OK", Soap.StatusOf(body));
        var push = await gw.Apns.WaitForRequestAsync(r => r.Token == newToken, ct);
        Assert.Contains("\"badge\":2", push.Payload, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Health_Readiness_AndOpenApi_Answer()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var gw = await GatewayHarness.StartAsync(cancellationToken: ct);
        using var anonymous = new HttpClient { BaseAddress = gw.Client.BaseAddress };

        Assert.Equal("ok\n", await anonymous.GetStringAsync("healthz", ct));
        using var ready = JsonDocument.Parse(await anonymous.GetStringAsync("readyz", ct));
        Assert.Equal("ready", ready.RootElement.GetProperty("status").GetString());
        Assert.Equal("local", ready.RootElement.GetProperty("region").GetString());
        using var openApi = JsonDocument.Parse(await anonymous.GetStringAsync("openapi/v1.json", ct));
        var paths = openApi.RootElement.GetProperty("paths");
        Assert.True(paths.TryGetProperty("/v1/registrations", out _));
        Assert.True(paths.TryGetProperty("/ews/notify/{key}", out _));
    }
}
