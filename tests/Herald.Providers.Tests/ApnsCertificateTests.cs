using System.Formats.Asn1;
using System.Security.Cryptography.X509Certificates;
using Herald.Providers.Apns;
using Herald.Simulators.Apns;
using Xunit;

namespace Herald.Providers.Tests;

/// <summary>Loading APNs provider certificates: topics (both extension shapes and the UID), environments, expiry, thumbprint.</summary>
public sealed class ApnsCertificateTests : IDisposable
{
    private readonly FakeApnsCertificateAuthority _ca = FakeApnsCertificateAuthority.Create();

    public void Dispose() => _ca.Dispose();

    [Fact]
    public void TopicsExtension_FlatShape_ReadsTopicsAndSkipsPushTypes()
    {
        var der = FakeApnsCertificateAuthority.TopicsExtension(["com.example.mail", "com.example.mail.voip", "com.example.mail.complication"]);

        var topics = ApnsCertificate.ParseTopicsExtension(der);

        Assert.Equal(["com.example.mail", "com.example.mail.voip", "com.example.mail.complication"], topics);
    }

    [Fact]
    public void TopicsExtension_PairShape_ReadsTopics()
    {
        var der = FakeApnsCertificateAuthority.TopicsExtension(["com.example.mail", "com.example.mail.voip"], pairShape: true);

        var topics = ApnsCertificate.ParseTopicsExtension(der);

        Assert.Equal(["com.example.mail", "com.example.mail.voip"], topics);
    }

    [Fact]
    public void TopicsExtension_NotDer_IsRejected()
    {
        Assert.Throws<ArgumentException>(() => ApnsCertificate.ParseTopicsExtension(new byte[] { 0x30, 0x05, 0x0C }));
    }

    [Fact]
    public void TopicsExtension_PrintableStrings_AreRead()
    {
        var writer = new AsnWriter(AsnEncodingRules.DER);
        using (writer.PushSequence())
        {
            writer.WriteCharacterString(UniversalTagNumber.PrintableString, "com.example.a");
            using (writer.PushSequence())
            {
                writer.WriteCharacterString(UniversalTagNumber.PrintableString, "app");
            }
        }

        Assert.Equal(["com.example.a"], ApnsCertificate.ParseTopicsExtension(writer.Encode()));
    }

    [Fact]
    public void FromPkcs12_WithPassword_ReadsTopicsExpiryAndThumbprint()
    {
        var notAfter = new DateTimeOffset(2031, 3, 4, 5, 6, 7, TimeSpan.Zero);
        using var issued = _ca.Issue("com.example.mail", ["com.example.mail.voip", "com.example.other"], notAfter: notAfter);
        var pfx = FakeApnsCertificateAuthority.ExportPkcs12(issued, "s3cret!");

        using var certificate = ApnsCertificate.FromPkcs12(pfx, "s3cret!");

        Assert.Equal(["com.example.mail", "com.example.mail.voip", "com.example.other"], certificate.Topics);
        Assert.Equal(notAfter, certificate.NotAfter);
        Assert.Equal(64, certificate.Thumbprint.Length);
        Assert.Equal(Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(issued.RawData)), certificate.Thumbprint);
        Assert.True(certificate.Certificate.HasPrivateKey);
        Assert.True(certificate.ServesProduction);
        Assert.True(certificate.ServesSandbox);
        Assert.True(certificate.Allows("com.example.other"));
        Assert.False(certificate.Allows("com.example"));
        Assert.False(certificate.IsMdm);
    }

    [Fact]
    public void FromPkcs12_WrongPassword_IsRejectedClearly()
    {
        using var issued = _ca.Issue("com.example.mail");
        var pfx = FakeApnsCertificateAuthority.ExportPkcs12(issued, "right");

        var error = Assert.Throws<ArgumentException>(() => ApnsCertificate.FromPkcs12(pfx, "wrong"));
        Assert.Contains("password", error.Message, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public void FromPkcs12_CertificateWithoutKey_IsRejected()
    {
        using var issued = _ca.Issue("com.example.mail");
        using var publicOnly = X509CertificateLoader.LoadCertificate(issued.RawData);
        var pfx = publicOnly.Export(X509ContentType.Pkcs12, "p");

        var error = Assert.Throws<ArgumentException>(() => ApnsCertificate.FromPkcs12(pfx, "p"));
        Assert.Contains("private key", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void FromPem_CertificateAndKeyInOneText_OrSeparate_Load()
    {
        using var issued = _ca.Issue("com.example.mail");
        var pem = FakeApnsCertificateAuthority.ExportPem(issued);
        var certOnly = issued.ExportCertificatePem();
        var keyOnly = pem[pem.IndexOf("-----BEGIN PRIVATE KEY", StringComparison.Ordinal)..];

        using var together = ApnsCertificate.FromPem(pem);
        using var separate = ApnsCertificate.FromPem(certOnly, keyOnly);

        Assert.True(together.Certificate.HasPrivateKey);
        Assert.Equal(together.Thumbprint, separate.Thumbprint);
        Assert.Equal(["com.example.mail"], separate.Topics);
    }

    [Fact]
    public void FromFile_PemWithSeparateKeyFile_AndP12_Load()
    {
        using var issued = _ca.Issue("com.example.mail");
        var directory = Directory.CreateTempSubdirectory("herald-cert-");
        try
        {
            var pem = FakeApnsCertificateAuthority.ExportPem(issued);
            var certFile = Path.Combine(directory.FullName, "push.pem");
            var keyFile = Path.Combine(directory.FullName, "push.key");
            var p12File = Path.Combine(directory.FullName, "push.p12");
            File.WriteAllText(certFile, issued.ExportCertificatePem());
            File.WriteAllText(keyFile, pem[pem.IndexOf("-----BEGIN PRIVATE KEY", StringComparison.Ordinal)..]);
            File.WriteAllBytes(p12File, FakeApnsCertificateAuthority.ExportPkcs12(issued, "pw"));

            using var fromPem = ApnsCertificate.FromFile(certFile, null, keyFile);
            using var fromP12 = ApnsCertificate.FromFile(p12File, "pw");

            Assert.Equal(fromPem.Thumbprint, fromP12.Thumbprint);
        }
        finally
        {
            directory.Delete(recursive: true);
        }
    }

    [Fact]
    public void DevelopmentCertificate_ServesTheSandboxOnly_WithItsUidTopic()
    {
        using var issued = _ca.Issue("com.example.mail", kind: FakeApnsCertificateKind.Development);

        using var certificate = ApnsCertificate.FromPkcs12(FakeApnsCertificateAuthority.ExportPkcs12(issued, null), null);

        Assert.Equal(["com.example.mail"], certificate.Topics);
        Assert.True(certificate.ServesSandbox);
        Assert.False(certificate.ServesProduction);
    }

    [Fact]
    public void MdmCertificate_TopicIsTheUid()
    {
        const string topic = "com.apple.mgmt.External.4a1b2c3d-0000-4000-8000-00000000abcd";
        using var issued = _ca.Issue(topic, kind: FakeApnsCertificateKind.Production);

        using var certificate = ApnsCertificate.FromPkcs12(FakeApnsCertificateAuthority.ExportPkcs12(issued, null), null);

        Assert.Equal([topic], certificate.Topics);
        Assert.True(certificate.IsMdm);
    }

    [Fact]
    public void CertificateWithExtensionButNoUid_TakesTopicsFromTheExtension()
    {
        using var issued = _ca.Issue("com.example.mail", ["com.example.second"], withUid: false);

        Assert.Equal(["com.example.mail", "com.example.second"], ApnsCertificate.ReadTopics(issued));
    }
}
