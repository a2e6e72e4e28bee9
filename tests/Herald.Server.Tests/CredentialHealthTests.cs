using System.Text.Json;
using Xunit;

namespace Herald.Server.Tests;

/// <summary>A credential fault shows in /readyz while it lasts, and clears when a send succeeds again.</summary>
public sealed class CredentialHealthTests
{
    [Fact]
    public async Task InvalidProviderToken_DegradesReadiness_UntilASendSucceeds()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var gw = await GatewayHarness.StartAsync(new Dictionary<string, string?> { ["Herald:Retry:InitialDelay"] = "00:00:01", ["Herald:Retry:MaxDelay"] = "00:00:02" }, cancellationToken: ct);
        var token = new string('4', 64);
        var (_, callback) = await gw.RegisterAsync(token, cancellationToken: ct);
        gw.Apns.Script(token, (403, "InvalidProviderToken"));
        using var anonymous = new HttpClient { BaseAddress = gw.Client.BaseAddress };

        await Soap.PostAsync(gw.Client, callback, Soap.NewMail("SUB-C", 1), cancellationToken: ct);
        await gw.Apns.WaitForRequestAsync(r => r.Token == token && r.Status == 403, ct);

        // The per-credential check can turn readiness "degraded" a moment before the platform check fails: wait for the latter.
        var degraded = await WaitForReadyAsync(anonymous, "degraded", ct, check: "credential:apns");
        var apns = degraded.GetProperty("checks").EnumerateArray().Single(c => c.GetProperty("name").GetString() == "credential:apns");
        Assert.Equal("fail", apns.GetProperty("status").GetString());
        Assert.Contains("InvalidProviderToken", apns.GetProperty("detail").GetString(), StringComparison.Ordinal);

        // The retry (the credential works again) is delivered, and readiness recovers.
        await gw.Apns.WaitForRequestAsync(r => r.Token == token && r.Accepted, ct);
        await WaitForReadyAsync(anonymous, "ready", ct);
    }

    private static async Task<JsonElement> WaitForReadyAsync(HttpClient client, string status, CancellationToken ct, string? check = null)
    {
        for (var i = 0; i < 200; i++)
        {
            using var ready = JsonDocument.Parse(await client.GetStringAsync("readyz", ct));
            if (ready.RootElement.GetProperty("status").GetString() == status
                && (check is null || ready.RootElement.GetProperty("checks").EnumerateArray().Any(c =>
                    c.GetProperty("name").GetString() == check && c.GetProperty("status").GetString() == "fail")))
            {
                return ready.RootElement.Clone();
            }

            await Task.Delay(25, ct);
        }

        throw new TimeoutException("readiness never became " + status + ": " + await client.GetStringAsync("readyz", ct));
    }
}
