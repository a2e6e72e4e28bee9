namespace Herald.Core.Ports;

/// <summary>A short-lived provider token shared by every node (for example the APNs JWT of a signing key), sealed.</summary>
public sealed record SharedToken(string SealedValue, DateTimeOffset IssuedAt);

/// <summary>
/// Provider tokens that the whole farm must share (Apple rejects a signing key whose token changes more often than every
/// 20 minutes, so nodes, and restarts of one node, must reuse one token). Values are sealed by the caller.
/// </summary>
public interface ISharedTokenStore
{
    /// <summary>The token stored under <paramref name="key"/>, or null.</summary>
    Task<SharedToken?> GetSharedTokenAsync(string key, CancellationToken cancellationToken);

    /// <summary>
    /// Stores <paramref name="replacement"/> only if the stored token is still <paramref name="expected"/> (null: none stored),
    /// compared by issue time, and returns the token stored afterwards: the replacement, or the one another node stored first.
    /// </summary>
    Task<SharedToken> SwapSharedTokenAsync(string key, SharedToken? expected, SharedToken replacement, CancellationToken cancellationToken);
}
