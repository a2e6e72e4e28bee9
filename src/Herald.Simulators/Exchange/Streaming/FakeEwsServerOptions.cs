namespace Herald.Simulators.Exchange.Streaming;

/// <summary>Options of <see cref="FakeEwsServer"/>. The defaults are Exchange 2016/2019 on-premises behaviour.</summary>
public sealed class FakeEwsServerOptions
{
    /// <summary>The port on 127.0.0.1; 0 picks a free one.</summary>
    public int Port { get; set; }

    /// <summary>Serve HTTPS with a self-signed certificate (see <see cref="FakeEwsServer.Certificate"/>); plain HTTP otherwise.</summary>
    public bool UseTls { get; set; }

    /// <summary>The service account's user name for HTTP Basic (null: Basic is refused).</summary>
    public string? BasicUsername { get; set; } = "svc-herald@fake.herald.test";

    /// <summary>The service account's password for HTTP Basic.</summary>
    public string? BasicPassword { get; set; } = "Listener-Passw0rd!";

    /// <summary>The OAuth2 client id the token endpoint accepts (null: OAuth2 is refused).</summary>
    public string? OAuthClientId { get; set; } = "herald-app";

    /// <summary>The OAuth2 client secret.</summary>
    public string? OAuthClientSecret { get; set; } = "herald-app-secret";

    /// <summary>The lifetime of issued access tokens (<c>expires_in</c>).</summary>
    public TimeSpan TokenLifetime { get; set; } = TimeSpan.FromHours(1);

    /// <summary>Whether the service account holds the ApplicationImpersonation role (false: ErrorImpersonateUserDenied).</summary>
    public bool ImpersonationAllowed { get; set; } = true;

    /// <summary>
    /// Open GetStreamingEvents connections allowed per account (Exchange 2016/2019 and Online: 10; 2013: 3). The account
    /// is the impersonated one when the request impersonates, the service account otherwise.
    /// </summary>
    public int HangingConnectionLimit { get; set; } = 10;

    /// <summary>How often an idle streaming connection gets a <c>ConnectionStatus OK</c> heartbeat.</summary>
    public TimeSpan HeartbeatInterval { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Events a subscription queues while no connection reads it; past this the subscription has missed events.</summary>
    public int MaxQueuedEventsPerSubscription { get; set; } = 1024;

    /// <summary>The mailbox servers (backends) mailboxes live on; each is its own GroupingInformation.</summary>
    public IReadOnlyList<string> Backends { get; set; } = ["MBX01", "MBX02"];

    /// <summary>Serve SOAP Autodiscover (<c>/autodiscover/autodiscover.svc</c>); false answers 404 so clients fall back to POX.</summary>
    public bool SoapAutodiscover { get; set; } = true;

    /// <summary>Seed of the random ids, for reproducible runs; null for a random seed.</summary>
    public int? Seed { get; set; }

    /// <summary>Requests kept for inspection (the oldest are dropped first); 0 keeps none.</summary>
    public int MaxRecordedRequests { get; set; } = 4096;
}
