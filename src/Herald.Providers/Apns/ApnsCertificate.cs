using System.Formats.Asn1;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Herald.Providers.Apns;

/// <summary>
/// An APNs provider certificate (certificate auth): the TLS client certificate with its private key, and what
/// Apple wrote into it: the topics it may push to, the environments it serves, its validity and thumbprint.
/// </summary>
/// <remarks>
/// Topics come from Apple's extension 1.2.840.113635.100.6.3.6 (a SEQUENCE of UTF8String topics, each followed
/// by a SEQUENCE of the push types it allows; some tools write SEQUENCE { topic, SEQUENCE { types } } pairs
/// instead, and both are read) plus the subject's UID (0.9.2342.19200300.100.1.1), which is the topic of a
/// single-topic certificate and of an MDM push certificate (<c>com.apple.mgmt.External.&lt;uuid&gt;</c>).
/// </remarks>
public sealed class ApnsCertificate : IDisposable
{
    /// <summary>Apple's extension holding the topics of a multi-topic certificate.</summary>
    public const string TopicsOid = "1.2.840.113635.100.6.3.6";

    /// <summary>Apple's marker of a development (sandbox) push certificate.</summary>
    public const string DevelopmentOid = "1.2.840.113635.100.6.3.1";

    /// <summary>Apple's marker of a production push certificate.</summary>
    public const string ProductionOid = "1.2.840.113635.100.6.3.2";

    /// <summary>The subject attribute UID (userId): the bundle id or MDM topic.</summary>
    public const string UidOid = "0.9.2342.19200300.100.1.1";

    /// <summary>The topic prefix of MDM push certificates.</summary>
    public const string MdmTopicPrefix = "com.apple.mgmt.External.";

    private ApnsCertificate(X509Certificate2 certificate)
    {
        Certificate = certificate;
        Topics = ReadTopics(certificate);
        NotBefore = new DateTimeOffset(certificate.NotBefore.ToUniversalTime(), TimeSpan.Zero);
        NotAfter = new DateTimeOffset(certificate.NotAfter.ToUniversalTime(), TimeSpan.Zero);
        Thumbprint = certificate.GetCertHashString(HashAlgorithmName.SHA256).ToLowerInvariant();
        var development = certificate.Extensions[DevelopmentOid] is not null;
        var production = certificate.Extensions[ProductionOid] is not null;

        // A universal certificate (topics extension) serves both; so does one that marks neither.
        ServesSandbox = development || !production || certificate.Extensions[TopicsOid] is not null;
        ServesProduction = production || !development || certificate.Extensions[TopicsOid] is not null;
    }

    /// <summary>The certificate with its private key, presented in the TLS handshake.</summary>
    public X509Certificate2 Certificate { get; }

    /// <summary>The topics this certificate may push to (distinct, in certificate order; the UID topic first when present).</summary>
    public IReadOnlyList<string> Topics { get; }

    /// <summary>Start of validity.</summary>
    public DateTimeOffset NotBefore { get; }

    /// <summary>End of validity: after this Apple refuses the certificate.</summary>
    public DateTimeOffset NotAfter { get; }

    /// <summary>Lower-case hex SHA-256 of the DER certificate (not secret).</summary>
    public string Thumbprint { get; }

    /// <summary>Accepted by the sandbox endpoint.</summary>
    public bool ServesSandbox { get; }

    /// <summary>Accepted by the production endpoint.</summary>
    public bool ServesProduction { get; }

    /// <summary>True when one of the topics is an MDM topic.</summary>
    public bool IsMdm => Topics.Any(t => t.StartsWith(MdmTopicPrefix, StringComparison.Ordinal));

    /// <summary>Whether <paramref name="topic"/> is one of the certificate's topics.</summary>
    public bool Allows(string topic)
    {
        foreach (var t in Topics)
        {
            if (string.Equals(t, topic, StringComparison.Ordinal))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>Loads a PKCS#12 (.p12/.pfx) file's content; the certificate with a private key is the one used.</summary>
    /// <exception cref="ArgumentException">Not PKCS#12, wrong password, or no certificate with a private key.</exception>
    public static ApnsCertificate FromPkcs12(ReadOnlySpan<byte> pfx, string? password)
    {
        X509Certificate2Collection collection;
        try
        {
            collection = X509CertificateLoader.LoadPkcs12Collection(pfx, password, X509KeyStorageFlags.Exportable);
        }
        catch (CryptographicException ex)
        {
            throw new ArgumentException("The certificate is not a PKCS#12 (.p12/.pfx) file, or the password is wrong: " + ex.Message, nameof(pfx), ex);
        }

        X509Certificate2? chosen = null;
        foreach (var c in collection)
        {
            if (chosen is null && c.HasPrivateKey)
            {
                chosen = c;
            }
            else
            {
                c.Dispose();
            }
        }

        if (chosen is null)
        {
            throw new ArgumentException("The PKCS#12 file holds no certificate with its private key.", nameof(pfx));
        }

        return FromCertificate(chosen);
    }

    /// <summary>Loads PEM text: a CERTIFICATE and its private key (in the same text, or <paramref name="keyPem"/>), optionally encrypted with <paramref name="password"/>.</summary>
    /// <exception cref="ArgumentException">No certificate, no matching key, or a wrong password.</exception>
    public static ApnsCertificate FromPem(string certificatePem, string? keyPem = null, string? password = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(certificatePem);
        keyPem ??= certificatePem;
        X509Certificate2 loaded;
        try
        {
            loaded = string.IsNullOrEmpty(password)
                ? X509Certificate2.CreateFromPem(certificatePem, keyPem)
                : X509Certificate2.CreateFromEncryptedPem(certificatePem, keyPem, password);
        }
        catch (Exception ex) when (ex is CryptographicException or ArgumentException)
        {
            throw new ArgumentException("The PEM certificate and key cannot be used together: " + ex.Message, nameof(certificatePem), ex);
        }

        using (loaded)
        {
            // Through PKCS#12, so SslStream can use the private key on every platform.
            return FromCertificate(X509CertificateLoader.LoadPkcs12(loaded.Export(X509ContentType.Pkcs12), null, X509KeyStorageFlags.Exportable));
        }
    }

    /// <summary>Loads a file: <c>.p12</c>/<c>.pfx</c> (PKCS#12) or PEM (with the key in it or in <paramref name="keyFile"/>).</summary>
    public static ApnsCertificate FromFile(string path, string? password, string? keyFile = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        var bytes = File.ReadAllBytes(path);
        var text = bytes.AsSpan().IndexOf("-----BEGIN"u8) >= 0 ? System.Text.Encoding.ASCII.GetString(bytes) : null;
        if (text is null)
        {
            return FromPkcs12(bytes, password);
        }

        var key = string.IsNullOrWhiteSpace(keyFile) ? null : File.ReadAllText(keyFile);
        return FromPem(text, key, password);
    }

    private static ApnsCertificate FromCertificate(X509Certificate2 certificate)
    {
        try
        {
            return new ApnsCertificate(certificate);
        }
        catch
        {
            certificate.Dispose();
            throw;
        }
    }

    /// <summary>Reads the topics of a certificate (the UID topic first, then the topics extension); empty when it names none.</summary>
    public static IReadOnlyList<string> ReadTopics(X509Certificate2 certificate)
    {
        ArgumentNullException.ThrowIfNull(certificate);
        var topics = new List<string>();
        if (ReadUid(certificate.SubjectName) is { Length: > 0 } uid)
        {
            topics.Add(uid);
        }

        if (certificate.Extensions[TopicsOid] is { } extension)
        {
            foreach (var topic in ParseTopicsExtension(extension.RawData))
            {
                if (!topics.Contains(topic, StringComparer.Ordinal))
                {
                    topics.Add(topic);
                }
            }
        }

        return topics;
    }

    /// <summary>
    /// Parses the value of extension 1.2.840.113635.100.6.3.6. Tolerates both shapes in use: a flat SEQUENCE of
    /// topic strings each followed by a SEQUENCE of push-type strings, and a SEQUENCE of SEQUENCE { topic, SEQUENCE { types } } pairs.
    /// </summary>
    /// <exception cref="ArgumentException">The value is not DER of either shape.</exception>
    public static IReadOnlyList<string> ParseTopicsExtension(ReadOnlyMemory<byte> value)
    {
        var topics = new List<string>();
        try
        {
            var reader = new AsnReader(value, AsnEncodingRules.DER);
            var outer = reader.ReadSequence();
            reader.ThrowIfNotEmpty();
            var previousWasTopic = false;
            while (outer.HasData)
            {
                var tag = outer.PeekTag();
                if (IsString(tag))
                {
                    Add(topics, ReadString(outer, tag));
                    previousWasTopic = true;
                }
                else if (tag.HasSameClassAndValue(Asn1Tag.Sequence))
                {
                    var inner = outer.ReadSequence();
                    if (!inner.HasData)
                    {
                        previousWasTopic = false;
                        continue;
                    }

                    var first = inner.PeekTag();
                    if (!IsString(first))
                    {
                        throw new ArgumentException("A topics entry is neither a string nor a SEQUENCE starting with one.", nameof(value));
                    }

                    var head = ReadString(inner, first);
                    var pair = inner.HasData && inner.PeekTag().HasSameClassAndValue(Asn1Tag.Sequence);
                    if (pair || !previousWasTopic)
                    {
                        // SEQUENCE { topic, SEQUENCE { types } }, or a lone SEQUENCE { topic }.
                        Add(topics, head);
                    }

                    // Otherwise: the push types of the topic just read.
                    previousWasTopic = false;
                }
                else
                {
                    outer.ReadEncodedValue(); // something newer: skip it
                    previousWasTopic = false;
                }
            }
        }
        catch (AsnContentException ex)
        {
            throw new ArgumentException("The APNs topics extension is not valid DER: " + ex.Message, nameof(value), ex);
        }

        return topics;
    }

    private static void Add(List<string> topics, string topic)
    {
        topic = topic.Trim();
        if (topic.Length > 0 && !topics.Contains(topic, StringComparer.Ordinal))
        {
            topics.Add(topic);
        }
    }

    private static bool IsString(Asn1Tag tag)
        => tag.TagClass == TagClass.Universal && (UniversalTagNumber)tag.TagValue is UniversalTagNumber.UTF8String
            or UniversalTagNumber.PrintableString or UniversalTagNumber.IA5String or UniversalTagNumber.BMPString
            or UniversalTagNumber.VisibleString or UniversalTagNumber.T61String;

    private static string ReadString(AsnReader reader, Asn1Tag tag)
        => reader.ReadCharacterString((UniversalTagNumber)tag.TagValue, tag);

    private static string? ReadUid(X500DistinguishedName name)
    {
        foreach (var rdn in name.EnumerateRelativeDistinguishedNames())
        {
            if (!rdn.HasMultipleElements && rdn.GetSingleElementType().Value == UidOid)
            {
                return rdn.GetSingleElementValue();
            }
        }

        return null;
    }

    /// <inheritdoc />
    public void Dispose() => Certificate.Dispose();
}
