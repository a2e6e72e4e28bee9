using Herald.Core.Ports;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Herald.Core.Farm;

/// <summary>
/// Spreads a set of work items (EWS streaming groups, Graph renewal shares) over the live nodes of a farm through
/// <see cref="WorkLeases"/>: each node calls <see cref="BalanceAsync"/> with the same keys on every pass, and ends up
/// holding about its fair share, ⌈items ÷ live nodes⌉. A node under its share takes free items (never held, released,
/// or expired because their holder died); a node over it, while another live node is under, releases the surplus so
/// that node takes it on its next pass. A node counts as live when its heartbeat is recent or it holds an unexpired
/// lease of the set, and as dead once one of its leases of the set has expired (a live holder renews every few
/// seconds), so a dead node's items are taken over as soon as its leases run out, not when its heartbeat is judged
/// stale. On a single node every item is this node's.
/// </summary>
public sealed partial class WorkShares(WorkLeases leases, IFarmStore store, TimeProvider time, IOptionsMonitor<FarmOptions> options, ILogger<WorkShares> logger)
{
    // Instances seen with an expired lease, and when: they stay dead (even after their leases were taken over and their
    // heartbeat is not yet stale) until they heartbeat again after that moment.
    private readonly Dictionary<string, DateTimeOffset> _dead = new(StringComparer.Ordinal);
    private readonly Lock _gate = new();

    /// <summary>
    /// Takes or gives up leases among <paramref name="keys"/> (all of them starting with <paramref name="prefix"/>;
    /// leases under the prefix that are not in <paramref name="keys"/> any more are released) and returns the handles
    /// of the items this node holds now. Store failures propagate: the caller keeps acting on the handles it has until
    /// they are lost, and tries again on its next pass.
    /// </summary>
    public async Task<IReadOnlyDictionary<string, LeaseHandle>> BalanceAsync(string prefix, IReadOnlyCollection<string> keys, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrEmpty(prefix);
        ArgumentNullException.ThrowIfNull(keys);
        var me = leases.Owner;
        var wanted = new HashSet<string>(keys, StringComparer.Ordinal);
        foreach (var key in wanted)
        {
            if (!key.StartsWith(prefix, StringComparison.Ordinal))
            {
                throw new ArgumentException($"Every key must start with {prefix}.", nameof(keys));
            }
        }

        // Items that went away: give their leases up.
        foreach (var key in leases.HeldKeys.Where(k => k.StartsWith(prefix, StringComparison.Ordinal) && !wanted.Contains(k)))
        {
            await leases.ReleaseAsync(key, cancellationToken).ConfigureAwait(false);
        }

        if (wanted.Count == 0)
        {
            return new Dictionary<string, LeaseHandle>(StringComparer.Ordinal);
        }

        var now = time.GetUtcNow();
        var o = options.CurrentValue;
        var current = (await leases.ListAsync(prefix, cancellationToken).ConfigureAwait(false))
            .Where(l => wanted.Contains(l.Key))
            .ToDictionary(l => l.Key, StringComparer.Ordinal);
        var nodes = await store.ListNodesAsync(cancellationToken).ConfigureAwait(false);

        // Who is alive, and how many items each holds.
        var load = new Dictionary<string, int>(StringComparer.Ordinal) { [me] = 0 };
        var dead = new HashSet<string>(StringComparer.Ordinal);
        foreach (var lease in current.Values)
        {
            if (lease.ExpiresAt > now)
            {
                load[lease.Owner] = load.GetValueOrDefault(lease.Owner) + 1;
            }
            else if (lease.Owner != me)
            {
                dead.Add(lease.Owner);
            }
        }

        lock (_gate)
        {
            foreach (var owner in dead)
            {
                _dead.TryAdd(owner, now);
            }

            foreach (var node in nodes)
            {
                var instance = node.Report.Instance;
                if (_dead.TryGetValue(instance, out var judged))
                {
                    if (node.HeartbeatAt <= judged)
                    {
                        dead.Add(instance); // no sign of life since its lease ran out
                        continue;
                    }

                    _dead.Remove(instance); // back (its session had dropped): it counts again
                }

                if (now - node.HeartbeatAt <= o.DownAfter)
                {
                    load.TryAdd(instance, 0);
                }
            }

            foreach (var stale in _dead.Where(d => now - d.Value > o.ForgetAfter).Select(d => d.Key).ToList())
            {
                _dead.Remove(stale);
            }
        }

        foreach (var owner in dead)
        {
            if (load.TryGetValue(owner, out var count) && count == 0)
            {
                load.Remove(owner); // every lease of it expired: it stopped renewing
            }
        }

        var mine = wanted.Where(k => leases.Get(k) is not null).ToHashSet(StringComparer.Ordinal);
        load[me] = mine.Count;
        var fair = (wanted.Count + load.Count - 1) / load.Count;

        if (mine.Count > fair && load.Any(p => p.Key != me && p.Value < fair))
        {
            // Hand the surplus to the nodes under their share (they take it on their next pass).
            foreach (var key in mine.OrderBy(k => Rank(k, me), StringComparer.Ordinal).Take(mine.Count - fair).ToList())
            {
                await leases.ReleaseAsync(key, cancellationToken).ConfigureAwait(false);
                mine.Remove(key);
                Log.Handed(logger, key);
            }
        }
        else
        {
            // Free items: never held, released, expired (their holder died), or this node's own lease whose handle
            // lapsed (the store was out of reach) and is not yet taken by another. Under the share, take up to the
            // share; at the share, the least loaded holders still take what nobody else will (a stale heartbeat of a
            // dead node must not leave an item orphaned).
            var free = wanted
                .Where(k => !mine.Contains(k) && (!current.TryGetValue(k, out var l) || l.ExpiresAt <= now || l.Owner == me))
                .OrderBy(k => Rank(k, me), StringComparer.Ordinal)
                .ToList();
            var holders = load.Where(p => p.Value > 0 || p.Key == me).Select(p => p.Value);
            var budget = mine.Count < fair ? fair - mine.Count : (free.Count > 0 && mine.Count <= holders.Min() ? 1 : 0);
            foreach (var key in free)
            {
                if (budget <= 0)
                {
                    break;
                }

                if (await leases.TryAcquireAsync(key, cancellationToken).ConfigureAwait(false) is { IsValid: true })
                {
                    mine.Add(key);
                    budget--;
                    if (current.TryGetValue(key, out var previous) && previous.Owner != me)
                    {
                        Log.TookOver(logger, key, previous.Owner);
                    }
                }
            }
        }

        var held = new Dictionary<string, LeaseHandle>(StringComparer.Ordinal);
        foreach (var key in mine)
        {
            if (leases.Get(key) is { } handle)
            {
                held[key] = handle;
            }
        }

        return held;
    }

    /// <summary>A per-node order of the items, so nodes claiming at the same moment mostly reach for different ones.</summary>
    private static string Rank(string key, string owner)
        => Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(owner + "\n" + key)), 0, 8);

    private static partial class Log
    {
        [LoggerMessage(EventId = 7301, Level = LogLevel.Information, Message = "Handed {Key} to a less loaded node")]
        public static partial void Handed(ILogger logger, string key);

        [LoggerMessage(EventId = 7302, Level = LogLevel.Information, Message = "Took over {Key} from {Previous}, whose lease expired")]
        public static partial void TookOver(ILogger logger, string key, string previous);
    }
}
