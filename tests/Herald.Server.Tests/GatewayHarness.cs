using System.Net.Http.Headers;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Configuration;
using System.Net.Http.Json;
using System.Text.Json;
using Herald.Server.Hosting;
using Herald.Simulators.Apns;

namespace Herald.Server.Tests;

/// <summary>
/// A real gateway on Kestrel (127.0.0.1, a free port) over a fresh SQLite file, wired to a fake APNs:
/// the same composition as <c>herald serve</c>.
/// </summary>
public sealed class GatewayHarness : IAsyncDisposable
{
    public const string AdminKey = "hk_test_admin_key_0123456789abcdef";
    public const string Topic = "com.example.securemail";
    public const string TeamId = "TEAM123456";
    public const string KeyId = "KEY1234567";

    private GatewayHarness(FakeApnsServer apns, WebApplication app, string directory)
    {
        Apns = apns;
        App = app;
        Directory = directory;
        BaseUrl = app.Urls.First().TrimEnd('/');
        Client = new HttpClient { BaseAddress = new Uri(BaseUrl + "/") };
        Client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", AdminKey);
    }

    public FakeApnsServer Apns { get; }
    public WebApplication App { get; }
    public string Directory { get; }
    public string BaseUrl { get; }
    public string DatabasePath => Path.Combine(Directory, "herald.db");

    /// <summary>An HTTP client with the admin key.</summary>
    public HttpClient Client { get; }

    public static Task<GatewayHarness> StartAsync(IDictionary<string, string?>? overrides = null, FakeApnsServer? apns = null, CancellationToken cancellationToken = default)
        => StartAsync(null, overrides, apns, cancellationToken);

    /// <summary>A gateway with extra host configuration (e.g. a log capture) applied after the settings.</summary>
    public static async Task<GatewayHarness> StartAsync(Action<WebApplicationBuilder>? configure, IDictionary<string, string?>? overrides = null, FakeApnsServer? apns = null, CancellationToken cancellationToken = default)
    {
        apns ??= await FakeApnsServer.StartAsync(cancellationToken: cancellationToken);
        var pem = apns.GenerateSigningKey(TeamId, KeyId, Topic);
        var directory = Path.Combine(Path.GetTempPath(), "herald-test-" + Guid.NewGuid().ToString("N")[..12]);
        System.IO.Directory.CreateDirectory(directory);
        var settings = Settings(directory, apns.BaseUrl, pem);
        if (overrides is not null)
        {
            foreach (var (k, v) in overrides)
            {
                settings[k] = v;
            }
        }

        var app = HeraldApp.Build(["--urls=http://127.0.0.1:0"], configure: b =>
        {
            b.Configuration.AddInMemoryCollection(settings);
            configure?.Invoke(b); // e.g. a log capture
        });
        await HeraldApp.StartAsync(app, cancellationToken);
        return new GatewayHarness(apns, app, directory);
    }

    /// <summary>The configuration a test gateway runs with: fast retries, the fake APNs for both environments.</summary>
    public static Dictionary<string, string?> Settings(string directory, string apnsUrl, string privateKeyPem) => new()
    {
        ["Herald:Database"] = "sqlite:" + Path.Combine(directory, "herald.db"),
        ["Herald:AdminApiKey"] = AdminKey,
        ["Herald:Apns:ProductionUrl"] = apnsUrl,
        ["Herald:Apns:SandboxUrl"] = apnsUrl,
        ["Herald:Apns:TeamId"] = TeamId,
        ["Herald:Apns:KeyId"] = KeyId,
        ["Herald:Apns:PrivateKeyPem"] = privateKeyPem,
        ["Herald:Apns:Topic"] = Topic,
        ["Herald:Retry:InitialDelay"] = "00:00:00.100",
        ["Herald:Retry:MaxDelay"] = "00:00:01",
        ["Logging:LogLevel:Default"] = "Warning",
    };

    /// <summary>Registers an APNs device for EWS push; returns (id, callbackUrl).</summary>
    public async Task<(string Id, string CallbackUrl)> RegisterAsync(string token, string style = "badge", string locale = "en", CancellationToken cancellationToken = default)
    {
        using var response = await Client.PostAsJsonAsync("v1/registrations", new { platform = "apns", token, source = "ews-push", style, locale }, cancellationToken);
        var body = await response.Content.ReadAsStringAsync(cancellationToken);
        if (!response.IsSuccessStatusCode)
        {
            throw new InvalidOperationException($"Registration failed: {(int)response.StatusCode} {body}");
        }

        using var json = JsonDocument.Parse(body);
        return (json.RootElement.GetProperty("id").GetString()!, json.RootElement.GetProperty("callbackUrl").GetString()!);
    }

    public async Task<JsonElement> GetRegistrationAsync(string id, CancellationToken cancellationToken = default)
    {
        using var response = await Client.GetAsync("v1/registrations/" + id, cancellationToken);
        response.EnsureSuccessStatusCode();
        return (await response.Content.ReadFromJsonAsync<JsonElement>(cancellationToken));
    }

    public async ValueTask DisposeAsync()
    {
        Client.Dispose();
        await App.StopAsync();
        await App.DisposeAsync();
        await Apns.DisposeAsync();
        try
        {
            System.IO.Directory.Delete(Directory, recursive: true);
        }
        catch (IOException)
        {
            // A file still held by the OS: the temp folder is cleaned up later.
        }
    }
}

/// <summary>Hand-written EWS SendNotification bodies, as Exchange sends them.</summary>
public static class Soap
{
    public static string NewMail(string subscriptionId, int unread, string inbox = "AQMkAGInbox=") => Envelope(subscriptionId, $"""
        <t:CreatedEvent><t:TimeStamp>2026-11-23T10:00:00Z</t:TimeStamp><t:ItemId Id="AAMkItem{unread}=" ChangeKey="CQAAAA=="/><t:ParentFolderId Id="{inbox}" ChangeKey="AQAAAA=="/></t:CreatedEvent>
        <t:NewMailEvent><t:Watermark>W{unread}</t:Watermark><t:TimeStamp>2026-11-23T10:00:00Z</t:TimeStamp><t:ItemId Id="AAMkItem{unread}=" ChangeKey="CQAAAA=="/><t:ParentFolderId Id="{inbox}" ChangeKey="AQAAAA=="/></t:NewMailEvent>
        <t:ModifiedEvent><t:Watermark>X{unread}</t:Watermark><t:TimeStamp>2026-11-23T10:00:00Z</t:TimeStamp><t:FolderId Id="{inbox}" ChangeKey="AQAAAA=="/><t:ParentFolderId Id="AQMkAGRoot=" ChangeKey="AQAAAA=="/><t:UnreadCount>{unread}</t:UnreadCount></t:ModifiedEvent>
        """);

    public static string Status(string subscriptionId) => Envelope(subscriptionId, "<t:StatusEvent><t:Watermark>AAAA=</t:Watermark></t:StatusEvent>");

    public static string Envelope(string subscriptionId, string events) => $"""
        <?xml version="1.0" encoding="utf-8"?>
        <soap11:Envelope xmlns:soap11="http://schemas.xmlsoap.org/soap/envelope/">
          <soap11:Header><t:RequestServerVersion xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types" Version="Exchange2016"/></soap11:Header>
          <soap11:Body>
            <m:SendNotification xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages" xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types">
              <m:ResponseMessages>
                <m:SendNotificationResponseMessage ResponseClass="Success">
                  <m:ResponseCode>NoError</m:ResponseCode>
                  <m:Notification>
                    <t:SubscriptionId>{subscriptionId}</t:SubscriptionId>
                    <t:PreviousWatermark>AAAA=</t:PreviousWatermark>
                    <t:MoreEvents>false</t:MoreEvents>
                    {events}
                  </m:Notification>
                </m:SendNotificationResponseMessage>
              </m:ResponseMessages>
            </m:SendNotification>
          </soap11:Body>
        </soap11:Envelope>
        """;

    public static async Task<(int Status, string Body)> PostAsync(HttpClient client, string url, string body, string contentType = "text/xml; charset=utf-8", CancellationToken cancellationToken = default)
    {
        using var content = new StringContent(body);
        content.Headers.ContentType = MediaTypeHeaderValue.Parse(contentType);
        using var request = new HttpRequestMessage(HttpMethod.Post, url) { Content = content };
        request.Headers.Add("SOAPAction", "\"http://schemas.microsoft.com/exchange/services/2006/messages/SendNotification\"");
        using var response = await client.SendAsync(request, cancellationToken);
        return ((int)response.StatusCode, await response.Content.ReadAsStringAsync(cancellationToken));
    }

    /// <summary>The SubscriptionStatus in a SendNotificationResult, or null.</summary>
    public static string? StatusOf(string responseBody)
    {
        const string open = "SubscriptionStatus>";
        var i = responseBody.IndexOf(open, StringComparison.Ordinal);
        if (i < 0)
        {
            return null;
        }

        var start = i + open.Length;
        var end = responseBody.IndexOf('<', start);
        return end < 0 ? null : responseBody[start..end];
    }
}
