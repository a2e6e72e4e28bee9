using System.Text;
using System.Text.Json;
using MimeKit;
using MimeKit.Utils;

namespace Herald.Sources.Dovecot;

/// <summary>
/// Parses the JSON body of Dovecot's push_notification OX driver:
/// <c>{"user","event","folder","imap-uidvalidity","imap-uid","from","subject","snippet","unseen"}</c>
/// (Dovecot 2.3.19 sends exactly these, in this order). Unknown fields are skipped, so newer Dovecot versions
/// still parse; the body must be a flat object of at most <see cref="MaxBodyBytes"/> bytes and
/// <see cref="MaxDepth"/> levels. <c>from</c> and <c>subject</c> arrive as the raw header values, RFC 2047
/// encoded words included; they are decoded here for preview alerts. <c>snippet</c> is never decoded nor kept.
/// </summary>
public static class DovecotNotificationParser
{
    /// <summary>The largest body accepted (a real one is a few hundred bytes; Dovecot caps the snippet at 255 characters).</summary>
    public const int MaxBodyBytes = 64 * 1024;

    /// <summary>The deepest nesting accepted (the real body is one flat object).</summary>
    public const int MaxDepth = 4;

    /// <summary>Longest user name accepted.</summary>
    public const int MaxUserLength = 512;

    /// <summary>Decoded subject and sender are cut to this many characters (an alert shows one or two lines).</summary>
    public const int MaxDisplayLength = 256;

    /// <summary>Parses <paramref name="utf8"/>; on failure <paramref name="error"/> says why in words fit for a problem detail.</summary>
    public static bool TryParse(ReadOnlySpan<byte> utf8, out DovecotNotification? notification, out string? error)
    {
        notification = null;
        if (utf8.Length > MaxBodyBytes)
        {
            error = $"The body is larger than {MaxBodyBytes} bytes.";
            return false;
        }

        try
        {
            return TryRead(utf8, out notification, out error);
        }
        catch (JsonException e)
        {
            error = "The body is not valid JSON: " + Describe(e);
            return false;
        }
        catch (InvalidOperationException)
        {
            // A string with bytes that are not UTF-8 shows only when it is read.
            error = "The body is not valid UTF-8 JSON: a string holds bytes that are not UTF-8.";
            return false;
        }
    }

    private static bool TryRead(ReadOnlySpan<byte> utf8, out DovecotNotification? notification, out string? error)
    {
        notification = null;
        var reader = new Utf8JsonReader(utf8, new JsonReaderOptions { MaxDepth = MaxDepth, CommentHandling = JsonCommentHandling.Disallow });
        if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
        {
            error = "The body must be a JSON object.";
            return false;
        }

        string? user = null, evt = null, folder = null, from = null, subject = null;
        long? uidValidity = null, uid = null;
        int? unseen = null;

        while (reader.Read() && reader.TokenType != JsonTokenType.EndObject)
        {
            var property = reader.GetString();
            reader.Read();
            switch (property)
            {
                case "user":
                    if (!TryString(ref reader, "user", MaxUserLength, out user, out error))
                    {
                        return false;
                    }

                    break;
                case "event":
                    if (!TryString(ref reader, "event", 64, out evt, out error))
                    {
                        return false;
                    }

                    break;
                case "folder":
                    if (!TryString(ref reader, "folder", 1024, out folder, out error))
                    {
                        return false;
                    }

                    break;
                case "imap-uidvalidity":
                    if (!TryUInt32(ref reader, "imap-uidvalidity", out uidValidity, out error))
                    {
                        return false;
                    }

                    break;
                case "imap-uid":
                    if (!TryUInt32(ref reader, "imap-uid", out uid, out error))
                    {
                        return false;
                    }

                    break;
                case "from":
                    if (!TryString(ref reader, "from", 8 * 1024, out from, out error))
                    {
                        return false;
                    }

                    break;
                case "subject":
                    if (!TryString(ref reader, "subject", 16 * 1024, out subject, out error))
                    {
                        return false;
                    }

                    break;
                case "unseen":
                    if (!TryUInt32(ref reader, "unseen", out var n, out error))
                    {
                        return false;
                    }

                    unseen = (int)Math.Min(n!.Value, int.MaxValue);
                    break;
                default:
                    // "snippet" and fields of newer versions: skipped without being decoded.
                    reader.Skip();
                    break;
            }
        }

        if (reader.TokenType != JsonTokenType.EndObject)
        {
            error = "The body is not valid JSON: the object is not closed.";
            return false;
        }

        // Nothing may follow the object (Utf8JsonReader checks the remaining bytes when asked to read past it).
        if (reader.Read())
        {
            error = "The body must hold exactly one JSON object.";
            return false;
        }

        if (string.IsNullOrWhiteSpace(user))
        {
            error = "'user' is required: set the METADATA key /private/vendor/vendor.dovecot/http-notify to 'user=<name>'.";
            return false;
        }

        if (string.IsNullOrWhiteSpace(evt))
        {
            error = "'event' is required.";
            return false;
        }

        notification = new DovecotNotification
        {
            User = user,
            Event = evt,
            Folder = folder,
            UidValidity = uidValidity,
            Uid = uid,
            From = from is null ? null : DecodeSender(from),
            FromAddress = from is null ? null : SenderAddress(from),
            Subject = subject is null ? null : DecodeSubject(subject),
            Unseen = unseen,
        };
        error = null;
        return true;
    }

    /// <summary>RFC 2047 decodes a Subject header value for display.</summary>
    public static string DecodeSubject(string raw)
    {
        ArgumentNullException.ThrowIfNull(raw);
        return Display(Rfc2047.DecodeText(Encoding.UTF8.GetBytes(raw)));
    }

    /// <summary>The sender of a From header value for display: the decoded display name, else the address.</summary>
    public static string DecodeSender(string raw)
    {
        ArgumentNullException.ThrowIfNull(raw);
        if (InternetAddressList.TryParse(ParserOptions.Default, raw, out var list))
        {
            foreach (var mailbox in list.Mailboxes)
            {
                return Display(string.IsNullOrWhiteSpace(mailbox.Name) ? mailbox.Address : mailbox.Name);
            }
        }

        // Not an address list a parser accepts: show the decoded phrase rather than nothing.
        return Display(Rfc2047.DecodePhrase(Encoding.UTF8.GetBytes(raw)));
    }

    /// <summary>The address of a From header value (its first mailbox), or null when it has none a parser accepts.</summary>
    public static string? SenderAddress(string raw)
    {
        ArgumentNullException.ThrowIfNull(raw);
        if (InternetAddressList.TryParse(ParserOptions.Default, raw, out var list))
        {
            foreach (var mailbox in list.Mailboxes)
            {
                return string.IsNullOrWhiteSpace(mailbox.Address) ? null : Display(mailbox.Address);
            }
        }

        return null;
    }

    /// <summary>One line of at most <see cref="MaxDisplayLength"/> characters: control characters become spaces, no half surrogate pair.</summary>
    private static string Display(string text)
    {
        var builder = new StringBuilder(Math.Min(text.Length, MaxDisplayLength));
        var space = false;
        foreach (var c in text.AsSpan().Trim())
        {
            var ch = char.IsControl(c) || char.IsWhiteSpace(c) ? ' ' : c;
            if (ch == ' ' && space)
            {
                continue;
            }

            space = ch == ' ';
            builder.Append(ch);
            if (builder.Length >= MaxDisplayLength)
            {
                break;
            }
        }

        if (builder.Length > 0 && char.IsHighSurrogate(builder[^1]))
        {
            builder.Length--;
        }

        return builder.ToString();
    }

    private static bool TryString(ref Utf8JsonReader reader, string field, int maxLength, out string? value, out string? error)
    {
        value = null;
        error = null;
        switch (reader.TokenType)
        {
            case JsonTokenType.Null:
                return true;
            case JsonTokenType.String:
                var length = reader.HasValueSequence ? reader.ValueSequence.Length : reader.ValueSpan.Length;
                if (length > maxLength * 6L)
                {
                    error = $"'{field}' is longer than {maxLength} characters.";
                    return false;
                }

                value = reader.GetString();
                if (value!.Length > maxLength)
                {
                    error = $"'{field}' is longer than {maxLength} characters.";
                    value = null;
                    return false;
                }

                return true;
            default:
                error = $"'{field}' must be a string.";
                return false;
        }
    }

    private static bool TryUInt32(ref Utf8JsonReader reader, string field, out long? value, out string? error)
    {
        value = null;
        error = null;
        switch (reader.TokenType)
        {
            case JsonTokenType.Null:
                return true;
            case JsonTokenType.Number when reader.TryGetUInt32(out var n):
                value = n;
                return true;
            default:
                error = $"'{field}' must be a whole number from 0 to 4294967295.";
                return false;
        }
    }

    private static string Describe(JsonException e)
        => e.LineNumber is { } line && e.BytePositionInLine is { } position
            ? $"line {line + 1}, byte {position + 1}."
            : "unexpected content.";
}
