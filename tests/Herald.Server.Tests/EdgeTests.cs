using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Herald.Server.Hosting;
using Microsoft.Extensions.Configuration;
using Xunit;

namespace Herald.Server.Tests;

public sealed class EdgeTests
{
    [Fact]
    public async Task Serve_WithACertificateFile_AnswersOverHttps()
    {
        var ct = TestContext.Current.CancellationToken;
        var directory = Path.Combine(Path.GetTempPath(), "herald-tls-" + Guid.NewGuid().ToString("N")[..12]);
        Directory.CreateDirectory(directory);
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=herald.test", key, HashAlgorithmName.SHA256);
        var san = new SubjectAlternativeNameBuilder();
        san.AddIpAddress(IPAddress.Loopback);
        request.CertificateExtensions.Add(san.Build());
        using var certificate = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddDays(1));
        var certPath = Path.Combine(directory, "tls.crt");
        var keyPath = Path.Combine(directory, "tls.key");
        await File.WriteAllTextAsync(certPath, certificate.ExportCertificatePem(), ct);
        await File.WriteAllTextAsync(keyPath, key.ExportPkcs8PrivateKeyPem(), ct);

        var port = HeraldProcess.FreePort();
        var app = HeraldApp.Build([$"--urls=https://127.0.0.1:{port}"], configure: b => b.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Herald:Database"] = "sqlite:" + Path.Combine(directory, "herald.db"),
            ["Herald:AdminApiKey"] = GatewayHarness.AdminKey,
            ["Herald:Tls:CertificatePath"] = certPath,
            ["Herald:Tls:KeyPath"] = keyPath,
            ["Logging:LogLevel:Default"] = "Warning",
        }));
        await HeraldApp.StartAsync(app, ct);
        try
        {
            var thumbprint = certificate.GetCertHashString(HashAlgorithmName.SHA256);
            using var handler = new SocketsHttpHandler
            {
                SslOptions = { RemoteCertificateValidationCallback = (_, cert, _, _) => cert is not null && cert.GetCertHashString(HashAlgorithmName.SHA256) == thumbprint },
            };
            using var client = new HttpClient(handler) { BaseAddress = new Uri($"https://127.0.0.1:{port}/") };
            using var response = await client.GetAsync("healthz", ct);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }
        finally
        {
            await app.StopAsync(CancellationToken.None);
            await app.DisposeAsync();
        }
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task ForwardedFor_IsHonouredOnlyFromATrustedProxy(bool trusted)
    {
        var ct = TestContext.Current.CancellationToken;
        var settings = new Dictionary<string, string?> { ["Herald:RateLimits:AuthFailuresPerMinute"] = "2" };
        if (trusted)
        {
            settings["Herald:ForwardedHeaders:KnownProxies:0"] = "127.0.0.1";
        }

        await using var gw = await GatewayHarness.StartAsync(settings, cancellationToken: ct);
        using var client = new HttpClient { BaseAddress = new Uri(gw.BaseUrl + "/") };
        for (var i = 0; i < 2; i++)
        {
            using var bad = new HttpRequestMessage(HttpMethod.Get, "v1/admin/queue");
            bad.Headers.Authorization = new AuthenticationHeaderValue("Bearer", "hk_wrong_key_0123456789abcdef");
            bad.Headers.Add("X-Forwarded-For", "203.0.113.7");
            using var r = await client.SendAsync(bad, ct);
            Assert.Equal(HttpStatusCode.Unauthorized, r.StatusCode);
        }

        // Another client behind the same proxy: locked out only if the proxy's header was ignored.
        using var good = new HttpRequestMessage(HttpMethod.Get, "v1/admin/queue");
        good.Headers.Authorization = new AuthenticationHeaderValue("Bearer", GatewayHarness.AdminKey);
        good.Headers.Add("X-Forwarded-For", "198.51.100.9");
        using var answer = await client.SendAsync(good, ct);
        Assert.Equal(trusted ? HttpStatusCode.OK : HttpStatusCode.TooManyRequests, answer.StatusCode);
    }
}
