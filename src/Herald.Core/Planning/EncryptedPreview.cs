using System.Buffers;
using System.Buffers.Text;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using Herald.Core.Notifications;
using Herald.Core.Ports;
using Herald.Core.Security;

namespace Herald.Core.Planning;

/// <summary>
/// Style preview-encrypted: the preview (sender, address, subject, folder, unread count, message reference) as a small
/// JSON object sealed with HPKE (<see cref="Hpke"/>, RFC 9180 base mode, P-256/HKDF-SHA256/AES-128-GCM) for the device's
/// public key, with the registration id as <c>info</c> and an empty <c>aad</c>. Done at send time, in memory: neither the
/// plaintext nor the ciphertext is stored or logged. The subject is shortened (on a grapheme boundary, with "…") before
/// sealing so every push fits the providers' 4 KB limits. Wire format: docs/ENCRYPTED-PREVIEWS.md.
/// </summary>
public static class EncryptedPreview
{
    /// <summary>
    /// The largest plaintext sealed: 2 KB becomes about 2.8 KB of base64url ciphertext, which leaves room for the rest of
    /// an APNs payload (4,096 bytes) or an FCM request (4,096 bytes including the token).
    /// </summary>
    public const int MaxPlaintextBytes = 2048;

    /// <summary>The plaintext format version (<c>v</c>).</summary>
    public const int PlaintextVersion = 1;

    /// <summary>The folder of mail pushes: Herald alerts on new inbox mail only.</summary>
    public const string InboxFolder = "inbox";

    private const int MaxNameChars = 128;
    private const int MaxRefChars = 512;
    private const string Ellipsis = "…";

    private static readonly JsonWriterOptions WriterOptions = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>
    /// The content with <see cref="NotificationContent.Sealed"/> set: the preview sealed for <see cref="NotificationContent.EncryptTo"/>
    /// with <paramref name="registrationId"/> as <c>info</c>. Unchanged (the generic alert) when there is no usable key.
    /// </summary>
    public static NotificationContent Seal(NotificationContent content, string registrationId, MailPreview preview)
    {
        ArgumentNullException.ThrowIfNull(content);
        ArgumentNullException.ThrowIfNull(registrationId);
        ArgumentNullException.ThrowIfNull(preview);
        if (content.EncryptTo is not { Length: Hpke.PublicKeyLength } key)
        {
            return content;
        }

        var plaintext = Plaintext(preview, content.Badge, out _);
        try
        {
            var ciphertext = Hpke.Seal(key, Encoding.UTF8.GetBytes(registrationId), [], plaintext, out var enc);
            return content with { Sealed = new SealedPreview(Base64Url.EncodeToString(enc), Base64Url.EncodeToString(ciphertext)) };
        }
        catch (CryptographicException)
        {
            return content; // a key that no longer imports (validated at registration): the neutral alert, never a clear preview
        }
        finally
        {
            CryptographicOperations.ZeroMemory(plaintext);
        }
    }

    /// <summary>
    /// The plaintext JSON (UTF-8, at most <see cref="MaxPlaintextBytes"/>):
    /// <c>{"v":1,"from","fromAddress","subject","folder":"inbox","unread","ref","truncated"}</c>, absent fields left out.
    /// </summary>
    public static byte[] Plaintext(MailPreview preview, int? unread, out bool truncated)
    {
        ArgumentNullException.ThrowIfNull(preview);
        var from = Clean(preview.From, MaxNameChars, out var cutFrom);
        var address = Clean(preview.FromAddress, MaxNameChars, out var cutAddress);
        var reference = Clean(preview.MessageRef, MaxRefChars, out var cutRef);
        var subject = Clean(preview.Subject, int.MaxValue, out _);
        truncated = cutFrom || cutAddress;
        if (cutRef)
        {
            reference = null; // half a reference opens nothing
        }

        var buffer = new ArrayBufferWriter<byte>(512);
        if (TryWrite(buffer, from, address, subject, reference, unread, truncated))
        {
            return Take(buffer);
        }

        // Too long: keep the longest subject prefix (whole graphemes, plus "…") that fits; without a reference if need be.
        truncated = true;
        var full = subject ?? string.Empty;
        var boundaries = GraphemeBoundaries(full);
        for (var attempt = 0; attempt < 2; attempt++)
        {
            int low = 0, high = boundaries.Count - 1, best = -1;
            while (low <= high)
            {
                var mid = (low + high) / 2;
                if (TryWrite(buffer, from, address, full[..boundaries[mid]] + Ellipsis, reference, unread, true))
                {
                    best = mid;
                    low = mid + 1;
                }
                else
                {
                    high = mid - 1;
                }
            }

            if (best >= 0 && TryWrite(buffer, from, address, full[..boundaries[best]] + Ellipsis, reference, unread, true))
            {
                return Take(buffer);
            }

            reference = null;
        }

        // Only reachable with pathological names: the sender fields alone are over the limit.
        TryWrite(buffer, null, null, Ellipsis, null, unread, true);
        return Take(buffer);
    }

    private static byte[] Take(ArrayBufferWriter<byte> buffer)
    {
        var plaintext = buffer.WrittenSpan.ToArray();
        buffer.Clear();
        return plaintext;
    }

    private static bool TryWrite(ArrayBufferWriter<byte> buffer, string? from, string? address, string? subject, string? reference, int? unread, bool truncated)
    {
        buffer.Clear(); // zeroes the previous attempt
        using (var writer = new Utf8JsonWriter(buffer, WriterOptions))
        {
            writer.WriteStartObject();
            writer.WriteNumber("v"u8, PlaintextVersion);
            WriteIfPresent(writer, "from"u8, from);
            WriteIfPresent(writer, "fromAddress"u8, address);
            WriteIfPresent(writer, "subject"u8, subject);
            writer.WriteString("folder"u8, InboxFolder);
            if (unread is { } count)
            {
                writer.WriteNumber("unread"u8, count);
            }

            WriteIfPresent(writer, "ref"u8, reference);
            if (truncated)
            {
                writer.WriteBoolean("truncated"u8, true);
            }

            writer.WriteEndObject();
        }

        return buffer.WrittenCount <= MaxPlaintextBytes;
    }

    private static void WriteIfPresent(Utf8JsonWriter writer, ReadOnlySpan<byte> name, string? value)
    {
        if (!string.IsNullOrEmpty(value))
        {
            writer.WriteString(name, value);
        }
    }

    /// <summary>Lone surrogates replaced by U+FFFD, at most <paramref name="maxChars"/> UTF-16 units cut on a grapheme boundary.</summary>
    private static string? Clean(string? value, int maxChars, out bool cut)
    {
        cut = false;
        if (string.IsNullOrEmpty(value))
        {
            return null;
        }

        var builder = new StringBuilder(Math.Min(value.Length, maxChars));
        var index = 0;
        while (index < value.Length)
        {
            var length = StringInfo.GetNextTextElementLength(value, index);
            if (builder.Length + length > maxChars)
            {
                cut = true;
                break;
            }

            for (var i = index; i < index + length; i++)
            {
                var c = value[i];
                if (char.IsHighSurrogate(c) && i + 1 < index + length && char.IsLowSurrogate(value[i + 1]))
                {
                    builder.Append(c).Append(value[++i]);
                }
                else
                {
                    builder.Append(char.IsSurrogate(c) ? '\uFFFD' : c);
                }
            }

            index += length;
        }

        return builder.ToString();
    }

    /// <summary>The end index of every grapheme prefix: 0, then after the first grapheme, and so on.</summary>
    private static List<int> GraphemeBoundaries(string value)
    {
        var boundaries = new List<int>(value.Length + 1) { 0 };
        var index = 0;
        while (index < value.Length)
        {
            index += StringInfo.GetNextTextElementLength(value, index);
            boundaries.Add(index);
        }

        return boundaries;
    }
}
