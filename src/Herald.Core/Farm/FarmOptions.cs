using System.ComponentModel.DataAnnotations;

namespace Herald.Core.Farm;

/// <summary>
/// The <c>Herald:Farm</c> section: heartbeats, leadership and work leases. The defaults suit a farm on one
/// PostgreSQL database (a dead node's work moves within about 20 s) and cost a SQLite node a few writes a minute.
/// </summary>
public sealed class FarmOptions : IValidatableObject
{
    public const string Section = "Herald:Farm";

    /// <summary>How often a node records its heartbeat and load.</summary>
    public TimeSpan HeartbeatInterval { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>A node silent for longer is shown as down.</summary>
    public TimeSpan DownAfter { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Nodes silent for longer are removed from the node view by the leader.</summary>
    public TimeSpan ForgetAfter { get; set; } = TimeSpan.FromDays(1);

    /// <summary>
    /// Length of a lease (the leadership and every work item): another node may take the item this long after
    /// the holder's last renewal.
    /// </summary>
    public TimeSpan LeaseTtl { get; set; } = TimeSpan.FromSeconds(15);

    /// <summary>How often held leases are renewed: well inside <see cref="LeaseTtl"/>, so one failed renewal costs nothing.</summary>
    public TimeSpan RenewInterval { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// A holder stops acting this long before its lease could expire in the database (counted from when its last
    /// successful renewal was sent): it covers clock differences between nodes and a slow answer.
    /// </summary>
    public TimeSpan SafetyMargin { get; set; } = TimeSpan.FromSeconds(3);

    /// <summary>Sent and otherwise finished notifications are kept this long, then the leader purges them.</summary>
    public TimeSpan KeepCompleted { get; set; } = TimeSpan.FromDays(7);

    /// <summary>How often the leader purges finished notifications.</summary>
    public TimeSpan PurgeInterval { get; set; } = TimeSpan.FromMinutes(1);

    /// <summary>Rows purged per transaction.</summary>
    [Range(1, 100_000)]
    public int PurgeBatchSize { get; set; } = 1000;

    /// <summary>The longest a renewal may take before it counts as failed.</summary>
    internal TimeSpan RenewTimeout => LeaseTtl - SafetyMargin;

    /// <summary>How long a holder may act after sending a renewal that succeeded.</summary>
    internal TimeSpan ActFor => LeaseTtl - SafetyMargin;

    /// <inheritdoc />
    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (HeartbeatInterval <= TimeSpan.Zero || HeartbeatInterval >= DownAfter)
        {
            yield return new ValidationResult("Herald:Farm:HeartbeatInterval must be positive and shorter than DownAfter.", [nameof(HeartbeatInterval)]);
        }

        if (SafetyMargin <= TimeSpan.Zero || SafetyMargin >= LeaseTtl)
        {
            yield return new ValidationResult("Herald:Farm:SafetyMargin must be positive and shorter than LeaseTtl.", [nameof(SafetyMargin)]);
        }

        if (RenewInterval <= TimeSpan.Zero || RenewInterval * 2 > LeaseTtl - SafetyMargin)
        {
            yield return new ValidationResult("Herald:Farm:RenewInterval must be positive and at most half of LeaseTtl - SafetyMargin, so one failed renewal does not lose a lease.", [nameof(RenewInterval)]);
        }

        if (KeepCompleted < TimeSpan.Zero || PurgeInterval <= TimeSpan.Zero || ForgetAfter <= DownAfter)
        {
            yield return new ValidationResult("Herald:Farm: KeepCompleted must be at least 0, PurgeInterval positive, ForgetAfter longer than DownAfter.", [nameof(KeepCompleted)]);
        }
    }
}
