using System.Net;
using System.Text;
using Herald.Simulators.Wns;
using Xunit;

namespace Herald.Simulators.Tests.Wns;

public sealed class FakeWnsServerTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>A safety net for awaits that would hang if the fake were broken (not a delay: it only fires on failure).</summary>
    private static CancellationTokenSource Guard()
    {
        var cts = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
        cts.CancelAfter(TimeSpan.FromSeconds(30));
        return cts;
    }

    // ---- Token endpoint ------------------------------------------------------------------------

    [Fact]
    public async Task Token_ValidCredentials_IssuesABearerTokenForADay()
    {
        await using var h = await FakeWnsHarness.StartAsync();

        var (status, body, response) = await h.RequestTokenAsync();

        using (response)
        {
            Assert.Equal(HttpStatusCode.OK, status);
            Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
            Assert.True(response.Headers.CacheControl?.NoStore);
        }

        Assert.False(string.IsNullOrEmpty(body.GetProperty("access_token").GetString()));
        Assert.Equal("bearer", body.GetProperty("token_type").GetString());
        Assert.Equal(86400, body.GetProperty("expires_in").GetInt64());
        Assert.Equal(1, h.Server.TokenRequests);
        Assert.Equal(1, h.Server.TokensIssued);
    }

    [Theory]
    [InlineData(FakeWnsHarness.PackageSid, "wrong-secret", "client_credentials", "notify.windows.com", "invalid_client")]
    [InlineData("ms-app://s-1-15-2-unknown", FakeWnsHarness.Secret, "client_credentials", "notify.windows.com", "invalid_client")]
    [InlineData(null, FakeWnsHarness.Secret, "client_credentials", "notify.windows.com", "invalid_client")]
    [InlineData(FakeWnsHarness.PackageSid, null, "client_credentials", "notify.windows.com", "invalid_client")]
    [InlineData(FakeWnsHarness.PackageSid, FakeWnsHarness.Secret, "password", "notify.windows.com", "unsupported_grant_type")]
    [InlineData(FakeWnsHarness.PackageSid, FakeWnsHarness.Secret, null, "notify.windows.com", "unsupported_grant_type")]
    [InlineData(FakeWnsHarness.PackageSid, FakeWnsHarness.Secret, "client_credentials", "s.notify.live.net.evil", "invalid_scope")]
    [InlineData(FakeWnsHarness.PackageSid, FakeWnsHarness.Secret, "client_credentials", null, "invalid_scope")]
    public async Task Token_BadForm_Is400WithOAuthError(string? clientId, string? secret, string? grantType, string? scope, string error)
    {
        await using var h = await FakeWnsHarness.StartAsync();

        var (status, body, response) = await h.RequestTokenAsync(clientId, secret, grantType, scope);
        response.Dispose();

        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Equal(error, body.GetProperty("error").GetString());
        Assert.Equal(0, h.Server.TokensIssued);
        Assert.Equal(1, h.Server.TokenRequests);
    }

    [Fact]
    public async Task Token_NotAForm_Is400InvalidRequest()
    {
        await using var h = await FakeWnsHarness.StartAsync();

        using var response = await h.Client.PostAsync(
            h.Server.TokenUrl,
            new StringContent("{\"grant_type\":\"client_credentials\"}", Encoding.UTF8, "application/json"),
            Ct);

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Contains("invalid_request", await response.Content.ReadAsStringAsync(Ct), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Token_Get_Is405()
    {
        await using var h = await FakeWnsHarness.StartAsync();

        using var response = await h.Client.GetAsync(h.Server.TokenUrl, Ct);

        Assert.Equal(HttpStatusCode.MethodNotAllowed, response.StatusCode);
    }

    [Fact]
    public async Task Token_FailTokenRequests_AnswersTheStatusThenRecovers()
    {
        await using var h = await FakeWnsHarness.StartAsync();
        h.Server.FailTokenRequests(1, 503);

        var (first, _, r1) = await h.RequestTokenAsync();
        r1.Dispose();
        var (second, _, r2) = await h.RequestTokenAsync();
        r2.Dispose();

        Assert.Equal(HttpStatusCode.ServiceUnavailable, first);
        Assert.Equal(HttpStatusCode.OK, second);
        Assert.Equal(2, h.Server.TokenRequests);
        Assert.Equal(1, h.Server.TokensIssued);
    }

    // ---- Accepted notifications ----------------------------------------------------------------

    [Fact]
    public async Task Badge_Valid_IsAcceptedWithWnsHeadersAndRecorded()
    {
        await using var h = await FakeWnsHarness.StartAsync();
        var token = await h.TokenAsync();
        var channel = h.Server.CreateChannel(FakeWnsHarness.PackageSid);
        var request = FakeWnsHarness.Request(channel, token);
        request.Headers.TryAddWithoutValidation("X-WNS-RequestForStatus", "true");
        request.Headers.TryAddWithoutValidation("X-WNS-TTL", "3600");

        using var response = await h.SendAsync(request);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("received", FakeWnsHarness.Header(response, "X-WNS-Status"));
        Assert.Equal("connected", FakeWnsHarness.Header(response, "X-WNS-DeviceConnectionStatus"));
        var messageId = FakeWnsHarness.Header(response, "X-WNS-Msg-ID");
        Assert.NotNull(messageId);
        Assert.Equal(16, messageId.Length);
        Assert.Null(FakeWnsHarness.Header(response, "X-WNS-NotificationStatus"));
        Assert.Equal(1, h.Server.AcceptedCount);
        Assert.Equal(0, h.Server.RejectedCount);

        var recorded = Assert.Single(h.Server.Requests);
        Assert.Equal("POST", recorded.Method);
        Assert.Equal(channel, recorded.Channel);
        Assert.Equal("wns/badge", recorded.Type);
        Assert.Equal("text/xml", recorded.ContentType);
        Assert.Equal("Bearer " + token, recorded.Authorization);
        Assert.Equal("3600", recorded.Ttl);
        Assert.Equal("true", recorded.RequestForStatus);
        Assert.Equal(FakeWnsHarness.BadgeXml, recorded.Body);
        Assert.Equal(h.Time.GetUtcNow(), recorded.ReceivedAt);
        Assert.Equal(messageId, recorded.MessageId);
        Assert.True(recorded.Accepted);
    }

    [Fact]
    public async Task Badge_WithoutRequestForStatus_HasNoDeviceConnectionStatus()
    {
        await using var h = await FakeWnsHarness.StartAsync();
        var token = await h.TokenAsync();

        using var response = await h.SendAsync(FakeWnsHarness.Request(h.Server.CreateChannel(), token));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Null(FakeWnsHarness.Header(response, "X-WNS-DeviceConnectionStatus"));
    }

    [Fact]
    public async Task LegacyStatusHeader_AnswersXWnsNotificationStatus()
    {
        await using var h = await FakeWnsHarness.StartAsync(new FakeWnsServerOptions { LegacyStatusHeader = true });
        var token = await h.TokenAsync();

        using var response = await h.SendAsync(FakeWnsHarness.Request(h.Server.CreateChannel(), token));

        Assert.Equal("received", FakeWnsHarness.Header(response, "X-WNS-NotificationStatus"));
        Assert.Null(FakeWnsHarness.Header(response, "X-WNS-Status"));
    }

    [Theory]
    [InlineData("wns/badge", "<badge value=\"0\"/>", "text/xml")]
    [InlineData("wns/badge", "<badge value=\"150\"/>", "text/xml")]
    [InlineData("wns/badge", "<badge value=\"newMessage\"/>", "text/xml; charset=utf-8")]
    [InlineData("wns/toast", "<toast><visual><binding template=\"ToastGeneric\"><text>Hi &amp; bye</text></binding></visual></toast>", "text/xml")]
    [InlineData("wns/tile", "<tile><visual><binding template=\"TileMedium\"><text>3 new</text></binding></visual></tile>", "text/xml")]
    [InlineData("wns/raw", "{\"folder\":\"inbox\"}", "application/octet-stream")]
    [InlineData("wns/raw", "not xml, not json: raw is opaque", "application/octet-stream")]
    public async Task ValidPayloads_OfEachType_AreAccepted(string type, string body, string contentType)
    {
        await using var h = await FakeWnsHarness.StartAsync();
        var token = await h.TokenAsync();

        using var response = await h.SendAsync(FakeWnsHarness.Request(h.Server.CreateChannel(), token, type, body, contentType));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(1, h.Server.AcceptedCount);
    }

    [Fact]
    public async Task Raw_ExactlyTheLimit_IsAccepted()
    {
        await using var h = await FakeWnsHarness.StartAsync();
        var token = await h.TokenAsync();

        using var response = await h.SendAsync(FakeWnsHarness.Request(h.Server.CreateChannel(), token, "wns/raw", new string('x', 5000), "application/octet-stream"));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(5000, Assert.Single(h.Server.Requests).BodyLength);
    }

    // ---- Authentication -------------------------------------------------------------------------

    [Fact]
    public async Task NoAuthorization_Is401MissingTokenWithChallenge()
    {
        await using var h = await FakeWnsHarness.StartAsync();

        using var response = await h.SendAsync(FakeWnsHarness.Request(h.Server.CreateChannel(), token: null));

        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        Assert.StartsWith("Bearer", FakeWnsHarness.Header(response, "WWW-Authenticate"), StringComparison.Ordinal);
        Assert.NotNull(FakeWnsHarness.Header(response, "X-WNS-Error-Description"));
        Assert.Equal(1, h.Server.RejectedCountFor("MissingToken"));
    }

    [Fact]
    public async Task UnknownToken_Is401InvalidToken()
    {
        await using var h = await FakeWnsHarness.StartAsync();

        using var response = await h.SendAsync(FakeWnsHarness.Request(h.Server.CreateChannel(), "EgAcAQMAAAAALYAAY/c+Huwi3Fv4Ck10UrKNmtxRO6Njk2MgA="));

        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        Assert.Contains("invalid_token", FakeWnsHarness.Header(response, "WWW-Authenticate"), StringComparison.Ordinal);
        Assert.Equal(1, h.Server.RejectedCountFor("InvalidToken"));
    }

    [Fact]
    public async Task ExpiredToken_Is401TokenExpired()
    {
        await using var h = await FakeWnsHarness.StartAsync();
        var token = await h.TokenAsync();
        h.Time.Advance(TimeSpan.FromDays(1));

        using var response = await h.SendAsync(FakeWnsHarness.Request(h.Server.CreateChannel(), token));

        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        Assert.Equal("Token expired", FakeWnsHarness.Header(response, "X-WNS-Error-Description"));
        Assert.Equal(1, h.Server.RejectedCountFor("TokenExpired"));
    }

    [Fact]
    public async Task RevokedToken_Is401_AndANewTokenWorks()
    {
        await using var h = await FakeWnsHarness.StartAsync();
        var channel = h.Server.CreateChannel();
        var old = await h.TokenAsync();
        h.Server.RevokeAccessTokens();

        using var rejected = await h.SendAsync(FakeWnsHarness.Request(channel, old));
        using var accepted = await h.SendAsync(FakeWnsHarness.Request(channel, await h.TokenAsync()));

        Assert.Equal(HttpStatusCode.Unauthorized, rejected.StatusCode);
        Assert.Equal(HttpStatusCode.OK, accepted.StatusCode);
    }

    // ---- Channels -------------------------------------------------------------------------------

    [Fact]
    public async Task UnknownChannel_Is404()
    {
        await using var h = await FakeWnsHarness.StartAsync();
        var token = await h.TokenAsync();

        using var response = await h.SendAsync(FakeWnsHarness.Request(h.Server.BaseUrl + "/?token=AwYAAABunknown", token));

        Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
        Assert.Equal(1, h.Server.RejectedCountFor("ChannelNotFound"));
    }

    [Theory]
    [InlineData("/")]
    [InlineData("/other?token=abc")]
    [InlineData("/?notoken=abc")]
    public async Task MalformedChannelUri_Is404(string pathAndQuery)
    {
        await using var h = await FakeWnsHarness.StartAsync();
        var token = await h.TokenAsync();

        using var response = await h.SendAsync(FakeWnsHarness.Request(h.Server.BaseUrl + pathAndQuery, token));

        Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
    }

    [Fact]
    public async Task ExpiredChannel_Is410()
    {
        await using var h = await FakeWnsHarness.StartAsync();
        var token = await h.TokenAsync();
        var channel = h.Server.CreateChannel();
        h.Server.Expire(channel);

        using var response = await h.SendAsync(FakeWnsHarness.Request(channel, token));

        Assert.Equal(HttpStatusCode.Gone, response.StatusCode);
        Assert.Equal(1, h.Server.RejectedCountFor("ChannelExpired"));
    }

    [Fact]
    public async Task ChannelOfAnotherApp_Is403()
    {
        await using var h = await FakeWnsHarness.StartAsync();
        h.Server.AddApplication("ms-app://s-1-15-2-other", "other-secret");
        var token = await h.TokenAsync();
        var channel = h.Server.CreateChannel("ms-app://s-1-15-2-other");

        using var response = await h.SendAsync(FakeWnsHarness.Request(channel, token));

        Assert.Equal(HttpStatusCode.Forbidden, response.StatusCode);
        Assert.Equal(1, h.Server.RejectedCountFor("WrongApplication"));
    }

    [Fact]
    public async Task Get_Is405()
    {
        await using var h = await FakeWnsHarness.StartAsync();
        var channel = h.Server.CreateChannel();

        using var response = await h.Client.GetAsync(channel, Ct);

        Assert.Equal(HttpStatusCode.MethodNotAllowed, response.StatusCode);
    }

    // ---- Request validation ---------------------------------------------------------------------

    [Theory]
    [InlineData("X-WNS-Type", null, "InvalidType")]
    [InlineData("X-WNS-Type", "wns/banner", "InvalidType")]
    [InlineData("X-WNS-TTL", "soon", "InvalidTtl")]
    [InlineData("X-WNS-TTL", "-1", "InvalidTtl")]
    [InlineData("X-WNS-TTL", "1.5", "InvalidTtl")]
    [InlineData("X-WNS-Tag", "abcdefghijklmnopq", "InvalidTag")]
    [InlineData("X-WNS-Tag", "has-dash", "InvalidTag")]
    [InlineData("X-WNS-RequestForStatus", "yes", "InvalidRequestForStatus")]
    [InlineData("X-WNS-Cache-Policy", "sometimes", "InvalidCachePolicy")]
    public async Task BadHeader_Is400(string header, string? value, string reason)
    {
        await using var h = await FakeWnsHarness.StartAsync();
        var token = await h.TokenAsync();
        var request = FakeWnsHarness.Request(h.Server.CreateChannel(), token);
        request.Headers.Remove(header);
        if (value is not null)
        {
            request.Headers.TryAddWithoutValidation(header, value);
        }

        using var response = await h.SendAsync(request);

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.NotNull(FakeWnsHarness.Header(response, "X-WNS-Error-Description"));
        Assert.Equal(reason, Assert.Single(h.Server.Requests).Reason);
    }

    [Theory]
    [InlineData("X-WNS-Tag", "inbox16charsXYZ1")]
    [InlineData("X-WNS-TTL", "0")]
    [InlineData("X-WNS-Cache-Policy", "no-cache")]
    [InlineData("X-WNS-RequestForStatus", "false")]
    public async Task ValidOptionalHeader_IsAccepted(string header, string value)
    {
        await using var h = await FakeWnsHarness.StartAsync();
        var token = await h.TokenAsync();
        var request = FakeWnsHarness.Request(h.Server.CreateChannel(), token);
        request.Headers.TryAddWithoutValidation(header, value);

        using var response = await h.SendAsync(request);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
    }

    [Theory]
    [InlineData("wns/badge", null)]
    [InlineData("wns/badge", "application/octet-stream")]
    [InlineData("wns/badge", "application/xml")]
    [InlineData("wns/toast", "text/plain")]
    [InlineData("wns/raw", "text/xml")]
    [InlineData("wns/raw", "application/json")]
    public async Task WrongContentType_Is400(string type, string? contentType)
    {
        await using var h = await FakeWnsHarness.StartAsync();
        var token = await h.TokenAsync();
        var body = type == "wns/toast" ? "<toast/>" : FakeWnsHarness.BadgeXml;

        using var response = await h.SendAsync(FakeWnsHarness.Request(h.Server.CreateChannel(), token, type, body, contentType));

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Equal(1, h.Server.RejectedCountFor("InvalidContentType"));
    }

    [Fact]
    public async Task ChunkedBody_Is411()
    {
        await using var h = await FakeWnsHarness.StartAsync();
        var token = await h.TokenAsync();
        var request = FakeWnsHarness.Request(h.Server.CreateChannel(), token);
        request.Headers.TransferEncodingChunked = true;

        using var response = await h.SendAsync(request);

        Assert.Equal(HttpStatusCode.LengthRequired, response.StatusCode);
        Assert.Equal(1, h.Server.RejectedCountFor("LengthRequired"));
    }

    [Fact]
    public async Task EmptyBody_Is400()
    {
        await using var h = await FakeWnsHarness.StartAsync();
        var token = await h.TokenAsync();

        using var response = await h.SendAsync(FakeWnsHarness.Request(h.Server.CreateChannel(), token, body: string.Empty));

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Equal(1, h.Server.RejectedCountFor("EmptyPayload"));
    }

    [Fact]
    public async Task BodyOverTheLimit_Is413()
    {
        await using var h = await FakeWnsHarness.StartAsync();
        var token = await h.TokenAsync();

        using var response = await h.SendAsync(FakeWnsHarness.Request(h.Server.CreateChannel(), token, "wns/raw", new string('x', 5001), "application/octet-stream"));

        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, response.StatusCode);
        Assert.Equal(1, h.Server.RejectedCountFor("PayloadTooLarge"));
    }

    [Theory]
    [InlineData("wns/toast", "<toast><visual>", "InvalidXml")]
    [InlineData("wns/toast", "<toast><text>a & b</text></toast>", "InvalidXml")]
    [InlineData("wns/toast", "<badge value=\"1\"/>", "InvalidXml")]
    [InlineData("wns/badge", "<toast/>", "InvalidXml")]
    [InlineData("wns/badge", "not xml", "InvalidXml")]
    [InlineData("wns/badge", "<!DOCTYPE badge [<!ENTITY x \"1\">]><badge value=\"&x;\"/>", "InvalidXml")]
    [InlineData("wns/badge", "<badge/>", "InvalidBadge")]
    [InlineData("wns/badge", "<badge value=\"-1\"/>", "InvalidBadge")]
    [InlineData("wns/badge", "<badge value=\"lots\"/>", "InvalidBadge")]
    [InlineData("wns/tile", "<toast/>", "InvalidXml")]
    public async Task BadXml_Is400(string type, string body, string reason)
    {
        await using var h = await FakeWnsHarness.StartAsync();
        var token = await h.TokenAsync();

        using var response = await h.SendAsync(FakeWnsHarness.Request(h.Server.CreateChannel(), token, type, body));

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Equal(reason, Assert.Single(h.Server.Requests).Reason);
    }

    // ---- Scripts and fault injection ------------------------------------------------------------

    [Fact]
    public async Task Script_AnswersInOrderThenAccepts()
    {
        await using var h = await FakeWnsHarness.StartAsync();
        var token = await h.TokenAsync();
        var channel = h.Server.CreateChannel();
        var other = h.Server.CreateChannel();
        h.Server.Script(channel, (406, null), (200, "dropped"), (200, "channelthrottled"), (503, null));

        using var throttled = await h.SendAsync(FakeWnsHarness.Request(channel, token));
        using var otherChannel = await h.SendAsync(FakeWnsHarness.Request(other, token));
        using var dropped = await h.SendAsync(FakeWnsHarness.Request(channel, token));
        using var channelThrottled = await h.SendAsync(FakeWnsHarness.Request(channel, token));
        using var unavailable = await h.SendAsync(FakeWnsHarness.Request(channel, token));
        using var received = await h.SendAsync(FakeWnsHarness.Request(channel, token));

        Assert.Equal(HttpStatusCode.NotAcceptable, throttled.StatusCode);
        Assert.Equal("60", FakeWnsHarness.Header(throttled, "X-WNS-CONTINUE-AFTER"));
        Assert.Equal(HttpStatusCode.OK, otherChannel.StatusCode);
        Assert.Equal("received", FakeWnsHarness.Header(otherChannel, "X-WNS-Status"));
        Assert.Equal(HttpStatusCode.OK, dropped.StatusCode);
        Assert.Equal("dropped", FakeWnsHarness.Header(dropped, "X-WNS-Status"));
        Assert.Equal(HttpStatusCode.OK, channelThrottled.StatusCode);
        Assert.Equal("channelthrottled", FakeWnsHarness.Header(channelThrottled, "X-WNS-Status"));
        Assert.Equal("60", FakeWnsHarness.Header(channelThrottled, "X-WNS-CONTINUE-AFTER"));
        Assert.Equal(HttpStatusCode.ServiceUnavailable, unavailable.StatusCode);
        Assert.Equal(HttpStatusCode.OK, received.StatusCode);
        Assert.Equal("received", FakeWnsHarness.Header(received, "X-WNS-Status"));
        Assert.Equal(2, h.Server.AcceptedCount);
        Assert.Equal(4, h.Server.RejectedCount);
        Assert.Equal(1, h.Server.RejectedCountFor("dropped"));
        Assert.Equal(1, h.Server.RejectedCountFor("channelthrottled"));
    }

    [Fact]
    public async Task Script_AppliesOnlyToValidRequests()
    {
        await using var h = await FakeWnsHarness.StartAsync();
        var token = await h.TokenAsync();
        var channel = h.Server.CreateChannel();
        h.Server.Script(channel, (503, null));

        using var invalid = await h.SendAsync(FakeWnsHarness.Request(channel, token, type: "wns/banner"));
        using var scripted = await h.SendAsync(FakeWnsHarness.Request(channel, token));

        Assert.Equal(HttpStatusCode.BadRequest, invalid.StatusCode);
        Assert.Equal(HttpStatusCode.ServiceUnavailable, scripted.StatusCode);
    }

    [Fact]
    public async Task Redirect_Answers302WithLocation()
    {
        await using var h = await FakeWnsHarness.StartAsync();
        var token = await h.TokenAsync();
        var channel = h.Server.CreateChannel();
        h.Server.Redirect(channel, "http://169.254.169.254/latest/meta-data/");

        using var response = await h.SendAsync(FakeWnsHarness.Request(channel, token));

        Assert.Equal(HttpStatusCode.Found, response.StatusCode);
        Assert.Equal(new Uri("http://169.254.169.254/latest/meta-data/"), response.Headers.Location);
        Assert.Equal(1, h.Server.RejectedCountFor("Redirect"));
    }

    [Fact]
    public async Task FailNext_AnswersTheStatusForAnyChannel()
    {
        await using var h = await FakeWnsHarness.StartAsync();
        var token = await h.TokenAsync();
        h.Server.FailNext(2, 500);

        using var a = await h.SendAsync(FakeWnsHarness.Request(h.Server.CreateChannel(), token));
        using var b = await h.SendAsync(FakeWnsHarness.Request(h.Server.CreateChannel(), token));
        using var c = await h.SendAsync(FakeWnsHarness.Request(h.Server.CreateChannel(), token));

        Assert.Equal(HttpStatusCode.InternalServerError, a.StatusCode);
        Assert.Equal(HttpStatusCode.InternalServerError, b.StatusCode);
        Assert.Equal(HttpStatusCode.OK, c.StatusCode);
    }

    [Fact]
    public async Task ScriptedUnauthorized_CarriesAChallenge()
    {
        await using var h = await FakeWnsHarness.StartAsync();
        var token = await h.TokenAsync();
        var channel = h.Server.CreateChannel();
        h.Server.Script(channel, (401, null));

        using var response = await h.SendAsync(FakeWnsHarness.Request(channel, token));

        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        Assert.NotNull(FakeWnsHarness.Header(response, "WWW-Authenticate"));
    }

    // ---- Waiting, recording, TLS ----------------------------------------------------------------

    [Fact]
    public async Task WaitForAcceptedAndWaitForRequest_CompleteWhenRequestsArrive()
    {
        await using var h = await FakeWnsHarness.StartAsync(new FakeWnsServerOptions { RecordRequests = false });
        using var guard = Guard();
        var token = await h.TokenAsync();
        var channel = h.Server.CreateChannel();
        var accepted = h.Server.WaitForAcceptedAsync(2, guard.Token);
        var request = h.Server.WaitForRequestAsync(r => r.Body == "<badge value=\"7\"/>", guard.Token);
        Assert.False(accepted.IsCompleted);

        using (await h.SendAsync(FakeWnsHarness.Request(channel, token)))
        using (await h.SendAsync(FakeWnsHarness.Request(channel, token, body: "<badge value=\"7\"/>")))
        {
        }

        await accepted;
        var seen = await request;
        Assert.Equal(channel, seen.Channel);
        Assert.Empty(h.Server.Requests); // recording off: waiters still see requests
    }

    [Fact]
    public async Task ClearRequests_ForgetsRecordsButKeepsCounters()
    {
        await using var h = await FakeWnsHarness.StartAsync();
        var token = await h.TokenAsync();
        using (await h.SendAsync(FakeWnsHarness.Request(h.Server.CreateChannel(), token)))
        {
        }

        h.Server.ClearRequests();

        Assert.Empty(h.Server.Requests);
        Assert.Equal(1, h.Server.AcceptedCount);
    }

    [Fact]
    public async Task Tls_TokenAndPush_WorkWithThePinnedCertificate()
    {
        await using var h = await FakeWnsHarness.StartAsync(new FakeWnsServerOptions { UseTls = true });
        Assert.StartsWith("https://127.0.0.1:", h.Server.BaseUrl, StringComparison.Ordinal);
        Assert.Contains("BEGIN CERTIFICATE", h.Server.CertificatePem, StringComparison.Ordinal);
        var token = await h.TokenAsync();

        using var response = await h.SendAsync(FakeWnsHarness.Request(h.Server.CreateChannel(), token));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
    }

    [Fact]
    public async Task Server_SpeaksHttp11()
    {
        await using var h = await FakeWnsHarness.StartAsync();
        var token = await h.TokenAsync();

        using var response = await h.SendAsync(FakeWnsHarness.Request(h.Server.CreateChannel(), token));

        Assert.Equal(HttpVersion.Version11, response.Version);
        Assert.Equal($"127.0.0.1:{h.Server.BaseAddress.Port}", h.Server.Authority);
    }

    [Fact]
    public async Task Dispose_FailsPendingWaiters()
    {
        var h = await FakeWnsHarness.StartAsync();
        var waiter = h.Server.WaitForAcceptedAsync(1, Ct);

        await h.DisposeAsync();

        await Assert.ThrowsAsync<ObjectDisposedException>(() => waiter);
    }
}
