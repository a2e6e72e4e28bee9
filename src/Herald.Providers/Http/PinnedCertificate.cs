using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Herald.Providers.Http;

/// <summary>Pinned trust shared by the providers' HTTP handlers: a single certificate read from a PEM file.</summary>
internal static class PinnedCertificate
{
    /// <summary>
    /// The first CERTIFICATE block of a PEM file (a certificate only, no private key).
    /// <paramref name="optionName"/> (e.g. <c>Apns:TrustedCertificateFile</c>) names the setting in the error.
    /// </summary>
    public static X509Certificate2 Load(string pemFile, string optionName)
    {
        var pem = File.ReadAllText(pemFile).AsSpan();
        while (PemEncoding.TryFind(pem, out var fields))
        {
            if (pem[fields.Label].SequenceEqual("CERTIFICATE"))
            {
                return X509CertificateLoader.LoadCertificate(Convert.FromBase64String(pem[fields.Base64Data].ToString()));
            }

            pem = pem[fields.Location.End..];
        }

        throw new InvalidOperationException($"{optionName} '{pemFile}' holds no PEM certificate.");
    }

    /// <summary>Pinned trust: the peer must present exactly <paramref name="trusted"/> (a self-signed local peer), nothing else.</summary>
    public static void Pin(SslClientAuthenticationOptions sslOptions, X509Certificate2 trusted)
    {
        var pinned = trusted.RawData;
        sslOptions.RemoteCertificateValidationCallback = (_, certificate, _, _) =>
            certificate is not null && certificate.GetRawCertData().AsSpan().SequenceEqual(pinned);
    }
}
