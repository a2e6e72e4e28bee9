using System.Text.Json;
using System.Text.Json.Serialization;
using Herald.Core.Farm;
using Herald.Core.Pipeline;
using Herald.Core.Ports;
using Herald.Server.Auth;
using Herald.Server.Hosting;
using Herald.Server.Json;
using Herald.Storage;
using Microsoft.Extensions.Options;

namespace Herald.Server.Endpoints;

/// <summary>The farm's node view: <c>GET /v1/admin/nodes</c> (admin key).</summary>
internal static class NodeEndpoints
{
    public static void Map(RouteGroupBuilder v1)
    {
        v1.MapGet("/admin/nodes", NodesAsync).WithTags("Administration");
    }

    /// <summary>The readiness check of the farm: this node's place in it, and a farm node without a public URL.</summary>
    internal static ReadyCheck FarmCheck(IHeraldStore store, HeraldOptions options, NodeIdentity node, LeaderElection election)
    {
        var role = election.Current is { } term ? $"leader (term {term.Term})" : "follower";
        if (!store.IsSingleNode && string.IsNullOrWhiteSpace(options.PublicBaseUrl))
        {
            return new ReadyCheck("farm", "warn", $"node {node.NodeName} in region {options.Region}, {role}; Herald:PublicBaseUrl is not set, so callback URLs name this node instead of the region's address and stop working when it is down");
        }

        return new ReadyCheck("farm", "pass", $"node {node.NodeName} in region {options.Region}, {role}");
    }

    private static async Task<IResult> NodesAsync(
        HttpContext http,
        IFarmStore farm,
        IOptions<HeraldOptions> herald,
        IOptionsMonitor<FarmOptions> options,
        NodeIdentity node,
        TimeProvider time,
        CancellationToken cancellationToken)
    {
        if (!CallerContext.Get(http).IsAdmin)
        {
            return Problems.Forbidden("The node view needs the admin key.");
        }

        var nodes = await farm.ListNodesAsync(cancellationToken);
        var leader = (await farm.ListLeasesAsync(LeaderElection.LeaseKey, cancellationToken)).FirstOrDefault(l => l.Key == LeaderElection.LeaseKey);
        var now = time.GetUtcNow();
        var view = NodeView.Build(nodes, leader, now, options.CurrentValue.DownAfter);
        var body = new NodesResponse
        {
            Region = herald.Value.Region,
            Node = node.NodeName,
            Leader = view.FirstOrDefault(n => n.IsLeader)?.Node.Report.Name,
            Term = leader?.Token,
            Nodes = [.. view.Select(n => new NodeDto
            {
                Name = n.Node.Report.Name,
                Region = n.Node.Report.Region,
                Status = n.IsUp ? "up" : "down",
                Leader = n.IsLeader,
                Instance = n.Node.Report.Instance,
                Version = n.Node.Report.Version,
                StartedAt = n.Node.Report.StartedAt,
                LastHeartbeatAt = n.Node.HeartbeatAt,
                HeartbeatAgeSeconds = Math.Round(n.HeartbeatAge.TotalSeconds, 1),
                Load = new NodeLoadDto(n.Node.Report.SendsPerSecond, n.Node.QueueClaimed, n.Node.Report.Connections),
            })],
        };
        return TypedResults.Json(body, NodeJsonContext.Default.NodesResponse);
    }
}

/// <summary>The answer of <c>GET /v1/admin/nodes</c>.</summary>
public sealed record NodesResponse
{
    /// <summary>The region of the node that answered (a farm serves one region).</summary>
    public required string Region { get; init; }

    /// <summary>The node that answered.</summary>
    public required string Node { get; init; }

    /// <summary>The leader's name, or null while nobody leads (an election is at most one lease length away).</summary>
    public string? Leader { get; init; }

    /// <summary>The current (or last) leadership term.</summary>
    public long? Term { get; init; }

    public required IReadOnlyList<NodeDto> Nodes { get; init; }
}

/// <summary>One node: <c>status</c> is <c>down</c> when it has been silent for longer than <c>Herald:Farm:DownAfter</c> (30 s).</summary>
public sealed record NodeDto
{
    public required string Name { get; init; }

    public required string Region { get; init; }

    public required string Status { get; init; }

    public required bool Leader { get; init; }

    public required string Instance { get; init; }

    public required string Version { get; init; }

    public required DateTimeOffset StartedAt { get; init; }

    public required DateTimeOffset LastHeartbeatAt { get; init; }

    public required double HeartbeatAgeSeconds { get; init; }

    public required NodeLoadDto Load { get; init; }
}

/// <summary>A node's load at its last heartbeat.</summary>
public sealed record NodeLoadDto(double SendsPerSecond, int QueueClaimed, int Connections);

[JsonSourceGenerationOptions(JsonSerializerDefaults.Web, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(NodesResponse))]
internal sealed partial class NodeJsonContext : JsonSerializerContext;
