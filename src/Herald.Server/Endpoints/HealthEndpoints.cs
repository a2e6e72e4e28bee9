using Herald.Core.Notifications;
using Herald.Core.Pipeline;
using Herald.Core.Registrations;
using Herald.Core.Ports;
using Herald.Server.Auth;
using Herald.Server.Hosting;
using Herald.Server.Json;
using Herald.Providers.Apns;
using Microsoft.Extensions.Options;

namespace Herald.Server.Endpoints;

/// <summary>Liveness, readiness and queue introspection.</summary>
internal static class HealthEndpoints
{
    public static void Map(IEndpointRouteBuilder app, RouteGroupBuilder v1)
    {
        app.MapGet("/healthz", () => TypedResults.Text("ok\n")).WithTags("Health");
        app.MapGet("/readyz", ReadyAsync).WithTags("Health");
        v1.MapGet("/admin/queue", QueueAsync).WithTags("Administration");
    }

    private static async Task<IResult> ReadyAsync(IStoreAdmin store, IOptions<HeraldOptions> options, NodeIdentity node, ProviderHealth providers, Storage.IHeraldStore farm, Core.Farm.LeaderElection election, CancellationToken cancellationToken)
    {
        var checks = new List<ReadyCheck>();
        bool storeOk;
        try
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeout.CancelAfter(TimeSpan.FromSeconds(2));
            storeOk = await store.PingAsync(timeout.Token);
        }
        catch (Exception ex) when (ex is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            storeOk = false;
        }

        checks.Add(new ReadyCheck("database", storeOk ? "pass" : "fail", storeOk ? null : "the store does not answer"));
        checks.AddRange(providers.Checks());
        checks.Add(NodeEndpoints.FarmCheck(farm, options.Value, node, election));
        var degraded = checks.Any(c => c.Status is "warn" or "fail");
        var body = new ReadyResponse(storeOk ? (degraded ? "degraded" : "ready") : "unavailable", options.Value.Region, node.NodeName, checks);
        return TypedResults.Json(body, HeraldJsonContext.Default.ReadyResponse, statusCode: storeOk ? StatusCodes.Status200OK : StatusCodes.Status503ServiceUnavailable);
    }

    private static async Task<IResult> QueueAsync(HttpContext http, INotificationQueue queue, Dispatcher dispatcher, TimeProvider time, CancellationToken cancellationToken)
    {
        if (!CallerContext.Get(http).IsAdmin)
        {
            return Problems.Forbidden("The queue view needs the admin key.");
        }

        var now = time.GetUtcNow();
        var snapshot = await queue.SnapshotAsync(now, cancellationToken);
        var lanes = new Dictionary<string, Dictionary<string, long>>();
        foreach (var lane in Enum.GetValues<Lane>())
        {
            var states = new Dictionary<string, long>();
            foreach (var state in Enum.GetValues<NotificationState>())
            {
                states[state.ToString().ToLowerInvariant()] = snapshot.Counts.TryGetValue((lane, state), out var n) ? n : 0;
            }

            lanes[lane.ToString().ToLowerInvariant()] = states;
        }

        var c = dispatcher.Counters;
        return TypedResults.Json(
            new QueueResponse
            {
                Lanes = lanes,
                OldestQueuedAgeSeconds = snapshot.OldestQueuedAt is { } oldest ? (now - oldest).TotalSeconds : null,
                SendRatePerSecond = c.SentPerSecond,
                Dispatch = new DispatchStats(c.Sent, c.Retried, c.Failed, c.Dead, c.Expired, c.Deactivated),
            },
            HeraldJsonContext.Default.QueueResponse);
    }
}

/// <summary>What the server knows about its providers' credentials, for readiness.</summary>
public sealed class ProviderHealth(IOptionsMonitor<ApnsOptions> apns, IOptionsMonitor<Providers.Fcm.FcmOptions> fcm, IOptionsMonitor<Providers.Wns.WnsOptions> wns, CredentialHealth faults, TimeProvider time, Herald.Core.Credentials.CredentialRegistry? tenants = null)
{
    internal IEnumerable<ReadyCheck> Checks()
    {
        var f = fcm.CurrentValue;
        var w = wns.CurrentValue;
        var a = apns.CurrentValue;
        yield return Check(Platform.Apns, a.HasTokenCredential || a.HasCertificateCredential || HasTenantCredential(Platform.Apns), "no APNs credential is configured (Herald:Apns:TeamId, KeyId, PrivateKeyFile, or CertificateFile): APNs sends wait in retry");
        yield return Check(Platform.Fcm, f.HasCredential || HasTenantCredential(Platform.Fcm), "no FCM service account is configured (Herald:Fcm:ServiceAccountFile): FCM sends wait in retry");
        yield return Check(Platform.Wns, (!string.IsNullOrWhiteSpace(w.PackageSid) && !string.IsNullOrWhiteSpace(w.ClientSecret)) || HasTenantCredential(Platform.Wns), "no WNS credential is configured (Herald:Wns:PackageSid, ClientSecret): WNS sends wait in retry");

        // Per credential: a rejected one fails (its tenant's sends wait; others keep sending), a certificate
        // expiring within 30 days warns, an expired one fails.
        var now = time.GetUtcNow();
        var known = faults.Credentials();
        if (tenants is not null)
        {
            // Stored certificates not used yet since the start: their expiry comes from the metadata.
            var stored = tenants.All
                .Where(t => t.Stored is { Thumbprint.Length: >= 16, ExpiresAt: not null })
                .Select(t => new CredentialHealth.CredentialState(t.Platform, t.TenantId, "certificate:" + t.Stored.Thumbprint![..16], null, t.Stored.ExpiresAt))
                .Where(t => !known.Any(k => k.Platform == t.Platform && k.TenantId == t.TenantId && k.Credential == t.Credential));
            known = [.. known, .. stored];
        }

        foreach (var c in known.OrderBy(c => c.Platform).ThenBy(c => c.TenantId, StringComparer.Ordinal).ThenBy(c => c.Credential, StringComparer.Ordinal))
        {
            var name = "credential:" + Wire.Name(c.Platform) + ":" + c.TenantId + ":" + c.Credential;
            if (c.Fault is { } fault)
            {
                yield return new ReadyCheck(name, "fail", $"the provider rejected the credential at {fault.At:u} ({fault.Status} {fault.Reason}); its sends wait in retry until it is replaced");
            }
            else if (c.ExpiresAt is { } expires && expires <= now)
            {
                yield return new ReadyCheck(name, "fail", $"the certificate expired at {expires:u}; upload a renewed one");
            }
            else if (c.ExpiresAt is { } soon && soon - now < ApnsProvider.ExpiryWarning)
            {
                yield return new ReadyCheck(name, "warn", $"the certificate expires at {soon:u} (in {(int)(soon - now).TotalDays} days); upload a renewed one");
            }
        }
    }

    private bool HasTenantCredential(Platform platform) => tenants?.All.Any(c => c.Platform == platform) == true;

    /// <summary>Off when not configured; fail while the provider rejects it (until a send succeeds again); else pass.</summary>
    private ReadyCheck Check(Platform platform, bool configured, string whenOff)
    {
        var name = "credential:" + Wire.Name(platform);
        if (!configured)
        {
            return new ReadyCheck(name, "off", whenOff);
        }

        return faults.FaultOf(platform) is { } fault
            ? new ReadyCheck(name, "fail", $"the provider rejected the credential at {fault.At:u} ({fault.Status} {fault.Reason}); its sends wait in retry until it is fixed")
            : new ReadyCheck(name, "pass", null);
    }
}
