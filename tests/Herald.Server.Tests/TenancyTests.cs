using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Xunit;

namespace Herald.Server.Tests;

/// <summary>
/// Tenancy: a tenant key reaches only its own tenant. Tenant B's key is tried on every <c>/v1</c> endpoint (the list comes from
/// the running gateway, so a new endpoint without a case here fails the test) against tenant A's resources: every answer is
/// 403/404 (or B's own, empty view), no answer carries A's identifiers, and A's resources are unchanged afterwards.
/// </summary>
public sealed class TenancyTests
{
    private const string ConnectorPassword = "tenant-a-dovecot-password";

    [Fact]
    public async Task TenantKey_CannotReachAnotherTenantThroughAnyV1Endpoint()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var gw = await GatewayHarness.StartAsync(cancellationToken: ct);
        var (tenantA, clientA) = await NewTenantAsync(gw, "tenant-a", ct);
        var (tenantB, clientB) = await NewTenantAsync(gw, "tenant-b", ct);
        using (clientA)
        using (clientB)
        {
            // Tenant A's resources.
            using (var c = await clientA.PutAsJsonAsync("v1/connectors/mail-a", new { kind = "dovecot", username = "dovecot", password = ConnectorPassword }, ct))
            {
                Assert.True(c.IsSuccessStatusCode, await c.Content.ReadAsStringAsync(ct));
            }

            using var regResponse = await clientA.PostAsJsonAsync("v1/registrations", new { platform = "apns", token = new string('a', 64), source = "dovecot", mailbox = "alice", connector = "mail-a" }, ct);
            var registrationA = (await regResponse.Content.ReadFromJsonAsync<JsonElement>(ct)).GetProperty("id").GetString()!;
            using var sendResponse = await clientA.PostAsJsonAsync("v1/notifications", new { lane = "priority", registrations = new[] { registrationA }, kind = "badge", badge = 1 }, ct);
            Assert.Equal(HttpStatusCode.Accepted, sendResponse.StatusCode);
            var requestA = (await sendResponse.Content.ReadFromJsonAsync<JsonElement>(ct)).GetProperty("id").GetString()!;
            var before = await SnapshotAsync(clientA, registrationA, ct);

            var values = new Dictionary<string, string>(StringComparer.Ordinal)
            {
                ["id"] = registrationA,
                ["name"] = "mail-a",
                ["keyId"] = "key_does_not_matter",
                ["platform"] = "apns",
            };
            var secretsOfA = new[] { registrationA, requestA, tenantA, ConnectorPassword, "mail-a" };

            var routes = gw.App.Services.GetRequiredService<EndpointDataSource>().Endpoints.OfType<RouteEndpoint>()
                .Where(e => e.RoutePattern.RawText?.StartsWith("/v1", StringComparison.Ordinal) == true)
                .SelectMany(e => (e.Metadata.GetMetadata<IHttpMethodMetadata>()?.HttpMethods ?? ["GET"]).Select(m => (Method: m, Pattern: e.RoutePattern.RawText!)))
                .Distinct()
                .ToList();
            Assert.NotEmpty(routes);

            var tried = new List<string>();
            foreach (var (method, pattern) in routes)
            {
                var path = pattern.TrimStart('/');
                foreach (var parameter in System.Text.RegularExpressions.Regex.Matches(pattern, "{([^}:?*]+)[^}]*}").Select(m => m.Groups[1].Value))
                {
                    var value = parameter == "id" && pattern.Contains("/tenants/{id}", StringComparison.Ordinal) ? tenantA
                        : parameter == "id" && pattern.Contains("/notifications/{id}", StringComparison.Ordinal) ? requestA
                        : values.TryGetValue(parameter, out var v) ? v
                        : throw new InvalidOperationException($"TenancyTests has no value for '{{{parameter}}}' in {method} {pattern}: add the new endpoint's case");
                    path = System.Text.RegularExpressions.Regex.Replace(path, "{" + parameter + "[^}]*}", Uri.EscapeDataString(value));
                }

                using var request = new HttpRequestMessage(new HttpMethod(method), path);
                if (method is "POST" or "PUT" or "PATCH")
                {
                    request.Content = new StringContent(BodyFor(pattern, registrationA), Encoding.UTF8, "application/json");
                }

                using var response = await clientB.SendAsync(request, ct);
                var body = await response.Content.ReadAsStringAsync(ct);
                var status = (int)response.StatusCode;
                tried.Add($"{method} {pattern} -> {status}");
                var sent = path + (request.Content is null ? string.Empty : BodyFor(pattern, registrationA));
                foreach (var secret in secretsOfA.Where(x => !sent.Contains(x, StringComparison.Ordinal))) // echoing what B sent is no leak
                {
                    Assert.False(body.Contains(secret, StringComparison.Ordinal), $"{method} {path} with tenant B's key answered {status} with tenant A's '{secret}': {body}");
                }

                Assert.True(status < 500, $"{method} {path}: {status} {body}");
                if (status is >= 200 and < 300 && pattern.Contains('{', StringComparison.Ordinal) && !pattern.StartsWith("/v1/connectors", StringComparison.Ordinal))
                {
                    Assert.Fail($"{method} {path} with tenant B's key succeeded ({status}) on tenant A's resource: {body}");
                }
            }

            TestContext.Current.TestOutputHelper?.WriteLine(string.Join("\n", tried));
            var after = await SnapshotAsync(clientA, registrationA, ct);
            Assert.Equal(before, after);
            Assert.DoesNotContain(tried, t => t.StartsWith("POST /v1/tenants ->", StringComparison.Ordinal) && !t.EndsWith("403", StringComparison.Ordinal));
            _ = tenantB;
        }
    }

    private static string BodyFor(string pattern, string registrationA) => pattern switch
    {
        _ when pattern.StartsWith("/v1/notifications", StringComparison.Ordinal) => $$"""{"lane":"priority","registrations":["{{registrationA}}"],"kind":"badge","badge":9}""",
        _ when pattern.StartsWith("/v1/registrations", StringComparison.Ordinal) => """{"style":"generic","token":"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"}""",
        _ when pattern.StartsWith("/v1/connectors", StringComparison.Ordinal) => """{"kind":"dovecot","username":"intruder","password":"intruder-password-123"}""",
        _ when pattern.StartsWith("/v1/admin/dead", StringComparison.Ordinal) => """{"ids":[1,2,3]}""",
        _ when pattern.StartsWith("/v1/admin/settings", StringComparison.Ordinal) => """{"lanes":{"standard":{"ratePerMinute":1,"scope":"node"}}}""",
        _ when pattern.Contains("/webhook", StringComparison.Ordinal) => """{"url":"https://evil.example/hook","secret":"0123456789abcdef0123456789abcdef"}""",
        _ when pattern.Contains("/credentials", StringComparison.Ordinal) => """{"packageSid":"ms-app://s-1-15-2-1","clientSecret":"x"}""",
        _ => """{"name":"intruder"}""",
    };

    /// <summary>What tenant A sees of its own resources (and the farm settings), to compare before and after tenant B's attempts.</summary>
    private static async Task<string> SnapshotAsync(HttpClient clientA, string registrationA, CancellationToken ct)
    {
        var registration = await clientA.GetFromJsonAsync<JsonElement>("v1/registrations/" + registrationA, ct);
        var connector = await clientA.GetFromJsonAsync<JsonElement>("v1/connectors/mail-a", ct);
        return $"{registration.GetProperty("status")}|{registration.GetProperty("style")}|{registration.GetProperty("tokenFingerprint")}|{connector.GetProperty("username")}|{connector.GetProperty("updatedAt")}";
    }

    private static async Task<(string TenantId, HttpClient Client)> NewTenantAsync(GatewayHarness gw, string name, CancellationToken ct)
    {
        using var tenant = await gw.Client.PostAsJsonAsync("v1/tenants", new { name }, ct);
        var tenantId = (await tenant.Content.ReadFromJsonAsync<JsonElement>(ct)).GetProperty("id").GetString()!;
        using var keyResponse = await gw.Client.PostAsync($"v1/tenants/{tenantId}/keys", null, ct);
        var key = (await keyResponse.Content.ReadFromJsonAsync<JsonElement>(ct)).GetProperty("key").GetString();
        var client = new HttpClient { BaseAddress = new Uri(gw.BaseUrl + "/") };
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
        return (tenantId, client);
    }
}
