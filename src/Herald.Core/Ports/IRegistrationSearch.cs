using Herald.Core.Registrations;

namespace Herald.Core.Ports;

/// <summary>What a registration search asks for: one tenant, optionally one token fingerprint, a page after an id.</summary>
/// <param name="TenantId">The tenant searched (a search never crosses tenants).</param>
/// <param name="Fingerprint">Only registrations whose token has this <see cref="Security.TokenFingerprint"/>; null: all.</param>
/// <param name="After">Only ids after this one (the previous page's last id); null: from the start.</param>
/// <param name="Limit">At most this many (1 or more).</param>
public sealed record RegistrationQuery(string TenantId, uint? Fingerprint, string? After, int Limit);

/// <summary>Lists a tenant's registrations (deleted ones left out), by id, optionally by token fingerprint.</summary>
public interface IRegistrationSearch
{
    /// <summary>The registrations matching <paramref name="query"/>, ordered by id.</summary>
    Task<IReadOnlyList<Registration>> SearchRegistrationsAsync(RegistrationQuery query, CancellationToken cancellationToken);
}
