using System.Security.Cryptography;
using System.Text;
using Herald.Core.Notifications;
using Herald.Providers.Fcm;
using Xunit;

namespace Herald.Providers.Tests.Fcm;

/// <summary>The parts without a network: error mapping and parsing, TTL, options and key validation.</summary>
public sealed class FcmUnitTests
{
    [Theory]
    [InlineData(200, null, null, PushOutcome.Sent)]
    [InlineData(404, "NOT_FOUND", "UNREGISTERED", PushOutcome.TokenInvalid)]
    [InlineData(403, "PERMISSION_DENIED", "SENDER_ID_MISMATCH", PushOutcome.TokenInvalid)]
    [InlineData(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", PushOutcome.Failed)]
    [InlineData(429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED", PushOutcome.Retry)]
    [InlineData(503, "UNAVAILABLE", "UNAVAILABLE", PushOutcome.Retry)]
    [InlineData(500, "INTERNAL", "INTERNAL", PushOutcome.Retry)]
    [InlineData(401, "UNAUTHENTICATED", "THIRD_PARTY_AUTH_ERROR", PushOutcome.CredentialFault)]
    [InlineData(401, "UNAUTHENTICATED", "APNS_AUTH_ERROR", PushOutcome.CredentialFault)]
    [InlineData(401, "UNAUTHENTICATED", null, PushOutcome.CredentialFault)]
    [InlineData(403, "PERMISSION_DENIED", null, PushOutcome.CredentialFault)]
    [InlineData(404, "NOT_FOUND", null, PushOutcome.Failed)]
    [InlineData(400, null, null, PushOutcome.Failed)]
    [InlineData(413, null, null, PushOutcome.Failed)]
    [InlineData(502, null, null, PushOutcome.Retry)]
    [InlineData(504, "DEADLINE_EXCEEDED", null, PushOutcome.Retry)]
    [InlineData(500, "INTERNAL", "UNSPECIFIED_ERROR", PushOutcome.Retry)]
    [InlineData(400, "INVALID_ARGUMENT", "UNSPECIFIED_ERROR", PushOutcome.Failed)]
    public void Map_FollowsTheProtocolTable(int status, string? statusName, string? code, PushOutcome outcome)
    {
        var result = FcmProvider.Map(status, statusName, code, TimeSpan.FromSeconds(9));

        Assert.Equal(outcome, result.Outcome);
        Assert.Equal(status, result.StatusCode);
        if (outcome != PushOutcome.Sent)
        {
            Assert.Equal(code is null or "UNSPECIFIED_ERROR" ? statusName ?? code : code, result.Reason);
        }

        Assert.Equal(outcome == PushOutcome.Retry ? TimeSpan.FromSeconds(9) : null, result.RetryAfter);
    }

    [Fact]
    public void ParseError_ReadsStatusErrorCodeAndMessage_InAnyOrder()
    {
        var body = """
            {"error":{"details":[{"@type":"type.googleapis.com/google.rpc.BadRequest","fieldViolations":[{"field":"message.token"}]},
              {"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"INVALID_ARGUMENT"}],
              "code":400,"message":"The registration token is not a valid FCM registration token","status":"INVALID_ARGUMENT"}}
            """;

        FcmReasons.ParseError(Encoding.UTF8.GetBytes(body), out var status, out var code, out var message);

        Assert.Equal("INVALID_ARGUMENT", status);
        Assert.Equal("INVALID_ARGUMENT", code);
        Assert.Equal("The registration token is not a valid FCM registration token", message);
    }

    [Fact]
    public void ParseError_IgnoresErrorCodesOfOtherDetailTypes()
    {
        var body = """{"error":{"code":401,"status":"UNAUTHENTICATED","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"ACCESS_TOKEN_EXPIRED","errorCode":"X"}]}}""";

        FcmReasons.ParseError(Encoding.UTF8.GetBytes(body), out var status, out var code, out _);

        Assert.Equal("UNAUTHENTICATED", status);
        Assert.Null(code);
    }

    [Theory]
    [InlineData("")]
    [InlineData("<html>502 Bad Gateway</html>")]
    [InlineData("{\"error\":\"invalid_grant\"}")]
    [InlineData("{\"error\":{\"status\":\"UNAVAIL")]
    [InlineData("[1,2]")]
    public void ParseError_ForeignOrTruncatedBodies_GiveNullsWithoutThrowing(string body)
    {
        FcmReasons.ParseError(Encoding.UTF8.GetBytes(body), out var status, out var code, out _);

        Assert.Null(code);
        Assert.True(status is null || body.Contains("UNAVAIL", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData(3600.0, "3600s")]
    [InlineData(0.9, "0s")]
    [InlineData(-10.0, "0s")]
    [InlineData(90.7, "90s")]
    [InlineData(3_000_000.0, "2419200s")]
    public void Ttl_IsWholeSecondsLeft_ClampedToFourWeeks(double seconds, string expected)
    {
        var now = new DateTimeOffset(2025, 6, 2, 9, 0, 0, TimeSpan.Zero);

        Assert.Equal(expected, FcmMessage.Ttl(now.AddSeconds(seconds), now));
    }

    [Fact]
    public void Options_WithoutCredential_AreValid()
    {
        Assert.Empty(FcmOptions.Validate(new FcmOptions()));
        Assert.False(new FcmOptions().HasCredential);
        Assert.Equal("https://fcm.googleapis.com", new FcmOptions().BaseUrl);
    }

    [Theory]
    [InlineData("fcm.googleapis.com")]
    [InlineData("ftp://fcm.googleapis.com")]
    [InlineData("https://fcm.googleapis.com/?a=b")]
    [InlineData("")]
    public void Options_BadBaseUrl_IsRejected(string url)
    {
        var errors = FcmOptions.Validate(new FcmOptions { BaseUrl = url });

        Assert.Contains(errors, e => e.StartsWith("Herald:Fcm:BaseUrl", StringComparison.Ordinal));
    }

    [Fact]
    public void Options_HttpBaseUrl_IsAllowedForLocalPeers()
        => Assert.Empty(FcmOptions.Validate(new FcmOptions { BaseUrl = "http://127.0.0.1:9000" }));

    [Theory]
    [InlineData("{}", "\"type\" must be \"service_account\"")]
    [InlineData("{\"type\":\"authorized_user\"}", "\"type\" must be \"service_account\"; it is \"authorized_user\"")]
    [InlineData("not json", "not valid JSON")]
    [InlineData("{\"type\":\"service_account\",\"private_key\":\"-----BEGIN PRIVATE KEY-----\"}", "no \"client_email\"")]
    [InlineData("{\"type\":\"service_account\",\"client_email\":\"a@b\"}", "no PEM \"private_key\"")]
    [InlineData("{\"type\":\"service_account\",\"client_email\":\"a@b\",\"private_key\":\"-----BEGIN PRIVATE KEY-----\\nAAAA\\n-----END PRIVATE KEY-----\"}", "is not a PEM RSA private key")]
    public void Options_BrokenServiceAccountJson_IsRejectedWithAClearMessage(string json, string expected)
    {
        var errors = FcmOptions.Validate(new FcmOptions { ServiceAccountJson = json });

        var error = Assert.Single(errors);
        Assert.StartsWith("Herald:Fcm:ServiceAccountJson: ", error, StringComparison.Ordinal);
        Assert.Contains(expected, error, StringComparison.Ordinal);
    }

    [Fact]
    public void ServiceAccount_Parse_ReadsTheKeyFileAndDefaultsTheTokenUri()
    {
        using var rsa = RSA.Create(2048);
        var pem = rsa.ExportPkcs8PrivateKeyPem().Replace("\n", "\\n", StringComparison.Ordinal);
        var json = "{\"type\":\"service_account\",\"project_id\":\"p1\",\"private_key_id\":\"k1\",\"private_key\":\"" + pem + "\",\"client_email\":\"a@p1.iam.gserviceaccount.com\"}";

        var account = FcmServiceAccount.Parse(json);

        Assert.Equal("a@p1.iam.gserviceaccount.com", account.ClientEmail);
        Assert.Equal("p1", account.ProjectId);
        Assert.Equal("k1", account.PrivateKeyId);
        Assert.Equal("https://oauth2.googleapis.com/token", account.TokenUri);
        Assert.Equal("a@p1.iam.gserviceaccount.com/k1", account.Id);
        Assert.DoesNotContain("PRIVATE", account.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public void IsReserved_CoversFcmsReservedDataKeys()
    {
        Assert.True(FcmMessage.IsReserved("from"));
        Assert.True(FcmMessage.IsReserved("google.c.a.e"));
        Assert.True(FcmMessage.IsReserved("gcm.notification.body"));
        Assert.True(FcmMessage.IsReserved("message_type"));
        Assert.True(FcmMessage.IsReserved("badge"));
        Assert.False(FcmMessage.IsReserved("folder"));
    }
}
