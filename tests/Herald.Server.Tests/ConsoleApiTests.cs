using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Herald.Core.Security;
using Herald.Simulators.Exchange.Streaming;
using Herald.Simulators.Graph;
using Xunit;

namespace Herald.Server.Tests;

/// <summary>
/// The API behind the console's registration search and connectors view: registrations by token fingerprint (tenant
/// scoped), EWS streaming groups against the fake Exchange, Graph subscriptions and Graph failures in /readyz and /metrics.
/// </summary>
public sealed class ConsoleApiTests
{
    private const string Topic = GatewayHarness.Topic;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static string Token(int n) => "c0" + n.ToString("x2") + new string('d', 60);

    private static async Task<JsonElement> GetJsonAsync(HttpClient client, string url, HttpStatusCode expected = HttpStatusCode.OK)
    {
        using var response = await client.GetAsync(url, Ct);
        var text = await response.Content.ReadAsStringAsync(Ct);
        Assert.True(response.StatusCode == expected, $"{url}: {(int)response.StatusCode} {text}");
        if (expected != HttpStatusCode.OK)
        {
            Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        }

        return text.Length == 0 ? default : JsonDocument.Parse(text).RootElement.Clone();
    }

    private static async Task<string> RegisterAsync(HttpClient client, string token)
    {
        using var response = await client.PostAsJsonAsync("v1/registrations", new { platform = "apns", token, topic = Topic, source = "none" }, Ct);
        var text = await response.Content.ReadAsStringAsync(Ct);
        Assert.True(response.StatusCode == HttpStatusCode.Created, text);
        using var doc = JsonDocument.Parse(text);
        return doc.RootElement.GetProperty("id").GetString()!;
    }

    private static string[] Ids(JsonElement page) => [.. page.GetProperty("items").EnumerateArray().Select(i => i.GetProperty("id").GetString()!)];

    private static async Task Eventually(Func<Task<bool>> condition, string what)
    {
        for (var i = 0; i < 600; i++)
        {
            if (await condition())
            {
                return;
            }

            await Task.Delay(25, Ct);
        }

        Assert.Fail("Timed out waiting for " + what);
    }

    [Fact]
    public async Task Registrations_ByFingerprint_AreFoundInTheCallersTenantOnly()
    {
        await using var gw = await GatewayHarness.StartAsync(cancellationToken: Ct);
        var (_, contoso) = await CredentialTestKit.TenantAsync(gw, "contoso", Ct);
        using (contoso)
        {
            var mine = await RegisterAsync(gw.Client, Token(1));
            var other = await RegisterAsync(gw.Client, Token(2));
            var theirs = await RegisterAsync(contoso, Token(1)); // the same device token in another tenant
            var printed = (await GetJsonAsync(gw.Client, "v1/registrations/" + mine)).GetProperty("tokenFingerprint").GetString()!;
            Assert.Equal(Redact.Token(Token(1)), printed);

            // As logs print it, without the prefix, in upper case: the admin key searches the default tenant.
            foreach (var query in new[] { printed, printed[4..], printed.ToUpperInvariant(), Uri.EscapeDataString(printed) })
            {
                var page = await GetJsonAsync(gw.Client, "v1/registrations?fingerprint=" + query);
                Assert.Equal([mine], Ids(page));
                Assert.Equal(printed, page.GetProperty("items")[0].GetProperty("tokenFingerprint").GetString());
            }

            // The tenant key sees its own registration with that token, never the default tenant's.
            Assert.Equal([theirs], Ids(await GetJsonAsync(contoso, "v1/registrations?fingerprint=" + printed)));
            Assert.Empty(Ids(await GetJsonAsync(contoso, "v1/registrations?fingerprint=" + Redact.Token(Token(2)))));
            Assert.Equal([theirs], Ids(await GetJsonAsync(contoso, "v1/registrations")));
            await GetJsonAsync(contoso, "v1/registrations/" + mine, HttpStatusCode.NotFound);

            // Paging through the default tenant by id.
            var first = await GetJsonAsync(gw.Client, "v1/registrations?limit=1");
            var all = new[] { mine, other }.Order(StringComparer.Ordinal).ToArray();
            Assert.Equal([all[0]], Ids(first));
            var next = first.GetProperty("next").GetString()!;
            var second = await GetJsonAsync(gw.Client, "v1/registrations?limit=1&after=" + Uri.EscapeDataString(next));
            Assert.Equal([all[1]], Ids(second));
            Assert.False(second.TryGetProperty("next", out var end) && end.ValueKind == JsonValueKind.String);

            // A deleted registration is not found; a rotated token is found by its new fingerprint only.
            using (var delete = await gw.Client.DeleteAsync("v1/registrations/" + other, Ct))
            {
                Assert.Equal(HttpStatusCode.NoContent, delete.StatusCode);
            }

            Assert.Empty(Ids(await GetJsonAsync(gw.Client, "v1/registrations?fingerprint=" + Redact.Token(Token(2)))));
            using (var patch = await gw.Client.PatchAsJsonAsync("v1/registrations/" + mine, new { token = Token(3) }, Ct))
            {
                Assert.Equal(HttpStatusCode.OK, patch.StatusCode);
            }

            Assert.Empty(Ids(await GetJsonAsync(gw.Client, "v1/registrations?fingerprint=" + printed)));
            Assert.Equal([mine], Ids(await GetJsonAsync(gw.Client, "v1/registrations?fingerprint=" + Redact.Token(Token(3)))));

            // Bad input is a 400 problem, not a 500.
            foreach (var bad in new[] { "fingerprint=tok:xyz", "fingerprint=tok:123456789", "fingerprint=", "limit=0", "limit=501", "after=" + new string('a', 200) })
            {
                await GetJsonAsync(gw.Client, "v1/registrations?" + bad, HttpStatusCode.BadRequest);
            }
        }
    }

    [Fact]
    public async Task StreamingGroups_ShowMembersConnectionAndOwner_WithoutAddresses()
    {
        const string alice = "alice@contoso.test";
        const string bob = "bob@contoso.test";
        await using var exchange = await FakeEwsServer.StartAsync(new FakeEwsServerOptions { Seed = 21 }, cancellationToken: Ct);
        exchange.AddMailbox(alice, "MBX01");
        exchange.AddMailbox(bob, "MBX01");
        await using var gw = await GatewayHarness.StartAsync(
            new Dictionary<string, string?> { ["Herald:EwsStreaming:PollInterval"] = "00:00:00.200", ["Herald:EwsStreaming:MinBackOff"] = "00:00:00.100" },
            cancellationToken: Ct);
        using (var put = await gw.Client.PutAsJsonAsync("v1/connectors/exchange", new
        {
            kind = "ews",
            autodiscover = true,
            autodiscoverUrl = exchange.AutodiscoverUrl,
            auth = new { type = "basic", username = exchange.Options.BasicUsername, password = exchange.Options.BasicPassword },
        }, Ct))
        {
            Assert.True(put.IsSuccessStatusCode, await put.Content.ReadAsStringAsync(Ct));
        }

        foreach (var (mailbox, n) in new[] { (alice, 1), (bob, 2) })
        {
            using var reg = await gw.Client.PostAsJsonAsync("v1/registrations", new { platform = "apns", token = Token(n), source = "ews-streaming", mailbox, connector = "exchange" }, Ct);
            Assert.True(reg.IsSuccessStatusCode, await reg.Content.ReadAsStringAsync(Ct));
        }

        JsonElement state = default;
        await Eventually(
            async () =>
            {
                state = await GetJsonAsync(gw.Client, "v1/connectors/exchange/streaming");
                var groups = state.GetProperty("groups").EnumerateArray().ToList();
                return groups.Sum(g => g.GetProperty("subscribed").GetInt32()) == 2 && groups.All(g => g.GetProperty("connected").GetBoolean());
            },
            "both mailboxes subscribed and streaming");
        Assert.Equal(exchange.OpenConnections, state.GetProperty("groups").GetArrayLength());
        var group = state.GetProperty("groups")[0];
        Assert.Equal(2, state.GetProperty("groups").EnumerateArray().Sum(g => g.GetProperty("members").GetInt32()));
        Assert.StartsWith("tok:", group.GetProperty("anchor").GetString(), StringComparison.Ordinal);
        Assert.True(group.GetProperty("connectionsOpened").GetInt64() >= 1);
        var owner = state.GetProperty("leaseOwner").GetString();
        Assert.Equal(owner, group.GetProperty("owner").GetString());
        var leases = state.GetProperty("leases").EnumerateArray().ToList();
        Assert.NotEmpty(leases);
        Assert.All(leases, l => Assert.True(l.GetProperty("thisNode").GetBoolean()));
        Assert.All(leases, l => Assert.Equal(owner, l.GetProperty("owner").GetString()));

        // New mail shows as the group's last event (and a heartbeat).
        exchange.EmitNewMail(alice, "s", "n", "n@example.org");
        await gw.Apns.WaitForRequestAsync(r => r.Token == Token(1), Ct);
        await Eventually(
            async () =>
            {
                state = await GetJsonAsync(gw.Client, "v1/connectors/exchange/streaming");
                return state.GetProperty("groups").EnumerateArray().Any(g => g.GetProperty("lastEventAt").ValueKind == JsonValueKind.String
                    && g.GetProperty("lastHeartbeatAt").ValueKind == JsonValueKind.String);
            },
            "the event in the group's state");
        var text = state.GetRawText();
        Assert.DoesNotContain("alice", text, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain("bob", text, StringComparison.OrdinalIgnoreCase);
        Assert.Empty(state.GetProperty("faults").EnumerateArray());

        // Exchange stops answering GetStreamingEvents and the streams drop: the groups show the error and /readyz warns.
        exchange.FailNext(1000, FakeEwsFailure.Http503, "GetStreamingEvents");
        exchange.DropStreamingConnections();
        JsonElement warning = default;
        await Eventually(
            async () =>
            {
                var ready = await GetJsonAsync(gw.Client, "readyz");
                warning = ready.GetProperty("checks").EnumerateArray().FirstOrDefault(c => c.GetProperty("name").GetString() == "connector:ews:default:exchange");
                return warning.ValueKind == JsonValueKind.Object && ready.GetProperty("status").GetString() == "degraded";
            },
            "readiness degraded by the disconnected streaming group");
        Assert.Equal("warn", warning.GetProperty("status").GetString());
        Assert.Contains("disconnected", warning.GetProperty("detail").GetString(), StringComparison.Ordinal);
        state = await GetJsonAsync(gw.Client, "v1/connectors/exchange/streaming");
        Assert.Contains(state.GetProperty("groups").EnumerateArray(), g => !g.GetProperty("connected").GetBoolean() && g.GetProperty("lastError").ValueKind == JsonValueKind.String);

        // Another tenant cannot see it; an unknown connector is a 404; the Graph view of an ews connector a 400.
        var (_, contoso) = await CredentialTestKit.TenantAsync(gw, "contoso", Ct);
        using (contoso)
        {
            await GetJsonAsync(contoso, "v1/connectors/exchange/streaming", HttpStatusCode.NotFound);
        }

        await GetJsonAsync(gw.Client, "v1/connectors/nope/streaming", HttpStatusCode.NotFound);
        await GetJsonAsync(gw.Client, "v1/connectors/exchange/subscriptions", HttpStatusCode.BadRequest);
    }

    [Fact]
    public async Task GraphTokenRefused_DegradesReadiness_ListedInMetricsAndConnectorView_UntilFixed()
    {
        const string clientId = "11111111-2222-3333-4444-555555555555";
        const string mailbox = "alice@contoso.com";
        await using var graph = await FakeGraphServer.StartAsync(cancellationToken: Ct);
        graph.RegisterApplication(clientId, "the-right-secret");
        graph.AddMailbox(mailbox);
        await using var gw = await GatewayHarness.StartAsync(new Dictionary<string, string?> { ["Herald:Graph:ReconcileInterval"] = "00:00:00.200" }, cancellationToken: Ct);
        async Task PutConnectorAsync(string secret)
        {
            using var put = await gw.Client.PutAsJsonAsync("v1/connectors/o365", new
            {
                kind = "graph",
                baseUrl = graph.BaseUrl,
                auth = new { type = "oauth2", tokenUrl = graph.TokenUrl, clientId, clientSecret = secret },
            }, Ct);
            Assert.True(put.IsSuccessStatusCode, await put.Content.ReadAsStringAsync(Ct));
        }

        await PutConnectorAsync("a-wrong-secret");
        using (var reg = await gw.Client.PostAsJsonAsync("v1/registrations", new { platform = "apns", token = Token(7), source = "graph", mailbox, connector = "o365" }, Ct))
        {
            Assert.True(reg.IsSuccessStatusCode, await reg.Content.ReadAsStringAsync(Ct));
        }

        JsonElement check = default;
        await Eventually(
            async () =>
            {
                var ready = await GetJsonAsync(gw.Client, "readyz");
                check = ready.GetProperty("checks").EnumerateArray().FirstOrDefault(c => c.GetProperty("name").GetString() == "connector:graph:default:o365");
                return check.ValueKind == JsonValueKind.Object && ready.GetProperty("status").GetString() == "degraded";
            },
            "readiness degraded by the Graph token failure");
        Assert.Equal("fail", check.GetProperty("status").GetString());
        var reason = check.GetProperty("detail").GetString()!;
        Assert.Contains("token endpoint", reason, StringComparison.Ordinal);
        Assert.Contains("401 invalid_client", reason, StringComparison.Ordinal);
        Assert.DoesNotContain(mailbox, reason, StringComparison.Ordinal);

        var view = await GetJsonAsync(gw.Client, "v1/connectors/o365/subscriptions");
        Assert.DoesNotContain(view.GetProperty("items").EnumerateArray(), i => i.GetProperty("state").GetString() != "creating"); // at most a create in flight
        var fault = Assert.Single(view.GetProperty("faults").EnumerateArray());
        Assert.Equal("token", fault.GetProperty("operation").GetString());
        Assert.Equal(401, fault.GetProperty("status").GetInt32());

        var metrics = await gw.Client.GetStringAsync("metrics", Ct);
        var failures = metrics.Split('\n').Single(l => l.StartsWith("herald_connector_failures_total{", StringComparison.Ordinal) && l.Contains("operation=\"token\"", StringComparison.Ordinal));
        Assert.Contains("kind=\"graph\"", failures, StringComparison.Ordinal);
        Assert.True(double.Parse(failures[(failures.LastIndexOf(' ') + 1)..], System.Globalization.CultureInfo.InvariantCulture) >= 1);
        Assert.Contains(metrics.Split('\n'), l => l.StartsWith("herald_connectors_degraded{", StringComparison.Ordinal) && l.Contains("kind=\"graph\"", StringComparison.Ordinal) && l.EndsWith(" 1", StringComparison.Ordinal));
        Assert.DoesNotContain("o365", metrics, StringComparison.Ordinal); // no tenant data in /metrics

        // The secret is fixed: the subscription is created, readiness recovers, the view shows it and its expiry.
        await PutConnectorAsync("the-right-secret");
        await Eventually(
            async () =>
            {
                var ready = await GetJsonAsync(gw.Client, "readyz");
                view = await GetJsonAsync(gw.Client, "v1/connectors/o365/subscriptions");
                return graph.Subscriptions.Count == 1
                    && !ready.GetProperty("checks").EnumerateArray().Any(c => c.GetProperty("name").GetString()!.StartsWith("connector:", StringComparison.Ordinal))
                    && view.GetProperty("items").EnumerateArray().Count(i => i.GetProperty("state").GetString() == "active") == 1;
            },
            "readiness without the connector check, and the subscription active, once the token works");
        var item = Assert.Single(view.GetProperty("items").EnumerateArray());
        Assert.Equal(graph.Subscriptions[0].Id, item.GetProperty("id").GetString());
        Assert.Equal("active", item.GetProperty("state").GetString());
        Assert.True(item.GetProperty("expiresAt").GetDateTimeOffset() > DateTimeOffset.UtcNow);
        Assert.True(item.GetProperty("expiresInSeconds").GetDouble() > 0);
        Assert.StartsWith("mbx:", item.GetProperty("mailbox").GetString(), StringComparison.Ordinal);
        Assert.Empty(view.GetProperty("faults").EnumerateArray());
        Assert.DoesNotContain(mailbox, view.GetRawText(), StringComparison.Ordinal);
        await GetJsonAsync(gw.Client, "v1/connectors/o365/streaming", HttpStatusCode.BadRequest);
    }
}
