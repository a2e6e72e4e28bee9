namespace Herald.Core.Notifications;

/// <summary>How a provider answered one send, in Herald's terms (PROTOCOLS.md maps each provider reason here).</summary>
public enum PushOutcome
{
    /// <summary>Accepted by the provider.</summary>
    Sent = 0,
    /// <summary>A transient fault (429, 5xx, transport): try again later.</summary>
    Retry = 1,
    /// <summary>Permanently rejected: a bug or misconfiguration; do not retry.</summary>
    Failed = 2,
    /// <summary>The device token is dead for this topic and environment: deactivate the registration.</summary>
    TokenInvalid = 3,
    /// <summary>The provider credential is at fault: pause it, retry the work later, degrade health.</summary>
    CredentialFault = 4,
}

/// <summary>The result of one send attempt.</summary>
public readonly record struct PushResult(
    PushOutcome Outcome,
    int StatusCode = 0,
    string? Reason = null,
    TimeSpan? RetryAfter = null,
    DateTimeOffset? TokenInvalidSince = null)
{
    public static PushResult Ok(int status = 200) => new(PushOutcome.Sent, status);
}

/// <summary>What the pipeline decided for a claimed notification after its attempt.</summary>
public sealed record DeliveryOutcome
{
    public required long NotificationId { get; init; }
    public string? RegistrationId { get; init; }
    public required NotificationState State { get; init; }

    /// <summary>For <see cref="NotificationState.Retrying"/>: when it is due again.</summary>
    public DateTimeOffset? RetryAt { get; init; }

    public int StatusCode { get; init; }
    public string? Reason { get; init; }

    /// <summary>Set when the registration must be deactivated (dead token).</summary>
    public bool DeactivateRegistration { get; init; }

    /// <summary>The provider's "token invalid since" time, when it gave one (APNs 410 timestamp).</summary>
    public DateTimeOffset? TokenInvalidSince { get; init; }

    public required DateTimeOffset CompletedAt { get; init; }

    /// <summary>Which attempt this was (1-based), for the attempt log.</summary>
    public int Attempt { get; init; }
}
