using System.Net;
using Herald.Simulators.Fcm;
using Xunit;

namespace Herald.Simulators.Tests.Fcm;

/// <summary>The fake's messages:send endpoint: one test per request rule, each checking FCM's error JSON.</summary>
public sealed class FakeFcmSendEndpointTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task ValidMessage_IsAcceptedNamedAndRecorded()
    {
        await using var h = await FakeFcmHarness.StartAsync();
        var body = FakeFcmHarness.Body();

        var answer = await h.SendAsync(body);

        Assert.Equal(200, answer.Status);
        Assert.Matches(@"^projects/herald-test/messages/0:\d+%[0-9a-f]{16}$", answer.Name);
        Assert.Equal(HttpVersion.Version20, answer.Version);
        Assert.Equal(1, h.Server.AcceptedCount);
        var r = Assert.Single(h.Server.Requests);
        Assert.True(r.Accepted);
        Assert.Equal("POST", r.Method);
        Assert.Equal("/v1/projects/herald-test/messages:send", r.Path);
        Assert.Equal(FakeFcmHarness.Project, r.Project);
        Assert.Equal("HTTP/2", r.Protocol);
        Assert.Equal(FakeFcmHarness.Token, r.Token);
        Assert.Null(r.Topic);
        Assert.Equal(body, r.Body);
        Assert.Equal("Bearer " + await h.AccessTokenAsync(), r.Authorization);
        Assert.Equal(answer.Name, r.MessageName);
        Assert.Equal(h.Time.GetUtcNow(), r.ReceivedAt);
        Assert.Equal(new Dictionary<string, string> { ["type"] = "mail", ["badge"] = "3" }, r.Data);
        Assert.Equal("high", r.AndroidPriority);
        Assert.Equal("inbox", r.CollapseKey);
        Assert.Equal("3600s", r.Ttl);
        Assert.False(r.HasNotification);
    }

    [Fact]
    public async Task ValidateOnly_IsAnsweredWithTheFakeMessageId()
    {
        await using var h = await FakeFcmHarness.StartAsync();

        var answer = await h.SendAsync("{\"validate_only\":true,\"message\":{\"token\":\"t1\"}}");

        Assert.Equal(200, answer.Status);
        Assert.Equal("projects/herald-test/messages/fake_message_id", answer.Name);
        Assert.True(Assert.Single(h.Server.Requests).ValidateOnly);
    }

    [Fact]
    public async Task TopicAndConditionTargets_AreAccepted()
    {
        await using var h = await FakeFcmHarness.StartAsync();

        Assert.Equal(200, (await h.SendAsync(FakeFcmHarness.Message("\"topic\":\"mail-news\""))).Status);
        Assert.Equal(200, (await h.SendAsync(FakeFcmHarness.Message("\"condition\":\"'a' in topics\""))).Status);
        Assert.Equal("mail-news", h.Server.Requests[0].Topic);
        Assert.Equal("'a' in topics", h.Server.Requests[1].Condition);
    }

    [Fact]
    public async Task NotificationBlockAndCamelCaseNames_AreAccepted()
    {
        await using var h = await FakeFcmHarness.StartAsync();

        var answer = await h.SendAsync(FakeFcmHarness.Message(
            "\"token\":\"t1\",\"notification\":{\"title\":\"New mail\",\"body\":\"Hi\"},\"android\":{\"collapseKey\":\"k\",\"priority\":\"NORMAL\",\"notification\":{\"sound\":\"default\",\"notification_count\":4}}"));

        Assert.Equal(200, answer.Status);
        var r = Assert.Single(h.Server.Requests);
        Assert.Equal("New mail", r.NotificationTitle);
        Assert.Equal("Hi", r.NotificationBody);
    }

    // --- authentication -------------------------------------------------------------------------

    [Fact]
    public async Task MissingBearer_Is401UnauthenticatedWithoutFcmError()
    {
        await using var h = await FakeFcmHarness.StartAsync();

        var answer = await h.SendAsync(FakeFcmHarness.Body(), bearer: null);

        AssertGoogleError(answer, 401, "UNAUTHENTICATED", errorCode: null);
        Assert.Equal("CREDENTIALS_MISSING", answer.InfoReason);
        Assert.Equal("UNAUTHENTICATED", Assert.Single(h.Server.Requests).ErrorStatus);
        Assert.Equal(1, h.Server.RejectedCountFor("UNAUTHENTICATED"));
    }

    [Fact]
    public async Task UnknownBearer_Is401Unauthenticated()
    {
        await using var h = await FakeFcmHarness.StartAsync();

        var answer = await h.SendAsync(FakeFcmHarness.Body(), bearer: "ya29.not-issued-here");

        AssertGoogleError(answer, 401, "UNAUTHENTICATED", errorCode: null);
        Assert.Equal("ACCESS_TOKEN_EXPIRED", answer.InfoReason);
    }

    [Fact]
    public async Task ExpiredAccessToken_Is401Unauthenticated()
    {
        await using var h = await FakeFcmHarness.StartAsync();
        var token = await h.AccessTokenAsync();
        h.Time.Advance(TimeSpan.FromHours(1));

        var answer = await h.SendAsync(FakeFcmHarness.Body(), bearer: token);

        AssertGoogleError(answer, 401, "UNAUTHENTICATED", errorCode: null);
    }

    [Fact]
    public async Task AccessTokenJustBeforeExpiry_IsAccepted()
    {
        await using var h = await FakeFcmHarness.StartAsync();
        var token = await h.AccessTokenAsync();
        h.Time.Advance(TimeSpan.FromMinutes(59));

        Assert.Equal(200, (await h.SendAsync(FakeFcmHarness.Body(), bearer: token)).Status);
    }

    [Fact]
    public async Task ExpireAccessTokens_MakesIssuedTokensFail401()
    {
        await using var h = await FakeFcmHarness.StartAsync();
        var token = await h.AccessTokenAsync();
        h.Server.ExpireAccessTokens();

        var answer = await h.SendAsync(FakeFcmHarness.Body(), bearer: token);

        AssertGoogleError(answer, 401, "UNAUTHENTICATED", errorCode: null);
    }

    [Fact]
    public async Task RevokedAccount_ItsAccessTokensFail401()
    {
        await using var h = await FakeFcmHarness.StartAsync();
        var token = await h.AccessTokenAsync();
        h.Server.RevokeServiceAccount(h.ClientEmail);

        var answer = await h.SendAsync(FakeFcmHarness.Body(), bearer: token);

        AssertGoogleError(answer, 401, "UNAUTHENTICATED", errorCode: null);
    }

    [Fact]
    public async Task ProjectOfAnotherAccount_Is403PermissionDenied_UntilGranted()
    {
        await using var h = await FakeFcmHarness.StartAsync();

        var answer = await h.SendAsync(FakeFcmHarness.Body(), project: "other-project");

        AssertGoogleError(answer, 403, "PERMISSION_DENIED", errorCode: null);
        Assert.Equal("IAM_PERMISSION_DENIED", answer.InfoReason);
        Assert.Contains("cloudmessaging.messages.create", answer.Message, StringComparison.Ordinal);

        h.Server.GrantProject(h.ClientEmail, "other-project");
        Assert.Equal(200, (await h.SendAsync(FakeFcmHarness.Body(), project: "other-project")).Status);
    }

    [Fact]
    public async Task TokenWithoutTheMessagingScope_Is403PermissionDenied()
    {
        await using var h = await FakeFcmHarness.StartAsync();
        var (_, token) = await h.ExchangeAsync(h.Assertion(scope: "https://www.googleapis.com/auth/userinfo.email"));

        var answer = await h.SendAsync(FakeFcmHarness.Body(), bearer: token.GetProperty("access_token").GetString());

        AssertGoogleError(answer, 403, "PERMISSION_DENIED", errorCode: null);
        Assert.Equal("ACCESS_TOKEN_SCOPE_INSUFFICIENT", answer.InfoReason);
    }

    [Fact]
    public async Task CloudPlatformScope_IsAccepted()
    {
        await using var h = await FakeFcmHarness.StartAsync();
        var (_, token) = await h.ExchangeAsync(h.Assertion(scope: "https://www.googleapis.com/auth/cloud-platform"));

        var answer = await h.SendAsync(FakeFcmHarness.Body(), bearer: token.GetProperty("access_token").GetString());

        Assert.Equal(200, answer.Status);
    }

    // --- paths ----------------------------------------------------------------------------------

    [Theory]
    [InlineData("POST", "/v1/projects/herald-test/messages")]
    [InlineData("POST", "/v1/projects//messages:send")]
    [InlineData("POST", "/fcm/send")]
    [InlineData("GET", "/v1/projects/herald-test/messages:send")]
    public async Task WrongPathOrMethod_Is404NotFound(string method, string path)
    {
        await using var h = await FakeFcmHarness.StartAsync();

        var answer = await h.SendAsync(FakeFcmHarness.Body(), method: method, path: path);

        AssertGoogleError(answer, 404, "NOT_FOUND", errorCode: null);
    }

    // --- message validation ----------------------------------------------------------------------

    [Theory]
    [InlineData("")]
    [InlineData("not json")]
    [InlineData("{\"message\":")]
    [InlineData("[]")]
    [InlineData("{\"message\":{\"token\":\"t\"}} trailing")]
    public async Task BodyThatIsNotAJsonObject_Is400InvalidArgument(string body)
    {
        await using var h = await FakeFcmHarness.StartAsync();

        var answer = await h.SendAsync(body);

        AssertGoogleError(answer, 400, "INVALID_ARGUMENT", "INVALID_ARGUMENT");
        Assert.StartsWith("Invalid JSON payload received.", answer.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task UnknownTopLevelField_Is400InvalidArgument()
    {
        await using var h = await FakeFcmHarness.StartAsync();

        var answer = await h.SendAsync("{\"message\":{\"token\":\"t\"},\"registration_ids\":[\"t\"]}");

        AssertGoogleError(answer, 400, "INVALID_ARGUMENT", "INVALID_ARGUMENT");
        Assert.Equal("Invalid JSON payload received. Unknown name \"registration_ids\": Cannot find field.", answer.Message);
    }

    [Fact]
    public async Task UnknownMessageField_Is400InvalidArgument()
    {
        await using var h = await FakeFcmHarness.StartAsync();

        var answer = await h.SendAsync(FakeFcmHarness.Message("\"token\":\"t\",\"priority\":\"high\""));

        AssertGoogleError(answer, 400, "INVALID_ARGUMENT", "INVALID_ARGUMENT");
        Assert.Equal("Invalid JSON payload received. Unknown name \"priority\" at 'message': Cannot find field.", answer.Message);
    }

    [Fact]
    public async Task UnknownAndroidField_Is400InvalidArgument()
    {
        await using var h = await FakeFcmHarness.StartAsync();

        var answer = await h.SendAsync(FakeFcmHarness.Message("\"token\":\"t\",\"android\":{\"time_to_live\":60}"));

        AssertGoogleError(answer, 400, "INVALID_ARGUMENT", "INVALID_ARGUMENT");
        Assert.Contains("Unknown name \"time_to_live\" at 'message.android'", answer.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task UnknownNotificationField_Is400InvalidArgument()
    {
        await using var h = await FakeFcmHarness.StartAsync();

        var answer = await h.SendAsync(FakeFcmHarness.Message("\"token\":\"t\",\"notification\":{\"title\":\"x\",\"badge\":\"3\"}"));

        AssertGoogleError(answer, 400, "INVALID_ARGUMENT", "INVALID_ARGUMENT");
    }

    [Fact]
    public async Task NoTarget_Is400RecipientNotSet()
    {
        await using var h = await FakeFcmHarness.StartAsync();

        var answer = await h.SendAsync(FakeFcmHarness.Message("\"data\":{\"a\":\"b\"}"));

        AssertGoogleError(answer, 400, "INVALID_ARGUMENT", "INVALID_ARGUMENT");
        Assert.Equal("Recipient of the message is not set.", answer.Message);
    }

    [Theory]
    [InlineData("\"token\":\"t\",\"topic\":\"news\"")]
    [InlineData("\"topic\":\"news\",\"condition\":\"'a' in topics\"")]
    [InlineData("\"token\":\"t\",\"condition\":\"'a' in topics\"")]
    public async Task TwoTargets_Is400OneofAlreadySet(string inner)
    {
        await using var h = await FakeFcmHarness.StartAsync();

        var answer = await h.SendAsync(FakeFcmHarness.Message(inner));

        AssertGoogleError(answer, 400, "INVALID_ARGUMENT", "INVALID_ARGUMENT");
        Assert.Contains("oneof field 'target' is already set", answer.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task EmptyToken_Is400NotAValidRegistrationToken()
    {
        await using var h = await FakeFcmHarness.StartAsync();

        var answer = await h.SendAsync(FakeFcmHarness.Message("\"token\":\"\""));

        AssertGoogleError(answer, 400, "INVALID_ARGUMENT", "INVALID_ARGUMENT");
        Assert.Equal("The registration token is not a valid FCM registration token", answer.Message);
    }

    [Fact]
    public async Task InvalidTopicName_Is400()
    {
        await using var h = await FakeFcmHarness.StartAsync();

        var answer = await h.SendAsync(FakeFcmHarness.Message("\"topic\":\"no spaces\""));

        AssertGoogleError(answer, 400, "INVALID_ARGUMENT", "INVALID_ARGUMENT");
    }

    [Theory]
    [InlineData("{\"badge\":3}", "message.data[0].value")]
    [InlineData("{\"type\":\"mail\",\"unread\":true}", "message.data[1].value")]
    [InlineData("{\"a\":null}", "message.data[0].value")]
    [InlineData("{\"a\":{\"b\":\"c\"}}", "message.data[0].value")]
    public async Task NonStringDataValue_Is400InvalidValue(string data, string field)
    {
        await using var h = await FakeFcmHarness.StartAsync();

        var answer = await h.SendAsync(FakeFcmHarness.Message("\"token\":\"t\",\"data\":" + data));

        AssertGoogleError(answer, 400, "INVALID_ARGUMENT", "INVALID_ARGUMENT");
        Assert.StartsWith($"Invalid value at '{field}' (TYPE_STRING)", answer.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task NonStringAndroidDataValue_Is400()
    {
        await using var h = await FakeFcmHarness.StartAsync();

        var answer = await h.SendAsync(FakeFcmHarness.Message("\"token\":\"t\",\"android\":{\"data\":{\"n\":1}}"));

        AssertGoogleError(answer, 400, "INVALID_ARGUMENT", "INVALID_ARGUMENT");
        Assert.StartsWith("Invalid value at 'message.android.data[0].value'", answer.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task MessageOf4096Bytes_IsAccepted_4097IsTooBig()
    {
        await using var h = await FakeFcmHarness.StartAsync();
        var empty = FakeFcmHarness.Message("\"token\":\"t\",\"data\":{\"x\":\"\"}");
        var fits = FakeFcmHarness.Message("\"token\":\"t\",\"data\":{\"x\":\"" + new string('a', 4096 - empty.Length) + "\"}");
        var over = FakeFcmHarness.Message("\"token\":\"t\",\"data\":{\"x\":\"" + new string('a', 4097 - empty.Length) + "\"}");
        Assert.Equal(4096, fits.Length);

        Assert.Equal(200, (await h.SendAsync(fits)).Status);
        var answer = await h.SendAsync(over);

        AssertGoogleError(answer, 400, "INVALID_ARGUMENT", "INVALID_ARGUMENT");
        Assert.Equal("Message is too big", answer.Message);
    }

    [Fact]
    public async Task HugeBody_Is400TooBig()
    {
        await using var h = await FakeFcmHarness.StartAsync();

        var answer = await h.SendAsync(FakeFcmHarness.Message("\"token\":\"t\",\"data\":{\"x\":\"" + new string('a', 100_000) + "\"}"));

        AssertGoogleError(answer, 400, "INVALID_ARGUMENT", "INVALID_ARGUMENT");
    }

    [Theory]
    [InlineData("normal")]
    [InlineData("high")]
    [InlineData("HIGH")]
    public async Task AndroidPriority_NormalOrHigh_IsAccepted(string priority)
    {
        await using var h = await FakeFcmHarness.StartAsync();

        var answer = await h.SendAsync(FakeFcmHarness.Message($"\"token\":\"t\",\"android\":{{\"priority\":\"{priority}\"}}"));

        Assert.Equal(200, answer.Status);
    }

    [Theory]
    [InlineData("\"urgent\"")]
    [InlineData("\"10\"")]
    [InlineData("10")]
    [InlineData("\"\"")]
    public async Task AndroidPriority_Other_Is400InvalidValue(string priority)
    {
        await using var h = await FakeFcmHarness.StartAsync();

        var answer = await h.SendAsync(FakeFcmHarness.Message($"\"token\":\"t\",\"android\":{{\"priority\":{priority}}}"));

        AssertGoogleError(answer, 400, "INVALID_ARGUMENT", "INVALID_ARGUMENT");
        Assert.StartsWith("Invalid value at 'message.android.priority' (type.googleapis.com/google.firebase.fcm.v1.AndroidMessagePriority)", answer.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("0s")]
    [InlineData("3600s")]
    [InlineData("3.5s")]
    [InlineData("1.123456789s")]
    [InlineData("2419200s")]
    public async Task AndroidTtl_ProtobufDuration_IsAccepted(string ttl)
    {
        await using var h = await FakeFcmHarness.StartAsync();

        var answer = await h.SendAsync(FakeFcmHarness.Message($"\"token\":\"t\",\"android\":{{\"ttl\":\"{ttl}\"}}"));

        Assert.Equal(200, answer.Status);
    }

    [Theory]
    [InlineData("\"3600\"")]
    [InlineData("\"1h\"")]
    [InlineData("\"-1s\"")]
    [InlineData("\"1.s\"")]
    [InlineData("\"1.1234567890s\"")]
    [InlineData("\" 5s\"")]
    [InlineData("3600")]
    public async Task AndroidTtl_Malformed_Is400InvalidDuration(string ttl)
    {
        await using var h = await FakeFcmHarness.StartAsync();

        var answer = await h.SendAsync(FakeFcmHarness.Message($"\"token\":\"t\",\"android\":{{\"ttl\":{ttl}}}"));

        AssertGoogleError(answer, 400, "INVALID_ARGUMENT", "INVALID_ARGUMENT");
        Assert.StartsWith("Invalid value at 'message.android.ttl' (type.googleapis.com/google.protobuf.Duration)", answer.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task AndroidTtl_LongerThanFourWeeks_Is400()
    {
        await using var h = await FakeFcmHarness.StartAsync();

        var answer = await h.SendAsync(FakeFcmHarness.Message("\"token\":\"t\",\"android\":{\"ttl\":\"2419201s\"}"));

        AssertGoogleError(answer, 400, "INVALID_ARGUMENT", "INVALID_ARGUMENT");
    }

    [Fact]
    public async Task FieldOfTheWrongType_Is400()
    {
        await using var h = await FakeFcmHarness.StartAsync();

        Assert.Equal(400, (await h.SendAsync(FakeFcmHarness.Message("\"token\":5"))).Status);
        Assert.Equal(400, (await h.SendAsync(FakeFcmHarness.Message("\"token\":\"t\",\"android\":{\"collapse_key\":1}"))).Status);
        Assert.Equal(400, (await h.SendAsync(FakeFcmHarness.Message("\"token\":\"t\",\"android\":{\"notification\":{\"notification_count\":\"3\"}}"))).Status);
        Assert.Equal(400, (await h.SendAsync("{\"validate_only\":\"yes\",\"message\":{\"token\":\"t\"}}")).Status);
    }

    // --- registry, scripts, injection ------------------------------------------------------------

    [Fact]
    public async Task UnregisteredToken_Is404Unregistered()
    {
        await using var h = await FakeFcmHarness.StartAsync();
        h.Server.Unregister(FakeFcmHarness.Token);

        var answer = await h.SendAsync(FakeFcmHarness.Body());

        AssertGoogleError(answer, 404, "NOT_FOUND", "UNREGISTERED");
        Assert.Equal(1, h.Server.RejectedCountFor("UNREGISTERED"));
        Assert.Equal("UNREGISTERED", Assert.Single(h.Server.Requests).ErrorCode);
    }

    [Fact]
    public async Task TokenOfAnotherSender_Is403SenderIdMismatch()
    {
        await using var h = await FakeFcmHarness.StartAsync();
        h.Server.RegisterToken(FakeFcmHarness.Token, "another-project");

        var answer = await h.SendAsync(FakeFcmHarness.Body());

        AssertGoogleError(answer, 403, "PERMISSION_DENIED", "SENDER_ID_MISMATCH");
    }

    [Fact]
    public async Task RegisteredToken_OfTheProject_IsAccepted_AndReRegisteringRevivesAnUnregisteredOne()
    {
        await using var h = await FakeFcmHarness.StartAsync(new FakeFcmServerOptions { StrictRegistrationTokens = true });
        h.Server.Unregister(FakeFcmHarness.Token);
        h.Server.RegisterToken(FakeFcmHarness.Token, FakeFcmHarness.Project);

        Assert.Equal(200, (await h.SendAsync(FakeFcmHarness.Body())).Status);
    }

    [Fact]
    public async Task StrictMode_UnknownToken_Is400InvalidArgument()
    {
        await using var h = await FakeFcmHarness.StartAsync(new FakeFcmServerOptions { StrictRegistrationTokens = true });

        var answer = await h.SendAsync(FakeFcmHarness.Body("never-registered"));

        AssertGoogleError(answer, 400, "INVALID_ARGUMENT", "INVALID_ARGUMENT");
        Assert.Equal("The registration token is not a valid FCM registration token", answer.Message);
    }

    [Fact]
    public async Task Script_AnswersInOrderWithRetryAfter_ThenAccepts()
    {
        await using var h = await FakeFcmHarness.StartAsync();
        h.Server.Script(FakeFcmHarness.Token, (429, "QUOTA_EXCEEDED", TimeSpan.FromSeconds(30)), (503, "UNAVAILABLE", (TimeSpan?)null));
        h.Server.Script(FakeFcmHarness.Token, (500, "INTERNAL"));

        var first = await h.SendAsync(FakeFcmHarness.Body());
        var second = await h.SendAsync(FakeFcmHarness.Body());
        var third = await h.SendAsync(FakeFcmHarness.Body());
        var other = await h.SendAsync(FakeFcmHarness.Body("other-token"));
        var fourth = await h.SendAsync(FakeFcmHarness.Body());

        AssertGoogleError(first, 429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED");
        Assert.Equal(TimeSpan.FromSeconds(30), first.RetryAfter);
        AssertGoogleError(second, 503, "UNAVAILABLE", "UNAVAILABLE");
        Assert.Null(second.RetryAfter);
        AssertGoogleError(third, 500, "INTERNAL", "INTERNAL");
        Assert.Equal(200, other.Status);
        Assert.Equal(200, fourth.Status);
    }

    [Theory]
    [InlineData(401, "THIRD_PARTY_AUTH_ERROR", "UNAUTHENTICATED")]
    [InlineData(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT")]
    [InlineData(404, "UNREGISTERED", "NOT_FOUND")]
    [InlineData(403, "SENDER_ID_MISMATCH", "PERMISSION_DENIED")]
    public async Task Script_FcmErrorCodes_CarryTheFcmErrorDetail(int status, string errorCode, string statusName)
    {
        await using var h = await FakeFcmHarness.StartAsync();
        h.Server.Script(FakeFcmHarness.Token, (status, errorCode));

        var answer = await h.SendAsync(FakeFcmHarness.Body());

        AssertGoogleError(answer, status, statusName, errorCode);
    }

    [Theory]
    [InlineData(401, "UNAUTHENTICATED", "ACCESS_TOKEN_EXPIRED")]
    [InlineData(403, "PERMISSION_DENIED", "IAM_PERMISSION_DENIED")]
    public async Task Script_GoogleStatuses_HaveNoFcmErrorDetail(int status, string statusName, string infoReason)
    {
        await using var h = await FakeFcmHarness.StartAsync();
        h.Server.Script(FakeFcmHarness.Token, (status, statusName));

        var answer = await h.SendAsync(FakeFcmHarness.Body());

        AssertGoogleError(answer, status, statusName, errorCode: null);
        Assert.Equal(infoReason, answer.InfoReason);
    }

    [Fact]
    public async Task FailNext_AnswersTheNextValidRequestsOfAnyToken()
    {
        await using var h = await FakeFcmHarness.StartAsync();
        h.Server.FailNext(2, 503, "UNAVAILABLE", TimeSpan.FromSeconds(5));

        var invalid = await h.SendAsync(FakeFcmHarness.Message("\"data\":{}"));
        var a = await h.SendAsync(FakeFcmHarness.Body("a"));
        var b = await h.SendAsync(FakeFcmHarness.Body("b"));
        var c = await h.SendAsync(FakeFcmHarness.Body("c"));

        Assert.Equal(400, invalid.Status); // invalid requests do not consume the injection
        AssertGoogleError(a, 503, "UNAVAILABLE", "UNAVAILABLE");
        Assert.Equal(TimeSpan.FromSeconds(5), a.RetryAfter);
        AssertGoogleError(b, 503, "UNAVAILABLE", "UNAVAILABLE");
        Assert.Equal(200, c.Status);
        Assert.Equal(2, h.Server.RejectedCountFor("UNAVAILABLE"));
    }

    [Fact]
    public async Task Waits_CompleteOnMatchingRequestsAndAcceptedCount()
    {
        await using var h = await FakeFcmHarness.StartAsync(new FakeFcmServerOptions { RecordRequests = false });
        var request = h.Server.WaitForRequestAsync(r => r.Token == "b", Ct);
        var accepted = h.Server.WaitForAcceptedAsync(2, Ct);

        await h.SendAsync(FakeFcmHarness.Body("a"));
        Assert.False(request.IsCompleted);
        await h.SendAsync(FakeFcmHarness.Body("b"));

        Assert.Equal("b", (await request).Token);
        await accepted;
        Assert.Empty(h.Server.Requests);
    }

    [Fact]
    public async Task Tls_NegotiatesHttp2WithThePinnedCertificate()
    {
        await using var h = await FakeFcmHarness.StartAsync(new FakeFcmServerOptions { UseTls = true });
        Assert.StartsWith("https://127.0.0.1:", h.Server.BaseUrl, StringComparison.Ordinal);
        Assert.Contains("BEGIN CERTIFICATE", h.Server.CertificatePem, StringComparison.Ordinal);

        var answer = await h.SendAsync(FakeFcmHarness.Body());

        Assert.Equal(200, answer.Status);
        Assert.Equal(HttpVersion.Version20, answer.Version);
        Assert.Equal("HTTP/2", Assert.Single(h.Server.Requests).Protocol);
    }

    private static void AssertGoogleError(FcmAnswer answer, int status, string statusName, string? errorCode)
    {
        Assert.Equal(status, answer.Status);
        Assert.Equal(statusName, answer.ErrorStatus);
        Assert.Equal(errorCode, answer.ErrorCode);
        Assert.False(string.IsNullOrEmpty(answer.Message));
        Assert.Null(answer.Name);
    }
}
