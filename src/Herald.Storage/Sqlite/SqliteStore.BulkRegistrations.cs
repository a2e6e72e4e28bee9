using Herald.Core.Ports;
using Microsoft.Data.Sqlite;

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
                var insert = s.Statement(
                    InsertRegistrationSql,
                    "@id", "@tenant_id", "@platform", "@token", "@topic", "@environment", "@source", "@style", "@folders", "@locale",
                    "@status", "@inactive_reason", "@inactive_at", "@subscription_id", "@previous_subscription_id", "@inbox_folder_id",
                    "@unread_count", "@created_at", "@updated_at", "@last_event_at", "@last_push_at", "@last_push_result", "@callback_key_hash",
                    "@connector", "@mailbox_hash", "@sealed_mailbox");
                foreach (var (registration, callbackKeyHash) in registrations)
                {
                    insert
                        .Set(0, registration.Id)
                        .Set(1, registration.TenantId)
                        .Set(2, (long)registration.Platform)
                        .Set(3, registration.Token)
                        .Set(4, registration.Topic)
                        .Set(5, (long)registration.Environment)
                        .Set(6, (long)registration.Source)
                        .Set(7, (long)registration.Style)
                        .Set(8, StorageJson.Serialize(registration.Folders ?? []))
                        .Set(9, registration.Locale)
                        .Set(10, (long)registration.Status)
                        .Set(11, registration.InactiveReason)
                        .Set(12, registration.InactiveAt)
                        .Set(13, registration.SubscriptionId)
                        .Set(14, registration.PreviousSubscriptionId)
                        .Set(15, registration.InboxFolderId)
                        .Set(16, registration.UnreadCount)
                        .Set(17, registration.CreatedAt == default ? now : registration.CreatedAt)
                        .Set(18, registration.UpdatedAt == default ? now : registration.UpdatedAt)
                        .Set(19, registration.LastEventAt)
                        .Set(20, registration.LastPushAt)
                        .Set(21, registration.LastPushResult)
                        .Set(22, callbackKeyHash)
                        .Set(23, registration.Connector)
                        .Set(24, registration.MailboxHash)
                        .Set(25, registration.SealedMailbox);
                    try
                    {
                        insert.Execute();
                    }
                    catch (SqliteException ex) when (ex.SqliteErrorCode == SqliteConstraint)
                    {
                        throw ex.SqliteExtendedErrorCode == SqliteConstraintForeignKey
                            ? new InvalidOperationException($"Registration {registration.Id}: tenant '{registration.TenantId}' does not exist.", ex)
                            : new StoreConflictException($"A registration with id '{registration.Id}' or the same callback key already exists.", ex);
                    }
                }
            },
            cancellationToken);
    }
}
