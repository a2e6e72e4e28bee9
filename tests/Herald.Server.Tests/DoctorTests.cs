using System.Text.Json;
using Herald.Server.Cli;
using Microsoft.Extensions.DependencyInjection;
using Xunit;

namespace Herald.Server.Tests;

/// <summary><c>herald doctor</c> against a healthy and a broken deployment.</summary>
public sealed class DoctorTests
{
    private static async Task<IReadOnlyList<DoctorCommand.Check>> DoctorAsync(Dictionary<string, string?> settings, string directory, CancellationToken ct)
    {
        var file = Path.Combine(directory, "doctor-" + Guid.NewGuid().ToString("N")[..6] + ".json");
        await File.WriteAllTextAsync(file, JsonSerializer.Serialize(settings), ct);
        return await DoctorCommand.RunAsync(["--urls=http://127.0.0.1:0"], file, ct);
    }

    [Fact]
    public async Task Doctor_HealthyDeployment_PassesEveryConfiguredCheck()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var gw = await GatewayHarness.StartAsync(cancellationToken: ct);
        var settings = GatewayHarness.Settings(gw.Directory, gw.Apns.BaseUrl, await ReadKeyAsync(gw));
        settings["Herald:PublicBaseUrl"] = gw.BaseUrl; // the gateway's own (migrated) database

        var checks = await DoctorAsync(settings, gw.Directory, ct);

        Assert.DoesNotContain(checks, c => c.Status == "fail");
        Assert.Contains(checks, c => c.Name == "database" && c.Status == "pass");
        Assert.Contains(checks, c => c.Name == "credential:apns" && c.Status == "pass");
        Assert.Contains(checks, c => c.Name == "reach:apns-production" && c.Status == "pass");
        Assert.Contains(checks, c => c.Name == "public-url" && c.Status == "pass");
        Assert.Contains(checks, c => c.Name == "credential:fcm" && c.Status == "warn"); // not configured here
    }

    [Fact]
    public async Task Doctor_BrokenDeployment_FailsWithTheCause()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var gw = await GatewayHarness.StartAsync(cancellationToken: ct);
        var closed = $"http://127.0.0.1:{HeraldProcess.FreePort()}";
        var settings = GatewayHarness.Settings(gw.Directory, closed, "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----");
        settings["Herald:Database"] = "sqlite:" + Path.Combine(gw.Directory, "doctor-broken.db");
        settings["Herald:PublicBaseUrl"] = closed;

        var checks = await DoctorAsync(settings, gw.Directory, ct);

        Assert.Contains(checks, c => c.Name == "credential:apns" && c.Status == "fail" && c.Detail.Contains("does not load", StringComparison.Ordinal));
        Assert.Contains(checks, c => c.Name == "reach:apns-production" && c.Status == "fail" && c.Detail.Contains("unreachable", StringComparison.Ordinal));
        Assert.Contains(checks, c => c.Name == "public-url" && c.Status == "fail");
        Assert.Equal(HeraldCli.Failure, await HeraldCli.RunAsync(["doctor", "--config", Directory.GetFiles(gw.Directory, "doctor-*.json")[0]]));
    }

    private static Task<string> ReadKeyAsync(GatewayHarness gw)
        => Task.FromResult(gw.App.Services.GetRequiredService<Microsoft.Extensions.Options.IOptions<Providers.Apns.ApnsOptions>>().Value.PrivateKeyPem!);
}
