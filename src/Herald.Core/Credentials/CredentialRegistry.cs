using System.Security.Cryptography;
using Herald.Core.Ports;
using Herald.Core.Registrations;
using Herald.Core.Security;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Herald.Core.Credentials;

/// <summary>
/// The tenants' provider credentials, opened and kept in memory for the providers to consult on every send
/// (<see cref="Find"/> is a dictionary lookup). Reloaded from the store when its change stamp moves (checked at
/// most every <see cref="RefreshInterval"/>, in the background), and at once on this node when the API puts or
/// deletes one (<see cref="Apply"/>, <see cref="Remove"/>). Providers fall back to their configuration when a
/// tenant has none.
/// </summary>
public sealed partial class CredentialRegistry
{
    /// <summary>How often the store's change stamp is checked (other nodes' changes arrive within this).</summary>
    public static readonly TimeSpan RefreshInterval = TimeSpan.FromSeconds(10);

    private readonly ICredentialStore? _store;
    private readonly SecretBox? _box;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly Lock _gate = new();
    private Dictionary<(string TenantId, Platform Platform), TenantCredential> _snapshot = [];
    private long _stamp = -1;
    private long _checkedAt;
    private int _refreshing;

    /// <summary>A registry over a store; without one (tools, tests) it holds only what is <see cref="Apply"/>'d.</summary>
    public CredentialRegistry(ICredentialStore? store, SecretBox? box, TimeProvider time, ILogger<CredentialRegistry>? logger = null)
    {
        ArgumentNullException.ThrowIfNull(time);
        _store = store;
        _box = box;
        _time = time;
        _logger = (ILogger?)logger ?? NullLogger.Instance;
        _checkedAt = time.GetTimestamp();
    }

    /// <summary>Raised after a tenant's credential for a platform changed (put, replaced or deleted) on this node's view.</summary>
    public event Action<string, Platform>? Changed;

    /// <summary>The tenant's current credential for the platform, or null (the provider then uses its configuration).</summary>
    public TenantCredential? Find(string tenantId, Platform platform)
    {
        if (_store is not null && _time.GetElapsedTime(Volatile.Read(ref _checkedAt)) >= RefreshInterval && Interlocked.CompareExchange(ref _refreshing, 1, 0) == 0)
        {
            Volatile.Write(ref _checkedAt, _time.GetTimestamp());
            _ = Task.Run(async () =>
            {
                try
                {
                    await RefreshAsync(CancellationToken.None).ConfigureAwait(false);
                }
                catch (Exception ex)
                {
                    Log.RefreshFailed(_logger, ex);
                }
                finally
                {
                    Volatile.Write(ref _refreshing, 0);
                }
            });
        }

        return Volatile.Read(ref _snapshot).TryGetValue((tenantId, platform), out var credential) ? credential : null;
    }

    /// <summary>All credentials currently in memory.</summary>
    public IReadOnlyCollection<TenantCredential> All => Volatile.Read(ref _snapshot).Values;

    /// <summary>Reloads every credential when the store's change stamp moved; raises <see cref="Changed"/> for each difference.</summary>
    public async Task RefreshAsync(CancellationToken cancellationToken)
    {
        if (_store is null || _box is null)
        {
            return;
        }

        var stamp = await _store.CredentialsStampAsync(cancellationToken).ConfigureAwait(false);
        if (stamp == Interlocked.Read(ref _stamp))
        {
            return;
        }

        var stored = await _store.ListCredentialsAsync(null, cancellationToken).ConfigureAwait(false);
        var next = new Dictionary<(string, Platform), TenantCredential>(stored.Count);
        foreach (var s in stored)
        {
            var current = Volatile.Read(ref _snapshot).TryGetValue((s.TenantId, s.Platform), out var c) ? c : null;
            if (current is not null && current.Version == s.Version)
            {
                next[(s.TenantId, s.Platform)] = current;
                continue;
            }

            try
            {
                next[(s.TenantId, s.Platform)] = new TenantCredential(s, _box.Open(s.SealedSecret, StoredCredential.Purpose(s.Platform)));
            }
            catch (CryptographicException ex)
            {
                Log.CannotOpen(_logger, s.TenantId, s.Platform, ex.Message);
            }
        }

        List<(string, Platform)> changed;
        lock (_gate)
        {
            var previous = _snapshot;
            changed = [.. previous.Keys.Where(k => !next.TryGetValue(k, out var n) || n.Version != previous[k].Version)];
            changed.AddRange(next.Keys.Where(k => !previous.ContainsKey(k)));
            Volatile.Write(ref _snapshot, next);
            Interlocked.Exchange(ref _stamp, stamp);
        }

        foreach (var (tenant, platform) in changed)
        {
            Changed?.Invoke(tenant, platform);
        }
    }

    /// <summary>Makes a credential the tenant's current one on this node at once (after the API stored it).</summary>
    public void Apply(TenantCredential credential)
    {
        ArgumentNullException.ThrowIfNull(credential);
        lock (_gate)
        {
            var next = new Dictionary<(string, Platform), TenantCredential>(_snapshot);
            if (next.TryGetValue((credential.TenantId, credential.Platform), out var existing) && existing.Version > credential.Version)
            {
                return; // a newer one arrived first
            }

            next[(credential.TenantId, credential.Platform)] = credential;
            Volatile.Write(ref _snapshot, next);
        }

        Changed?.Invoke(credential.TenantId, credential.Platform);
    }

    /// <summary>Forgets a tenant's credential on this node at once (after the API deleted it).</summary>
    public void Remove(string tenantId, Platform platform)
    {
        lock (_gate)
        {
            if (!_snapshot.ContainsKey((tenantId, platform)))
            {
                return;
            }

            var next = new Dictionary<(string, Platform), TenantCredential>(_snapshot);
            next.Remove((tenantId, platform));
            Volatile.Write(ref _snapshot, next);
        }

        Changed?.Invoke(tenantId, platform);
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 2301, Level = LogLevel.Warning, Message = "Reloading provider credentials failed; the ones in memory stay in use")]
        public static partial void RefreshFailed(ILogger logger, Exception exception);

        [LoggerMessage(EventId = 2302, Level = LogLevel.Error, Message = "The {Platform} credential of tenant {TenantId} cannot be opened ({Error}): is the secret key ring the one it was sealed with?")]
        public static partial void CannotOpen(ILogger logger, string tenantId, Platform platform, string error);
    }
}
