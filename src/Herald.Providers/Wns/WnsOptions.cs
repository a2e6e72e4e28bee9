using Microsoft.Extensions.Options;

namespace Herald.Providers.Wns;

/// <summary>
/// Settings of the WNS provider (configuration section <c>Herald:Wns</c>): the access-token endpoint and the
/// default tenant's credential (Package SID and client secret), which channel hosts Herald may POST to, and
/// connection settings.
/// </summary>
public sealed class WnsOptions
{
    /// <summary>The configuration section these options are bound from.</summary>
    public const string SectionName = "Herald:Wns";

    /// <summary>Microsoft's access-token endpoint for WNS.</summary>
    public const string DefaultTokenUrl = "https://login.live.com/accesstoken.srf";

    /// <summary>The channel hosts allowed when <see cref="AllowedChannelHosts"/> is empty: WNS's own.</summary>
    public static IReadOnlyList<string> DefaultAllowedChannelHosts { get; } = ["*.notify.windows.com"];

    /// <summary>
    /// The access-token endpoint (login.live.com's). Must be <c>https://</c>; <c>http://</c> is accepted only for a
    /// loopback host (a local fake), as the client secret travels in the request.
    /// </summary>
    public string TokenUrl { get; set; } = DefaultTokenUrl;

    /// <summary>The Package SID of the app (<c>ms-app://s-1-15-2-…</c>): the <c>client_id</c> of token requests.</summary>
    public string? PackageSid { get; set; }

    /// <summary>The app's client secret from the Partner Center: the <c>client_secret</c> of token requests.</summary>
    public string? ClientSecret { get; set; }

    /// <summary>
    /// The hosts channel URIs may point to. Channel URIs come from devices and are attacker-controlled, so
    /// Herald only POSTs (with its bearer token) to these. Each entry is an exact host (<c>db5.notify.windows.com</c>,
    /// <c>127.0.0.1</c>, <c>[::1]</c>) or a suffix wildcard <c>*.example.com</c>, which matches any host ending in
    /// <c>.example.com</c> but not <c>example.com</c> itself; matching ignores case. An entry without a port allows
    /// only the scheme's default port (443); <c>host:port</c> allows exactly that port, <c>host:*</c> any port.
    /// Empty (the default) means <see cref="DefaultAllowedChannelHosts"/>. Configuration lists replace this
    /// list rather than adding to a default, so an installation can narrow it.
    /// </summary>
    public IList<string> AllowedChannelHosts { get; set; } = [];

    /// <summary>
    /// Accept <c>http://</c> channel URIs (default false: https only). For local fakes such as the fake WNS
    /// server; never needed for WNS itself.
    /// </summary>
    public bool AllowHttpChannels { get; set; }

    /// <summary>How long establishing a connection (TCP and TLS) may take.</summary>
    public TimeSpan ConnectTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>Pooled connections idle this long are closed.</summary>
    public TimeSpan IdleTimeout { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>The outbound HTTP CONNECT proxy (from <c>Herald:Proxy</c>); null for direct connections.</summary>
    public Herald.Providers.Http.OutboundProxyOptions? Proxy { get; set; }

    /// <summary>
    /// Pooled connections older than this are replaced once idle, so DNS changes of the WNS hosts take effect.
    /// Infinite keeps connections for as long as they are used.
    /// </summary>
    public TimeSpan ConnectionLifetime { get; set; } = TimeSpan.FromMinutes(10);

    /// <summary>How long one request (send and response) may take before it counts as a transport fault.</summary>
    public TimeSpan RequestTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// The most concurrent connections per channel host. WNS speaks HTTP/1.1 without pipelining: one request
    /// per connection at a time, so this bounds concurrent sends per host.
    /// </summary>
    public int MaxConnectionsPerHost { get; set; } = 256;

    /// <summary>An access token is replaced this long before it expires (at most half its lifetime).</summary>
    public TimeSpan TokenRefreshMargin { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>After a failed token request, sends fail fast for this long instead of asking the token endpoint again.</summary>
    public TimeSpan TokenFailureBackoff { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// Optional PEM certificate: when set, the token endpoint and channel hosts must present exactly this
    /// certificate (pinned trust for a self-signed peer such as the fake WNS server over TLS); the system
    /// trust store is then not used.
    /// </summary>
    public string? TrustedCertificateFile { get; set; }

    /// <summary>True when any part of a credential (Package SID or secret) is configured.</summary>
    public bool HasCredential => !string.IsNullOrWhiteSpace(PackageSid) || !string.IsNullOrWhiteSpace(ClientSecret);

    /// <summary>The allow-list in effect: <see cref="AllowedChannelHosts"/>, or the default when it is empty.</summary>
    public IReadOnlyList<string> EffectiveAllowedChannelHosts
        => AllowedChannelHosts is { Count: > 0 } hosts ? [.. hosts] : DefaultAllowedChannelHosts;

    /// <summary>Checks the options; returns one message per problem (empty when valid).</summary>
    public static IReadOnlyList<string> Validate(WnsOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var errors = new List<string>();

        if (string.IsNullOrWhiteSpace(options.TokenUrl)
            || !Uri.TryCreate(options.TokenUrl, UriKind.Absolute, out var tokenUrl)
            || (tokenUrl.Scheme != Uri.UriSchemeHttps && tokenUrl.Scheme != Uri.UriSchemeHttp))
        {
            errors.Add($"{SectionName}:{nameof(TokenUrl)} must be an absolute https:// URL; it is '{options.TokenUrl}'.");
        }
        else if (tokenUrl.Scheme == Uri.UriSchemeHttp && !tokenUrl.IsLoopback)
        {
            errors.Add($"{SectionName}:{nameof(TokenUrl)} must use https:// (the client secret is sent to it); http:// is only accepted for a loopback host. It is '{options.TokenUrl}'.");
        }
        else if (!string.IsNullOrEmpty(tokenUrl.UserInfo) || !string.IsNullOrEmpty(tokenUrl.Fragment))
        {
            errors.Add($"{SectionName}:{nameof(TokenUrl)} must not contain user information or a fragment.");
        }

        // No credential at all is valid (WNS unused); sends then fail with CredentialFault "NoCredential".
        if (options.HasCredential)
        {
            if (string.IsNullOrWhiteSpace(options.PackageSid))
            {
                errors.Add($"{SectionName}:{nameof(PackageSid)} is required with a WNS credential (the app's Package SID, ms-app://s-1-15-2-…).");
            }

            if (string.IsNullOrWhiteSpace(options.ClientSecret))
            {
                errors.Add($"{SectionName}:{nameof(ClientSecret)} is required with a WNS credential (the app's client secret).");
            }
        }

        if (options.AllowedChannelHosts is null)
        {
            errors.Add($"{SectionName}:{nameof(AllowedChannelHosts)} must not be null (leave it empty for the default {DefaultAllowedChannelHosts[0]}).");
        }
        else
        {
            foreach (var entry in options.AllowedChannelHosts)
            {
                if (!WnsChannelPolicy.TryParseEntry(entry, out _, out var error))
                {
                    errors.Add($"{SectionName}:{nameof(AllowedChannelHosts)} entry '{entry}' is invalid: {error}");
                }
            }
        }

        CheckPositive(errors, nameof(ConnectTimeout), options.ConnectTimeout);
        CheckPositive(errors, nameof(IdleTimeout), options.IdleTimeout);
        CheckPositive(errors, nameof(RequestTimeout), options.RequestTimeout);
        if (options.ConnectionLifetime != Timeout.InfiniteTimeSpan)
        {
            CheckPositive(errors, nameof(ConnectionLifetime), options.ConnectionLifetime);
        }

        if (options.MaxConnectionsPerHost < 1)
        {
            errors.Add($"{SectionName}:{nameof(MaxConnectionsPerHost)} must be at least 1; it is {options.MaxConnectionsPerHost}.");
        }

        if (options.TokenRefreshMargin < TimeSpan.Zero)
        {
            errors.Add($"{SectionName}:{nameof(TokenRefreshMargin)} must not be negative; it is {options.TokenRefreshMargin}.");
        }

        if (options.TokenFailureBackoff < TimeSpan.Zero)
        {
            errors.Add($"{SectionName}:{nameof(TokenFailureBackoff)} must not be negative; it is {options.TokenFailureBackoff}.");
        }

        if (!string.IsNullOrWhiteSpace(options.TrustedCertificateFile) && !File.Exists(options.TrustedCertificateFile))
        {
            errors.Add($"{SectionName}:{nameof(TrustedCertificateFile)} '{options.TrustedCertificateFile}' does not exist.");
        }

        return errors;
    }

    private static void CheckPositive(List<string> errors, string name, TimeSpan value)
    {
        if (value <= TimeSpan.Zero)
        {
            errors.Add($"{SectionName}:{name} must be positive; it is {value}.");
        }
    }
}

/// <summary>Validates <see cref="WnsOptions"/> at start (<c>ValidateOnStart</c>) with <see cref="WnsOptions.Validate"/>.</summary>
public sealed class WnsOptionsValidator : IValidateOptions<WnsOptions>
{
    /// <inheritdoc />
    public ValidateOptionsResult Validate(string? name, WnsOptions options)
    {
        var errors = WnsOptions.Validate(options);
        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }
}
