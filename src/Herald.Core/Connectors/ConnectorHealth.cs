using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using Herald.Core.Metrics;

namespace Herald.Core.Connectors;

/// <summary>
/// What the mail-source workers last said about each connector: a failure (token endpoint refusing the client,
/// a subscription create or renewal refused, Graph unreachable) marks the connector degraded until the same operation
/// succeeds again. Readiness lists it and <c>/metrics</c> counts it, so an operator sees "Graph refuses our client
/// secret" instead of devices that quietly stop getting mail pushes.
/// </summary>
public sealed class ConnectorHealth
{
    private readonly ConcurrentDictionary<(string TenantId, string Connector, string Operation), Fault> _faults = new();
    private readonly ConcurrentDictionary<(string Kind, string Operation), long> _failures = new();

    /// <summary>
    /// A tracker; with <paramref name="metrics"/>, <c>/metrics</c> shows its counts (by kind and operation, never by tenant);
    /// with <paramref name="connectors"/>, a connector saved or deleted on this node starts with a clean slate (its next
    /// reconcile, which the change triggers, gives the new verdict).
    /// </summary>
    public ConnectorHealth(HeraldMetrics? metrics = null, ConnectorService? connectors = null)
    {
        if (connectors is not null)
        {
            connectors.Changed += c => Forget(c.TenantId, c.Name);
        }

        if (metrics is null)
        {
            return;
        }

        metrics.Meter.CreateObservableCounter(
            "herald_connector_failures",
            () => _failures.Select(p => new Measurement<long>(p.Value, new("kind", p.Key.Kind), new("operation", p.Key.Operation))),
            "{failure}",
            "Mail-source connector operations that failed (token, create, renew, config, reconcile), by connector kind and operation.");
        metrics.Meter.CreateObservableGauge(
            "herald_connectors_degraded",
            () => _faults.Values.GroupBy(f => f.Kind).Select(g => new Measurement<long>(g.Select(f => (f.TenantId, f.Connector)).Distinct().LongCount(), new KeyValuePair<string, object?>("kind", g.Key))),
            "{connector}",
            "Connectors with a current failure (listed by /readyz), by kind.");
    }

    /// <summary>A failure as last reported.</summary>
    /// <param name="TenantId">The connector's tenant.</param>
    /// <param name="Connector">The connector's name.</param>
    /// <param name="Kind">The connector kind (<c>graph</c>, <c>ews</c>).</param>
    /// <param name="Operation">What failed: <c>token</c>, <c>create</c>, <c>renew</c>, <c>config</c>, <c>stream</c>.</param>
    /// <param name="At">When it was last seen.</param>
    /// <param name="Status">The HTTP status (0: unreachable or not HTTP).</param>
    /// <param name="Code">The service's error code, if any (never a message that could hold an address).</param>
    /// <param name="Count">Failures in a row since the last success.</param>
    public sealed record Fault(string TenantId, string Connector, string Kind, string Operation, DateTimeOffset At, int Status, string? Code, long Count);

    /// <summary>The current faults, by tenant, connector and operation.</summary>
    public IReadOnlyList<Fault> Faults()
        => [.. _faults.Values.OrderBy(f => f.TenantId, StringComparer.Ordinal).ThenBy(f => f.Connector, StringComparer.Ordinal).ThenBy(f => f.Operation, StringComparer.Ordinal)];

    /// <summary>The faults of one connector.</summary>
    public IReadOnlyList<Fault> FaultsOf(string tenantId, string connector)
        => [.. Faults().Where(f => f.TenantId == tenantId && f.Connector == connector)];

    /// <summary>Failures reported since the start, by kind and operation (for <c>/metrics</c>).</summary>
    public IReadOnlyDictionary<(string Kind, string Operation), long> FailureCounts() => _failures.ToDictionary(p => p.Key, p => p.Value);

    /// <summary>An operation on a connector failed.</summary>
    public void ReportFailure(string tenantId, string connector, string kind, string operation, DateTimeOffset at, int status, string? code)
    {
        ArgumentNullException.ThrowIfNull(tenantId);
        ArgumentNullException.ThrowIfNull(connector);
        _faults.AddOrUpdate(
            (tenantId, connector, operation),
            static (k, f) => f,
            static (_, old, f) => f with { Count = old.Count + 1 },
            new Fault(tenantId, connector, kind, operation, at, status, code, 1));
        _failures.AddOrUpdate((kind, operation), 1, static (_, n) => n + 1);
    }

    /// <summary>An operation on a connector succeeded: its fault (if any) is over.</summary>
    public void ReportSuccess(string tenantId, string connector, string operation)
    {
        if (!_faults.IsEmpty)
        {
            _faults.TryRemove((tenantId, connector, operation), out _);
        }
    }

    /// <summary>The connector was deleted or replaced: forget what was said about it.</summary>
    public void Forget(string tenantId, string connector)
    {
        foreach (var key in _faults.Keys)
        {
            if (key.TenantId == tenantId && key.Connector == connector)
            {
                _faults.TryRemove(key, out _);
            }
        }
    }
}
