using System.Collections.Concurrent;
using Herald.Core.Ports;
using Herald.Core.Security;

namespace Herald.Server.Auth;

/// <summary>Who is calling the management API.</summary>
public sealed record Caller(string TenantId, bool IsAdmin, string KeyId);

/// <summary>
/// Resolves <c>Authorization: Bearer &lt;key&gt;</c> to a caller. Keys are stored as SHA-256 hashes and
/// compared in constant time; results are cached briefly so the store is not read on every request
/// (a revoked key stops working within <see cref="CacheTime"/>).
/// </summary>
public sealed class ApiKeyAuthenticator(IAccessStore store, TimeProvider time)
{
    /// <summary>How long a looked-up key is trusted without asking the store again.</summary>
    public static readonly TimeSpan CacheTime = TimeSpan.FromSeconds(30);

    private readonly ConcurrentDictionary<string, (Caller? Caller, DateTimeOffset Until)> _cache = new(StringComparer.Ordinal);

    /// <summary>Drops every cached lookup (after a key was revoked).</summary>
    public void Forget() => _cache.Clear();

    private const string HashItem = "herald.api-key-hash";

    /// <summary>
    /// The SHA-256 of the request's bearer key and its base64 form, or null when the header is missing or malformed.
    /// Computed once per request (kept in <see cref="HttpContext.Items"/>): the per-key rate limit and the
    /// authentication both use it.
    /// </summary>
    public static (byte[] Hash, string Base64)? KeyHashOf(HttpContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        if (context.Items.TryGetValue(HashItem, out var cached))
        {
            return ((byte[], string)?)cached;
        }

        var result = KeyHashOf(context.Request.Headers.Authorization.ToString());
        context.Items[HashItem] = result;
        return result;
    }

    /// <summary>The caller of a request (see <see cref="AuthenticateAsync(string?, CancellationToken)"/>).</summary>
    public ValueTask<Caller?> AuthenticateAsync(HttpContext context, CancellationToken cancellationToken)
        => AuthenticateAsync(KeyHashOf(context), cancellationToken);

    /// <summary>The caller for an Authorization header value, or null when it is missing, malformed, unknown or revoked.</summary>
    public ValueTask<Caller?> AuthenticateAsync(string? authorization, CancellationToken cancellationToken)
        => AuthenticateAsync(KeyHashOf(authorization), cancellationToken);

    private static (byte[] Hash, string Base64)? KeyHashOf(string? authorization)
    {
        if (authorization is null || !authorization.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase))
        {
            return null;
        }

        var key = authorization.AsSpan(7).Trim();
        if (key.Length is < 16 or > 256)
        {
            return null;
        }

        var hash = Secrets.Hash(key.ToString());
        return (hash, Convert.ToBase64String(hash));
    }

    private async ValueTask<Caller?> AuthenticateAsync((byte[] Hash, string Base64)? key, CancellationToken cancellationToken)
    {
        if (key is not { } k)
        {
            return null;
        }

        var (hash, cacheKey) = k;
        var now = time.GetUtcNow();
        if (_cache.TryGetValue(cacheKey, out var cached) && cached.Until > now)
        {
            return cached.Caller;
        }

        var record = await store.FindApiKeyAsync(hash, cancellationToken).ConfigureAwait(false);
        Caller? caller = record is not null && record.RevokedAt is null && Secrets.HashEquals(record.Hash, hash)
            ? new Caller(record.TenantId, record.IsAdmin, record.Id)
            : null;
        if (_cache.Count > 10_000)
        {
            _cache.Clear(); // bounded: a flood of random keys must not grow memory
        }

        _cache[cacheKey] = (caller, now + CacheTime);
        return caller;
    }
}

/// <summary>Per-request access to the authenticated caller.</summary>
public static class CallerContext
{
    private const string ItemKey = "herald.caller";

    public static void Set(HttpContext context, Caller caller) => context.Items[ItemKey] = caller;

    /// <summary>The caller set by the API-key filter (every /v1 endpoint has one).</summary>
    public static Caller Get(HttpContext context)
        => context.Items.TryGetValue(ItemKey, out var value) && value is Caller caller
            ? caller
            : throw new InvalidOperationException("No authenticated caller on this request.");
}
