using System.Collections.Concurrent;
using System.Globalization;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Herald.Simulators.Graph;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Xunit;

namespace Herald.Simulators.Tests.Graph;

/// <summary>
/// The fake Graph's subscription management beyond create (delete, reauthorize, injected errors), its lifecycle events,
/// and its delivery retries when the client is slow or failing, as Graph behaves.
/// </summary>
public sealed class FakeGraphLifecycleTests
{
    private const string Mailbox = "alice@contoso.com";

    /// <summary>A notification endpoint: echoes validation tokens; answers notifications with scripted statuses and delays.</summary>
    private sealed class Endpoint : IAsyncDisposable
    {
        private readonly WebApplication _app;

        private Endpoint(WebApplication app) => _app = app;

        public string BaseUrl { get; private set; } = string.Empty;

        /// <summary>Answers to the next notifications (status, delay); 202 at once when empty.</summary>
        public ConcurrentQueue<(int Status, TimeSpan Delay)> Script { get; } = new();

        public ConcurrentQueue<(string Path, string Body)> Notifications { get; } = new();

        public static async Task<Endpoint> StartAsync(CancellationToken ct)
        {
            var builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions());
            builder.WebHost.UseKestrelCore().ConfigureKestrel(k => k.Listen(IPAddress.Loopback, 0));
            var app = builder.Build();
            var endpoint = new Endpoint(app);
            ((IApplicationBuilder)app).Run(async http =>
            {
                if (http.Request.Query["validationToken"].FirstOrDefault() is { } token)
                {
                    http.Response.ContentType = "text/plain";
                    await http.Response.WriteAsync(token);
                    return;
                }

                using var reader = new StreamReader(http.Request.Body);
                endpoint.Notifications.Enqueue((http.Request.Path, await reader.ReadToEndAsync()));
                var (status, delay) = endpoint.Script.TryDequeue(out var next) ? next : (202, TimeSpan.Zero);
                if (delay > TimeSpan.Zero)
                {
                    await Task.Delay(delay, http.RequestAborted).ContinueWith(_ => { }, TaskScheduler.Default);
                }

                http.Response.StatusCode = status;
            });
            await app.StartAsync(ct);
            endpoint.BaseUrl = "http://127.0.0.1:" + new Uri(app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First()).Port;
            return endpoint;
        }

        public async ValueTask DisposeAsync()
        {
            await _app.StopAsync();
            await _app.DisposeAsync();
        }
    }

    private static async Task<string> CreateAsync(FakeGraphServer graph, HttpClient client, Endpoint endpoint, CancellationToken ct)
    {
        using var response = await client.PostAsJsonAsync(graph.BaseUrl + "/v1.0/subscriptions", new Dictionary<string, string>
        {
            ["changeType"] = "created,updated",
            ["notificationUrl"] = endpoint.BaseUrl + "/notify",
            ["lifecycleNotificationUrl"] = endpoint.BaseUrl + "/lifecycle",
            ["resource"] = "/users/" + Mailbox + "/mailFolders('inbox')/messages",
            ["expirationDateTime"] = DateTimeOffset.UtcNow.AddHours(1).UtcDateTime.ToString("o", CultureInfo.InvariantCulture),
            ["clientState"] = "state-1",
        }, ct);
        Assert.Equal(HttpStatusCode.Created, response.StatusCode);
        using var doc = JsonDocument.Parse(await response.Content.ReadAsStringAsync(ct));
        return doc.RootElement.GetProperty("id").GetString()!;
    }

    private static async Task<string?> ErrorCodeAsync(HttpResponseMessage response, CancellationToken ct)
    {
        using var doc = JsonDocument.Parse(await response.Content.ReadAsStringAsync(ct));
        var error = doc.RootElement.GetProperty("error");
        return error.ValueKind == JsonValueKind.Object ? error.GetProperty("code").GetString() : error.GetString();
    }

    [Fact]
    public async Task LifecycleEvents_ReachTheLifecycleUrl_ReauthorizeClears_RemovedDeletes_DeleteTwiceIs404()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var graph = await FakeGraphServer.StartAsync(cancellationToken: ct);
        graph.AddMailbox(Mailbox);
        await using var endpoint = await Endpoint.StartAsync(ct);
        using var client = await FakeGraphClients.AuthorizedAsync(graph, ct);
        var id = await CreateAsync(graph, client, endpoint, ct);

        // reauthorizationRequired: sent to the lifecycle URL with the clientState; the subscription is marked until reauthorized.
        Assert.Equal(202, await graph.SendLifecycleAsync(id, "reauthorizationRequired", ct));
        var (path, body) = endpoint.Notifications.Last();
        Assert.Equal("/lifecycle", path);
        using (var doc = JsonDocument.Parse(body))
        {
            var item = doc.RootElement.GetProperty("value")[0];
            Assert.Equal("reauthorizationRequired", item.GetProperty("lifecycleEvent").GetString());
            Assert.Equal("state-1", item.GetProperty("clientState").GetString());
            Assert.Equal(id, item.GetProperty("subscriptionId").GetString());
            Assert.Equal(graph.TenantId, item.GetProperty("tenantId").GetString());
        }

        Assert.True(Assert.Single(graph.Subscriptions).NeedsReauthorization);
        using (var reauthorize = await client.PostAsync(graph.BaseUrl + "/v1.0/subscriptions/" + id + "/reauthorize", null, ct))
        {
            Assert.Equal(HttpStatusCode.NoContent, reauthorize.StatusCode);
        }

        Assert.False(Assert.Single(graph.Subscriptions).NeedsReauthorization);

        // missed: the subscription stays.
        Assert.Equal(202, await graph.SendLifecycleAsync(id, "missed", ct));
        Assert.Single(graph.Subscriptions);

        // subscriptionRemoved: Graph has deleted it already; renewing it is 404.
        Assert.Equal(202, await graph.SendLifecycleAsync(id, "subscriptionRemoved", ct));
        Assert.Empty(graph.Subscriptions);
        using (var renew = await client.PatchAsJsonAsync(graph.BaseUrl + "/v1.0/subscriptions/" + id, new { expirationDateTime = DateTimeOffset.UtcNow.AddHours(1).UtcDateTime.ToString("o", CultureInfo.InvariantCulture) }, ct))
        {
            Assert.Equal(HttpStatusCode.NotFound, renew.StatusCode);
            Assert.Equal("ResourceNotFound", await ErrorCodeAsync(renew, ct));
        }

        // DELETE removes a live one; a second DELETE is 404.
        var second = await CreateAsync(graph, client, endpoint, ct);
        using (var delete = await client.DeleteAsync(graph.BaseUrl + "/v1.0/subscriptions/" + second, ct))
        {
            Assert.Equal(HttpStatusCode.NoContent, delete.StatusCode);
        }

        Assert.Empty(graph.Subscriptions);
        using (var again = await client.DeleteAsync(graph.BaseUrl + "/v1.0/subscriptions/" + second, ct))
        {
            Assert.Equal(HttpStatusCode.NotFound, again.StatusCode);
        }
    }

    [Fact]
    public async Task InjectedErrors_AreGraphShaped_AndConsumedOneByOne()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var graph = await FakeGraphServer.StartAsync(cancellationToken: ct);
        graph.AddMailbox(Mailbox);
        await using var endpoint = await Endpoint.StartAsync(ct);
        using var client = await FakeGraphClients.AuthorizedAsync(graph, ct);

        graph.FailNext("create", 1, 503, "ServiceUnavailable");
        using (var failed = await client.PostAsJsonAsync(graph.BaseUrl + "/v1.0/subscriptions", new { }, ct))
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, failed.StatusCode);
            Assert.Equal("ServiceUnavailable", await ErrorCodeAsync(failed, ct));
        }

        var id = await CreateAsync(graph, client, endpoint, ct); // the injected failure was used up

        graph.FailNext("renew", 2, 429, "TooManyRequests");
        var renewal = new { expirationDateTime = DateTimeOffset.UtcNow.AddHours(2).UtcDateTime.ToString("o", CultureInfo.InvariantCulture) };
        for (var i = 0; i < 2; i++)
        {
            using var throttled = await client.PatchAsJsonAsync(graph.BaseUrl + "/v1.0/subscriptions/" + id, renewal, ct);
            Assert.Equal(HttpStatusCode.TooManyRequests, throttled.StatusCode);
            Assert.Equal("TooManyRequests", await ErrorCodeAsync(throttled, ct));
        }

        using (var renewed = await client.PatchAsJsonAsync(graph.BaseUrl + "/v1.0/subscriptions/" + id, renewal, ct))
        {
            Assert.Equal(HttpStatusCode.OK, renewed.StatusCode);
        }

        Assert.Equal(1, Assert.Single(graph.Subscriptions).Renewals);

        graph.FailNext("token", 1, 500, "temporarily_unavailable");
        using var anonymous = new HttpClient();
        using var form = new FormUrlEncodedContent(new Dictionary<string, string>
        {
            ["grant_type"] = "client_credentials", ["client_id"] = "app-1", ["client_secret"] = "s3cret", ["scope"] = FakeGraphServer.DefaultScope,
        });
        using (var token = await anonymous.PostAsync(graph.TokenUrl, form, ct))
        {
            Assert.Equal(HttpStatusCode.InternalServerError, token.StatusCode);
            Assert.Equal("temporarily_unavailable", await ErrorCodeAsync(token, ct));
        }

        // An issued token revoked early is refused as Graph refuses it.
        graph.ExpireAccessTokens();
        using var refused = await client.GetAsync(graph.BaseUrl + "/v1.0/subscriptions/" + id, ct);
        Assert.Equal(HttpStatusCode.Unauthorized, refused.StatusCode);
        Assert.Equal("InvalidAuthenticationToken", await ErrorCodeAsync(refused, ct));
    }

    [Fact]
    public async Task Delivery_FailingOrSlowAnswers_AreRetriedWithGrowingDelays_UntilA2xx()
    {
        var ct = TestContext.Current.CancellationToken;
        var options = new FakeGraphOptions { NotificationTimeout = TimeSpan.FromMilliseconds(500), RetryDelay = TimeSpan.FromMilliseconds(100), MaxDeliveryAttempts = 4 };
        await using var graph = await FakeGraphServer.StartAsync(options, cancellationToken: ct);
        graph.AddMailbox(Mailbox);
        await using var endpoint = await Endpoint.StartAsync(ct);
        using var client = await FakeGraphClients.AuthorizedAsync(graph, ct);
        var id = await CreateAsync(graph, client, endpoint, ct);

        // A 500, then an answer slower than Graph waits (counted as undelivered: 0), then a 202.
        endpoint.Script.Enqueue((500, TimeSpan.Zero));
        endpoint.Script.Enqueue((202, TimeSpan.FromSeconds(2)));
        await graph.DeliverAsync(Mailbox, "Hello", "Bob", "bob@contoso.com", ct);

        var deliveries = graph.Deliveries;
        Assert.Equal([1, 2, 3], deliveries.Select(d => d.Attempt));
        Assert.Equal([500, 0, 202], deliveries.Select(d => d.Status));
        Assert.All(deliveries, d => Assert.Equal(id, d.SubscriptionId));
        Assert.Single(deliveries.Select(d => d.Body).Distinct()); // every retry is the same notification
        Assert.Equal(3, endpoint.Notifications.Count);

        // A client that never answers 2xx: Graph gives up after the configured attempts.
        for (var i = 0; i < options.MaxDeliveryAttempts; i++)
        {
            endpoint.Script.Enqueue((503, TimeSpan.Zero));
        }

        await graph.DeliverAsync(Mailbox, "Again", "Bob", "bob@contoso.com", ct);
        Assert.Equal([503, 503, 503, 503], graph.Deliveries.Skip(3).Select(d => d.Status));

        // Graph's retry of a notification whose answer it did not see: the same body again.
        Assert.Equal(202, await graph.RedeliverAsync(id, ct));
        Assert.Equal(graph.Deliveries[^2].Body, graph.Deliveries[^1].Body);
    }
}
