namespace Herald.Storage.Sqlite;

public sealed partial class SqliteStore
{
    // Only the owner's rows still being sent: a lease that was reaped is no longer the owner's.
    private const string RenewLeasesSql = """
        UPDATE notifications SET lease_until = @lease_until
        WHERE id IN (SELECT value FROM json_each(@ids)) AND lease_owner = @owner AND state = 1
        """;

    /// <inheritdoc />
    public Task<int> RenewLeasesAsync(string owner, IReadOnlyList<long> ids, DateTimeOffset until, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrEmpty(owner);
        ArgumentNullException.ThrowIfNull(ids);
        if (ids.Count == 0)
        {
            return Task.FromResult(0);
        }

        var json = "[" + string.Join(',', ids) + "]";
        return WriteAsync(s => s.Statement(RenewLeasesSql, "@lease_until", "@ids", "@owner").Set(0, until).Set(1, json).Set(2, owner).Execute(), cancellationToken, relaxed: true);
    }
}
