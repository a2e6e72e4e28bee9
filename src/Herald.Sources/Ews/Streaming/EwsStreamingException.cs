namespace Herald.Sources.Ews.Streaming;

/// <summary>What the streaming connector does about a failed EWS request (the issue's error table).</summary>
public enum EwsRecovery
{
    /// <summary>Transport failure, dropped connection, silence past the heartbeat timeout: reconnect after a back-off.</summary>
    Reconnect = 0,

    /// <summary><c>ErrorSubscriptionNotFound</c>/<c>ErrorInvalidSubscription</c>: subscribe again (events may be lost: sync wake-up).</summary>
    Resubscribe = 1,

    /// <summary><c>ErrorServerBusy</c> (wait <c>BackOffMilliseconds</c>) or HTTP 503 (exponential back-off).</summary>
    BackOff = 2,

    /// <summary><c>ErrorProxyRequestNotAllowed</c>/<c>ErrorReadEventsFailed</c>: Autodiscover again and regroup.</summary>
    Rediscover = 3,

    /// <summary><c>ErrorMissedNotificationEvents</c>: events were lost; sync wake-up, resubscribe.</summary>
    Missed = 4,

    /// <summary><c>ErrorExceededConnectionCount</c>: too many hanging connections for the account; pack more per connection.</summary>
    ConnectionLimit = 5,

    /// <summary>Credentials refused (HTTP 401/403, token endpoint errors): back off, fetch a new token.</summary>
    Unauthorized = 6,

    /// <summary>The mailbox cannot be used (no such mailbox, impersonation denied): retry much later.</summary>
    MailboxFailed = 7,
}

/// <summary>A failed EWS exchange, classified. The message never holds an address or a body.</summary>
public sealed class EwsStreamingException : Exception
{
    /// <summary>A failure with the EWS <paramref name="responseCode"/> and/or HTTP <paramref name="httpStatus"/>.</summary>
    public EwsStreamingException(EwsRecovery recovery, string? responseCode, int? httpStatus = null, TimeSpan? backOff = null, Exception? inner = null)
        : base($"EWS request failed: {responseCode ?? (httpStatus is int s ? "HTTP " + s : "transport")} ({recovery})", inner)
    {
        Recovery = recovery;
        ResponseCode = responseCode;
        HttpStatus = httpStatus;
        BackOff = backOff;
    }

    /// <summary>What to do.</summary>
    public EwsRecovery Recovery { get; }

    /// <summary>The EWS ResponseCode, when there was one.</summary>
    public string? ResponseCode { get; }

    /// <summary>The HTTP status, when there was an answer.</summary>
    public int? HttpStatus { get; }

    /// <summary>The server's BackOffMilliseconds, for ErrorServerBusy.</summary>
    public TimeSpan? BackOff { get; }

    /// <summary>The recovery for an EWS ResponseCode.</summary>
    public static EwsRecovery Classify(string? responseCode) => responseCode switch
    {
        "ErrorSubscriptionNotFound" or "ErrorInvalidSubscription" or "ErrorExpiredSubscription" => EwsRecovery.Resubscribe,
        "ErrorServerBusy" or "ErrorTooManyObjectsOpened" or "ErrorTimeoutExpired" => EwsRecovery.BackOff,
        "ErrorProxyRequestNotAllowed" or "ErrorReadEventsFailed" or "ErrorMailboxMoveInProgress" or "ErrorMailboxStoreUnavailable" => EwsRecovery.Rediscover,
        "ErrorMissedNotificationEvents" => EwsRecovery.Missed,
        "ErrorExceededConnectionCount" => EwsRecovery.ConnectionLimit,
        "ErrorNonExistentMailbox" or "ErrorImpersonateUserDenied" or "ErrorImpersonationFailed" or "ErrorMissingEmailAddress" or "ErrorAccessDenied" => EwsRecovery.MailboxFailed,
        _ => EwsRecovery.Reconnect,
    };
}
