namespace Herald.Simulators.Graph;

/// <summary>Settings of <see cref="FakeGraphServer"/>.</summary>
public sealed class FakeGraphOptions
{
    /// <summary>TCP port on 127.0.0.1; 0 (the default) picks a free one.</summary>
    public int Port { get; set; }

    /// <summary>The directory (Entra ID) tenant id: the token URL's path segment and <c>tenantId</c> of notifications.</summary>
    public string TenantId { get; set; } = "8f1a5c3e-1b2d-4e6f-9a0b-7c8d9e0f1a2b";

    /// <summary><c>expires_in</c> of access tokens (Entra ID: about an hour); the API refuses them afterwards.</summary>
    public TimeSpan AccessTokenLifetime { get; set; } = TimeSpan.FromSeconds(3599);

    /// <summary>
    /// The longest lifetime a subscription may be asked for (Outlook resources: 10,080 minutes); later
    /// <c>expirationDateTime</c>s are refused with 400 as Graph does.
    /// </summary>
    public TimeSpan MaxSubscriptionLifetime { get; set; } = TimeSpan.FromMinutes(10080);

    /// <summary>
    /// When set, the server grants at most this lifetime and returns the shortened <c>expirationDateTime</c> (clients must
    /// renew by what is returned, not by what they asked for).
    /// </summary>
    public TimeSpan? GrantedLifetime { get; set; }

    /// <summary>How long the validation request may take (Graph: 10 seconds).</summary>
    public TimeSpan ValidationTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>How long a notification POST may take before Graph counts it as failed (Graph: 3 seconds).</summary>
    public TimeSpan NotificationTimeout { get; set; } = TimeSpan.FromSeconds(3);

    /// <summary>Delivery attempts of one notification, the first included (Graph retries undelivered ones for up to 4 hours).</summary>
    public int MaxDeliveryAttempts { get; set; } = 4;

    /// <summary>The wait before the first retry; doubled each time.</summary>
    public TimeSpan RetryDelay { get; set; } = TimeSpan.FromMilliseconds(500);

    /// <summary>Require https notification URLs (Graph does). Off by default: tests listen on plain http on 127.0.0.1.</summary>
    public bool RequireHttps { get; set; }
}
