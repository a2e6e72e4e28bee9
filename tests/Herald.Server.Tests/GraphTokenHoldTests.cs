using Herald.Simulators.Graph;
using Herald.Sources.Graph;
using Microsoft.Extensions.Time.Testing;
using Xunit;

namespace Herald.Server.Tests;

/// <summary>
/// A refused Graph token request is remembered for a while, so a connector with many mailboxes does not ask the
/// token endpoint once per subscription while its secret is wrong (against the fake Graph's real token endpoint).
/// </summary>
public sealed class GraphTokenHoldTests
{
    [Fact]
    public async Task RefusedToken_IsAnsweredFromMemoryUntilTheHoldEnds_ThenAskedAgain()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var graph = await FakeGraphServer.StartAsync(cancellationToken: ct);
        graph.RegisterApplication("herald-app", "the-right-secret");
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        using var http = new HttpClient();
        using var client = new GraphClient(
            new GraphEndpoint(graph.BaseUrl, graph.TokenUrl, "herald-app", "a-wrong-secret", "https://graph.microsoft.com/.default"), http, time);

        for (var i = 0; i < 5; i++)
        {
            var e = await Assert.ThrowsAsync<GraphException>(() => client.GetInboxUnreadCountAsync("dana@contoso.test", ct));
            Assert.True(e.FromTokenEndpoint);
            Assert.InRange(e.Status, 400, 499);
        }

        Assert.Equal(1, client.TokenRequests); // five calls, one request
        Assert.Equal(1, graph.TokenRequests);

        time.Advance(GraphClient.TokenRefusalHold);
        await Assert.ThrowsAsync<GraphException>(() => client.GetInboxUnreadCountAsync("dana@contoso.test", ct));
        Assert.Equal(2, graph.TokenRequests); // asked again once the hold is over
    }
}
