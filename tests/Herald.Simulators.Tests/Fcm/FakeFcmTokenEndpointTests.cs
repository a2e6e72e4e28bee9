using System.Security.Cryptography;
using System.Text.Json;
using Herald.Simulators.Fcm;
using Xunit;

namespace Herald.Simulators.Tests.Fcm;

/// <summary>The fake's OAuth2 token endpoint: one test per check of the JWT-bearer exchange.</summary>
public sealed class FakeFcmTokenEndpointTests
{
    [Fact]
    public async Task CreateServiceAccount_ReturnsAGoogleKeyFilePointingAtTheFake()
    {
        await using var h = await FakeFcmHarness.StartAsync();

        using var json = JsonDocument.Parse(h.AccountJson);
        var root = json.RootElement;
        Assert.Equal("service_account", root.GetProperty("type").GetString());
        Assert.Equal(FakeFcmHarness.Project, root.GetProperty("project_id").GetString());
        Assert.Matches("^[0-9a-f]{40}$", root.GetProperty("private_key_id").GetString());
        Assert.EndsWith("@herald-test.iam.gserviceaccount.com", root.GetProperty("client_email").GetString(), StringComparison.Ordinal);
        Assert.Equal(h.Server.TokenUrl, root.GetProperty("token_uri").GetString());
        Assert.Equal(h.Server.BaseUrl + "/token", h.Server.TokenUrl);
        using var key = RSA.Create();
        key.ImportFromPem(root.GetProperty("private_key").GetString());
        Assert.Equal(2048, key.KeySize);
    }

    [Fact]
    public async Task ValidAssertion_IssuesABearerTokenForAnHour()
    {
        await using var h = await FakeFcmHarness.StartAsync();

        var (status, body) = await h.ExchangeAsync(h.Assertion());

        Assert.Equal(200, status);
        Assert.StartsWith("ya29.", body.GetProperty("access_token").GetString(), StringComparison.Ordinal);
        Assert.Equal(3600, body.GetProperty("expires_in").GetInt64());
        Assert.Equal("Bearer", body.GetProperty("token_type").GetString());
        Assert.Equal(1, h.Server.TokenRequests);
        Assert.Equal(1, h.Server.AccessTokensIssued);
    }

    [Fact]
    public async Task AssertionWithoutKid_IsAccepted()
    {
        await using var h = await FakeFcmHarness.StartAsync();

        var (status, _) = await h.ExchangeAsync(h.Assertion(kid: null));

        Assert.Equal(200, status);
    }

    [Fact]
    public async Task AccessTokenLifetime_IsConfigurable()
    {
        await using var h = await FakeFcmHarness.StartAsync(new FakeFcmServerOptions { AccessTokenLifetime = TimeSpan.FromMinutes(10) });

        var (_, body) = await h.ExchangeAsync(h.Assertion());

        Assert.Equal(600, body.GetProperty("expires_in").GetInt64());
    }

    [Fact]
    public async Task WrongGrantType_IsUnsupportedGrantType()
    {
        await using var h = await FakeFcmHarness.StartAsync();

        var (status, body) = await h.PostTokenAsync(("grant_type", "client_credentials"), ("assertion", h.Assertion()));

        AssertOAuthError(400, "unsupported_grant_type", status, body);
    }

    [Fact]
    public async Task MissingGrantType_IsInvalidRequest()
    {
        await using var h = await FakeFcmHarness.StartAsync();

        var (status, body) = await h.PostTokenAsync(("assertion", h.Assertion()));

        AssertOAuthError(400, "invalid_request", status, body);
    }

    [Fact]
    public async Task MissingAssertion_IsInvalidRequest()
    {
        await using var h = await FakeFcmHarness.StartAsync();

        var (status, body) = await h.PostTokenAsync(("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"));

        AssertOAuthError(400, "invalid_request", status, body);
        Assert.Equal("Missing required parameter: assertion", body.GetProperty("error_description").GetString());
    }

    [Theory]
    [InlineData("not-a-jwt")]
    [InlineData("a.b")]
    [InlineData("e30.e30.")]
    [InlineData("!!!.e30.AAAA")]
    public async Task MalformedAssertion_IsInvalidGrant(string assertion)
    {
        await using var h = await FakeFcmHarness.StartAsync();

        var (status, body) = await h.ExchangeAsync(assertion);

        AssertOAuthError(400, "invalid_grant", status, body);
        Assert.Equal(0, h.Server.AccessTokensIssued);
        Assert.Equal(1, h.Server.TokenRequests);
    }

    [Fact]
    public async Task AlgorithmOtherThanRs256_IsInvalidGrant()
    {
        await using var h = await FakeFcmHarness.StartAsync();

        var (status, body) = await h.ExchangeAsync(h.Assertion(alg: "RS512"));

        AssertOAuthError(400, "invalid_grant", status, body);
    }

    [Fact]
    public async Task UnknownIssuer_IsInvalidGrantAccountNotFound()
    {
        await using var h = await FakeFcmHarness.StartAsync();

        var (status, body) = await h.ExchangeAsync(h.Assertion(iss: "someone@else.iam.gserviceaccount.com"));

        AssertOAuthError(400, "invalid_grant", status, body);
        Assert.Equal("Invalid grant: account not found", body.GetProperty("error_description").GetString());
    }

    [Fact]
    public async Task SignatureOfAnotherKey_IsInvalidGrant()
    {
        await using var h = await FakeFcmHarness.StartAsync();
        using var other = RSA.Create(2048);

        var (status, body) = await h.ExchangeAsync(h.Assertion(key: other));

        AssertOAuthError(400, "invalid_grant", status, body);
        Assert.Equal("Invalid JWT Signature.", body.GetProperty("error_description").GetString());
    }

    [Fact]
    public async Task KidOfAnotherKey_IsInvalidGrant()
    {
        await using var h = await FakeFcmHarness.StartAsync();

        var (status, body) = await h.ExchangeAsync(h.Assertion(kid: "0000000000000000000000000000000000000000"));

        AssertOAuthError(400, "invalid_grant", status, body);
    }

    [Fact]
    public async Task GooglesTokenEndpointAudience_IsAccepted()
    {
        // Google.Apis.Auth sends this audience whatever the key's token_uri; Google accepts it.
        await using var h = await FakeFcmHarness.StartAsync();

        var (status, _) = await h.ExchangeAsync(h.Assertion(aud: "https://oauth2.googleapis.com/token"));

        Assert.Equal(200, status);
    }

    [Fact]
    public async Task AudienceOtherThanATokenEndpoint_IsInvalidGrant()
    {
        await using var h = await FakeFcmHarness.StartAsync();

        var (status, body) = await h.ExchangeAsync(h.Assertion(aud: "https://fcm.googleapis.com/"));

        AssertOAuthError(400, "invalid_grant", status, body);
        Assert.Contains("audience", body.GetProperty("error_description").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task ExpMoreThanAnHourAfterIat_IsInvalidGrant()
    {
        await using var h = await FakeFcmHarness.StartAsync();

        var (status, body) = await h.ExchangeAsync(h.Assertion(iat: h.Now, exp: h.Now + 3601));

        AssertOAuthError(400, "invalid_grant", status, body);
        Assert.Contains("short-lived", body.GetProperty("error_description").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task ExpiredAssertion_IsInvalidGrant()
    {
        await using var h = await FakeFcmHarness.StartAsync();
        var assertion = h.Assertion();
        h.Time.Advance(TimeSpan.FromHours(1));

        var (status, body) = await h.ExchangeAsync(assertion);

        AssertOAuthError(400, "invalid_grant", status, body);
    }

    [Fact]
    public async Task IatInTheFuture_IsInvalidGrant()
    {
        await using var h = await FakeFcmHarness.StartAsync();

        var (status, body) = await h.ExchangeAsync(h.Assertion(iat: h.Now + 600));

        AssertOAuthError(400, "invalid_grant", status, body);
    }

    [Fact]
    public async Task MissingScope_IsInvalidScope()
    {
        await using var h = await FakeFcmHarness.StartAsync();

        var (status, body) = await h.ExchangeAsync(h.Assertion(scope: null));

        AssertOAuthError(400, "invalid_scope", status, body);
    }

    [Fact]
    public async Task RevokedAccount_IsInvalidGrant()
    {
        await using var h = await FakeFcmHarness.StartAsync();
        h.Server.RevokeServiceAccount(h.ClientEmail);

        var (status, body) = await h.ExchangeAsync(h.Assertion());

        AssertOAuthError(400, "invalid_grant", status, body);
    }

    [Fact]
    public async Task FailTokenRequests_AnswersTheNextRequestsWithTheOutage()
    {
        await using var h = await FakeFcmHarness.StartAsync();
        h.Server.FailTokenRequests(1, 503);

        var (status, body) = await h.ExchangeAsync(h.Assertion());
        var (after, _) = await h.ExchangeAsync(h.Assertion());

        AssertOAuthError(503, "internal_failure", status, body);
        Assert.Equal(200, after);
    }

    [Fact]
    public async Task WaitForTokenRequests_CompletesWhenTheCountIsReached()
    {
        await using var h = await FakeFcmHarness.StartAsync();
        var wait = h.Server.WaitForTokenRequestsAsync(2, TestContext.Current.CancellationToken);
        Assert.False(wait.IsCompleted);

        await h.ExchangeAsync(h.Assertion());
        await h.ExchangeAsync("bad");

        await wait;
        Assert.Equal(2, h.Server.TokenRequests);
        Assert.Equal(1, h.Server.AccessTokensIssued);
    }

    private static void AssertOAuthError(int expectedStatus, string expectedError, int status, JsonElement body)
    {
        Assert.Equal(expectedStatus, status);
        Assert.Equal(expectedError, body.GetProperty("error").GetString());
        Assert.False(string.IsNullOrEmpty(body.GetProperty("error_description").GetString()));
        Assert.False(body.TryGetProperty("access_token", out _));
    }
}
