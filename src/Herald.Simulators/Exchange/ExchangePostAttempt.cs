namespace Herald.Simulators.Exchange;

/// <summary>The state of a simulated push subscription.</summary>
public enum FakeSubscriptionState
{
    /// <summary>Posting notifications (possibly retrying a failed one).</summary>
    Active = 0,

    /// <summary>The listener answered <c>Unsubscribe</c>; nothing more is sent.</summary>
    Unsubscribed = 1,

    /// <summary>Posts kept failing until StatusFrequency was exceeded; Exchange dropped the subscription.</summary>
    Expired = 2,
}

/// <summary>What made the fake post.</summary>
public enum ExchangePostTrigger
{
    /// <summary>Mailbox events (new mail, mark read).</summary>
    Events = 0,

    /// <summary>An explicit <see cref="FakeExchange.SendStatusAsync"/>.</summary>
    Status = 1,

    /// <summary>The heartbeat timer: StatusFrequency passed without a post.</summary>
    Heartbeat = 2,

    /// <summary>The retry of a failed post.</summary>
    Retry = 3,
}

/// <summary>The listener's <c>SubscriptionStatus</c>, when it gave a valid one.</summary>
public enum ExchangeAnswer
{
    /// <summary>No valid answer: transport error, timeout, non-2xx status or an unparsable body.</summary>
    None = 0,

    /// <summary><c>OK</c>.</summary>
    Ok = 1,

    /// <summary><c>Unsubscribe</c>.</summary>
    Unsubscribe = 2,
}

/// <summary>One SendNotification post of the fake and how it ended.</summary>
public sealed class ExchangePostAttempt
{
    /// <summary>1 for the subscription's first attempt, then counting up.</summary>
    public required int Number { get; init; }

    /// <summary>Why the post was made.</summary>
    public required ExchangePostTrigger Trigger { get; init; }

    /// <summary>When the post started (the fake's TimeProvider).</summary>
    public required DateTimeOffset StartedAt { get; init; }

    /// <summary>When the answer (or failure) arrived.</summary>
    public required DateTimeOffset FinishedAt { get; init; }

    /// <summary>Events in the notification (a heartbeat has one StatusEvent).</summary>
    public required int EventCount { get; init; }

    /// <summary>The HTTP status code, or null when no response arrived.</summary>
    public int? HttpStatus { get; init; }

    /// <summary>Why the attempt failed ("HTTP 503", "timeout", "transport error: …", "unparsable response"), or null.</summary>
    public string? Error { get; init; }

    /// <summary>The answered SubscriptionStatus.</summary>
    public required ExchangeAnswer Answer { get; init; }

    /// <summary>True when the listener answered a valid SubscriptionStatus.</summary>
    public bool Succeeded => Answer != ExchangeAnswer.None;

    /// <summary>The subscription's state after this attempt.</summary>
    public required FakeSubscriptionState StateAfter { get; init; }

    /// <summary>When the fake will retry, after a failure that did not expire the subscription.</summary>
    public DateTimeOffset? NextRetryAt { get; init; }

    /// <inheritdoc />
    public override string ToString() =>
        $"#{Number} {Trigger} at {StartedAt:O}: {EventCount} events, {(HttpStatus?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "-")} {Error ?? Answer.ToString()} -> {StateAfter}";
}
