using System.Security.Cryptography;
using System.Text.Json;
using Herald.Core.Credentials;

namespace Herald.Providers.Fcm;

/// <summary>
/// A Google service-account key (the JSON file from the Google Cloud console): who Herald is to Google
/// (<c>client_email</c>), where it gets access tokens (<c>token_uri</c>) and the RSA key that signs the
/// token requests. The private key is kept for the token cache only and never printed.
/// </summary>
public sealed class FcmServiceAccount
{
    /// <summary>Google's token endpoint, used when a key file has no <c>token_uri</c>.</summary>
    public const string DefaultTokenUri = "https://oauth2.googleapis.com/token";

    private FcmServiceAccount(string clientEmail, string? projectId, string? privateKeyId, string privateKeyPem, string tokenUri, string owner, TimeProvider? time)
    {
        Owner = owner;
        Circuit = new CredentialCircuit(time ?? TimeProvider.System);
        ClientEmail = clientEmail;
        ProjectId = projectId;
        PrivateKeyId = privateKeyId;
        PrivateKeyPem = privateKeyPem;
        TokenUri = tokenUri;
        Id = clientEmail + "/" + (privateKeyId ?? "-");
        CacheKey = Id + "|" + tokenUri + "|" + Convert.ToHexStringLower(SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(privateKeyPem)));
    }

    /// <summary>The account (<c>client_email</c>): the <c>iss</c> of its token requests.</summary>
    public string ClientEmail { get; }

    /// <summary>The project the account belongs to (<c>project_id</c>): the FCM project when a notification names none.</summary>
    public string? ProjectId { get; }

    /// <summary>The key's id (<c>private_key_id</c>), sent as <c>kid</c>.</summary>
    public string? PrivateKeyId { get; }

    /// <summary>Where access tokens are requested (<c>token_uri</c>), honoured as given.</summary>
    public string TokenUri { get; }

    /// <summary>"client_email/private_key_id": names the key in logs and health (never secret material).</summary>
    public string Id { get; }

    /// <summary>The name of the credential in health: "service-account:" + <see cref="Id"/>.</summary>
    public string Name => "service-account:" + Id;

    /// <summary>The tenant the account belongs to ("default" for the one from configuration).</summary>
    public string Owner { get; }

    /// <summary>
    /// Opened by a credential fault (the token endpoint refuses the account, FCM answers 401/403 about it): this
    /// account's sends then wait in retry while other accounts keep sending. A replaced credential is a new
    /// object with a closed circuit.
    /// </summary>
    public CredentialCircuit Circuit { get; }

    /// <summary>Identifies this exact key (account, key id, token endpoint and a hash of the key) in token caches.</summary>
    internal string CacheKey { get; }

    /// <summary>The PKCS#8 PEM private key.</summary>
    internal string PrivateKeyPem { get; }

    /// <summary>Parses a service-account key JSON. Throws <see cref="FormatException"/> with a clear message when it is not one.</summary>
    public static FcmServiceAccount Parse(string json) => Parse(json, "default", null);

    /// <summary>
    /// Parses a service-account key JSON of tenant <paramref name="owner"/>, its circuit on <paramref name="time"/>.
    /// Throws <see cref="FormatException"/> with a clear message when it is not one.
    /// </summary>
    public static FcmServiceAccount Parse(string json, string owner, TimeProvider? time)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(owner);
        ArgumentException.ThrowIfNullOrWhiteSpace(json);
        string? type = null, clientEmail = null, projectId = null, privateKeyId = null, privateKey = null, tokenUri = null;
        try
        {
            using var document = JsonDocument.Parse(json);
            if (document.RootElement.ValueKind != JsonValueKind.Object)
            {
                throw new FormatException("The service-account key must be a JSON object.");
            }

            foreach (var property in document.RootElement.EnumerateObject())
            {
                if (property.Value.ValueKind != JsonValueKind.String)
                {
                    continue;
                }

                switch (property.Name)
                {
                    case "type": type = property.Value.GetString(); break;
                    case "client_email": clientEmail = property.Value.GetString(); break;
                    case "project_id": projectId = property.Value.GetString(); break;
                    case "private_key_id": privateKeyId = property.Value.GetString(); break;
                    case "private_key": privateKey = property.Value.GetString(); break;
                    case "token_uri": tokenUri = property.Value.GetString(); break;
                }
            }
        }
        catch (JsonException ex)
        {
            throw new FormatException($"The service-account key is not valid JSON: {ex.Message}", ex);
        }

        if (type != "service_account")
        {
            throw new FormatException($"The key's \"type\" must be \"service_account\"; it is {(type is null ? "missing" : "\"" + type + "\"")}. Download a service-account key (JSON) from the Google Cloud console.");
        }

        if (string.IsNullOrWhiteSpace(clientEmail))
        {
            throw new FormatException("The service-account key has no \"client_email\".");
        }

        if (string.IsNullOrWhiteSpace(privateKey) || !privateKey.Contains("-----BEGIN", StringComparison.Ordinal))
        {
            throw new FormatException($"The service-account key of {clientEmail} has no PEM \"private_key\".");
        }

        try
        {
            using var rsa = RSA.Create();
            rsa.ImportFromPem(privateKey);
        }
        catch (Exception ex) when (ex is ArgumentException or CryptographicException)
        {
            throw new FormatException($"The \"private_key\" of {clientEmail} is not a PEM RSA private key: {ex.Message}", ex);
        }

        tokenUri = string.IsNullOrWhiteSpace(tokenUri) ? DefaultTokenUri : tokenUri;
        if (!Uri.TryCreate(tokenUri, UriKind.Absolute, out var uri) || (uri.Scheme != Uri.UriSchemeHttps && uri.Scheme != Uri.UriSchemeHttp))
        {
            throw new FormatException($"The \"token_uri\" of {clientEmail} must be an absolute https:// URL; it is '{tokenUri}'.");
        }

        return new FcmServiceAccount(
            clientEmail,
            string.IsNullOrWhiteSpace(projectId) ? null : projectId,
            string.IsNullOrWhiteSpace(privateKeyId) ? null : privateKeyId,
            privateKey,
            tokenUri,
            owner,
            time);
    }

    /// <summary>Reads and parses a service-account key file.</summary>
    public static FcmServiceAccount FromFile(string path) => FromFile(path, "default", null);

    /// <summary>Reads and parses a service-account key file of tenant <paramref name="owner"/>.</summary>
    public static FcmServiceAccount FromFile(string path, string owner, TimeProvider? time)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        return Parse(File.ReadAllText(path), owner, time);
    }

    /// <inheritdoc />
    public override string ToString() => "service account " + Id;
}
