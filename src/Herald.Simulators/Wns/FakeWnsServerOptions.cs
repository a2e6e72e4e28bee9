namespace Herald.Simulators.Wns;

/// <summary>Settings of <see cref="FakeWnsServer"/>.</summary>
public sealed class FakeWnsServerOptions
{
    /// <summary>TCP port on 127.0.0.1; 0 (the default) picks a free one (see <see cref="FakeWnsServer.BaseUrl"/>).</summary>
    public int Port { get; set; }

    /// <summary>
    /// False (default): plain HTTP/1.1. True: HTTP/1.1 over TLS with a self-signed certificate generated at
    /// start (see <see cref="FakeWnsServer.CertificatePem"/>), as WNS and login.live.com are only reachable over TLS.
    /// </summary>
    public bool UseTls { get; set; }

    /// <summary>
    /// The <c>expires_in</c> of issued access tokens; requests with an older token get 401 "Token expired"
    /// (by the server's <see cref="TimeProvider"/>). WNS issues tokens for a day.
    /// </summary>
    public TimeSpan AccessTokenLifetime { get; set; } = TimeSpan.FromDays(1);

    /// <summary>
    /// False (default): a 200 carries <c>X-WNS-Status</c> (today's documentation). True: it carries the older
    /// <c>X-WNS-NotificationStatus</c> instead, as WNS has been observed to send; clients should read both.
    /// </summary>
    public bool LegacyStatusHeader { get; set; }

    /// <summary>The <c>X-WNS-CONTINUE-AFTER</c> (whole seconds) sent with 406 and with <c>channelthrottled</c>; null sends none.</summary>
    public TimeSpan? ThrottleContinueAfter { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>Keep every notification request for assertions (<see cref="FakeWnsServer.Requests"/>). Turn off for benchmarks.</summary>
    public bool RecordRequests { get; set; } = true;

    /// <summary>The most requests kept; older ones are dropped first.</summary>
    public int MaxRecordedRequests { get; set; } = 100_000;
}
