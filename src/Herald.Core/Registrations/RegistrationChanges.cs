namespace Herald.Core.Registrations;

/// <summary>
/// This node's notice that a mailbox source's registrations changed (created, patched, deleted, deactivated), so the
/// source's worker reconciles that connector at once instead of re-reading every registration on a timer. Raised by
/// the API for changes made through this node and, in a farm, for changes committed through any node
/// (<see cref="Ports.IRegistrationChangeFeed"/>, PostgreSQL LISTEN/NOTIFY, wired by the server): a node's own change
/// may then arrive twice, which the handlers coalesce. The workers keep a slow safety-net re-read (for EWS streaming
/// <c>Herald:EwsStreaming:ReconcileInterval</c>) for what a hint can miss.
/// </summary>
/// <remarks>
/// Raising is synchronous on the caller's thread and handlers must be cheap (mark the connector, set a wake-up);
/// a burst of changes to one connector coalesces in the handler, so one reconcile serves them all.
/// </remarks>
public sealed class RegistrationChanges
{
    /// <summary>Raised after a registration with a connector was stored, changed or deleted.</summary>
    public event Action<RegistrationChange>? Changed;

    /// <summary>Raised when changes may have been missed (the cross-node feed reconnected): re-read every connector once.</summary>
    public event Action? AllChanged;

    /// <summary>Announces a change of <paramref name="registration"/> (as stored, or as it was before a delete); no-op without a connector.</summary>
    public void Notify(Registration registration)
    {
        ArgumentNullException.ThrowIfNull(registration);
        if (registration.Connector is { } connector)
        {
            Changed?.Invoke(new RegistrationChange(registration.TenantId, registration.Source, connector));
        }
    }

    /// <summary>Announces a change another node made (or this node's, heard back from the database).</summary>
    public void Notify(RegistrationChange change) => Changed?.Invoke(change);

    /// <summary>Announces that changes may have been missed: every connector's registrations are to be re-read.</summary>
    public void NotifyAll() => AllChanged?.Invoke();
}

/// <summary>Which connector's registrations changed.</summary>
/// <param name="TenantId">The tenant.</param>
/// <param name="Source">The registration's source (a worker ignores the sources it does not run).</param>
/// <param name="Connector">The connector's name.</param>
public readonly record struct RegistrationChange(string TenantId, SourceKind Source, string Connector);
