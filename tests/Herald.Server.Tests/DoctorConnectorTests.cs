using System.Net.Http.Json;
using System.Text.Json;
using Herald.Server.Cli;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Xunit;

namespace Herald.Server.Tests;

/// <summary><c>herald doctor</c> checks each connector (token, service account) and the clock against the peers.</summary>
public sealed class DoctorConnectorTests
{
    [Fact]
    public async Task Doctor_ChecksConnectorTokens_AndTheClockAgainstThePeers()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var peer = await TokenPeer.StartAsync(skew: TimeSpan.Zero, ct);
        await using var gw = await GatewayHarness.StartAsync(cancellationToken: ct);
        await PutAsync(gw, "o365", new { kind = "graph", baseUrl = "http://127.0.0.1:9", auth = new { type = "oauth2", tokenUrl = peer.Url + "/token", clientId = "good", clientSecret = "secret-1" } }, ct);
        await PutAsync(gw, "wrong", new { kind = "graph", auth = new { type = "oauth2", tokenUrl = peer.Url + "/token", clientId = "bad", clientSecret = "secret-2" } }, ct);
        await PutAsync(gw, "exchange", new { kind = "ews", ewsUrl = peer.Url + "/EWS/Exchange.asmx", auth = new { type = "basic", username = "svc-herald", password = "right-password" } }, ct);
        await PutAsync(gw, "imap", new { kind = "dovecot", username = "dovecot", password = "long-enough-password" }, ct);

        var checks = await DoctorAsync(gw, ct);

        Assert.Contains(checks, c => c.Name == "connector:default/o365" && c.Status == "pass");
        Assert.Contains(checks, c => c.Name == "connector:default/wrong" && c.Status == "fail" && c.Detail.Contains("invalid_client", StringComparison.Ordinal));
        Assert.Contains(checks, c => c.Name == "connector:default/exchange" && c.Status == "pass");
        Assert.Contains(checks, c => c.Name == "connector:default/imap" && c.Status == "pass" && c.Detail.Contains("/dovecot/notify/", StringComparison.Ordinal));
        Assert.Contains(checks, c => c.Name == "clock" && c.Status == "pass");
    }

    [Fact]
    public async Task Doctor_ClockTenMinutesOff_Fails()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var peer = await TokenPeer.StartAsync(skew: TimeSpan.FromMinutes(10), ct);
        await using var gw = await GatewayHarness.StartAsync(cancellationToken: ct);
        await PutAsync(gw, "o365", new { kind = "graph", auth = new { type = "oauth2", tokenUrl = peer.Url + "/token", clientId = "good", clientSecret = "secret-1" } }, ct);

        var checks = await DoctorAsync(gw, ct);

        Assert.Contains(checks, c => c.Name == "clock" && c.Status == "fail" && c.Detail.Contains("ahead of the peers by", StringComparison.Ordinal));
    }

    private static async Task PutAsync(GatewayHarness gw, string name, object body, CancellationToken ct)
    {
        using var response = await gw.Client.PutAsJsonAsync("v1/connectors/" + name, body, ct);
        Assert.True(response.IsSuccessStatusCode, await response.Content.ReadAsStringAsync(ct));
    }

    private static async Task<IReadOnlyList<DoctorCommand.Check>> DoctorAsync(GatewayHarness gw, CancellationToken ct)
    {
        var settings = GatewayHarness.Settings(gw.Directory, gw.Apns.BaseUrl, "unused");
        settings.Remove("Herald:Apns:PrivateKeyPem");
        settings.Remove("Herald:Apns:TeamId");
        settings.Remove("Herald:Apns:KeyId");
        settings["Herald:PublicBaseUrl"] = gw.BaseUrl;
        var file = Path.Combine(gw.Directory, "doctor-" + Guid.NewGuid().ToString("N")[..6] + ".json");
        await File.WriteAllTextAsync(file, JsonSerializer.Serialize(settings), ct);
        return await DoctorCommand.RunAsync(["--urls=http://127.0.0.1:0"], file, ct);
    }

    /// <summary>An OAuth2 token endpoint and an EWS endpoint with Basic auth, whose Date header can be skewed.</summary>
    private sealed class TokenPeer : IAsyncDisposable
    {
        private readonly WebApplication _app;

        private TokenPeer(WebApplication app) => _app = app;

        public string Url => _app.Urls.First();

        public static async Task<TokenPeer> StartAsync(TimeSpan skew, CancellationToken ct)
        {
            var builder = WebApplication.CreateSlimBuilder();
            builder.WebHost.UseUrls("http://127.0.0.1:0");
            var app = builder.Build();
            app.Use((context, next) =>
            {
                context.Response.Headers.Date = (DateTimeOffset.UtcNow - skew).ToString("R");
                return next(context);
            });
            app.MapPost("/token", async (HttpContext http) =>
            {
                var form = await http.Request.ReadFormAsync();
                return form["client_id"] == "good" && form["client_secret"] == "secret-1" && form["grant_type"] == "client_credentials"
                    ? Results.Json(new Dictionary<string, object> { ["access_token"] = "at-123", ["token_type"] = "Bearer", ["expires_in"] = 3599 })
                    : Results.Json(new Dictionary<string, object> { ["error"] = "invalid_client" }, statusCode: 401);
            });
            app.MapGet("/EWS/Exchange.asmx", (HttpContext http) =>
                http.Request.Headers.Authorization.ToString() == "Basic " + Convert.ToBase64String("svc-herald:right-password"u8.ToArray())
                    ? Results.Ok()
                    : Results.Unauthorized());
            await app.StartAsync(ct);
            return new TokenPeer(app);
        }

        public async ValueTask DisposeAsync()
        {
            await _app.StopAsync();
            await _app.DisposeAsync();
        }
    }
}
