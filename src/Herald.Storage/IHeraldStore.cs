using Herald.Core.Ports;

namespace Herald.Storage;

/// <summary>
/// One database behind all of Core's storage ports, plus the maintenance operations the host needs.
/// Every dialect (SQLite and PostgreSQL) implements this, and the contract tests run against it.
/// </summary>
public interface IHeraldStore
    : IIngestStore, INotificationQueue, IRegistrationStore, IAccessStore, ISettingsStore, IThrottleStore, IStoreAdmin,
      IConnectorStore, IMailboxDirectory, ICredentialStore, IGraphSubscriptionStore, ISharedTokenStore, IAsyncDisposable, IDisposable
{
    /// <summary>
    /// True when only one process can use the database (SQLite): every lease in it is then this
    /// process's, and the host releases them all at start-up with <see cref="DateTimeOffset.MaxValue"/>.
    /// </summary>
    bool IsSingleNode { get; }

    /// <summary>
    /// Deletes terminal notifications (sent, failed, expired, dead) completed before <paramref name="olderThan"/>, with their attempts,
    /// <paramref name="batchSize"/> rows per transaction so writers are never held up for long. Returns how many.
    /// </summary>
    Task<int> PurgeCompletedAsync(DateTimeOffset olderThan, int batchSize, CancellationToken cancellationToken);

    /// <summary>Revokes an API key (it stays stored, with its revocation time). False when unknown or already revoked.</summary>
    Task<bool> RevokeApiKeyAsync(string id, DateTimeOffset revokedAt, CancellationToken cancellationToken);
}
