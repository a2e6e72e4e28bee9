using Herald.Core.Registrations;

namespace Herald.Core.Ports;

/// <summary>A registration to load in bulk, with the hash of its callback key (null for sources without one).</summary>
public sealed record BulkRegistration(Registration Registration, byte[]? CallbackKeyHash);

/// <summary>
/// Loads many registrations in one transaction (imports, migrations from another gateway, and the scale benchmark).
/// The API keeps creating them one by one through <see cref="IRegistrationStore.CreateAsync"/>.
/// </summary>
public interface IRegistrationBulkLoad
{
    /// <summary>Inserts every registration or none (a duplicate id or callback key fails the whole batch).</summary>
    Task CreateManyAsync(IReadOnlyList<BulkRegistration> registrations, CancellationToken cancellationToken);
}
