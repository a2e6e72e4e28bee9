using System.Text;

namespace Herald.Server.Endpoints;

/// <summary>Input rules of the API, each with the message a caller sees.</summary>
internal static class Validation
{
    /// <summary>
    /// APNs device tokens: hex of any even length (never assume 64), 8 to 256 bytes. Spaces and the
    /// angle brackets some MDM servers print around tokens are removed; the result is lower-case.
    /// </summary>
    public static bool TryNormalizeApnsToken(string? raw, out string token, out string error)
    {
        token = string.Empty;
        if (string.IsNullOrWhiteSpace(raw))
        {
            error = "'token' is required: the APNs device token in hex.";
            return false;
        }

        var sb = new StringBuilder(raw.Length);
        foreach (var c in raw)
        {
            if (c is ' ' or '<' or '>')
            {
                continue;
            }

            if (!char.IsAsciiHexDigit(c))
            {
                error = "'token' must be hexadecimal (the APNs device token).";
                return false;
            }

            sb.Append(char.ToLowerInvariant(c));
        }

        if (sb.Length % 2 != 0 || sb.Length < 16 || sb.Length > 512)
        {
            error = "'token' must be an even number of hex digits, 16 to 512 of them.";
            return false;
        }

        token = sb.ToString();
        error = string.Empty;
        return true;
    }

    public static bool IsTopic(string? topic)
        => !string.IsNullOrEmpty(topic) && topic.Length <= 255 && topic.All(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '-' or '_');

    public static bool IsLocale(string locale)
        => locale.Length is > 0 and <= 35 && locale.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_');

    public static bool TryFolders(List<string>? raw, int max, out IReadOnlyList<string> folders, out string error)
    {
        folders = ["inbox"];
        error = string.Empty;
        if (raw is null)
        {
            return true;
        }

        if (raw.Count == 0 || raw.Count > max)
        {
            error = $"'folders' must list 1 to {max} folders.";
            return false;
        }

        var list = new List<string>(raw.Count);
        foreach (var f in raw)
        {
            if (string.IsNullOrWhiteSpace(f) || f.Length > 64 || !f.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.'))
            {
                error = "'folders' entries must be folder names such as 'inbox' or 'calendar'.";
                return false;
            }

            var name = f.ToLowerInvariant();
            if (!list.Contains(name))
            {
                list.Add(name);
            }
        }

        folders = list;
        return true;
    }

    /// <summary>An identifier safe to echo in an error message (bounded, printable ASCII only).</summary>
    public static string Printable(string value)
    {
        var s = value.Length > 64 ? value[..64] : value;
        return new string(s.Select(c => c is >= ' ' and <= '~' ? c : '?').ToArray());
    }
}
