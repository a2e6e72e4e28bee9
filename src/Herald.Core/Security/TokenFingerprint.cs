using System.Buffers.Binary;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;

namespace Herald.Core.Security;

/// <summary>
/// The searchable fingerprint of a device token: the first 32 bits of the SHA-256 of its UTF-8 bytes, shown as
/// <c>tok:</c> and 8 lowercase hex digits, exactly as <see cref="Redact.Token"/> prints tokens in logs, webhooks
/// and the API. Stores keep it as a number in an indexed column, so an operator can paste a fingerprint from a log
/// line and find the registration. It is not a secret and not unique (32 bits): a search may list several.
/// </summary>
public static class TokenFingerprint
{
    /// <summary>The prefix of the printed form.</summary>
    public const string Prefix = "tok:";

    /// <summary>The fingerprint of <paramref name="token"/> as a number (the stored form); null for an empty token.</summary>
    public static uint? Of(string? token)
    {
        if (string.IsNullOrEmpty(token))
        {
            return null;
        }

        Span<byte> hash = stackalloc byte[32];
        var max = Encoding.UTF8.GetMaxByteCount(token.Length);
        Span<byte> buffer = max <= 1024 ? stackalloc byte[max] : new byte[max];
        var n = Encoding.UTF8.GetBytes(token, buffer);
        SHA256.HashData(buffer[..n], hash);
        return BinaryPrimitives.ReadUInt32BigEndian(hash);
    }

    /// <summary>The printed form of a stored fingerprint: <c>tok:</c> and 8 hex digits.</summary>
    public static string Format(uint fingerprint) => Prefix + fingerprint.ToString("x8", CultureInfo.InvariantCulture);

    /// <summary>Parses <c>tok:1a2b3c4d</c> or <c>1a2b3c4d</c> (any case, surrounding spaces ignored).</summary>
    public static bool TryParse(string? text, out uint fingerprint)
    {
        fingerprint = 0;
        var span = text.AsSpan().Trim();
        if (span.StartsWith(Prefix, StringComparison.OrdinalIgnoreCase))
        {
            span = span[Prefix.Length..];
        }

        return span.Length == 8 && uint.TryParse(span, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out fingerprint);
    }
}
