namespace Herald.Simulators.Fcm;

/// <summary>Settings of <see cref="FakeFcmServer"/>.</summary>
public sealed class FakeFcmServerOptions
{
    /// <summary>TCP port on 127.0.0.1; 0 (the default) picks a free one (see <see cref="FakeFcmServer.BaseUrl"/>).</summary>
    public int Port { get; set; }

    /// <summary>
    /// False (default): HTTP/2 cleartext with prior knowledge (h2c) only. True: TLS with a self-signed certificate
    /// generated at start (see <see cref="FakeFcmServer.CertificatePem"/>), HTTP/2 or HTTP/1.1 by ALPN as Google offers.
    /// </summary>
    public bool UseTls { get; set; }

    /// <summary>SETTINGS_MAX_CONCURRENT_STREAMS per HTTP/2 connection.</summary>
    public int MaxStreamsPerConnection { get; set; } = 1000;

    /// <summary>
    /// Strict mode: registration tokens not registered with <see cref="FakeFcmServer.RegisterToken"/> get
    /// 400 INVALID_ARGUMENT ("not a valid FCM registration token"). Off: any non-empty token is accepted.
    /// </summary>
    public bool StrictRegistrationTokens { get; set; }

    /// <summary>The <c>expires_in</c> of issued access tokens (Google: one hour); the send endpoint refuses them after it.</summary>
    public TimeSpan AccessTokenLifetime { get; set; } = TimeSpan.FromHours(1);

    /// <summary>How far in the future an assertion's <c>iat</c> may lie (clock skew) before it is refused.</summary>
    public TimeSpan AssertionClockSkew { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>FCM's message size limit, applied to the whole request body (stricter than FCM, which counts the payload).</summary>
    public int MaxMessageBytes { get; set; } = 4096;

    /// <summary>Keep every send request for assertions (<see cref="FakeFcmServer.Requests"/>). Turn off for benchmarks.</summary>
    public bool RecordRequests { get; set; } = true;

    /// <summary>The most send requests kept; older ones are dropped first.</summary>
    public int MaxRecordedRequests { get; set; } = 100_000;
}
