using System.Security.Cryptography;
using System.Text;
using Herald.Core.Credentials;
using Microsoft.Extensions.Options;

namespace Herald.Providers.Wns;

/// <summary>A WNS cloud-service credential: the app's Package SID and client secret, exchanged for access tokens.</summary>
public sealed class WnsCredential
{
    /// <summary>Creates a credential of the default tenant.</summary>
    public WnsCredential(string packageSid, string clientSecret)
        : this(packageSid, clientSecret, "default", null)
    {
    }

    /// <summary>Creates a credential of tenant <paramref name="owner"/>, its circuit on <paramref name="time"/>.</summary>
    public WnsCredential(string packageSid, string clientSecret, string owner, TimeProvider? time)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(packageSid);
        ArgumentException.ThrowIfNullOrWhiteSpace(clientSecret);
        ArgumentException.ThrowIfNullOrWhiteSpace(owner);
        Owner = owner;
        Circuit = new CredentialCircuit(time ?? TimeProvider.System);
        PackageSid = packageSid;
        ClientSecret = clientSecret;

        // The secret's fingerprint keeps two secrets of one app (a rotation, a typo in one tenant) from sharing a token.
        var hash = SHA256.HashData(Encoding.UTF8.GetBytes(clientSecret));
        Id = packageSid + "#" + Convert.ToHexStringLower(hash.AsSpan(0, 4));
    }

    /// <summary>The Package SID (<c>client_id</c>); not secret.</summary>
    public string PackageSid { get; }

    /// <summary>The client secret. Never log it.</summary>
    public string ClientSecret { get; }

    /// <summary>Identifies the credential in token caches: the Package SID and a fingerprint of the secret.</summary>
    public string Id { get; }

    /// <summary>A name for logs and health (never secret material).</summary>
    public string Name => "wns:" + PackageSid;

    /// <summary>The tenant the credential belongs to ("default" for the one from configuration).</summary>
    public string Owner { get; }

    /// <summary>
    /// Opened by a credential fault (the token endpoint refuses the secret, WNS answers 401 after a renewal or
    /// 403): this credential's sends then wait in retry while other credentials keep sending. A replaced
    /// credential is a new object with a closed circuit.
    /// </summary>
    public CredentialCircuit Circuit { get; }

    /// <inheritdoc />
    public override string ToString() => Name;
}

/// <summary>
/// Finds the WNS credential for a tenant and topic (the app's package). Today there is one credential from
/// <see cref="WnsOptions"/>; per-tenant credentials plug in here later. Called on every send: keep it cheap.
/// </summary>
public interface IWnsCredentialSource
{
    /// <summary>The credential to use, or null when none is configured (the send becomes a CredentialFault "NoCredential").</summary>
    WnsCredential? Find(string tenantId, string topic);
}

/// <summary>The single credential configured in <see cref="WnsOptions"/> (for every tenant and topic).</summary>
public sealed class OptionsWnsCredentialSource : IWnsCredentialSource
{
    private readonly WnsCredential? _credential;

    /// <summary>Takes the credential from the options; none when none is configured.</summary>
    public OptionsWnsCredentialSource(IOptions<WnsOptions> options, TimeProvider? time = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        var o = options.Value;
        if (!o.HasCredential)
        {
            return;
        }

        var errors = WnsOptions.Validate(o);
        if (errors.Count > 0)
        {
            throw new OptionsValidationException(WnsOptions.SectionName, typeof(WnsOptions), errors);
        }

        _credential = new WnsCredential(o.PackageSid!, o.ClientSecret!, "default", time);
    }

    /// <inheritdoc />
    public WnsCredential? Find(string tenantId, string topic) => _credential;
}
