using System.Buffers.Text;
using System.Collections.Concurrent;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Herald.Core.Security;
using Herald.Simulators.Fcm;
using Herald.Simulators.Graph;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Logging;
using Xunit;

namespace Herald.Server.Tests;

/// <summary>
/// Style preview-encrypted end to end: a source with subject and sender (Dovecot's callback, Microsoft Graph), the gateway
/// sealing the preview with HPKE for the device key, the fake APNs and fake FCM receiving it, and a test device opening it.
/// </summary>
public sealed class EncryptedPreviewTests
{
    private const string Connector = "mx";
    private const string User = "dovecot";
    private const string Password = "s3cret-password-42";
    private const string SubjectText = "Grüße aus Köln: Q3 numbers";
    private const string SenderName = "Jörg Müller";
    private const string FromHeader = "\"Jörg Müller\" <joerg@example.org>";

    private static string Token(int n) => "e0" + n.ToString("x2") + new string('a', 60);

    private static string Key(HpkeKeyPair pair) => Base64Url.EncodeToString(pair.PublicKey);

    private static async Task PutConnectorAsync(GatewayHarness gw, CancellationToken ct)
    {
        using var put = await gw.Client.PutAsJsonAsync("v1/connectors/" + Connector, new { kind = "dovecot", username = User, password = Password }, ct);
        Assert.True(put.IsSuccessStatusCode, await put.Content.ReadAsStringAsync(ct));
    }

    private static async Task<string> RegisterAsync(GatewayHarness gw, string platform, string token, string mailbox, HpkeKeyPair device, CancellationToken ct)
    {
        using var reg = await gw.Client.PostAsJsonAsync(
            "v1/registrations",
            new { platform, token, source = "dovecot", mailbox, connector = Connector, style = "preview-encrypted", encryptionKey = Key(device) },
            ct);
        var body = await reg.Content.ReadAsStringAsync(ct);
        Assert.True(reg.StatusCode == HttpStatusCode.Created, body);
        using var doc = JsonDocument.Parse(body);
        Assert.Equal("preview-encrypted", doc.RootElement.GetProperty("style").GetString());
        Assert.Equal(Key(device), doc.RootElement.GetProperty("encryptionKey").GetString());
        return doc.RootElement.GetProperty("id").GetString()!;
    }

    /// <summary>What Dovecot's OX driver PUTs for a new INBOX message (as DovecotEndpointTests send it).</summary>
    private static async Task DeliverAsync(GatewayHarness gw, string mailbox, string subject, int uid, int unseen, CancellationToken ct)
    {
        var body = JsonSerializer.Serialize(new Dictionary<string, object>
        {
            ["user"] = mailbox,
            ["event"] = "messageNew",
            ["folder"] = "INBOX",
            ["imap-uidvalidity"] = 1700000000,
            ["imap-uid"] = uid,
            ["from"] = FromHeader,
            ["subject"] = subject,
            ["snippet"] = "body text",
            ["unseen"] = unseen,
        });
        using var raw = new HttpClient { BaseAddress = new Uri(gw.BaseUrl + "/") };
        using var request = new HttpRequestMessage(HttpMethod.Put, "dovecot/notify/" + Connector) { Content = new StringContent(body, Encoding.UTF8, "application/json") };
        request.Headers.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes(User + ":" + Password)));
        using var response = await raw.SendAsync(request, ct);
        Assert.Equal(HttpStatusCode.NoContent, response.StatusCode);
    }

    /// <summary>Opens an <c>hx</c> object as a device would: HPKE base mode, info = the registration id, empty aad.</summary>
    private static JsonElement Open(JsonElement hx, HpkeKeyPair device, string registrationId)
    {
        Assert.Equal(1, hx.GetProperty("v").GetInt32());
        var plaintext = Hpke.Open(
            Base64Url.DecodeFromChars(hx.GetProperty("enc").GetString()),
            device.PrivateKey,
            Encoding.UTF8.GetBytes(registrationId),
            [],
            Base64Url.DecodeFromChars(hx.GetProperty("ct").GetString()));
        return JsonDocument.Parse(plaintext).RootElement.Clone();
    }

    private static async Task<string> DatabaseTextAsync(GatewayHarness gw, CancellationToken ct)
    {
        var text = Encoding.UTF8.GetString(await File.ReadAllBytesAsync(gw.DatabasePath, ct));
        var wal = gw.DatabasePath + "-wal";
        return File.Exists(wal) ? text + Encoding.UTF8.GetString(await File.ReadAllBytesAsync(wal, ct)) : text;
    }

    [Fact]
    public async Task Apns_DeviceKeyOpensTheSealedPreview_WrongKeyCannot_AndNeitherDatabaseNorLogsHoldIt()
    {
        var ct = TestContext.Current.CancellationToken;
        var logs = new LogCapture();
        await using var gw = await GatewayHarness.StartAsync(logs.Attach, cancellationToken: ct);
        await PutConnectorAsync(gw, ct);
        var device = Hpke.GenerateKeyPair();
        var id = await RegisterAsync(gw, "apns", Token(1), "alice", device, ct);

        await DeliverAsync(gw, "alice", SubjectText, uid: 42, unseen: 3, ct);

        var push = await gw.Apns.WaitForRequestAsync(r => r.Token == Token(1), ct).WaitAsync(TimeSpan.FromSeconds(30), ct);
        Assert.True(push.Accepted);
        Assert.Equal("alert", push.PushType);
        using var payload = JsonDocument.Parse(push.Payload!);
        var aps = payload.RootElement.GetProperty("aps");
        Assert.Equal("New mail", aps.GetProperty("alert").GetProperty("body").GetString()); // all Apple sees
        Assert.False(aps.GetProperty("alert").TryGetProperty("title", out _));
        Assert.Equal(1, aps.GetProperty("mutable-content").GetInt32());
        Assert.Equal(3, aps.GetProperty("badge").GetInt32());
        Assert.DoesNotContain("Köln", push.Payload!, StringComparison.Ordinal);
        Assert.DoesNotContain("Müller", push.Payload!, StringComparison.Ordinal);
        Assert.DoesNotContain("joerg", push.Payload!, StringComparison.Ordinal);

        var hx = payload.RootElement.GetProperty("hx");
        var preview = Open(hx, device, id);
        Assert.Equal(SubjectText, preview.GetProperty("subject").GetString());
        Assert.Equal(SenderName, preview.GetProperty("from").GetString());
        Assert.Equal("joerg@example.org", preview.GetProperty("fromAddress").GetString());
        Assert.Equal("inbox", preview.GetProperty("folder").GetString());
        Assert.Equal(3, preview.GetProperty("unread").GetInt32());
        Assert.Equal("1700000000:42", preview.GetProperty("ref").GetString());

        // Another key, or this key with another registration's id, opens nothing.
        Assert.ThrowsAny<CryptographicException>(() => Open(hx, Hpke.GenerateKeyPair(), id));
        Assert.ThrowsAny<CryptographicException>(() => Open(hx, device, id + "x"));

        // After the run: the subject, the sender and the ciphertext are in neither the database file (and WAL) nor the logs.
        var ciphertext = hx.GetProperty("ct").GetString()!;
        var enc = hx.GetProperty("enc").GetString()!;
        await gw.App.StopAsync(ct);
        var database = await DatabaseTextAsync(gw, ct);
        var logText = logs.Text;
        Assert.NotEmpty(logs.Lines); // the capture saw the run (debug and up)
        foreach (var secret in new[] { "Köln", "Müller", "joerg@example.org", "body text", ciphertext, ciphertext[..40], enc })
        {
            Assert.DoesNotContain(secret, database, StringComparison.Ordinal);
            Assert.DoesNotContain(secret, logText, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task Fcm_DataOnlyMessage_CarriesTheSameSealedPreview()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var fcm = await FakeFcmServer.StartAsync(cancellationToken: ct);
        await using var gw = await GatewayHarness.StartAsync(
            new Dictionary<string, string?>
            {
                ["Herald:Fcm:BaseUrl"] = fcm.BaseUrl,
                ["Herald:Fcm:ServiceAccountJson"] = fcm.CreateServiceAccount("herald-test"),
            },
            cancellationToken: ct);
        await PutConnectorAsync(gw, ct);
        var device = Hpke.GenerateKeyPair();
        const string token = "fcmEncToken:APA91bHunvZ0123456789";
        var id = await RegisterAsync(gw, "fcm", token, "bob", device, ct);

        await DeliverAsync(gw, "bob", SubjectText, uid: 7, unseen: 5, ct);

        var push = await fcm.WaitForRequestAsync(r => r.Token == token, ct).WaitAsync(TimeSpan.FromSeconds(30), ct);
        Assert.True(push.Accepted);
        Assert.False(push.HasNotification); // data-only: Google sees no text; the app posts the decrypted preview
        Assert.Equal("high", push.AndroidPriority);
        Assert.Equal("5", push.Data["badge"]);
        Assert.Equal("New mail", push.Data["fallback"]);
        Assert.DoesNotContain("Köln", push.Body!, StringComparison.Ordinal);
        using var hx = JsonDocument.Parse(push.Data["hx"]);
        var preview = Open(hx.RootElement, device, id);
        Assert.Equal(SubjectText, preview.GetProperty("subject").GetString());
        Assert.Equal(SenderName, preview.GetProperty("from").GetString());
        Assert.ThrowsAny<CryptographicException>(() => Open(hx.RootElement, Hpke.GenerateKeyPair(), id));
    }

    [Fact]
    public async Task Graph_ThousandCharacterSubject_IsCutBeforeSealing_AndTheFakeApnsAcceptsThePayload()
    {
        var ct = TestContext.Current.CancellationToken;
        const string clientId = "11111111-2222-3333-4444-555555555555";
        const string mailbox = "carol@contoso.com";
        await using var graph = await FakeGraphServer.StartAsync(cancellationToken: ct);
        graph.RegisterApplication(clientId, "graph-secret-value");
        graph.AddMailbox(mailbox);
        await using var gw = await GatewayHarness.StartAsync(new Dictionary<string, string?> { ["Herald:Graph:ReconcileInterval"] = "00:00:00.200" }, cancellationToken: ct);
        using (var put = await gw.Client.PutAsJsonAsync("v1/connectors/o365", new
        {
            kind = "graph",
            baseUrl = graph.BaseUrl,
            auth = new { type = "oauth2", tokenUrl = graph.TokenUrl, clientId, clientSecret = "graph-secret-value" },
        }, ct))
        {
            Assert.True(put.IsSuccessStatusCode, await put.Content.ReadAsStringAsync(ct));
        }

        var device = Hpke.GenerateKeyPair();
        string id;
        using (var reg = await gw.Client.PostAsJsonAsync("v1/registrations", new { platform = "apns", token = Token(3), source = "graph", mailbox, connector = "o365", style = "preview-encrypted", encryptionKey = Key(device) }, ct))
        {
            var body = await reg.Content.ReadAsStringAsync(ct);
            Assert.True(reg.IsSuccessStatusCode, body);
            id = JsonDocument.Parse(body).RootElement.GetProperty("id").GetString()!;
        }

        for (var i = 0; i < 300 && graph.Subscriptions.Count == 0; i++)
        {
            await Task.Delay(50, ct);
        }

        Assert.NotEmpty(graph.Subscriptions);

        // 1,000 characters of multi-byte text with emoji and combining marks: about 2.6 KB of UTF-8 before sealing.
        var subject = string.Concat(Enumerable.Repeat("日本語🇯🇵e\u0301 ", 200))[..1000];
        Assert.Equal(1000, subject.Length);
        await graph.DeliverAsync(mailbox, subject, "Bob Example", "bob@contoso.com", ct);

        var push = await gw.Apns.WaitForRequestAsync(r => r.Token == Token(3), ct).WaitAsync(TimeSpan.FromSeconds(30), ct);
        Assert.True(push.Accepted, push.Reason);
        var size = Encoding.UTF8.GetByteCount(push.Payload!);
        Assert.True(size <= 4096, $"payload {size} bytes");
        using var payload = JsonDocument.Parse(push.Payload!);
        var preview = Open(payload.RootElement.GetProperty("hx"), device, id);
        var shown = preview.GetProperty("subject").GetString()!;
        Assert.True(preview.GetProperty("truncated").GetBoolean());
        Assert.EndsWith("…", shown, StringComparison.Ordinal);
        Assert.StartsWith(shown[..^1], subject, StringComparison.Ordinal);
        Assert.True(shown.Length > 300, $"kept {shown.Length} characters");
        Assert.False(char.IsHighSurrogate(shown[^2])); // never half a character
        Assert.Equal("Bob Example", preview.GetProperty("from").GetString());
        Assert.Equal("bob@contoso.com", preview.GetProperty("fromAddress").GetString());

        await gw.App.StopAsync(ct);
        var database = await DatabaseTextAsync(gw, ct);
        Assert.DoesNotContain(subject[..20], database, StringComparison.Ordinal);
        Assert.DoesNotContain("Bob Example", database, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Validation_BadKeysAndStyleWithoutKey_Answer400WithAClearMessage()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var gw = await GatewayHarness.StartAsync(cancellationToken: ct);
        await PutConnectorAsync(gw, ct);
        var good = Hpke.GenerateKeyPair().PublicKey;
        var compressed = new byte[33];
        compressed[0] = (byte)(0x02 | (good[64] & 1));
        good.AsSpan(1, 32).CopyTo(compressed.AsSpan(1));
        var offCurve = good.ToArray();
        offCurve[64] ^= 1;

        var cases = new (string? Key, string Expected)[]
        {
            ("not base64 !!", "must be base64url"),
            (Base64Url.EncodeToString(good.AsSpan(0, 64)), "64 bytes"),
            (Base64Url.EncodeToString(compressed), "compressed point"),
            (Base64Url.EncodeToString(offCurve), "not on the P-256 curve"),
            (Base64Url.EncodeToString([0x05, .. good[1..]]), "0x04"),
            (null, "needs 'encryptionKey'"),
        };
        foreach (var (key, expected) in cases)
        {
            using var response = await gw.Client.PostAsJsonAsync("v1/registrations", new { platform = "apns", token = Token(9), source = "dovecot", mailbox = "dave", connector = Connector, style = "preview-encrypted", encryptionKey = key }, ct);
            var body = await response.Content.ReadAsStringAsync(ct);
            Assert.True(response.StatusCode == HttpStatusCode.BadRequest, $"{key}: {(int)response.StatusCode} {body}");
            Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
            Assert.Contains(expected, body, StringComparison.Ordinal);
        }

        // EWS push carries no subject: like style preview, the sealed kind needs a source that has one.
        using (var ews = await gw.Client.PostAsJsonAsync("v1/registrations", new { platform = "apns", token = Token(9), source = "ews-push", style = "preview-encrypted", encryptionKey = Base64Url.EncodeToString(good) }, ct))
        {
            Assert.Equal(HttpStatusCode.BadRequest, ews.StatusCode);
            Assert.Contains("needs a source that provides subject and sender", await ews.Content.ReadAsStringAsync(ct), StringComparison.Ordinal);
        }

        // A badge registration may switch to the sealed style only with a key, in the same PATCH or before.
        string id;
        using (var reg = await gw.Client.PostAsJsonAsync("v1/registrations", new { platform = "apns", token = Token(9), source = "dovecot", mailbox = "dave", connector = Connector, style = "badge" }, ct))
        {
            Assert.Equal(HttpStatusCode.Created, reg.StatusCode);
            id = JsonDocument.Parse(await reg.Content.ReadAsStringAsync(ct)).RootElement.GetProperty("id").GetString()!;
        }

        using (var noKey = await gw.Client.PatchAsJsonAsync("v1/registrations/" + id, new { style = "preview-encrypted" }, ct))
        {
            Assert.Equal(HttpStatusCode.BadRequest, noKey.StatusCode);
            Assert.Contains("needs 'encryptionKey'", await noKey.Content.ReadAsStringAsync(ct), StringComparison.Ordinal);
        }

        using (var badKey = await gw.Client.PatchAsJsonAsync("v1/registrations/" + id, new { style = "preview-encrypted", encryptionKey = Base64Url.EncodeToString(offCurve) }, ct))
        {
            Assert.Equal(HttpStatusCode.BadRequest, badKey.StatusCode);
        }

        Assert.Equal("badge", (await gw.GetRegistrationAsync(id, ct)).GetProperty("style").GetString()); // a rejected PATCH changes nothing

        using (var ok = await gw.Client.PatchAsJsonAsync("v1/registrations/" + id, new { style = "preview-encrypted", encryptionKey = Base64Url.EncodeToString(good) }, ct))
        {
            Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
        }

        var shown = await gw.GetRegistrationAsync(id, ct);
        Assert.Equal("preview-encrypted", shown.GetProperty("style").GetString());
        Assert.Equal(Base64Url.EncodeToString(good), shown.GetProperty("encryptionKey").GetString());
    }

    [Fact]
    public async Task PatchRotation_TheNextPushIsSealedForTheNewKeyOnly()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var gw = await GatewayHarness.StartAsync(cancellationToken: ct);
        await PutConnectorAsync(gw, ct);
        var oldKey = Hpke.GenerateKeyPair();
        var newKey = Hpke.GenerateKeyPair();
        var id = await RegisterAsync(gw, "apns", Token(5), "erin", oldKey, ct);

        await DeliverAsync(gw, "erin", "before rotation", uid: 1, unseen: 1, ct);
        var first = await gw.Apns.WaitForRequestAsync(r => r.Token == Token(5), ct).WaitAsync(TimeSpan.FromSeconds(30), ct);
        var firstHx = JsonDocument.Parse(first.Payload!).RootElement.GetProperty("hx");
        Assert.Equal("before rotation", Open(firstHx, oldKey, id).GetProperty("subject").GetString());

        using (var patch = await gw.Client.PatchAsJsonAsync("v1/registrations/" + id, new { encryptionKey = Key(newKey) }, ct))
        {
            Assert.Equal(HttpStatusCode.OK, patch.StatusCode);
        }

        await DeliverAsync(gw, "erin", "after rotation", uid: 2, unseen: 2, ct);
        var second = await gw.Apns.WaitForRequestAsync(r => r.Token == Token(5) && r.Payload!.Contains("\"badge\":2", StringComparison.Ordinal), ct).WaitAsync(TimeSpan.FromSeconds(30), ct);
        var secondHx = JsonDocument.Parse(second.Payload!).RootElement.GetProperty("hx");
        Assert.Equal("after rotation", Open(secondHx, newKey, id).GetProperty("subject").GetString());
        Assert.ThrowsAny<CryptographicException>(() => Open(secondHx, oldKey, id));
    }

    /// <summary>Every log line the gateway writes, at Debug and up, with its message and state values.</summary>
    private sealed class LogCapture : ILoggerProvider
    {
        private readonly ConcurrentQueue<string> _lines = new();

        public IReadOnlyCollection<string> Lines => _lines;

        public string Text => string.Join('\n', _lines);

        public void Attach(WebApplicationBuilder builder)
        {
            builder.Logging.AddProvider(this);
            builder.Logging.AddFilter<LogCapture>(null, LogLevel.Debug);
        }

        public ILogger CreateLogger(string categoryName) => new Logger(categoryName, _lines);

        public void Dispose()
        {
        }

        private sealed class Logger(string category, ConcurrentQueue<string> lines) : ILogger
        {
            public IDisposable? BeginScope<TState>(TState state)
                where TState : notnull => null;

            public bool IsEnabled(LogLevel logLevel) => true;

            public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
            {
                var line = new StringBuilder().Append(logLevel).Append(' ').Append(category).Append(": ").Append(formatter(state, exception));
                if (state is IEnumerable<KeyValuePair<string, object?>> values)
                {
                    foreach (var (key, value) in values)
                    {
                        line.Append(" | ").Append(key).Append('=').Append(value);
                    }
                }

                if (exception is not null)
                {
                    line.Append(" | ").Append(exception);
                }

                lines.Enqueue(line.ToString());
            }
        }
    }
}
