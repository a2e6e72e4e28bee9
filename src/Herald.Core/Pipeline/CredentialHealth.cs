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

    internal void Clear(Platform platform)
    {
        if (!_faults.IsEmpty)
        {
            _faults.TryRemove(platform, out _);
        }
    }
}
