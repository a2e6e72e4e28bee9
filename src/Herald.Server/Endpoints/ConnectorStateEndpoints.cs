using System.Text.Json;
using System.Text.Json.Serialization;
using Herald.Core.Connectors;
using Herald.Core.Farm;
using Herald.Core.Pipeline;
using Herald.Core.Ports;
using Herald.Core.Security;
using Herald.Server.Auth;
using Herald.Server.Workers;
using Herald.Sources.Graph;

namespace Herald.Server.Endpoints;

/// <summary>
/// What a tenant's connectors are doing, for the console and troubleshooting (tenant-scoped like every /v1 route):
/// <c>GET /v1/connectors/{name}/streaming</c> (an EWS connector's streaming groups: members, subscriptions, connection,
/// anchor, heartbeats, and which node owns each group) and <c>GET /v1/connectors/{name}/subscriptions</c> (a Graph
/// connector's subscriptions and their expiry). Mailbox addresses are never shown, only fingerprints; both list the
/// connector's current failures as <c>/readyz</c> does.
/// </summary>
internal static class ConnectorStateEndpoints
{
    public static void Map(RouteGroupBuilder v1)
    {
        v1.MapGet("/connectors/{name}/streaming", StreamingAsync).WithTags("Connectors");
        v1.MapGet("/connectors/{name}/subscriptions", SubscriptionsAsync).WithTags("Connectors");
    }

    private static async Task<IResult> StreamingAsync(
        string name,
        HttpContext http,
        ConnectorService connectors,
        EwsStreamingWorker worker,
        WorkLeases leases,
        NodeIdentity node,
        ConnectorHealth health,
        CancellationToken cancellationToken)
    {
        var caller = CallerContext.Get(http);
        var connector = await connectors.GetAsync(caller.TenantId, name, cancellationToken);
        if (connector is null)
        {
            return Problems.NotFound($"No connector '{Validation.Printable(name)}' in this tenant.");
        }

        if (connector.Kind != ConnectorKind.Ews)
        {
            return Problems.BadRequest($"Connector '{connector.Name}' is a {ConnectorEndpoints.Name(connector.Kind)} connector; streaming groups are for ews connectors (Graph subscriptions are at /v1/connectors/{connector.Name}/subscriptions).");
        }

        // The groups this node streams, live; and every node's group leases from the store (who owns what in a farm).
        var groups = worker.GroupsOf(connector.TenantId, connector.Name).Select(g => new StreamingGroupDto(
            g.Id,
            g.Key,
            Redact.Token(g.AnchorMailbox),
            g.Members.Count,
            g.Subscribed,
            g.Connected,
            g.ConnectionsOpened,
            g.LastHeartbeatAt,
            g.LastEventAt,
            g.LastError,
            leases.Owner)).ToList();
        var prefix = EwsStreamingWorker.PrefixOf(connector.TenantId, connector.Name);
        var owners = (await leases.ListAsync(prefix, cancellationToken))
            .Select(l => new GroupLeaseDto(l.Key[prefix.Length..], l.Owner, l.ExpiresAt, l.Owner == leases.Owner))
            .OrderBy(l => l.Group, StringComparer.Ordinal)
            .ToList();
        return TypedResults.Json(
            new StreamingStateDto(connector.Name, node.NodeName, leases.Owner, groups, owners, Faults(health, connector)),
            ConnectorStateJsonContext.Default.StreamingStateDto);
    }

    private static async Task<IResult> SubscriptionsAsync(
        string name,
        HttpContext http,
        ConnectorService connectors,
        IGraphSubscriptionStore store,
        ConnectorHealth health,
        TimeProvider time,
        CancellationToken cancellationToken)
    {
        var caller = CallerContext.Get(http);
        var connector = await connectors.GetAsync(caller.TenantId, name, cancellationToken);
        if (connector is null)
        {
            return Problems.NotFound($"No connector '{Validation.Printable(name)}' in this tenant.");
        }

        if (connector.Kind != ConnectorKind.Graph)
        {
            return Problems.BadRequest($"Connector '{connector.Name}' is a {ConnectorEndpoints.Name(connector.Kind)} connector; subscriptions are for graph connectors (EWS streaming groups are at /v1/connectors/{connector.Name}/streaming).");
        }

        var now = time.GetUtcNow();
        var items = (await store.ListGraphSubscriptionsAsync(connector.TenantId, connector.Name, cancellationToken))
            .Select(s =>
            {
                var provisional = s.Id.StartsWith(GraphSubscriptionManager.ProvisionalPrefix, StringComparison.Ordinal);
                var renewAt = GraphSubscriptionManager.RenewAt(s);
                var state = provisional ? "creating"
                    : s.ExpiresAt <= now ? "expired"
                    : s.PendingAction == GraphSubscriptionAction.Recreate ? "removed"
                    : s.PendingAction == GraphSubscriptionAction.Reauthorize ? "reauthorize"
                    : now >= renewAt ? "renewal-due"
                    : "active";
                return new GraphSubscriptionDto(
                    provisional ? null : s.Id,
                    "mbx:" + Convert.ToHexStringLower(s.MailboxHash.AsSpan(0, Math.Min(4, s.MailboxHash.Length))),
                    state,
                    s.ExpiresAt,
                    Math.Round((s.ExpiresAt - now).TotalSeconds),
                    renewAt,
                    s.RenewedAt,
                    s.CreatedAt,
                    s.LeaseOwner);
            })
            .OrderBy(s => s.ExpiresAt)
            .ToList();
        return TypedResults.Json(
            new GraphSubscriptionsDto(connector.Name, items, Faults(health, connector)),
            ConnectorStateJsonContext.Default.GraphSubscriptionsDto);
    }

    private static List<ConnectorFaultDto> Faults(ConnectorHealth health, Connector connector)
        => [.. health.FaultsOf(connector.TenantId, connector.Name).Select(f => new ConnectorFaultDto(f.Operation, f.At, f.Status, f.Code, f.Count))];
}

/// <summary>One streaming group on this node.</summary>
/// <param name="Id">Its number within the connector on this node.</param>
/// <param name="Key">EWS URL and GroupingInformation.</param>
/// <param name="Anchor">The anchor mailbox's fingerprint (never the address).</param>
/// <param name="Members">Mailboxes in the group.</param>
/// <param name="Subscribed">Members with a live subscription.</param>
/// <param name="Connected">Whether a GetStreamingEvents response is open.</param>
/// <param name="ConnectionsOpened">Streams opened so far.</param>
/// <param name="LastHeartbeatAt">When the stream last delivered anything.</param>
/// <param name="LastEventAt">When it last delivered mailbox events.</param>
/// <param name="LastError">The last failure since a stream last opened.</param>
/// <param name="Owner">The node (lease owner) streaming it: this one.</param>
public sealed record StreamingGroupDto(int Id, string Key, string Anchor, int Members, int Subscribed, bool Connected, long ConnectionsOpened,
    DateTimeOffset? LastHeartbeatAt, DateTimeOffset? LastEventAt, string? LastError, string Owner);

/// <summary>A group's work lease: which node streams it (any node of the farm).</summary>
public sealed record GroupLeaseDto(string Group, string Owner, DateTimeOffset ExpiresAt, bool ThisNode);

/// <summary>A connector's current failure (as <c>/readyz</c> lists it).</summary>
public sealed record ConnectorFaultDto(string Operation, DateTimeOffset At, int Status, string? Code, long Count);

/// <summary>Answer of <c>GET /v1/connectors/{name}/streaming</c>.</summary>
public sealed record StreamingStateDto(string Connector, string Node, string LeaseOwner, IReadOnlyList<StreamingGroupDto> Groups, IReadOnlyList<GroupLeaseDto> Leases, IReadOnlyList<ConnectorFaultDto> Faults);

/// <summary>One Graph subscription.</summary>
public sealed record GraphSubscriptionDto(string? Id, string Mailbox, string State, DateTimeOffset ExpiresAt, double ExpiresInSeconds, DateTimeOffset RenewAt, DateTimeOffset RenewedAt, DateTimeOffset CreatedAt, string? LeaseOwner);

/// <summary>Answer of <c>GET /v1/connectors/{name}/subscriptions</c>.</summary>
public sealed record GraphSubscriptionsDto(string Connector, IReadOnlyList<GraphSubscriptionDto> Items, IReadOnlyList<ConnectorFaultDto> Faults);

[JsonSourceGenerationOptions(JsonSerializerDefaults.Web)]
[JsonSerializable(typeof(StreamingStateDto))]
[JsonSerializable(typeof(GraphSubscriptionsDto))]
internal sealed partial class ConnectorStateJsonContext : JsonSerializerContext;
