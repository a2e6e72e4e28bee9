using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Xunit;

namespace Herald.Server.Tests;

/// <summary>
/// A real Dovecot 2.3 delivering mail with dovecot-lda, its push_notification OX driver calling Herald, Herald pushing to
/// the fake APNs. The test fails (never skips) when Dovecot cannot run.
/// </summary>
public sealed class DovecotEndToEndTests
{
    private const string Connector = "mx";
    private const string User = "dovecot";
    private const string Password = "s3cret-password-42";
    private const string From = "=?UTF-8?Q?J=C3=B6rg_M=C3=BCller?= <joerg@example.org>";
    private const string Subject = "=?UTF-8?B?R3LDvMOfZSBhdXMgS8O2bG4=?="; // "Grüße aus Köln"

    private static string Token(int n) => "d0" + n.ToString("x2") + new string('c', 60);

    internal static string PushUrl(string herald, string connector = Connector)
    {
        var uri = new Uri(herald);
        return $"http://{User}:{Password}@127.0.0.1:{uri.Port}/dovecot/notify/{connector}";
    }

    internal static async Task<string> SetUpAsync(GatewayHarness gw, string mailbox, string token, string style, CancellationToken ct)
    {
        using (var put = await gw.Client.PutAsJsonAsync("v1/connectors/" + Connector, new { kind = "dovecot", username = User, password = Password }, ct))
        {
            Assert.True(put.IsSuccessStatusCode, await put.Content.ReadAsStringAsync(ct));
        }

        using var reg = await gw.Client.PostAsJsonAsync("v1/registrations", new { platform = "apns", token, source = "dovecot", mailbox, connector = Connector, style }, ct);
        var body = await reg.Content.ReadAsStringAsync(ct);
        Assert.True(reg.IsSuccessStatusCode, body);
        using var doc = JsonDocument.Parse(body);
        return doc.RootElement.GetProperty("id").GetString()!;
    }

    [Fact]
    public async Task RealDovecot_Lda_PushesPreviewWithDecodedSubjectAndSender_AndUnseenBadge()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var gw = await GatewayHarness.StartAsync(cancellationToken: ct);
        await SetUpAsync(gw, "alice", Token(1), "preview", ct);
        await using var dovecot = await DovecotTestServer.StartAsync(PushUrl(gw.BaseUrl), ct);
        await dovecot.SetPushMetadataAsync("alice", ct);

        await dovecot.DeliverAsync("alice", DovecotTestServer.Message(From, Subject, 1), ct);

        var push = await gw.Apns.WaitForRequestAsync(r => r.Token == Token(1), ct).WaitAsync(TimeSpan.FromSeconds(30), ct);
        using var payload = JsonDocument.Parse(push.Payload!);
        var aps = payload.RootElement.GetProperty("aps");
        Assert.Equal(1, aps.GetProperty("badge").GetInt32());
        var alert = aps.GetProperty("alert");
        Assert.Equal("Jörg Müller", alert.GetProperty("title").GetString());
        Assert.Equal("Grüße aus Köln", alert.GetProperty("body").GetString());
        Assert.DoesNotContain("body text", push.Payload!, StringComparison.Ordinal); // the snippet never travels

        // A second message: Dovecot's unseen count (2) is the badge.
        await dovecot.DeliverAsync("alice", DovecotTestServer.Message("bob@example.org", "plain", 2), ct);
        var second = await gw.Apns.WaitForRequestAsync(r => r.Token == Token(1) && r.Payload!.Contains("\"badge\":2", StringComparison.Ordinal), ct).WaitAsync(TimeSpan.FromSeconds(30), ct);
        Assert.Contains("plain", second.Payload!, StringComparison.Ordinal);
        Assert.DoesNotContain("push-notification-ox: Error", dovecot.Log, StringComparison.Ordinal);

        // Subject and sender are nowhere in the database.
        await gw.App.StopAsync(ct);
        var bytes = await File.ReadAllBytesAsync(gw.DatabasePath, ct);
        var wal = gw.DatabasePath + "-wal";
        var all = Encoding.UTF8.GetString(bytes) + (File.Exists(wal) ? Encoding.UTF8.GetString(await File.ReadAllBytesAsync(wal, ct)) : string.Empty);
        Assert.DoesNotContain("Köln", all, StringComparison.Ordinal);
        Assert.DoesNotContain("Müller", all, StringComparison.Ordinal);
        Assert.DoesNotContain("body text", all, StringComparison.Ordinal);
    }

    [Fact]
    public async Task RealDovecot_HeraldDownAtDelivery_MailIsDeliveredPushIsLost_HeraldIntactAndNextMailCarriesTheFullBadge()
    {
        var ct = TestContext.Current.CancellationToken;
        var shared = Path.Combine(Path.GetTempPath(), "herald-dovecot-db-" + Guid.NewGuid().ToString("N")[..12]);
        Directory.CreateDirectory(shared);
        var database = new Dictionary<string, string?> { ["Herald:Database"] = "sqlite:" + Path.Combine(shared, "herald.db") };
        try
        {
            string registrationId;
            DovecotTestServer dovecot;
            await using (var gw = await GatewayHarness.StartAsync(database, cancellationToken: ct))
            {
                registrationId = await SetUpAsync(gw, "alice", Token(2), "badge", ct);

                dovecot = await DovecotTestServer.StartAsync(PushUrl(gw.BaseUrl), ct);
                await dovecot.SetPushMetadataAsync("alice", ct);
                await dovecot.DeliverAsync("alice", DovecotTestServer.Message(From, Subject, 1), ct);
                var first = await gw.Apns.WaitForRequestAsync(r => r.Token == Token(2), ct).WaitAsync(TimeSpan.FromSeconds(30), ct);
                Assert.Contains("\"badge\":1", first.Payload!, StringComparison.Ordinal);
            }

            await using (dovecot)
            {
                // Herald is down: dovecot-lda still delivers (exit 0); the OX driver logs the refused connection and does not
                // retry later: that push is lost.
                await dovecot.DeliverAsync("alice", DovecotTestServer.Message(From, "while down", 2), ct);
                Assert.Contains("push-notification-ox: Error when sending notification", dovecot.Log, StringComparison.Ordinal);
                Assert.Contains("Connection refused", dovecot.Log, StringComparison.Ordinal);

                await using var gw2 = await GatewayHarness.StartAsync(database, cancellationToken: ct);
                var registration = await gw2.GetRegistrationAsync(registrationId, ct);
                Assert.Equal("active", registration.GetProperty("status").GetString());
                Assert.Equal(1, registration.GetProperty("unreadCount").GetInt32());
                using (var health = await gw2.Client.GetAsync("readyz", ct))
                {
                    Assert.Equal(HttpStatusCode.OK, health.StatusCode);
                }

                // The next delivery heals the badge: Dovecot counts every unseen message, including the one whose push was lost.
                dovecot.SetPushUrl(PushUrl(gw2.BaseUrl));
                await dovecot.DeliverAsync("alice", DovecotTestServer.Message(From, "after", 3), ct);
                await gw2.Apns.WaitForRequestAsync(r => r.Token == Token(2) && r.Payload!.Contains("\"badge\":3", StringComparison.Ordinal), ct).WaitAsync(TimeSpan.FromSeconds(30), ct);

                // The lost event never turns up; a push of the first mail may be repeated if the first gateway stopped before it
                // recorded the send (at-least-once), which is harmless.
                Assert.DoesNotContain(gw2.Apns.Requests, r => r.Payload!.Contains("\"badge\":2", StringComparison.Ordinal));
            }
        }
        finally
        {
            try
            {
                Directory.Delete(shared, recursive: true);
            }
            catch (IOException)
            {
                // Cleaned up later.
            }
        }
    }
}

/// <summary>The Dovecot callback over HTTP, without Dovecot: authentication, bad bodies, other events.</summary>
public sealed class DovecotEndpointTests
{
    private static HttpRequestMessage Put(string url, string body, string? user = "dovecot", string? password = "s3cret-password-42", string contentType = "application/json; charset=utf-8")
    {
        var request = new HttpRequestMessage(HttpMethod.Put, url) { Content = new StringContent(body, Encoding.UTF8) };
        request.Content.Headers.ContentType = MediaTypeHeaderValue.Parse(contentType);
        if (user is not null)
        {
            request.Headers.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes(user + ":" + password)));
        }

        return request;
    }

    private static async Task<(HttpStatusCode Status, string? ContentType, string Body)> SendAsync(HttpClient client, HttpRequestMessage request, CancellationToken ct)
    {
        using (request)
        using (var response = await client.SendAsync(request, ct))
        {
            return (response.StatusCode, response.Content.Headers.ContentType?.MediaType, await response.Content.ReadAsStringAsync(ct));
        }
    }

    [Fact]
    public async Task Callback_AuthBodiesAndEvents_AreAnsweredClearly()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var gw = await GatewayHarness.StartAsync(cancellationToken: ct);
        await DovecotEndToEndTests.SetUpAsync(gw, "carol", "d0ff" + new string('e', 60), "badge", ct);
        using var raw = new HttpClient { BaseAddress = new Uri(gw.BaseUrl + "/") };
        const string good = """{"user":"carol","event":"messageNew","folder":"INBOX","imap-uidvalidity":1,"imap-uid":7,"from":"a@b","subject":"s","snippet":"x","unseen":5}""";

        var wrong = await SendAsync(raw, Put("dovecot/notify/mx", good, password: "nope"), ct);
        Assert.Equal(HttpStatusCode.Unauthorized, wrong.Status);
        Assert.Equal("application/problem+json", wrong.ContentType);

        var none = await SendAsync(raw, Put("dovecot/notify/mx", good, user: null), ct);
        Assert.Equal(HttpStatusCode.Unauthorized, none.Status);

        var unknown = await SendAsync(raw, Put("dovecot/notify/nosuch", good), ct);
        Assert.Equal(HttpStatusCode.Unauthorized, unknown.Status);

        var malformed = await SendAsync(raw, Put("dovecot/notify/mx", """{"user":"carol","event":"""), ct);
        Assert.Equal(HttpStatusCode.BadRequest, malformed.Status);
        Assert.Equal("application/problem+json", malformed.ContentType);
        Assert.Contains("not valid JSON", malformed.Body, StringComparison.Ordinal);

        var noUser = await SendAsync(raw, Put("dovecot/notify/mx", """{"event":"messageNew"}"""), ct);
        Assert.Equal(HttpStatusCode.BadRequest, noUser.Status);
        Assert.Contains("'user' is required", noUser.Body, StringComparison.Ordinal);

        var huge = "{\"user\":\"carol\",\"event\":\"messageNew\",\"snippet\":\"" + new string('x', 70_000) + "\"}";
        using (var request = Put("dovecot/notify/mx", huge))
        {
            request.Headers.ExpectContinue = true;
            var tooLarge = await SendAsync(raw, request, ct);
            Assert.Equal(HttpStatusCode.RequestEntityTooLarge, tooLarge.Status);
            Assert.Equal("application/problem+json", tooLarge.ContentType);
        }

        var xml = await SendAsync(raw, Put("dovecot/notify/mx", "<x/>", contentType: "text/xml"), ct);
        Assert.Equal(HttpStatusCode.UnsupportedMediaType, xml.Status);

        var other = await SendAsync(raw, Put("dovecot/notify/mx", """{"user":"carol","event":"messageRead","folder":"INBOX"}"""), ct);
        Assert.Equal(HttpStatusCode.NoContent, other.Status);
        Assert.Empty(gw.Apns.Requests);

        // The tenant-qualified URL reaches the same connector.
        var ok = await SendAsync(raw, Put("dovecot/notify/default/mx", good), ct);
        Assert.Equal(HttpStatusCode.NoContent, ok.Status);
        var push = await gw.Apns.WaitForRequestAsync(r => r.Token.StartsWith("d0ff", StringComparison.Ordinal), ct).WaitAsync(TimeSpan.FromSeconds(30), ct);
        Assert.Contains("\"badge\":5", push.Payload!, StringComparison.Ordinal);
    }

    [Fact]
    public async Task StoreLocked_Answers503WithRetryAfter_ThenTheRetryIsStoredAndPushed()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var gw = await GatewayHarness.StartAsync(cancellationToken: ct);
        await DovecotEndToEndTests.SetUpAsync(gw, "dave", "d0ee" + new string('e', 60), "badge", ct);
        using var raw = new HttpClient { BaseAddress = new Uri(gw.BaseUrl + "/") };
        const string body = """{"user":"dave","event":"messageNew","folder":"INBOX","imap-uid":3,"unseen":3}""";

        await using (var blocker = new Microsoft.Data.Sqlite.SqliteConnection($"Data Source={gw.DatabasePath};Pooling=False"))
        {
            await blocker.OpenAsync(ct);
            await using (var begin = blocker.CreateCommand())
            {
                begin.CommandText = "BEGIN EXCLUSIVE";
                await begin.ExecuteNonQueryAsync(ct);
            }

            using var request = Put("dovecot/notify/mx", body);
            using var response = await raw.SendAsync(request, ct);
            Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
            Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
            Assert.NotNull(response.Headers.RetryAfter);

            await using var rollback = blocker.CreateCommand();
            rollback.CommandText = "ROLLBACK";
            await rollback.ExecuteNonQueryAsync(ct);
        }

        // Dovecot's retry (max_retries=1) after the lock is gone is stored and pushed.
        var retry = await SendAsync(raw, Put("dovecot/notify/mx", body), ct);
        Assert.Equal(HttpStatusCode.NoContent, retry.Status);
        var push = await gw.Apns.WaitForRequestAsync(r => r.Token.StartsWith("d0ee", StringComparison.Ordinal), ct).WaitAsync(TimeSpan.FromSeconds(30), ct);
        Assert.Contains("\"badge\":3", push.Payload!, StringComparison.Ordinal);
    }

    [Fact]
    public async Task AllowFrom_OtherNetwork_IsForbidden()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var gw = await GatewayHarness.StartAsync(cancellationToken: ct);
        using (var put = await gw.Client.PutAsJsonAsync("v1/connectors/mx", new { kind = "dovecot", username = "dovecot", password = "s3cret-password-42", allowFrom = new[] { "10.0.0.0/8" } }, ct))
        {
            Assert.True(put.IsSuccessStatusCode, await put.Content.ReadAsStringAsync(ct));
        }

        using var raw = new HttpClient { BaseAddress = new Uri(gw.BaseUrl + "/") };
        var denied = await SendAsync(raw, Put("dovecot/notify/mx", """{"user":"u","event":"messageNew"}"""), ct);
        Assert.Equal(HttpStatusCode.Forbidden, denied.Status);

        using (var put = await gw.Client.PutAsJsonAsync("v1/connectors/mx", new { kind = "dovecot", username = "dovecot", password = "s3cret-password-42", allowFrom = new[] { "127.0.0.0/8" } }, ct))
        {
            Assert.True(put.IsSuccessStatusCode);
        }

        var allowed = await SendAsync(raw, Put("dovecot/notify/mx", """{"user":"u","event":"messageNew"}"""), ct);
        Assert.Equal(HttpStatusCode.NoContent, allowed.Status);
    }
}
