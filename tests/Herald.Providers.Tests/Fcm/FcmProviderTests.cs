using System.Text.Json;
using Herald.Core.Notifications;
using Herald.Core.Ports;
using Herald.Core.Registrations;
using Herald.Providers.Fcm;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Xunit;

namespace Herald.Providers.Tests.Fcm;

public sealed class FcmProviderTests
{
    private const string T = FcmTestHarness.Token;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>A safety net for awaits that would hang if something were broken (not a delay: it only fires on failure).</summary>
    private static CancellationTokenSource Guard()
    {
        var cts = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        cts.CancelAfter(TimeSpan.FromSeconds(30));
        return cts;
    }

    // --- messages ---------------------------------------------------------------------------------

    [Fact]
    public async Task Send_Badge_IsAHighPriorityDataWakeUpExactlyAsSpecified()
    {
        await using var h = await FcmTestHarness.StartAsync();
        var expires = h.Time.GetUtcNow().AddHours(1);

        var result = await h.SendAsync(h.Notification(collapseId: "inbox", expiresAt: expires));

        Assert.Equal(PushResult.Ok(), result);
        var r = Assert.Single(h.Server.Requests);
        Assert.Equal("/v1/projects/herald-mail/messages:send", r.Path);
        Assert.Equal("HTTP/2", r.Protocol);
        Assert.StartsWith("Bearer ya29.", r.Authorization, StringComparison.Ordinal);
        Assert.Equal(
            "{\"message\":{\"token\":\"" + T + "\",\"data\":{\"type\":\"mail\",\"badge\":\"3\"},\"android\":{\"priority\":\"high\",\"collapse_key\":\"inbox\",\"ttl\":\"3600s\"}}}",
            r.Body);
    }

    [Fact]
    public async Task Send_WithoutCollapseIdOrExpiry_OmitsCollapseKeyAndTtl()
    {
        await using var h = await FcmTestHarness.StartAsync();

        await h.SendAsync(h.Notification());

        Assert.Equal(
            "{\"message\":{\"token\":\"" + T + "\",\"data\":{\"type\":\"mail\",\"badge\":\"3\"},\"android\":{\"priority\":\"high\"}}}",
            Assert.Single(h.Server.Requests).Body);
    }

    [Fact]
    public async Task Send_Ttl_IsTheWholeSecondsLeft_ZeroWhenPast()
    {
        await using var h = await FcmTestHarness.StartAsync();
        var now = h.Time.GetUtcNow();

        await h.SendAsync(h.Notification(expiresAt: now.AddSeconds(90.7)));
        await h.SendAsync(h.Notification(expiresAt: now.AddMinutes(-5)));

        Assert.Equal(["90s", "0s"], h.Server.Requests.Select(r => r.Ttl));
    }

    [Fact]
    public async Task Send_Alert_HasTheNotificationBlockAndTheSameData()
    {
        await using var h = await FcmTestHarness.StartAsync();
        var content = new NotificationContent { Kind = PushKind.Alert, Title = "New mail", Body = "Grüße from Zoë", Badge = 7, Sound = "default" };

        var result = await h.SendAsync(h.Notification(content, collapseId: "inbox"));

        Assert.Equal(PushOutcome.Sent, result.Outcome);
        var r = Assert.Single(h.Server.Requests);
        Assert.Equal(
            "{\"message\":{\"token\":\"" + T + "\",\"data\":{\"type\":\"mail\",\"badge\":\"7\"},\"notification\":{\"title\":\"New mail\",\"body\":\"Grüße from Zoë\"}," +
            "\"android\":{\"priority\":\"high\",\"collapse_key\":\"inbox\",\"notification\":{\"sound\":\"default\",\"notification_count\":7}}}}",
            r.Body);
        Assert.Equal("New mail", r.NotificationTitle);
    }

    [Fact]
    public async Task Send_Background_IsDataOnlyAtNormalPriority()
    {
        await using var h = await FcmTestHarness.StartAsync();

        var result = await h.SendAsync(h.Notification(new NotificationContent { Kind = PushKind.Background }));

        Assert.Equal(PushOutcome.Sent, result.Outcome);
        var r = Assert.Single(h.Server.Requests);
        Assert.Equal("{\"message\":{\"token\":\"" + T + "\",\"data\":{\"type\":\"mail\"},\"android\":{\"priority\":\"normal\"}}}", r.Body);
        Assert.False(r.HasNotification);
    }

    [Fact]
    public async Task Send_Mdm_IsRefusedPermanentlyWithoutARequest()
    {
        await using var h = await FcmTestHarness.StartAsync();

        var result = await h.SendAsync(h.Notification(new NotificationContent { Kind = PushKind.Mdm, PushMagic = "magic" }));

        Assert.Equal(new PushResult(PushOutcome.Failed, 0, "MdmNotSupportedOnFcm"), result);
        Assert.Empty(h.Server.Requests);
        Assert.Equal(0, h.Server.TokenRequests);
    }

    [Fact]
    public async Task Send_CustomData_IsCopiedAsStrings_ReservedKeysLeftOut()
    {
        await using var h = await FcmTestHarness.StartAsync();
        var content = new NotificationContent
        {
            Kind = PushKind.Badge,
            Badge = 2,
            Data = new Dictionary<string, string>
            {
                ["folder"] = "inbox",
                ["count"] = "12",
                ["type"] = "spoofed",
                ["from"] = "x",
                ["google.sent_time"] = "1",
                ["gcm.n.e"] = "1",
                ["message_type"] = "x",
            },
        };

        var result = await h.SendAsync(h.Notification(content));

        Assert.Equal(PushOutcome.Sent, result.Outcome);
        Assert.Equal(
            new Dictionary<string, string> { ["type"] = "mail", ["badge"] = "2", ["folder"] = "inbox", ["count"] = "12" },
            Assert.Single(h.Server.Requests).Data);
    }

    [Fact]
    public async Task Send_MessageOver4096Bytes_FailsWithoutARequest()
    {
        await using var h = await FcmTestHarness.StartAsync();
        var content = new NotificationContent { Kind = PushKind.Alert, Title = "t", Body = new string('x', 5000) };

        var result = await h.SendAsync(h.Notification(content));

        Assert.Equal(new PushResult(PushOutcome.Failed, 0, "MessageTooBig"), result);
        Assert.Empty(h.Server.Requests);
    }

    [Fact]
    public async Task Send_WithoutTopic_UsesTheServiceAccountsProject()
    {
        await using var h = await FcmTestHarness.StartAsync();

        var result = await h.SendAsync(h.Notification(topic: string.Empty));

        Assert.Equal(PushOutcome.Sent, result.Outcome);
        Assert.Equal(FcmTestHarness.Project, Assert.Single(h.Server.Requests).Project);
    }

    [Fact]
    public async Task Send_NoTopicAndNoProjectInTheKey_FailsNoProject()
    {
        await using var h = await FcmTestHarness.StartAsync(withCredential: false);
        var json = JsonSerializer.Deserialize<Dictionary<string, string>>(h.AccountJson)!;
        json.Remove("project_id");
        h.Build(new FcmOptions { BaseUrl = h.Server.BaseUrl, ServiceAccountJson = JsonSerializer.Serialize(json) });

        var result = await h.SendAsync(h.Notification(topic: string.Empty));

        Assert.Equal(new PushResult(PushOutcome.Failed, 0, "NoProject"), result);
    }

    [Fact]
    public async Task Send_EmptyToken_FailsMissingToken()
    {
        await using var h = await FcmTestHarness.StartAsync();

        var result = await h.SendAsync(h.Notification(token: string.Empty));

        Assert.Equal(new PushResult(PushOutcome.Failed, 0, "MissingToken"), result);
    }

    [Fact]
    public async Task Send_ProjectIdWithPathCharacters_StaysOnePathSegment()
    {
        await using var h = await FcmTestHarness.StartAsync();

        var result = await h.SendAsync(h.Notification(topic: "../../evil?x=1"));

        // Escaped into one segment: the fake sees a project the account may not send for.
        Assert.Equal(new PushResult(PushOutcome.CredentialFault, 403, "PERMISSION_DENIED"), result);
        Assert.Equal("..%2F..%2Fevil?x=1", Assert.Single(h.Server.Requests).Project); // Kestrel keeps %2F encoded
    }

    [Fact]
    public async Task Send_NoCredential_IsACredentialFault()
    {
        await using var h = await FcmTestHarness.StartAsync(withCredential: false);

        var result = await h.SendAsync(h.Notification());

        Assert.Equal(new PushResult(PushOutcome.CredentialFault, 0, "NoCredential"), result);
        Assert.Empty(h.Server.Requests);
    }

    // --- access tokens ----------------------------------------------------------------------------

    [Fact]
    public async Task Send_ManyConcurrently_FetchOneAccessTokenAndReuseIt()
    {
        await using var h = await FcmTestHarness.StartAsync();
        using var guard = Guard();

        var results = await Task.WhenAll(Enumerable.Range(0, 200).Select(i =>
            h.Provider.SendAsync(h.Notification(token: "token-" + i.ToString(System.Globalization.CultureInfo.InvariantCulture)), guard.Token).AsTask()));
        var later = await h.SendAsync(h.Notification());

        Assert.All(results, r => Assert.Equal(PushOutcome.Sent, r.Outcome));
        Assert.Equal(PushOutcome.Sent, later.Outcome);
        Assert.Equal(1, h.Server.TokenRequests);
        Assert.Equal(1, h.Tokens.FetchCount);
        Assert.Single(h.Server.Requests.Select(r => r.Authorization).Distinct());
        Assert.Equal(201, h.Server.AcceptedCount);
    }

    [Fact]
    public async Task AccessToken_IsReusedUntilNearExpiry_ThenRefreshedBeforeUse()
    {
        await using var h = await FcmTestHarness.StartAsync();
        await h.SendAsync(h.Notification());
        var first = h.Server.Requests[^1].Authorization;

        h.Time.Advance(TimeSpan.FromMinutes(56)); // 4 minutes left: still fresh
        await h.SendAsync(h.Notification());
        Assert.Equal(1, h.Server.TokenRequests);
        Assert.Equal(first, h.Server.Requests[^1].Authorization);

        h.Time.Advance(TimeSpan.FromSeconds(210)); // 30 s left: inside the last minute, refreshed before use
        var result = await h.SendAsync(h.Notification());

        Assert.Equal(PushOutcome.Sent, result.Outcome);
        Assert.Equal(2, h.Server.TokenRequests);
        Assert.NotEqual(first, h.Server.Requests[^1].Authorization);
        Assert.Equal(2, h.Tokens.FetchCount);
    }

    [Fact]
    public async Task AccessToken_InTheRefreshWindow_IsStillUsedWhileANewOneIsFetchedInTheBackground()
    {
        await using var h = await FcmTestHarness.StartAsync();
        using var guard = Guard();
        await h.SendAsync(h.Notification());
        var first = h.Server.Requests[^1].Authorization;

        h.Time.Advance(TimeSpan.FromMinutes(57)); // 3 minutes left: refresh window (3:45), not yet the last minute
        var result = await h.SendAsync(h.Notification());

        Assert.Equal(PushOutcome.Sent, result.Outcome);
        Assert.Equal(first, h.Server.Requests[^1].Authorization);
        await h.Server.WaitForTokenRequestsAsync(2, guard.Token);
        Assert.Equal(2, h.Server.AccessTokensIssued);
    }

    [Fact]
    public async Task Unauthenticated401_DropsTheTokenAndResendsOnceWithANewOne()
    {
        await using var h = await FcmTestHarness.StartAsync();
        await h.SendAsync(h.Notification());
        h.Server.ExpireAccessTokens(); // Google revoked or expired it early

        var result = await h.SendAsync(h.Notification());

        Assert.Equal(PushResult.Ok(), result);
        Assert.Equal(2, h.Server.TokenRequests);
        var requests = h.Server.Requests;
        Assert.Equal([200, 401, 200], requests.Select(r => r.Status));
        Assert.Equal(requests[0].Authorization, requests[1].Authorization);
        Assert.NotEqual(requests[1].Authorization, requests[2].Authorization);
    }

    [Fact]
    public async Task Unauthenticated401Twice_IsACredentialFaultAfterOneRenewal()
    {
        await using var h = await FcmTestHarness.StartAsync();
        h.Server.Script(T, (401, "UNAUTHENTICATED"), (401, "UNAUTHENTICATED"));

        var result = await h.SendAsync(h.Notification());

        Assert.Equal(new PushResult(PushOutcome.CredentialFault, 401, "UNAUTHENTICATED"), result);
        Assert.Equal(2, h.Server.Requests.Count);
        Assert.Equal(2, h.Server.TokenRequests);
    }

    [Fact]
    public async Task ConcurrentUnauthenticated401s_FetchOneReplacementToken()
    {
        await using var h = await FcmTestHarness.StartAsync();
        using var guard = Guard();
        await h.SendAsync(h.Notification());
        h.Server.ExpireAccessTokens();

        var results = await Task.WhenAll(Enumerable.Range(0, 20).Select(i =>
            h.Provider.SendAsync(h.Notification(token: "t" + i.ToString(System.Globalization.CultureInfo.InvariantCulture)), guard.Token).AsTask()));

        Assert.All(results, r => Assert.Equal(PushOutcome.Sent, r.Outcome));
        Assert.Equal(2, h.Server.TokenRequests);
    }

    [Fact]
    public async Task TokenEndpointRefusal_IsACredentialFaultAuthFailed_AndIsNotRetriedForAMinute()
    {
        await using var h = await FcmTestHarness.StartAsync();
        var email = JsonDocument.Parse(h.AccountJson).RootElement.GetProperty("client_email").GetString()!;
        h.Server.RevokeServiceAccount(email); // invalid_grant

        var first = await h.SendAsync(h.Notification());
        var second = await h.SendAsync(h.Notification());

        Assert.Equal(new PushResult(PushOutcome.CredentialFault, 0, "AuthFailed"), first);
        Assert.Equal(first with { RetryAfter = Herald.Core.Credentials.CredentialCircuit.InitialPause }, second); // circuit open
        Assert.Equal(1, h.Server.TokenRequests);
        Assert.Empty(h.Server.Requests);

        // The circuit's probe within the minute meets the cache's hold: still no token request.
        h.Time.Advance(Herald.Core.Credentials.CredentialCircuit.InitialPause);
        Assert.Equal(PushOutcome.CredentialFault, (await h.SendAsync(h.Notification())).Outcome);
        Assert.Equal(1, h.Server.TokenRequests);

        h.Time.Advance(FcmTokenCache.PermanentFailureHold + TimeSpan.FromSeconds(1));
        await h.SendAsync(h.Notification());
        Assert.Equal(2, h.Server.TokenRequests);
    }

    [Fact]
    public async Task TokenEndpointOutage_IsRetryAuthUnavailable_AndAskedAgainAfterAFewSeconds()
    {
        await using var h = await FcmTestHarness.StartAsync();
        h.Server.FailTokenRequests(1, 503);

        var first = await h.SendAsync(h.Notification());
        var held = await h.SendAsync(h.Notification());
        h.Time.Advance(FcmTokenCache.TransientFailureHold + TimeSpan.FromSeconds(1));
        var later = await h.SendAsync(h.Notification());

        Assert.Equal(new PushResult(PushOutcome.Retry, 0, "AuthUnavailable"), first);
        Assert.Equal(first, held);
        Assert.Equal(PushResult.Ok(), later);
        Assert.Equal(2, h.Server.TokenRequests);
        Assert.Single(h.Server.Requests);
    }

    [Fact]
    public async Task TokenEndpointUnreachable_IsRetryAuthUnavailable()
    {
        await using var h = await FcmTestHarness.StartAsync();
        await h.Server.DisposeAsync();

        var result = await h.SendAsync(h.Notification());

        Assert.Equal(new PushResult(PushOutcome.Retry, 0, "AuthUnavailable"), result);
    }

    [Fact]
    public async Task ServerDown_AfterTheTokenWasObtained_IsRetryTransport()
    {
        await using var h = await FcmTestHarness.StartAsync();
        Assert.Equal(PushOutcome.Sent, (await h.SendAsync(h.Notification())).Outcome);
        await h.Server.DisposeAsync();

        var result = await h.SendAsync(h.Notification());

        Assert.Equal(new PushResult(PushOutcome.Retry, 0, "Transport"), result);
    }

    // --- FCM errors -------------------------------------------------------------------------------

    [Theory]
    [InlineData(404, "UNREGISTERED", PushOutcome.TokenInvalid)]
    [InlineData(403, "SENDER_ID_MISMATCH", PushOutcome.TokenInvalid)]
    [InlineData(400, "INVALID_ARGUMENT", PushOutcome.Failed)]
    [InlineData(429, "QUOTA_EXCEEDED", PushOutcome.Retry)]
    [InlineData(503, "UNAVAILABLE", PushOutcome.Retry)]
    [InlineData(500, "INTERNAL", PushOutcome.Retry)]
    [InlineData(401, "THIRD_PARTY_AUTH_ERROR", PushOutcome.CredentialFault)]
    [InlineData(403, "PERMISSION_DENIED", PushOutcome.CredentialFault)]
    public async Task Send_FcmError_MapsToItsOutcome(int status, string code, PushOutcome outcome)
    {
        await using var h = await FcmTestHarness.StartAsync();
        h.Server.Script(T, (status, code));

        var result = await h.SendAsync(h.Notification());

        Assert.Equal(new PushResult(outcome, status, code), result);
        Assert.Single(h.Server.Requests); // none of these is resent within the call
        Assert.Equal(1, h.Server.TokenRequests);
    }

    [Fact]
    public async Task Send_UnregisteredToken_IsTokenInvalid()
    {
        await using var h = await FcmTestHarness.StartAsync();
        h.Server.Unregister(T);

        var result = await h.SendAsync(h.Notification());

        Assert.Equal(new PushResult(PushOutcome.TokenInvalid, 404, "UNREGISTERED"), result);
    }

    [Fact]
    public async Task Send_TokenOfAnotherSender_IsTokenInvalidSenderIdMismatch()
    {
        await using var h = await FcmTestHarness.StartAsync();
        h.Server.RegisterToken(T, "someone-elses-app");

        var result = await h.SendAsync(h.Notification());

        Assert.Equal(new PushResult(PushOutcome.TokenInvalid, 403, "SENDER_ID_MISMATCH"), result);
    }

    [Fact]
    public async Task Send_ProjectTheAccountMayNotSendFor_IsACredentialFault()
    {
        await using var h = await FcmTestHarness.StartAsync();

        var result = await h.SendAsync(h.Notification(topic: "another-project"));

        Assert.Equal(new PushResult(PushOutcome.CredentialFault, 403, "PERMISSION_DENIED"), result);
    }

    [Theory]
    [InlineData(429, "QUOTA_EXCEEDED")]
    [InlineData(503, "UNAVAILABLE")]
    [InlineData(500, "INTERNAL")]
    public async Task Send_RetryAfter_IsHonoured(int status, string code)
    {
        await using var h = await FcmTestHarness.StartAsync();
        h.Server.Script(T, (status, code, (TimeSpan?)TimeSpan.FromSeconds(37)));

        var result = await h.SendAsync(h.Notification());

        Assert.Equal(new PushResult(PushOutcome.Retry, status, code, TimeSpan.FromSeconds(37)), result);
    }

    [Fact]
    public async Task Send_Retry_WithoutRetryAfter_LeavesTheDelayToTheRetryPolicy()
    {
        await using var h = await FcmTestHarness.StartAsync();
        h.Server.FailNext(1, 503, "UNAVAILABLE");

        var result = await h.SendAsync(h.Notification());

        Assert.Equal(new PushResult(PushOutcome.Retry, 503, "UNAVAILABLE"), result);
    }

    // --- transport --------------------------------------------------------------------------------

    [Fact]
    public async Task Send_OverTlsWithThePinnedCertificate_IsSentOverHttp2()
    {
        await using var h = await FcmTestHarness.StartAsync(server: o => o.UseTls = true);

        var result = await h.SendAsync(h.Notification());

        Assert.Equal(PushOutcome.Sent, result.Outcome);
        Assert.Equal("HTTP/2", Assert.Single(h.Server.Requests).Protocol);
        Assert.Equal(1, h.Server.TokenRequests);
    }

    [Fact]
    public async Task Send_OverTlsToAnUntrustedCertificate_IsRetry()
    {
        await using var h = await FcmTestHarness.StartAsync(server: o => o.UseTls = true, trustCertificate: false);

        var result = await h.SendAsync(h.Notification());

        Assert.Equal(new PushResult(PushOutcome.Retry, 0, "AuthUnavailable"), result);
        Assert.Equal(0, h.Server.TokenRequests);
    }

    [Fact]
    public async Task Send_CallerCancellation_Throws()
    {
        await using var h = await FcmTestHarness.StartAsync();
        using var cts = new CancellationTokenSource();
        await cts.CancelAsync();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => h.Provider.SendAsync(h.Notification(), cts.Token).AsTask());
    }

    // --- logging ----------------------------------------------------------------------------------

    [Fact]
    public async Task Logs_NeverContainRegistrationTokensAccessTokensOrKeys()
    {
        await using var h = await FcmTestHarness.StartAsync();
        h.Server.Unregister(T);
        await h.SendAsync(h.Notification());
        h.Server.RegisterToken("other-" + T, "someone-else");
        await h.SendAsync(h.Notification(token: "other-" + T));
        h.Server.ExpireAccessTokens();
        h.Server.Script("third-" + T, (400, "INVALID_ARGUMENT"));
        await h.SendAsync(h.Notification(token: "third-" + T));
        await h.Server.DisposeAsync();
        await h.SendAsync(h.Notification());

        var lines = h.Logs.Lines;
        Assert.Contains(lines, l => l.Text.Contains("tok:", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.Id.Id == 3201);
        Assert.Contains(lines, l => l.Id.Id == 3202);
        Assert.Contains(lines, l => l.Id.Id == 3204);
        Assert.Contains(lines, l => l.Id.Id == 3209);
        Assert.Contains(lines, l => l.Id.Id == 3220);
        Assert.All(lines, l =>
        {
            Assert.DoesNotContain(T, l.Text, StringComparison.Ordinal);
            Assert.DoesNotContain("ya29.", l.Text, StringComparison.Ordinal);
            Assert.DoesNotContain("PRIVATE KEY", l.Text, StringComparison.Ordinal);
        });
    }

    // --- wiring -----------------------------------------------------------------------------------

    [Fact]
    public async Task AddFcmProvider_RegistersAnFcmPushProviderFromConfiguration()
    {
        await using var h = await FcmTestHarness.StartAsync();
        var services = new ServiceCollection();
        services.AddLogging();
        services.AddSingleton<TimeProvider>(h.Time);
        services.AddFcmProvider().Configure(o =>
        {
            o.BaseUrl = h.Server.BaseUrl;
            o.ServiceAccountJson = h.AccountJson;
        });
        await using var provider = services.BuildServiceProvider();

        var push = Assert.Single(provider.GetServices<IPushProvider>());
        var result = await push.SendAsync(h.Notification(), Ct);

        Assert.Equal(Platform.Fcm, push.Platform);
        Assert.IsType<FcmProvider>(push);
        Assert.Same(provider.GetRequiredService<IFcmTokenCache>(), ((FcmProvider)push).TokenCache);
        Assert.Equal(PushOutcome.Sent, result.Outcome);
    }

    [Fact]
    public void AddFcmProvider_InvalidOptions_FailValidationWithClearMessages()
    {
        var services = new ServiceCollection();
        services.AddFcmProvider().Configure(o =>
        {
            o.BaseUrl = "ftp://fcm";
            o.ServiceAccountFile = "/nonexistent/key.json";
            o.RequestTimeout = TimeSpan.Zero;
        });
        using var provider = services.BuildServiceProvider();

        var ex = Assert.Throws<OptionsValidationException>(() => provider.GetRequiredService<IOptions<FcmOptions>>().Value);

        Assert.Contains(ex.Failures, f => f.Contains("Herald:Fcm:BaseUrl", StringComparison.Ordinal));
        Assert.Contains(ex.Failures, f => f.Contains("Herald:Fcm:ServiceAccountFile '/nonexistent/key.json' does not exist", StringComparison.Ordinal));
        Assert.Contains(ex.Failures, f => f.Contains("Herald:Fcm:RequestTimeout must be positive", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Create_WithAServiceAccountFile_Sends()
    {
        await using var h = await FcmTestHarness.StartAsync();
        var file = Path.Combine(Path.GetTempPath(), "herald-fcm-sa-" + Guid.NewGuid().ToString("N") + ".json");
        await File.WriteAllTextAsync(file, h.AccountJson, Ct);
        try
        {
            using var provider = FcmProvider.Create(new FcmOptions { BaseUrl = h.Server.BaseUrl, ServiceAccountFile = file }, h.Time);

            var result = await provider.SendAsync(h.Notification(), Ct);

            Assert.Equal(PushOutcome.Sent, result.Outcome);
        }
        finally
        {
            File.Delete(file);
        }
    }
}
