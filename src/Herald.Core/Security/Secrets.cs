using System.Buffers.Text;
using System.Security.Cryptography;
using System.Text;

namespace Herald.Core.Security;

/// <summary>Random keys (API keys, callback keys) and their stored hashes.</summary>
public static class Secrets
{
    /// <summary>A new random key of <paramref name="bytes"/> bytes (at least 16 = 128 bits), base64url, with a prefix.</summary>
    public static string NewKey(string prefix, int bytes = 24)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(bytes, 16);
        Span<byte> random = stackalloc byte[bytes];
        RandomNumberGenerator.Fill(random);
        return prefix + Base64Url.EncodeToString(random);
    }

    /// <summary>The SHA-256 of the key's UTF-8 bytes: what is stored and looked up.</summary>
    public static byte[] Hash(string key)
    {
        ArgumentNullException.ThrowIfNull(key);
        var max = Encoding.UTF8.GetMaxByteCount(key.Length);
        byte[]? rented = null;
        Span<byte> buffer = max <= 256 ? stackalloc byte[max] : (rented = new byte[max]);
        var n = Encoding.UTF8.GetBytes(key, buffer);
        return SHA256.HashData(buffer[..n]);
    }

    /// <summary>Constant-time comparison of two hashes.</summary>
    public static bool HashEquals(ReadOnlySpan<byte> a, ReadOnlySpan<byte> b) => CryptographicOperations.FixedTimeEquals(a, b);
}

/// <summary>Redaction for logs and APIs: device tokens, addresses and subjects never appear in clear.</summary>
public static class Redact
{
    /// <summary>A short, stable fingerprint of a token: "tok:" and 8 hex digits of its SHA-256.</summary>
    public static string Token(string? token)
        => TokenFingerprint.Of(token) is { } fingerprint ? TokenFingerprint.Format(fingerprint) : TokenFingerprint.Prefix + "-";
}

/// <summary>A device token that prints as its fingerprint: pass it to log methods so the hash is only computed when the line is written.</summary>
public readonly struct RedactedToken(string? token)
{
    /// <inheritdoc />
    public override string ToString() => Redact.Token(token);
}
