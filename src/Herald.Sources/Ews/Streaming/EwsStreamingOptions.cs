namespace Herald.Sources.Ews.Streaming;

/// <summary>Options of the EWS streaming connector. The defaults follow Microsoft's guidance for Exchange 2016/2019.</summary>
public sealed class EwsStreamingOptions
{
    /// <summary>The ConnectionTimeout asked of GetStreamingEvents: whole minutes from 1 to 30 (default 30).</summary>
    public TimeSpan ConnectionTimeout { get; set; } = TimeSpan.FromMinutes(30);

    /// <summary>Reconnect this long before the server would close the connection (default 1 minute).</summary>
    public TimeSpan ReconnectMargin { get; set; } = TimeSpan.FromMinutes(1);

    /// <summary>A connection that writes nothing (not even a ConnectionStatus OK heartbeat) for this long is dead (default 60 s).</summary>
    public TimeSpan HeartbeatTimeout { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>Mailboxes per subscription group, hence per connection: at most 200 (Microsoft's limit).</summary>
    public int MaxGroupSize { get; set; } = 200;

    /// <summary>
    /// Send GetStreamingEvents impersonating the group's anchor mailbox, so that the connection counts against the
    /// anchor's hanging-connection budget rather than the service account's (Microsoft's advice for many groups).
    /// </summary>
    public bool ImpersonateAnchorOnStream { get; set; } = true;

    /// <summary>How long an Autodiscover answer is reused (default 24 hours).</summary>
    public TimeSpan AutodiscoverCacheTtl { get; set; } = TimeSpan.FromHours(24);

    /// <summary>The first wait after a failure without a server-given back-off; it doubles up to <see cref="MaxBackOff"/>.</summary>
    public TimeSpan MinBackOff { get; set; } = TimeSpan.FromSeconds(2);

    /// <summary>The longest wait between attempts.</summary>
    public TimeSpan MaxBackOff { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>
    /// Hosts (and their subdomains) an Autodiscover <c>RedirectUrl</c> may send Herald to, besides the answering host and
    /// the mailbox's own domain. The service account's credentials go with the next request, so this list is short on
    /// purpose: Exchange Online's Autodiscover (<c>outlook.com</c>, <c>office365.com</c>) and, from configuration
    /// (<c>Herald:EwsStreaming:AutodiscoverRedirectHosts</c>), any added to it.
    /// </summary>
    public IList<string> AutodiscoverRedirectHosts { get; set; } = ["outlook.com", "office365.com"];

    /// <summary>Timeout of ordinary (non-streaming) requests: Subscribe, GetItem, GetFolder, Autodiscover, token.</summary>
    public TimeSpan RequestTimeout { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>Subscribe requests a group keeps in flight at once while (re)subscribing its members.</summary>
    public int SubscribeConcurrency { get; set; } = 8;

    /// <summary>
    /// Allow plain HTTP to EWS, Autodiscover and the token URL on any host. Off in production: Basic credentials and
    /// tokens only go over HTTPS (or to a loopback peer).
    /// </summary>
    public bool AllowInsecureHttp { get; set; }

    /// <summary>The RequestServerVersion written in every EWS request.</summary>
    public string RequestServerVersion { get; set; } = "Exchange2013_SP1";

    /// <summary>Checks the values; throws <see cref="ArgumentException"/> naming the first bad one.</summary>
    public void Validate()
    {
        if (ConnectionTimeout < TimeSpan.FromMinutes(1) || ConnectionTimeout > TimeSpan.FromMinutes(30) || ConnectionTimeout.Ticks % TimeSpan.TicksPerMinute != 0)
        {
            throw new ArgumentException("ConnectionTimeout must be whole minutes from 1 to 30.", nameof(ConnectionTimeout));
        }

        if (ReconnectMargin < TimeSpan.Zero || ReconnectMargin >= ConnectionTimeout)
        {
            throw new ArgumentException("ReconnectMargin must be at least 0 and shorter than ConnectionTimeout.", nameof(ReconnectMargin));
        }

        if (HeartbeatTimeout <= TimeSpan.Zero)
        {
            throw new ArgumentException("HeartbeatTimeout must be positive.", nameof(HeartbeatTimeout));
        }

        if (MaxGroupSize is < 1 or > 200)
        {
            throw new ArgumentException("MaxGroupSize must be from 1 to 200.", nameof(MaxGroupSize));
        }

        if (MinBackOff <= TimeSpan.Zero || MaxBackOff < MinBackOff)
        {
            throw new ArgumentException("MinBackOff must be positive and MaxBackOff at least MinBackOff.", nameof(MinBackOff));
        }

        if (RequestTimeout <= TimeSpan.Zero || SubscribeConcurrency < 1 || AutodiscoverCacheTtl <= TimeSpan.Zero)
        {
            throw new ArgumentException("RequestTimeout, SubscribeConcurrency and AutodiscoverCacheTtl must be positive.", nameof(RequestTimeout));
        }
    }
}
