using System.Buffers;
using System.Text.Encodings.Web;
using System.Text.Json;
using Herald.Core.Notifications;

namespace Herald.Providers.Apns;

/// <summary>
/// Turns <see cref="NotificationContent"/> into the APNs JSON payload. Writes with one reused
/// <see cref="Utf8JsonWriter"/> and buffer per thread, then copies the few bytes out (see <see cref="Build"/>).
/// </summary>
internal static class ApnsPayload
{
    /// <summary>Apple's limit for every push type except VoIP.</summary>
    public const int MaxBytes = 4096;

    /// <summary>Apple's limit for VoIP pushes (push type <c>voip</c>, topic <c>&lt;bundle id&gt;.voip</c>).</summary>
    public const int MaxVoipBytes = 5120;

    // Escape only what JSON requires: non-ASCII text stays UTF-8 (3 bytes) instead of \uXXXX (6 bytes),
    // which matters under a 4 KB limit. The payload is never embedded in HTML.
    private static readonly JsonWriterOptions WriterOptions = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    [ThreadStatic]
    private static ArrayBufferWriter<byte>? t_buffer;

    [ThreadStatic]
    private static Utf8JsonWriter? t_writer;

    /// <summary>
    /// Builds the payload. Returns an exact-size array (the body of the request, possibly sent twice when
    /// a token is renewed), or null when it exceeds <see cref="MaxBytes"/>; <paramref name="size"/> is the
    /// payload size either way. The array is not pooled on purpose: HTTP/2 may still be reading a request
    /// body after the response arrived, so the body must never go back to a pool under the handler.
    /// </summary>
    public static byte[]? Build(NotificationContent content, out int size, int maxBytes = MaxBytes)
    {
        var buffer = t_buffer ??= new ArrayBufferWriter<byte>(MaxVoipBytes + 512);
        buffer.ResetWrittenCount();
        var writer = t_writer;
        if (writer is null)
        {
            t_writer = writer = new Utf8JsonWriter(buffer, WriterOptions);
        }
        else
        {
            writer.Reset(buffer);
        }

        Write(writer, content);
        writer.Flush();
        size = buffer.WrittenCount;
        if (size > maxBytes)
        {
            if (buffer.Capacity > 64 * 1024)
            {
                t_buffer = null; // do not keep a huge buffer alive for one oversized notification
            }

            return null;
        }

        return buffer.WrittenSpan.ToArray();
    }

    private static void Write(Utf8JsonWriter writer, NotificationContent content)
    {
        writer.WriteStartObject();
        switch (content.Kind)
        {
            case PushKind.Mdm:
                // Exactly {"mdm":"<PushMagic>"}: the MDM client ignores everything else.
                writer.WriteString("mdm"u8, content.PushMagic);
                writer.WriteEndObject();
                return;

            case PushKind.Badge:
                writer.WriteStartObject("aps"u8);
                if (content.Badge is { } badge)
                {
                    writer.WriteNumber("badge"u8, badge);
                }

                writer.WriteEndObject();
                break;

            case PushKind.Alert:
                writer.WriteStartObject("aps"u8);
                if (content.Title is not null || content.Body is not null)
                {
                    writer.WriteStartObject("alert"u8);
                    if (content.Title is not null)
                    {
                        writer.WriteString("title"u8, content.Title);
                    }

                    if (content.Body is not null)
                    {
                        writer.WriteString("body"u8, content.Body);
                    }

                    writer.WriteEndObject();
                }

                if (content.Badge is { } alertBadge)
                {
                    writer.WriteNumber("badge"u8, alertBadge);
                }

                if (content.Sound is not null)
                {
                    writer.WriteString("sound"u8, content.Sound);
                }

                if (content.Sealed is not null)
                {
                    // The app's Notification Service Extension opens "hx" and replaces the generic text (ENCRYPTED-PREVIEWS.md).
                    writer.WriteNumber("mutable-content"u8, 1);
                }

                writer.WriteEndObject();
                WriteSealed(writer, content.Sealed);
                break;

            case PushKind.Background:
                writer.WriteStartObject("aps"u8);
                writer.WriteNumber("content-available"u8, 1);
                writer.WriteEndObject();
                break;

            default:
                throw new ArgumentOutOfRangeException(nameof(content), content.Kind, "Unknown push kind.");
        }

        WriteData(writer, content.Data);
        writer.WriteEndObject();
    }

    /// <summary><c>"hx":{"v":1,"enc":"…","ct":"…"}</c>: an encrypted preview (docs/ENCRYPTED-PREVIEWS.md).</summary>
    internal static void WriteSealed(Utf8JsonWriter writer, SealedPreview? sealedPreview)
    {
        if (sealedPreview is null)
        {
            return;
        }

        writer.WriteStartObject("hx"u8);
        writer.WriteNumber("v"u8, SealedPreview.Version);
        writer.WriteString("enc"u8, sealedPreview.Enc);
        writer.WriteString("ct"u8, sealedPreview.Ciphertext);
        writer.WriteEndObject();
    }

    private static void WriteData(Utf8JsonWriter writer, IReadOnlyDictionary<string, string>? data)
    {
        if (data is null || data.Count == 0)
        {
            return;
        }

        // A concrete Dictionary enumerates without allocating; other dictionaries through the interface.
        if (data is Dictionary<string, string> dictionary)
        {
            foreach (var (key, value) in dictionary)
            {
                WriteEntry(writer, key, value);
            }
        }
        else
        {
            foreach (var (key, value) in data)
            {
                WriteEntry(writer, key, value);
            }
        }
    }

    private static void WriteEntry(Utf8JsonWriter writer, string key, string value)
    {
        // "aps" belongs to Apple; a custom key of that name would make the payload invalid. "hx" is Herald's (sealed previews).
        if (key is null || key is "aps" or "hx")
        {
            return;
        }

        writer.WriteString(key, value);
    }
}
