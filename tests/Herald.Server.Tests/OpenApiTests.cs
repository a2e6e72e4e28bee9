using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.AspNetCore.Routing;
using Xunit;

namespace Herald.Server.Tests;

/// <summary><c>/openapi/v1.json</c> describes every endpoint the gateway maps.</summary>
public sealed partial class OpenApiTests
{
    /// <summary>Routes that are deliberately not API operations: the console's files and the document itself.</summary>
    private static readonly HashSet<string> NotOperations = new(StringComparer.Ordinal) { "/", "/admin/{**path}", "/openapi/{documentName}.json" };

    [GeneratedRegex(@"\{(\*\*)?([^}:=?]+)[^}]*\}")]
    private static partial Regex Parameter();

    private static string Normalize(string route)
    {
        var path = Parameter().Replace(route, m => "{" + m.Groups[2].Value + "}");
        return path.Length > 1 ? path.TrimEnd('/') : path;
    }

    [Fact]
    public async Task OpenApi_DescribesEveryMappedRoute()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var gw = await GatewayHarness.StartAsync(cancellationToken: ct);
        using var doc = JsonDocument.Parse(await gw.Client.GetStringAsync("openapi/v1.json", ct));
        var described = new HashSet<string>(StringComparer.Ordinal);
        foreach (var path in doc.RootElement.GetProperty("paths").EnumerateObject())
        {
            foreach (var operation in path.Value.EnumerateObject())
            {
                described.Add(operation.Name.ToUpperInvariant() + " " + Normalize(path.Name));
            }
        }

        var endpoints = ((IEndpointRouteBuilder)gw.App).DataSources.SelectMany(d => d.Endpoints).OfType<RouteEndpoint>().ToList();
        Assert.NotEmpty(endpoints);
        var missing = new List<string>();
        var checkedRoutes = 0;
        foreach (var endpoint in endpoints)
        {
            var route = endpoint.RoutePattern.RawText ?? string.Empty;
            if (!route.StartsWith('/'))
            {
                route = "/" + route;
            }

            if (endpoint.Metadata.GetMetadata<IExcludeFromDescriptionMetadata>() is { ExcludeFromDescription: true })
            {
                Assert.Contains(route, NotOperations); // only the console and the document itself may hide
                continue;
            }

            foreach (var method in endpoint.Metadata.GetMetadata<IHttpMethodMetadata>()?.HttpMethods ?? ["GET"])
            {
                checkedRoutes++;
                var key = method + " " + Normalize(route);
                if (!described.Contains(key))
                {
                    missing.Add(key);
                }
            }
        }

        Assert.True(missing.Count == 0, "not in /openapi/v1.json: " + string.Join(", ", missing) + "; described: " + string.Join(", ", described.Order(StringComparer.Ordinal)));
        Assert.True(checkedRoutes >= 15, $"only {checkedRoutes} routes checked");
        Assert.Contains("GET /metrics", described);
        Assert.Contains("GET /v1/admin/stats", described);
        Assert.Contains("POST /ews/notify/{key}", described);
    }
}
