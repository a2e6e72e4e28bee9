namespace Herald.Simulators.Apns;

/// <summary>The APNs environment a fake server plays (a device token only works in the one it was issued for).</summary>
public enum FakeApnsEnvironment
{
    /// <summary>api.push.apple.com.</summary>
    Production = 0,
    /// <summary>api.sandbox.push.apple.com.</summary>
    Sandbox = 1,
}

/// <summary>Settings of <see cref="FakeApnsServer"/>.</summary>
public sealed class FakeApnsServerOptions
{
    /// <summary>TCP port on 127.0.0.1; 0 (the default) picks a free one (see <see cref="FakeApnsServer.BaseUrl"/>).</summary>
    public int Port { get; set; }

    /// <summary>
    /// False (default): HTTP/2 cleartext with prior knowledge (h2c). True: HTTP/2 over TLS with a self-signed
    /// certificate generated at start (see <see cref="FakeApnsServer.CertificatePem"/>).
    /// </summary>
    public bool UseTls { get; set; }

    /// <summary>
    /// SETTINGS_MAX_CONCURRENT_STREAMS per connection (Apple uses 500–1,500 once a connection is authenticated).
    /// A client that opens more streams on a new connection before it has received this setting gets
    /// REFUSED_STREAM, and Kestrel may then close the connection (STREAM_CLOSED), as a strict server does.
    /// </summary>
    public int MaxStreamsPerConnection { get; set; } = 1000;

    /// <summary>The environment this server plays: tokens registered for the other one get 400 BadDeviceToken.</summary>
    public FakeApnsEnvironment Environment { get; set; } = FakeApnsEnvironment.Production;

    /// <summary>Strict mode: device tokens not registered with <see cref="FakeApnsServer.RegisterDevice"/> get 400 BadDeviceToken.</summary>
    public bool StrictDeviceTokens { get; set; }

    /// <summary>Provider tokens whose <c>iat</c> is older than this get 403 ExpiredProviderToken (Apple: one hour).</summary>
    public TimeSpan ProviderTokenLifetime { get; set; } = TimeSpan.FromHours(1);

    /// <summary>Provider tokens whose <c>iat</c> lies further than this in the future get 403 InvalidProviderToken.</summary>
    public TimeSpan ProviderTokenClockSkew { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>
    /// Apple's minimum interval between new provider tokens of one signing key: a key that presents more
    /// than 1 + <see cref="ProviderTokenUpdateGrace"/> distinct new tokens within this window gets
    /// 429 TooManyProviderTokenUpdates for the extra ones.
    /// </summary>
    public TimeSpan ProviderTokenUpdateInterval { get; set; } = TimeSpan.FromMinutes(20);

    /// <summary>
    /// Extra new tokens tolerated per <see cref="ProviderTokenUpdateInterval"/> (default 1: a replacement
    /// right after ExpiredProviderToken is accepted, as Apple does in practice; a third token within the
    /// window is not). 0 makes the fake strict.
    /// </summary>
    public int ProviderTokenUpdateGrace { get; set; } = 1;

    /// <summary>With <see cref="UseTls"/>: present this certificate (with its key) instead of a generated one, e.g. the same for a production and a sandbox fake. The caller keeps ownership.</summary>
    public System.Security.Cryptography.X509Certificates.X509Certificate2? ServerCertificate { get; set; }

    /// <summary>
    /// Certificate auth (needs <see cref="UseTls"/>): the authorities whose certificates the fake accepts as
    /// provider certificates (Apple's WWDR in reality). Empty: clients' certificates are ignored, token auth only.
    /// </summary>
    public IList<System.Security.Cryptography.X509Certificates.X509Certificate2> ClientCertificateAuthorities { get; } = [];

    /// <summary>A certificate-auth listener: the TLS handshake fails without a client certificate (token auth is then impossible).</summary>
    public bool RequireClientCertificate { get; set; }

    /// <summary>Keep every request for assertions (<see cref="FakeApnsServer.Requests"/>). Turn off for benchmarks.</summary>
    public bool RecordRequests { get; set; } = true;

    /// <summary>The most requests kept; older ones are dropped first.</summary>
    public int MaxRecordedRequests { get; set; } = 100_000;

    /// <summary>
    /// Count deliveries per <c>apns-id</c> (<see cref="FakeApnsServer.Receipts"/>): a light ledger for load tests that
    /// keep no request log, to prove every notification arrived and to count duplicates. Off by default.
    /// </summary>
    public bool KeepReceipts { get; set; }

    /// <summary>Faults injected from the start (see <see cref="FakeApnsFaults"/>); null for none. <see cref="FakeApnsServer.InjectFaults"/> changes them later.</summary>
    public FakeApnsFaults? Faults { get; set; }
}
