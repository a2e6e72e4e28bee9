using System.Diagnostics.CodeAnalysis;
using System.Globalization;

namespace Herald.Providers.Wns;

/// <summary>What <see cref="WnsChannelPolicy.Check"/> decided about a channel URI.</summary>
public enum WnsChannelVerdict
{
    /// <summary>Herald may POST to it.</summary>
    Allowed = 0,
    /// <summary>Not an absolute URI, empty, or longer than <see cref="WnsChannelPolicy.MaxChannelUriLength"/>.</summary>
    Malformed = 1,
    /// <summary>Not https (or http when <see cref="WnsOptions.AllowHttpChannels"/> is set).</summary>
    SchemeNotAllowed = 2,
    /// <summary>It carries user information (<c>user@host</c>).</summary>
    UserInfoNotAllowed = 3,
    /// <summary>Its host matches no allow-list entry.</summary>
    HostNotAllowed = 4,
    /// <summary>Its host matches an entry, but not on that entry's port.</summary>
    PortNotAllowed = 5,
}

/// <summary>
/// Decides whether a channel URI may be sent to. Channel URIs come from devices, so without this check a
/// registration could make Herald POST, with its WNS bearer token, to any address reachable from the server
/// (cloud metadata endpoints, internal services). Rules: an absolute URI of at most
/// <see cref="MaxChannelUriLength"/> characters; https (http only when allowed); no user information; a host
/// matching an allow-list entry (see <see cref="WnsOptions.AllowedChannelHosts"/>) on the entry's port (the
/// scheme's default port when the entry names none). The caller must send to the <see cref="Uri"/> this
/// check returns, so the host checked is the host connected to.
/// </summary>
public sealed class WnsChannelPolicy
{
    /// <summary>The longest channel URI accepted (WNS's are a few hundred characters).</summary>
    public const int MaxChannelUriLength = 2048;

    private readonly Entry[] _entries;
    private readonly bool _allowHttp;

    /// <summary>Creates a policy; throws <see cref="ArgumentException"/> for an invalid entry.</summary>
    public WnsChannelPolicy(IEnumerable<string> allowedHosts, bool allowHttp)
    {
        ArgumentNullException.ThrowIfNull(allowedHosts);
        var entries = new List<Entry>();
        foreach (var text in allowedHosts)
        {
            if (!TryParse(text, out var entry, out var error))
            {
                throw new ArgumentException($"Allowed channel host '{text}' is invalid: {error}", nameof(allowedHosts));
            }

            entries.Add(entry);
        }

        _entries = [.. entries];
        _allowHttp = allowHttp;
    }

    /// <summary>The policy of <paramref name="options"/> (<see cref="WnsOptions.EffectiveAllowedChannelHosts"/>, <see cref="WnsOptions.AllowHttpChannels"/>).</summary>
    public static WnsChannelPolicy FromOptions(WnsOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        return new WnsChannelPolicy(options.EffectiveAllowedChannelHosts, options.AllowHttpChannels);
    }

    /// <summary>Checks one allow-list entry; on success <paramref name="normalized"/> is its canonical form.</summary>
    public static bool TryParseEntry(string? entry, [NotNullWhen(true)] out string? normalized, [NotNullWhen(false)] out string? error)
    {
        if (TryParse(entry, out var parsed, out error))
        {
            normalized = parsed.ToString();
            return true;
        }

        normalized = null;
        return false;
    }

    /// <summary>
    /// Checks a channel URI. Returns <see cref="WnsChannelVerdict.Allowed"/> with the parsed URI to send to,
    /// or why it is refused (then <paramref name="uri"/> is null).
    /// </summary>
    public WnsChannelVerdict Check(string? channelUri, out Uri? uri)
    {
        uri = null;
        if (string.IsNullOrEmpty(channelUri)
            || channelUri.Length > MaxChannelUriLength
            || !Uri.TryCreate(channelUri, UriKind.Absolute, out var parsed)
            || string.IsNullOrEmpty(parsed.Host))
        {
            return WnsChannelVerdict.Malformed;
        }

        if (parsed.Scheme != Uri.UriSchemeHttps && !(_allowHttp && parsed.Scheme == Uri.UriSchemeHttp))
        {
            return WnsChannelVerdict.SchemeNotAllowed;
        }

        if (!string.IsNullOrEmpty(parsed.UserInfo))
        {
            return WnsChannelVerdict.UserInfoNotAllowed;
        }

        // IdnHost is the name actually resolved and connected to (punycode for internationalised names).
        var host = parsed.IdnHost;
        var isDns = parsed.HostNameType == UriHostNameType.Dns;
        var hostMatched = false;
        foreach (var entry in _entries)
        {
            if (!entry.MatchesHost(host, isDns))
            {
                continue;
            }

            if (entry.MatchesPort(parsed))
            {
                uri = parsed;
                return WnsChannelVerdict.Allowed;
            }

            hostMatched = true;
        }

        return hostMatched ? WnsChannelVerdict.PortNotAllowed : WnsChannelVerdict.HostNotAllowed;
    }

    private static bool TryParse(string? text, out Entry entry, [NotNullWhen(false)] out string? error)
    {
        entry = default;
        var value = text?.Trim();
        if (string.IsNullOrEmpty(value))
        {
            error = "an entry must not be empty.";
            return false;
        }

        // Split off the port: after "]" for an IPv6 literal, otherwise after the only ':'.
        var hostPart = value;
        string? portPart = null;
        if (value.StartsWith('['))
        {
            var close = value.IndexOf(']', StringComparison.Ordinal);
            if (close < 0)
            {
                error = "an IPv6 address must be written in brackets, e.g. [::1] or [::1]:8443.";
                return false;
            }

            hostPart = value[..(close + 1)];
            var rest = value[(close + 1)..];
            if (rest.Length > 0)
            {
                if (rest[0] != ':')
                {
                    error = "only ':port' may follow an IPv6 address.";
                    return false;
                }

                portPart = rest[1..];
            }
        }
        else
        {
            var colon = value.IndexOf(':', StringComparison.Ordinal);
            if (colon >= 0)
            {
                hostPart = value[..colon];
                portPart = value[(colon + 1)..];
            }
        }

        int? port = null;
        var anyPort = false;
        if (portPart is not null)
        {
            if (portPart == "*")
            {
                anyPort = true;
            }
            else if (int.TryParse(portPart, NumberStyles.None, CultureInfo.InvariantCulture, out var p) && p is > 0 and <= 65535)
            {
                port = p;
            }
            else
            {
                error = "the port must be a number from 1 to 65535, or '*' for any port.";
                return false;
            }
        }

        var wildcard = hostPart.StartsWith("*.", StringComparison.Ordinal);
        var name = wildcard ? hostPart[2..] : hostPart;
        if (name.Contains('*', StringComparison.Ordinal))
        {
            error = "'*' is only allowed as a leading '*.' (e.g. *.notify.windows.com).";
            return false;
        }

        if (!name.StartsWith('['))
        {
            foreach (var c in name)
            {
                if (!char.IsAsciiLetterOrDigit(c) && c is not ('.' or '-'))
                {
                    error = "a host may only contain ASCII letters, digits, '.' and '-' (write internationalised names in punycode).";
                    return false;
                }
            }
        }

        if (!Uri.TryCreate("https://" + name + "/", UriKind.Absolute, out var parsed)
            || parsed.AbsolutePath != "/"
            || !string.IsNullOrEmpty(parsed.UserInfo)
            || !parsed.IsDefaultPort
            || string.IsNullOrEmpty(parsed.IdnHost))
        {
            error = "it is not a valid host name or IP address.";
            return false;
        }

        if (wildcard)
        {
            if (parsed.HostNameType != UriHostNameType.Dns || !name.Contains('.', StringComparison.Ordinal))
            {
                error = "a wildcard needs a domain of at least two labels (e.g. *.notify.windows.com).";
                return false;
            }
        }

        entry = new Entry(parsed.IdnHost.ToLowerInvariant(), wildcard, port, anyPort);
        error = null;
        return true;
    }

    private readonly record struct Entry(string Host, bool Wildcard, int? Port, bool AnyPort)
    {
        public bool MatchesHost(string host, bool isDns)
        {
            if (!Wildcard)
            {
                return string.Equals(host, Host, StringComparison.OrdinalIgnoreCase);
            }

            // "*.example.com" matches "a.example.com" and "a.b.example.com", not "example.com" or "aexample.com".
            return isDns
                && host.Length > Host.Length + 1
                && host[host.Length - Host.Length - 1] == '.'
                && host.EndsWith(Host, StringComparison.OrdinalIgnoreCase);
        }

        public bool MatchesPort(Uri uri) => AnyPort || (Port is { } port ? uri.Port == port : uri.IsDefaultPort);

        public override string ToString()
            => (Wildcard ? "*." : string.Empty) + (Host.Contains(':', StringComparison.Ordinal) ? "[" + Host + "]" : Host) + (AnyPort ? ":*" : Port is { } p ? ":" + p.ToString(CultureInfo.InvariantCulture) : string.Empty);
    }
}
