using System.Net;
using Herald.Simulators.Apns;
using Xunit;
using static Herald.Server.Tests.CredentialTestKit;

namespace Herald.Server.Tests;

/// <summary>MDM wake-ups through the gateway: certificate auth only, the exact payload, push type and topic.</summary>
public sealed class MdmEndToEndTests
{
    private const string MdmTopic = "com.apple.mgmt.External.4a1b2c3d-0000-4000-8000-00000000abcd";
    private const string PushMagic = "5E9B1C3A-1111-4000-8000-000000000001";
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static object MdmRequest(params string[] tokens)
        => new { kind = "mdm", devices = tokens.Select(t => new { platform = "apns", token = t, topic = MdmTopic, pushMagic = PushMagic }).ToArray() };

    [Fact]
    public async Task MdmWakeUp_WithTheConfiguredCertificate_IsDeliveredExactly()
    {
        using var ca = FakeApnsCertificateAuthority.Create();
        using var certificate = ca.Issue(MdmTopic, kind: FakeApnsCertificateKind.Production);
        var options = new FakeApnsServerOptions { UseTls = true };
        options.ClientCertificateAuthorities.Add(ca.Certificate);
        var apns = await FakeApnsServer.StartAsync(options, cancellationToken: Ct);
        var directory = Directory.CreateTempSubdirectory("herald-mdm-");
        var p12 = Path.Combine(directory.FullName, "mdm.p12");
        var trust = Path.Combine(directory.FullName, "apns.pem");
        await File.WriteAllBytesAsync(p12, FakeApnsCertificateAuthority.ExportPkcs12(certificate, "mdm-pass"), Ct);
        await File.WriteAllTextAsync(trust, apns.CertificatePem, Ct);
        try
        {
            await using var gw = await GatewayHarness.StartAsync(
                new Dictionary<string, string?>
                {
                    ["Herald:Apns:CertificateFile"] = p12,
                    ["Herald:Apns:CertificatePassword"] = "mdm-pass",
                    ["Herald:Apns:TrustedCertificateFile"] = trust,
                },
                apns,
                Ct);
            var token = new string('c', 64);

            var id = await SendAsync(gw.Client, MdmRequest(token), Ct);
            await WaitForStatesAsync(gw.Client, id, s => State(s, "sent") == 1, Ct);

            var r = Assert.Single(apns.Requests, r => r.Accepted);
            Assert.Equal("{\"mdm\":\"" + PushMagic + "\"}", r.Payload);
            Assert.Equal("mdm", r.PushType);
            Assert.Equal("10", r.Priority);
            Assert.Equal(MdmTopic, r.Topic);
            Assert.Null(r.Authorization);

            // App pushes in the same gateway still use the token key.
            var app = await SendAsync(gw.Client, new { kind = "badge", badge = 1, devices = new[] { new { platform = "apns", token, topic = GatewayHarness.Topic } } }, Ct);
            await WaitForStatesAsync(gw.Client, app, s => State(s, "sent") == 1, Ct);
            Assert.StartsWith("bearer ", apns.Requests.Last(r => r.Accepted).Authorization, StringComparison.Ordinal);
        }
        finally
        {
            directory.Delete(recursive: true);
        }
    }

    [Fact]
    public async Task MdmWakeUp_WithOnlyATokenCredential_FailsPermanentlyWithAClearReason()
    {
        await using var gw = await GatewayHarness.StartAsync(cancellationToken: Ct);

        var id = await SendAsync(gw.Client, MdmRequest(new string('d', 64)), Ct);
        var status = await WaitForStatesAsync(gw.Client, id, s => State(s, "failed") == 1, Ct);

        Assert.Contains("MdmRequiresCertificate", status.GetRawText(), StringComparison.Ordinal);
        Assert.Empty(gw.Apns.Requests);
    }

    [Fact]
    public async Task MdmWakeUp_WithACertificateUploadedThroughTheApi_IsDelivered()
    {
        using var ca = FakeApnsCertificateAuthority.Create();
        using var certificate = ca.Issue(MdmTopic, kind: FakeApnsCertificateKind.Production);
        var options = new FakeApnsServerOptions { UseTls = true };
        options.ClientCertificateAuthorities.Add(ca.Certificate);
        var apns = await FakeApnsServer.StartAsync(options, cancellationToken: Ct);
        var trust = Path.Combine(Path.GetTempPath(), "herald-mdm-trust-" + Guid.NewGuid().ToString("N") + ".pem");
        await File.WriteAllTextAsync(trust, apns.CertificatePem, Ct);
        try
        {
            await using var gw = await GatewayHarness.StartAsync(new Dictionary<string, string?> { ["Herald:Apns:TrustedCertificateFile"] = trust }, apns, Ct);
            var (tenant, client) = await TenantAsync(gw, "mdm-vendor", Ct);
            using var _ = client;
            var (put, _, text) = await PutJsonAsync(client, $"v1/tenants/{tenant}/credentials/apns", new { certificatePfxBase64 = Convert.ToBase64String(FakeApnsCertificateAuthority.ExportPkcs12(certificate, "x")), password = "x" }, Ct);
            Assert.True(put == HttpStatusCode.OK, text);

            var id = await SendAsync(client, MdmRequest(new string('e', 64), new string('f', 64)), Ct);
            await WaitForStatesAsync(client, id, s => State(s, "sent") == 2, Ct);

            Assert.Equal(2, apns.Requests.Count(r => r.Accepted && r.PushType == "mdm" && r.Authorization is null));
        }
        finally
        {
            File.Delete(trust);
        }
    }
}
