using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using Xunit;

namespace Herald.Server.Tests;

/// <summary>Helpers for the credential, MDM and webhook tests: tenants with keys, sends, and waiting for states.</summary>
internal static class CredentialTestKit
{
    public static async Task<(string Id, HttpClient Client)> TenantAsync(GatewayHarness gw, string name, CancellationToken ct)
    {
        using var created = await gw.Client.PostAsJsonAsync("v1/tenants", new { name }, ct);
        Assert.Equal(HttpStatusCode.Created, created.StatusCode);
        using var tenant = JsonDocument.Parse(await created.Content.ReadAsStringAsync(ct));
        var id = tenant.RootElement.GetProperty("id").GetString()!;
        using var keyResponse = await gw.Client.PostAsync($"v1/tenants/{id}/keys", null, ct);
        Assert.Equal(HttpStatusCode.Created, keyResponse.StatusCode);
        using var key = JsonDocument.Parse(await keyResponse.Content.ReadAsStringAsync(ct));
        var client = new HttpClient { BaseAddress = gw.Client.BaseAddress };
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key.RootElement.GetProperty("key").GetString());
        return (id, client);
    }

    public static async Task<(HttpStatusCode Status, JsonElement Body, string Text)> PutJsonAsync(HttpClient client, string url, object body, CancellationToken ct)
    {
        using var response = await client.PutAsJsonAsync(url, body, ct);
        var text = await response.Content.ReadAsStringAsync(ct);
        var json = text.Length > 0 ? JsonDocument.Parse(text).RootElement.Clone() : default;
        return (response.StatusCode, json, text);
    }

    public static async Task<string> SendAsync(HttpClient client, object request, CancellationToken ct)
    {
        using var response = await client.PostAsJsonAsync("v1/notifications", request, ct);
        var text = await response.Content.ReadAsStringAsync(ct);
        Assert.True(response.StatusCode == HttpStatusCode.Accepted, text);
        using var json = JsonDocument.Parse(text);
        return json.RootElement.GetProperty("id").GetString()!;
    }

    public static async Task<JsonElement> WaitForStatesAsync(HttpClient client, string id, Func<JsonElement, bool> done, CancellationToken ct, int rounds = 400)
    {
        for (var i = 0; i < rounds; i++)
        {
            var status = JsonDocument.Parse(await client.GetStringAsync("v1/notifications/" + id, ct)).RootElement.Clone();
            if (done(status.GetProperty("states")))
            {
                return status;
            }

            await Task.Delay(50, ct);
        }

        throw new TimeoutException("request did not reach the state: " + await client.GetStringAsync("v1/notifications/" + id, ct));
    }

    public static long State(JsonElement states, string name) => states.GetProperty(name).GetInt64();

    public static async Task<JsonElement> ReadyAsync(GatewayHarness gw, CancellationToken ct)
    {
        using var anonymous = new HttpClient { BaseAddress = gw.Client.BaseAddress };
        using var response = await anonymous.GetAsync("readyz", ct);
        return JsonDocument.Parse(await response.Content.ReadAsStringAsync(ct)).RootElement.Clone();
    }
}
