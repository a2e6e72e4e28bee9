using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Herald.Core.Events;
using Herald.Core.Pipeline;
using Herald.Core.Ports;
using Herald.Core.Security;
using Microsoft.Extensions.DependencyInjection;
using Xunit;

namespace Herald.Server.Tests;

public sealed class ConnectorApiTests
{
    private const string GraphSecret = "graph-client-secret-value-42";
    private const string DovecotPassword = "dovecot-push-password-77";
    private const string Mailbox = "carol.mailbox@contoso.example";

    [Fact]
    public async Task Connectors_CreateListReplaceDelete_SecretsAreWriteOnly()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var gw = await GatewayHarness.StartAsync(cancellationToken: ct);

        using var created = await gw.Client.PutAsJsonAsync("v1/connectors/o365", new
        {
            kind = "graph",
            baseUrl = "https://graph.microsoft.com/",
            auth = new { type = "oauth2", tokenUrl = "https://login.microsoftonline.com/t/oauth2/v2.0/token", clientId = "app-1", clientSecret = GraphSecret },
        }, ct);
        Assert.Equal(HttpStatusCode.Created, created.StatusCode);
        var text = await created.Content.ReadAsStringAsync(ct);
        Assert.DoesNotContain(GraphSecret, text, StringComparison.Ordinal);
        using (var json = JsonDocument.Parse(text))
        {
            Assert.Equal("https://graph.microsoft.com", json.RootElement.GetProperty("baseUrl").GetString());
            Assert.True(json.RootElement.GetProperty("auth").GetProperty("secretSet").GetBoolean());
            Assert.Equal("https://graph.microsoft.com/.default", json.RootElement.GetProperty("auth").GetProperty("scope").GetString());
        }

        // A replacement that leaves the secret out keeps the stored one.
        using var replaced = await gw.Client.PutAsJsonAsync("v1/connectors/o365", new
        {
            kind = "graph",
            auth = new { type = "oauth2", tokenUrl = "https://login.microsoftonline.com/t2/oauth2/v2.0/token", clientId = "app-2" },
        }, ct);
        Assert.Equal(HttpStatusCode.OK, replaced.StatusCode);
        var service = gw.App.Services.GetRequiredService<Core.Connectors.ConnectorService>();
        var stored = await service.GetAsync("default", "o365", ct);
        Assert.Equal(GraphSecret, stored!.Config.Auth!.ClientSecret);
        Assert.Equal("app-2", stored.Config.Auth.ClientId);

        using var dovecot = await gw.Client.PutAsJsonAsync("v1/connectors/imap", new { kind = "dovecot", username = "dovecot", password = DovecotPassword, allowFrom = new[] { "127.0.0.1/32", "::1" } }, ct);
        Assert.Equal(HttpStatusCode.Created, dovecot.StatusCode);

        using var list = await gw.Client.GetAsync("v1/connectors", ct);
        var listText = await list.Content.ReadAsStringAsync(ct);
        Assert.DoesNotContain(DovecotPassword, listText, StringComparison.Ordinal);
        using (var json = JsonDocument.Parse(listText))
        {
            Assert.Equal(["imap", "o365"], json.RootElement.GetProperty("items").EnumerateArray().Select(i => i.GetProperty("name").GetString()));
        }

        using var deleted = await gw.Client.DeleteAsync("v1/connectors/o365", ct);
        Assert.Equal(HttpStatusCode.NoContent, deleted.StatusCode);
        using var gone = await gw.Client.GetAsync("v1/connectors/o365", ct);
        Assert.Equal(HttpStatusCode.NotFound, gone.StatusCode);
    }

    [Theory]
    [InlineData("""{"kind":"smtp"}""", "'kind'")]
    [InlineData("""{"kind":"ews","autodiscover":false}""", "ewsUrl")]
    [InlineData("""{"kind":"ews","ewsUrl":"http://mail.contoso.com/EWS/Exchange.asmx","auth":{"type":"basic","username":"svc","password":"p"}}""", "https")]
    [InlineData("""{"kind":"ews","ewsUrl":"https://mail.contoso.com/EWS/Exchange.asmx"}""", "'auth' is required")]
    [InlineData("""{"kind":"ews","ewsUrl":"https://mail.contoso.com/EWS/Exchange.asmx","auth":{"type":"oauth2","tokenUrl":"https://login/t","clientId":"c"}}""", "clientSecret")]
    [InlineData("""{"kind":"graph","auth":{"type":"basic","username":"u","password":"p"}}""", "OAuth2")]
    [InlineData("""{"kind":"dovecot","username":"dovecot","password":"short"}""", "password")]
    [InlineData("""{"kind":"dovecot","username":"dovecot","password":"long-enough-password","allowFrom":["10.0.0.0/33"]}""", "allowFrom")]
    public async Task Put_InvalidConnector_IsAClear400(string body, string expected)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var gw = await GatewayHarness.StartAsync(cancellationToken: ct);

        using var response = await gw.Client.PutAsync("v1/connectors/bad", new StringContent(body, Encoding.UTF8, "application/json"), ct);

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        Assert.Contains(expected, await response.Content.ReadAsStringAsync(ct), StringComparison.Ordinal);
    }

    [Fact]
    public async Task MailboxRegistration_NeedsAMatchingConnector_AndAConnectorInUseCannotBeDeleted()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var gw = await GatewayHarness.StartAsync(cancellationToken: ct);
        using (await gw.Client.PutAsJsonAsync("v1/connectors/imap", new { kind = "dovecot", username = "dovecot", password = DovecotPassword }, ct))
        {
        }

        using var noConnector = await gw.Client.PostAsJsonAsync("v1/registrations", new { platform = "apns", token = new string('a', 64), source = "dovecot", mailbox = "carol" }, ct);
        Assert.Equal(HttpStatusCode.BadRequest, noConnector.StatusCode);
        using var wrongKind = await gw.Client.PostAsJsonAsync("v1/registrations", new { platform = "apns", token = new string('a', 64), source = "graph", mailbox = "carol", connector = "imap" }, ct);
        Assert.Equal(HttpStatusCode.BadRequest, wrongKind.StatusCode);
        Assert.Contains("graph connector", await wrongKind.Content.ReadAsStringAsync(ct), StringComparison.Ordinal);
        using var notAnAddress = await gw.Client.PostAsJsonAsync("v1/registrations", new { platform = "apns", token = new string('a', 64), source = "ews-streaming", mailbox = "carol", connector = "imap" }, ct);
        Assert.Equal(HttpStatusCode.BadRequest, notAnAddress.StatusCode);

        using var ok = await gw.Client.PostAsJsonAsync("v1/registrations", new { platform = "apns", token = new string('a', 64), source = "dovecot", mailbox = "carol", connector = "imap", style = "preview" }, ct);
        Assert.Equal(HttpStatusCode.Created, ok.StatusCode);
        using (var json = JsonDocument.Parse(await ok.Content.ReadAsStringAsync(ct)))
        {
            Assert.False(json.RootElement.TryGetProperty("callbackUrl", out _));
            Assert.Equal("imap", json.RootElement.GetProperty("connector").GetString());
            Assert.Equal("dovecot", json.RootElement.GetProperty("source").GetString());
        }

        using var inUse = await gw.Client.DeleteAsync("v1/connectors/imap", ct);
        Assert.Equal(HttpStatusCode.Conflict, inUse.StatusCode);
    }

    [Fact]
    public async Task MailboxIngest_ReachesEveryDeviceOfTheMailbox_PreviewInThePushButNeverInTheDatabase()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var gw = await GatewayHarness.StartAsync(cancellationToken: ct);
        using (await gw.Client.PutAsJsonAsync("v1/connectors/imap", new { kind = "dovecot", username = "dovecot", password = DovecotPassword }, ct))
        {
        }

        var phone = new string('b', 64);
        var tablet = new string('c', 64);
        foreach (var (token, style) in new[] { (phone, "preview"), (tablet, "badge") })
        {
            using var r = await gw.Client.PostAsJsonAsync("v1/registrations", new { platform = "apns", token, source = "dovecot", mailbox = Mailbox, connector = "imap", style }, ct);
            Assert.Equal(HttpStatusCode.Created, r.StatusCode);
        }

        var services = gw.App.Services;
        var hash = services.GetRequiredService<SecretBox>().MailboxHash(" Carol.Mailbox@Contoso.example");
        var item = new IngestItem
        {
            Route = IngestRoute.ForMailbox("default", "imap", hash),
            Notifications = [new MailboxNotification { Events = [new MailEvent { Kind = MailEventKind.NewMail, ParentFolderId = "INBOX" }, new MailEvent { Kind = MailEventKind.Modified, FolderId = "INBOX", UnreadCount = 4 }] }],
            ReceivedAt = DateTimeOffset.UtcNow,
            Preview = new MailPreview("Merger term sheet 7Q", "Dana Finance"),
        };
        Assert.Equal(IngestVerdict.Accepted, await services.GetRequiredService<IngestService>().IngestAsync(item, ct));

        var preview = await gw.Apns.WaitForRequestAsync(r => r.Token == phone, ct);
        Assert.Contains("Merger term sheet 7Q", preview.Payload, StringComparison.Ordinal);
        Assert.Contains("Dana Finance", preview.Payload, StringComparison.Ordinal);
        Assert.Contains("\"badge\":4", preview.Payload, StringComparison.Ordinal);
        var badge = await gw.Apns.WaitForRequestAsync(r => r.Token == tablet, ct);
        Assert.DoesNotContain("Merger", badge.Payload, StringComparison.Ordinal);
        Assert.Contains("\"badge\":4", badge.Payload, StringComparison.Ordinal);

        // An unknown mailbox is not an error for the store: nobody to notify.
        var unknown = new IngestItem { Route = IngestRoute.ForMailbox("default", "imap", services.GetRequiredService<SecretBox>().MailboxHash("nobody@x.example")), Notifications = item.Notifications, ReceivedAt = DateTimeOffset.UtcNow };
        Assert.Equal(IngestVerdict.Unsubscribe, await services.GetRequiredService<IngestService>().IngestAsync(unknown, ct));

        await gw.App.StopAsync(ct);
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        var bytes = await ReadAllFilesAsync(gw.DatabasePath, ct);
        foreach (var secret in new[] { "Merger term sheet", "Dana Finance", Mailbox, "carol.mailbox", DovecotPassword })
        {
            Assert.False(Contains(bytes, secret), $"'{secret}' is in the database files in clear");
        }
    }

    private static async Task<byte[]> ReadAllFilesAsync(string databasePath, CancellationToken ct)
    {
        var all = new List<byte>();
        foreach (var path in new[] { databasePath, databasePath + "-wal", databasePath + "-shm" })
        {
            if (File.Exists(path))
            {
                all.AddRange(await File.ReadAllBytesAsync(path, ct));
            }
        }

        return [.. all];
    }

    private static bool Contains(byte[] haystack, string needle)
        => haystack.AsSpan().IndexOf(Encoding.UTF8.GetBytes(needle)) >= 0
           || haystack.AsSpan().IndexOf(Encoding.UTF8.GetBytes(needle.ToLowerInvariant())) >= 0;
}
