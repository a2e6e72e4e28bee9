using Herald.Core.Ports;
using Herald.Core.Security;

namespace Herald.Server.Auth;

/// <summary>Makes sure an admin key exists on start (CONTRACT §2 <c>Herald:AdminApiKey</c>).</summary>
public static class AdminKeyBootstrap
{
    public const string DefaultTenant = "default";

    /// <summary>
    /// Stores the configured admin key (hashed) when it is not stored yet. With none configured and
    /// no admin key in the store, generates one and returns it so the caller prints it once.
    /// </summary>
    public static async Task<string?> EnsureAsync(IAccessStore store, string? configuredKey, TimeProvider time, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(store);
        if (!string.IsNullOrWhiteSpace(configuredKey))
        {
            if (configuredKey.Length < 16)
            {
                throw new InvalidOperationException("Herald:AdminApiKey must be at least 16 characters (128 bits of randomness recommended).");
            }

            var hash = Secrets.Hash(configuredKey);
            if (await store.FindApiKeyAsync(hash, cancellationToken).ConfigureAwait(false) is null)
            {
                await store.AddApiKeyAsync(new ApiKeyRecord("key_" + Guid.CreateVersion7().ToString("N"), DefaultTenant, hash, true, time.GetUtcNow(), null), cancellationToken).ConfigureAwait(false);
            }

            return null;
        }

        if (await store.AnyActiveAdminKeyAsync(cancellationToken).ConfigureAwait(false))
        {
            return null;
        }

        var key = Secrets.NewKey("hk_", 24);
        await store.AddApiKeyAsync(new ApiKeyRecord("key_" + Guid.CreateVersion7().ToString("N"), DefaultTenant, Secrets.Hash(key), true, time.GetUtcNow(), null), cancellationToken).ConfigureAwait(false);
        return key;
    }
}
