using Herald.Core.Notifications;
using Herald.Core.Registrations;

namespace Herald.Core.Ports;

/// <summary>The decision for one registration and one ingest item.</summary>
public readonly record struct IngestDecision(IngestVerdict Verdict, bool RegistrationChanged, NewNotification? Notification);

/// <summary>
/// Turns mailbox events into notifications. Called by the store inside its transaction, so it must be
/// pure and fast: it may mutate the registration's state fields (subscription binding, unread count),
/// which the store then persists.
/// </summary>
public interface IIngestPlanner
{
    IngestDecision Plan(Registration registration, IngestItem item);
}
