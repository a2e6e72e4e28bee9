using Herald.Core.Credentials;
using Microsoft.Extensions.Options;

namespace Herald.Providers.Apns;

/// <summary>How Herald authenticates to APNs for some tenant and topic.</summary>
public abstract class ApnsCredential
{
    /// <summary>Creates a credential owned by <paramref name="owner"/> (a tenant id; "default" for configuration).</summary>
    protected ApnsCredential(string owner, TimeProvider? time)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(owner);
        Owner = owner;
        Circuit = new CredentialCircuit(time ?? TimeProvider.System);
    }

    /// <summary>A name for logs and health (never secret material).</summary>
    public abstract string Name { get; }

    /// <summary>MDM pushes are only accepted over certificate-authenticated connections.</summary>
    public abstract bool SupportsMdm { get; }

    /// <summary>The tenant the credential belongs to ("default" for the one from configuration).</summary>
    public string Owner { get; }

    /// <summary>Opened by a credential fault: this credential's sends then wait, other credentials keep sending.</summary>
    public CredentialCircuit Circuit { get; }
}

/// <summary>Token-based authentication: a provider token (JWT) signed with a <c>.p8</c> key on every request.</summary>
public sealed class ApnsTokenCredential : ApnsCredential
{
    /// <summary>A token credential of the default tenant.</summary>
    public ApnsTokenCredential(ApnsSigningKey signingKey)
        : this(signingKey, "default", null, null)
    {
    }

    /// <summary>A token credential of <paramref name="owner"/>, optionally limited to <paramref name="topics"/>.</summary>
    public ApnsTokenCredential(ApnsSigningKey signingKey, string owner, IReadOnlyList<string>? topics, TimeProvider? time)
        : base(owner, time)
    {
        SigningKey = signingKey ?? throw new ArgumentNullException(nameof(signingKey));
        Topics = topics ?? [];
    }

    /// <summary>The key that signs the provider tokens.</summary>
    public ApnsSigningKey SigningKey { get; }

    /// <summary>The topics (bundle ids) the tenant declared for this key; empty means any.</summary>
    public IReadOnlyList<string> Topics { get; }

    /// <inheritdoc />
    public override string Name => "token:" + SigningKey.Id;

    /// <inheritdoc />
    public override bool SupportsMdm => false;
}

/// <summary>Certificate-based authentication: a TLS client certificate on its own connections.</summary>
public sealed class ApnsCertificateCredential(ApnsCertificate certificate, string owner = "default", TimeProvider? time = null) : ApnsCredential(owner, time)
{
    /// <summary>The certificate with its key, topics and expiry.</summary>
    public ApnsCertificate Certificate { get; } = certificate ?? throw new ArgumentNullException(nameof(certificate));

    /// <inheritdoc />
    public override string Name => "certificate:" + Certificate.Thumbprint[..16];

    /// <inheritdoc />
    public override bool SupportsMdm => true;
}

/// <summary>
/// Finds the APNs credential for a tenant and topic. Called on every send: keep it cheap.
/// </summary>
public interface IApnsCredentialSource
{
    /// <summary>The credential to use, or null when none is configured (the send becomes a CredentialFault "NoCredential").</summary>
    ApnsCredential? Find(string tenantId, string topic);
}

/// <summary>
/// The credentials configured in <see cref="ApnsOptions"/>: a token key, a certificate, or both (then the
/// certificate serves its own topics, MDM among them, and the key everything else).
/// </summary>
public sealed class OptionsApnsCredentialSource : IApnsCredentialSource, IDisposable
{
    private readonly ApnsTokenCredential? _token;
    private readonly ApnsCertificateCredential? _certificate;

    /// <summary>Loads the signing key and certificate from the options; no credential when none is configured.</summary>
    public OptionsApnsCredentialSource(IOptions<ApnsOptions> options, TimeProvider? time = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        var o = options.Value;
        if (!o.HasTokenCredential && !o.HasCertificateCredential)
        {
            return;
        }

        var errors = ApnsOptions.Validate(o);
        if (errors.Count > 0)
        {
            throw new OptionsValidationException(ApnsOptions.SectionName, typeof(ApnsOptions), errors);
        }

        if (o.HasTokenCredential)
        {
            var key = string.IsNullOrWhiteSpace(o.PrivateKeyPem)
                ? ApnsSigningKey.FromFile(o.TeamId!, o.KeyId!, o.PrivateKeyFile!)
                : ApnsSigningKey.FromPem(o.TeamId!, o.KeyId!, o.PrivateKeyPem);
            _token = new ApnsTokenCredential(key, "default", null, time);
        }

        if (o.HasCertificateCredential)
        {
            try
            {
                var certificate = string.IsNullOrWhiteSpace(o.CertificatePem)
                    ? ApnsCertificate.FromFile(o.CertificateFile!, o.CertificatePassword, o.CertificateKeyFile)
                    : ApnsCertificate.FromPem(o.CertificatePem, null, o.CertificatePassword);
                _certificate = new ApnsCertificateCredential(certificate, "default", time);
            }
            catch (ArgumentException ex)
            {
                _token?.SigningKey.Dispose();
                throw new OptionsValidationException(ApnsOptions.SectionName, typeof(ApnsOptions), [$"{ApnsOptions.SectionName}:{nameof(ApnsOptions.CertificateFile)}: {ex.Message}"]);
            }
        }
    }

    /// <summary>The configured token credential, if any.</summary>
    public ApnsTokenCredential? Token => _token;

    /// <summary>The configured certificate credential, if any.</summary>
    public ApnsCertificateCredential? Certificate => _certificate;

    /// <inheritdoc />
    public ApnsCredential? Find(string tenantId, string topic) => Choose(_token, _certificate, topic);

    /// <summary>The certificate for its own topics (and every MDM topic); the token key otherwise; whichever exists last.</summary>
    internal static ApnsCredential? Choose(ApnsTokenCredential? token, ApnsCertificateCredential? certificate, string topic)
    {
        if (certificate is not null
            && (token is null || certificate.Certificate.Allows(topic) || topic.StartsWith(ApnsCertificate.MdmTopicPrefix, StringComparison.Ordinal)))
        {
            return certificate;
        }

        return token;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _token?.SigningKey.Dispose();
        _certificate?.Certificate.Dispose();
    }
}
