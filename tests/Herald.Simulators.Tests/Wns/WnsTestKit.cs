using System.Net;
using System.Text;
using System.Text.Json;
using Herald.Simulators.Wns;
using Microsoft.Extensions.Time.Testing;
using Xunit;

namespace Herald.Simulators.Tests.Wns;

/// <summary>A fake WNS server on a fake clock with one registered app, and a plain HTTP/1.1 client for it.</summary>
internal sealed class FakeWnsHarness : IAsyncDisposable
{
    public const string PackageSid = "ms-app://s-1-15-2-2972962901-2322836549-3722629029-1345238579-3987825745-2155616079-650196962";
    public const string Secret = "Vex8L9WOFZuj95euaLrvSH7XyoDhLJc7";
    public const string BadgeXml = "<badge value=\"3\"/>";

    private FakeWnsHarness(FakeWnsServer server, FakeTimeProvider time, HttpClient client)
    {
        Server = server;
        Time = time;
        Client = client;
    }

    public FakeWnsServer Server { get; }
    public FakeTimeProvider Time { get; }
    public HttpClient Client { get; }

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public static async Task<FakeWnsHarness> StartAsync(FakeWnsServerOptions? options = null)
    {
        var time = new FakeTimeProvider(new DateTimeOffset(2025, 6, 2, 9, 0, 0, TimeSpan.Zero));
        var server = await FakeWnsServer.StartAsync(options, time, Ct);
        server.AddApplication(PackageSid, Secret);
        var handler = new SocketsHttpHandler { AllowAutoRedirect = false, UseProxy = false };
        if (server.Certificate is { } certificate)
        {
            var trusted = certificate.RawData;
            handler.SslOptions.RemoteCertificateValidationCallback = (_, c, _, _) => c is not null && c.GetRawCertData().AsSpan().SequenceEqual(trusted);
        }

        return new FakeWnsHarness(server, time, new HttpClient(handler));
    }

    /// <summary>Posts the token form; returns the status and the parsed JSON body.</summary>
    public async Task<(HttpStatusCode Status, JsonElement Body, HttpResponseMessage Response)> RequestTokenAsync(
        string? clientId = PackageSid,
        string? secret = Secret,
        string? grantType = "client_credentials",
        string? scope = "notify.windows.com")
    {
        var form = new List<KeyValuePair<string, string>>();
        Add(form, "grant_type", grantType);
        Add(form, "client_id", clientId);
        Add(form, "client_secret", secret);
        Add(form, "scope", scope);
        var response = await Client.PostAsync(Server.TokenUrl, new FormUrlEncodedContent(form), Ct);
        var text = await response.Content.ReadAsStringAsync(Ct);
        var body = text.Length == 0 ? default : JsonDocument.Parse(text).RootElement.Clone();
        return (response.StatusCode, body, response);
    }

    /// <summary>A fresh access token for the registered app.</summary>
    public async Task<string> TokenAsync()
    {
        var (status, body, response) = await RequestTokenAsync();
        response.Dispose();
        Assert.Equal(HttpStatusCode.OK, status);
        return body.GetProperty("access_token").GetString()!;
    }

    /// <summary>A valid badge push to <paramref name="channel"/>; tests then break one thing.</summary>
    public static HttpRequestMessage Request(
        string channel,
        string? token,
        string type = "wns/badge",
        string? body = BadgeXml,
        string? contentType = "text/xml")
    {
        var request = new HttpRequestMessage(HttpMethod.Post, channel)
        {
            Version = HttpVersion.Version11,
            Content = new ByteArrayContent(Encoding.UTF8.GetBytes(body ?? string.Empty)),
        };
        if (contentType is not null)
        {
            request.Content.Headers.TryAddWithoutValidation("Content-Type", contentType);
        }

        if (token is not null)
        {
            request.Headers.TryAddWithoutValidation("Authorization", "Bearer " + token);
        }

        request.Headers.TryAddWithoutValidation("X-WNS-Type", type);
        return request;
    }

    public async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request)
    {
        using (request)
        {
            return await Client.SendAsync(request, Ct);
        }
    }

    public static string? Header(HttpResponseMessage response, string name)
        => response.Headers.TryGetValues(name, out var values) ? string.Join(", ", values) : null;

    public async ValueTask DisposeAsync()
    {
        Client.Dispose();
        await Server.DisposeAsync();
    }

    private static void Add(List<KeyValuePair<string, string>> form, string name, string? value)
    {
        if (value is not null)
        {
            form.Add(new(name, value));
        }
    }
}
