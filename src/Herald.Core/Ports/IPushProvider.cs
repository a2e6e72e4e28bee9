using Herald.Core.Notifications;
using Herald.Core.Registrations;

namespace Herald.Core.Ports;

/// <summary>Delivers notifications to one push platform.</summary>
public interface IPushProvider
{
    Platform Platform { get; }

    /// <summary>
    /// Sends one notification. Never throws for provider or transport faults: they become a
    /// <see cref="PushResult"/> (transport faults are <see cref="PushOutcome.Retry"/>).
    /// </summary>
    ValueTask<PushResult> SendAsync(ClaimedNotification notification, CancellationToken cancellationToken);
}
