using System.Collections.Concurrent;
using System.Formats.Asn1;
using System.Security.Cryptography.X509Certificates;

namespace Herald.Simulators.Apns;

/// <summary>
/// Certificate authentication as APNs does it: the TLS client certificate must be issued by one of the
/// authorities the fake was given (Apple's WWDR in reality), valid now, not revoked, and for this environment;
/// the request's topic must be one of the certificate's topics (extension 1.2.840.113635.100.6.3.6 plus the
/// subject UID). Verdicts per certificate are cached by thumbprint, except the clock-dependent validity.
/// </summary>
internal sealed class FakeApnsCertificateAuth(IReadOnlyList<X509Certificate2> authorities, FakeApnsEnvironment environment)
{
    private const string TopicsOid = "1.2.840.113635.100.6.3.6";
    private const string DevelopmentOid = "1.2.840.113635.100.6.3.1";
    private const string ProductionOid = "1.2.840.113635.100.6.3.2";
    private const string UidOid = "0.9.2342.19200300.100.1.1";

    private readonly ConcurrentDictionary<string, Verdict> _verdicts = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, bool> _revoked = new(StringComparer.OrdinalIgnoreCase);

    public void Revoke(string thumbprint)
    {
        _revoked[thumbprint] = true;
    }

    /// <summary>Checks the client certificate; 0 and the certificate's topics on success.</summary>
    public (int Status, string? Reason) Check(X509Certificate2 certificate, DateTimeOffset now, out IReadOnlyList<string> topics)
    {
        var thumbprint = certificate.Thumbprint;
        var verdict = _verdicts.GetOrAdd(thumbprint, static (_, state) => state.self.Judge(state.certificate), (self: this, certificate));
        topics = verdict.Topics;
        if (verdict.Reason is not null)
        {
            return (403, verdict.Reason);
        }

        if (_revoked.ContainsKey(thumbprint))
        {
            return (403, "BadCertificate");
        }

        var utc = now.UtcDateTime;
        if (utc > certificate.NotAfter.ToUniversalTime() || utc < certificate.NotBefore.ToUniversalTime())
        {
            return (403, "BadCertificate"); // expired or not yet valid
        }

        return (0, null);
    }

    private Verdict Judge(X509Certificate2 certificate)
    {
        IReadOnlyList<string> topics;
        try
        {
            topics = Topics(certificate);
        }
        catch (AsnContentException)
        {
            return new Verdict("BadCertificate", []);
        }

        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.AddRange(authorities.ToArray());
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        chain.ChainPolicy.VerificationFlags = X509VerificationFlags.IgnoreNotTimeValid; // validity is checked per request, by the fake's clock
        if (authorities.Count == 0 || !chain.Build(certificate))
        {
            return new Verdict("BadCertificate", topics);
        }

        var development = certificate.Extensions[DevelopmentOid] is not null;
        var production = certificate.Extensions[ProductionOid] is not null;
        var universal = certificate.Extensions[TopicsOid] is not null;
        if (!universal && (development || production))
        {
            var serves = environment == FakeApnsEnvironment.Production ? production : development;
            if (!serves)
            {
                return new Verdict("BadCertificateEnvironment", topics);
            }
        }

        return new Verdict(null, topics);
    }

    /// <summary>The UID topic, then the topics extension (flat topic/types list or SEQUENCE pairs).</summary>
    internal static IReadOnlyList<string> Topics(X509Certificate2 certificate)
    {
        var topics = new List<string>();
        foreach (var rdn in certificate.SubjectName.EnumerateRelativeDistinguishedNames())
        {
            if (!rdn.HasMultipleElements && rdn.GetSingleElementType().Value == UidOid && rdn.GetSingleElementValue() is { Length: > 0 } uid)
            {
                topics.Add(uid);
            }
        }

        if (certificate.Extensions[TopicsOid] is not { } extension)
        {
            return topics;
        }

        var outer = new AsnReader(extension.RawData, AsnEncodingRules.DER).ReadSequence();
        var previousWasTopic = false;
        while (outer.HasData)
        {
            var tag = outer.PeekTag();
            if (tag.TagClass == TagClass.Universal && tag.TagValue == (int)UniversalTagNumber.UTF8String)
            {
                AddDistinct(topics, outer.ReadCharacterString(UniversalTagNumber.UTF8String));
                previousWasTopic = true;
            }
            else if (tag.HasSameClassAndValue(Asn1Tag.Sequence))
            {
                var inner = outer.ReadSequence();
                if (inner.HasData && inner.PeekTag().TagValue == (int)UniversalTagNumber.UTF8String)
                {
                    var head = inner.ReadCharacterString(UniversalTagNumber.UTF8String);
                    var pair = inner.HasData && inner.PeekTag().HasSameClassAndValue(Asn1Tag.Sequence);
                    if (pair || !previousWasTopic)
                    {
                        AddDistinct(topics, head);
                    }
                }

                previousWasTopic = false;
            }
            else
            {
                outer.ReadEncodedValue();
                previousWasTopic = false;
            }
        }

        return topics;
    }

    private static void AddDistinct(List<string> topics, string topic)
    {
        if (topic.Length > 0 && !topics.Contains(topic, StringComparer.Ordinal))
        {
            topics.Add(topic);
        }
    }

    private sealed record Verdict(string? Reason, IReadOnlyList<string> Topics);
}
