using System.Net;

namespace Herald.Providers.Http;

/// <summary>
/// The outbound HTTP CONNECT proxy enterprises reach Apple, Google and Microsoft through
/// (configuration section <c>Herald:Proxy</c>): every provider handler and connector uses it.
/// </summary>
public sealed class OutboundProxyOptions
{
    /// <summary>The configuration section these options are bound from.</summary>
    public const string SectionName = "Herald:Proxy";

    /// <summary>The proxy, e.g. <c>http://proxy.corp:3128</c>; unset means direct connections.</summary>
    public string? Url { get; set; }

    /// <summary>The proxy user (Basic authentication, answered when the proxy asks with 407).</summary>
    public string? Username { get; set; }

    /// <summary>The proxy password. Never logged.</summary>
    public string? Password { get; set; }

    /// <summary>
    /// Hosts reached directly: exact names or IP addresses, <c>*.suffix</c> wildcards, and <c>&lt;local&gt;</c>
    /// for dot-less names and loopback addresses.
    /// </summary>
    public IList<string> Bypass { get; } = [];

    /// <summary>True when a proxy URL is set.</summary>
    public bool IsEnabled => !string.IsNullOrWhiteSpace(Url);

    /// <summary>Checks the options; one message per problem.</summary>
    public static IReadOnlyList<string> Validate(OutboundProxyOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var errors = new List<string>();
        if (options.IsEnabled
            && (!Uri.TryCreate(options.Url, UriKind.Absolute, out var uri) || (uri.Scheme != Uri.UriSchemeHttp && uri.Scheme != Uri.UriSchemeHttps) || !string.IsNullOrEmpty(uri.UserInfo)))
        {
            errors.Add($"{SectionName}:{nameof(Url)} must be an absolute http:// or https:// URL without credentials in it (use {nameof(Username)}/{nameof(Password)}); it is '{options.Url}'.");
        }

        if (string.IsNullOrEmpty(options.Username) != string.IsNullOrEmpty(options.Password))
        {
            errors.Add($"{SectionName}: set both {nameof(Username)} and {nameof(Password)}, or neither.");
        }

        return errors;
    }
}

/// <summary>Applies <see cref="OutboundProxyOptions"/> to HTTP handlers: the one helper every provider and connector uses.</summary>
public static class OutboundProxy
{
    /// <summary>The proxy for the options, or null when none is configured.</summary>
    public static IWebProxy? Create(OutboundProxyOptions? options)
    {
        if (options is null || !options.IsEnabled)
        {
            return null;
        }

        var errors = OutboundProxyOptions.Validate(options);
        if (errors.Count > 0)
        {
            throw new ArgumentException(string.Join(" ", errors), nameof(options));
        }

        return new BypassingProxy(new Uri(options.Url!, UriKind.Absolute), options.Bypass.ToArray())
        {
            Credentials = string.IsNullOrEmpty(options.Username) ? null : new NetworkCredential(options.Username, options.Password),
        };
    }

    /// <summary>
    /// Sends <paramref name="handler"/>'s connections through the configured proxy (HTTP CONNECT tunnels for TLS
    /// and HTTP/2). Without a configured proxy the handler is left as it is.
    /// </summary>
    public static void Apply(SocketsHttpHandler handler, OutboundProxyOptions? options)
    {
        ArgumentNullException.ThrowIfNull(handler);
        if (Create(options) is { } proxy)
        {
            handler.UseProxy = true;
            handler.Proxy = proxy;
        }
    }

    /// <summary>A fixed proxy with a bypass list of host patterns.</summary>
    private sealed class BypassingProxy(Uri proxy, string[] bypass) : IWebProxy
    {
        public ICredentials? Credentials { get; set; }

        public Uri? GetProxy(Uri destination) => IsBypassed(destination) ? null : proxy;

        public bool IsBypassed(Uri host)
        {
            ArgumentNullException.ThrowIfNull(host);
            var name = host.IdnHost.TrimEnd('.');
            foreach (var raw in bypass)
            {
                var pattern = raw.Trim();
                if (pattern.Length == 0)
                {
                    continue;
                }

                if (pattern == "<local>")
                {
                    if (!name.Contains('.', StringComparison.Ordinal) || host.IsLoopback)
                    {
                        return true;
                    }
                }
                else if (pattern.StartsWith("*.", StringComparison.Ordinal))
                {
                    if (name.EndsWith(pattern[1..], StringComparison.OrdinalIgnoreCase))
                    {
                        return true;
                    }
                }
                else if (string.Equals(name, pattern.Trim('[', ']'), StringComparison.OrdinalIgnoreCase))
                {
                    return true;
                }
            }

            return false;
        }
    }
}
