using Herald.Core.Events;
using Herald.Core.Notifications;
using Herald.Core.Planning;
using Herald.Core.Ports;
using Herald.Core.Registrations;
using Herald.Core.Security;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;
using Xunit;

namespace Herald.Storage.Tests;

/// <summary>
/// The behaviour every <see cref="IHeraldStore"/> must have, whatever the database. A dialect's test class
/// derives from this and says how to open a fresh database and how to reopen it.
/// </summary>
public abstract partial class StoreContractTests : IAsyncLifetime
{
    protected const string Tenant = "default";
    protected const string Owner = "node-a/1";
    protected const string OtherOwner = "node-b/2";
    protected static readonly TimeSpan Lease = TimeSpan.FromMinutes(2);

    protected StoreContractTests()
    {
        Planner = new MailEventPlanner(Options.Create(new PlannerOptions()));
    }

    protected FakeTimeProvider Time { get; } = new(new DateTimeOffset(2025, 3, 1, 8, 0, 0, TimeSpan.Zero));

    protected MailEventPlanner Planner { get; }

    protected IHeraldStore Store { get; set; } = null!;

    protected static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>Opens a store on a new, empty database (not yet migrated).</summary>
    protected abstract IHeraldStore CreateStore(TimeProvider time);

    /// <summary>Opens another store on the database of the last <see cref="CreateStore"/> (the previous one is disposed).</summary>
    protected abstract IHeraldStore ReopenStore(TimeProvider time);

    /// <summary>Removes the database after the test.</summary>
    protected abstract ValueTask DeleteDatabaseAsync();

    public async ValueTask InitializeAsync()
    {
        Store = CreateStore(Time);
        await Store.MigrateAsync(Ct);
    }

    public async ValueTask DisposeAsync()
    {
        await Store.DisposeAsync();
        await DeleteDatabaseAsync();
        GC.SuppressFinalize(this);
    }

    protected async Task ReopenAsync()
    {
        await Store.DisposeAsync();
        Store = ReopenStore(Time);
        await Store.MigrateAsync(Ct);
    }

    // ---- schema -------------------------------------------------------------------------------

    [Fact]
    public async Task Migrate_RunTwiceMore_IsIdempotentAndCreatesDefaultTenant()
    {
        await Store.MigrateAsync(Ct);
        await Store.MigrateAsync(Ct);

        var tenant = await Store.GetTenantAsync(Tenant, Ct);
        Assert.NotNull(tenant);
        Assert.Equal(Tenant, tenant.Id);
        Assert.True(await Store.PingAsync(Ct));
    }

    // ---- ingest -------------------------------------------------------------------------------

    [Fact]
    public async Task Ingest_UnknownCallbackKey_AnswersUnsubscribe()
    {
        var item = NewMailItem("cb_unknown");

        await Store.ApplyIngestBatchAsync([item], Planner, Ct);

        Assert.Equal(IngestVerdict.Unsubscribe, item.Verdict);
        Assert.Equal(0, item.Enqueued);
        var snapshot = await Store.SnapshotAsync(Time.GetUtcNow(), Ct);
        Assert.Empty(snapshot.Counts);
        Assert.Null(await Store.NextDueAsync(Ct));
    }

    [Fact]
    public async Task Ingest_NewMail_AcceptedWithOneQueuedBadge()
    {
        var registration = await CreateRegistrationAsync("reg-1", "cb_one");
        var received = Time.GetUtcNow();
        var item = NewMailItem("cb_one", subscriptionId: "sub-1");

        await Store.ApplyIngestBatchAsync([item], Planner, Ct);

        Assert.Equal(IngestVerdict.Accepted, item.Verdict);
        Assert.Equal(1, item.Enqueued);
        var snapshot = await Store.SnapshotAsync(Time.GetUtcNow(), Ct);
        Assert.Equal(1, Count(snapshot, Lane.Priority, NotificationState.Queued));
        Assert.Equal(received, snapshot.OldestQueuedAt);

        var claimed = Assert.Single(await Store.ClaimAsync(Owner, Both(10), Time.GetUtcNow(), Lease, Ct));
        Assert.Equal("reg-1", claimed.RegistrationId);
        Assert.Equal(Tenant, claimed.TenantId);
        Assert.Equal(registration.Token, claimed.Token);
        Assert.Equal(registration.Topic, claimed.Topic);
        Assert.Equal(PushKind.Badge, claimed.Content.Kind);
        Assert.Equal(1, claimed.Content.Badge);
        Assert.Equal("herald-mail", claimed.CollapseId);
        Assert.Equal(received, claimed.EventAt);
        Assert.Equal(received + TimeSpan.FromHours(24), claimed.ExpiresAt);
        Assert.Equal(1, claimed.Attempt);
        Assert.NotEqual(Guid.Empty, claimed.MessageId);

        var stored = await Store.GetAsync(Tenant, "reg-1", Ct);
        Assert.NotNull(stored);
        Assert.Equal("sub-1", stored.SubscriptionId);
        Assert.Equal("inbox-folder", stored.InboxFolderId);
        Assert.Equal(1, stored.UnreadCount);
        Assert.Equal(received, stored.LastEventAt);
    }

    [Fact]
    public async Task Ingest_SeveralItemsForOneRegistrationInOneBatch_CoalescesToLatestBadgeInOrder()
    {
        await CreateRegistrationAsync("reg-1", "cb_one");
        var first = NewMailItem("cb_one");
        Time.Advance(TimeSpan.FromMilliseconds(5));
        var folder = FolderUnreadItem("cb_one", unread: 7);
        Time.Advance(TimeSpan.FromMilliseconds(5));
        var last = NewMailItem("cb_one");

        await Store.ApplyIngestBatchAsync([first, folder, last], Planner, Ct);

        Assert.All([first, folder, last], i => Assert.Equal(IngestVerdict.Accepted, i.Verdict));
        Assert.All([first, folder, last], i => Assert.Equal(1, i.Enqueued));
        var snapshot = await Store.SnapshotAsync(Time.GetUtcNow(), Ct);
        Assert.Equal(1, Count(snapshot, Lane.Priority, NotificationState.Queued));

        // In order: 1 new mail, then Exchange says 7 unread, then one more new mail = 8.
        var claimed = Assert.Single(await Store.ClaimAsync(Owner, Both(10), Time.GetUtcNow(), Lease, Ct));
        Assert.Equal(8, claimed.Content.Badge);
        Assert.Equal(first.ReceivedAt, claimed.EventAt); // latency counts from the first waiting event
        Assert.Equal(last.ReceivedAt + TimeSpan.FromHours(24), claimed.ExpiresAt);
        Assert.Equal(8, (await Store.GetAsync(Tenant, "reg-1", Ct))!.UnreadCount);
    }

    [Fact]
    public async Task Ingest_BadgeUpdateAfterPendingAlert_KeepsTheAlertWithTheNewBadge()
    {
        await CreateRegistrationAsync("reg-1", "cb_one", NotificationStyle.Generic);

        await IngestAsync(NewMailItem("cb_one"));
        await IngestAsync(FolderUnreadItem("cb_one", unread: 4));

        var claimed = Assert.Single(await Store.ClaimAsync(Owner, Both(10), Time.GetUtcNow(), Lease, Ct));
        Assert.Equal(PushKind.Alert, claimed.Content.Kind);
        Assert.Equal("New mail", claimed.Content.Body);
        Assert.Equal(4, claimed.Content.Badge);
    }

    [Fact]
    public async Task Ingest_RegistrationsOfSeveralKeysInOneBatch_EachGetsItsVerdict()
    {
        await CreateRegistrationAsync("reg-1", "cb_one");
        await CreateRegistrationAsync("reg-2", "cb_two");
        var items = new[] { NewMailItem("cb_one"), NewMailItem("cb_nobody"), NewMailItem("cb_two"), NewMailItem("cb_one") };

        await Store.ApplyIngestBatchAsync(items, Planner, Ct);

        Assert.Equal([IngestVerdict.Accepted, IngestVerdict.Unsubscribe, IngestVerdict.Accepted, IngestVerdict.Accepted], items.Select(i => i.Verdict));
        var claimed = await Store.ClaimAsync(Owner, Both(10), Time.GetUtcNow(), Lease, Ct);
        Assert.Equal(2, claimed.Count);
        Assert.Equal(2, claimed.Single(c => c.RegistrationId == "reg-1").Content.Badge);
        Assert.Equal(1, claimed.Single(c => c.RegistrationId == "reg-2").Content.Badge);
    }

    [Fact]
    public async Task Ingest_NewerSubscription_IsBoundAndTheReplacedOneAnswersUnsubscribe()
    {
        await CreateRegistrationAsync("reg-1", "cb_one");
        await IngestAsync(NewMailItem("cb_one", subscriptionId: "sub-old"));
        await IngestAsync(NewMailItem("cb_one", subscriptionId: "sub-new"));

        var stale = NewMailItem("cb_one", subscriptionId: "sub-old");
        await Store.ApplyIngestBatchAsync([stale], Planner, Ct);

        Assert.Equal(IngestVerdict.Unsubscribe, stale.Verdict);
        Assert.Equal(0, stale.Enqueued);
        var stored = await Store.GetAsync(Tenant, "reg-1", Ct);
        Assert.Equal("sub-new", stored!.SubscriptionId);
        Assert.Equal("sub-old", stored.PreviousSubscriptionId);
        Assert.Equal(2, stored.UnreadCount);
    }

    [Fact]
    public async Task Ingest_PlannerThrowsMidBatch_StoresNothing()
    {
        await CreateRegistrationAsync("reg-1", "cb_one");
        var first = NewMailItem("cb_one", subscriptionId: "sub-1");
        var second = NewMailItem("cb_one", subscriptionId: "sub-1");
        var planner = new ThrowingPlanner(Planner, throwOnCall: 2);

        await Assert.ThrowsAsync<InvalidOperationException>(() => Store.ApplyIngestBatchAsync([first, second], planner, Ct));

        Assert.Equal(IngestVerdict.Pending, first.Verdict);
        Assert.Equal(0, first.Enqueued);
        Assert.Empty((await Store.SnapshotAsync(Time.GetUtcNow(), Ct)).Counts);
        var stored = await Store.GetAsync(Tenant, "reg-1", Ct);
        Assert.NotNull(stored);
        Assert.Null(stored.SubscriptionId);
        Assert.Null(stored.UnreadCount);
        Assert.Null(stored.LastEventAt);

        // The store is still usable: the same items go through on their own.
        await Store.ApplyIngestBatchAsync([first, second], Planner, Ct);
        Assert.Equal(IngestVerdict.Accepted, second.Verdict);
    }

    // ---- coalescing ---------------------------------------------------------------------------

    [Fact]
    public async Task Enqueue_SameKeyWhilePending_ReplacesTheRow()
    {
        var firstAt = Time.GetUtcNow();
        var first = await Store.EnqueueAsync([Badge(1, "k1", eventAt: firstAt)], Ct);
        Time.Advance(TimeSpan.FromSeconds(1));
        var second = await Store.EnqueueAsync([Badge(2, "k1", token: "newtoken", eventAt: Time.GetUtcNow())], Ct);

        Assert.Equal(first, second);
        var claimed = Assert.Single(await Store.ClaimAsync(Owner, Both(10), Time.GetUtcNow(), Lease, Ct));
        Assert.Equal(2, claimed.Content.Badge);
        Assert.Equal("newtoken", claimed.Token);
        Assert.Equal(firstAt, claimed.EventAt);
    }

    [Fact]
    public async Task Enqueue_SameKeyInOneCall_KeepsOnePendingRow()
    {
        var ids = await Store.EnqueueAsync([Badge(1, "k1"), Badge(2, "k1"), Badge(3, "k2")], Ct);

        Assert.Equal(ids[0], ids[1]);
        Assert.NotEqual(ids[0], ids[2]);
        var snapshot = await Store.SnapshotAsync(Time.GetUtcNow(), Ct);
        Assert.Equal(2, Count(snapshot, Lane.Standard, NotificationState.Queued));
    }

    [Fact]
    public async Task Enqueue_SameKeyWhileSending_InsertsASecondRow()
    {
        var first = (await Store.EnqueueAsync([Badge(1, "k1")], Ct))[0];
        var sending = Assert.Single(await Store.ClaimAsync(Owner, Both(10), Time.GetUtcNow(), Lease, Ct));

        var second = (await Store.EnqueueAsync([Badge(2, "k1")], Ct))[0];

        Assert.NotEqual(first, second);
        Assert.Equal(1, sending.Content.Badge);
        Assert.Equal(NotificationState.Sending, (await Store.GetNotificationAsync(first, Ct))!.State);
        Assert.Equal(NotificationState.Queued, (await Store.GetNotificationAsync(second, Ct))!.State);
    }

    [Fact]
    public async Task Claim_RowWhoseKeyIsBeingSent_WaitsForThatSend()
    {
        await Store.EnqueueAsync([Badge(1, "k1")], Ct);
        var sending = Assert.Single(await Store.ClaimAsync(Owner, Both(10), Time.GetUtcNow(), Lease, Ct));
        var second = (await Store.EnqueueAsync([Badge(2, "k1"), Badge(7, "k2")], Ct))[0];

        // One push per key in flight: the device never sees badge 1 arrive after badge 2.
        var other = Assert.Single(await Store.ClaimAsync(Owner, Both(10), Time.GetUtcNow(), Lease, Ct));
        Assert.Equal(7, other.Content.Badge);

        await Store.CompleteAsync(Owner, [Sent(sending)], Ct);
        var next = Assert.Single(await Store.ClaimAsync(Owner, Both(10), Time.GetUtcNow(), Lease, Ct));
        Assert.Equal(second, next.Id);
        Assert.Equal(2, next.Content.Badge);
    }

    [Fact]
    public async Task Enqueue_SameKeyWhileRetrying_ReplacesTheContentAndKeepsTheTokensBackoff()
    {
        var id = (await Store.EnqueueAsync([Badge(1, "k1")], Ct))[0];
        var claimed = Assert.Single(await Store.ClaimAsync(Owner, Both(10), Time.GetUtcNow(), Lease, Ct));
        var retryAt = Time.GetUtcNow() + TimeSpan.FromSeconds(30);
        await Store.CompleteAsync(Owner, [Retry(claimed, retryAt, status: 429)], Ct);

        var replaced = (await Store.EnqueueAsync([Badge(5, "k1")], Ct))[0];

        Assert.Equal(id, replaced);
        var record = await Store.GetNotificationAsync(id, Ct);
        Assert.NotNull(record);
        Assert.Equal(NotificationState.Retrying, record.State);
        Assert.Equal(0, record.Attempts);
        Assert.Equal(retryAt, record.DueAt); // new mail does not jump the provider's Retry-After
        Assert.Empty(await Store.ClaimAsync(Owner, Both(10), Time.GetUtcNow(), Lease, Ct));

        Time.Advance(TimeSpan.FromSeconds(30));
        var again = Assert.Single(await Store.ClaimAsync(Owner, Both(10), Time.GetUtcNow(), Lease, Ct));
        Assert.Equal(5, again.Content.Badge);
        Assert.Equal(1, again.Attempt);
    }

    [Fact]
    public async Task Enqueue_SameKeyWhileRetryingForANewToken_IsDueNow()
    {
        var id = (await Store.EnqueueAsync([Badge(1, "k1")], Ct))[0];
        var claimed = Assert.Single(await Store.ClaimAsync(Owner, Both(10), Time.GetUtcNow(), Lease, Ct));
        await Store.CompleteAsync(Owner, [Retry(claimed, Time.GetUtcNow() + TimeSpan.FromHours(1))], Ct);

        Assert.Equal(id, (await Store.EnqueueAsync([Badge(5, "k1", token: "rotated-token")], Ct))[0]);

        var record = await Store.GetNotificationAsync(id, Ct);
        Assert.Equal(NotificationState.Queued, record!.State);
        Assert.Equal(Time.GetUtcNow(), record.DueAt);
        var again = Assert.Single(await Store.ClaimAsync(Owner, Both(10), Time.GetUtcNow(), Lease, Ct));
        Assert.Equal("rotated-token", again.Token);
        Assert.Equal(5, again.Content.Badge);
    }

    [Fact]
    public async Task Complete_RetryWhileNewerRowPending_FoldsIntoThePendingRow()
    {
        await CreateRegistrationAsync("reg-1", "cb_one", NotificationStyle.Generic);
        await IngestAsync(NewMailItem("cb_one"));
        var alert = Assert.Single(await Store.ClaimAsync(Owner, Both(10), Time.GetUtcNow(), Lease, Ct));
        await IngestAsync(FolderUnreadItem("cb_one", unread: 6)); // a badge-only row while the alert is out

        var retryAt = Time.GetUtcNow() + TimeSpan.FromSeconds(30);
        Assert.Equal(1, await Store.CompleteAsync(Owner, [Retry(alert, retryAt, status: 429)], Ct));

        var folded = await Store.GetNotificationAsync(alert.Id, Ct);
        Assert.Equal(NotificationState.Failed, folded!.State);
        Assert.Equal("Coalesced", folded.LastReason);
        Assert.Equal(1, Count(await Store.SnapshotAsync(Time.GetUtcNow(), Ct), Lane.Priority, NotificationState.Retrying));
        Assert.Equal(retryAt, await Store.NextDueAsync(Ct)); // the same token waits out the Retry-After
        Assert.Empty(await Store.ClaimAsync(Owner, Both(10), Time.GetUtcNow(), Lease, Ct));

        Time.Advance(TimeSpan.FromSeconds(30));
        var pending = Assert.Single(await Store.ClaimAsync(Owner, Both(10), Time.GetUtcNow(), Lease, Ct));
        Assert.Equal(PushKind.Alert, pending.Content.Kind); // the alert is not lost to the later badge
        Assert.Equal(6, pending.Content.Badge);
        Assert.Equal(alert.EventAt, pending.EventAt);
    }

    // ---- claim, complete, leases --------------------------------------------------------------

    [Fact]
    public async Task Claim_LeasesRowsWithOwnerAndAttempt_PriorityLaneFirst()
    {
        var standard = await Store.EnqueueAsync([Badge(1, lane: Lane.Standard), Badge(2, lane: Lane.Standard)], Ct);
        Time.Advance(TimeSpan.FromSeconds(1));
        var priority = await Store.EnqueueAsync([Badge(3, lane: Lane.Priority), Badge(4, lane: Lane.Priority)], Ct);

        var claimed = await Store.ClaimAsync(Owner, new ClaimLimits(Priority: 2, Standard: 1), Time.GetUtcNow(), Lease, Ct);

        Assert.Equal([priority[0], priority[1], standard[0]], claimed.Select(c => c.Id));
        Assert.All(claimed, c => Assert.Equal(1, c.Attempt));
        var record = await Store.GetNotificationAsync(priority[0], Ct);
        Assert.Equal(NotificationState.Sending, record!.State);
        Assert.Equal(1, record.Attempts);

        var rest = await Store.ClaimAsync(OtherOwner, Both(10), Time.GetUtcNow(), Lease, Ct);
        Assert.Equal([standard[1]], rest.Select(c => c.Id));
        Assert.Empty(await Store.ClaimAsync(OtherOwner, Both(10), Time.GetUtcNow(), Lease, Ct));
    }

    [Fact]
    public async Task Claim_MessageId_IsStableAcrossAttempts()
    {
        await Store.EnqueueAsync([Badge(1), Badge(2)], Ct);
        var claimed = await Store.ClaimAsync(Owner, Both(10), Time.GetUtcNow(), Lease, Ct);
        Assert.NotEqual(claimed[0].MessageId, claimed[1].MessageId);
        Assert.All(claimed, c => Assert.Equal(4, c.MessageId.Version)); // random UUIDs (APNs apns-id)
        Assert.All(claimed, c => Assert.Equal(0x8, c.MessageId.Variant & 0xC));
        await Store.CompleteAsync(Owner, [Retry(claimed[0], Time.GetUtcNow())], Ct);

        var again = Assert.Single(await Store.ClaimAsync(Owner, Both(10), Time.GetUtcNow(), Lease, Ct));

        Assert.Equal(claimed[0].Id, again.Id);
        Assert.Equal(claimed[0].MessageId, again.MessageId);
        Assert.Equal(2, again.Attempt);
    }

    [Fact]
    public async Task Complete_Retrying_IsNotClaimableBeforeDue()
    {
        await Store.EnqueueAsync([Badge(1)], Ct);
        var claimed = Assert.Single(await Store.ClaimAsync(Owner, Both(10), Time.GetUtcNow(), Lease, Ct));
        var retryAt = Time.GetUtcNow() + TimeSpan.FromSeconds(30);
        Assert.Equal(1, await Store.CompleteAsync(Owner, [Retry(claimed, retryAt, status: 503)], Ct));

        Assert.Empty(await Store.ClaimAsync(Owner, Both(10), Time.GetUtcNow(), Lease, Ct));
        Assert.Equal(retryAt, await Store.NextDueAsync(Ct));
        var record = await Store.GetNotificationAsync(claimed.Id, Ct);
        Assert.Equal(NotificationState.Retrying, record!.State);
        Assert.Equal(503, record.LastStatus);

        Time.Advance(TimeSpan.FromSeconds(30));
        var again = Assert.Single(await Store.ClaimAsync(Owner, Both(10), Time.GetUtcNow(), Lease, Ct));
        Assert.Equal(2, again.Attempt);
    }

    [Fact]
    public async Task Complete_OtherOwner_IsIgnored()
    {
        await Store.EnqueueAsync([Badge(1)], Ct);
        var claimed = Assert.Single(await Store.ClaimAsync(Owner, Both(10), Time.GetUtcNow(), Lease, Ct));

        Assert.Equal(0, await Store.CompleteAsync(OtherOwner, [Sent(claimed)], Ct));
        Assert.Equal(NotificationState.Sending, (await Store.GetNotificationAsync(claimed.Id, Ct))!.State);

        Assert.Equal(1, await Store.CompleteAsync(Owner, [Sent(claimed)], Ct));
        var record = await Store.GetNotificationAsync(claimed.Id, Ct);
        Assert.Equal(NotificationState.Sent, record!.State);
        Assert.Equal(Time.GetUtcNow(), record.SentAt);
        Assert.Equal(200, record.LastStatus);

        Assert.Equal(0, await Store.CompleteAsync(Owner, [Sent(claimed)], Ct)); // only once
    }

    [Fact]
    public async Task ReleaseExpiredLeases_ExpiredLease_BecomesClaimableAndFencesTheOldOwner()
    {
        await Store.EnqueueAsync([Badge(1)], Ct);
        var claimed = Assert.Single(await Store.ClaimAsync(Owner, Both(10), Time.GetUtcNow(), Lease, Ct));

        Time.Advance(TimeSpan.FromMinutes(1));
        Assert.Equal(0, await Store.ReleaseExpiredLeasesAsync(Time.GetUtcNow(), Ct));
        Time.Advance(TimeSpan.FromMinutes(2));
        Assert.Equal(1, await Store.ReleaseExpiredLeasesAsync(Time.GetUtcNow(), Ct));

        var record = await Store.GetNotificationAsync(claimed.Id, Ct);
        Assert.Equal(NotificationState.Retrying, record!.State);
        Assert.Equal(Time.GetUtcNow(), record.DueAt);
        var again = Assert.Single(await Store.ClaimAsync(OtherOwner, Both(10), Time.GetUtcNow(), Lease, Ct));
        Assert.Equal(2, again.Attempt);
        Assert.Equal(0, await Store.CompleteAsync(Owner, [Sent(claimed)], Ct)); // the crashed owner's late answer
        Assert.Equal(1, await Store.CompleteAsync(OtherOwner, [Sent(again)], Ct));
    }

    [Fact]
    public async Task ReleaseExpiredLeases_MaxValue_ReleasesEveryLeaseDueNow()
    {
        await Store.EnqueueAsync([Badge(1), Badge(2)], Ct);
        var claimed = await Store.ClaimAsync(Owner, Both(10), Time.GetUtcNow(), Lease, Ct);

        Assert.Equal(2, await Store.ReleaseExpiredLeasesAsync(DateTimeOffset.MaxValue, Ct));

        var record = await Store.GetNotificationAsync(claimed[0].Id, Ct);
        Assert.Equal(NotificationState.Retrying, record!.State);
        Assert.Equal(Time.GetUtcNow(), record.DueAt);
        Assert.Equal(2, (await Store.ClaimAsync(OtherOwner, Both(10), Time.GetUtcNow(), Lease, Ct)).Count);
    }

    [Fact]
    public async Task Complete_Sent_RecordsTheRegistrationsLastPush()
    {
        await CreateRegistrationAsync("reg-1", "cb_one");
        await IngestAsync(NewMailItem("cb_one"));
        var claimed = Assert.Single(await Store.ClaimAsync(Owner, Both(10), Time.GetUtcNow(), Lease, Ct));
        Time.Advance(TimeSpan.FromMilliseconds(40));

        await Store.CompleteAsync(Owner, [Sent(claimed)], Ct);

        var registration = await Store.GetAsync(Tenant, "reg-1", Ct);
        Assert.Equal(Time.GetUtcNow(), registration!.LastPushAt);
        Assert.Equal("sent 200", registration.LastPushResult);
    }

    [Fact]
    public async Task Complete_TokenInvalid_DeactivatesRegistrationAndFailsItsPendingRows()
    {
        await CreateRegistrationAsync("reg-1", "cb_one");
        await IngestAsync(NewMailItem("cb_one"));
        var claimed = Assert.Single(await Store.ClaimAsync(Owner, Both(10), Time.GetUtcNow(), Lease, Ct));
        var pendingId = (await Store.EnqueueAsync([Badge(9, "reg:reg-1", registrationId: "reg-1")], Ct))[0];

        await Store.CompleteAsync(Owner, [TokenInvalid(claimed)], Ct);

        var registration = await Store.GetAsync(Tenant, "reg-1", Ct);
        Assert.Equal(RegistrationStatus.Inactive, registration!.Status);
        Assert.Equal("Unregistered", registration.InactiveReason);
        Assert.Equal(Time.GetUtcNow(), registration.InactiveAt);
        Assert.Equal("failed 410 Unregistered", registration.LastPushResult);
        var pending = await Store.GetNotificationAsync(pendingId, Ct);
        Assert.Equal(NotificationState.Failed, pending!.State);
        Assert.Equal("RegistrationInactive", pending.LastReason);

        var next = NewMailItem("cb_one");
        await Store.ApplyIngestBatchAsync([next], Planner, Ct);
        Assert.Equal(IngestVerdict.Unsubscribe, next.Verdict);
        Assert.Equal(0, next.Enqueued);
        Assert.Empty(await Store.ClaimAsync(Owner, Both(10), Time.GetUtcNow(), Lease, Ct));
    }

    [Fact]
    public async Task Complete_TokenInvalidForATokenRotatedSinceTheClaim_KeepsRegistrationActive()
    {
        var registration = await CreateRegistrationAsync("reg-1", "cb_one");
        await IngestAsync(NewMailItem("cb_one"));
        var claimed = Assert.Single(await Store.ClaimAsync(Owner, Both(10), Time.GetUtcNow(), Lease, Ct));
        registration.Token = "rotated-token";
        Assert.True(await Store.UpdateAsync(registration, Ct));

        await Store.CompleteAsync(Owner, [TokenInvalid(claimed)], Ct);

        Assert.Equal(RegistrationStatus.Active, (await Store.GetAsync(Tenant, "reg-1", Ct))!.Status);
    }

    [Fact]
    public async Task Complete_InvalidOutcomeState_Throws()
    {
        await Store.EnqueueAsync([Badge(1)], Ct);
        var claimed = Assert.Single(await Store.ClaimAsync(Owner, Both(10), Time.GetUtcNow(), Lease, Ct));

        await Assert.ThrowsAsync<ArgumentException>(() => Store.CompleteAsync(Owner, [Sent(claimed) with { State = NotificationState.Queued }], Ct));
    }

    [Fact]
    public async Task Claim_ConcurrentClaimers_NeverClaimARowTwice()
    {
        var batch = new List<NewNotification>();
        for (var i = 0; i < 600; i++)
        {
            batch.Add(Badge(i, lane: i % 3 == 0 ? Lane.Priority : Lane.Standard));
        }

        await Store.EnqueueAsync(batch, Ct);
        var claimers = Enumerable.Range(0, 4).Select(n => Task.Run(
            async () =>
            {
                var mine = new List<long>();
                while (true)
                {
                    var claimed = await Store.ClaimAsync("node-" + n, Both(37), Time.GetUtcNow(), Lease, Ct);
                    if (claimed.Count == 0)
                    {
                        return mine;
                    }

                    mine.AddRange(claimed.Select(c => c.Id));
                    await Store.CompleteAsync("node-" + n, claimed.Select(Sent).ToList(), Ct);
                }
            },
            Ct));

        var all = (await Task.WhenAll(claimers)).SelectMany(ids => ids).ToList();

        Assert.Equal(600, all.Count);
        Assert.Equal(600, all.Distinct().Count());
        Assert.Equal(600, Count(await Store.SnapshotAsync(Time.GetUtcNow(), Ct), Lane.Priority, NotificationState.Sent)
            + Count(await Store.SnapshotAsync(Time.GetUtcNow(), Ct), Lane.Standard, NotificationState.Sent));
    }

    // ---- queue inspection and upkeep ----------------------------------------------------------

    [Fact]
    public async Task Snapshot_CountsPerLaneAndState()
    {
        var oldest = Time.GetUtcNow();
        await Store.EnqueueAsync([Badge(1, lane: Lane.Priority), Badge(2, lane: Lane.Standard)], Ct);
        Time.Advance(TimeSpan.FromSeconds(10));
        await Store.EnqueueAsync([Badge(3, lane: Lane.Standard), Badge(4, lane: Lane.Standard)], Ct);
        var claimed = await Store.ClaimAsync(Owner, new ClaimLimits(Priority: 1, Standard: 1), Time.GetUtcNow(), Lease, Ct); // priority, and the oldest standard
        await Store.CompleteAsync(Owner, [Sent(claimed[0])], Ct);

        var snapshot = await Store.SnapshotAsync(Time.GetUtcNow(), Ct);

        Assert.Equal(1, Count(snapshot, Lane.Priority, NotificationState.Sent));
        Assert.Equal(1, Count(snapshot, Lane.Standard, NotificationState.Sending));
        Assert.Equal(2, Count(snapshot, Lane.Standard, NotificationState.Queued));
        Assert.Equal(3, snapshot.Counts.Count);
        Assert.Equal(oldest + TimeSpan.FromSeconds(10), snapshot.OldestQueuedAt);
        Assert.Equal(oldest + TimeSpan.FromSeconds(10), await Store.NextDueAsync(Ct));
    }

    [Fact]
    public async Task PurgeCompleted_DeletesOnlyCompletedRowsOlderThanTheCutoff()
    {
        await Store.EnqueueAsync([Badge(1), Badge(2), Badge(3), Badge(4), Badge(5)], Ct);
        var claimed = await Store.ClaimAsync(Owner, Both(4), Time.GetUtcNow(), Lease, Ct);
        await Store.CompleteAsync(
            Owner,
            [Sent(claimed[0]), Sent(claimed[1]), Outcome(claimed[2], NotificationState.Dead), Retry(claimed[3], Time.GetUtcNow())],
            Ct);
        var cutoff = Time.GetUtcNow() + TimeSpan.FromMilliseconds(1);
        Time.Advance(TimeSpan.FromHours(1));
        var recent = (await Store.EnqueueAsync([Badge(6)], Ct))[0];
        var recentClaim = (await Store.ClaimAsync(Owner, Both(10), Time.GetUtcNow(), Lease, Ct)).Single(c => c.Id == recent);
        await Store.CompleteAsync(Owner, [Sent(recentClaim)], Ct);

        Assert.Equal(3, await Store.PurgeCompletedAsync(cutoff, batchSize: 2, Ct));

        Assert.Null(await Store.GetNotificationAsync(claimed[0].Id, Ct));
        Assert.Null(await Store.GetNotificationAsync(claimed[2].Id, Ct));
        Assert.NotNull(await Store.GetNotificationAsync(recent, Ct));
        Assert.Equal(0, await Store.PurgeCompletedAsync(cutoff, batchSize: 2, Ct));
    }

    [Fact]
    public async Task GetRequestNotifications_ReturnsTheRowsOfTheTenantsRequest()
    {
        await Store.CreateTenantAsync(new Tenant("contoso", "Contoso", Time.GetUtcNow()), Ct);
        var ids = await Store.EnqueueAsync(
            [Badge(1) with { RequestId = "req-1" }, Badge(2) with { RequestId = "req-1" }, Badge(3) with { RequestId = "req-2" }],
            Ct);

        var rows = await Store.GetRequestNotificationsAsync(Tenant, "req-1", 0, 100, Ct);

        Assert.Equal([ids[0], ids[1]], rows.Select(r => r.Id));
        Assert.All(rows, r => Assert.Equal(NotificationState.Queued, r.State));
        Assert.Empty(await Store.GetRequestNotificationsAsync("contoso", "req-1", 0, 100, Ct));
    }

    // ---- registrations ------------------------------------------------------------------------

    [Fact]
    public async Task Registration_CreateAndGet_RoundTripsEveryField()
    {
        var created = Time.GetUtcNow();
        var registration = new Registration
        {
            Id = "reg-full",
            TenantId = Tenant,
            Platform = Platform.Fcm,
            Token = "fcm-token",
            Topic = "project-1",
            Environment = PushEnvironment.Sandbox,
            Source = SourceKind.EwsPush,
            Style = NotificationStyle.Preview,
            Folders = ["inbox", "calendar"],
            Locale = "ja-JP",
            CreatedAt = created,
            UpdatedAt = created,
        };

        await Store.CreateAsync(registration, Secrets.Hash("cb_full"), Ct);
        var stored = await Store.GetAsync(Tenant, "reg-full", Ct);

        Assert.NotNull(stored);
        Assert.Equal(Platform.Fcm, stored.Platform);
        Assert.Equal("fcm-token", stored.Token);
        Assert.Equal("project-1", stored.Topic);
        Assert.Equal(PushEnvironment.Sandbox, stored.Environment);
        Assert.Equal(SourceKind.EwsPush, stored.Source);
        Assert.Equal(NotificationStyle.Preview, stored.Style);
        Assert.Equal(["inbox", "calendar"], stored.Folders);
        Assert.Equal("ja-JP", stored.Locale);
        Assert.Equal(RegistrationStatus.Active, stored.Status);
        Assert.Equal(created, stored.CreatedAt);
        Assert.Null(stored.SubscriptionId);
        Assert.Null(stored.UnreadCount);
    }

    [Fact]
    public async Task Registration_GetForAnotherTenant_ReturnsNull()
    {
        await Store.CreateTenantAsync(new Tenant("contoso", "Contoso", Time.GetUtcNow()), Ct);
        await CreateRegistrationAsync("reg-1", "cb_one");

        Assert.Null(await Store.GetAsync("contoso", "reg-1", Ct));
        Assert.Null(await Store.GetAsync(Tenant, "reg-unknown", Ct));
    }

    [Fact]
    public async Task Registration_CreateDuplicateIdOrCallbackKey_ThrowsConflict()
    {
        await CreateRegistrationAsync("reg-1", "cb_one");

        await Assert.ThrowsAsync<StoreConflictException>(() => CreateRegistrationAsync("reg-1", "cb_other"));
        await Assert.ThrowsAsync<StoreConflictException>(() => CreateRegistrationAsync("reg-2", "cb_one"));
        Assert.Null(await Store.GetAsync(Tenant, "reg-2", Ct));
    }

    [Fact]
    public async Task Registration_CreateForUnknownTenant_Throws()
    {
        var registration = NewRegistration("reg-1");
        var orphan = new Registration
        {
            Id = registration.Id,
            TenantId = "nobody",
            Platform = registration.Platform,
            Token = registration.Token,
            Topic = registration.Topic,
        };

        var ex = await Assert.ThrowsAsync<InvalidOperationException>(() => Store.CreateAsync(orphan, null, Ct));
        Assert.IsNotType<StoreConflictException>(ex);
    }

    [Fact]
    public async Task Update_EditableFields_AreSavedAndPendingRowsFollowTheToken()
    {
        var registration = await CreateRegistrationAsync("reg-1", "cb_one");
        await IngestAsync(NewMailItem("cb_one"));

        registration.Token = "new-token";
        registration.Topic = "com.example.other";
        registration.Environment = PushEnvironment.Sandbox;
        registration.Style = NotificationStyle.Generic;
        registration.Folders = ["inbox", "tasks"];
        registration.Locale = "de";
        Assert.True(await Store.UpdateAsync(registration, Ct));

        var stored = await Store.GetAsync(Tenant, "reg-1", Ct);
        Assert.Equal("new-token", stored!.Token);
        Assert.Equal("com.example.other", stored.Topic);
        Assert.Equal(PushEnvironment.Sandbox, stored.Environment);
        Assert.Equal(NotificationStyle.Generic, stored.Style);
        Assert.Equal(["inbox", "tasks"], stored.Folders);
        Assert.Equal("de", stored.Locale);
        Assert.Equal(1, stored.UnreadCount); // ingest state is not the API's to overwrite

        var claimed = Assert.Single(await Store.ClaimAsync(Owner, Both(10), Time.GetUtcNow(), Lease, Ct));
        Assert.Equal("new-token", claimed.Token);
        Assert.Equal("com.example.other", claimed.Topic);
        Assert.Equal(PushEnvironment.Sandbox, claimed.Environment);
    }

    [Fact]
    public async Task Update_UnknownOrOtherTenantsRegistration_ReturnsFalse()
    {
        Assert.False(await Store.UpdateAsync(NewRegistration("reg-unknown"), Ct));
    }

    [Fact]
    public async Task Delete_NextCallback_AnswersUnsubscribe()
    {
        await CreateRegistrationAsync("reg-1", "cb_one");
        await IngestAsync(NewMailItem("cb_one"));

        Assert.True(await Store.DeleteAsync(Tenant, "reg-1", Time.GetUtcNow(), Ct));

        Assert.Null(await Store.GetAsync(Tenant, "reg-1", Ct));
        Assert.Empty(await Store.ClaimAsync(Owner, Both(10), Time.GetUtcNow(), Lease, Ct));
        Assert.Equal(1, Count(await Store.SnapshotAsync(Time.GetUtcNow(), Ct), Lane.Priority, NotificationState.Failed));
        var next = NewMailItem("cb_one");
        await Store.ApplyIngestBatchAsync([next], Planner, Ct);
        Assert.Equal(IngestVerdict.Unsubscribe, next.Verdict);
        Assert.False(await Store.DeleteAsync(Tenant, "reg-1", Time.GetUtcNow(), Ct));
        Assert.False(await Store.UpdateAsync(NewRegistration("reg-1"), Ct));
    }

    [Fact]
    public async Task Delete_OtherTenantsRegistration_ReturnsFalseAndKeepsIt()
    {
        await Store.CreateTenantAsync(new Tenant("contoso", "Contoso", Time.GetUtcNow()), Ct);
        await CreateRegistrationAsync("reg-1", "cb_one");

        Assert.False(await Store.DeleteAsync("contoso", "reg-1", Time.GetUtcNow(), Ct));
        Assert.NotNull(await Store.GetAsync(Tenant, "reg-1", Ct));
    }

    // ---- tenants and keys ---------------------------------------------------------------------

    [Fact]
    public async Task Access_ApiKeysAndTenants_RoundTrip()
    {
        var now = Time.GetUtcNow();
        await Store.CreateTenantAsync(new Tenant("contoso", "Contoso", now), Ct);
        Assert.Equal(new Tenant("contoso", "Contoso", now), await Store.GetTenantAsync("contoso", Ct));
        Assert.Null(await Store.GetTenantAsync("fabrikam", Ct));
        await Assert.ThrowsAsync<StoreConflictException>(() => Store.CreateTenantAsync(new Tenant("contoso", "Again", now), Ct));

        Assert.False(await Store.AnyActiveAdminKeyAsync(Ct));
        var adminHash = Secrets.Hash("hk_admin");
        await Store.AddApiKeyAsync(new ApiKeyRecord("key-admin", Tenant, adminHash, IsAdmin: true, now, RevokedAt: null), Ct);
        await Store.AddApiKeyAsync(new ApiKeyRecord("key-contoso", "contoso", Secrets.Hash("hk_contoso"), IsAdmin: false, now, RevokedAt: null), Ct);
        Assert.True(await Store.AnyActiveAdminKeyAsync(Ct));

        var found = await Store.FindApiKeyAsync(Secrets.Hash("hk_contoso"), Ct);
        Assert.NotNull(found);
        Assert.Equal("key-contoso", found.Id);
        Assert.Equal("contoso", found.TenantId);
        Assert.False(found.IsAdmin);
        Assert.Equal(now, found.CreatedAt);
        Assert.Null(found.RevokedAt);
        Assert.Null(await Store.FindApiKeyAsync(Secrets.Hash("hk_unknown"), Ct));
        await Assert.ThrowsAsync<StoreConflictException>(
            () => Store.AddApiKeyAsync(new ApiKeyRecord("key-other", Tenant, adminHash, IsAdmin: false, now, RevokedAt: null), Ct));

        Time.Advance(TimeSpan.FromMinutes(1));
        Assert.True(await Store.RevokeApiKeyAsync("key-admin", Time.GetUtcNow(), Ct));
        Assert.False(await Store.RevokeApiKeyAsync("key-admin", Time.GetUtcNow(), Ct));
        var revoked = await Store.FindApiKeyAsync(adminHash, Ct);
        Assert.Equal(Time.GetUtcNow(), revoked!.RevokedAt); // returned, so the caller can refuse it
        Assert.True(revoked.IsAdmin);
        Assert.Equal(adminHash, revoked.Hash);
        Assert.False(await Store.AnyActiveAdminKeyAsync(Ct));
    }

    // ---- durability ---------------------------------------------------------------------------

    [Fact]
    public async Task Reopen_AfterClose_KeepsEverythingCommitted()
    {
        await CreateRegistrationAsync("reg-1", "cb_one");
        await IngestAsync(NewMailItem("cb_one", subscriptionId: "sub-1"));
        await Store.AddApiKeyAsync(new ApiKeyRecord("key-1", Tenant, Secrets.Hash("hk_1"), IsAdmin: true, Time.GetUtcNow(), null), Ct);
        await Store.EnqueueAsync([Badge(1, lane: Lane.Standard)], Ct);
        var leased = Assert.Single(await Store.ClaimAsync(Owner, new ClaimLimits(Priority: 1, Standard: 0), Time.GetUtcNow(), Lease, Ct));

        await ReopenAsync();

        var registration = await Store.GetAsync(Tenant, "reg-1", Ct);
        Assert.Equal("sub-1", registration!.SubscriptionId);
        Assert.Equal(1, registration.UnreadCount);
        Assert.NotNull(await Store.FindApiKeyAsync(Secrets.Hash("hk_1"), Ct));
        Assert.Equal(NotificationState.Sending, (await Store.GetNotificationAsync(leased.Id, Ct))!.State);
        Assert.Equal(1, await Store.ReleaseExpiredLeasesAsync(DateTimeOffset.MaxValue, Ct)); // what the host does at start
        var claimed = await Store.ClaimAsync(OtherOwner, Both(10), Time.GetUtcNow(), Lease, Ct);
        Assert.Equal(2, claimed.Count);
        Assert.Equal(leased.MessageId, claimed.Single(c => c.Id == leased.Id).MessageId);
    }

    // ---- helpers ------------------------------------------------------------------------------

    /// <summary>The same limit for both lanes.</summary>
    [Fact]
    public async Task RenewLeases_KeepsALongSendFromTheReaper_ButNotALeaseAlreadyReaped()
    {
        await Store.EnqueueAsync([Badge(1, "r1"), Badge(2, "r2")], Ct);
        var claimed = await Store.ClaimAsync(Owner, Both(10), Time.GetUtcNow(), Lease, Ct);
        Assert.Equal(2, claimed.Count);

        Time.Advance(TimeSpan.FromMinutes(1));
        Assert.Equal(1, await Store.RenewLeasesAsync(Owner, [claimed[0].Id], Time.GetUtcNow() + Lease, Ct));
        Assert.Equal(0, await Store.RenewLeasesAsync(OtherOwner, [claimed[1].Id], Time.GetUtcNow() + Lease, Ct)); // not its lease

        Time.Advance(TimeSpan.FromMinutes(1) + TimeSpan.FromSeconds(1));
        Assert.Equal(1, await Store.ReleaseExpiredLeasesAsync(Time.GetUtcNow(), Ct)); // only the one not renewed
        Assert.Equal(NotificationState.Sending, (await Store.GetNotificationAsync(claimed[0].Id, Ct))!.State);
        Assert.Equal(0, await Store.RenewLeasesAsync(Owner, [claimed[1].Id], Time.GetUtcNow() + Lease, Ct)); // reaped: gone
        Assert.Equal(1, await Store.CompleteAsync(Owner, [Sent(claimed[0]), Sent(claimed[1])], Ct));
    }

    protected static ClaimLimits Both(int max) => new(max, max);

    protected static long Count(QueueSnapshot snapshot, Lane lane, NotificationState state)
        => snapshot.Counts.TryGetValue((lane, state), out var count) ? count : 0;

    protected Registration NewRegistration(string id, NotificationStyle style = NotificationStyle.Badge) => new()
    {
        Id = id,
        TenantId = Tenant,
        Platform = Platform.Apns,
        Token = "a0b1c2d3e4f5" + id,
        Topic = "com.example.securemail",
        Source = SourceKind.EwsPush,
        Style = style,
        CreatedAt = Time.GetUtcNow(),
        UpdatedAt = Time.GetUtcNow(),
    };

    protected async Task<Registration> CreateRegistrationAsync(string id, string callbackKey, NotificationStyle style = NotificationStyle.Badge)
    {
        var registration = NewRegistration(id, style);
        await Store.CreateAsync(registration, Secrets.Hash(callbackKey), Ct);
        return registration;
    }

    protected IngestItem NewMailItem(string callbackKey, string subscriptionId = "sub-1") => Item(
        callbackKey,
        subscriptionId,
        new MailEvent { Kind = MailEventKind.NewMail, ItemId = "item-" + Guid.NewGuid().ToString("N"), ParentFolderId = "inbox-folder" });

    protected IngestItem FolderUnreadItem(string callbackKey, int unread, string subscriptionId = "sub-1") => Item(
        callbackKey,
        subscriptionId,
        new MailEvent { Kind = MailEventKind.Modified, FolderId = "inbox-folder", UnreadCount = unread });

    protected IngestItem Item(string callbackKey, string subscriptionId, params MailEvent[] events) => new()
    {
        Route = new IngestRoute(RouteKind.CallbackKey, Secrets.Hash(callbackKey)),
        Notifications = [new MailboxNotification { SubscriptionId = subscriptionId, Events = events }],
        ReceivedAt = Time.GetUtcNow(),
    };

    protected async Task IngestAsync(IngestItem item)
    {
        await Store.ApplyIngestBatchAsync([item], Planner, Ct);
        Assert.Equal(IngestVerdict.Accepted, item.Verdict);
    }

    protected static NewNotification Badge(
        int badge,
        string? coalesceKey = null,
        Lane lane = Lane.Standard,
        string token = "device-token",
        string? registrationId = null,
        DateTimeOffset? eventAt = null) => new()
    {
        TenantId = Tenant,
        RegistrationId = registrationId,
        Lane = lane,
        Platform = Platform.Apns,
        Token = token,
        Topic = "com.example.securemail",
        Content = new NotificationContent { Kind = PushKind.Badge, Badge = badge },
        CoalesceKey = coalesceKey,
        EventAt = eventAt,
    };

    protected DeliveryOutcome Outcome(ClaimedNotification claimed, NotificationState state, int status = 0, string? reason = null) => new()
    {
        NotificationId = claimed.Id,
        RegistrationId = claimed.RegistrationId,
        State = state,
        StatusCode = status,
        Reason = reason,
        CompletedAt = Time.GetUtcNow(),
        Attempt = claimed.Attempt,
    };

    protected DeliveryOutcome Sent(ClaimedNotification claimed) => Outcome(claimed, NotificationState.Sent, 200);

    protected DeliveryOutcome Retry(ClaimedNotification claimed, DateTimeOffset retryAt, int status = 503)
        => Outcome(claimed, NotificationState.Retrying, status, "ServiceUnavailable") with { RetryAt = retryAt };

    protected DeliveryOutcome TokenInvalid(ClaimedNotification claimed)
        => Outcome(claimed, NotificationState.Failed, 410, "Unregistered") with { DeactivateRegistration = true, TokenInvalidSince = Time.GetUtcNow() };

    /// <summary>A planner that fails on its n-th call, as a bug or a poison item would.</summary>
    private sealed class ThrowingPlanner(IIngestPlanner inner, int throwOnCall) : IIngestPlanner
    {
        private int _calls;

        public IngestDecision Plan(Registration registration, IngestItem item)
            => ++_calls == throwOnCall ? throw new InvalidOperationException("The planner failed.") : inner.Plan(registration, item);
    }
}
