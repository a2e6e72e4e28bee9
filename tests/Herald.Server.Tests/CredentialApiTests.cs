using System.Net;
using System.Text;
using Herald.Simulators.Apns;
using Xunit;
using static Herald.Server.Tests.CredentialTestKit;

namespace Herald.Server.Tests;

/// <summary>CONTRACT §3 credentials: validated uploads, metadata-only reads, tenant isolation, encryption at rest, runtime replacement.</summary>
public sealed class CredentialApiTests
{
    private const string Topic = GatewayHarness.Topic;
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task PutApnsToken_ReturnsMetadataOnly_AndListsIt()
    {
        await using var gw = await GatewayHarness.StartAsync(cancellationToken: Ct);
        var pem = gw.Apns.GenerateSigningKey("TEAMB00001", "KEYB000001", Topic);

        var (status, body, text) = await PutJsonAsync(gw.Client, "v1/tenants/default/credentials/apns", new { teamId = "TEAMB00001", keyId = "KEYB000001", privateKeyPem = pem, topics = new[] { Topic } }, Ct);

        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal("apns", body.GetProperty("platform").GetString());
        Assert.Equal("token", body.GetProperty("kind").GetString());
        Assert.Equal("TEAMB00001/KEYB000001", body.GetProperty("id").GetString());
        Assert.Equal(Topic, body.GetProperty("topics")[0].GetString());
        Assert.DoesNotContain("PRIVATE KEY", text, StringComparison.Ordinal);

        var list = await gw.Client.GetStringAsync("v1/tenants/default/credentials", Ct);
        var one = await gw.Client.GetStringAsync("v1/tenants/default/credentials/apns", Ct);
        Assert.Contains("\"kind\":\"token\"", list, StringComparison.Ordinal);
        Assert.DoesNotContain("PRIVATE KEY", list + one, StringComparison.Ordinal);
    }

    [Fact]
    public async Task PutApnsCertificate_ReturnsTopicsThumbprintAndExpiry()
    {
        await using var gw = await GatewayHarness.StartAsync(cancellationToken: Ct);
        using var ca = FakeApnsCertificateAuthority.Create();
        var notAfter = DateTimeOffset.UtcNow.AddDays(200);
        using var certificate = ca.Issue(Topic, [Topic + ".voip"], notAfter: notAfter);
        var pfx = Convert.ToBase64String(FakeApnsCertificateAuthority.ExportPkcs12(certificate, "pw-123"));

        var (status, body, text) = await PutJsonAsync(gw.Client, "v1/tenants/default/credentials/apns", new { certificatePfxBase64 = pfx, password = "pw-123" }, Ct);

        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal("certificate", body.GetProperty("kind").GetString());
        Assert.Equal([Topic, Topic + ".voip"], body.GetProperty("topics").EnumerateArray().Select(t => t.GetString()));
        Assert.Equal(64, body.GetProperty("thumbprint").GetString()!.Length);
        Assert.Equal(notAfter.ToUnixTimeSeconds(), body.GetProperty("expiresAt").GetDateTimeOffset().ToUnixTimeSeconds());
        Assert.DoesNotContain(pfx[..40], text, StringComparison.Ordinal);
        Assert.DoesNotContain("pw-123", text, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("{\"teamId\":\"TEAM1\",\"keyId\":\"KEY1\",\"privateKeyPem\":\"-----BEGIN PRIVATE KEY-----\\nAAAA\\n-----END PRIVATE KEY-----\",\"topics\":[\"com.example.a\"]}", 422)]
    [InlineData("{\"teamId\":\"TEAM1\",\"keyId\":\"KEY1\",\"privateKeyPem\":\"x\",\"topics\":[]}", 400)]
    [InlineData("{\"teamId\":\"TEAM 1\",\"keyId\":\"KEY1\",\"privateKeyPem\":\"x\",\"topics\":[\"a\"]}", 400)]
    [InlineData("{\"certificatePfxBase64\":\"%%%not base64\"}", 400)]
    [InlineData("{\"certificatePfxBase64\":\"AAAA\",\"password\":\"x\"}", 422)]
    [InlineData("[1,2]", 400)]
    public async Task PutApns_BadUploads_AreProblems(string json, int expected)
    {
        await using var gw = await GatewayHarness.StartAsync(cancellationToken: Ct);
        using var content = new StringContent(json, Encoding.UTF8, "application/json");

        using var response = await gw.Client.PutAsync("v1/tenants/default/credentials/apns", content, Ct);

        Assert.Equal(expected, (int)response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
    }

    [Fact]
    public async Task PutApnsCertificate_ExpiredOrWrongPasswordOrNoTopic_Is422()
    {
        await using var gw = await GatewayHarness.StartAsync(cancellationToken: Ct);
        using var ca = FakeApnsCertificateAuthority.Create();
        using var expired = ca.Issue(Topic, notBefore: DateTimeOffset.UtcNow.AddDays(-40), notAfter: DateTimeOffset.UtcNow.AddDays(-1));
        using var valid = ca.Issue(Topic);
        using var noTopic = ca.Issue(Topic, kind: FakeApnsCertificateKind.Production, withUid: false);

        var (expiredStatus, expiredBody, _) = await PutJsonAsync(gw.Client, "v1/tenants/default/credentials/apns", new { certificatePfxBase64 = Convert.ToBase64String(FakeApnsCertificateAuthority.ExportPkcs12(expired, "p")), password = "p" }, Ct);
        var (passwordStatus, _, _) = await PutJsonAsync(gw.Client, "v1/tenants/default/credentials/apns", new { certificatePfxBase64 = Convert.ToBase64String(FakeApnsCertificateAuthority.ExportPkcs12(valid, "p")), password = "q" }, Ct);
        var (topicStatus, _, _) = await PutJsonAsync(gw.Client, "v1/tenants/default/credentials/apns", new { certificatePfxBase64 = Convert.ToBase64String(FakeApnsCertificateAuthority.ExportPkcs12(noTopic, null)) }, Ct);

        Assert.Equal(HttpStatusCode.UnprocessableEntity, expiredStatus);
        Assert.Contains("expired", expiredBody.GetProperty("detail").GetString(), StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.UnprocessableEntity, passwordStatus);
        Assert.Equal(HttpStatusCode.UnprocessableEntity, topicStatus);
        using var none = await gw.Client.GetAsync("v1/tenants/default/credentials/apns", Ct);
        Assert.Equal(HttpStatusCode.NotFound, none.StatusCode);
    }

    [Fact]
    public async Task FcmAndWns_ValidateAndStore()
    {
        await using var gw = await GatewayHarness.StartAsync(cancellationToken: Ct);

        var (badFcm, _, _) = await PutJsonAsync(gw.Client, "v1/tenants/default/credentials/fcm", new { serviceAccountJson = "{\"type\":\"service_account\"}" }, Ct);
        var (missingFcm, _, _) = await PutJsonAsync(gw.Client, "v1/tenants/default/credentials/fcm", new { }, Ct);
        var (badWns, _, _) = await PutJsonAsync(gw.Client, "v1/tenants/default/credentials/wns", new { packageSid = "not-a-sid", clientSecret = "s" }, Ct);
        var (missingWns, _, _) = await PutJsonAsync(gw.Client, "v1/tenants/default/credentials/wns", new { packageSid = "ms-app://s-1-15-2-1" }, Ct);
        var (okWns, wns, wnsText) = await PutJsonAsync(gw.Client, "v1/tenants/default/credentials/wns", new { packageSid = "ms-app://s-1-15-2-1234", clientSecret = "very-secret-value" }, Ct);
        var (unknown, _, _) = await PutJsonAsync(gw.Client, "v1/tenants/default/credentials/gcm", new { }, Ct);

        Assert.Equal(HttpStatusCode.UnprocessableEntity, badFcm);
        Assert.Equal(HttpStatusCode.BadRequest, missingFcm);
        Assert.Equal(HttpStatusCode.UnprocessableEntity, badWns);
        Assert.Equal(HttpStatusCode.BadRequest, missingWns);
        Assert.Equal(HttpStatusCode.OK, okWns);
        Assert.Equal("clientSecret", wns.GetProperty("kind").GetString());
        Assert.Equal("ms-app://s-1-15-2-1234", wns.GetProperty("id").GetString());
        Assert.DoesNotContain("very-secret-value", wnsText, StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.NotFound, unknown);
    }

    [Fact]
    public async Task TenantKey_SeesOnlyItsTenant_AdminActsOnAny()
    {
        await using var gw = await GatewayHarness.StartAsync(cancellationToken: Ct);
        var (a, clientA) = await TenantAsync(gw, "tenant-a", Ct);
        var (b, clientB) = await TenantAsync(gw, "tenant-b", Ct);
        using var _a = clientA;
        using var _b = clientB;
        var wns = new { packageSid = "ms-app://s-1-15-2-42", clientSecret = "secret-of-a" };

        var (own, _, _) = await PutJsonAsync(clientA, $"v1/tenants/{a}/credentials/wns", wns, Ct);
        var (other, _, _) = await PutJsonAsync(clientA, $"v1/tenants/{b}/credentials/wns", wns, Ct);
        using var readOther = await clientB.GetAsync($"v1/tenants/{a}/credentials", Ct);
        using var adminRead = await gw.Client.GetAsync($"v1/tenants/{a}/credentials/wns", Ct);
        using var missingTenant = await gw.Client.GetAsync("v1/tenants/tn_nope/credentials", Ct);

        Assert.Equal(HttpStatusCode.OK, own);
        Assert.Equal(HttpStatusCode.Forbidden, other);
        Assert.Equal(HttpStatusCode.Forbidden, readOther.StatusCode);
        Assert.Equal(HttpStatusCode.OK, adminRead.StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, missingTenant.StatusCode);
    }

    [Fact]
    public async Task Delete_RemovesTheCredential()
    {
        await using var gw = await GatewayHarness.StartAsync(cancellationToken: Ct);
        await PutJsonAsync(gw.Client, "v1/tenants/default/credentials/wns", new { packageSid = "ms-app://s-1-15-2-7", clientSecret = "s3" }, Ct);

        using var deleted = await gw.Client.DeleteAsync("v1/tenants/default/credentials/wns", Ct);
        using var again = await gw.Client.DeleteAsync("v1/tenants/default/credentials/wns", Ct);
        using var read = await gw.Client.GetAsync("v1/tenants/default/credentials/wns", Ct);

        Assert.Equal(HttpStatusCode.NoContent, deleted.StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, again.StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, read.StatusCode);
    }

    [Fact]
    public async Task Secrets_AreEncryptedAtRest()
    {
        await using var gw = await GatewayHarness.StartAsync(cancellationToken: Ct);
        var pem = gw.Apns.GenerateSigningKey("TEAMENC001", "KEYENC0001", Topic);
        await PutJsonAsync(gw.Client, "v1/tenants/default/credentials/apns", new { teamId = "TEAMENC001", keyId = "KEYENC0001", privateKeyPem = pem, topics = new[] { Topic } }, Ct);
        await PutJsonAsync(gw.Client, "v1/tenants/default/credentials/wns", new { packageSid = "ms-app://s-1-15-2-9", clientSecret = "clear-text-must-not-appear" }, Ct);
        var keyBody = pem.Split('\n')[1];

        var bytes = new List<byte>();
        foreach (var file in Directory.GetFiles(gw.Directory, "herald.db*"))
        {
            using var stream = new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
            using var memory = new MemoryStream();
            await stream.CopyToAsync(memory, Ct);
            bytes.AddRange(memory.ToArray());
        }

        var raw = Encoding.Latin1.GetString([.. bytes]);
        Assert.Contains("TEAMENC001", raw, StringComparison.Ordinal); // the metadata is stored (in clear) ...
        Assert.DoesNotContain(keyBody, raw, StringComparison.Ordinal); // ... the key is not
        Assert.DoesNotContain("clear-text-must-not-appear", raw, StringComparison.Ordinal);
        Assert.DoesNotContain("PRIVATE KEY", raw, StringComparison.Ordinal);
    }

    [Fact]
    public async Task RejectedTenantCredential_StopsOnlyThatTenant_AndReplacingItDrainsTheBacklog()
    {
        // Long retry delays: only the replacement can make the backlog due again soon.
        await using var gw = await GatewayHarness.StartAsync(new Dictionary<string, string?> { ["Herald:Retry:InitialDelay"] = "00:10:00", ["Herald:Retry:MaxDelay"] = "01:00:00" }, cancellationToken: Ct);
        var (tenant, client) = await TenantAsync(gw, "contoso", Ct);
        using var _ = client;

        // A key APNs does not know: every send of this tenant is InvalidProviderToken.
        using (var unknownKey = System.Security.Cryptography.ECDsa.Create(System.Security.Cryptography.ECCurve.NamedCurves.nistP256))
        {
            var (put, _, text) = await PutJsonAsync(client, $"v1/tenants/{tenant}/credentials/apns", new { teamId = "TEAMBAD001", keyId = "KEYBAD0001", privateKeyPem = unknownKey.ExportPkcs8PrivateKeyPem(), topics = new[] { Topic } }, Ct);
            Assert.True(put == HttpStatusCode.OK, text);
        }

        var tokens = Enumerable.Range(0, 20).Select(i => i.ToString("x2", System.Globalization.CultureInfo.InvariantCulture) + new string('a', 62)).ToArray();
        var backlog = await SendAsync(client, new { lane = "priority", kind = "badge", badge = 2, devices = tokens.Select(t => new { platform = "apns", token = t, topic = Topic }).ToArray() }, Ct);
        await WaitForStatesAsync(client, backlog, s => State(s, "retrying") == tokens.Length, Ct);

        // The default tenant's configured credential keeps sending meanwhile.
        var other = await SendAsync(gw.Client, new { lane = "priority", kind = "badge", badge = 1, devices = new[] { new { platform = "apns", token = new string('b', 64), topic = Topic } } }, Ct);
        await WaitForStatesAsync(gw.Client, other, s => State(s, "sent") == 1, Ct);
        var ready = await ReadyAsync(gw, Ct);
        var check = ready.GetProperty("checks").EnumerateArray().Single(c => c.GetProperty("name").GetString()!.StartsWith("credential:apns:" + tenant, StringComparison.Ordinal));
        Assert.Equal("fail", check.GetProperty("status").GetString());
        Assert.Contains("InvalidProviderToken", check.GetProperty("detail").GetString(), StringComparison.Ordinal);

        // The circuit is open: more work of this tenant waits without a round trip (at most one probe goes out).
        var rejected = gw.Apns.RejectedCountFor("InvalidProviderToken");
        var more = await SendAsync(client, new { lane = "priority", kind = "badge", badge = 3, devices = tokens.Take(5).Select(t => new { platform = "apns", token = t, topic = Topic }).ToArray() }, Ct);
        await WaitForStatesAsync(client, more, s => State(s, "retrying") == 5, Ct);
        Assert.True(gw.Apns.RejectedCountFor("InvalidProviderToken") - rejected <= 1, "the open circuit should keep the tenant's sends off the wire");

        // Replace it with a key APNs knows: the backlog drains now, not in ten minutes.
        var pem = gw.Apns.GenerateSigningKey("TEAMGOOD01", "KEYGOOD001", Topic);
        var (replaced, _, replacedText) = await PutJsonAsync(client, $"v1/tenants/{tenant}/credentials/apns", new { teamId = "TEAMGOOD01", keyId = "KEYGOOD001", privateKeyPem = pem, topics = new[] { Topic } }, Ct);
        Assert.True(replaced == HttpStatusCode.OK, replacedText);

        var drained = await WaitForStatesAsync(client, backlog, s => State(s, "sent") == tokens.Length, Ct);
        Assert.Equal(0, State(drained.GetProperty("states"), "dead"));
        await WaitForStatesAsync(client, more, s => State(s, "sent") == 5, Ct);
        var after = await ReadyAsync(gw, Ct);
        Assert.DoesNotContain(after.GetProperty("checks").EnumerateArray(), c => c.GetProperty("name").GetString()!.StartsWith("credential:apns:" + tenant, StringComparison.Ordinal));
    }
}
