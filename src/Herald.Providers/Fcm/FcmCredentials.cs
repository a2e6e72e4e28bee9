using Microsoft.Extensions.Options;

namespace Herald.Providers.Fcm;

/// <summary>
/// Finds the service account that sends for a tenant and FCM project. Today there is one account from
/// <see cref="FcmOptions"/>; per-tenant accounts plug in here later. Called on every send: keep it cheap.
/// </summary>
public interface IFcmCredentialSource
{
    /// <summary>
    /// The account to use, or null when none is configured (the send becomes a CredentialFault "NoCredential").
    /// <paramref name="project"/> is the notification's project, empty when it names none.
    /// </summary>
    FcmServiceAccount? Find(string tenantId, string project);
}

/// <summary>The single service account configured in <see cref="FcmOptions"/> (for every tenant and project).</summary>
public sealed class OptionsFcmCredentialSource : IFcmCredentialSource
{
    private readonly FcmServiceAccount? _account;

    /// <summary>Loads the service account from the options; no account when none is configured.</summary>
    public OptionsFcmCredentialSource(IOptions<FcmOptions> options, TimeProvider? time = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        var o = options.Value;
        if (!o.HasCredential)
        {
            return;
        }

        var errors = FcmOptions.Validate(o);
        if (errors.Count > 0)
        {
            throw new OptionsValidationException(FcmOptions.SectionName, typeof(FcmOptions), errors);
        }

        _account = string.IsNullOrWhiteSpace(o.ServiceAccountJson)
            ? FcmServiceAccount.FromFile(o.ServiceAccountFile!, "default", time)
            : FcmServiceAccount.Parse(o.ServiceAccountJson, "default", time);
    }

    /// <summary>The configured account, if any.</summary>
    public FcmServiceAccount? Account => _account;

    /// <inheritdoc />
    public FcmServiceAccount? Find(string tenantId, string project) => _account;
}
