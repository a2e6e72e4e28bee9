namespace Herald.Simulators.Wns;

/// <summary>One notification request the fake WNS server received (channel endpoint), and how it answered.</summary>
public sealed class FakeWnsRequest
{
    /// <summary>The HTTP method.</summary>
    public required string Method { get; init; }

    /// <summary>The request path.</summary>
    public required string Path { get; init; }

    /// <summary>The channel URI the request was addressed to (scheme, host, path and query as received).</summary>
    public required string Channel { get; init; }

    /// <summary>Request headers by lower-case name; a header sent twice holds its values joined with ", ".</summary>
    public required IReadOnlyDictionary<string, string> Headers { get; init; }

    /// <summary>The body as UTF-8 text; null when it was not read (not a POST, or rejected before reading).</summary>
    public string? Body { get; init; }

    /// <summary>The body size in bytes as read (reading stops just past the 5,000-byte limit).</summary>
    public int BodyLength { get; init; }

    /// <summary>When the request arrived, by the server's <see cref="TimeProvider"/>.</summary>
    public required DateTimeOffset ReceivedAt { get; init; }

    /// <summary>The status answered.</summary>
    public required int Status { get; init; }

    /// <summary>The fake's reason code for a rejection (e.g. <c>InvalidToken</c>, <c>ChannelExpired</c>); null for a plain 200.</summary>
    public string? Reason { get; init; }

    /// <summary>The <c>X-WNS-Status</c> answered with a 200 (<c>received</c>, <c>dropped</c>, <c>channelthrottled</c>).</summary>
    public string? NotificationStatus { get; init; }

    /// <summary>The <c>X-WNS-Msg-ID</c> answered.</summary>
    public required string MessageId { get; init; }

    /// <summary>The <c>X-WNS-Error-Description</c> answered, if any.</summary>
    public string? ErrorDescription { get; init; }

    /// <summary>True when answered 200 with <c>received</c>.</summary>
    public bool Accepted => Status == 200 && NotificationStatus == FakeWnsServer.StatusReceived;

    /// <summary>The <c>X-WNS-Type</c> header.</summary>
    public string? Type => Header("x-wns-type");

    /// <summary>The <c>Content-Type</c> header.</summary>
    public string? ContentType => Header("content-type");

    /// <summary>The <c>Authorization</c> header.</summary>
    public string? Authorization => Header("authorization");

    /// <summary>The <c>X-WNS-TTL</c> header.</summary>
    public string? Ttl => Header("x-wns-ttl");

    /// <summary>The <c>X-WNS-Tag</c> header.</summary>
    public string? Tag => Header("x-wns-tag");

    /// <summary>The <c>X-WNS-RequestForStatus</c> header.</summary>
    public string? RequestForStatus => Header("x-wns-requestforstatus");

    /// <summary>The <c>X-WNS-Cache-Policy</c> header.</summary>
    public string? CachePolicy => Header("x-wns-cache-policy");

    /// <summary>A header by (case-insensitive) name, or null.</summary>
    public string? Header(string name) => Headers.TryGetValue(name, out var value) ? value : null;
}
