using System.Collections.Concurrent;
using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Xunit;
using static Herald.Server.Tests.CredentialTestKit;

namespace Herald.Server.Tests;

/// <summary>Feedback webhooks: signed events for deactivated registrations and dead notifications, with retries.</summary>
public sealed class WebhookTests
{
    private const string Secret = "whsec_0123456789abcdef";
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task DeactivatedRegistration_IsPostedSignedWithReasonAndTimestamp_AfterARetry()
    {
        await using var receiver = await Receiver.StartAsync(failFirst: 1);
        await using var gw = await GatewayHarness.StartAsync(new Dictionary<string, string?> { ["Herald:Webhooks:AllowLoopback"] = "true", ["Herald:Webhooks:InitialDelay"] = "00:00:00.200", ["Herald:Webhooks:PollInterval"] = "00:00:00.100" }, cancellationToken: Ct);
        var (put, _, text) = await PutJsonAsync(gw.Client, "v1/tenants/default/webhook", new { url = receiver.Url, secret = Secret }, Ct);
        Assert.True(put == HttpStatusCode.OK, text);
        Assert.DoesNotContain(Secret, text, StringComparison.Ordinal);

        var token = new string('7', 64);
        var (registration, _) = await gw.RegisterAsync(token, cancellationToken: Ct);
        var since = new DateTimeOffset(2026, 11, 20, 8, 0, 0, TimeSpan.Zero);
        gw.Apns.Unregister(token, since);
        await SendAsync(gw.Client, new { kind = "badge", badge = 1, registrations = new[] { registration } }, Ct);

        var delivery = await receiver.WaitAsync(d => d.Status == 200, Ct);

        Assert.Contains(receiver.Deliveries, d => d.Status == 500); // the first attempt was refused and retried
        Assert.Equal(WebhookSignature(delivery.Body), delivery.Signature);
        using var json = JsonDocument.Parse(delivery.Body);
        var root = json.RootElement;
        Assert.Equal("registration.deactivated", root.GetProperty("type").GetString());
        Assert.Equal("registration.deactivated", delivery.Event);
        Assert.Equal(registration, root.GetProperty("registrationId").GetString());
        Assert.Equal("default", root.GetProperty("tenantId").GetString());
        Assert.Equal("apns", root.GetProperty("platform").GetString());
        Assert.Equal("Unregistered", root.GetProperty("reason").GetString());
        Assert.Equal(410, root.GetProperty("status").GetInt32());
        Assert.Equal(since, root.GetProperty("invalidSince").GetDateTimeOffset());
        Assert.True(root.TryGetProperty("timestamp", out _));
        Assert.DoesNotContain(token, delivery.Body, StringComparison.Ordinal);

        // The outbox records the delivery right after the receiver answered.
        JsonElement stored = default;
        for (var i = 0; i < 100; i++)
        {
            stored = JsonDocument.Parse(await gw.Client.GetStringAsync("v1/tenants/default/webhook/events", Ct)).RootElement.GetProperty("items")[0].Clone();
            if (stored.GetProperty("state").GetString() == "delivered")
            {
                break;
            }

            await Task.Delay(50, Ct);
        }

        Assert.Equal("delivered", stored.GetProperty("state").GetString());
        Assert.True(stored.GetProperty("attempts").GetInt32() >= 2);
    }

    [Fact]
    public async Task DeadNotification_IsPosted()
    {
        await using var receiver = await Receiver.StartAsync(failFirst: 0);
        await using var gw = await GatewayHarness.StartAsync(new Dictionary<string, string?> { ["Herald:Webhooks:AllowLoopback"] = "true", ["Herald:Webhooks:PollInterval"] = "00:00:00.100" }, cancellationToken: Ct);
        await PutJsonAsync(gw.Client, "v1/tenants/default/webhook", new { url = receiver.Url, secret = Secret }, Ct);
        var token = new string('8', 64);
        gw.Apns.Script(token, Enumerable.Repeat((500, "InternalServerError"), 10).ToArray());

        var id = await SendAsync(gw.Client, new { kind = "badge", badge = 1, devices = new[] { new { platform = "apns", token } } }, Ct);
        await WaitForStatesAsync(gw.Client, id, s => State(s, "dead") == 1, Ct);
        var delivery = await receiver.WaitAsync(d => d.Status == 200, Ct);

        using var json = JsonDocument.Parse(delivery.Body);
        Assert.Equal("notification.dead", json.RootElement.GetProperty("type").GetString());
        Assert.Equal("InternalServerError", json.RootElement.GetProperty("reason").GetString());
        Assert.Equal(5, json.RootElement.GetProperty("attempts").GetInt32());
        Assert.Equal(WebhookSignature(delivery.Body), delivery.Signature);
    }

    [Fact]
    public async Task Webhook_BadInput_AndTenantIsolation()
    {
        await using var gw = await GatewayHarness.StartAsync(cancellationToken: Ct);
        var (tenant, client) = await TenantAsync(gw, "isolated", Ct);
        using var _ = client;

        var (badUrl, _, _) = await PutJsonAsync(gw.Client, "v1/tenants/default/webhook", new { url = "ftp://x", secret = Secret }, Ct);
        var (shortSecret, _, _) = await PutJsonAsync(gw.Client, "v1/tenants/default/webhook", new { url = "https://example.test/hook", secret = "short" }, Ct);
        var (foreign, _, _) = await PutJsonAsync(client, "v1/tenants/default/webhook", new { url = "https://example.test/hook", secret = Secret }, Ct);
        var (own, body, _) = await PutJsonAsync(client, $"v1/tenants/{tenant}/webhook", new { url = "https://example.test/hook", secret = Secret }, Ct);
        using var deleted = await client.DeleteAsync($"v1/tenants/{tenant}/webhook", Ct);
        using var gone = await client.GetAsync($"v1/tenants/{tenant}/webhook", Ct);

        Assert.Equal(HttpStatusCode.BadRequest, badUrl);
        Assert.Equal(HttpStatusCode.BadRequest, shortSecret);
        Assert.Equal(HttpStatusCode.Forbidden, foreign);
        Assert.Equal(HttpStatusCode.OK, own);
        Assert.Equal("https://example.test/hook", body.GetProperty("url").GetString());
        Assert.Equal(HttpStatusCode.NoContent, deleted.StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, gone.StatusCode);
    }

    private static string WebhookSignature(string body)
        => "sha256=" + Convert.ToHexStringLower(HMACSHA256.HashData(Encoding.UTF8.GetBytes(Secret), Encoding.UTF8.GetBytes(body)));

    /// <summary>A management server's webhook endpoint on 127.0.0.1: records each POST; refuses the first N with 500.</summary>
    private sealed class Receiver : IAsyncDisposable
    {
        private readonly WebApplication _app;
        private int _remainingFailures;

        private Receiver(WebApplication app, int failFirst)
        {
            _app = app;
            _remainingFailures = failFirst;
        }

        public string Url => _app.Urls.First().TrimEnd('/') + "/hooks/herald";

        public ConcurrentQueue<Delivery> Deliveries { get; } = new();

        public sealed record Delivery(int Status, string Body, string? Signature, string? Event);

        public static async Task<Receiver> StartAsync(int failFirst)
        {
            var builder = WebApplication.CreateSlimBuilder();
            builder.WebHost.UseUrls("http://127.0.0.1:0");
            var app = builder.Build();
            var receiver = new Receiver(app, failFirst);
            app.MapPost("/hooks/herald", async (HttpContext http) =>
            {
                using var reader = new StreamReader(http.Request.Body, Encoding.UTF8);
                var body = await reader.ReadToEndAsync(http.RequestAborted);
                var status = Interlocked.Decrement(ref receiver._remainingFailures) >= 0 ? 500 : 200;
                receiver.Deliveries.Enqueue(new Delivery(status, body, http.Request.Headers["X-Herald-Signature"].ToString(), http.Request.Headers["X-Herald-Event"].ToString()));
                return Results.StatusCode(status);
            });
            await app.StartAsync(TestContext.Current.CancellationToken);
            return receiver;
        }

        public async Task<Delivery> WaitAsync(Func<Delivery, bool> predicate, CancellationToken ct)
        {
            for (var i = 0; i < 300; i++)
            {
                if (Deliveries.FirstOrDefault(predicate) is { } d)
                {
                    return d;
                }

                await Task.Delay(50, ct);
            }

            throw new TimeoutException("no matching webhook delivery; got " + Deliveries.Count);
        }

        public async ValueTask DisposeAsync()
        {
            await _app.StopAsync();
            await _app.DisposeAsync();
        }
    }
}
