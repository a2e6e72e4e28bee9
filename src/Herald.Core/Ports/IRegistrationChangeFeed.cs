using Herald.Core.Registrations;

namespace Herald.Core.Ports;

/// <summary>
/// A store shared by several nodes that tells each node about registration changes committed through any node (its
/// own included), so the mailbox sources' workers react to them at once rather than at their safety-net re-read. A
/// hint only: a change may arrive late, twice, or (while the feed reconnects) not at all, which
/// <see cref="RegistrationChangesMissed"/> announces. A single-node store (SQLite) does not implement it: the node's
/// own <see cref="RegistrationChanges"/> sees every change.
/// </summary>
public interface IRegistrationChangeFeed
{
    /// <summary>
    /// Raised (on a background thread; handlers must be cheap) for each committed change of a registration with a
    /// connector: created, changed in what its source's worker reads (status, token, style, folders, mailbox...), deleted
    /// or deactivated. Subscribing the first handler may open the feed's connection.
    /// </summary>
    event Action<RegistrationChange>? RegistrationChanged;

    /// <summary>
    /// Raised (on a background thread) whenever the feed (re)connects, and for a change it cannot name: changes may have
    /// been missed, so every connector's registrations should be re-read once.
    /// </summary>
    event Action? RegistrationChangesMissed;
}
