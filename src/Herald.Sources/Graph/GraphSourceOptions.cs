using System.ComponentModel.DataAnnotations;

namespace Herald.Sources.Graph;

/// <summary>Settings of the Microsoft Graph source (<c>Herald:Graph</c>).</summary>
public sealed class GraphSourceOptions
{
    /// <summary>The configuration section.</summary>
    public const string Section = "Herald:Graph";

    /// <summary>
    /// The lifetime asked for on create and renew. Graph may grant less: renewals are planned from the
    /// <c>expirationDateTime</c> it returns, never from this value.
    /// </summary>
    public TimeSpan RequestedLifetime { get; set; } = TimeSpan.FromMinutes(4230);

    /// <summary>How often subscriptions are checked against registrations (new mailboxes, removed ones) at least.</summary>
    public TimeSpan ReconcileInterval { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>How long a processed <c>created</c> notification still absorbs Graph's retries of it.</summary>
    public TimeSpan DedupWindow { get; set; } = TimeSpan.FromHours(4);

    /// <summary>How long a node holds a subscription or a claimed notification before another may take it.</summary>
    public TimeSpan LeaseDuration { get; set; } = TimeSpan.FromMinutes(2);

    /// <summary>Notifications claimed per pass of the worker.</summary>
    [Range(1, 10_000)]
    public int BatchSize { get; set; } = 500;

    /// <summary>The change types subscribed to.</summary>
    public string ChangeType { get; set; } = "created,updated";
}
