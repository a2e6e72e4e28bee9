using System.Text.Json;
using System.Text.Json.Serialization;

namespace Herald.Server.Json;

/// <summary>Body of <c>POST /v1/registrations</c>.</summary>
public sealed class RegistrationRequest
{
    public string? Platform { get; set; }
    public string? Token { get; set; }
    public string? Topic { get; set; }
    public string? Environment { get; set; }
    public string? Source { get; set; }
    public string? Mailbox { get; set; }
    public string? Connector { get; set; }
    public string? Style { get; set; }
    public List<string>? Folders { get; set; }
    public string? Locale { get; set; }
}

/// <summary>Body of <c>PATCH /v1/registrations/{id}</c>: absent fields stay as they are.</summary>
public sealed class RegistrationPatch
{
    public string? Token { get; set; }
    public string? Topic { get; set; }
    public string? Environment { get; set; }
    public string? Style { get; set; }
    public List<string>? Folders { get; set; }
    public string? Locale { get; set; }
}

/// <summary>The last push to a registration.</summary>
public sealed record LastPushDto(DateTimeOffset? At, string? Result);

/// <summary>A registration as the API shows it: the token only as a fingerprint.</summary>
public sealed class RegistrationResponse
{
    public required string Id { get; init; }
    public required string Status { get; init; }
    public string? InactiveReason { get; init; }
    public DateTimeOffset? InactiveAt { get; init; }

    /// <summary>Only in the answer to POST: the key in it is not stored in clear and cannot be shown again.</summary>
    public string? CallbackUrl { get; init; }

    public required string Platform { get; init; }
    public required string TokenFingerprint { get; init; }
    public required string Topic { get; init; }
    public required string Environment { get; init; }
    public required string Source { get; init; }
    public required string Style { get; init; }
    public required IReadOnlyList<string> Folders { get; init; }
    public required string Locale { get; init; }
    public bool SubscriptionBound { get; init; }
    public int? UnreadCount { get; init; }
    public DateTimeOffset? LastEventAt { get; init; }
    public LastPushDto? LastPush { get; init; }
    public DateTimeOffset CreatedAt { get; init; }
    public DateTimeOffset UpdatedAt { get; init; }
}

/// <summary>Queue counts for <c>GET /v1/admin/queue</c>.</summary>
public sealed class QueueResponse
{
    public required Dictionary<string, Dictionary<string, long>> Lanes { get; init; }
    public double? OldestQueuedAgeSeconds { get; init; }
    public required DispatchStats Dispatch { get; init; }
}

/// <summary>This node's dispatch counters since start.</summary>
public sealed record DispatchStats(long Sent, long Retried, long Failed, long Dead, long Expired, long Deactivated);

/// <summary>One readiness check.</summary>
public sealed record ReadyCheck(string Name, string Status, string? Detail);

/// <summary>Body of <c>GET /readyz</c>.</summary>
public sealed record ReadyResponse(string Status, string Region, string Node, IReadOnlyList<ReadyCheck> Checks);

/// <summary>Source-generated JSON for every API type: no reflection on the request path.</summary>
[JsonSourceGenerationOptions(JsonSerializerDefaults.Web, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull, MaxDepth = 32)]
[JsonSerializable(typeof(RegistrationRequest))]
[JsonSerializable(typeof(RegistrationPatch))]
[JsonSerializable(typeof(RegistrationResponse))]
[JsonSerializable(typeof(QueueResponse))]
[JsonSerializable(typeof(ReadyResponse))]
[JsonSerializable(typeof(Microsoft.AspNetCore.Mvc.ProblemDetails))]
[JsonSerializable(typeof(Microsoft.AspNetCore.Http.HttpValidationProblemDetails))]
internal sealed partial class HeraldJsonContext : JsonSerializerContext;
