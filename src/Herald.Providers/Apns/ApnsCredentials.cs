using Microsoft.Extensions.Options;

namespace Herald.Providers.Apns;

/// <summary>How Herald authenticates to APNs for some tenant and topic.</summary>
public abstract class ApnsCredential
{
    /// <summary>A name for logs and health (never secret material).</summary>
    public abstract string Name { get; }

    /// <summary>MDM pushes are only accepted over certificate-authenticated connections.</summary>
    public abstract bool SupportsMdm { get; }
}

/// <summary>Token-based authentication: a provider token (JWT) signed with a <c>.p8</c> key on every request.</summary>
public sealed class ApnsTokenCredential(ApnsSigningKey signingKey) : ApnsCredential
{
    /// <summary>The key that signs the provider tokens.</summary>
    public ApnsSigningKey SigningKey { get; } = signingKey ?? throw new ArgumentNullException(nameof(signingKey));

    /// <inheritdoc />
    public override string Name => "token:" + SigningKey.Id;

    /// <inheritdoc />
    public override bool SupportsMdm => false;
}

/// <summary>
/// Finds the APNs credential for a tenant and topic. Today there is one credential from
/// <see cref="ApnsOptions"/>; per-tenant credentials plug in here later. Called on every send: keep it cheap.
/// </summary>
public interface IApnsCredentialSource
{
    /// <summary>The credential to use, or null when none is configured (the send becomes a CredentialFault "NoCredential").</summary>
    ApnsCredential? Find(string tenantId, string topic);
}

/// <summary>The single token credential configured in <see cref="ApnsOptions"/> (for every tenant and topic).</summary>
public sealed class OptionsApnsCredentialSource : IApnsCredentialSource, IDisposable
{
    private readonly ApnsTokenCredential? _credential;

    /// <summary>Loads the signing key from the options; no credential when none is configured.</summary>
    public OptionsApnsCredentialSource(IOptions<ApnsOptions> options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var o = options.Value;
        if (!o.HasTokenCredential)
        {
            return;
        }

        var errors = ApnsOptions.Validate(o);
        if (errors.Count > 0)
        {
            throw new OptionsValidationException(ApnsOptions.SectionName, typeof(ApnsOptions), errors);
        }

        var key = string.IsNullOrWhiteSpace(o.PrivateKeyPem)
            ? ApnsSigningKey.FromFile(o.TeamId!, o.KeyId!, o.PrivateKeyFile!)
            : ApnsSigningKey.FromPem(o.TeamId!, o.KeyId!, o.PrivateKeyPem);
        _credential = new ApnsTokenCredential(key);
    }

    /// <inheritdoc />
    public ApnsCredential? Find(string tenantId, string topic) => _credential;

    /// <inheritdoc />
    public void Dispose() => _credential?.SigningKey.Dispose();
}
