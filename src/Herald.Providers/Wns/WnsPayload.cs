using System.Buffers;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Xml;
using Herald.Core.Notifications;

namespace Herald.Providers.Wns;

/// <summary>One WNS request body with its <c>X-WNS-Type</c> and <c>Content-Type</c>.</summary>
internal readonly record struct WnsMessage(string Type, string ContentType, byte[] Body);

/// <summary>
/// Turns <see cref="NotificationContent"/> into WNS payloads: Badge → <c>wns/badge</c>
/// <c>&lt;badge value="N"/&gt;</c>; Alert → <c>wns/toast</c> with a ToastGeneric toast (title and body as
/// text elements, <see cref="NotificationContent.Data"/> as the <c>launch</c> argument); Background →
/// <c>wns/raw</c> with <see cref="NotificationContent.Data"/> as a JSON object. An alert's badge is not sent:
/// WNS carries one type per request, and a second request per alert would double the traffic for a number
/// the next badge push sets anyway.
/// </summary>
internal static class WnsPayload
{
    /// <summary>WNS's payload limit in bytes.</summary>
    public const int MaxBytes = 5000;

    /// <summary>WNS's limit for <c>X-WNS-Tag</c>: letters and digits only.</summary>
    public const int MaxTagLength = 16;

    public const string TypeBadge = "wns/badge";
    public const string TypeToast = "wns/toast";
    public const string TypeRaw = "wns/raw";
    public const string ContentTypeXml = "text/xml";
    public const string ContentTypeRaw = "application/octet-stream";

    private static readonly JsonWriterOptions JsonOptions = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    private static readonly XmlWriterSettings XmlSettings = new()
    {
        Encoding = new UTF8Encoding(encoderShouldEmitUTF8Identifier: false),
        OmitXmlDeclaration = true,
        Indent = false,
        CheckCharacters = false, // text is sanitised first (see Sanitize)
        NewLineHandling = NewLineHandling.Entitize,
    };

    /// <summary>The request for <paramref name="content"/>; Mdm is not a WNS kind (callers refuse it before).</summary>
    public static WnsMessage Build(NotificationContent content)
    {
        ArgumentNullException.ThrowIfNull(content);
        return content.Kind switch
        {
            PushKind.Badge => new(TypeBadge, ContentTypeXml, Badge(content.Badge)),
            PushKind.Alert when content.Sealed is not null => new(TypeRaw, ContentTypeRaw, SealedRaw(content)),
            PushKind.Alert => new(TypeToast, ContentTypeXml, Toast(content)),
            PushKind.Background => new(TypeRaw, ContentTypeRaw, Raw(content.Data)),
            _ => throw new ArgumentOutOfRangeException(nameof(content), content.Kind, "WNS has no payload for this kind."),
        };
    }

    /// <summary><c>&lt;badge value="N"/&gt;</c>; no number (or a negative one) clears the badge (0).</summary>
    public static byte[] Badge(int? badge)
    {
        var value = Math.Max(0, badge ?? 0);
        return Encoding.UTF8.GetBytes("<badge value=\"" + value.ToString(CultureInfo.InvariantCulture) + "\"/>");
    }

    /// <summary>A ToastGeneric toast: <c>&lt;toast launch="…"&gt;&lt;visual&gt;&lt;binding template="ToastGeneric"&gt;&lt;text&gt;…</c>.</summary>
    public static byte[] Toast(NotificationContent content)
    {
        using var stream = new MemoryStream(256);
        using (var writer = XmlWriter.Create(stream, XmlSettings))
        {
            writer.WriteStartElement("toast");
            if (content.Data is { Count: > 0 } data)
            {
                writer.WriteAttributeString("launch", Sanitize(LaunchArguments(data)));
            }

            writer.WriteStartElement("visual");
            writer.WriteStartElement("binding");
            writer.WriteAttributeString("template", "ToastGeneric");
            var wrote = false;
            if (content.Title is not null)
            {
                writer.WriteElementString("text", Sanitize(content.Title));
                wrote = true;
            }

            if (content.Body is not null)
            {
                writer.WriteElementString("text", Sanitize(content.Body));
                wrote = true;
            }

            if (!wrote)
            {
                writer.WriteElementString("text", string.Empty); // ToastGeneric needs a text element
            }

            writer.WriteEndElement();
            writer.WriteEndElement();
            writer.WriteEndElement();
        }

        return stream.ToArray();
    }

    /// <summary>
    /// An encrypted preview as a raw notification the app opens and shows itself:
    /// <c>{"type":"mail","badge":N,"fallback":"New mail","hx":{"v":1,"enc":"…","ct":"…"}}</c> (docs/ENCRYPTED-PREVIEWS.md).
    /// </summary>
    public static byte[] SealedRaw(NotificationContent content)
    {
        ArgumentNullException.ThrowIfNull(content);
        var sealedPreview = content.Sealed ?? throw new ArgumentException("The content carries no sealed preview.", nameof(content));
        var buffer = new ArrayBufferWriter<byte>(4096);
        using (var writer = new Utf8JsonWriter(buffer, JsonOptions))
        {
            writer.WriteStartObject();
            writer.WriteString("type"u8, "mail"u8);
            if (content.Badge is { } badge)
            {
                writer.WriteNumber("badge"u8, badge);
            }

            if (content.Body is not null)
            {
                writer.WriteString("fallback"u8, content.Body);
            }

            writer.WriteStartObject("hx"u8);
            writer.WriteNumber("v"u8, SealedPreview.Version);
            writer.WriteString("enc"u8, sealedPreview.Enc);
            writer.WriteString("ct"u8, sealedPreview.Ciphertext);
            writer.WriteEndObject();
            writer.WriteEndObject();
        }

        return buffer.WrittenSpan.ToArray();
    }

    /// <summary>The data as a JSON object (<c>{}</c> without data): the raw notification the app receives.</summary>
    public static byte[] Raw(IReadOnlyDictionary<string, string>? data)
    {
        var buffer = new ArrayBufferWriter<byte>(128);
        using (var writer = new Utf8JsonWriter(buffer, JsonOptions))
        {
            writer.WriteStartObject();
            if (data is not null)
            {
                foreach (var (key, value) in data)
                {
                    writer.WriteString(key, value);
                }
            }

            writer.WriteEndObject();
        }

        return buffer.WrittenSpan.ToArray();
    }

    /// <summary>
    /// The <c>X-WNS-Tag</c> for a collapse id: the id itself when it is 1–16 ASCII letters and digits, otherwise
    /// the first 16 hex digits of its SHA-256 (deterministic, so equal ids still replace each other).
    /// </summary>
    public static string Tag(string collapseId)
    {
        ArgumentNullException.ThrowIfNull(collapseId);
        if (collapseId.Length is > 0 and <= MaxTagLength && collapseId.All(char.IsAsciiLetterOrDigit))
        {
            return collapseId;
        }

        return Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(collapseId)))[..MaxTagLength];
    }

    /// <summary>Data as <c>key=value&amp;key=value</c>, URL-encoded: what the app gets when the toast is tapped.</summary>
    private static string LaunchArguments(IReadOnlyDictionary<string, string> data)
    {
        var builder = new StringBuilder();
        foreach (var (key, value) in data)
        {
            if (builder.Length > 0)
            {
                builder.Append('&');
            }

            builder.Append(Uri.EscapeDataString(key)).Append('=').Append(Uri.EscapeDataString(value ?? string.Empty));
        }

        return builder.ToString();
    }

    /// <summary>Replaces characters XML 1.0 cannot carry (control characters, lone surrogates) with U+FFFD.</summary>
    internal static string Sanitize(string text)
    {
        var firstBad = -1;
        for (var i = 0; i < text.Length; i++)
        {
            if (!IsXmlCharAt(text, i, out var width))
            {
                firstBad = i;
                break;
            }

            i += width - 1;
        }

        if (firstBad < 0)
        {
            return text;
        }

        var builder = new StringBuilder(text.Length);
        builder.Append(text, 0, firstBad);
        for (var i = firstBad; i < text.Length; i++)
        {
            if (IsXmlCharAt(text, i, out var width))
            {
                builder.Append(text, i, width);
                i += width - 1;
            }
            else
            {
                builder.Append('\uFFFD');
            }
        }

        return builder.ToString();
    }

    private static bool IsXmlCharAt(string text, int index, out int width)
    {
        var c = text[index];
        if (char.IsHighSurrogate(c) && index + 1 < text.Length && char.IsLowSurrogate(text[index + 1]))
        {
            width = 2;
            return true;
        }

        width = 1;
        return XmlConvert.IsXmlChar(c);
    }
}
