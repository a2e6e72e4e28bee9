using System.Collections.Concurrent;
using Herald.Core.Registrations;

namespace Herald.Core.Pipeline;

/// <summary>
/// What the providers last said about each platform's credential: a credential fault (revoked key,
/// bad certificate, auth error) marks it degraded until a send on that platform succeeds again.
/// Readiness shows it, so an operator sees "APNs rejects our key" instead of a quietly growing retry queue.
/// </summary>
public sealed class CredentialHealth
{
    private readonly ConcurrentDictionary<Platform, Fault> _faults = new();

    /// <summary>A credential fault as last reported.</summary>
    public sealed record Fault(DateTimeOffset At, int Status, string? Reason);

    /// <summary>The current fault of a platform's credential, or null when it is healthy.</summary>
    public Fault? FaultOf(Platform platform) => _faults.TryGetValue(platform, out var f) ? f : null;

    internal void Report(Platform platform, DateTimeOffset at, int status, string? reason) => _faults[platform] = new Fault(at, status, reason);

    // Called after every successful send: lock-free reads first. (ConcurrentDictionary.IsEmpty takes every lock of the
    // dictionary when it is empty, the usual case here, which showed as lock contention in dispatch profiles.)
    internal void Clear(Platform platform)
    {
        if (_faults.TryGetValue(platform, out _))
        {
            _faults.TryRemove(platform, out _);
        }
    }

    // Per credential (tenant and credential name): faults and certificate expiry, reported by the providers.
    private readonly ConcurrentDictionary<(Platform Platform, string TenantId, string Credential), CredentialState> _credentials = new();

    /// <summary>What is known about one credential: its current fault (null when healthy) and, for certificates, its expiry.</summary>
    public sealed record CredentialState(Platform Platform, string TenantId, string Credential, Fault? Fault, DateTimeOffset? ExpiresAt);

    /// <summary>The credentials with a fault or a known expiry, for readiness.</summary>
    public IReadOnlyList<CredentialState> Credentials() => [.. _credentials.Values];

    /// <summary>A provider rejected this credential: its circuit is open.</summary>
    public void ReportCredentialFault(Platform platform, string tenantId, string credential, DateTimeOffset at, int status, string? reason)
        => _credentials.AddOrUpdate(
            (platform, tenantId, credential),
            static (k, f) => new CredentialState(k.Platform, k.TenantId, k.Credential, f, null),
            static (_, old, f) => old with { Fault = f },
            new Fault(at, status, reason));

    /// <summary>A send with this credential succeeded: its fault is over.</summary>
    public void ClearCredentialFault(Platform platform, string tenantId, string credential)
    {
        if (!_credentials.TryGetValue((platform, tenantId, credential), out var state) || state.Fault is null)
        {
            return;
        }

        if (state.ExpiresAt is null)
        {
            _credentials.TryRemove((platform, tenantId, credential), out _);
        }
        else
        {
            _credentials[(platform, tenantId, credential)] = state with { Fault = null };
        }
    }

    /// <summary>Records when a certificate credential expires (readiness warns within 30 days).</summary>
    public void ReportExpiry(Platform platform, string tenantId, string credential, DateTimeOffset expiresAt)
        => _credentials.AddOrUpdate(
            (platform, tenantId, credential),
            static (k, e) => new CredentialState(k.Platform, k.TenantId, k.Credential, null, e),
            static (_, old, e) => old with { ExpiresAt = e },
            expiresAt);

    /// <summary>A tenant's credential was replaced or removed: forget what was said about the old one (and the platform's last fault).</summary>
    public void Forget(Platform platform, string tenantId)
    {
        foreach (var key in _credentials.Keys)
        {
            if (key.Platform == platform && key.TenantId == tenantId)
            {
                _credentials.TryRemove(key, out _);
            }
        }

        _faults.TryRemove(platform, out _);
    }
}
