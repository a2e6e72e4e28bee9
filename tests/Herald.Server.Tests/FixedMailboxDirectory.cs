using Herald.Core.Ports;
using Herald.Core.Registrations;

namespace Herald.Server.Tests;

/// <summary>
/// A mailbox directory that lists <see cref="Registrations"/> for every connector (the Graph manager tests' store of
/// registrations); a test adds or removes registrations between passes.
/// </summary>
internal sealed class FixedMailboxDirectory(params Registration[] registrations) : IMailboxDirectory
{
    public List<Registration> Registrations { get; } = [.. registrations];

    public Task<IReadOnlyList<Registration>> ListByConnectorAsync(string tenantId, string connector, CancellationToken cancellationToken)
        => Task.FromResult<IReadOnlyList<Registration>>([.. Registrations]);

    public Task<int> CountByConnectorAsync(string tenantId, string connector, CancellationToken cancellationToken)
        => Task.FromResult(Registrations.Count);
}
