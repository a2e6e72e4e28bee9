namespace Herald.Simulators.Graph;

/// <summary>A subscription as the fake Graph holds it.</summary>
public sealed record FakeGraphSubscription
{
    public required string Id { get; init; }
    public required string Resource { get; init; }

    /// <summary>The user id the resource names, lower-cased.</summary>
    public required string UserId { get; init; }

    public required string ChangeType { get; init; }
    public required string NotificationUrl { get; init; }
    public string? LifecycleNotificationUrl { get; init; }
    public string? ClientState { get; init; }
    public required DateTimeOffset ExpirationDateTime { get; init; }
    public required string ApplicationId { get; init; }

    /// <summary>Set by a <c>reauthorizationRequired</c> lifecycle event until the client reauthorizes or renews.</summary>
    public bool NeedsReauthorization { get; init; }

    /// <summary>PATCH renewals so far.</summary>
    public int Renewals { get; init; }
}

/// <summary>One validation request the fake Graph sent (<c>POST {url}?validationToken=…</c>).</summary>
public sealed record FakeGraphValidation(string Url, string Token, int Status, string? ContentType, string? Body, TimeSpan Elapsed, bool Passed, string? Failure);

/// <summary>One POST of a change or lifecycle notification to a client.</summary>
public sealed record FakeGraphDelivery(string SubscriptionId, string Url, string Kind, int Attempt, int Status, TimeSpan Elapsed, string Body);

/// <summary>A message in a fake mailbox.</summary>
public sealed record FakeGraphMessage(string Id, string Subject, string FromName, string FromAddress, DateTimeOffset ReceivedAt, bool IsRead);
