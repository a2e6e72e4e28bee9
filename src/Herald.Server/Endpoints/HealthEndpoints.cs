using System.Globalization;
using Herald.Core.Connectors;
using Herald.Core.Notifications;
using Herald.Core.Pipeline;
using Herald.Core.Registrations;
using Herald.Core.Ports;
using Herald.Server.Auth;
using Herald.Server.Hosting;
using Herald.Server.Json;
using Herald.Server.Workers;
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

    private static async Task<IResult> ReadyAsync(
        IStoreAdmin store,
        IOptions<HeraldOptions> options,
        NodeIdentity node,
        ProviderHealth providers,
        Storage.IHeraldStore farm,
        Core.Farm.LeaderElection election,
        ConnectorHealth connectorHealth,
        ConnectorService connectors,
        EwsStreamingWorker streaming,
        CancellationToken cancellationToken)
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
        checks.AddRange(await ConnectorChecksAsync(connectorHealth, connectors, streaming, storeOk, cancellationToken));
        var degraded = checks.Any(c => c.Status is "warn" or "fail");
        var body = new ReadyResponse(storeOk ? (degraded ? "degraded" : "ready") : "unavailable", options.Value.Region, node.NodeName, checks);
        return TypedResults.Json(body, HeraldJsonContext.Default.ReadyResponse, statusCode: storeOk ? StatusCodes.Status200OK : StatusCodes.Status503ServiceUnavailable);
    }

    /// <summary>
    /// One check per degraded connector: "fail" while an operation keeps failing (Graph token, subscription create or
    /// renewal, unusable settings), "warn" while EWS streaming groups on this node are down after an error.
    /// </summary>
    internal static async Task<IReadOnlyList<ReadyCheck>> ConnectorChecksAsync(ConnectorHealth health, ConnectorService connectors, EwsStreamingWorker? streaming, bool storeOk, CancellationToken cancellationToken)
    {
        IReadOnlyList<Connector>? all = null;
        if (storeOk)
        {
            try
            {
                all = await connectors.ListAsync(null, cancellationToken);
            }
            catch (Exception ex) when (ex is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
            {
                // The database check already says the store is failing; faults are still listed.
            }
        }

        var checks = new List<ReadyCheck>();
        foreach (var faults in health.Faults().GroupBy(f => (f.Kind, f.TenantId, f.Connector)))
        {
            if (all is not null && !all.Any(c => c.TenantId == faults.Key.TenantId && c.Name == faults.Key.Connector))
            {
                continue; // deleted since
            }

            checks.Add(new ReadyCheck($"connector:{faults.Key.Kind}:{faults.Key.TenantId}:{faults.Key.Connector}", "fail", string.Join("; ", faults.Select(Describe))));
        }

        if (all is not null && streaming is not null)
        {
            foreach (var connector in all.Where(c => c.Kind == ConnectorKind.Ews))
            {
                var groups = streaming.GroupsOf(connector.TenantId, connector.Name);
                var down = groups.Where(g => !g.Connected && g.LastError is not null).ToList();
                if (down.Count > 0)
                {
                    checks.Add(new ReadyCheck(
                        $"connector:ews:{connector.TenantId}:{connector.Name}",
                        "warn",
                        $"{down.Count} of {groups.Count} EWS streaming group(s) on this node are disconnected (last error {down[0].LastError}); their mailboxes get no pushes until they reconnect"));
                }
            }
        }

        return checks;
    }

    private static string Describe(ConnectorHealth.Fault f)
    {
        var answer = f.Status == 0 ? "unreachable" : f.Status.ToString(CultureInfo.InvariantCulture) + (f.Code is null ? string.Empty : " " + f.Code);
        var since = string.Create(CultureInfo.InvariantCulture, $"{f.Count} time(s) in a row, last at {f.At:u}");
        return f.Operation switch
        {
            "token" => $"the token endpoint refuses the connector's client ({answer}, {since}): every Graph call fails until the client id, secret or token URL is fixed",
            "create" => $"creating Graph subscriptions fails ({answer}, {since}): those mailboxes get no pushes",
            "renew" => $"renewing Graph subscriptions fails ({answer}, {since}): they lapse when they expire",
            "config" => $"the connector cannot be used as configured ({since}): check its auth settings",
            _ => $"{f.Operation} fails ({answer}, {since})",
        };
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
