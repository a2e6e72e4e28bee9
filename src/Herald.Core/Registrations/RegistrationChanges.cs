namespace Herald.Core.Registrations;

/// <summary>
/// This node's notice that a mailbox source's registrations changed through the API (created, patched, deleted), so
/// the source's worker reconciles that connector at once instead of re-reading every registration on a timer.
/// In-process only: a change made through another node of a farm is not raised here, which is why the workers keep a
/// slow safety-net re-read (for EWS streaming <c>Herald:EwsStreaming:ReconcileInterval</c>).
/// </summary>
/// <remarks>
/// Raising is synchronous on the caller's thread and handlers must be cheap (mark the connector, set a wake-up);
/// a burst of changes to one connector coalesces in the handler, so one reconcile serves them all.
/// </remarks>
public sealed class RegistrationChanges
{
    /// <summary>Raised after a registration with a connector was stored, changed or deleted on this node.</summary>
    public event Action<RegistrationChange>? Changed;

    /// <summary>Announces a change of <paramref name="registration"/> (as stored, or as it was before a delete); no-op without a connector.</summary>
    public void Notify(Registration registration)
    {
        ArgumentNullException.ThrowIfNull(registration);
        if (registration.Connector is { } connector)
        {
            Changed?.Invoke(new RegistrationChange(registration.TenantId, registration.Source, connector));
        }
    }
}

/// <summary>Which connector's registrations changed.</summary>
/// <param name="TenantId">The tenant.</param>
/// <param name="Source">The registration's source (a worker ignores the sources it does not run).</param>
/// <param name="Connector">The connector's name.</param>
public readonly record struct RegistrationChange(string TenantId, SourceKind Source, string Connector);
