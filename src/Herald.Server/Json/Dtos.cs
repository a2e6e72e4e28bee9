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

    /// <summary>The device's HPKE public key (base64url uncompressed P-256 point) for style preview-encrypted.</summary>
    public string? EncryptionKey { get; set; }
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

    /// <summary>A new HPKE public key (key rotation); absent or null keeps the current one.</summary>
    public string? EncryptionKey { get; set; }
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

    /// <summary>The tenant's connector of a mailbox source (the mailbox address itself is never shown).</summary>
    public string? Connector { get; init; }

    public required string Style { get; init; }

    /// <summary>The device's HPKE public key (base64url), when one is set: public, shown so a client can check which key is in use.</summary>
    public string? EncryptionKey { get; init; }

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

    /// <summary>This node's accepted sends per second over the last minute.</summary>
    public double SendRatePerSecond { get; init; }
    public required DispatchStats Dispatch { get; init; }
}

/// <summary>This node's dispatch counters since start.</summary>
public sealed record DispatchStats(long Sent, long Retried, long Failed, long Dead, long Expired, long Deactivated);

/// <summary>One readiness check.</summary>
public sealed record ReadyCheck(string Name, string Status, string? Detail);

/// <summary>Body of <c>GET /readyz</c>.</summary>
public sealed record ReadyResponse(string Status, string Region, string Node, IReadOnlyList<ReadyCheck> Checks);

/// <summary>Body of <c>POST /v1/tenants</c>.</summary>
public sealed class TenantRequest
{
    public string? Name { get; set; }
}

/// <summary>A tenant.</summary>
public sealed record TenantResponse(string Id, string Name, DateTimeOffset CreatedAt);

/// <summary>A new API key: shown once, stored hashed.</summary>
public sealed record ApiKeyResponse(string Id, string Key);

/// <summary>Source-generated JSON for every API type: no reflection on the request path.</summary>
[JsonSourceGenerationOptions(JsonSerializerDefaults.Web, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull, MaxDepth = 32)]
[JsonSerializable(typeof(RegistrationRequest))]
[JsonSerializable(typeof(RegistrationPatch))]
[JsonSerializable(typeof(RegistrationResponse))]
[JsonSerializable(typeof(QueueResponse))]
[JsonSerializable(typeof(ReadyResponse))]
[JsonSerializable(typeof(TenantRequest))]
[JsonSerializable(typeof(TenantResponse))]
[JsonSerializable(typeof(ApiKeyResponse))]
[JsonSerializable(typeof(Microsoft.AspNetCore.Mvc.ProblemDetails))]
[JsonSerializable(typeof(Microsoft.AspNetCore.Http.HttpValidationProblemDetails))]
internal sealed partial class HeraldJsonContext : JsonSerializerContext;

/// <summary>A lane in <c>/v1/admin/settings</c>.</summary>
public sealed class LaneSettingsDto
{
    public int? RatePerMinute { get; set; }
    public string? Scope { get; set; }
    public int? MaxAttempts { get; set; }
}

/// <summary>The lanes in <c>/v1/admin/settings</c>.</summary>
public sealed class LanesDto
{
    public LaneSettingsDto? Standard { get; set; }
    public LaneSettingsDto? Priority { get; set; }
}

/// <summary>The retry schedule in <c>/v1/admin/settings</c> (TimeSpans as "hh:mm:ss").</summary>
public sealed class RetrySettingsDto
{
    public int? MaxAttempts { get; set; }
    public string? InitialDelay { get; set; }
    public string? MaxDelay { get; set; }
}

/// <summary>Provider connections in <c>/v1/admin/settings</c>.</summary>
public sealed class ConnectionSettingsDto
{
    /// <summary>"hh:mm:ss"; null (or absent on GET) = each provider's configured idle time.</summary>
    public string? IdleTimeout { get; set; }
}

/// <summary>Body of <c>GET|PUT /v1/admin/settings</c>. On PUT, an absent lane, retry or connections field keeps its value.</summary>
public sealed class SettingsDto
{
    public LanesDto? Lanes { get; set; }
    public RetrySettingsDto? Retry { get; set; }
    public ConnectionSettingsDto? Connections { get; set; }
    public long? Version { get; set; }
    public DateTimeOffset? UpdatedAt { get; set; }
    public string? UpdatedBy { get; set; }
}

/// <summary>One audited settings change.</summary>
public sealed record SettingsChangeDto(long Version, DateTimeOffset At, string Actor, JsonElement Old, JsonElement New);

/// <summary>A device addressed directly by a send (no registration), e.g. an MDM wake-up.</summary>
public sealed class DeviceTargetDto
{
    public string? Platform { get; set; }
    public string? Token { get; set; }
    public string? Topic { get; set; }
    public string? Environment { get; set; }
    public string? PushMagic { get; set; }
}

/// <summary>An alert's text.</summary>
public sealed class AlertDto
{
    public string? Title { get; set; }
    public string? Body { get; set; }
}

/// <summary>Body of <c>POST /v1/notifications</c>.</summary>
public sealed class NotificationRequestDto
{
    public string? Lane { get; set; }
    public List<string>? Registrations { get; set; }
    public List<DeviceTargetDto>? Devices { get; set; }
    public string? Kind { get; set; }
    public int? Badge { get; set; }
    public AlertDto? Alert { get; set; }
    public Dictionary<string, string>? Data { get; set; }
    public int? TtlSeconds { get; set; }
    public string? CollapseKey { get; set; }
}

/// <summary>Answer to <c>POST /v1/notifications</c>.</summary>
public sealed record NotificationAcceptedDto(string Id, int Count, IReadOnlyList<string>? NotFound, IReadOnlyList<string>? Inactive);

/// <summary>One target of a send request.</summary>
public sealed record NotificationTargetDto(long Id, string? RegistrationId, string Platform, string? TokenFingerprint, string State, int Attempts, int LastStatus, string? LastReason, DateTimeOffset? SentAt);

/// <summary>Answer to <c>GET /v1/notifications/{id}</c>.</summary>
public sealed record NotificationStatusDto(string Id, string Lane, string Kind, int Count, DateTimeOffset CreatedAt, IReadOnlyDictionary<string, long> States, IReadOnlyList<NotificationTargetDto> Targets, int Offset, int Limit);

/// <summary>Dead-letter actions: ids to act on, or all when absent.</summary>
public sealed class DeadLetterActionDto
{
    public List<long>? Ids { get; set; }
}

/// <summary>How many notifications an action touched.</summary>
public sealed record CountDto(int Count);

/// <summary>Dead notifications.</summary>
public sealed record DeadLettersDto(IReadOnlyList<NotificationTargetDto> Items);

/// <summary>Extra JSON types of the queue API.</summary>
[JsonSourceGenerationOptions(JsonSerializerDefaults.Web, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull, MaxDepth = 32)]
[JsonSerializable(typeof(SettingsDto))]
[JsonSerializable(typeof(List<SettingsChangeDto>))]
[JsonSerializable(typeof(NotificationRequestDto))]
[JsonSerializable(typeof(NotificationAcceptedDto))]
[JsonSerializable(typeof(NotificationStatusDto))]
[JsonSerializable(typeof(DeadLetterActionDto))]
[JsonSerializable(typeof(CountDto))]
[JsonSerializable(typeof(DeadLettersDto))]
internal sealed partial class QueueJsonContext : JsonSerializerContext;
