using System.Text;
using Herald.Sources.Graph;
using Xunit;

namespace Herald.Sources.Tests;

/// <summary>Graph change and lifecycle notification bodies, as documented by Microsoft.</summary>
public sealed class GraphNotificationParserTests
{
    private const string Change = """
        {"value":[{"subscriptionId":"7f105c7d-2dc5-4530-97cd-4e7ae6534c07","subscriptionExpirationDateTime":"2026-11-26T18:23:45.9356913Z",
        "changeType":"created","resource":"Users/631b3d02-1a1d-4d3c-a1d5-2f1e13bb1d35/Messages/AAMkADMxNj=","resourceData":{"@odata.type":"#Microsoft.Graph.Message",
        "@odata.id":"Users/631b3d02/Messages/AAMkADMxNj=","@odata.etag":"W/\"CQAAABYAAAD\"","id":"AAMkADMxNj="},"clientState":"secretClientValue",
        "tenantId":"84bd8158-6d4d-4958-8b9f-9d6445542f95"}]}
        """;

    private const string Lifecycle = """
        {"value":[{"subscriptionId":"7f105c7d","subscriptionExpirationDateTime":"2026-11-26T18:23:45Z","tenantId":"84bd8158",
        "clientState":"secretClientValue","lifecycleEvent":"reauthorizationRequired"}]}
        """;

    private static IReadOnlyList<GraphNotificationItem> Parse(string json)
    {
        Assert.True(GraphNotificationParser.TryParse(Encoding.UTF8.GetBytes(json), out var items, out var error), error);
        return items!;
    }

    private static string Reject(string json)
    {
        Assert.False(GraphNotificationParser.TryParse(Encoding.UTF8.GetBytes(json), out var items, out var error));
        Assert.Null(items);
        return error!;
    }

    [Fact]
    public void ChangeNotification_ParsesTheFieldsHeraldUses()
    {
        var item = Assert.Single(Parse(Change));
        Assert.Equal("7f105c7d-2dc5-4530-97cd-4e7ae6534c07", item.SubscriptionId);
        Assert.Equal("created", item.ChangeType);
        Assert.Equal("secretClientValue", item.ClientState);
        Assert.Equal("AAMkADMxNj=", item.ResourceId);
        Assert.StartsWith("Users/", item.Resource, StringComparison.Ordinal);
        Assert.Null(item.LifecycleEvent);
    }

    [Fact]
    public void LifecycleNotification_ParsesTheEvent()
    {
        var item = Assert.Single(Parse(Lifecycle));
        Assert.Equal("reauthorizationRequired", item.LifecycleEvent);
        Assert.Null(item.ChangeType);
    }

    [Fact]
    public void EmptyValue_IsValid() => Assert.Empty(Parse("""{"value":[]}"""));

    [Theory]
    [InlineData("", "not valid JSON")]
    [InlineData("{", "not valid JSON")]
    [InlineData("{\"value\":{}}", "'value' array")]
    [InlineData("{\"value\":[1]}", "must be an object")]
    [InlineData("{\"value\":[{}]}", "subscriptionId is required")]
    [InlineData("{\"value\":[{\"subscriptionId\":\"s\",\"clientState\":7}]}", "clientState must be a string")]
    [InlineData("{\"value\":[{\"subscriptionId\":\"s\",\"x\":[[[[[[[[1]]]]]]]]}]}", "not valid JSON")]
    public void Malformed_IsRejectedWithAReason(string json, string expected)
        => Assert.Contains(expected, Reject(json), StringComparison.Ordinal);

    [Fact]
    public void TooManyItems_AreRejected()
    {
        var json = "{\"value\":[" + string.Join(',', Enumerable.Repeat("{\"subscriptionId\":\"s\"}", GraphNotificationParser.MaxItems + 1)) + "]}";
        Assert.Contains("more than", Reject(json), StringComparison.Ordinal);
    }

    [Fact]
    public void Oversized_IsRejected()
        => Assert.Contains("larger than", Reject("{\"value\":[{\"subscriptionId\":\"" + new string('s', GraphNotificationParser.MaxBodyBytes) + "\"}]}"), StringComparison.Ordinal);
}
