using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Xml.Linq;
using Herald.Core.Notifications;
using Herald.Providers.Wns;
using Xunit;

namespace Herald.Providers.Tests.Wns;

public sealed class WnsProviderTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    // ---- Requests on the wire --------------------------------------------------------------------

    [Fact]
    public async Task Send_Badge_IsExactlyTheWnsBadgeRequest()
    {
        await using var h = await WnsTestHarness.StartAsync();
        var expires = h.Time.GetUtcNow().AddHours(1);

        var result = await h.SendAsync(h.Notification(collapseId: "inbox", expiresAt: expires));

        Assert.Equal(PushResult.Ok(), result);
        var r = Assert.Single(h.Server.Requests);
        Assert.True(r.Accepted);
        Assert.Equal("POST", r.Method);
        Assert.Equal(h.Channel, r.Channel);
        Assert.Equal("wns/badge", r.Type);
        Assert.Equal("text/xml", r.ContentType);
        Assert.Equal("<badge value=\"3\"/>", r.Body);
        Assert.Equal("3600", r.Ttl);
        Assert.Equal("true", r.RequestForStatus);
        Assert.Null(r.Tag); // tags replace toasts; a badge has no history to replace
        Assert.Null(r.CachePolicy);
        Assert.Null(r.Header("expect"));
        Assert.Null(r.Header("transfer-encoding"));
        Assert.Equal(r.Body!.Length.ToString(CultureInfo.InvariantCulture), r.Header("content-length"));
        Assert.StartsWith("Bearer ", r.Authorization, StringComparison.Ordinal);
        Assert.True(r.Authorization!.Length > "Bearer ".Length + 20);
        Assert.Equal(1, h.Server.TokensIssued);
    }

    [Fact]
    public async Task Send_WithoutExpiryOrCollapseId_OmitsTtlAndTag()
    {
        await using var h = await WnsTestHarness.StartAsync();

        await h.SendAsync(h.Notification(new NotificationContent { Kind = PushKind.Alert, Title = "t" }));

        var r = Assert.Single(h.Server.Requests);
        Assert.Null(r.Ttl);
        Assert.Null(r.Tag);
    }

    [Theory]
    [InlineData(90.4, "91")]
    [InlineData(0.2, "1")]
    [InlineData(-30, "1")]
    public async Task Send_Ttl_IsWholeSecondsRemainingAtLeastOne(double seconds, string expected)
    {
        await using var h = await WnsTestHarness.StartAsync();

        await h.SendAsync(h.Notification(expiresAt: h.Time.GetUtcNow().AddSeconds(seconds)));

        Assert.Equal(expected, Assert.Single(h.Server.Requests).Ttl);
    }

    [Theory]
    [InlineData(null, "0")]
    [InlineData(0, "0")]
    [InlineData(-4, "0")]
    [InlineData(1234, "1234")]
    public async Task Send_BadgeValues_AreNonNegativeNumbers(int? badge, string expected)
    {
        await using var h = await WnsTestHarness.StartAsync();

        var result = await h.SendAsync(h.Notification(new NotificationContent { Kind = PushKind.Badge, Badge = badge }));

        Assert.Equal(PushOutcome.Sent, result.Outcome);
        Assert.Equal("<badge value=\"" + expected + "\"/>", Assert.Single(h.Server.Requests).Body);
    }

    [Fact]
    public async Task Send_Alert_IsAToastGenericWithEscapedTextAndLaunchData()
    {
        await using var h = await WnsTestHarness.StartAsync();
        var content = new NotificationContent
        {
            Kind = PushKind.Alert,
            Title = "Re: <b>\"Q&A\"</b>",
            Body = "Tom & Jerry's <script>alert(1)</script> Grüße",
            Badge = 9,
            Data = new Dictionary<string, string> { ["folder"] = "in box", ["id"] = "1&2" },
        };

        var result = await h.SendAsync(h.Notification(content, collapseId: "inbox"));

        Assert.Equal(PushOutcome.Sent, result.Outcome);
        var r = Assert.Single(h.Server.Requests);
        Assert.True(r.Accepted); // the fake parsed it as well-formed <toast>
        Assert.Equal("wns/toast", r.Type);
        Assert.Equal("text/xml", r.ContentType);
        Assert.Equal("inbox", r.Tag);
        Assert.Equal(
            "<toast launch=\"folder=in%20box&amp;id=1%262\"><visual><binding template=\"ToastGeneric\">"
            + "<text>Re: &lt;b&gt;\"Q&amp;A\"&lt;/b&gt;</text>"
            + "<text>Tom &amp; Jerry's &lt;script&gt;alert(1)&lt;/script&gt; Grüße</text>"
            + "</binding></visual></toast>",
            r.Body);

        var toast = XElement.Parse(r.Body!);
        var texts = toast.Descendants("text").Select(t => t.Value).ToArray();
        Assert.Equal([content.Title, content.Body], texts);
        Assert.Equal("folder=in%20box&id=1%262", toast.Attribute("launch")!.Value);
        Assert.DoesNotContain("badge", r.Body, StringComparison.Ordinal); // one type per request: the toast only
    }

    [Fact]
    public async Task Send_AlertWithControlCharacters_ReplacesThemAndStaysWellFormed()
    {
        await using var h = await WnsTestHarness.StartAsync();

        var result = await h.SendAsync(h.Notification(new NotificationContent { Kind = PushKind.Alert, Title = "a\u0001b\uD800c", Body = "ok 😀" }));

        Assert.Equal(PushOutcome.Sent, result.Outcome);
        var texts = XElement.Parse(Assert.Single(h.Server.Requests).Body!).Descendants("text").Select(t => t.Value).ToArray();
        Assert.Equal(["a\uFFFDb\uFFFDc", "ok 😀"], texts);
    }

    [Fact]
    public async Task Send_AlertWithoutText_StillHasOneTextElement()
    {
        await using var h = await WnsTestHarness.StartAsync();

        var result = await h.SendAsync(h.Notification(new NotificationContent { Kind = PushKind.Alert }));

        Assert.Equal(PushOutcome.Sent, result.Outcome);
        Assert.Equal("<toast><visual><binding template=\"ToastGeneric\"><text /></binding></visual></toast>", Assert.Single(h.Server.Requests).Body);
    }

    [Fact]
    public async Task Send_LongCollapseId_BecomesADeterministicSixteenCharacterTag()
    {
        await using var h = await WnsTestHarness.StartAsync();
        const string CollapseId = "conversation:AAMkAGI2TG93AAA=";
        var expected = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(CollapseId)))[..16];

        await h.SendAsync(h.Notification(new NotificationContent { Kind = PushKind.Alert, Title = "a" }, collapseId: CollapseId));
        await h.SendAsync(h.Notification(new NotificationContent { Kind = PushKind.Alert, Title = "b" }, collapseId: CollapseId));

        Assert.All(h.Server.Requests, r =>
        {
            Assert.True(r.Accepted);
            Assert.Equal(expected, r.Tag);
        });
    }

    [Fact]
    public async Task Send_Background_IsARawNotificationWithTheDataAsJson()
    {
        await using var h = await WnsTestHarness.StartAsync();
        var content = new NotificationContent
        {
            Kind = PushKind.Background,
            Data = new Dictionary<string, string> { ["folder"] = "inbox", ["note"] = "say \"hi\" ü" },
        };

        var result = await h.SendAsync(h.Notification(content, collapseId: "inbox"));

        Assert.Equal(PushOutcome.Sent, result.Outcome);
        var r = Assert.Single(h.Server.Requests);
        Assert.Equal("wns/raw", r.Type);
        Assert.Equal("application/octet-stream", r.ContentType);
        Assert.Equal("{\"folder\":\"inbox\",\"note\":\"say \\\"hi\\\" ü\"}", r.Body);
        Assert.Null(r.Tag);
    }

    [Fact]
    public async Task Send_BackgroundWithoutData_IsAnEmptyJsonObject()
    {
        await using var h = await WnsTestHarness.StartAsync();

        await h.SendAsync(h.Notification(new NotificationContent { Kind = PushKind.Background }));

        Assert.Equal("{}", Assert.Single(h.Server.Requests).Body);
    }

    [Fact]
    public async Task Send_Mdm_FailsWithoutSendingAnything()
    {
        await using var h = await WnsTestHarness.StartAsync();

        var result = await h.SendAsync(h.Notification(new NotificationContent { Kind = PushKind.Mdm, PushMagic = "magic" }));

        Assert.Equal(new PushResult(PushOutcome.Failed, 0, WnsReasons.MdmNotSupportedOnWns), result);
        Assert.Empty(h.Server.Requests);
        Assert.Equal(0, h.Server.TokenRequests);
    }

    [Fact]
    public async Task Send_PayloadOver5000Bytes_Fails413WithoutSending()
    {
        await using var h = await WnsTestHarness.StartAsync();

        var result = await h.SendAsync(h.Notification(new NotificationContent { Kind = PushKind.Alert, Title = "big", Body = new string('é', 2600) }));

        Assert.Equal(new PushResult(PushOutcome.Failed, 413, WnsReasons.PayloadTooLarge), result);
        Assert.Empty(h.Server.Requests);
        Assert.Equal(0, h.Server.TokenRequests);
    }

    [Fact]
    public async Task Send_UsesHttp11()
    {
        await using var h = await WnsTestHarness.StartAsync();

        var result = await h.SendAsync(h.Notification());

        Assert.Equal(PushOutcome.Sent, result.Outcome); // the fake listens for HTTP/1.1 only
    }

    // ---- Access tokens ---------------------------------------------------------------------------

    [Fact]
    public async Task Send_ManyConcurrently_FetchesOneTokenAndReusesIt()
    {
        await using var h = await WnsTestHarness.StartAsync();

        var results = await Task.WhenAll(Enumerable.Range(0, 50).Select(_ => h.SendAsync(h.Notification()).AsTask()));

        Assert.All(results, r => Assert.Equal(PushOutcome.Sent, r.Outcome));
        Assert.Equal(1, h.Server.TokenRequests);
        Assert.Single(h.Server.Requests.Select(r => r.Authorization).Distinct());
        Assert.Equal(50, h.Server.AcceptedCount);
    }

    [Fact]
    public async Task Send_TokenNearExpiry_IsReplacedBeforeWnsRejectsIt()
    {
        await using var h = await WnsTestHarness.StartAsync();
        await h.SendAsync(h.Notification());

        h.Time.Advance(TimeSpan.FromDays(1) - TimeSpan.FromMinutes(5) - TimeSpan.FromSeconds(1));
        await h.SendAsync(h.Notification());
        Assert.Equal(1, h.Server.TokenRequests);

        h.Time.Advance(TimeSpan.FromSeconds(2));
        var result = await h.SendAsync(h.Notification());

        Assert.Equal(PushOutcome.Sent, result.Outcome);
        Assert.Equal(2, h.Server.TokenRequests);
        Assert.Equal(3, h.Server.AcceptedCount);
        Assert.Equal(0, h.Server.RejectedCount);
    }

    [Fact]
    public async Task Send_RefreshFailsWhileTheOldTokenIsValid_KeepsSending()
    {
        await using var h = await WnsTestHarness.StartAsync();
        await h.SendAsync(h.Notification());
        h.Time.Advance(TimeSpan.FromDays(1) - TimeSpan.FromMinutes(2)); // refresh due, token still valid
        h.Server.FailTokenRequests(1, 503);

        var result = await h.SendAsync(h.Notification());

        Assert.Equal(PushOutcome.Sent, result.Outcome);
        Assert.Equal(2, h.Server.TokenRequests);
        Assert.Equal(1, h.Server.TokensIssued);
    }

    [Fact]
    public async Task Send_401_FetchesANewTokenAndResendsOnce()
    {
        await using var h = await WnsTestHarness.StartAsync();
        await h.SendAsync(h.Notification());
        h.Server.RevokeAccessTokens();

        var result = await h.SendAsync(h.Notification());

        Assert.Equal(PushResult.Ok(), result);
        Assert.Equal(2, h.Server.TokenRequests);
        var requests = h.Server.Requests;
        Assert.Equal([200, 401, 200], requests.Select(r => r.Status));
        Assert.Equal(requests[0].Authorization, requests[1].Authorization);
        Assert.NotEqual(requests[1].Authorization, requests[2].Authorization);
        Assert.Equal(requests[1].Body, requests[2].Body);
    }

    [Fact]
    public async Task Send_401AgainAfterRenewal_IsCredentialFaultWithoutAThirdAttempt()
    {
        await using var h = await WnsTestHarness.StartAsync();
        h.Server.Script(h.Channel, (401, null), (401, null));

        var result = await h.SendAsync(h.Notification());

        Assert.Equal(new PushResult(PushOutcome.CredentialFault, 401, WnsReasons.Unauthorized), result);
        Assert.Equal(2, h.Server.Requests.Count);
        Assert.Equal(2, h.Server.TokenRequests);
    }

    [Fact]
    public async Task Send_Repeated401s_RenewTheTokenAtMostOncePerInterval()
    {
        await using var h = await WnsTestHarness.StartAsync();
        h.Server.Script(h.Channel, (401, null), (401, null), (401, null), (401, null));

        var first = await h.SendAsync(h.Notification());
        var held = await h.SendAsync(h.Notification());

        // The credential's circuit is open: the next send stays home until the probe is due.
        Assert.Equal(PushOutcome.CredentialFault, first.Outcome);
        Assert.Equal(PushOutcome.CredentialFault, held.Outcome);
        Assert.Equal(Herald.Core.Credentials.CredentialCircuit.InitialPause, held.RetryAfter);
        Assert.Equal(2, h.Server.Requests.Count);

        h.Time.Advance(Herald.Core.Credentials.CredentialCircuit.InitialPause);
        var probe = await h.SendAsync(h.Notification());

        Assert.Equal(PushOutcome.CredentialFault, probe.Outcome);
        Assert.Equal(3, h.Server.Requests.Count); // the probe was not resent: a renewal moments ago would not help
        Assert.Equal(2, h.Server.TokenRequests);

        h.Time.Advance(WnsTokenCache.MinRenewInterval);
        var third = await h.SendAsync(h.Notification());

        Assert.Equal(PushOutcome.Sent, third.Outcome); // renewed again, then the script ran out
        Assert.Equal(3, h.Server.TokenRequests);
    }

    [Fact]
    public async Task Send_WrongSecret_IsCredentialFaultAuthFailed_AndFailsFastDuringTheBackoff()
    {
        await using var h = await WnsTestHarness.StartAsync(o => o.ClientSecret = "not-the-secret");

        var first = await h.SendAsync(h.Notification());
        var second = await h.SendAsync(h.Notification());

        Assert.Equal(new PushResult(PushOutcome.CredentialFault, 400, WnsReasons.AuthFailed), first);
        Assert.Equal(first with { RetryAfter = Herald.Core.Credentials.CredentialCircuit.InitialPause }, second); // circuit open
        Assert.Equal(1, h.Server.TokenRequests);
        Assert.Empty(h.Server.Requests);

        h.Time.Advance(h.Options.TokenFailureBackoff);
        await h.SendAsync(h.Notification());
        Assert.Equal(2, h.Server.TokenRequests);
    }

    [Fact]
    public async Task Send_TokenEndpointDown_IsRetryAuthUnavailable_NotACredentialFault()
    {
        var port = ClosedPort.Get();
        await using var h = await WnsTestHarness.StartAsync(o => o.TokenUrl = $"http://127.0.0.1:{port}/accesstoken.srf");

        var result = await h.SendAsync(h.Notification());

        Assert.Equal(new PushResult(PushOutcome.Retry, 0, WnsReasons.AuthUnavailable), result);
        Assert.Empty(h.Server.Requests);
    }

    [Fact]
    public async Task Send_TokenEndpointFails500_IsRetryAuthUnavailable_NotACredentialFault()
    {
        await using var h = await WnsTestHarness.StartAsync();
        h.Server.FailTokenRequests(1, 500);

        var result = await h.SendAsync(h.Notification());

        Assert.Equal(new PushResult(PushOutcome.Retry, 500, WnsReasons.AuthUnavailable), result);
    }

    [Fact]
    public async Task Send_NoCredential_IsCredentialFaultNoCredential()
    {
        await using var h = await WnsTestHarness.StartAsync(withCredential: false);

        var result = await h.SendAsync(h.Notification());

        Assert.Equal(new PushResult(PushOutcome.CredentialFault, 0, WnsReasons.NoCredential), result);
        Assert.Equal(0, h.Server.TokenRequests);
        Assert.Empty(h.Server.Requests);
    }

    // ---- Answers -----------------------------------------------------------------------------------

    [Theory]
    [InlineData(200, "dropped", PushOutcome.Sent, WnsReasons.Dropped, false)]
    [InlineData(200, "channelthrottled", PushOutcome.Retry, WnsReasons.ChannelThrottled, true)]
    [InlineData(400, null, PushOutcome.Failed, WnsReasons.BadRequest, false)]
    [InlineData(403, null, PushOutcome.CredentialFault, WnsReasons.Forbidden, false)]
    [InlineData(404, null, PushOutcome.TokenInvalid, WnsReasons.ChannelNotFound, false)]
    [InlineData(405, null, PushOutcome.Failed, WnsReasons.MethodNotAllowed, false)]
    [InlineData(406, null, PushOutcome.Retry, WnsReasons.Throttled, true)]
    [InlineData(410, null, PushOutcome.TokenInvalid, WnsReasons.ChannelExpired, false)]
    [InlineData(413, null, PushOutcome.Failed, WnsReasons.PayloadTooLarge, false)]
    [InlineData(429, null, PushOutcome.Retry, WnsReasons.TooManyRequests, false)]
    [InlineData(500, null, PushOutcome.Retry, WnsReasons.ServerError, false)]
    [InlineData(503, null, PushOutcome.Retry, WnsReasons.ServiceUnavailable, false)]
    public async Task Send_EachWnsAnswer_MapsToItsOutcome(int status, string? notificationStatus, PushOutcome outcome, string reason, bool continueAfter)
    {
        await using var h = await WnsTestHarness.StartAsync();
        h.Server.Script(h.Channel, (status, notificationStatus));

        var result = await h.SendAsync(h.Notification());

        Assert.Equal(new PushResult(outcome, status, reason, continueAfter ? TimeSpan.FromSeconds(60) : null), result);
        Assert.Single(h.Server.Requests);
    }

    [Fact]
    public async Task Send_Received_IsSentWithoutReason()
    {
        await using var h = await WnsTestHarness.StartAsync();
        h.Server.Script(h.Channel, (200, "received"));

        Assert.Equal(PushResult.Ok(), await h.SendAsync(h.Notification()));
    }

    [Fact]
    public async Task Send_LegacyNotificationStatusHeader_IsRead()
    {
        await using var h = await WnsTestHarness.StartAsync(server: s => s.LegacyStatusHeader = true);
        h.Server.Script(h.Channel, (200, "dropped"), (200, "channelthrottled"));

        var dropped = await h.SendAsync(h.Notification());
        var throttled = await h.SendAsync(h.Notification());

        Assert.Equal(new PushResult(PushOutcome.Sent, 200, WnsReasons.Dropped), dropped);
        Assert.Equal(PushOutcome.Retry, throttled.Outcome);
    }

    [Fact]
    public async Task Send_ThrottledWithoutContinueAfter_HasNoRetryAfter()
    {
        await using var h = await WnsTestHarness.StartAsync(server: s => s.ThrottleContinueAfter = null);
        h.Server.Script(h.Channel, (406, null));

        var result = await h.SendAsync(h.Notification());

        Assert.Equal(new PushResult(PushOutcome.Retry, 406, WnsReasons.Throttled), result);
    }

    [Fact]
    public async Task Send_ExpiredChannel_IsTokenInvalid410()
    {
        await using var h = await WnsTestHarness.StartAsync();
        h.Server.Expire(h.Channel);

        var result = await h.SendAsync(h.Notification());

        Assert.Equal(new PushResult(PushOutcome.TokenInvalid, 410, WnsReasons.ChannelExpired), result);
    }

    [Fact]
    public async Task Send_UnknownChannel_IsTokenInvalid404()
    {
        await using var h = await WnsTestHarness.StartAsync();

        var result = await h.SendAsync(h.Notification(channel: h.Server.BaseUrl + "/?token=AwYAAABdoesnotexist"));

        Assert.Equal(new PushResult(PushOutcome.TokenInvalid, 404, WnsReasons.ChannelNotFound), result);
    }

    [Fact]
    public async Task Send_ChannelOfAnotherApp_IsCredentialFault403()
    {
        await using var h = await WnsTestHarness.StartAsync();
        h.Server.AddApplication("ms-app://s-1-15-2-other", "other");
        var foreign = h.Server.CreateChannel("ms-app://s-1-15-2-other");

        var result = await h.SendAsync(h.Notification(channel: foreign));

        Assert.Equal(new PushResult(PushOutcome.CredentialFault, 403, WnsReasons.Forbidden), result);
    }

    [Fact]
    public async Task Send_ServerDown_IsRetryTransport()
    {
        var port = ClosedPort.Get();
        await using var h = await WnsTestHarness.StartAsync(o => o.AllowedChannelHosts.Add($"127.0.0.1:{port}"));

        var result = await h.SendAsync(h.Notification(channel: $"http://127.0.0.1:{port}/?token=abc"));

        Assert.Equal(new PushResult(PushOutcome.Retry, 0, WnsReasons.Transport), result);
    }

    [Fact]
    public async Task Send_ServerStopsBetweenSends_IsRetryTransport()
    {
        await using var h = await WnsTestHarness.StartAsync();
        Assert.Equal(PushOutcome.Sent, (await h.SendAsync(h.Notification())).Outcome);

        await h.Server.DisposeAsync();
        var result = await h.SendAsync(h.Notification());

        Assert.Equal(PushOutcome.Retry, result.Outcome);
        Assert.Equal(WnsReasons.Transport, result.Reason);
    }

    [Fact]
    public async Task Send_CallerCancellation_Throws()
    {
        await using var h = await WnsTestHarness.StartAsync();
        using var cts = new CancellationTokenSource();
        await cts.CancelAsync();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => h.Provider.SendAsync(h.Notification(), cts.Token).AsTask());
    }

    // ---- TLS -----------------------------------------------------------------------------------------

    [Fact]
    public async Task Send_OverTlsWithPinnedCertificate_IsSent()
    {
        await using var h = await WnsTestHarness.StartAsync(tls: true, trustCertificate: true);
        Assert.StartsWith("https://", h.Channel, StringComparison.Ordinal);

        var result = await h.SendAsync(h.Notification());

        Assert.Equal(PushOutcome.Sent, result.Outcome);
        Assert.Equal(1, h.Server.AcceptedCount);
    }

    [Fact]
    public async Task Send_OverTlsWithAnUntrustedCertificate_SendsNothing()
    {
        await using var h = await WnsTestHarness.StartAsync(tls: true, trustCertificate: false);

        var result = await h.SendAsync(h.Notification());

        Assert.Equal(new PushResult(PushOutcome.Retry, 0, WnsReasons.AuthUnavailable), result); // a TLS failure: transport, retried
        Assert.Equal(0, h.Server.TokensIssued);
        Assert.Empty(h.Server.Requests);
    }

    [Fact]
    public async Task Create_OwnsItsTokenClient_AndSends()
    {
        await using var h = await WnsTestHarness.StartAsync();
        using var provider = WnsProvider.Create(h.Options, h.Time);

        var result = await provider.SendAsync(h.Notification(), Ct);

        Assert.Equal(PushOutcome.Sent, result.Outcome);
        Assert.Equal(Herald.Core.Registrations.Platform.Wns, provider.Platform);
    }
}
