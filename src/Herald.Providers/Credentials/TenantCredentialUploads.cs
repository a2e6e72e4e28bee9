using System.Buffers;
using System.Text.Json;
using Herald.Core.Credentials;
using Herald.Core.Registrations;
using Herald.Providers.Apns;
using Herald.Providers.Wns;

namespace Herald.Providers.Credentials;

/// <summary>A credential upload that cannot be used; <see cref="Unprocessable"/> tells 422 (well-formed but unusable) from 400.</summary>
public sealed class CredentialUploadException(string message, bool unprocessable) : Exception(message)
{
    /// <summary>True when the input is well-formed but unusable (a key that does not parse, an expired certificate): 422.</summary>
    public bool Unprocessable { get; } = unprocessable;
}

/// <summary>A validated upload: the secret JSON to seal and the metadata to keep in clear.</summary>
/// <param name="Kind">One of <see cref="CredentialKinds"/>.</param>
/// <param name="SecretJson">The secret material as JSON (sealed before it is stored).</param>
/// <param name="PublicId">Team ID/Key ID, FCM project, WNS Package SID, or certificate subject.</param>
/// <param name="Topics">Topics served.</param>
/// <param name="Thumbprint">Certificate thumbprint.</param>
/// <param name="ExpiresAt">Certificate expiry.</param>
public sealed record ValidatedCredential(string Kind, string SecretJson, string? PublicId, IReadOnlyList<string> Topics, string? Thumbprint, DateTimeOffset? ExpiresAt);

/// <summary>
/// Validates the credential bodies of <c>PUT /v1/tenants/{id}/credentials/{platform}</c> (CONTRACT §3) by
/// loading them as the providers will, and turns stored credentials back into provider credentials.
/// </summary>
public static class TenantCredentialUploads
{
    /// <summary>Validates an APNs token upload: Team ID, Key ID, a P-256 .p8 key, and at least one topic.</summary>
    public static ValidatedCredential ApnsToken(string? teamId, string? keyId, string? privateKeyPem, IReadOnlyList<string>? topics)
    {
        if (string.IsNullOrWhiteSpace(teamId) || !teamId.All(char.IsAsciiLetterOrDigit) || teamId.Length > 32)
        {
            throw new CredentialUploadException("'teamId' is required: the Team ID (letters and digits).", false);
        }

        if (string.IsNullOrWhiteSpace(keyId) || !keyId.All(char.IsAsciiLetterOrDigit) || keyId.Length > 32)
        {
            throw new CredentialUploadException("'keyId' is required: the Key ID of the .p8 key (letters and digits).", false);
        }

        if (string.IsNullOrWhiteSpace(privateKeyPem))
        {
            throw new CredentialUploadException("'privateKeyPem' is required: the content of the .p8 file.", false);
        }

        var cleanTopics = CleanTopics(topics);
        if (cleanTopics.Count == 0)
        {
            throw new CredentialUploadException("'topics' must list at least one topic (bundle id) this key sends for.", false);
        }

        try
        {
            ApnsSigningKey.FromPem(teamId, keyId, privateKeyPem).Dispose();
        }
        catch (ArgumentException ex)
        {
            throw new CredentialUploadException(ex.Message, true);
        }

        var secret = Json(w =>
        {
            w.WriteString("teamId", teamId);
            w.WriteString("keyId", keyId);
            w.WriteString("privateKeyPem", privateKeyPem);
        });
        return new ValidatedCredential(CredentialKinds.ApnsToken, secret, teamId + "/" + keyId, cleanTopics, null, null);
    }

    /// <summary>Validates an APNs certificate upload: a PKCS#12 with its key, not expired, naming at least one topic.</summary>
    public static ValidatedCredential ApnsCertificate(string? pfxBase64, string? password, DateTimeOffset now)
    {
        if (string.IsNullOrWhiteSpace(pfxBase64))
        {
            throw new CredentialUploadException("'certificatePfxBase64' is required: the .p12 file, base64-encoded.", false);
        }

        byte[] pfx;
        try
        {
            pfx = Convert.FromBase64String(pfxBase64);
        }
        catch (FormatException)
        {
            throw new CredentialUploadException("'certificatePfxBase64' is not valid base64.", false);
        }

        Apns.ApnsCertificate certificate;
        try
        {
            certificate = Apns.ApnsCertificate.FromPkcs12(pfx, password);
        }
        catch (ArgumentException ex)
        {
            throw new CredentialUploadException(ex.Message, true);
        }

        using (certificate)
        {
            if (now > certificate.NotAfter)
            {
                throw new CredentialUploadException($"The certificate expired at {certificate.NotAfter:u}; upload a renewed one.", true);
            }

            if (now < certificate.NotBefore)
            {
                throw new CredentialUploadException($"The certificate is not valid before {certificate.NotBefore:u}.", true);
            }

            if (certificate.Topics.Count == 0)
            {
                throw new CredentialUploadException("The certificate names no topic (no UID and no topics extension 1.2.840.113635.100.6.3.6): it is not an APNs provider certificate.", true);
            }

            var secret = Json(w =>
            {
                w.WriteString("pfxBase64", pfxBase64);
                if (!string.IsNullOrEmpty(password))
                {
                    w.WriteString("password", password);
                }
            });
            return new ValidatedCredential(CredentialKinds.ApnsCertificate, secret, certificate.Certificate.Subject, certificate.Topics, certificate.Thumbprint, certificate.NotAfter);
        }
    }

    /// <summary>Validates an FCM service account (JSON with project, client email and RSA private key).</summary>
    public static ValidatedCredential FcmServiceAccount(string? serviceAccountJson)
    {
        if (string.IsNullOrWhiteSpace(serviceAccountJson))
        {
            throw new CredentialUploadException("'serviceAccountJson' is required: the service account key file's JSON.", false);
        }

        Fcm.FcmServiceAccount account;
        try
        {
            account = Fcm.FcmServiceAccount.Parse(serviceAccountJson);
        }
        catch (Exception ex) when (ex is ArgumentException or FormatException or JsonException or InvalidOperationException or System.Security.Cryptography.CryptographicException)
        {
            throw new CredentialUploadException("The service account cannot be used: " + ex.Message, true);
        }

        return new ValidatedCredential(CredentialKinds.FcmServiceAccount, serviceAccountJson, account.ProjectId ?? account.ClientEmail, [], null, null);
    }

    /// <summary>Validates a WNS credential: Package SID and client secret.</summary>
    public static ValidatedCredential WnsClientSecret(string? packageSid, string? clientSecret)
    {
        if (string.IsNullOrWhiteSpace(packageSid) || packageSid.Length > 256 || packageSid.Any(char.IsControl))
        {
            throw new CredentialUploadException("'packageSid' is required: the app's Package SID (ms-app://s-1-15-2-…).", false);
        }

        if (string.IsNullOrWhiteSpace(clientSecret) || clientSecret.Length > 1024)
        {
            throw new CredentialUploadException("'clientSecret' is required: the app's client secret.", false);
        }

        if (!packageSid.StartsWith("ms-app://", StringComparison.OrdinalIgnoreCase))
        {
            throw new CredentialUploadException("'packageSid' must be the app's Package SID, starting with ms-app://.", true);
        }

        var secret = Json(w =>
        {
            w.WriteString("packageSid", packageSid);
            w.WriteString("clientSecret", clientSecret);
        });
        return new ValidatedCredential(CredentialKinds.WnsClientSecret, secret, packageSid, [], null, null);
    }

    /// <summary>Builds the APNs credential from a stored tenant credential.</summary>
    public static ApnsCredential OpenApns(TenantCredential credential, TimeProvider time)
    {
        ArgumentNullException.ThrowIfNull(credential);
        using var doc = JsonDocument.Parse(credential.Secret);
        var root = doc.RootElement;
        if (credential.Stored.Kind == CredentialKinds.ApnsCertificate)
        {
            var pfx = Convert.FromBase64String(root.GetProperty("pfxBase64").GetString()!);
            var password = root.TryGetProperty("password", out var p) ? p.GetString() : null;
            return new ApnsCertificateCredential(Apns.ApnsCertificate.FromPkcs12(pfx, password), credential.TenantId, time);
        }

        var key = ApnsSigningKey.FromPem(root.GetProperty("teamId").GetString()!, root.GetProperty("keyId").GetString()!, root.GetProperty("privateKeyPem").GetString()!);
        return new ApnsTokenCredential(key, credential.TenantId, credential.Stored.Topics, time);
    }

    /// <summary>Builds the FCM account from a stored tenant credential.</summary>
    public static Fcm.FcmServiceAccount OpenFcm(TenantCredential credential, TimeProvider? time = null)
    {
        ArgumentNullException.ThrowIfNull(credential);
        return Fcm.FcmServiceAccount.Parse(credential.Secret, credential.TenantId, time);
    }

    /// <summary>Builds the WNS credential from a stored tenant credential.</summary>
    public static WnsCredential OpenWns(TenantCredential credential, TimeProvider? time = null)
    {
        ArgumentNullException.ThrowIfNull(credential);
        using var doc = JsonDocument.Parse(credential.Secret);
        return new WnsCredential(doc.RootElement.GetProperty("packageSid").GetString()!, doc.RootElement.GetProperty("clientSecret").GetString()!, credential.TenantId, time);
    }

    /// <summary>The platform name in URLs and JSON.</summary>
    public static string Name(Platform platform) => platform.ToString().ToLowerInvariant();

    private static List<string> CleanTopics(IReadOnlyList<string>? topics)
    {
        var list = new List<string>();
        foreach (var t in topics ?? [])
        {
            var topic = t?.Trim();
            if (!string.IsNullOrEmpty(topic) && topic.Length <= 255 && !topic.Any(char.IsWhiteSpace) && !list.Contains(topic, StringComparer.Ordinal))
            {
                list.Add(topic);
            }
            else if (!string.IsNullOrEmpty(topic))
            {
                throw new CredentialUploadException($"Topic '{topic}' is not a bundle id.", false);
            }
        }

        return list;
    }

    private static string Json(Action<Utf8JsonWriter> write)
    {
        var buffer = new ArrayBufferWriter<byte>(512);
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            write(writer);
            writer.WriteEndObject();
        }

        return System.Text.Encoding.UTF8.GetString(buffer.WrittenSpan);
    }
}
