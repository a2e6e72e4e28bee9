namespace Herald.Simulators.Apns;

/// <summary>One request the fake APNs server received, and how it answered.</summary>
public sealed class FakeApnsRequest
{
    /// <summary>The HTTP method.</summary>
    public required string Method { get; init; }

    /// <summary>The request path (<c>/3/device/&lt;token&gt;</c> when well-formed).</summary>
    public required string Path { get; init; }

    /// <summary>The device token from the path (empty when absent or the path was wrong).</summary>
    public required string Token { get; init; }

    /// <summary>Request headers by lower-case name; a header sent twice holds its values joined with ", ".</summary>
    public required IReadOnlyDictionary<string, string> Headers { get; init; }

    /// <summary>The payload as UTF-8 text; null when not read (not a POST, or a bad path).</summary>
    public string? Payload { get; init; }

    /// <summary>When the request arrived, by the server's <see cref="TimeProvider"/>.</summary>
    public required DateTimeOffset ReceivedAt { get; init; }

    /// <summary>The status answered.</summary>
    public required int Status { get; init; }

    /// <summary>The reason answered (null for 200).</summary>
    public string? Reason { get; init; }

    /// <summary>The <c>apns-id</c> answered: the request's, or one the server generated.</summary>
    public required string ApnsId { get; init; }

    /// <summary>The HTTP/2 connection the request came on (Kestrel's connection id): tells reused connections from new ones.</summary>
    public string ConnectionId { get; init; } = string.Empty;

    /// <summary>True when answered 200.</summary>
    public bool Accepted => Status == 200;

    /// <summary>The <c>apns-topic</c> header.</summary>
    public string? Topic => Header("apns-topic");

    /// <summary>The <c>apns-push-type</c> header.</summary>
    public string? PushType => Header("apns-push-type");

    /// <summary>The <c>apns-priority</c> header.</summary>
    public string? Priority => Header("apns-priority");

    /// <summary>The <c>apns-expiration</c> header.</summary>
    public string? Expiration => Header("apns-expiration");

    /// <summary>The <c>apns-collapse-id</c> header.</summary>
    public string? CollapseId => Header("apns-collapse-id");

    /// <summary>The <c>authorization</c> header.</summary>
    public string? Authorization => Header("authorization");

    /// <summary>The <c>apns-id</c> header as sent (null when the client sent none).</summary>
    public string? RequestApnsId => Header("apns-id");

    /// <summary>A header by (case-insensitive) name, or null.</summary>
    public string? Header(string name) => Headers.TryGetValue(name, out var value) ? value : null;
}
