using System.Threading.Channels;

namespace Herald.Simulators.Exchange.Streaming;

/// <summary>A failure the fake injects into the next matching requests.</summary>
public enum FakeEwsFailure
{
    /// <summary>HTTP 500 SOAP fault <c>ErrorServerBusy</c> with <c>BackOffMilliseconds</c>.</summary>
    ServerBusy = 0,

    /// <summary>HTTP 503 Service Unavailable (a load balancer with no healthy server).</summary>
    Http503 = 1,

    /// <summary>The TCP connection is reset before any answer.</summary>
    Drop = 2,
}

/// <summary>A request the fake answered, for assertions (no bodies).</summary>
/// <param name="Path">The request path.</param>
/// <param name="Operation">The SOAP operation (Subscribe, GetStreamingEvents, GetItem, GetFolder, GetUserSettingsRequestMessage, Autodiscover (POX), token).</param>
/// <param name="Impersonated">The impersonated address, when the request impersonated.</param>
/// <param name="AnchorMailbox">The X-AnchorMailbox header.</param>
/// <param name="PreferServerAffinity">Whether X-PreferServerAffinity was true.</param>
/// <param name="Cookie">The X-BackEndOverrideCookie the request carried.</param>
/// <param name="SetCookie">The X-BackEndOverrideCookie the answer set.</param>
/// <param name="Status">The HTTP status.</param>
/// <param name="ResponseCode">The first EWS ResponseCode of the answer (NoError, ErrorServerBusy…), or null.</param>
/// <param name="Authorization">The Authorization scheme (Basic, Bearer) or null.</param>
public sealed record FakeEwsRequestRecord(
    string Path,
    string Operation,
    string? Impersonated,
    string? AnchorMailbox,
    bool PreferServerAffinity,
    string? Cookie,
    string? SetCookie,
    int Status,
    string? ResponseCode,
    string? Authorization);

/// <summary>A streaming subscription held by the fake on one backend.</summary>
internal sealed class FakeEwsStreamSubscription(string id, FakeEwsMailbox mailbox, string backend, bool inbox, bool calendar, HashSet<string> eventTypes)
{
    public string Id { get; } = id;
    public FakeEwsMailbox Mailbox { get; } = mailbox;
    public string Backend { get; } = backend;
    public bool Inbox { get; } = inbox;
    public bool Calendar { get; } = calendar;
    public HashSet<string> EventTypes { get; } = eventTypes;
    public List<FakeEwsEvent> Pending { get; } = [];
    public bool Missed { get; set; }
    public FakeEwsConnection? Connection { get; set; }
}

/// <summary>One open GetStreamingEvents response.</summary>
internal sealed class FakeEwsConnection(string account, string backend)
{
    public string Account { get; } = account;
    public string Backend { get; } = backend;
    public List<FakeEwsStreamSubscription> Subscriptions { get; } = [];

    /// <summary>Error envelopes to write (missed events, …).</summary>
    public List<byte[]> Extra { get; } = [];

    public Channel<bool> Signal { get; } = Channel.CreateBounded<bool>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite });
    public CancellationTokenSource Abort { get; } = new();
    public bool CloseRequested { get; set; }

    public void Wake() => Signal.Writer.TryWrite(true);
}
