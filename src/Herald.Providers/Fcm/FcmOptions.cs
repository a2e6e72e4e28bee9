using Microsoft.Extensions.Options;

namespace Herald.Providers.Fcm;

/// <summary>
/// Settings of the FCM HTTP v1 provider (configuration section <c>Herald:Fcm</c>). An <c>http://</c> base URL
/// means HTTP/2 with prior knowledge (h2c), for local peers such as the fake FCM server.
/// </summary>
public sealed class FcmOptions
{
    /// <summary>The configuration section these options are bound from.</summary>
    public const string SectionName = "Herald:Fcm";

    /// <summary>Google's endpoint.</summary>
    public const string DefaultBaseUrl = "https://fcm.googleapis.com";

    /// <summary>The FCM endpoint base: requests go to <c>{BaseUrl}/v1/projects/{project}/messages:send</c>.</summary>
    public string BaseUrl { get; set; } = DefaultBaseUrl;

    /// <summary>
    /// Path of the default tenant's service-account key (the JSON file downloaded from the Google Cloud console).
    /// Its <c>token_uri</c> is where access tokens are requested; its <c>project_id</c> is the project used when a
    /// notification names none.
    /// </summary>
    public string? ServiceAccountFile { get; set; }

    /// <summary>The service-account key JSON itself; takes precedence over <see cref="ServiceAccountFile"/> when both are set.</summary>
    public string? ServiceAccountJson { get; set; }

    /// <summary>How long establishing a connection (TCP and TLS) may take.</summary>
    public TimeSpan ConnectTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>Connections idle this long are closed.</summary>
    public TimeSpan IdleTimeout { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>The outbound HTTP CONNECT proxy (from <c>Herald:Proxy</c>); null for direct connections.</summary>
    public Herald.Providers.Http.OutboundProxyOptions? Proxy { get; set; }

    /// <summary>HTTP/2 PING interval on connections (health check; keeps NAT state alive). Infinite disables pings.</summary>
    public TimeSpan KeepAlivePingDelay { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>A connection whose PING is not answered within this time is closed.</summary>
    public TimeSpan KeepAlivePingTimeout { get; set; } = TimeSpan.FromSeconds(15);

    /// <summary>
    /// How long one send (and, separately, waiting for an access token) may take before it counts as a
    /// transport fault and is retried later.
    /// </summary>
    public TimeSpan RequestTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Optional PEM certificate: when set, the FCM and token endpoints must present exactly this certificate
    /// (pinned trust for a self-signed peer such as the fake FCM server over TLS); the system trust store is then not used.
    /// </summary>
    public string? TrustedCertificateFile { get; set; }

    /// <summary>True when a service account is configured (file or JSON).</summary>
    public bool HasCredential => !string.IsNullOrWhiteSpace(ServiceAccountJson) || !string.IsNullOrWhiteSpace(ServiceAccountFile);

    /// <summary>Checks the options; returns one message per problem (empty when valid).</summary>
    /// <remarks>A configured service account is parsed, so a broken key file fails at start rather than at the first send.</remarks>
    public static IReadOnlyList<string> Validate(FcmOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var errors = new List<string>();
        CheckUrl(errors, options.BaseUrl);

        // No credential at all is valid (FCM unused); sends then fail with CredentialFault "NoCredential".
        if (!string.IsNullOrWhiteSpace(options.ServiceAccountJson))
        {
            CheckAccount(errors, nameof(ServiceAccountJson), () => FcmServiceAccount.Parse(options.ServiceAccountJson));
        }
        else if (!string.IsNullOrWhiteSpace(options.ServiceAccountFile))
        {
            if (!File.Exists(options.ServiceAccountFile))
            {
                errors.Add($"{SectionName}:{nameof(ServiceAccountFile)} '{options.ServiceAccountFile}' does not exist.");
            }
            else
            {
                CheckAccount(errors, nameof(ServiceAccountFile), () => FcmServiceAccount.FromFile(options.ServiceAccountFile));
            }
        }

        CheckPositive(errors, nameof(ConnectTimeout), options.ConnectTimeout);
        CheckPositive(errors, nameof(IdleTimeout), options.IdleTimeout);
        CheckPositive(errors, nameof(RequestTimeout), options.RequestTimeout);
        if (options.KeepAlivePingDelay != Timeout.InfiniteTimeSpan)
        {
            CheckPositive(errors, nameof(KeepAlivePingDelay), options.KeepAlivePingDelay);
        }

        CheckPositive(errors, nameof(KeepAlivePingTimeout), options.KeepAlivePingTimeout);

        if (!string.IsNullOrWhiteSpace(options.TrustedCertificateFile) && !File.Exists(options.TrustedCertificateFile))
        {
            errors.Add($"{SectionName}:{nameof(TrustedCertificateFile)} '{options.TrustedCertificateFile}' does not exist.");
        }

        return errors;
    }

    private static void CheckAccount(List<string> errors, string name, Func<FcmServiceAccount> load)
    {
        try
        {
            load();
        }
        catch (FormatException ex)
        {
            errors.Add($"{SectionName}:{name}: {ex.Message}");
        }
        catch (IOException ex)
        {
            errors.Add($"{SectionName}:{name} cannot be read: {ex.Message}");
        }
        catch (UnauthorizedAccessException ex)
        {
            errors.Add($"{SectionName}:{name} cannot be read: {ex.Message}");
        }
    }

    private static void CheckUrl(List<string> errors, string? value)
    {
        if (string.IsNullOrWhiteSpace(value)
            || !Uri.TryCreate(value, UriKind.Absolute, out var uri)
            || (uri.Scheme != Uri.UriSchemeHttps && uri.Scheme != Uri.UriSchemeHttp))
        {
            errors.Add($"{SectionName}:{nameof(BaseUrl)} must be an absolute https:// URL (or http:// for an HTTP/2 cleartext peer); it is '{value}'.");
            return;
        }

        if (!string.IsNullOrEmpty(uri.Query) || !string.IsNullOrEmpty(uri.Fragment))
        {
            errors.Add($"{SectionName}:{nameof(BaseUrl)} must not have a query or fragment; it is '{value}'.");
        }
    }

    private static void CheckPositive(List<string> errors, string name, TimeSpan value)
    {
        if (value <= TimeSpan.Zero)
        {
            errors.Add($"{SectionName}:{name} must be positive; it is {value}.");
        }
    }
}

/// <summary>Validates <see cref="FcmOptions"/> at start (<c>ValidateOnStart</c>) with <see cref="FcmOptions.Validate"/>.</summary>
public sealed class FcmOptionsValidator : IValidateOptions<FcmOptions>
{
    /// <inheritdoc />
    public ValidateOptionsResult Validate(string? name, FcmOptions options)
    {
        var errors = FcmOptions.Validate(options);
        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }
}
