using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using Herald.Server.Cli;
using Xunit;

namespace Herald.Server.Tests;

/// <summary><c>herald doctor</c> reads the APNs certificate: topics, expiry (warn within 30 days), and whether it loads.</summary>
public sealed class DoctorCertificateTests
{
    [Theory]
    [InlineData(200, "pass")]
    [InlineData(10, "warn")]
    [InlineData(-1, "fail")]
    public async Task Doctor_ReportsTheCertificatesTopicsAndExpiry(int daysLeft, string expected)
    {
        var ct = TestContext.Current.CancellationToken;
        var directory = Path.Combine(Path.GetTempPath(), "herald-doc-cert-" + Guid.NewGuid().ToString("N")[..10]);
        Directory.CreateDirectory(directory);
        using var key = RSA.Create(2048);
        var request = new CertificateRequest("UID=com.example.securemail, CN=Apple Push Services: com.example.securemail", key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        var now = DateTimeOffset.UtcNow;
        using var certificate = request.CreateSelfSigned(now.AddDays(-400), now.AddDays(daysLeft));
        var pfx = Path.Combine(directory, "apns.p12");
        await File.WriteAllBytesAsync(pfx, certificate.Export(X509ContentType.Pkcs12, "pw"), ct);

        var settings = new Dictionary<string, string?>
        {
            ["Herald:Database"] = "sqlite:" + Path.Combine(directory, "herald.db"),
            ["Herald:AdminApiKey"] = GatewayHarness.AdminKey,
            ["Herald:Apns:CertificateFile"] = pfx,
            ["Herald:Apns:CertificatePassword"] = "pw",
        };
        var file = Path.Combine(directory, "doctor.json");
        await File.WriteAllTextAsync(file, JsonSerializer.Serialize(settings), ct);

        var checks = await DoctorCommand.RunAsync(["--urls=http://127.0.0.1:0"], file, ct);

        var check = Assert.Single(checks, c => c.Name == "credential:apns-certificate");
        Assert.Equal(expected, check.Status);
        Assert.Contains("com.example.securemail", check.Detail, StringComparison.Ordinal);
    }
}
