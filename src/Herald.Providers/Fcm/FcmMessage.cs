using System.Buffers;
using System.Globalization;
using System.Text.Encodings.Web;
using System.Text.Json;
using Herald.Core.Notifications;

namespace Herald.Providers.Fcm;

/// <summary>
/// Turns a notification into the FCM HTTP v1 request body
/// <c>{"message":{"token","data","notification"?,"android":{"priority","collapse_key"?,"ttl"?}}}</c>.
/// Android has no badge: a badge becomes a high-priority data message <c>{"type":"mail","badge":"N"}</c>
/// that wakes the app, which sets its own count. Data values are strings, as FCM requires.
/// </summary>
internal static class FcmMessage
{
    /// <summary>FCM's message limit. Herald applies it to the whole request body, which is stricter than FCM (payload only).</summary>
    public const int MaxBytes = 4096;

    /// <summary>FCM's longest time to live: four weeks.</summary>
    public const long MaxTtlSeconds = 2_419_200;

    /// <summary>The <c>type</c> data value of every Herald message: the app syncs mail when it gets one.</summary>
    public const string MailType = "mail";

    private static readonly JsonWriterOptions WriterOptions = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    [ThreadStatic]
    private static ArrayBufferWriter<byte>? t_buffer;

    [ThreadStatic]
    private static Utf8JsonWriter? t_writer;

    /// <summary>
    /// Builds the body. Returns an exact-size array (possibly sent twice when the access token is renewed),
    /// or null when it exceeds <see cref="MaxBytes"/>; <paramref name="size"/> is the size either way.
    /// Not pooled on purpose: HTTP/2 may still read a request body after the response arrived.
    /// </summary>
    /// <param name="notification">What to send; its kind must not be MDM.</param>
    /// <param name="now">The current time, for the time to live left until <see cref="ClaimedNotification.ExpiresAt"/>.</param>
    /// <param name="size">The body size in bytes.</param>
    public static byte[]? Build(ClaimedNotification notification, DateTimeOffset now, out int size)
    {
        var buffer = t_buffer ??= new ArrayBufferWriter<byte>(MaxBytes + 512);
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

        Write(writer, notification, now);
        writer.Flush();
        size = buffer.WrittenCount;
        if (size > MaxBytes)
        {
            if (buffer.Capacity > 64 * 1024)
            {
                t_buffer = null; // do not keep a huge buffer alive for one oversized notification
            }

            return null;
        }

        return buffer.WrittenSpan.ToArray();
    }

    /// <summary>The <c>ttl</c> value for a notification expiring at <paramref name="expiresAt"/>: whole seconds left, "0s" when past, at most four weeks.</summary>
    public static string Ttl(DateTimeOffset expiresAt, DateTimeOffset now)
    {
        var seconds = (long)Math.Floor((expiresAt - now).TotalSeconds);
        seconds = Math.Clamp(seconds, 0, MaxTtlSeconds);
        return seconds.ToString(CultureInfo.InvariantCulture) + "s";
    }

    private static void Write(Utf8JsonWriter writer, ClaimedNotification notification, DateTimeOffset now)
    {
        var content = notification.Content;
        if (content.Kind is not (PushKind.Badge or PushKind.Alert or PushKind.Background))
        {
            throw new ArgumentOutOfRangeException(nameof(notification), content.Kind, "FCM carries badge, alert and background notifications only.");
        }

        writer.WriteStartObject();
        writer.WriteStartObject("message"u8);
        writer.WriteString("token"u8, notification.Token);

        writer.WriteStartObject("data"u8);
        writer.WriteString("type"u8, MailType);
        if (content.Badge is { } badge)
        {
            Span<byte> digits = stackalloc byte[11];
            badge.TryFormat(digits, out var written, default, CultureInfo.InvariantCulture);
            writer.WriteString("badge"u8, digits[..written]);
        }

        WriteData(writer, content.Data);
        var sealedPreview = content.Kind == PushKind.Alert ? content.Sealed : null;
        if (sealedPreview is not null)
        {
            // Data-only: the app opens "hx" (the same object as APNs', as a JSON string) and posts the notification itself;
            // "fallback" is the localised generic text for when it cannot (docs/ENCRYPTED-PREVIEWS.md).
            writer.WriteString("hx"u8, SealedJson(sealedPreview));
            if (content.Body is not null)
            {
                writer.WriteString("fallback"u8, content.Body);
            }
        }

        writer.WriteEndObject();

        if (sealedPreview is null && content.Kind == PushKind.Alert && (content.Title is not null || content.Body is not null))
        {
            writer.WriteStartObject("notification"u8);
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

        writer.WriteStartObject("android"u8);

        // A background sync waits for the device's next maintenance window; mail and badges wake it now.
        writer.WriteString("priority"u8, content.Kind == PushKind.Background ? "normal"u8 : "high"u8);
        if (notification.CollapseId is { } collapseKey)
        {
            writer.WriteString("collapse_key"u8, collapseKey);
        }

        if (notification.ExpiresAt is { } expiresAt)
        {
            writer.WriteString("ttl"u8, Ttl(expiresAt, now));
        }

        if (sealedPreview is null && content.Kind == PushKind.Alert && (content.Sound is not null || content.Badge is not null))
        {
            writer.WriteStartObject("notification"u8);
            if (content.Sound is not null)
            {
                writer.WriteString("sound"u8, content.Sound);
            }

            if (content.Badge is { } count)
            {
                // Launchers that show badges use it for the notification's count.
                writer.WriteNumber("notification_count"u8, count);
            }

            writer.WriteEndObject();
        }

        writer.WriteEndObject(); // android
        writer.WriteEndObject(); // message
        writer.WriteEndObject();
    }

    /// <summary><c>{"v":1,"enc":"…","ct":"…"}</c> as one string (FCM data values are strings).</summary>
    internal static string SealedJson(SealedPreview sealedPreview)
        => "{\"v\":" + SealedPreview.Version.ToString(CultureInfo.InvariantCulture) + ",\"enc\":\"" + sealedPreview.Enc + "\",\"ct\":\"" + sealedPreview.Ciphertext + "\"}";

    private static void WriteData(Utf8JsonWriter writer, IReadOnlyDictionary<string, string>? data)
    {
        if (data is null || data.Count == 0)
        {
            return;
        }

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

    private static void WriteEntry(Utf8JsonWriter writer, string key, string? value)
    {
        if (string.IsNullOrEmpty(key) || value is null || IsReserved(key))
        {
            return;
        }

        writer.WriteString(key, value);
    }

    /// <summary>
    /// Keys Herald writes itself ("type", "badge", and "hx" and "fallback" of sealed previews) and keys FCM reserves ("from", "message_type",
    /// "notification", "collapse_key", and any starting with "google" or "gcm"): FCM rejects the latter
    /// with INVALID_ARGUMENT, so they are left out rather than failing the whole push.
    /// </summary>
    internal static bool IsReserved(string key)
        => key is "type" or "badge" or "hx" or "fallback" or "from" or "message_type" or "notification" or "collapse_key"
            || key.StartsWith("google", StringComparison.OrdinalIgnoreCase)
            || key.StartsWith("gcm", StringComparison.OrdinalIgnoreCase);
}
