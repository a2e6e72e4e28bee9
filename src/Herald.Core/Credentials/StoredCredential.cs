using Herald.Core.Registrations;

namespace Herald.Core.Credentials;

/// <summary>The kinds of provider credential a tenant can upload.</summary>
public static class CredentialKinds
{
    /// <summary>APNs token auth: a .p8 signing key with Team ID and Key ID.</summary>
    public const string ApnsToken = "token";

    /// <summary>APNs certificate auth: a .p12 certificate with its key.</summary>
    public const string ApnsCertificate = "certificate";

    /// <summary>FCM: a Google service account (JSON).</summary>
    public const string FcmServiceAccount = "serviceAccount";

    /// <summary>WNS: Package SID and client secret.</summary>
    public const string WnsClientSecret = "clientSecret";
}

/// <summary>
/// A tenant's credential for one platform as stored: the secret sealed (purpose <c>credential:&lt;platform&gt;</c>),
/// the metadata in clear (never secret material).
/// </summary>
/// <param name="TenantId">The owning tenant.</param>
/// <param name="Platform">The push platform.</param>
/// <param name="Kind">One of <see cref="CredentialKinds"/>.</param>
/// <param name="SealedSecret">The secret JSON, sealed with SecretBox.</param>
/// <param name="PublicId">A public identifier: Team ID/Key ID, the FCM project, the WNS Package SID, or the certificate's subject.</param>
/// <param name="Topics">Topics (bundle ids) the credential serves; empty when not applicable.</param>
/// <param name="Thumbprint">SHA-256 thumbprint of a certificate, else null.</param>
/// <param name="ExpiresAt">When a certificate expires, else null.</param>
/// <param name="UpdatedAt">When it was last put.</param>
/// <param name="Version">Increases on every put (across all credentials), so caches see a replacement.</param>
public sealed record StoredCredential(
    string TenantId,
    Platform Platform,
    string Kind,
    string SealedSecret,
    string? PublicId,
    IReadOnlyList<string> Topics,
    string? Thumbprint,
    DateTimeOffset? ExpiresAt,
    DateTimeOffset UpdatedAt,
    long Version = 0)
{
    /// <summary>The SecretBox purpose a platform's secret is sealed for.</summary>
    public static string Purpose(Platform platform) => "credential:" + platform.ToString().ToLowerInvariant();
}

/// <summary>A tenant's credential opened for use: the secret in memory, never stored or logged.</summary>
/// <param name="Stored">The stored record (metadata and version).</param>
/// <param name="Secret">The opened secret JSON.</param>
public sealed record TenantCredential(StoredCredential Stored, string Secret)
{
    /// <summary>The owning tenant.</summary>
    public string TenantId => Stored.TenantId;

    /// <summary>The platform.</summary>
    public Platform Platform => Stored.Platform;

    /// <summary>The stored version (a replacement has a higher one).</summary>
    public long Version => Stored.Version;

    /// <inheritdoc />
    public override string ToString() => $"{Stored.Kind} credential of {TenantId} for {Platform} (v{Version})"; // never the secret
}

/// <summary>A tenant's feedback webhook.</summary>
/// <param name="TenantId">The tenant.</param>
/// <param name="Url">Where events are POSTed.</param>
/// <param name="SealedSecret">The HMAC key, sealed (purpose <c>webhook</c>).</param>
/// <param name="UpdatedAt">When it was set.</param>
public sealed record WebhookRecord(string TenantId, string Url, string SealedSecret, DateTimeOffset UpdatedAt);

/// <summary>An event for a tenant's webhook: <paramref name="Body"/> is the JSON POSTed.</summary>
public sealed record WebhookEvent(string TenantId, string Type, string Body, DateTimeOffset CreatedAt);

/// <summary>An outbox event with its delivery state.</summary>
public sealed record WebhookDelivery(long Id, string TenantId, string Type, string Body, DateTimeOffset CreatedAt, int Attempts, DateTimeOffset DueAt, int State, int LastStatus, string? LastError);

/// <summary>What one delivery attempt came to.</summary>
/// <param name="Delivered">The receiver answered 2xx.</param>
/// <param name="RetryAt">When to try again (null with <paramref name="Delivered"/> or when giving up).</param>
/// <param name="Status">The HTTP status (0 for a transport fault).</param>
/// <param name="Error">A short description of the failure.</param>
public sealed record WebhookAttemptResult(bool Delivered, DateTimeOffset? RetryAt, int Status, string? Error);

/// <summary>Outbox states.</summary>
public static class WebhookStates
{
    /// <summary>Waiting for (another) attempt.</summary>
    public const int Pending = 0;

    /// <summary>Delivered.</summary>
    public const int Delivered = 1;

    /// <summary>Attempts exhausted.</summary>
    public const int Failed = 2;
}
