using Herald.Core.Registrations;

namespace Herald.Core.Ports;

/// <summary>The registrations of mailbox sources (EWS streaming, Graph, Dovecot), as their connectors need them.</summary>
public interface IMailboxDirectory
{
    /// <summary>Active registrations with a mailbox on the tenant's connector, ordered by id.</summary>
    Task<IReadOnlyList<Registration>> ListByConnectorAsync(string tenantId, string connector, CancellationToken cancellationToken);

    /// <summary>How many active registrations use the tenant's connector (a connector in use cannot be deleted).</summary>
    Task<int> CountByConnectorAsync(string tenantId, string connector, CancellationToken cancellationToken);
}
