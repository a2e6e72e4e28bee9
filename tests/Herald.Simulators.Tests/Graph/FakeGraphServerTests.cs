using System.Collections.Concurrent;
using System.Globalization;
using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Herald.Simulators.Graph;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;
using Xunit;

namespace Herald.Simulators.Tests.Graph;

/// <summary>How the test listener answers Graph's validation requests.</summary>
public enum ValidationReply
{
    Echo,
    WrongContentType,
    WrongBody,
    NotFound,
    TooSlow,
}

/// <summary>The fake Graph behaves as Microsoft Graph: token grant, the validation handshake, subscriptions' lifetimes, delivery.</summary>
public sealed class FakeGraphServerTests
{
    private sealed class Listener : IAsyncDisposable
    {
        private readonly WebApplication _app;

        private Listener(WebApplication app) => _app = app;

        public string BaseUrl { get; private set; } = string.Empty;
        public ValidationReply Reply { get; set; }
        public ConcurrentQueue<(string Path, string? Token, string Body)> Received { get; } = new();

        public static async Task<Listener> StartAsync(CancellationToken ct)
        {
            var builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions());
            builder.WebHost.UseKestrelCore().ConfigureKestrel(k => k.Listen(IPAddress.Loopback, 0));
            var app = builder.Build();
            var listener = new Listener(app);
            ((IApplicationBuilder)app).Run(async http =>
            {
                var token = http.Request.Query["validationToken"].FirstOrDefault();
                using var reader = new StreamReader(http.Request.Body);
                listener.Received.Enqueue((http.Request.Path, token, await reader.ReadToEndAsync()));
                if (token is null)
                {
                    http.Response.StatusCode = 202;
                    return;
                }

                switch (listener.Reply)
                {
                    case ValidationReply.NotFound:
                        http.Response.StatusCode = 404;
                        return;
                    case ValidationReply.TooSlow:
                        await Task.Delay(TimeSpan.FromSeconds(3), http.RequestAborted).ContinueWith(_ => { }, TaskScheduler.Default);
                        break;
                }

                http.Response.ContentType = listener.Reply == ValidationReply.WrongContentType ? "application/json" : "text/plain";
                await http.Response.WriteAsync(listener.Reply == ValidationReply.WrongBody ? Uri.EscapeDataString(token) : token);
            });
            await app.StartAsync(ct);
            listener.BaseUrl = "http://127.0.0.1:" + new Uri(app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First()).Port;
            return listener;
        }

        public async ValueTask DisposeAsync()
        {
            await _app.StopAsync();
            await _app.DisposeAsync();
        }
    }

    private static Dictionary<string, object?> Body(string url, DateTimeOffset expiration, string? clientState = "cs", string resource = "/users/alice@contoso.com/mailFolders('inbox')/messages")
        => new Dictionary<string, object?>
        {
            ["changeType"] = "created,updated",
            ["notificationUrl"] = url + "/notify",
            ["lifecycleNotificationUrl"] = url + "/lifecycle",
            ["resource"] = resource,
            ["expirationDateTime"] = expiration.UtcDateTime.ToString("o", CultureInfo.InvariantCulture),
            ["clientState"] = clientState,
        };

    [Theory]
    [InlineData("client_credentials", "app-1", "wrong", "https://graph.microsoft.com/.default", 401, "invalid_client")]
    [InlineData("client_credentials", "nobody", "s3cret", "https://graph.microsoft.com/.default", 400, "unauthorized_client")]
    [InlineData("password", "app-1", "s3cret", "https://graph.microsoft.com/.default", 400, "unsupported_grant_type")]
    [InlineData("client_credentials", "app-1", "s3cret", "Mail.Read", 400, "invalid_scope")]
    public async Task Token_Refusals_AreEntraShaped(string grant, string clientId, string secret, string scope, int status, string error)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var graph = await FakeGraphServer.StartAsync(cancellationToken: ct);
        graph.RegisterApplication("app-1", "s3cret");
        using var client = new HttpClient();
        using var form = new FormUrlEncodedContent(new Dictionary<string, string> { ["grant_type"] = grant, ["client_id"] = clientId, ["client_secret"] = secret, ["scope"] = scope });
        using var response = await client.PostAsync(graph.TokenUrl, form, ct);
        Assert.Equal(status, (int)response.StatusCode);
        using var doc = JsonDocument.Parse(await response.Content.ReadAsStringAsync(ct));
        Assert.Equal(error, doc.RootElement.GetProperty("error").GetString());
    }

    [Fact]
    public async Task Create_ValidatesBothUrls_WithTheEncodedToken_ThenAnswers201()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var graph = await FakeGraphServer.StartAsync(cancellationToken: ct);
        graph.AddMailbox("alice@contoso.com");
        await using var listener = await Listener.StartAsync(ct);
        using var client = await FakeGraphClients.AuthorizedAsync(graph, ct);

        using var response = await client.PostAsJsonAsync(graph.BaseUrl + "/v1.0/subscriptions", Body(listener.BaseUrl, DateTimeOffset.UtcNow.AddHours(1)), ct);

        Assert.Equal(HttpStatusCode.Created, response.StatusCode);
        Assert.Equal(["/notify", "/lifecycle"], listener.Received.Select(r => r.Path));
        Assert.All(listener.Received, r => Assert.Contains("+&=/", r.Token, StringComparison.Ordinal)); // decoded by the listener
        using var doc = JsonDocument.Parse(await response.Content.ReadAsStringAsync(ct));
        Assert.Equal("cs", doc.RootElement.GetProperty("clientState").GetString());
        Assert.Single(graph.Subscriptions);
    }

    [Theory]
    [InlineData(ValidationReply.WrongContentType, "text/plain")]
    [InlineData(ValidationReply.WrongBody, "decoded validation token")]
    [InlineData(ValidationReply.NotFound, "200 OK")]
    public async Task Create_FailedValidation_Is400_AndNothingIsCreated(ValidationReply reply, string expected)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var graph = await FakeGraphServer.StartAsync(cancellationToken: ct);
        graph.AddMailbox("alice@contoso.com");
        await using var listener = await Listener.StartAsync(ct);
        listener.Reply = reply;
        using var client = await FakeGraphClients.AuthorizedAsync(graph, ct);

        using var response = await client.PostAsJsonAsync(graph.BaseUrl + "/v1.0/subscriptions", Body(listener.BaseUrl, DateTimeOffset.UtcNow.AddHours(1)), ct);

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Contains(expected, await response.Content.ReadAsStringAsync(ct), StringComparison.Ordinal);
        Assert.Empty(graph.Subscriptions);
        Assert.False(Assert.Single(graph.Validations).Passed);
    }

    [Fact]
    public async Task Create_SlowValidation_TimesOutAtTheDeadline()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var graph = await FakeGraphServer.StartAsync(new FakeGraphOptions { ValidationTimeout = TimeSpan.FromSeconds(1) }, cancellationToken: ct);
        graph.AddMailbox("alice@contoso.com");
        await using var listener = await Listener.StartAsync(ct);
        listener.Reply = ValidationReply.TooSlow;
        using var client = await FakeGraphClients.AuthorizedAsync(graph, ct);

        using var response = await client.PostAsJsonAsync(graph.BaseUrl + "/v1.0/subscriptions", Body(listener.BaseUrl, DateTimeOffset.UtcNow.AddHours(1)), ct);

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Contains("timed out", await response.Content.ReadAsStringAsync(ct), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Lifetimes_AreEnforced_RenewExtends_ExpiredIsGone()
    {
        var ct = TestContext.Current.CancellationToken;
        var time = new FakeTimeProvider(new DateTimeOffset(2026, 11, 23, 8, 0, 0, TimeSpan.Zero));
        await using var graph = await FakeGraphServer.StartAsync(new FakeGraphOptions { GrantedLifetime = TimeSpan.FromHours(2) }, time, ct);
        graph.AddMailbox("alice@contoso.com");
        await using var listener = await Listener.StartAsync(ct);
        using var client = await FakeGraphClients.AuthorizedAsync(graph, ct);
        var now = time.GetUtcNow();

        using (var tooLong = await client.PostAsJsonAsync(graph.BaseUrl + "/v1.0/subscriptions", Body(listener.BaseUrl, now.AddDays(8)), ct))
        {
            Assert.Equal(HttpStatusCode.BadRequest, tooLong.StatusCode);
        }

        using (var past = await client.PostAsJsonAsync(graph.BaseUrl + "/v1.0/subscriptions", Body(listener.BaseUrl, now.AddMinutes(-1)), ct))
        {
            Assert.Equal(HttpStatusCode.BadRequest, past.StatusCode);
        }

        using (var badState = await client.PostAsJsonAsync(graph.BaseUrl + "/v1.0/subscriptions", Body(listener.BaseUrl, now.AddHours(1), new string('x', 129)), ct))
        {
            Assert.Equal(HttpStatusCode.BadRequest, badState.StatusCode);
        }

        using (var unknownUser = await client.PostAsJsonAsync(graph.BaseUrl + "/v1.0/subscriptions", Body(listener.BaseUrl, now.AddHours(1), resource: "/users/bob@contoso.com/messages"), ct))
        {
            Assert.Equal(HttpStatusCode.NotFound, unknownUser.StatusCode);
        }

        using var created = await client.PostAsJsonAsync(graph.BaseUrl + "/v1.0/subscriptions", Body(listener.BaseUrl, now.AddDays(3)), ct);
        Assert.Equal(HttpStatusCode.Created, created.StatusCode);
        using var doc = JsonDocument.Parse(await created.Content.ReadAsStringAsync(ct));
        var id = doc.RootElement.GetProperty("id").GetString()!;
        Assert.Equal(now.AddHours(2), doc.RootElement.GetProperty("expirationDateTime").GetDateTimeOffset()); // granted less than asked

        time.Advance(TimeSpan.FromMinutes(50)); // within the access token's hour
        using (var renew = await client.PatchAsJsonAsync(graph.BaseUrl + "/v1.0/subscriptions/" + id, new { expirationDateTime = time.GetUtcNow().AddHours(2).UtcDateTime.ToString("o", CultureInfo.InvariantCulture) }, ct))
        {
            Assert.Equal(HttpStatusCode.OK, renew.StatusCode);
        }

        Assert.Equal(1, Assert.Single(graph.Subscriptions).Renewals);
        time.Advance(TimeSpan.FromHours(3));
        Assert.Empty(graph.Subscriptions);
        using (var expired = await client.GetAsync(graph.BaseUrl + "/v1.0/subscriptions/" + id, ct))
        {
            Assert.Equal(HttpStatusCode.Unauthorized, expired.StatusCode); // the access token's hour is over too
        }

        using var fresh = await FakeGraphClients.AuthorizedAsync(graph, ct);
        using (var gone = await fresh.PatchAsJsonAsync(graph.BaseUrl + "/v1.0/subscriptions/" + id, new { expirationDateTime = time.GetUtcNow().AddHours(1).UtcDateTime.ToString("o", CultureInfo.InvariantCulture) }, ct))
        {
            Assert.Equal(HttpStatusCode.NotFound, gone.StatusCode);
        }
    }

    [Fact]
    public async Task Delivery_CarriesClientStateAndResourceData_InboxAndMessageReadable()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var graph = await FakeGraphServer.StartAsync(cancellationToken: ct);
        var objectId = graph.AddMailbox("alice@contoso.com");
        await using var listener = await Listener.StartAsync(ct);
        using var client = await FakeGraphClients.AuthorizedAsync(graph, ct);
        using (var created = await client.PostAsJsonAsync(graph.BaseUrl + "/v1.0/subscriptions", Body(listener.BaseUrl, DateTimeOffset.UtcNow.AddHours(1)), ct))
        {
            Assert.Equal(HttpStatusCode.Created, created.StatusCode);
        }

        var messageId = await graph.DeliverAsync("alice@contoso.com", "Hello", "Bob", "bob@contoso.com", ct);

        var notification = listener.Received.Last();
        Assert.Equal("/notify", notification.Path);
        using var doc = JsonDocument.Parse(notification.Body);
        var item = doc.RootElement.GetProperty("value")[0];
        Assert.Equal("cs", item.GetProperty("clientState").GetString());
        Assert.Equal("created", item.GetProperty("changeType").GetString());
        Assert.Equal("Users/" + objectId + "/Messages/" + messageId, item.GetProperty("resource").GetString());
        Assert.Equal(messageId, item.GetProperty("resourceData").GetProperty("id").GetString());

        using var inbox = JsonDocument.Parse(await client.GetStringAsync(graph.BaseUrl + "/v1.0/users/alice@contoso.com/mailFolders/inbox", ct));
        Assert.Equal(1, inbox.RootElement.GetProperty("unreadItemCount").GetInt32());
        using var message = JsonDocument.Parse(await client.GetStringAsync(graph.BaseUrl + "/v1.0/users/" + objectId + "/messages/" + messageId, ct));
        Assert.Equal("Hello", message.RootElement.GetProperty("subject").GetString());
        Assert.Equal("Bob", message.RootElement.GetProperty("from").GetProperty("emailAddress").GetProperty("name").GetString());

        using var anonymous = new HttpClient();
        using var refused = await anonymous.GetAsync(graph.BaseUrl + "/v1.0/users/alice@contoso.com/mailFolders/inbox", ct);
        Assert.Equal(HttpStatusCode.Unauthorized, refused.StatusCode);
        Assert.Contains("InvalidAuthenticationToken", Encoding.UTF8.GetString(await refused.Content.ReadAsByteArrayAsync(ct)), StringComparison.Ordinal);
    }
}
