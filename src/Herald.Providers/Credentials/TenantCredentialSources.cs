using System.Collections.Concurrent;
using Herald.Core.Credentials;
using Herald.Core.Registrations;
using Herald.Providers.Apns;
using Herald.Providers.Fcm;
using Herald.Providers.Wns;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Herald.Providers.Credentials;

/// <summary>
/// Per-tenant credentials for one provider: the tenant's own (from the <see cref="CredentialRegistry"/>, built
/// once per stored version, so a replacement is a new object with a closed circuit), else the configured one.
/// </summary>
/// <typeparam name="T">The provider's credential type.</typeparam>
public abstract partial class TenantCredentialSource<T> : IDisposable
    where T : class
{
    private readonly CredentialRegistry _registry;
    private readonly Platform _platform;
    private readonly ILogger _logger;
    private readonly ConcurrentDictionary<string, (long Version, T? Credential)> _built = new(StringComparer.Ordinal);

    /// <summary>Creates the source and follows the registry's changes.</summary>
    protected TenantCredentialSource(CredentialRegistry registry, Platform platform, ILogger? logger)
    {
        ArgumentNullException.ThrowIfNull(registry);
        _registry = registry;
        _platform = platform;
        _logger = logger ?? NullLogger.Instance;
        _registry.Changed += OnChanged;
    }

    /// <summary>Raised with the replaced (or deleted) credential object when a tenant's credential changes.</summary>
    public event Action<T>? Replaced;

    /// <summary>The tenant's own credential; null when it has none (or it cannot be opened).</summary>
    protected T? FindTenant(string tenantId)
    {
        var stored = _registry.Find(tenantId, _platform);
        if (stored is null)
        {
            return null;
        }

        if (_built.TryGetValue(tenantId, out var built) && built.Version == stored.Version)
        {
            return built.Credential;
        }

        T? credential = null;
        try
        {
            credential = Build(stored);
        }
        catch (Exception ex) when (ex is ArgumentException or FormatException or System.Text.Json.JsonException or KeyNotFoundException or InvalidOperationException or System.Security.Cryptography.CryptographicException)
        {
            Log.CannotBuild(_logger, tenantId, _platform, ex.Message);
        }

        _built[tenantId] = (stored.Version, credential);
        return credential;
    }

    /// <summary>Builds the provider credential from the stored one.</summary>
    protected abstract T Build(TenantCredential credential);

    private void OnChanged(string tenantId, Platform platform)
    {
        if (platform == _platform && _built.TryRemove(tenantId, out var old) && old.Credential is { } replaced)
        {
            Replaced?.Invoke(replaced);
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _registry.Changed -= OnChanged;
        Dispose(true);
        GC.SuppressFinalize(this);
    }

    /// <summary>Releases the fallback's resources.</summary>
    protected virtual void Dispose(bool disposing)
    {
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 3901, Level = LogLevel.Error, Message = "The {Platform} credential of tenant {TenantId} cannot be used: {Error}")]
        public static partial void CannotBuild(ILogger logger, string tenantId, Platform platform, string error);
    }
}

/// <summary>APNs: the tenant's token key or certificate, else the configured credentials.</summary>
public sealed class TenantApnsCredentialSource(CredentialRegistry registry, OptionsApnsCredentialSource fallback, TimeProvider time, ILogger<TenantApnsCredentialSource>? logger = null)
    : TenantCredentialSource<ApnsCredential>(registry, Platform.Apns, logger), IApnsCredentialSource
{
    /// <summary>The configured credentials (the default tenant's, and the fallback for tenants without their own).</summary>
    public OptionsApnsCredentialSource Fallback { get; } = fallback;

    /// <inheritdoc />
    public ApnsCredential? Find(string tenantId, string topic) => FindTenant(tenantId) ?? Fallback.Find(tenantId, topic);

    /// <inheritdoc />
    protected override ApnsCredential Build(TenantCredential credential) => TenantCredentialUploads.OpenApns(credential, time);

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        Fallback.Dispose();
        base.Dispose(disposing);
    }
}

/// <summary>
/// FCM: the tenant's service account (a new object, with a closed circuit, per stored version), else the configured one.
/// </summary>
public sealed class TenantFcmCredentialSource(CredentialRegistry registry, IFcmCredentialSource fallback, ILogger<TenantFcmCredentialSource>? logger = null, TimeProvider? time = null)
    : TenantCredentialSource<FcmServiceAccount>(registry, Platform.Fcm, logger), IFcmCredentialSource
{
    /// <inheritdoc />
    public FcmServiceAccount? Find(string tenantId, string project) => FindTenant(tenantId) ?? fallback.Find(tenantId, project);

    /// <inheritdoc />
    protected override FcmServiceAccount Build(TenantCredential credential) => TenantCredentialUploads.OpenFcm(credential, time);
}

/// <summary>
/// WNS: the tenant's Package SID and secret (a new object, with a closed circuit, per stored version), else the configured ones.
/// </summary>
public sealed class TenantWnsCredentialSource(CredentialRegistry registry, IWnsCredentialSource fallback, ILogger<TenantWnsCredentialSource>? logger = null, TimeProvider? time = null)
    : TenantCredentialSource<WnsCredential>(registry, Platform.Wns, logger), IWnsCredentialSource
{
    /// <inheritdoc />
    public WnsCredential? Find(string tenantId, string topic) => FindTenant(tenantId) ?? fallback.Find(tenantId, topic);

    /// <inheritdoc />
    protected override WnsCredential Build(TenantCredential credential) => TenantCredentialUploads.OpenWns(credential, time);
}
