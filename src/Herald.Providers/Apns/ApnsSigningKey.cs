using System.Buffers;
using System.Buffers.Text;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace Herald.Providers.Apns;

/// <summary>
/// A token-auth signing key: the P-256 private key of a <c>.p8</c> file with its Key ID and Team ID.
/// Mints provider tokens (ES256 JWTs); minting is serialised by <see cref="IApnsTokenCache"/>.
/// </summary>
public sealed class ApnsSigningKey : IDisposable
{
    private readonly ECDsa _key;
    private readonly Lock _signGate = new();

    private ApnsSigningKey(string teamId, string keyId, ECDsa key)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(teamId);
        ArgumentException.ThrowIfNullOrWhiteSpace(keyId);
        if (key.KeySize != 256)
        {
            key.Dispose();
            throw new ArgumentException($"The APNs signing key {keyId} must be a P-256 (ES256) key; it has {key.KeySize} bits.", nameof(key));
        }

        TeamId = teamId;
        KeyId = keyId;
        Id = teamId + "/" + keyId;
        _key = key;
        EncodedHeader = EncodeHeader(keyId);
    }

    /// <summary>The Team ID (<c>iss</c>).</summary>
    public string TeamId { get; }

    /// <summary>The Key ID (<c>kid</c>).</summary>
    public string KeyId { get; }

    /// <summary>"TeamId/KeyId": identifies the key in token caches (one token per key, shared by all its users).</summary>
    public string Id { get; }

    /// <summary>The base64url JOSE header, the same for every token of this key.</summary>
    internal string EncodedHeader { get; }

    /// <summary>Loads a key from PEM text (the content of a <c>.p8</c> file).</summary>
    public static ApnsSigningKey FromPem(string teamId, string keyId, string pem)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(pem);
        var key = ECDsa.Create();
        try
        {
            key.ImportFromPem(pem);
        }
        catch (Exception ex) when (ex is ArgumentException or CryptographicException)
        {
            key.Dispose();
            throw new ArgumentException($"The APNs signing key {keyId} is not a valid PEM EC private key: {ex.Message}", nameof(pem), ex);
        }

        return new ApnsSigningKey(teamId, keyId, key);
    }

    /// <summary>Loads a key from a <c>.p8</c> file.</summary>
    public static ApnsSigningKey FromFile(string teamId, string keyId, string path)
        => FromPem(teamId, keyId, File.ReadAllText(path));

    /// <summary>Takes ownership of an existing P-256 key.</summary>
    public static ApnsSigningKey FromKey(string teamId, string keyId, ECDsa key)
    {
        ArgumentNullException.ThrowIfNull(key);
        return new ApnsSigningKey(teamId, keyId, key);
    }

    /// <summary>
    /// Mints a provider token: header <c>{"alg":"ES256","kid":KeyId}</c>, claims <c>{"iss":TeamId,"iat":unix seconds}</c>,
    /// signature raw r‖s (IEEE P1363, 64 bytes); all parts base64url.
    /// </summary>
    public ApnsProviderToken Mint(DateTimeOffset now)
    {
        var iat = now.ToUnixTimeSeconds();
        var claims = new ArrayBufferWriter<byte>(128);
        using (var writer = new Utf8JsonWriter(claims))
        {
            writer.WriteStartObject();
            writer.WriteString("iss"u8, TeamId);
            writer.WriteNumber("iat"u8, iat);
            writer.WriteEndObject();
        }

        var signingInput = EncodedHeader + "." + Base64Url.EncodeToString(claims.WrittenSpan);
        var input = Encoding.ASCII.GetBytes(signingInput);
        Span<byte> signature = stackalloc byte[64];
        int written;
        lock (_signGate)
        {
            // ECDsa instances are not documented as thread-safe.
            written = _key.SignData(input, signature, HashAlgorithmName.SHA256, DSASignatureFormat.IeeeP1363FixedFieldConcatenation);
        }

        var jwt = signingInput + "." + Base64Url.EncodeToString(signature[..written]);
        return new ApnsProviderToken(jwt, DateTimeOffset.FromUnixTimeSeconds(iat), Id);
    }

    /// <inheritdoc />
    public void Dispose() => _key.Dispose();

    private static string EncodeHeader(string keyId)
    {
        var header = new ArrayBufferWriter<byte>(128);
        using (var writer = new Utf8JsonWriter(header))
        {
            writer.WriteStartObject();
            writer.WriteString("alg"u8, "ES256"u8);
            writer.WriteString("kid"u8, keyId);
            writer.WriteEndObject();
        }

        return Base64Url.EncodeToString(header.WrittenSpan);
    }
}

/// <summary>A minted provider token (JWT) with its ready-made <c>authorization</c> header value.</summary>
public sealed class ApnsProviderToken
{
    /// <summary>Creates a token record.</summary>
    public ApnsProviderToken(string jwt, DateTimeOffset issuedAt, string keyId)
    {
        ArgumentException.ThrowIfNullOrEmpty(jwt);
        Jwt = jwt;
        IssuedAt = issuedAt;
        SigningKeyId = keyId;
        Authorization = "bearer " + jwt;
    }

    /// <summary>The compact JWT.</summary>
    public string Jwt { get; }

    /// <summary>"bearer " + JWT, cached so every request reuses the same string.</summary>
    public string Authorization { get; }

    /// <summary>The <c>iat</c> claim.</summary>
    public DateTimeOffset IssuedAt { get; }

    /// <summary>The <see cref="ApnsSigningKey.Id"/> of the key that signed it.</summary>
    public string SigningKeyId { get; }
}
