using System.Buffers.Text;
using Herald.Core.Registrations;
using Herald.Core.Security;

namespace Herald.Server.Endpoints;

/// <summary>The registration's <c>encryptionKey</c> (style preview-encrypted, docs/ENCRYPTED-PREVIEWS.md): parsing and the style rule.</summary>
internal static class EncryptionKeys
{
    /// <summary>
    /// Parses a base64url (padding optional) uncompressed P-256 point and checks it is on the curve. Null stays null
    /// (no key given). On failure <paramref name="error"/> is a 400 that says what is wrong.
    /// </summary>
    public static bool TryParse(string? value, out byte[]? key, out IResult? error)
    {
        key = null;
        error = null;
        if (value is null)
        {
            return true;
        }

        var text = value.Trim().TrimEnd('=');
        var bytes = new byte[Base64Url.GetMaxDecodedLength(text.Length)];
        // Base64Url.TryDecodeFromChars throws (rather than returning false) on characters outside the alphabet: check them first.
        if (text.Length == 0 || text.Length > 200 || !Base64Url.IsValid(text) || !Base64Url.TryDecodeFromChars(text, bytes, out var written))
        {
            error = Problems.BadRequest("'encryptionKey' must be base64url: the device's P-256 public key as an uncompressed point (65 bytes, 0x04 || X || Y).");
            return false;
        }

        bytes = bytes[..written];
        if (!Hpke.IsValidPublicKey(bytes, out var why))
        {
            error = Problems.BadRequest($"'encryptionKey' is not a valid P-256 public key: {why}.");
            return false;
        }

        key = bytes;
        return true;
    }

    /// <summary>A 400 when style preview-encrypted has no key to seal for; null when the combination is fine.</summary>
    public static IResult? StyleError(NotificationStyle style, byte[]? key)
        => style == NotificationStyle.PreviewEncrypted && key is null
            ? Problems.BadRequest("Style 'preview-encrypted' needs 'encryptionKey': the device's P-256 public key (base64url, uncompressed point), which only the device can decrypt with.")
            : null;

    /// <summary>The key as the API shows it (base64url without padding), or null.</summary>
    public static string? Show(byte[]? key) => key is null ? null : Base64Url.EncodeToString(key);
}
