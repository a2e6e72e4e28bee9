using Herald.Core.Registrations;
using Herald.Providers.Http;
using Microsoft.Extensions.Options;

namespace Herald.Providers.Apns;

/// <summary>
/// Settings of the APNs provider (configuration section <c>Herald:Apns</c>). An <c>http://</c> URL means
/// HTTP/2 with prior knowledge (h2c), for local peers such as the fake APNs server.
/// </summary>
public sealed class ApnsOptions
{
    /// <summary>The configuration section these options are bound from.</summary>
    public const string SectionName = "Herald:Apns";

    /// <summary>Apple's production endpoint.</summary>
    public string ProductionUrl { get; set; } = "https://api.push.apple.com";

    /// <summary>Apple's development (sandbox) endpoint.</summary>
    public string SandboxUrl { get; set; } = "https://api.sandbox.push.apple.com";

    /// <summary>The Apple Developer Team ID: the <c>iss</c> claim of the provider token.</summary>
    public string? TeamId { get; set; }

    /// <summary>The Key ID of the signing key: the <c>kid</c> of the provider token.</summary>
    public string? KeyId { get; set; }

    /// <summary>Path of the <c>.p8</c> file (PEM, P-256 private key).</summary>
    public string? PrivateKeyFile { get; set; }

    /// <summary>The <c>.p8</c> key itself (PEM); takes precedence over <see cref="PrivateKeyFile"/> when both are set.</summary>
    public string? PrivateKeyPem { get; set; }

    /// <summary>
    /// Path of the provider certificate for certificate auth: a <c>.p12</c>/<c>.pfx</c> file (PKCS#12) or a PEM file
    /// (certificate and key, or the key in <see cref="CertificateKeyFile"/>). Needed for MDM wake-ups.
    /// </summary>
    public string? CertificateFile { get; set; }

    /// <summary>The password of the PKCS#12 file (or of an encrypted PEM key).</summary>
    public string? CertificatePassword { get; set; }

    /// <summary>Path of the PEM private key when <see cref="CertificateFile"/> is a PEM certificate without it.</summary>
    public string? CertificateKeyFile { get; set; }

    /// <summary>The certificate and key as PEM text; takes precedence over <see cref="CertificateFile"/>.</summary>
    public string? CertificatePem { get; set; }

    /// <summary>The outbound HTTP CONNECT proxy (from <c>Herald:Proxy</c>); null for direct connections.</summary>
    public OutboundProxyOptions? Proxy { get; set; }

    /// <summary>True when a certificate credential is configured.</summary>
    public bool HasCertificateCredential => !string.IsNullOrWhiteSpace(CertificateFile) || !string.IsNullOrWhiteSpace(CertificatePem);

    /// <summary>The default topic (bundle id), used when a notification carries none.</summary>
    public string? Topic { get; set; }

    /// <summary>
    /// The default environment for registrations that do not name one. The provider always sends to the
    /// notification's own environment: a token only works in the environment it was issued for.
    /// </summary>
    public PushEnvironment Environment { get; set; } = PushEnvironment.Production;

    /// <summary>How long establishing a connection (TCP and TLS) may take.</summary>
    public TimeSpan ConnectTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// HTTP/2 connections per APNs endpoint at most (default 1). With more, one is used while it has fewer than 100 requests
    /// in flight and the next ones only under load (Apple recommends several connections for high volume over a real
    /// network). Against the fake APNs in the same process on 2 cores, 4 were no faster than 1 and cost more CPU.
    /// </summary>
    public int MaxConnections { get; set; } = 1;

    /// <summary>Connections idle this long are closed.</summary>
    public TimeSpan IdleTimeout { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>HTTP/2 PING interval on connections (health check; keeps NAT state alive). Infinite disables pings.</summary>
    public TimeSpan KeepAlivePingDelay { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>A connection whose PING is not answered within this time is closed.</summary>
    public TimeSpan KeepAlivePingTimeout { get; set; } = TimeSpan.FromSeconds(15);

    /// <summary>How long one request (send and response) may take before it counts as a transport fault.</summary>
    public TimeSpan RequestTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Age at which the provider token (JWT) is replaced. Apple rejects tokens older than an hour and
    /// refreshes more often than every 20 minutes, so this must lie between 20 and 55 minutes.
    /// </summary>
    public TimeSpan TokenRefreshInterval { get; set; } = TimeSpan.FromMinutes(40);

    /// <summary>
    /// Optional PEM certificate: when set, the server must present exactly this certificate (pinned trust
    /// for a self-signed peer such as the fake APNs server over TLS); the system trust store is then not used.
    /// </summary>
    public string? TrustedCertificateFile { get; set; }

    /// <summary>True when a token credential (team, key id and key) is configured.</summary>
    public bool HasTokenCredential =>
        !string.IsNullOrWhiteSpace(TeamId)
        || !string.IsNullOrWhiteSpace(KeyId)
        || !string.IsNullOrWhiteSpace(PrivateKeyFile)
        || !string.IsNullOrWhiteSpace(PrivateKeyPem);

    /// <summary>The smallest allowed <see cref="TokenRefreshInterval"/>.</summary>
    public static readonly TimeSpan MinTokenRefreshInterval = TimeSpan.FromMinutes(20);

    /// <summary>The largest allowed <see cref="TokenRefreshInterval"/>.</summary>
    public static readonly TimeSpan MaxTokenRefreshInterval = TimeSpan.FromMinutes(55);

    /// <summary>Checks the options; returns one message per problem (empty when valid).</summary>
    public static IReadOnlyList<string> Validate(ApnsOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var errors = new List<string>();
        CheckUrl(errors, nameof(ProductionUrl), options.ProductionUrl);
        CheckUrl(errors, nameof(SandboxUrl), options.SandboxUrl);

        // No credential at all is valid (APNs unused); sends then fail with CredentialFault "NoCredential".
        if (options.HasTokenCredential)
        {
            if (string.IsNullOrWhiteSpace(options.TeamId))
            {
                errors.Add($"{SectionName}:{nameof(TeamId)} is required with a token credential (the 10-character Team ID from the Apple Developer account).");
            }
            else if (!IsAsciiIdentifier(options.TeamId))
            {
                errors.Add($"{SectionName}:{nameof(TeamId)} must be letters and digits only.");
            }

            if (string.IsNullOrWhiteSpace(options.KeyId))
            {
                errors.Add($"{SectionName}:{nameof(KeyId)} is required with a token credential (the Key ID of the .p8 signing key).");
            }
            else if (!IsAsciiIdentifier(options.KeyId))
            {
                errors.Add($"{SectionName}:{nameof(KeyId)} must be letters and digits only.");
            }

            if (string.IsNullOrWhiteSpace(options.PrivateKeyPem))
            {
                if (string.IsNullOrWhiteSpace(options.PrivateKeyFile))
                {
                    errors.Add($"{SectionName}: set {nameof(PrivateKeyFile)} (path of the .p8 file) or {nameof(PrivateKeyPem)} with a token credential.");
                }
                else if (!File.Exists(options.PrivateKeyFile))
                {
                    errors.Add($"{SectionName}:{nameof(PrivateKeyFile)} '{options.PrivateKeyFile}' does not exist.");
                }
            }
            else if (!options.PrivateKeyPem.Contains("-----BEGIN", StringComparison.Ordinal))
            {
                errors.Add($"{SectionName}:{nameof(PrivateKeyPem)} must be a PEM key (-----BEGIN PRIVATE KEY-----).");
            }
        }

        if (!string.IsNullOrWhiteSpace(options.CertificateFile) && string.IsNullOrWhiteSpace(options.CertificatePem))
        {
            if (!File.Exists(options.CertificateFile))
            {
                errors.Add($"{SectionName}:{nameof(CertificateFile)} '{options.CertificateFile}' does not exist.");
            }

            if (!string.IsNullOrWhiteSpace(options.CertificateKeyFile) && !File.Exists(options.CertificateKeyFile))
            {
                errors.Add($"{SectionName}:{nameof(CertificateKeyFile)} '{options.CertificateKeyFile}' does not exist.");
            }
        }

        if (options.Proxy is { } proxy)
        {
            errors.AddRange(OutboundProxyOptions.Validate(proxy));
        }

        if (options.MaxConnections is < 1 or > 64)
        {
            errors.Add($"{SectionName}:{nameof(MaxConnections)} must be between 1 and 64; it is {options.MaxConnections}.");
        }

        CheckPositive(errors, nameof(ConnectTimeout), options.ConnectTimeout);
        CheckPositive(errors, nameof(IdleTimeout), options.IdleTimeout);
        CheckPositive(errors, nameof(RequestTimeout), options.RequestTimeout);
        if (options.KeepAlivePingDelay != Timeout.InfiniteTimeSpan)
        {
            CheckPositive(errors, nameof(KeepAlivePingDelay), options.KeepAlivePingDelay);
        }

        CheckPositive(errors, nameof(KeepAlivePingTimeout), options.KeepAlivePingTimeout);

        if (options.TokenRefreshInterval < MinTokenRefreshInterval || options.TokenRefreshInterval > MaxTokenRefreshInterval)
        {
            errors.Add($"{SectionName}:{nameof(TokenRefreshInterval)} must be between 20 and 55 minutes (Apple rejects tokens older than 60 minutes and refreshes more often than every 20); it is {options.TokenRefreshInterval}.");
        }

        if (!string.IsNullOrWhiteSpace(options.TrustedCertificateFile) && !File.Exists(options.TrustedCertificateFile))
        {
            errors.Add($"{SectionName}:{nameof(TrustedCertificateFile)} '{options.TrustedCertificateFile}' does not exist.");
        }

        if (options.Topic is { } topic && topic.Length > 0 && string.IsNullOrWhiteSpace(topic))
        {
            errors.Add($"{SectionName}:{nameof(Topic)} must not be blank.");
        }

        return errors;
    }

    private static void CheckUrl(List<string> errors, string name, string? value)
    {
        if (string.IsNullOrWhiteSpace(value)
            || !Uri.TryCreate(value, UriKind.Absolute, out var uri)
            || (uri.Scheme != Uri.UriSchemeHttps && uri.Scheme != Uri.UriSchemeHttp))
        {
            errors.Add($"{SectionName}:{name} must be an absolute https:// URL (or http:// for an HTTP/2 cleartext peer); it is '{value}'.");
            return;
        }

        if (!string.IsNullOrEmpty(uri.Query) || !string.IsNullOrEmpty(uri.Fragment))
        {
            errors.Add($"{SectionName}:{name} must not have a query or fragment; it is '{value}'.");
        }
    }

    private static void CheckPositive(List<string> errors, string name, TimeSpan value)
    {
        if (value <= TimeSpan.Zero)
        {
            errors.Add($"{SectionName}:{name} must be positive; it is {value}.");
        }
    }

    private static bool IsAsciiIdentifier(string value)
    {
        foreach (var c in value)
        {
            if (!char.IsAsciiLetterOrDigit(c))
            {
                return false;
            }
        }

        return true;
    }
}

/// <summary>Validates <see cref="ApnsOptions"/> at start (<c>ValidateOnStart</c>) with <see cref="ApnsOptions.Validate"/>.</summary>
public sealed class ApnsOptionsValidator : IValidateOptions<ApnsOptions>
{
    /// <inheritdoc />
    public ValidateOptionsResult Validate(string? name, ApnsOptions options)
    {
        var errors = ApnsOptions.Validate(options);
        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }
}
