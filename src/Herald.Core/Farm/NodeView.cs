using Herald.Core.Ports;

namespace Herald.Core.Farm;

/// <summary>One node in the node view: its last report, how long ago it came, and whether it leads.</summary>
public sealed record NodeStatus(NodeRecord Node, TimeSpan HeartbeatAge, bool IsUp, bool IsLeader);

/// <summary>Builds the farm's node view from the registry and the leader lease.</summary>
public static class NodeView
{
    /// <summary>
    /// The nodes by name: a node is up when its last heartbeat is at most <paramref name="downAfter"/> old, and the
    /// leader when it is up and its instance holds an unexpired leader lease.
    /// </summary>
    public static IReadOnlyList<NodeStatus> Build(IReadOnlyList<NodeRecord> nodes, WorkLease? leader, DateTimeOffset now, TimeSpan downAfter)
    {
        ArgumentNullException.ThrowIfNull(nodes);
        var view = new List<NodeStatus>(nodes.Count);
        foreach (var node in nodes.OrderBy(n => n.Report.Name, StringComparer.Ordinal))
        {
            var age = now - node.HeartbeatAt;
            if (age < TimeSpan.Zero)
            {
                age = TimeSpan.Zero; // another node's clock is a little ahead
            }

            var up = age <= downAfter;
            var leads = up && leader is not null && leader.ExpiresAt > now
                && string.Equals(leader.Owner, node.Report.Instance, StringComparison.Ordinal);
            view.Add(new NodeStatus(node, age, up, leads));
        }

        return view;
    }
}
