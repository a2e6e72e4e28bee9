using System.Globalization;
using System.Text.Json;
using Herald.Providers.Http;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace Herald.Providers.Wns;

/// <summary>A WNS access token with its ready-made <c>Authorization</c> header value.</summary>
public sealed class WnsAccessToken
{
    /// <summary>Creates a token record.</summary>
    public WnsAccessToken(string value, string credentialId, DateTimeOffset fetchedAt, DateTimeOffset expiresAt, DateTimeOffset refreshAt)
    {
        ArgumentException.ThrowIfNullOrEmpty(value);
        ArgumentException.ThrowIfNullOrEmpty(credentialId);
        Value = value;
        CredentialId = credentialId;
        FetchedAt = fetchedAt;
        ExpiresAt = expiresAt;
        RefreshAt = refreshAt;
        Authorization = "Bearer " + value;
    }

    /// <summary>The token itself. Never log it.</summary>
    public string Value { get; }

    /// <summary>"Bearer " + token, cached so every request reuses the same string.</summary>
    public string Authorization { get; }

    /// <summary>The <see cref="WnsCredential.Id"/> it was issued to.</summary>
    public string CredentialId { get; }

    /// <summary>When it was received.</summary>
    public DateTimeOffset FetchedAt { get; }

    /// <summary>When WNS stops accepting it (<c>expires_in</c> after <see cref="FetchedAt"/>).</summary>
    public DateTimeOffset ExpiresAt { get; }

    /// <summary>When a cache should replace it (shortly before <see cref="ExpiresAt"/>).</summary>
    public DateTimeOffset RefreshAt { get; }

    /// <inheritdoc />
    public override string ToString() => "WnsAccessToken(" + CredentialId + ", expires " + ExpiresAt.ToString("O", CultureInfo.InvariantCulture) + ")";
}

/// <summary>The token endpoint refused a credential or could not be reached. The message never holds secrets.</summary>
public sealed class WnsTokenException : Exception
{
    /// <summary>Creates the exception.</summary>
    public WnsTokenException(string error, int statusCode, string message, Exception? innerException = null)
        : base(message, innerException)
    {
        Error = error;
        StatusCode = statusCode;
    }

    /// <summary>The OAuth <c>error</c> (e.g. <c>invalid_client</c>), or Timeout, Transport, MalformedResponse, HttpStatus.</summary>
    public string Error { get; }

    /// <summary>The HTTP status of the token endpoint's answer; 0 for timeouts and transport faults.</summary>
    public int StatusCode { get; }

    /// <summary>True when the endpoint answered and refused the credential (4xx but 408 and 429), rather than failing.</summary>
    public bool IsRejection => StatusCode is >= 400 and < 500 and not 408 and not 429;
}

/// <summary>
/// Requests WNS access tokens: <c>POST</c> of the form <c>grant_type=client_credentials</c>, <c>client_id</c>
/// (Package SID), <c>client_secret</c>, <c>scope=notify.windows.com</c> to <see cref="WnsOptions.TokenUrl"/>,
/// answered with <c>access_token</c> and <c>expires_in</c>. One long-lived connection pool; caching is
/// <see cref="IWnsTokenCache"/>'s job.
/// </summary>
public sealed partial class WnsTokenClient : IDisposable
{
    /// <summary>The lifetime assumed when the endpoint sends no <c>expires_in</c> (WNS's are a day; an hour is cautious).</summary>
    public static readonly TimeSpan DefaultLifetime = TimeSpan.FromHours(1);

    private const int MaxResponseBytes = 16 * 1024;

    private readonly HttpMessageInvoker _invoker;
    private readonly Uri _tokenUrl;
    private readonly TimeProvider _time;
    private readonly TimeSpan _timeout;
    private readonly TimeSpan _refreshMargin;
    private readonly ILogger _logger;
    private long _requestCount;

    /// <summary>Creates the client (the constructor dependency injection uses).</summary>
    public WnsTokenClient(IOptions<WnsOptions> options, TimeProvider time, ILogger<WnsTokenClient>? logger = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(time);
        var o = options.Value;
        var errors = WnsOptions.Validate(o);
        if (errors.Count > 0)
        {
            throw new OptionsValidationException(WnsOptions.SectionName, typeof(WnsOptions), errors);
        }

        _tokenUrl = new Uri(o.TokenUrl, UriKind.Absolute);
        _time = time;
        _timeout = o.RequestTimeout;
        _refreshMargin = o.TokenRefreshMargin;
        _logger = (ILogger?)logger ?? NullLogger.Instance;
        _invoker = WnsHttp.CreateInvoker(o);
    }

    /// <summary>Token requests made so far (successful or not).</summary>
    public long RequestCount => Interlocked.Read(ref _requestCount);

    /// <summary>
    /// Requests a new token for <paramref name="credential"/>. Throws <see cref="WnsTokenException"/> when the
    /// endpoint refuses, fails or cannot be reached; <see cref="OperationCanceledException"/> only for the caller's cancellation.
    /// </summary>
    public async ValueTask<WnsAccessToken> RequestAsync(WnsCredential credential, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(credential);
        cancellationToken.ThrowIfCancellationRequested();
        Interlocked.Increment(ref _requestCount);

        using var request = new HttpRequestMessage(HttpMethod.Post, _tokenUrl)
        {
            Version = System.Net.HttpVersion.Version11,
            VersionPolicy = HttpVersionPolicy.RequestVersionOrLower,
            Content = new FormUrlEncodedContent(
            [
                new("grant_type", "client_credentials"),
                new("client_id", credential.PackageSid),
                new("client_secret", credential.ClientSecret),
                new("scope", "notify.windows.com"),
            ]),
        };
        request.Headers.ExpectContinue = false;

        using var timeout = new LinkedTimeout(_timeout, _time, cancellationToken);
        try
        {
            using var response = await _invoker.SendAsync(request, timeout.Token).ConfigureAwait(false);
            var status = (int)response.StatusCode;
            var body = await WnsHttp.ReadBoundedAsync(response.Content, MaxResponseBytes, timeout.Token).ConfigureAwait(false);
            var now = _time.GetUtcNow();
            if (status == 200)
            {
                var token = Parse(body, credential, now);
                Log.Fetched(_logger, credential.Name, token.ExpiresAt);
                return token;
            }

            ParseError(body, out var error, out var description);
            throw new WnsTokenException(
                error ?? "HttpStatus",
                status,
                $"The WNS token endpoint answered {status} for {credential.Name}: {error ?? "no error code"}{(description is null ? string.Empty : " (" + description + ")")}.");
        }
        catch (OperationCanceledException ex) when (cancellationToken.IsCancellationRequested)
        {
            throw new OperationCanceledException(ex.Message, ex, cancellationToken);
        }
        catch (OperationCanceledException ex)
        {
            throw new WnsTokenException("Timeout", 0, $"The WNS token endpoint {_tokenUrl.Authority} did not answer within {_timeout}.", ex);
        }
        catch (Exception ex) when (ex is HttpRequestException or IOException or ObjectDisposedException)
        {
            throw new WnsTokenException("Transport", 0, $"The WNS token endpoint {_tokenUrl.Authority} is unreachable: {ex.Message}", ex);
        }
    }

    /// <inheritdoc />
    public void Dispose() => _invoker.Dispose();

    private WnsAccessToken Parse(byte[] body, WnsCredential credential, DateTimeOffset now)
    {
        string? value = null;
        long? expiresIn = null;
        try
        {
            using var document = JsonDocument.Parse(body);
            var root = document.RootElement;
            if (root.ValueKind == JsonValueKind.Object)
            {
                if (root.TryGetProperty("access_token", out var accessToken) && accessToken.ValueKind == JsonValueKind.String)
                {
                    value = accessToken.GetString();
                }

                if (root.TryGetProperty("expires_in", out var expires))
                {
                    if (expires.ValueKind == JsonValueKind.Number && expires.TryGetInt64(out var seconds))
                    {
                        expiresIn = seconds;
                    }
                    else if (expires.ValueKind == JsonValueKind.String
                        && long.TryParse(expires.GetString(), NumberStyles.None, CultureInfo.InvariantCulture, out var parsed))
                    {
                        expiresIn = parsed;
                    }
                }
            }
        }
        catch (JsonException ex)
        {
            throw new WnsTokenException("MalformedResponse", 200, "The WNS token endpoint answered 200 with a body that is not JSON.", ex);
        }

        if (string.IsNullOrEmpty(value))
        {
            throw new WnsTokenException("MalformedResponse", 200, "The WNS token endpoint answered 200 without an access_token.");
        }

        var lifetime = expiresIn is > 0 ? TimeSpan.FromSeconds(Math.Min(expiresIn.Value, (long)TimeSpan.FromDays(365).TotalSeconds)) : DefaultLifetime;
        var margin = _refreshMargin < lifetime / 2 ? _refreshMargin : lifetime / 2;
        return new WnsAccessToken(value, credential.Id, now, now + lifetime, now + lifetime - margin);
    }

    private static void ParseError(byte[] body, out string? error, out string? description)
    {
        error = null;
        description = null;
        try
        {
            using var document = JsonDocument.Parse(body);
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                return;
            }

            if (root.TryGetProperty("error", out var e) && e.ValueKind == JsonValueKind.String)
            {
                error = Truncate(e.GetString());
            }

            if (root.TryGetProperty("error_description", out var d) && d.ValueKind == JsonValueKind.String)
            {
                description = Truncate(d.GetString());
            }
        }
        catch (JsonException)
        {
            // An HTML error page from a proxy: the status is all there is.
        }
    }

    private static string? Truncate(string? value) => value is { Length: > 200 } ? value[..200] : value;

    private static partial class Log
    {
        [LoggerMessage(EventId = 3320, Level = LogLevel.Information, Message = "Fetched a WNS access token for {Credential}, valid until {ExpiresAt}")]
        public static partial void Fetched(ILogger logger, string credential, DateTimeOffset expiresAt);
    }
}
