using System.Net;
using System.Security.Cryptography;
using System.Text;
using Herald.Simulators.Apns;
using Xunit;

namespace Herald.Simulators.Tests.Apns;

public sealed class FakeApnsServerTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>A safety net for awaits that would hang if the fake were broken (not a delay: it only fires on failure).</summary>
    private static CancellationTokenSource Guard()
    {
        var cts = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
        cts.CancelAfter(TimeSpan.FromSeconds(30));
        return cts;
    }

    [Fact]
    public async Task ValidRequest_IsAcceptedEchoesApnsIdAndIsRecorded()
    {
        await using var h = await FakeApnsHarness.StartAsync();
        var jwt = h.Jwt();
        var request = h.ValidRequest(jwt: jwt);
        request.Headers.TryAddWithoutValidation("apns-expiration", "1748854800");
        request.Headers.TryAddWithoutValidation("apns-collapse-id", "inbox");

        var (status, reason, _, headers) = await h.SendAsync(request);

        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Null(reason);
        Assert.Equal("6f1d9c1e-2b3a-4c5d-8e9f-0a1b2c3d4e5f", Assert.Single(headers.GetValues("apns-id")));
        Assert.Equal(1, h.Server.AcceptedCount);
        var recorded = Assert.Single(h.Server.Requests);
        Assert.Equal(FakeApnsHarness.Token, recorded.Token);
        Assert.Equal("POST", recorded.Method);
        Assert.Equal(FakeApnsHarness.Topic, recorded.Topic);
        Assert.Equal("alert", recorded.PushType);
        Assert.Equal("10", recorded.Priority);
        Assert.Equal("1748854800", recorded.Expiration);
        Assert.Equal("inbox", recorded.CollapseId);
        Assert.Equal("bearer " + jwt, recorded.Authorization);
        Assert.Equal(FakeApnsHarness.Payload, recorded.Payload);
        Assert.Equal(h.Time.GetUtcNow(), recorded.ReceivedAt);
        Assert.Equal(200, recorded.Status);
        Assert.True(recorded.Accepted);
    }

    [Fact]
    public async Task RequestWithoutApnsId_GetsAGeneratedUuid()
    {
        await using var h = await FakeApnsHarness.StartAsync();
        var request = h.ValidRequest();
        request.Headers.Remove("apns-id");

        var (status, _, _, headers) = await h.SendAsync(request);

        Assert.Equal(HttpStatusCode.OK, status);
        Assert.True(Guid.TryParseExact(Assert.Single(headers.GetValues("apns-id")), "D", out _));
    }

    [Theory]
    [InlineData(16)]
    [InlineData(64)]
    [InlineData(200)]
    public async Task DeviceTokens_OfAnyEvenHexLength_AreAccepted(int length)
    {
        await using var h = await FakeApnsHarness.StartAsync();
        var token = string.Concat(Enumerable.Repeat("a1", length / 2));

        var (status, _, _, _) = await h.SendAsync(h.ValidRequest(token));

        Assert.Equal(HttpStatusCode.OK, status);
    }

    [Theory]
    [InlineData("Get", 405, "MethodNotAllowed")]
    [InlineData("WrongPath", 404, "BadPath")]
    [InlineData("WrongVersionPath", 404, "BadPath")]
    [InlineData("NoToken", 400, "MissingDeviceToken")]
    [InlineData("OddLengthToken", 400, "BadDeviceToken")]
    [InlineData("NonHexToken", 400, "BadDeviceToken")]
    [InlineData("NoTopic", 400, "MissingTopic")]
    [InlineData("UnknownPushType", 400, "InvalidPushType")]
    [InlineData("PrioritySeven", 400, "BadPriority")]
    [InlineData("BackgroundWithPriorityTen", 400, "BadPriority")]
    [InlineData("CollapseId65Bytes", 400, "BadCollapseId")]
    [InlineData("ApnsIdNotUuid", 400, "BadMessageId")]
    [InlineData("ExpirationNotInteger", 400, "BadExpirationDate")]
    [InlineData("EmptyBody", 400, "PayloadEmpty")]
    [InlineData("Body4097", 413, "PayloadTooLarge")]
    [InlineData("VoipBody5121", 413, "PayloadTooLarge")]
    [InlineData("BodyNotJson", 400, FakeApnsServer.BadPayloadReason)]
    [InlineData("BodyJsonArray", 400, FakeApnsServer.BadPayloadReason)]
    [InlineData("NoAuthorization", 403, "MissingProviderToken")]
    [InlineData("MalformedJwt", 403, "InvalidProviderToken")]
    [InlineData("NotBearer", 403, "InvalidProviderToken")]
    [InlineData("AlgHs256", 403, "InvalidProviderToken")]
    [InlineData("UnknownKid", 403, "InvalidProviderToken")]
    [InlineData("WrongTeam", 403, "InvalidProviderToken")]
    [InlineData("WrongSignature", 403, "InvalidProviderToken")]
    [InlineData("IatOlderThanAnHour", 403, "ExpiredProviderToken")]
    [InlineData("IatFarInTheFuture", 403, "InvalidProviderToken")]
    public async Task InvalidRequest_IsRejectedLikeApple(string defect, int expectedStatus, string expectedReason)
    {
        await using var h = await FakeApnsHarness.StartAsync();
        var request = Break(h, defect);

        var (status, reason, timestamp, headers) = await h.SendAsync(request);

        Assert.Equal(expectedStatus, (int)status);
        Assert.Equal(expectedReason, reason);
        Assert.Null(timestamp);
        Assert.Single(headers.GetValues("apns-id"));
        Assert.Equal(0, h.Server.AcceptedCount);
        Assert.Equal(1, h.Server.RejectedCountFor(expectedReason));
        var recorded = Assert.Single(h.Server.Requests);
        Assert.Equal(expectedStatus, recorded.Status);
        Assert.Equal(expectedReason, recorded.Reason);
    }

    private static HttpRequestMessage Break(FakeApnsHarness h, string defect)
    {
        var request = h.ValidRequest();
        var headers = request.Headers;
        void Replace(string name, string value)
        {
            headers.Remove(name);
            headers.TryAddWithoutValidation(name, value);
        }

        void Body(string text) => request.Content = new ByteArrayContent(Encoding.UTF8.GetBytes(text));

        switch (defect)
        {
            case "Get":
                request.Method = HttpMethod.Get;
                request.Content = null;
                break;
            case "WrongPath":
                request.RequestUri = new Uri(h.Server.BaseUrl + "/3/devices/" + FakeApnsHarness.Token);
                break;
            case "WrongVersionPath":
                request.RequestUri = new Uri(h.Server.BaseUrl + "/2/device/" + FakeApnsHarness.Token);
                break;
            case "NoToken":
                request.RequestUri = new Uri(h.Server.BaseUrl + "/3/device/");
                break;
            case "OddLengthToken":
                request.RequestUri = new Uri(h.Server.BaseUrl + "/3/device/abc");
                break;
            case "NonHexToken":
                request.RequestUri = new Uri(h.Server.BaseUrl + "/3/device/zz11");
                break;
            case "NoTopic":
                headers.Remove("apns-topic");
                break;
            case "UnknownPushType":
                Replace("apns-push-type", "banner");
                break;
            case "PrioritySeven":
                Replace("apns-priority", "7");
                break;
            case "BackgroundWithPriorityTen":
                Replace("apns-push-type", "background");
                Body("{\"aps\":{\"content-available\":1}}");
                break;
            case "CollapseId65Bytes":
                headers.TryAddWithoutValidation("apns-collapse-id", new string('c', 65));
                break;
            case "ApnsIdNotUuid":
                Replace("apns-id", "not-a-uuid");
                break;
            case "ExpirationNotInteger":
                headers.TryAddWithoutValidation("apns-expiration", "tomorrow");
                break;
            case "EmptyBody":
                Body(string.Empty);
                break;
            case "Body4097":
                Body("{\"aps\":{},\"x\":\"" + new string('x', 4097 - 17) + "\"}");
                Assert.Equal(4097, request.Content!.Headers.ContentLength);
                break;
            case "VoipBody5121":
                Replace("apns-push-type", "voip");
                Body("{\"aps\":{},\"x\":\"" + new string('x', 5121 - 17) + "\"}");
                break;
            case "BodyNotJson":
                Body("badge=3");
                break;
            case "BodyJsonArray":
                Body("[1,2,3]");
                break;
            case "NoAuthorization":
                headers.Remove("authorization");
                break;
            case "MalformedJwt":
                Replace("authorization", "bearer not.a-jwt");
                break;
            case "NotBearer":
                Replace("authorization", "basic " + h.Jwt());
                break;
            case "AlgHs256":
                Replace("authorization", "bearer " + TestJwt.Create(h.Key, FakeApnsHarness.KeyId, FakeApnsHarness.TeamId, h.Time.GetUtcNow(), alg: "HS256"));
                break;
            case "UnknownKid":
                Replace("authorization", "bearer " + TestJwt.Create(h.Key, "OTHERKEY00", FakeApnsHarness.TeamId, h.Time.GetUtcNow()));
                break;
            case "WrongTeam":
                Replace("authorization", "bearer " + TestJwt.Create(h.Key, FakeApnsHarness.KeyId, "OTHERTEAM0", h.Time.GetUtcNow()));
                break;
            case "WrongSignature":
                using (var other = ECDsa.Create(ECCurve.NamedCurves.nistP256))
                {
                    Replace("authorization", "bearer " + TestJwt.Create(other, FakeApnsHarness.KeyId, FakeApnsHarness.TeamId, h.Time.GetUtcNow()));
                }

                break;
            case "IatOlderThanAnHour":
                Replace("authorization", "bearer " + h.Jwt(h.Time.GetUtcNow().AddMinutes(-61)));
                break;
            case "IatFarInTheFuture":
                Replace("authorization", "bearer " + h.Jwt(h.Time.GetUtcNow().AddHours(2)));
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(defect), defect, null);
        }

        return request;
    }

    [Fact]
    public async Task VoipPayloadUpTo5120Bytes_IsAccepted()
    {
        await using var h = await FakeApnsHarness.StartAsync();
        var request = h.ValidRequest(payload: "{\"aps\":{},\"x\":\"" + new string('x', 5000 - 17) + "\"}");
        request.Headers.Remove("apns-push-type");
        request.Headers.TryAddWithoutValidation("apns-push-type", "voip");

        var (status, _, _, _) = await h.SendAsync(request);

        Assert.Equal(HttpStatusCode.OK, status);
    }

    [Fact]
    public async Task HeaderSentTwice_IsRejectedWithDuplicateHeaders()
    {
        await using var h = await FakeApnsHarness.StartAsync();
        (string, string)[] headers =
        [
            ("authorization", "bearer " + h.Jwt()),
            ("apns-topic", FakeApnsHarness.Topic),
            ("apns-topic", FakeApnsHarness.Topic),
            ("apns-push-type", "alert"),
        ];

        var (status, body) = await RawHttp2Client.SendAsync(new Uri(h.Server.BaseUrl), "/3/device/" + FakeApnsHarness.Token, headers, FakeApnsHarness.Payload, Ct);

        Assert.Equal(400, status);
        Assert.Equal("{\"reason\":\"DuplicateHeaders\"}", body);
    }

    [Fact]
    public async Task SameHeadersOnce_OverRawClient_AreAccepted()
    {
        await using var h = await FakeApnsHarness.StartAsync();
        (string, string)[] headers = [("authorization", "bearer " + h.Jwt()), ("apns-topic", FakeApnsHarness.Topic)];

        var (status, body) = await RawHttp2Client.SendAsync(new Uri(h.Server.BaseUrl), "/3/device/" + FakeApnsHarness.Token, headers, FakeApnsHarness.Payload, Ct);

        Assert.Equal(200, status);
        Assert.Equal(string.Empty, body);
    }

    [Fact]
    public async Task TopicNotAllowedForKey_IsRejectedWithTopicDisallowed()
    {
        await using var h = await FakeApnsHarness.StartAsync(null, "com.example.other");

        var (status, reason, _, _) = await h.SendAsync(h.ValidRequest());

        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Equal("TopicDisallowed", reason);
    }

    [Fact]
    public async Task TopicAllowedForKey_WithPushTypeSuffix_IsAccepted()
    {
        await using var h = await FakeApnsHarness.StartAsync(null, FakeApnsHarness.Topic);
        var request = h.ValidRequest();
        request.Headers.Remove("apns-topic");
        request.Headers.TryAddWithoutValidation("apns-topic", FakeApnsHarness.Topic + ".voip");

        var (status, _, _, _) = await h.SendAsync(request);

        Assert.Equal(HttpStatusCode.OK, status);
    }

    [Fact]
    public async Task OneTokenReused_IsAcceptedUntilAnHourOld_ThenExpired()
    {
        await using var h = await FakeApnsHarness.StartAsync();
        var jwt = h.Jwt();

        Assert.Equal(HttpStatusCode.OK, (await h.SendAsync(h.ValidRequest(jwt: jwt))).Status);
        h.Time.Advance(TimeSpan.FromMinutes(59));
        Assert.Equal(HttpStatusCode.OK, (await h.SendAsync(h.ValidRequest(jwt: jwt))).Status);
        h.Time.Advance(TimeSpan.FromMinutes(2));
        var (status, reason, _, _) = await h.SendAsync(h.ValidRequest(jwt: jwt));

        Assert.Equal(HttpStatusCode.Forbidden, status);
        Assert.Equal("ExpiredProviderToken", reason);
    }

    [Fact]
    public async Task NewTokensMoreOftenThanEvery20Minutes_GetTooManyProviderTokenUpdates()
    {
        await using var h = await FakeApnsHarness.StartAsync();
        var first = h.Jwt();
        Assert.Equal(HttpStatusCode.OK, (await h.SendAsync(h.ValidRequest(jwt: first))).Status);

        // The grace: one replacement inside the window is accepted (a renewal after ExpiredProviderToken).
        h.Time.Advance(TimeSpan.FromMinutes(1));
        Assert.Equal(HttpStatusCode.OK, (await h.SendAsync(h.ValidRequest(jwt: h.Jwt()))).Status);

        h.Time.Advance(TimeSpan.FromMinutes(1));
        var third = h.Jwt();
        var (status, reason, _, _) = await h.SendAsync(h.ValidRequest(jwt: third));
        Assert.Equal((HttpStatusCode)429, status);
        Assert.Equal("TooManyProviderTokenUpdates", reason);

        // Tokens already in use keep working.
        Assert.Equal(HttpStatusCode.OK, (await h.SendAsync(h.ValidRequest(jwt: first))).Status);

        // Once the window has moved on, the same new token is accepted.
        h.Time.Advance(TimeSpan.FromMinutes(19.5));
        Assert.Equal(HttpStatusCode.OK, (await h.SendAsync(h.ValidRequest(jwt: third))).Status);
    }

    [Fact]
    public async Task WithoutGrace_TheFirstReplacementWithin20Minutes_IsRejected()
    {
        await using var h = await FakeApnsHarness.StartAsync(new FakeApnsServerOptions { ProviderTokenUpdateGrace = 0 });
        Assert.Equal(HttpStatusCode.OK, (await h.SendAsync(h.ValidRequest(jwt: h.Jwt()))).Status);
        h.Time.Advance(TimeSpan.FromMinutes(19));

        var (status, reason, _, _) = await h.SendAsync(h.ValidRequest(jwt: h.Jwt()));

        Assert.Equal((HttpStatusCode)429, status);
        Assert.Equal("TooManyProviderTokenUpdates", reason);
    }

    [Fact]
    public async Task SigningKeyFromPem_IsUsedToVerifyTokens()
    {
        await using var h = await FakeApnsHarness.StartAsync();
        var pem = h.Server.GenerateSigningKey("TEAM999999", "KEY9999999");
        using var key = ECDsa.Create();
        key.ImportFromPem(pem);
        var jwt = TestJwt.Create(key, "KEY9999999", "TEAM999999", h.Time.GetUtcNow());

        var (status, _, _, _) = await h.SendAsync(h.ValidRequest(jwt: jwt));

        Assert.Equal(HttpStatusCode.OK, status);
    }

    [Fact]
    public async Task DeviceRegisteredForAnotherTopic_IsRejectedWithDeviceTokenNotForTopic()
    {
        await using var h = await FakeApnsHarness.StartAsync();
        h.Server.RegisterDevice(FakeApnsHarness.Token, "com.example.other");

        var (status, reason, _, _) = await h.SendAsync(h.ValidRequest());

        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Equal("DeviceTokenNotForTopic", reason);
    }

    [Fact]
    public async Task DeviceRegisteredForSandbox_OnProductionServer_IsRejectedWithBadDeviceToken()
    {
        await using var h = await FakeApnsHarness.StartAsync();
        h.Server.RegisterDevice(FakeApnsHarness.Token, FakeApnsHarness.Topic, FakeApnsEnvironment.Sandbox);

        var (status, reason, _, _) = await h.SendAsync(h.ValidRequest());

        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Equal("BadDeviceToken", reason);
    }

    [Fact]
    public async Task RegisteredDevice_IsAccepted()
    {
        await using var h = await FakeApnsHarness.StartAsync(new FakeApnsServerOptions { StrictDeviceTokens = true });
        h.Server.RegisterDevice(FakeApnsHarness.Token, FakeApnsHarness.Topic);

        var (status, _, _, _) = await h.SendAsync(h.ValidRequest());

        Assert.Equal(HttpStatusCode.OK, status);
    }

    [Fact]
    public async Task StrictMode_UnknownToken_IsRejectedWithBadDeviceToken()
    {
        await using var h = await FakeApnsHarness.StartAsync(new FakeApnsServerOptions { StrictDeviceTokens = true });

        var (status, reason, _, _) = await h.SendAsync(h.ValidRequest());

        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Equal("BadDeviceToken", reason);
    }

    [Fact]
    public async Task UnregisteredToken_Gets410WithTimestampInMilliseconds()
    {
        await using var h = await FakeApnsHarness.StartAsync();
        var since = new DateTimeOffset(2025, 5, 30, 12, 34, 56, 789, TimeSpan.Zero);
        h.Server.Unregister(FakeApnsHarness.Token, since);

        var (status, reason, timestamp, _) = await h.SendAsync(h.ValidRequest());

        Assert.Equal(HttpStatusCode.Gone, status);
        Assert.Equal("Unregistered", reason);
        Assert.Equal(since.ToUnixTimeMilliseconds(), timestamp);
    }

    [Fact]
    public async Task ScriptedResponses_AreConsumedInOrder_ThenNormalServiceResumes()
    {
        await using var h = await FakeApnsHarness.StartAsync();
        h.Server.Script(FakeApnsHarness.Token, (503, "ServiceUnavailable"), (410, "ExpiredToken"), (200, ""));

        var first = await h.SendAsync(h.ValidRequest());
        var second = await h.SendAsync(h.ValidRequest());
        var third = await h.SendAsync(h.ValidRequest());
        var fourth = await h.SendAsync(h.ValidRequest());

        Assert.Equal((HttpStatusCode.ServiceUnavailable, "ServiceUnavailable"), (first.Status, first.Reason));
        Assert.Equal((HttpStatusCode.Gone, "ExpiredToken"), (second.Status, second.Reason));
        Assert.Equal(h.Time.GetUtcNow().ToUnixTimeMilliseconds(), second.Timestamp);
        Assert.Equal(HttpStatusCode.OK, third.Status);
        Assert.Equal(HttpStatusCode.OK, fourth.Status);
    }

    [Fact]
    public async Task ScriptedResponses_AreNotConsumedByInvalidRequests()
    {
        await using var h = await FakeApnsHarness.StartAsync();
        h.Server.Script(FakeApnsHarness.Token, (410, "Unregistered"));
        var invalid = h.ValidRequest();
        invalid.Headers.Remove("apns-topic");

        Assert.Equal("MissingTopic", (await h.SendAsync(invalid)).Reason);
        Assert.Equal("Unregistered", (await h.SendAsync(h.ValidRequest())).Reason);
    }

    [Fact]
    public async Task FailNext_AnswersTheNextRequestsWithTheGivenStatusAndRetryAfter()
    {
        await using var h = await FakeApnsHarness.StartAsync();
        h.Server.FailNext(2, 503, "ServiceUnavailable", TimeSpan.FromSeconds(90));

        var first = await h.SendAsync(h.ValidRequest());
        var second = await h.SendAsync(h.ValidRequest("abcd"));
        var third = await h.SendAsync(h.ValidRequest());

        Assert.Equal(HttpStatusCode.ServiceUnavailable, first.Status);
        Assert.Equal("ServiceUnavailable", first.Reason);
        Assert.Equal(TimeSpan.FromSeconds(90), first.Headers.RetryAfter?.Delta);
        Assert.Equal(HttpStatusCode.ServiceUnavailable, second.Status);
        Assert.Equal(HttpStatusCode.OK, third.Status);
        Assert.Equal(2, h.Server.RejectedCountFor("ServiceUnavailable"));
    }

    [Fact]
    public async Task TooManyRequests_ForOneToken_Answers429ThenRecovers()
    {
        await using var h = await FakeApnsHarness.StartAsync();
        h.Server.TooManyRequests(FakeApnsHarness.Token, 1, TimeSpan.FromSeconds(30));

        var throttled = await h.SendAsync(h.ValidRequest());
        var other = await h.SendAsync(h.ValidRequest("abcd"));
        var again = await h.SendAsync(h.ValidRequest());

        Assert.Equal((HttpStatusCode)429, throttled.Status);
        Assert.Equal("TooManyRequests", throttled.Reason);
        Assert.Equal(TimeSpan.FromSeconds(30), throttled.Headers.RetryAfter?.Delta);
        Assert.Equal(HttpStatusCode.OK, other.Status);
        Assert.Equal(HttpStatusCode.OK, again.Status);
    }

    [Fact]
    public async Task WaitForAcceptedAsync_CompletesWhenTheCountIsReached()
    {
        await using var h = await FakeApnsHarness.StartAsync();
        using var guard = Guard();
        var waiting = h.Server.WaitForAcceptedAsync(3, guard.Token);

        for (var i = 0; i < 3; i++)
        {
            Assert.False(waiting.IsCompleted);
            await h.SendAsync(h.ValidRequest());
        }

        await waiting;
        Assert.Equal(3, h.Server.AcceptedCount);
        await h.Server.WaitForAcceptedAsync(2, guard.Token); // already reached: completes at once
    }

    [Fact]
    public async Task WaitForRequestAsync_SeesRecordedAndFutureRequests()
    {
        await using var h = await FakeApnsHarness.StartAsync();
        using var guard = Guard();
        await h.SendAsync(h.ValidRequest("aa11"));
        var future = h.Server.WaitForRequestAsync(r => r.Token == "bb22", guard.Token);

        var past = await h.Server.WaitForRequestAsync(r => r.Token == "aa11", guard.Token);
        Assert.False(future.IsCompleted);
        await h.SendAsync(h.ValidRequest("bb22"));

        Assert.Equal(200, past.Status);
        Assert.Equal("bb22", (await future).Token);
    }

    [Fact]
    public async Task WaitForRequestAsync_IsCancelledByItsToken()
    {
        await using var h = await FakeApnsHarness.StartAsync();
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        var waiting = h.Server.WaitForRequestAsync(_ => false, cts.Token);

        await cts.CancelAsync();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => waiting);
    }

    [Fact]
    public async Task RecordingOff_KeepsNoRequestsButCountsAndWaits()
    {
        await using var h = await FakeApnsHarness.StartAsync(new FakeApnsServerOptions { RecordRequests = false });
        using var guard = Guard();
        var waiting = h.Server.WaitForRequestAsync(r => r.Token == FakeApnsHarness.Token, guard.Token);
        var invalid = h.ValidRequest();
        invalid.Headers.Remove("apns-topic");

        await h.SendAsync(h.ValidRequest());
        await h.SendAsync(invalid);

        Assert.Empty(h.Server.Requests);
        Assert.Equal(1, h.Server.AcceptedCount);
        Assert.Equal(1, h.Server.RejectedCount);
        Assert.Equal(1, h.Server.RejectedByReason()["MissingTopic"]);
        Assert.Equal(200, (await waiting).Status);
    }

    [Fact]
    public async Task MaxRecordedRequests_KeepsTheNewest()
    {
        await using var h = await FakeApnsHarness.StartAsync(new FakeApnsServerOptions { MaxRecordedRequests = 2 });

        await h.SendAsync(h.ValidRequest("aa"));
        await h.SendAsync(h.ValidRequest("bb"));
        await h.SendAsync(h.ValidRequest("cc"));

        Assert.Equal(["bb", "cc"], h.Server.Requests.Select(r => r.Token));
    }

    [Fact]
    public async Task ConcurrentRequests_OnOneConnection_AreAllAccepted()
    {
        await using var h = await FakeApnsHarness.StartAsync(new FakeApnsServerOptions { MaxStreamsPerConnection = 8 });
        var jwt = h.Jwt();

        // One request first, so the client has the server's SETTINGS (8 streams) before it opens many:
        // until then it assumes 100, and Kestrel refuses the excess and then closes the connection.
        Assert.Equal(HttpStatusCode.OK, (await h.SendAsync(h.ValidRequest("ffff", jwt: jwt))).Status);
        var results = await Task.WhenAll(Enumerable.Range(0, 100).Select(i => h.SendAsync(h.ValidRequest(i.ToString("x4", System.Globalization.CultureInfo.InvariantCulture), jwt: jwt))));

        Assert.All(results, r => Assert.Equal(HttpStatusCode.OK, r.Status));
        Assert.Equal(101, h.Server.AcceptedCount);
    }

    [Fact]
    public async Task TlsMode_WorksWithTheExportedCertificate()
    {
        await using var h = await FakeApnsHarness.StartAsync(new FakeApnsServerOptions { UseTls = true });
        Assert.StartsWith("https://127.0.0.1:", h.Server.BaseUrl, StringComparison.Ordinal);
        Assert.Contains("-----BEGIN CERTIFICATE-----", h.Server.CertificatePem, StringComparison.Ordinal);

        var (status, _, _, _) = await h.SendAsync(h.ValidRequest());

        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal(1, h.Server.AcceptedCount);
    }

    [Fact]
    public async Task TlsMode_IsNotTrustedWithoutTheCertificate()
    {
        await using var h = await FakeApnsHarness.StartAsync(new FakeApnsServerOptions { UseTls = true });
        using var client = new HttpClient(new SocketsHttpHandler());

        await Assert.ThrowsAsync<HttpRequestException>(() => client.SendAsync(h.ValidRequest(), Ct));
    }

    [Fact]
    public async Task Http11Request_IsNotServed()
    {
        await using var h = await FakeApnsHarness.StartAsync();
        var request = h.ValidRequest();
        request.Version = HttpVersion.Version11;

        // Kestrel's HTTP/2-only endpoint answers an HTTP/1.1 request line with an HTTP/1.1 error, as APNs refuses HTTP/1.
        using var response = await h.Client.SendAsync(request, Ct);

        Assert.Equal(HttpVersion.Version11, response.Version);
        Assert.NotEqual(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(0, h.Server.AcceptedCount + h.Server.RejectedCount);
    }
}
