using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;
using Herald.Simulators.Graph;
using Xunit;

namespace Herald.Simulators.Tests.Graph;

/// <summary>What the fake Graph tests share: an application registered with the fake and a client holding its token.</summary>
internal static class FakeGraphClients
{
    /// <summary>Registers <c>app-1</c>, gets its token by client credentials (checked like Entra ID's answer) and returns a client that sends it.</summary>
    public static async Task<HttpClient> AuthorizedAsync(FakeGraphServer graph, CancellationToken ct)
    {
        graph.RegisterApplication("app-1", "s3cret");
        var client = new HttpClient();
        using var form = new FormUrlEncodedContent(new Dictionary<string, string>
        {
            ["grant_type"] = "client_credentials", ["client_id"] = "app-1", ["client_secret"] = "s3cret", ["scope"] = FakeGraphServer.DefaultScope,
        });
        using var response = await client.PostAsync(graph.TokenUrl, form, ct);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        using var doc = JsonDocument.Parse(await response.Content.ReadAsStringAsync(ct));
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", doc.RootElement.GetProperty("access_token").GetString());
        Assert.Equal("Bearer", doc.RootElement.GetProperty("token_type").GetString());
        Assert.True(doc.RootElement.GetProperty("expires_in").GetInt32() > 0);
        return client;
    }
}
