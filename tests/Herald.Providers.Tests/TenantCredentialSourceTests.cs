using System.Security.Cryptography;
using Herald.Core.Credentials;
using Herald.Core.Registrations;
using Herald.Providers.Apns;
using Herald.Providers.Credentials;
using Herald.Simulators.Apns;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;
using Xunit;

namespace Herald.Providers.Tests;

/// <summary>Per-tenant credential sources: the tenant's own credential, rebuilt per version, else the configured one.</summary>
public sealed class TenantCredentialSourceTests
{
    private static readonly DateTimeOffset Now = new(DateTime.UtcNow.Date, TimeSpan.Zero);

    [Fact]
    public void TenantCredential_WinsOverConfiguration_AndAReplacementIsANewObjectWithAClosedCircuit()
    {
        var time = new FakeTimeProvider(Now);
        var registry = new CredentialRegistry(null, null, time);
        using var configuredKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var options = Options.Create(new ApnsOptions { TeamId = "TEAMCONF01", KeyId = "KEYCONF001", PrivateKeyPem = configuredKey.ExportPkcs8PrivateKeyPem() });
        using var source = new TenantApnsCredentialSource(registry, new OptionsApnsCredentialSource(options, time), time);
        var replaced = new List<ApnsCredential>();
        source.Replaced += replaced.Add;

        Assert.Equal("token:TEAMCONF01/KEYCONF001", source.Find("tenant-a", "com.example.mail")!.Name);

        registry.Apply(Token("tenant-a", "TEAMA00001", version: 1));
        var first = source.Find("tenant-a", "com.example.mail")!;
        first.Circuit.Trip(403, "InvalidProviderToken");
        Assert.Same(first, source.Find("tenant-a", "com.example.mail"));
        Assert.Equal("token:TEAMCONF01/KEYCONF001", source.Find("tenant-b", "com.example.mail")!.Name); // others: configuration

        registry.Apply(Token("tenant-a", "TEAMA00002", version: 2));
        var second = source.Find("tenant-a", "com.example.mail")!;

        Assert.Equal("token:TEAMA00001/KEYA000001", first.Name);
        Assert.Equal("token:TEAMA00002/KEYA000001", second.Name);
        Assert.False(second.Circuit.IsOpen);
        Assert.Same(first, Assert.Single(replaced));

        registry.Remove("tenant-a", Platform.Apns);
        Assert.Equal("token:TEAMCONF01/KEYCONF001", source.Find("tenant-a", "com.example.mail")!.Name);
    }

    [Fact]
    public void StoredCertificate_IsOpenedWithItsTopics()
    {
        var time = new FakeTimeProvider(Now);
        var registry = new CredentialRegistry(null, null, time);
        using var ca = FakeApnsCertificateAuthority.Create();
        using var certificate = ca.Issue("com.apple.mgmt.External.1111", kind: FakeApnsCertificateKind.Production);
        var upload = TenantCredentialUploads.ApnsCertificate(Convert.ToBase64String(FakeApnsCertificateAuthority.ExportPkcs12(certificate, "pw")), "pw", Now);
        registry.Apply(new TenantCredential(new StoredCredential("mdm", Platform.Apns, upload.Kind, "sealed", upload.PublicId, upload.Topics, upload.Thumbprint, upload.ExpiresAt, Now, 7), upload.SecretJson));
        using var source = new TenantApnsCredentialSource(registry, new OptionsApnsCredentialSource(Options.Create(new ApnsOptions()), time), time);

        var credential = Assert.IsType<ApnsCertificateCredential>(source.Find("mdm", "com.apple.mgmt.External.1111"));

        Assert.True(credential.SupportsMdm);
        Assert.Equal("mdm", credential.Owner);
        Assert.Equal(["com.apple.mgmt.External.1111"], credential.Certificate.Topics);
        Assert.Equal(upload.Thumbprint, credential.Certificate.Thumbprint);
    }

    [Fact]
    public void UnusableStoredCredential_GivesNoCredential_NotACrash()
    {
        var time = new FakeTimeProvider(Now);
        var registry = new CredentialRegistry(null, null, time);
        registry.Apply(new TenantCredential(new StoredCredential("t", Platform.Apns, CredentialKinds.ApnsToken, "sealed", null, [], null, null, Now, 1), "{\"teamId\":\"T\",\"keyId\":\"K\",\"privateKeyPem\":\"garbage\"}"));
        using var source = new TenantApnsCredentialSource(registry, new OptionsApnsCredentialSource(Options.Create(new ApnsOptions()), time), time);

        Assert.Null(source.Find("t", "com.example.mail"));
    }

    private static TenantCredential Token(string tenant, string team, long version)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var upload = TenantCredentialUploads.ApnsToken(team, "KEYA000001", key.ExportPkcs8PrivateKeyPem(), ["com.example.mail"]);
        return new TenantCredential(new StoredCredential(tenant, Platform.Apns, upload.Kind, "sealed", upload.PublicId, upload.Topics, null, null, Now, version), upload.SecretJson);
    }
}
