using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Herald.Server.Hosting;
using Herald.Simulators.Apns;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Configuration;

namespace Herald.Console.Tests;

/// <summary>
/// A real gateway for the browser: Kestrel on 127.0.0.1 (a free port), a fresh SQLite file and the fake APNs,
/// composed as <c>herald serve</c> composes it (adapted from Herald.Server.Tests' GatewayHarness).
/// </summary>
public sealed class ConsoleHarness : IAsyncDisposable
{
    public const string AdminKey = "hk_test_admin_key_0123456789abcdef";
    public const string Topic = "com.example.securemail";

    private ConsoleHarness(FakeApnsServer apns, WebApplication app, string directory, string signingKeyPem)
    {
        SigningKeyPem = signingKeyPem;
        Apns = apns;
        App = app;
        Directory = directory;
        BaseUrl = app.Urls.First().TrimEnd('/');
        Client = new HttpClient { BaseAddress = new Uri(BaseUrl + "/") };
        Client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", AdminKey);
    }

    public FakeApnsServer Apns { get; }

    /// <summary>The .p8 signing key the fake APNs trusts (PEM).</summary>
    public string SigningKeyPem { get; }
    public WebApplication App { get; }
    public string Directory { get; }
    public string BaseUrl { get; }

    /// <summary>An HTTP client with the admin key.</summary>
    public HttpClient Client { get; }

    public static Task<ConsoleHarness> StartAsync(CancellationToken cancellationToken) => StartAsync(null, cancellationToken);

    /// <summary>Starts a gateway with <paramref name="overrides"/> on top of the console test settings.</summary>
    public static async Task<ConsoleHarness> StartAsync(IDictionary<string, string?>? overrides, CancellationToken cancellationToken)
    {
        var apns = await FakeApnsServer.StartAsync(cancellationToken: cancellationToken);
        var pem = apns.GenerateSigningKey("TEAM123456", "KEY1234567", Topic);
        var directory = Path.Combine(Path.GetTempPath(), "herald-console-" + Guid.NewGuid().ToString("N")[..12]);
        System.IO.Directory.CreateDirectory(directory);
        var settings = new Dictionary<string, string?>
        {
            ["Herald:Database"] = "sqlite:" + Path.Combine(directory, "herald.db"),
            ["Herald:AdminApiKey"] = AdminKey,
            ["Herald:Region"] = "test-region",
            ["Herald:NodeName"] = "console-node",
            ["Herald:Apns:ProductionUrl"] = apns.BaseUrl,
            ["Herald:Apns:SandboxUrl"] = apns.BaseUrl,
            ["Herald:Apns:TeamId"] = "TEAM123456",
            ["Herald:Apns:KeyId"] = "KEY1234567",
            ["Herald:Apns:PrivateKeyPem"] = pem,
            ["Herald:Apns:Topic"] = Topic,
            ["Herald:Retry:InitialDelay"] = "00:00:00.100",
            ["Herald:Retry:MaxDelay"] = "00:00:01",
            ["Logging:LogLevel:Default"] = "Warning",
        };
        foreach (var (key, value) in overrides ?? new Dictionary<string, string?>())
        {
            settings[key] = value;
        }

        var app = HeraldApp.Build(["--urls=http://127.0.0.1:0"], configure: b => b.Configuration.AddInMemoryCollection(settings));
        await HeraldApp.StartAsync(app, cancellationToken);
        return new ConsoleHarness(apns, app, directory, pem);
    }

    public static StringContent Json(string body) => new(body, Encoding.UTF8, "application/json");

    /// <summary>Registers an APNs device for EWS push; returns (id, callbackUrl).</summary>
    public async Task<(string Id, string CallbackUrl)> RegisterAsync(string token, CancellationToken cancellationToken, HttpClient? client = null)
    {
        using var response = await (client ?? Client).PostAsJsonAsync("v1/registrations", new { platform = "apns", token, source = "ews-push", style = "badge" }, cancellationToken);
        var body = await response.Content.ReadAsStringAsync(cancellationToken);
        if (!response.IsSuccessStatusCode)
        {
            throw new InvalidOperationException($"Registration failed: {(int)response.StatusCode} {body}");
        }

        using var json = JsonDocument.Parse(body);
        return (json.RootElement.GetProperty("id").GetString()!, json.RootElement.GetProperty("callbackUrl").GetString()!);
    }

    /// <summary>POSTs an EWS SendNotification as Exchange does and returns the HTTP status.</summary>
    public async Task<int> PostEwsNewMailAsync(string callbackUrl, string subscriptionId, int unread, CancellationToken cancellationToken)
    {
        var body = $"""
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
                        <t:NewMailEvent><t:Watermark>W{unread}</t:Watermark><t:TimeStamp>2026-11-23T10:00:00Z</t:TimeStamp><t:ItemId Id="AAMkItem{unread}=" ChangeKey="CQAAAA=="/><t:ParentFolderId Id="AQMkAGInbox=" ChangeKey="AQAAAA=="/></t:NewMailEvent>
                        <t:ModifiedEvent><t:Watermark>X{unread}</t:Watermark><t:TimeStamp>2026-11-23T10:00:00Z</t:TimeStamp><t:FolderId Id="AQMkAGInbox=" ChangeKey="AQAAAA=="/><t:ParentFolderId Id="AQMkAGRoot=" ChangeKey="AQAAAA=="/><t:UnreadCount>{unread}</t:UnreadCount></t:ModifiedEvent>
                      </m:Notification>
                    </m:SendNotificationResponseMessage>
                  </m:ResponseMessages>
                </m:SendNotification>
              </soap11:Body>
            </soap11:Envelope>
            """;
        using var content = new StringContent(body);
        content.Headers.ContentType = MediaTypeHeaderValue.Parse("text/xml; charset=utf-8");
        using var request = new HttpRequestMessage(HttpMethod.Post, callbackUrl) { Content = content };
        request.Headers.Add("SOAPAction", "\"http://schemas.microsoft.com/exchange/services/2006/messages/SendNotification\"");
        using var response = await Client.SendAsync(request, cancellationToken);
        return (int)response.StatusCode;
    }

    public async Task<JsonElement> GetJsonAsync(string path, CancellationToken cancellationToken)
    {
        using var response = await Client.GetAsync(path, cancellationToken);
        var text = await response.Content.ReadAsStringAsync(cancellationToken);
        if (!response.IsSuccessStatusCode)
        {
            throw new InvalidOperationException($"GET {path}: {(int)response.StatusCode} {text}");
        }

        return JsonDocument.Parse(text).RootElement.Clone();
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
