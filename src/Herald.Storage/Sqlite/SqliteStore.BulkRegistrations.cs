using Herald.Core.Ports;

namespace Herald.Storage.Sqlite;

public sealed partial class SqliteStore : IRegistrationBulkLoad
{
    /// <inheritdoc />
    public Task CreateManyAsync(IReadOnlyList<BulkRegistration> registrations, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(registrations);
        return WriteAsync(
            s =>
            {
                var now = _time.GetUtcNow();
                var insert = InsertRegistrationStatement(s);
                foreach (var (registration, callbackKeyHash) in registrations)
                {
                    InsertRegistration(insert, registration, callbackKeyHash, now);
                }
            },
            cancellationToken);
    }
}
