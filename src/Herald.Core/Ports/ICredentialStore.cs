using Herald.Core.Credentials;
using Herald.Core.Registrations;

namespace Herald.Core.Ports;

/// <summary>
/// Per-tenant provider credentials (sealed with <see cref="Security.SecretBox"/>; metadata in clear) and the
/// tenants' feedback webhooks with their delivery outbox.
/// </summary>
public interface ICredentialStore
{
    /// <summary>Creates or replaces a tenant's credential for one platform; returns the stored record with its new version.</summary>
    /// <exception cref="InvalidOperationException">The tenant does not exist.</exception>
    Task<StoredCredential> PutCredentialAsync(StoredCredential credential, CancellationToken cancellationToken);

    /// <summary>A tenant's credential for a platform, or null.</summary>
    Task<StoredCredential?> GetCredentialAsync(string tenantId, Platform platform, CancellationToken cancellationToken);

    /// <summary>The credentials of a tenant, or of every tenant when <paramref name="tenantId"/> is null.</summary>
    Task<IReadOnlyList<StoredCredential>> ListCredentialsAsync(string? tenantId, CancellationToken cancellationToken);

    /// <summary>Deletes a tenant's credential for a platform; false when there was none.</summary>
    Task<bool> DeleteCredentialAsync(string tenantId, Platform platform, CancellationToken cancellationToken);

    /// <summary>A number that changes whenever any credential is put or deleted (nodes poll it to reload).</summary>
    Task<long> CredentialsStampAsync(CancellationToken cancellationToken);

    /// <summary>Makes a tenant's retrying notifications of a platform due at <paramref name="now"/> (a replaced credential resumes its backlog); returns how many.</summary>
    Task<int> ResumeBacklogAsync(string tenantId, Platform platform, DateTimeOffset now, CancellationToken cancellationToken);

    /// <summary>Sets a tenant's feedback webhook (URL and sealed secret).</summary>
    /// <exception cref="InvalidOperationException">The tenant does not exist.</exception>
    Task PutWebhookAsync(WebhookRecord webhook, CancellationToken cancellationToken);

    /// <summary>A tenant's webhook, or null.</summary>
    Task<WebhookRecord?> GetWebhookAsync(string tenantId, CancellationToken cancellationToken);

    /// <summary>Removes a tenant's webhook and its undelivered events; false when there was none.</summary>
    Task<bool> DeleteWebhookAsync(string tenantId, CancellationToken cancellationToken);

    /// <summary>
    /// Puts events on the outbox of the tenants that have a webhook (events of tenants without one are dropped);
    /// returns how many were stored.
    /// </summary>
    Task<int> EnqueueWebhookEventsAsync(IReadOnlyList<WebhookEvent> events, CancellationToken cancellationToken);

    /// <summary>Leases up to <paramref name="limit"/> due outbox events for <paramref name="lease"/>.</summary>
    Task<IReadOnlyList<WebhookDelivery>> ClaimWebhookEventsAsync(DateTimeOffset now, TimeSpan lease, int limit, CancellationToken cancellationToken);

    /// <summary>Records a delivery attempt: delivered (removed), retry at a time, or given up.</summary>
    Task CompleteWebhookEventAsync(long id, WebhookAttemptResult result, CancellationToken cancellationToken);

    /// <summary>The outbox events of a tenant (newest first), for the API and tests.</summary>
    Task<IReadOnlyList<WebhookDelivery>> ListWebhookEventsAsync(string tenantId, int limit, CancellationToken cancellationToken);
}
