using System.Buffers.Text;
using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace Herald.Simulators.Fcm;

/// <summary>
/// Google's OAuth2 service-account flow as the fake plays it: registered service accounts (RSA public keys),
/// the JWT-bearer token exchange with Google's checks and error answers, and the access tokens it issued,
/// checked on every send.
/// </summary>
internal sealed class FakeFcmAuth(FakeFcmServerOptions options)
{
    public const string MessagingScope = "https://www.googleapis.com/auth/firebase.messaging";
    public const string CloudPlatformScope = "https://www.googleapis.com/auth/cloud-platform";
    public const string JwtBearerGrant = "urn:ietf:params:oauth:grant-type:jwt-bearer";

    private const string BadSignature = "Invalid JWT Signature.";
    private const string BadTime = "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.";

    /// <summary>
    /// The audiences Google's token endpoint accepts besides its own URL. Google.Apis.Auth, for one, always sends
    /// https://oauth2.googleapis.com/token whatever the key's token_uri, so a stand-in for Google must accept it.
    /// </summary>
    private static readonly HashSet<string?> GoogleAudiences =
    [
        "https://oauth2.googleapis.com/token",
        "https://www.googleapis.com/oauth2/v4/token",
        "https://accounts.google.com/o/oauth2/token",
    ];

    private readonly ConcurrentDictionary<string, Account> _accounts = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, AccessToken> _tokens = new(StringComparer.Ordinal);

    public void AddAccount(string clientEmail, string projectId, RSA publicKey, string? keyId)
    {
        var account = new Account(clientEmail, publicKey, keyId);
        account.Projects[projectId] = 0;
        if (_accounts.TryGetValue(clientEmail, out var previous))
        {
            foreach (var project in previous.Projects.Keys)
            {
                account.Projects[project] = 0;
            }
        }

        _accounts[clientEmail] = account;
    }

    public bool GrantProject(string clientEmail, string projectId)
    {
        if (!_accounts.TryGetValue(clientEmail, out var account))
        {
            return false;
        }

        account.Projects[projectId] = 0;
        return true;
    }

    public bool Revoke(string clientEmail)
    {
        if (!_accounts.TryGetValue(clientEmail, out var account))
        {
            return false;
        }

        account.Revoked = true;
        return true;
    }

    public bool Restore(string clientEmail)
    {
        if (!_accounts.TryGetValue(clientEmail, out var account))
        {
            return false;
        }

        account.Revoked = false;
        return true;
    }

    public void ExpireAccessTokens() => _tokens.Clear();

    public IEnumerable<RSA> Keys() => _accounts.Values.Select(static a => a.PublicKey);

    /// <summary>The token endpoint: exchanges a signed assertion for an access token, or answers Google's OAuth2 error.</summary>
    public TokenVerdict Exchange(string? grantType, string? assertion, string tokenUrl, DateTimeOffset now)
    {
        if (string.IsNullOrEmpty(grantType))
        {
            return TokenVerdict.Refuse("invalid_request", "Missing required parameter: grant_type");
        }

        if (grantType != JwtBearerGrant)
        {
            return TokenVerdict.Refuse("unsupported_grant_type", "Invalid grant_type: " + grantType);
        }

        if (string.IsNullOrEmpty(assertion))
        {
            return TokenVerdict.Refuse("invalid_request", "Missing required parameter: assertion");
        }

        if (!TryParse(assertion, out var jwt))
        {
            return TokenVerdict.Refuse("invalid_grant", BadSignature);
        }

        if (jwt.Alg != "RS256")
        {
            return TokenVerdict.Refuse("invalid_grant", BadSignature);
        }

        if (jwt.Iss is null || !_accounts.TryGetValue(jwt.Iss, out var account) || account.Revoked)
        {
            return TokenVerdict.Refuse("invalid_grant", "Invalid grant: account not found");
        }

        if (jwt.Kid is not null && account.KeyId is not null && jwt.Kid != account.KeyId)
        {
            return TokenVerdict.Refuse("invalid_grant", BadSignature);
        }

        bool valid;
        lock (account.Gate)
        {
            valid = account.PublicKey.VerifyData(jwt.SigningInput, jwt.Signature, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        }

        if (!valid)
        {
            return TokenVerdict.Refuse("invalid_grant", BadSignature);
        }

        if (jwt.Aud != tokenUrl && !GoogleAudiences.Contains(jwt.Aud))
        {
            return TokenVerdict.Refuse("invalid_grant", "Invalid JWT: Failed audience check. The right audience is " + tokenUrl);
        }

        var nowSeconds = now.ToUnixTimeSeconds();
        if (jwt.Iat is not { } iat || jwt.Exp is not { } exp
            || exp <= iat || exp - iat > 3600
            || exp <= nowSeconds
            || iat - nowSeconds > (long)options.AssertionClockSkew.TotalSeconds)
        {
            return TokenVerdict.Refuse("invalid_grant", BadTime);
        }

        var scopes = (jwt.Scope ?? string.Empty).Split(' ', StringSplitOptions.RemoveEmptyEntries);
        if (scopes.Length == 0)
        {
            return TokenVerdict.Refuse("invalid_scope", "Invalid OAuth scope or ID token audience provided.");
        }

        Span<byte> random = stackalloc byte[24];
        RandomNumberGenerator.Fill(random);
        var token = new AccessToken("ya29.fake." + Base64Url.EncodeToString(random), account, scopes, now + options.AccessTokenLifetime);
        _tokens[token.Value] = token;
        return new TokenVerdict(200, null, null, token);
    }

    /// <summary>The send endpoint's authentication: the bearer token must be one this server issued, unexpired, with FCM's scope, for the project.</summary>
    public SendAuth Authorize(string? authorization, string project, DateTimeOffset now)
    {
        const string Scheme = "Bearer ";
        if (string.IsNullOrEmpty(authorization) || !authorization.StartsWith(Scheme, StringComparison.OrdinalIgnoreCase) || authorization.Length == Scheme.Length)
        {
            return SendAuth.Denied(
                401,
                "UNAUTHENTICATED",
                "Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.",
                "CREDENTIALS_MISSING");
        }

        var value = authorization[Scheme.Length..].Trim();
        if (!_tokens.TryGetValue(value, out var token) || token.ExpiresAt <= now || token.Account.Revoked)
        {
            return SendAuth.Denied(
                401,
                "UNAUTHENTICATED",
                "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.",
                "ACCESS_TOKEN_EXPIRED");
        }

        if (!token.Scopes.Contains(MessagingScope) && !token.Scopes.Contains(CloudPlatformScope))
        {
            return SendAuth.Denied(403, "PERMISSION_DENIED", "Request had insufficient authentication scopes.", "ACCESS_TOKEN_SCOPE_INSUFFICIENT");
        }

        if (!token.Account.Projects.ContainsKey(project))
        {
            return SendAuth.Denied(
                403,
                "PERMISSION_DENIED",
                $"Permission 'cloudmessaging.messages.create' denied on resource '//cloudresourcemanager.googleapis.com/projects/{project}' (or it may not exist).",
                "IAM_PERMISSION_DENIED");
        }

        return new SendAuth(0, null, null, null, token);
    }

    private static bool TryParse(string assertion, out Jwt jwt)
    {
        jwt = default;
        var parts = assertion.Split('.');
        if (parts.Length != 3 || parts[0].Length == 0 || parts[1].Length == 0 || parts[2].Length == 0)
        {
            return false;
        }

        try
        {
            using var header = JsonDocument.Parse(Base64Url.DecodeFromChars(parts[0]));
            using var claims = JsonDocument.Parse(Base64Url.DecodeFromChars(parts[1]));
            if (header.RootElement.ValueKind != JsonValueKind.Object || claims.RootElement.ValueKind != JsonValueKind.Object)
            {
                return false;
            }

            jwt = new Jwt(
                String(header.RootElement, "alg"),
                String(header.RootElement, "kid"),
                String(claims.RootElement, "iss"),
                String(claims.RootElement, "aud"),
                String(claims.RootElement, "scope"),
                Number(claims.RootElement, "iat"),
                Number(claims.RootElement, "exp"),
                Encoding.ASCII.GetBytes(parts[0] + "." + parts[1]),
                Base64Url.DecodeFromChars(parts[2]));
            return true;
        }
        catch (Exception ex) when (ex is FormatException or JsonException)
        {
            return false;
        }
    }

    private static string? String(JsonElement element, string name)
        => element.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String ? value.GetString() : null;

    private static long? Number(JsonElement element, string name)
        => element.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.Number && value.TryGetInt64(out var n) ? n : null;

    private readonly record struct Jwt(string? Alg, string? Kid, string? Iss, string? Aud, string? Scope, long? Iat, long? Exp, byte[] SigningInput, byte[] Signature);

    internal sealed class Account(string clientEmail, RSA publicKey, string? keyId)
    {
        public string ClientEmail { get; } = clientEmail;
        public RSA PublicKey { get; } = publicKey;
        public string? KeyId { get; } = keyId;
        public Lock Gate { get; } = new();

        /// <summary>Projects this account may send for (a set).</summary>
        public ConcurrentDictionary<string, byte> Projects { get; } = new(StringComparer.Ordinal);

        public volatile bool Revoked;
    }

    internal sealed record AccessToken(string Value, Account Account, string[] Scopes, DateTimeOffset ExpiresAt);

    internal readonly record struct TokenVerdict(int Status, string? Error, string? Description, AccessToken? Token)
    {
        public static TokenVerdict Refuse(string error, string description) => new(400, error, description, null);
    }

    internal readonly record struct SendAuth(int Status, string? StatusName, string? Message, string? Reason, AccessToken? Token)
    {
        public static SendAuth Denied(int status, string statusName, string message, string reason) => new(status, statusName, message, reason, null);
    }
}
