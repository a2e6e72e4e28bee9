namespace Herald.Core.Ports;

/// <summary>What one node reports about itself in each heartbeat.</summary>
public sealed record NodeReport
{
    /// <summary>The node's name in the farm (<c>Herald:NodeName</c>); one row per name.</summary>
    public required string Name { get; init; }

    /// <summary>This process's lease owner id (changes with every start), so leases can be matched to a node.</summary>
    public required string Instance { get; init; }

    public required string Region { get; init; }

    /// <summary>The Herald version the node runs.</summary>
    public required string Version { get; init; }

    public required DateTimeOffset StartedAt { get; init; }

    /// <summary>Accepted sends per second over the last minute.</summary>
    public double SendsPerSecond { get; init; }

    /// <summary>Open inbound HTTP connections (mail-system callbacks and API clients).</summary>
    public int Connections { get; init; }
}

/// <summary>
/// A node as the farm last heard from it. <paramref name="QueueClaimed"/> is counted by the store at the heartbeat:
/// the notifications leased to the node's <see cref="NodeReport.Instance"/> (being sent).
/// </summary>
public sealed record NodeRecord(NodeReport Report, DateTimeOffset HeartbeatAt, int QueueClaimed);

/// <summary>
/// A lease on one item of long-lived work (an EWS streaming group, a Graph subscription renewal, the
/// leadership). <see cref="Token"/> is the fencing token: it grows by one every time the item changes hands
/// (or is taken again after a release or an expiry), never goes back, and stays the same while the holder
/// renews. An action on the item is valid only while the store still shows this owner and this token.
/// </summary>
public sealed record WorkLease(string Key, string Owner, long Token, DateTimeOffset ExpiresAt);

/// <summary>
/// What makes several nodes on one database one farm: the node registry (heartbeats and load) and leases
/// with fencing tokens on items of work, the leadership among them. Times are the caller's clock
/// (<see cref="TimeProvider"/>); the nodes of a farm keep their clocks in step (NTP), well inside a lease's
/// safety margin.
/// </summary>
public interface IFarmStore
{
    /// <summary>Records a node's heartbeat (inserting the node the first time it reports) with its count of claimed notifications.</summary>
    Task RecordHeartbeatAsync(NodeReport node, DateTimeOffset now, CancellationToken cancellationToken);

    /// <summary>Every node that has reported, by name.</summary>
    Task<IReadOnlyList<NodeRecord>> ListNodesAsync(CancellationToken cancellationToken);

    /// <summary>Removes nodes silent since before <paramref name="silentBefore"/> from the registry. Returns how many.</summary>
    Task<int> ForgetNodesAsync(DateTimeOffset silentBefore, CancellationToken cancellationToken);

    /// <summary>
    /// Takes the lease on <paramref name="key"/> for <paramref name="owner"/> until <paramref name="now"/> +
    /// <paramref name="ttl"/> when it is free, expired or already the owner's (then it is extended, same token).
    /// Returns null when another owner holds it.
    /// </summary>
    Task<WorkLease?> TryAcquireLeaseAsync(string key, string owner, TimeSpan ttl, DateTimeOffset now, CancellationToken cancellationToken);

    /// <summary>
    /// Extends a lease that is still the holder's (same owner, same token, not expired) to <paramref name="now"/> +
    /// <paramref name="ttl"/>. Returns null when it was lost: the holder must stop acting on the item.
    /// </summary>
    Task<WorkLease?> RenewLeaseAsync(WorkLease lease, TimeSpan ttl, DateTimeOffset now, CancellationToken cancellationToken);

    /// <summary>Gives a lease up (the item is free at once; its token is kept). False when it was no longer held.</summary>
    Task<bool> ReleaseLeaseAsync(WorkLease lease, CancellationToken cancellationToken);

    /// <summary>True while the store shows <paramref name="lease"/>'s owner and token on its key, unexpired at <paramref name="now"/>.</summary>
    Task<bool> IsLeaseCurrentAsync(WorkLease lease, DateTimeOffset now, CancellationToken cancellationToken);

    /// <summary>The held (possibly expired) leases whose key starts with <paramref name="prefix"/>, by key.</summary>
    Task<IReadOnlyList<WorkLease>> ListLeasesAsync(string prefix, CancellationToken cancellationToken);

    /// <summary>
    /// Ends every lease (tokens are kept). Only for a single-node database at start-up, where every lease
    /// belongs to a process that is gone. Returns how many were held.
    /// </summary>
    Task<int> EndAllLeasesAsync(CancellationToken cancellationToken);
}
