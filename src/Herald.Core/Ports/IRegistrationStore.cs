using Herald.Core.Registrations;

namespace Herald.Core.Ports;

/// <summary>Registrations as the API manages them.</summary>
public interface IRegistrationStore
{
    /// <summary>Stores a new registration with the hash of its callback key (the key itself is never stored).</summary>
    Task CreateAsync(Registration registration, byte[]? callbackKeyHash, CancellationToken cancellationToken);

    /// <summary>The tenant's registration, or null (also for another tenant's id and for deleted ones).</summary>
    Task<Registration?> GetAsync(string tenantId, string id, CancellationToken cancellationToken);

    /// <summary>The tenant's registrations among <paramref name="ids"/> (missing and deleted ones are left out), by id.</summary>
    Task<IReadOnlyDictionary<string, Registration>> GetManyAsync(string tenantId, IReadOnlyCollection<string> ids, CancellationToken cancellationToken);

    /// <summary>
    /// Saves the API-editable fields (token, topic, environment, style, folders, locale, status).
    /// Pending notifications of the registration follow a token change. Returns false if not found.
    /// </summary>
    Task<bool> UpdateAsync(Registration registration, CancellationToken cancellationToken);

    /// <summary>Marks the registration deleted (a tombstone that answers Unsubscribe) and drops its pending work.</summary>
    Task<bool> DeleteAsync(string tenantId, string id, DateTimeOffset now, CancellationToken cancellationToken);
}
