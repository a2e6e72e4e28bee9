using System.Formats.Asn1;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Herald.Simulators.Apns;

/// <summary>Which of Apple's push certificate kinds to issue.</summary>
public enum FakeApnsCertificateKind
{
    /// <summary>"Apple Push Services": both environments, topics extension 1.2.840.113635.100.6.3.6.</summary>
    Universal = 0,
    /// <summary>"Apple Development IOS Push Services": sandbox only (marker 1.2.840.113635.100.6.3.1), one topic in the UID.</summary>
    Development = 1,
    /// <summary>"Apple Production IOS Push Services": production only (marker 1.2.840.113635.100.6.3.2), one topic in the UID.</summary>
    Production = 2,
}

/// <summary>
/// A stand-in for Apple's WWDR certification authority: issues APNs provider certificates (RSA 2048, client
/// auth) with the subject UID topic, Apple's environment markers and the topics extension, in-process. Give
/// <see cref="Certificate"/> to <see cref="FakeApnsServerOptions.ClientCertificateAuthorities"/>; hand the issued
/// certificates (with their keys) to Herald as .p12 or PEM.
/// </summary>
public sealed class FakeApnsCertificateAuthority : IDisposable
{
    private const string TopicsOid = "1.2.840.113635.100.6.3.6";
    private const string DevelopmentOid = "1.2.840.113635.100.6.3.1";
    private const string ProductionOid = "1.2.840.113635.100.6.3.2";

    private readonly RSA _key;

    private FakeApnsCertificateAuthority(RSA key, X509Certificate2 certificate)
    {
        _key = key;
        Certificate = certificate;
    }

    /// <summary>The authority's certificate (public part; trust it on the fake server).</summary>
    public X509Certificate2 Certificate { get; }

    /// <summary>Creates an authority valid from ten years before to ten years after now (real clock).</summary>
    public static FakeApnsCertificateAuthority Create(string name = "Herald test Apple WWDR CA")
    {
        var key = RSA.Create(2048);
        var request = new CertificateRequest("CN=" + name + ", O=Herald tests", key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
        var now = DateTimeOffset.UtcNow;
        var certificate = request.CreateSelfSigned(now.AddYears(-10), now.AddYears(10));
        return new FakeApnsCertificateAuthority(key, certificate);
    }

    /// <summary>
    /// Issues a provider certificate with its private key. <paramref name="topic"/> goes into the subject UID;
    /// for <see cref="FakeApnsCertificateKind.Universal"/> it and <paramref name="extraTopics"/> go into the topics
    /// extension, as a flat topic/types list or (<paramref name="pairShape"/>) as SEQUENCE pairs.
    /// </summary>
    public X509Certificate2 Issue(
        string topic,
        IEnumerable<string>? extraTopics = null,
        DateTimeOffset? notBefore = null,
        DateTimeOffset? notAfter = null,
        FakeApnsCertificateKind kind = FakeApnsCertificateKind.Universal,
        bool pairShape = false,
        bool withUid = true)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(topic);
        using var key = RSA.Create(2048);
        var subject = new X500DistinguishedNameBuilder();
        if (withUid)
        {
            subject.Add("0.9.2342.19200300.100.1.1", topic, UniversalTagNumber.UTF8String);
        }

        subject.AddCommonName((kind switch
        {
            FakeApnsCertificateKind.Development => "Apple Development IOS Push Services: ",
            FakeApnsCertificateKind.Production => "Apple Production IOS Push Services: ",
            _ => "Apple Push Services: ",
        }) + topic);
        subject.AddOrganizationalUnitName("TEAM123456");
        subject.AddCountryOrRegion("US");
        var request = new CertificateRequest(subject.Build(), key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.2")], false)); // clientAuth
        request.CertificateExtensions.Add(new X509AuthorityKeyIdentifierExtension(
            X509AuthorityKeyIdentifierExtension.CreateFromCertificate(Certificate, includeKeyIdentifier: true, includeIssuerAndSerial: false).RawData, false));
        switch (kind)
        {
            case FakeApnsCertificateKind.Development:
                request.CertificateExtensions.Add(new X509Extension(DevelopmentOid, [0x05, 0x00], false));
                break;
            case FakeApnsCertificateKind.Production:
                request.CertificateExtensions.Add(new X509Extension(ProductionOid, [0x05, 0x00], false));
                break;
            default:
                request.CertificateExtensions.Add(new X509Extension(DevelopmentOid, [0x05, 0x00], false));
                request.CertificateExtensions.Add(new X509Extension(ProductionOid, [0x05, 0x00], false));
                var topics = new List<string> { topic };
                foreach (var extra in extraTopics ?? [])
                {
                    topics.Add(extra);
                }

                request.CertificateExtensions.Add(new X509Extension(TopicsOid, TopicsExtension(topics, pairShape), false));
                break;
        }

        var now = DateTimeOffset.UtcNow;
        var serial = RandomNumberGenerator.GetBytes(12);
        serial[0] &= 0x7F;
        using var issued = request.Create(Certificate.SubjectName, X509SignatureGenerator.CreateForRSA(_key, RSASignaturePadding.Pkcs1), notBefore ?? now.AddDays(-1), notAfter ?? now.AddYears(1), serial);
        using var withKey = issued.CopyWithPrivateKey(key);
        return X509CertificateLoader.LoadPkcs12(withKey.Export(X509ContentType.Pkcs12), null, X509KeyStorageFlags.Exportable);
    }

    /// <summary>
    /// The DER value of the topics extension. Flat (Apple's): SEQUENCE { UTF8String topic, SEQUENCE { UTF8String type… }, … };
    /// pairs: SEQUENCE { SEQUENCE { UTF8String topic, SEQUENCE { UTF8String type… } }, … }. Push types follow the topic's suffix.
    /// </summary>
    public static byte[] TopicsExtension(IEnumerable<string> topics, bool pairShape = false)
    {
        ArgumentNullException.ThrowIfNull(topics);
        var writer = new AsnWriter(AsnEncodingRules.DER);
        using (writer.PushSequence())
        {
            foreach (var topic in topics)
            {
                var types = topic.EndsWith(".voip", StringComparison.Ordinal) ? new[] { "voip" }
                    : topic.EndsWith(".complication", StringComparison.Ordinal) ? ["complication"]
                    : ["app"];
                if (pairShape)
                {
                    using (writer.PushSequence())
                    {
                        WriteTopic(writer, topic, types);
                    }
                }
                else
                {
                    WriteTopic(writer, topic, types);
                }
            }
        }

        return writer.Encode();
    }

    /// <summary>The certificate and its key as a PKCS#12 (.p12) file's bytes.</summary>
    public static byte[] ExportPkcs12(X509Certificate2 certificate, string? password)
    {
        ArgumentNullException.ThrowIfNull(certificate);
        return certificate.ExportPkcs12(Pkcs12ExportPbeParameters.Pbes2Aes256Sha256, password);
    }

    /// <summary>The certificate and its (unencrypted PKCS#8) key as PEM text.</summary>
    public static string ExportPem(X509Certificate2 certificate)
    {
        ArgumentNullException.ThrowIfNull(certificate);
        using var key = certificate.GetRSAPrivateKey() ?? throw new ArgumentException("The certificate has no RSA private key.", nameof(certificate));
        return certificate.ExportCertificatePem() + "\n" + key.ExportPkcs8PrivateKeyPem() + "\n";
    }

    private static void WriteTopic(AsnWriter writer, string topic, string[] types)
    {
        writer.WriteCharacterString(UniversalTagNumber.UTF8String, topic);
        using (writer.PushSequence())
        {
            foreach (var type in types)
            {
                writer.WriteCharacterString(UniversalTagNumber.UTF8String, type);
            }
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
        Certificate.Dispose();
        _key.Dispose();
    }
}
