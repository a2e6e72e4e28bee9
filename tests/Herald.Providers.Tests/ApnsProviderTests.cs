using System.Buffers.Text;
using System.Security.Cryptography;
using System.Text;
using Herald.Core.Notifications;
using Herald.Core.Registrations;
using Herald.Providers.Apns;
using Herald.Simulators.Apns;
using Xunit;

namespace Herald.Providers.Tests;

public sealed class ApnsProviderTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Send_BadgePush_ArrivesWithExactHeadersAndPayload()
    {
        await using var h = await ApnsTestHarness.StartAsync();
        var messageId = Guid.Parse("6F1D9C1E-2B3A-4C5D-8E9F-0A1B2C3D4E5F");
        var expires = new DateTimeOffset(2025, 6, 3, 9, 0, 0, TimeSpan.Zero);

        var result = await h.SendAsync(h.Notification(collapseId: "inbox", expiresAt: expires, messageId: messageId));

        Assert.Equal(PushOutcome.Sent, result.Outcome);
        Assert.Equal(200, result.StatusCode);
        var r = Assert.Single(h.Production.Requests);
        Assert.Equal("POST", r.Method);
        Assert.Equal("/3/device/" + ApnsTestHarness.Token, r.Path);
        Assert.Equal("alert", r.PushType);
        Assert.Equal("10", r.Priority);
        Assert.Equal(ApnsTestHarness.Topic, r.Topic);
        Assert.Equal(expires.ToUnixTimeSeconds().ToString(System.Globalization.CultureInfo.InvariantCulture), r.Expiration);
        Assert.Equal("inbox", r.CollapseId);
        Assert.Equal("6f1d9c1e-2b3a-4c5d-8e9f-0a1b2c3d4e5f", r.RequestApnsId);
        Assert.StartsWith("bearer ", r.Authorization, StringComparison.Ordinal);
        Assert.Equal("{\"aps\":{\"badge\":3}}", r.Payload);
        Assert.Empty(h.Sandbox.Requests);
    }

    [Fact]
    public async Task Send_WithoutExpirationOrCollapseId_OmitsThoseHeaders()
    {
        await using var h = await ApnsTestHarness.StartAsync();

        await h.SendAsync(h.Notification());

        var r = Assert.Single(h.Production.Requests);
        Assert.Null(r.Expiration);
        Assert.Null(r.CollapseId);
    }

    [Fact]
    public async Task Send_AlertPush_HasAlertTypePriority10AndFullPayload()
    {
        await using var h = await ApnsTestHarness.StartAsync();
        var content = new NotificationContent
        {
            Kind = PushKind.Alert,
            Title = "New mail",
            Body = "Grüße from Zoë",
            Badge = 7,
            Sound = "default",
            Data = new Dictionary<string, string> { ["folder"] = "inbox" },
        };

        var result = await h.SendAsync(h.Notification(content));

        Assert.Equal(PushOutcome.Sent, result.Outcome);
        var r = Assert.Single(h.Production.Requests);
        Assert.Equal("alert", r.PushType);
        Assert.Equal("10", r.Priority);
        Assert.Equal("{\"aps\":{\"alert\":{\"title\":\"New mail\",\"body\":\"Grüße from Zoë\"},\"badge\":7,\"sound\":\"default\"},\"folder\":\"inbox\"}", r.Payload);
    }

    [Fact]
    public async Task Send_BackgroundPush_HasBackgroundTypeAndPriority5()
    {
        await using var h = await ApnsTestHarness.StartAsync();

        var result = await h.SendAsync(h.Notification(new NotificationContent { Kind = PushKind.Background }));

        Assert.Equal(PushOutcome.Sent, result.Outcome);
        var r = Assert.Single(h.Production.Requests);
        Assert.Equal("background", r.PushType);
        Assert.Equal("5", r.Priority);
        Assert.Equal("{\"aps\":{\"content-available\":1}}", r.Payload);
    }

    [Fact]
    public async Task Send_SandboxNotification_GoesToTheSandboxEndpoint()
    {
        await using var h = await ApnsTestHarness.StartAsync();
        h.Sandbox.RegisterDevice(ApnsTestHarness.Token, ApnsTestHarness.Topic, FakeApnsEnvironment.Sandbox);

        var result = await h.SendAsync(h.Notification(environment: PushEnvironment.Sandbox));

        Assert.Equal(PushOutcome.Sent, result.Outcome);
        Assert.Single(h.Sandbox.Requests);
        Assert.Empty(h.Production.Requests);
    }

    [Fact]
    public async Task Send_SandboxTokenToProduction_ReturnsTokenInvalidBadDeviceToken()
    {
        await using var h = await ApnsTestHarness.StartAsync();
        h.Production.RegisterDevice(ApnsTestHarness.Token, ApnsTestHarness.Topic, FakeApnsEnvironment.Sandbox);

        var result = await h.SendAsync(h.Notification());

        Assert.Equal(new PushResult(PushOutcome.TokenInvalid, 400, "BadDeviceToken"), result);
    }

    [Fact]
    public async Task Send_VariableLengthToken_IsSent()
    {
        await using var h = await ApnsTestHarness.StartAsync();
        var token = string.Concat(Enumerable.Repeat("0a1b2c3d", 20)); // 160 hex digits

        var result = await h.SendAsync(h.Notification(token: token));

        Assert.Equal(PushOutcome.Sent, result.Outcome);
        Assert.Equal(token, Assert.Single(h.Production.Requests).Token);
    }

    [Fact]
    public async Task Send_ManyConcurrently_ReusesOneJwt()
    {
        await using var h = await ApnsTestHarness.StartAsync();
        using var guard = Guard();

        var results = await Task.WhenAll(Enumerable.Range(0, 200).Select(i =>
            h.Provider.SendAsync(h.Notification(token: i.ToString("x8", System.Globalization.CultureInfo.InvariantCulture)), guard.Token).AsTask()));

        Assert.All(results, r => Assert.Equal(PushOutcome.Sent, r.Outcome));
        Assert.Single(h.Production.Requests.Select(r => r.Authorization).Distinct());
        Assert.Equal(1, h.Tokens.MintCount);
        Assert.Equal(200, h.Production.AcceptedCount);
    }

    [Fact]
    public async Task Send_Jwt_IsES256WithKidIssIatAndVerifiableP1363Signature()
    {
        await using var h = await ApnsTestHarness.StartAsync();

        await h.SendAsync(h.Notification());

        var jwt = Assert.Single(h.Production.Requests).Authorization!["bearer ".Length..];
        var parts = jwt.Split('.');
        Assert.Equal(3, parts.Length);
        Assert.Equal("{\"alg\":\"ES256\",\"kid\":\"KEY1234567\"}", Encoding.UTF8.GetString(Base64Url.DecodeFromChars(parts[0])));
        Assert.Equal($"{{\"iss\":\"TEAM123456\",\"iat\":{h.Time.GetUtcNow().ToUnixTimeSeconds()}}}", Encoding.UTF8.GetString(Base64Url.DecodeFromChars(parts[1])));
        var signature = Base64Url.DecodeFromChars(parts[2]);
        Assert.Equal(64, signature.Length);
        using var key = ECDsa.Create();
        key.ImportFromPem(h.Options.PrivateKeyPem);
        Assert.True(key.VerifyData(Encoding.ASCII.GetBytes(parts[0] + "." + parts[1]), signature, HashAlgorithmName.SHA256, DSASignatureFormat.IeeeP1363FixedFieldConcatenation));
    }

    [Fact]
    public async Task Send_Jwt_IsRefreshedAt40MinutesAndNotBefore()
    {
        await using var h = await ApnsTestHarness.StartAsync();

        await h.SendAsync(h.Notification());
        h.Time.Advance(TimeSpan.FromMinutes(40) - TimeSpan.FromSeconds(1));
        await h.SendAsync(h.Notification());
        h.Time.Advance(TimeSpan.FromSeconds(1));
        var result = await h.SendAsync(h.Notification());

        Assert.Equal(PushOutcome.Sent, result.Outcome);
        var auth = h.Production.Requests.Select(r => r.Authorization).ToArray();
        Assert.Equal(auth[0], auth[1]);
        Assert.NotEqual(auth[1], auth[2]);
        Assert.Equal(2, h.Tokens.MintCount);
    }

    [Fact]
    public async Task Send_WithConfiguredRefreshInterval_RefreshesAtThatAge()
    {
        await using var h = await ApnsTestHarness.StartAsync(o => o.TokenRefreshInterval = TimeSpan.FromMinutes(25));

        await h.SendAsync(h.Notification());
        h.Time.Advance(TimeSpan.FromMinutes(24));
        await h.SendAsync(h.Notification());
        h.Time.Advance(TimeSpan.FromMinutes(1));
        await h.SendAsync(h.Notification());

        Assert.Equal(2, h.Production.Requests.Select(r => r.Authorization).Distinct().Count());
        Assert.Equal(2, h.Tokens.MintCount);
    }

    [Fact]
    public async Task Send_ExpiredProviderToken_MintsNewTokenAndDeliversInTheSameCall()
    {
        await using var h = await ApnsTestHarness.StartAsync();
        await h.SendAsync(h.Notification());
        h.Production.Script(ApnsTestHarness.Token, (403, "ExpiredProviderToken"));
        var messageId = Guid.NewGuid();

        var result = await h.SendAsync(h.Notification(messageId: messageId));

        Assert.Equal(PushOutcome.Sent, result.Outcome);
        var requests = h.Production.Requests;
        Assert.Equal(3, requests.Count);
        Assert.Equal(("ExpiredProviderToken", 200), (requests[1].Reason, requests[2].Status));
        Assert.Equal(requests[0].Authorization, requests[1].Authorization);
        Assert.NotEqual(requests[1].Authorization, requests[2].Authorization);
        Assert.Equal(requests[1].RequestApnsId, requests[2].RequestApnsId);
        Assert.Equal(requests[1].Payload, requests[2].Payload);
        Assert.Equal(2, h.Tokens.MintCount);

        // The new token is now the shared one.
        await h.SendAsync(h.Notification());
        Assert.Equal(requests[2].Authorization, h.Production.Requests[3].Authorization);
    }

    [Fact]
    public async Task Send_ExpiredProviderTokenTwice_ResendsOnlyOnceThenRetries()
    {
        await using var h = await ApnsTestHarness.StartAsync();
        h.Production.Script(ApnsTestHarness.Token, (403, "ExpiredProviderToken"), (403, "ExpiredProviderToken"));

        var result = await h.SendAsync(h.Notification());

        Assert.Equal(new PushResult(PushOutcome.Retry, 403, "ExpiredProviderToken"), result);
        Assert.Equal(2, h.Production.Requests.Count);
    }

    [Fact]
    public async Task Send_ServerFindsTokenExpired_RenewsAndDelivers()
    {
        // APNs' clock runs ahead of ours: it finds a 31-minute-old token expired (the fake plays it with a
        // 30-minute lifetime), while our 40-minute refresh has not come yet.
        await using var h = await ApnsTestHarness.StartAsync(server: s => s.ProviderTokenLifetime = TimeSpan.FromMinutes(30));
        await h.SendAsync(h.Notification());
        h.Time.Advance(TimeSpan.FromMinutes(31));

        var result = await h.SendAsync(h.Notification());

        Assert.Equal(PushOutcome.Sent, result.Outcome);
        Assert.Equal([200, 403, 200], h.Production.Requests.Select(r => r.Status));
        Assert.Equal(2, h.Tokens.MintCount);
    }

    [Fact]
    public async Task Send_ExpiredWhileMintingSuspended_RetriesWithoutMinting()
    {
        await using var h = await ApnsTestHarness.StartAsync(o => o.TokenRefreshInterval = TimeSpan.FromMinutes(55));
        await h.SendAsync(h.Notification());
        h.Time.Advance(TimeSpan.FromMinutes(54));
        h.Production.Script(ApnsTestHarness.Token, (429, "TooManyProviderTokenUpdates"));
        Assert.Equal(PushOutcome.Retry, (await h.SendAsync(h.Notification())).Outcome);
        h.Time.Advance(TimeSpan.FromMinutes(7)); // the token is 61 minutes old; minting stays suspended until minute 74

        var expired = await h.SendAsync(h.Notification());
        h.Time.Advance(TimeSpan.FromMinutes(13));
        var renewed = await h.SendAsync(h.Notification());

        Assert.Equal(new PushResult(PushOutcome.Retry, 403, "ExpiredProviderToken"), expired);
        Assert.Equal(PushOutcome.Sent, renewed.Outcome);
        Assert.Equal(2, h.Tokens.MintCount);
        Assert.Equal([200, 429, 403, 200], h.Production.Requests.Select(r => r.Status));
    }

    [Fact]
    public async Task Send_TooManyProviderTokenUpdates_RetriesKeepsTokenAndStopsMintingFor20Minutes()
    {
        await using var h = await ApnsTestHarness.StartAsync();
        await h.SendAsync(h.Notification());
        h.Time.Advance(TimeSpan.FromMinutes(39));
        h.Production.Script(ApnsTestHarness.Token, (429, "TooManyProviderTokenUpdates"));

        var throttled = await h.SendAsync(h.Notification());
        h.Time.Advance(TimeSpan.FromMinutes(2)); // 41 minutes: due for refresh, but minting is suspended
        var afterRefreshAge = await h.SendAsync(h.Notification());
        h.Time.Advance(TimeSpan.FromMinutes(18)); // 20 minutes after the 429
        var afterBackoff = await h.SendAsync(h.Notification());

        Assert.Equal(new PushResult(PushOutcome.Retry, 429, "TooManyProviderTokenUpdates"), throttled);
        Assert.Equal(PushOutcome.Sent, afterRefreshAge.Outcome);
        Assert.Equal(PushOutcome.Sent, afterBackoff.Outcome);
        var auth = h.Production.Requests.Select(r => r.Authorization).ToArray();
        Assert.Equal(auth[0], auth[1]);
        Assert.Equal(auth[0], auth[2]);
        Assert.NotEqual(auth[0], auth[3]);
        Assert.Equal(2, h.Tokens.MintCount);
    }

    [Theory]
    [InlineData(400, "BadCollapseId", PushOutcome.Failed)]
    [InlineData(400, "BadExpirationDate", PushOutcome.Failed)]
    [InlineData(400, "BadMessageId", PushOutcome.Failed)]
    [InlineData(400, "BadPriority", PushOutcome.Failed)]
    [InlineData(400, "BadTopic", PushOutcome.Failed)]
    [InlineData(400, "DuplicateHeaders", PushOutcome.Failed)]
    [InlineData(400, "InvalidPushType", PushOutcome.Failed)]
    [InlineData(400, "MissingDeviceToken", PushOutcome.Failed)]
    [InlineData(400, "MissingTopic", PushOutcome.Failed)]
    [InlineData(400, "PayloadEmpty", PushOutcome.Failed)]
    [InlineData(400, "TopicDisallowed", PushOutcome.Failed)]
    [InlineData(400, "SomethingNew", PushOutcome.Failed)]
    [InlineData(400, "BadDeviceToken", PushOutcome.TokenInvalid)]
    [InlineData(400, "DeviceTokenNotForTopic", PushOutcome.TokenInvalid)]
    [InlineData(400, "IdleTimeout", PushOutcome.Retry)]
    [InlineData(403, "InvalidProviderToken", PushOutcome.CredentialFault)]
    [InlineData(403, "MissingProviderToken", PushOutcome.CredentialFault)]
    [InlineData(403, "BadCertificate", PushOutcome.CredentialFault)]
    [InlineData(403, "BadCertificateEnvironment", PushOutcome.CredentialFault)]
    [InlineData(403, "Forbidden", PushOutcome.CredentialFault)]
    [InlineData(404, "BadPath", PushOutcome.Failed)]
    [InlineData(405, "MethodNotAllowed", PushOutcome.Failed)]
    [InlineData(410, "Unregistered", PushOutcome.TokenInvalid)]
    [InlineData(410, "ExpiredToken", PushOutcome.TokenInvalid)]
    [InlineData(413, "PayloadTooLarge", PushOutcome.Failed)]
    [InlineData(429, "TooManyRequests", PushOutcome.Retry)]
    [InlineData(429, "TooManyProviderTokenUpdates", PushOutcome.Retry)]
    [InlineData(500, "InternalServerError", PushOutcome.Retry)]
    [InlineData(503, "ServiceUnavailable", PushOutcome.Retry)]
    [InlineData(503, "Shutdown", PushOutcome.Retry)]
    [InlineData(502, "BadGateway", PushOutcome.Retry)]
    [InlineData(418, "Teapot", PushOutcome.Failed)]
    public async Task Send_ApnsReason_MapsToOutcome(int status, string reason, PushOutcome expected)
    {
        await using var h = await ApnsTestHarness.StartAsync();
        h.Production.Script(ApnsTestHarness.Token, (status, reason));

        var result = await h.SendAsync(h.Notification());

        Assert.Equal(expected, result.Outcome);
        Assert.Equal(status, result.StatusCode);
        Assert.Equal(reason, result.Reason);
        Assert.Single(h.Production.Requests);
    }

    [Fact]
    public async Task Send_Unregistered_ReturnsTokenInvalidWithTimestamp()
    {
        await using var h = await ApnsTestHarness.StartAsync();
        var since = new DateTimeOffset(2025, 5, 30, 12, 34, 56, 789, TimeSpan.Zero);
        h.Production.Unregister(ApnsTestHarness.Token, since);

        var result = await h.SendAsync(h.Notification());

        Assert.Equal(PushOutcome.TokenInvalid, result.Outcome);
        Assert.Equal(410, result.StatusCode);
        Assert.Equal("Unregistered", result.Reason);
        Assert.Equal(since, result.TokenInvalidSince);
    }

    [Fact]
    public async Task Send_DeviceTokenNotForTopic_ReturnsTokenInvalid()
    {
        await using var h = await ApnsTestHarness.StartAsync();
        h.Production.RegisterDevice(ApnsTestHarness.Token, "com.example.other");

        var result = await h.SendAsync(h.Notification());

        Assert.Equal(new PushResult(PushOutcome.TokenInvalid, 400, "DeviceTokenNotForTopic"), result);
    }

    [Fact]
    public async Task Send_ServiceUnavailable_ReturnsRetryWithRetryAfter()
    {
        await using var h = await ApnsTestHarness.StartAsync();
        h.Production.FailNext(1, 503, "ServiceUnavailable", TimeSpan.FromSeconds(120));

        var result = await h.SendAsync(h.Notification());

        Assert.Equal(new PushResult(PushOutcome.Retry, 503, "ServiceUnavailable", TimeSpan.FromSeconds(120)), result);
    }

    [Fact]
    public async Task Send_TooManyRequests_ReturnsRetryWithRetryAfter()
    {
        await using var h = await ApnsTestHarness.StartAsync();
        h.Production.TooManyRequests(ApnsTestHarness.Token, 1, TimeSpan.FromSeconds(30));

        var throttled = await h.SendAsync(h.Notification());
        var next = await h.SendAsync(h.Notification());

        Assert.Equal(new PushResult(PushOutcome.Retry, 429, "TooManyRequests", TimeSpan.FromSeconds(30)), throttled);
        Assert.Equal(PushOutcome.Sent, next.Outcome);
    }

    [Fact]
    public async Task Send_ServerStopped_ReturnsRetryTransportWithoutThrowing()
    {
        await using var h = await ApnsTestHarness.StartAsync();
        Assert.Equal(PushOutcome.Sent, (await h.SendAsync(h.Notification())).Outcome); // a pooled connection exists

        await h.Production.DisposeAsync();
        var afterStop = await h.SendAsync(h.Notification());
        var again = await h.SendAsync(h.Notification());

        Assert.Equal(new PushResult(PushOutcome.Retry, 0, ApnsReasons.Transport), afterStop);
        Assert.Equal(new PushResult(PushOutcome.Retry, 0, ApnsReasons.Transport), again);
    }

    [Fact]
    public async Task Send_NothingListening_ReturnsRetryTransport()
    {
        await using var h = await ApnsTestHarness.StartAsync(o => o.ProductionUrl = "http://127.0.0.1:1");

        var result = await h.SendAsync(h.Notification());

        Assert.Equal(new PushResult(PushOutcome.Retry, 0, ApnsReasons.Transport), result);
    }

    [Fact]
    public async Task Send_CancelledByCaller_Throws()
    {
        await using var h = await ApnsTestHarness.StartAsync();
        using var cts = new CancellationTokenSource();
        await cts.CancelAsync();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => h.Provider.SendAsync(h.Notification(), cts.Token).AsTask());
        Assert.Empty(h.Production.Requests);
    }

    [Fact]
    public async Task Send_PayloadOver4096Bytes_FailsWithoutSending()
    {
        await using var h = await ApnsTestHarness.StartAsync();
        var content = new NotificationContent { Kind = PushKind.Alert, Title = "t", Body = new string('x', 4100) };

        var result = await h.SendAsync(h.Notification(content));

        Assert.Equal(new PushResult(PushOutcome.Failed, 413, "PayloadTooLarge"), result);
        Assert.Empty(h.Production.Requests);
    }

    [Fact]
    public async Task Send_PayloadOfExactly4096Bytes_IsSent()
    {
        await using var h = await ApnsTestHarness.StartAsync();
        var body = new string('x', 4096 - "{\"aps\":{\"alert\":{\"body\":\"\"}}}".Length);
        var content = new NotificationContent { Kind = PushKind.Alert, Body = body };

        var result = await h.SendAsync(h.Notification(content));

        Assert.Equal(PushOutcome.Sent, result.Outcome);
        Assert.Equal(4096, Encoding.UTF8.GetByteCount(Assert.Single(h.Production.Requests).Payload!));
    }

    [Fact]
    public async Task Send_CollapseIdOver64Bytes_FailsWithoutSending()
    {
        await using var h = await ApnsTestHarness.StartAsync();

        var result = await h.SendAsync(h.Notification(collapseId: new string('é', 33))); // 66 bytes in UTF-8

        Assert.Equal(new PushResult(PushOutcome.Failed, 400, "BadCollapseId"), result);
        Assert.Empty(h.Production.Requests);
    }

    [Fact]
    public async Task Send_MalformedDeviceToken_ReturnsTokenInvalidWithoutSending()
    {
        await using var h = await ApnsTestHarness.StartAsync();

        var result = await h.SendAsync(h.Notification(token: "abc/../x"));

        Assert.Equal(new PushResult(PushOutcome.TokenInvalid, 400, "BadDeviceToken"), result);
        Assert.Empty(h.Production.Requests);
    }

    [Fact]
    public async Task Send_MdmWithTokenCredential_FailsWithMdmRequiresCertificate()
    {
        await using var h = await ApnsTestHarness.StartAsync();
        var content = new NotificationContent { Kind = PushKind.Mdm, PushMagic = "5E9B1C3A-0000-4000-8000-000000000001" };

        var result = await h.SendAsync(h.Notification(content));

        Assert.Equal(new PushResult(PushOutcome.Failed, 0, "MdmRequiresCertificate"), result);
        Assert.Empty(h.Production.Requests);
    }

    [Fact]
    public async Task Send_WithoutCredential_ReturnsCredentialFaultNoCredential()
    {
        await using var h = await ApnsTestHarness.StartAsync(withCredential: false);

        var result = await h.SendAsync(h.Notification());

        Assert.Equal(new PushResult(PushOutcome.CredentialFault, 0, "NoCredential"), result);
        Assert.Empty(h.Production.Requests);
    }

    [Fact]
    public async Task Send_UnknownSigningKeyAtApns_ReturnsCredentialFault()
    {
        await using var h = await ApnsTestHarness.StartAsync(o => o.KeyId = "OTHERKEY00");

        var result = await h.SendAsync(h.Notification());

        Assert.Equal(new PushResult(PushOutcome.CredentialFault, 403, "InvalidProviderToken"), result);
    }

    [Fact]
    public async Task Send_OverTlsWithPinnedCertificate_IsSent()
    {
        await using var h = await ApnsTestHarness.StartAsync(tls: true, trustCertificate: true);
        Assert.StartsWith("https://", h.Options.ProductionUrl, StringComparison.Ordinal);

        var result = await h.SendAsync(h.Notification());

        Assert.Equal(PushOutcome.Sent, result.Outcome);
        Assert.Single(h.Production.Requests);
    }

    [Fact]
    public async Task Send_OverTlsWithoutTrust_ReturnsRetryTransport()
    {
        await using var h = await ApnsTestHarness.StartAsync(tls: true);

        var result = await h.SendAsync(h.Notification());

        Assert.Equal(new PushResult(PushOutcome.Retry, 0, ApnsReasons.Transport), result);
        Assert.Empty(h.Production.Requests);
    }

    private static CancellationTokenSource Guard()
    {
        var cts = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
        cts.CancelAfter(TimeSpan.FromSeconds(60));
        return cts;
    }
}
