using System.Net;
using System.Security.Cryptography.X509Certificates;
using Microsoft.AspNetCore.HttpOverrides;
using Microsoft.AspNetCore.Server.Kestrel.Core;

namespace Herald.Server.Hosting;

/// <summary>The <c>Herald:Tls</c> section: HTTPS served by Herald itself from a certificate file.</summary>
public sealed class TlsOptions
{
    public const string Section = "Herald:Tls";

    /// <summary>A PFX/PKCS#12 file, or a PEM certificate (chain) file with <see cref="KeyPath"/>. Unset: no HTTPS from Herald.</summary>
    public string? CertificatePath { get; set; }

    /// <summary>The PEM private key file when <see cref="CertificatePath"/> is PEM.</summary>
    public string? KeyPath { get; set; }

    /// <summary>The PFX password (or of an encrypted PEM key).</summary>
    public string? Password { get; set; }

    /// <summary>Loads the certificate with its private key.</summary>
    /// <exception cref="InvalidOperationException">The files cannot be read, or hold no private key.</exception>
    public X509Certificate2 Load()
    {
        if (string.IsNullOrWhiteSpace(CertificatePath))
        {
            throw new InvalidOperationException("Herald:Tls:CertificatePath is not set.");
        }

        try
        {
            var certificate = KeyPath is not null
                ? (Password is null ? X509Certificate2.CreateFromPemFile(CertificatePath, KeyPath) : X509Certificate2.CreateFromEncryptedPemFile(CertificatePath, Password, KeyPath))
                : X509CertificateLoader.LoadPkcs12FromFile(CertificatePath, Password);
            if (!certificate.HasPrivateKey)
            {
                throw new InvalidOperationException($"The TLS certificate {CertificatePath} has no private key (give Herald:Tls:KeyPath for a PEM certificate).");
            }

            return certificate;
        }
        catch (Exception e) when (e is System.Security.Cryptography.CryptographicException or IOException or UnauthorizedAccessException)
        {
            throw new InvalidOperationException($"The TLS certificate {CertificatePath} cannot be loaded: {e.Message}", e);
        }
    }
}

/// <summary>The <c>Herald:ForwardedHeaders</c> section: trust <c>X-Forwarded-For</c>/<c>-Proto</c> only from these proxies.</summary>
public sealed class ForwardedHeadersSettings
{
    public const string Section = "Herald:ForwardedHeaders";

    /// <summary>Addresses of trusted reverse proxies. Empty: forwarded headers are ignored (the safe default).</summary>
    public List<string> KnownProxies { get; set; } = [];

    /// <summary>Networks (CIDR) of trusted reverse proxies.</summary>
    public List<string> KnownNetworks { get; set; } = [];

    /// <summary>Whether any proxy is trusted.</summary>
    public bool Enabled => KnownProxies.Count > 0 || KnownNetworks.Count > 0;

    /// <summary>Applies the trusted proxies to ASP.NET Core's forwarded-headers options.</summary>
    /// <exception cref="InvalidOperationException">An entry is not an address or a CIDR network.</exception>
    public void ApplyTo(ForwardedHeadersOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.ForwardedHeaders = ForwardedHeaders.XForwardedFor | ForwardedHeaders.XForwardedProto;
        options.KnownProxies.Clear();
        options.KnownIPNetworks.Clear();
        options.ForwardLimit = 1;
        foreach (var proxy in KnownProxies)
        {
            options.KnownProxies.Add(IPAddress.TryParse(proxy, out var address) ? address : throw new InvalidOperationException($"Herald:ForwardedHeaders:KnownProxies: '{proxy}' is not an IP address."));
        }

        foreach (var network in KnownNetworks)
        {
            options.KnownIPNetworks.Add(System.Net.IPNetwork.TryParse(network, out var parsed) ? parsed : throw new InvalidOperationException($"Herald:ForwardedHeaders:KnownNetworks: '{network}' is not a CIDR network."));
        }
    }
}

/// <summary>Kestrel set-up for HTTPS from <see cref="TlsOptions"/>.</summary>
internal static class EdgeSetup
{
    /// <summary>Every HTTPS endpoint (from <c>--urls https://…</c>) uses the configured certificate; TLS 1.2 and 1.3 only.</summary>
    public static void ConfigureHttps(KestrelServerOptions kestrel, TlsOptions tls)
    {
        if (string.IsNullOrWhiteSpace(tls.CertificatePath))
        {
            return;
        }

        var certificate = tls.Load();
        kestrel.ConfigureHttpsDefaults(https =>
        {
            https.ServerCertificate = certificate;
            https.SslProtocols = System.Security.Authentication.SslProtocols.Tls12 | System.Security.Authentication.SslProtocols.Tls13;
        });
    }
}
