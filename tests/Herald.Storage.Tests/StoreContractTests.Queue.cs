using Herald.Core.Notifications;
using Herald.Core.Ports;
using Herald.Core.Registrations;
using Herald.Core.Security;
using Xunit;

namespace Herald.Storage.Tests;

/// <summary>Lanes, tenant fairness, the attempt log, send requests and dead letters.</summary>
public abstract partial class StoreContractTests
{
    protected const string OtherTenant = "contoso";

    // ---- lanes and fairness -------------------------------------------------------------------

    [Fact]
    public async Task Claim_PriorityLimitZero_ClaimsNoPriorityRows()
    {
        var priority = await Store.EnqueueAsync([Badge(1, lane: Lane.Priority), Badge(2, lane: Lane.Priority)], Ct);
        var standard = await Store.EnqueueAsync([Badge(3, lane: Lane.Standard), Badge(4, lane: Lane.Standard)], Ct);

        var claimed = await Store.ClaimAsync(Owner, new ClaimLimits(Priority: 0, Standard: 10), Time.GetUtcNow(), Lease, Ct);

        Assert.Equal(standard, claimed.Select(c => c.Id));
        Assert.Empty(await Store.ClaimAsync(Owner, new ClaimLimits(Priority: 0, Standard: 10), Time.GetUtcNow(), Lease, Ct));
        Assert.Empty(await Store.ClaimAsync(Owner, new ClaimLimits(Priority: 0, Standard: 0), Time.GetUtcNow(), Lease, Ct));
        Assert.Equal(priority, (await Store.ClaimAsync(Owner, new ClaimLimits(Priority: 5, Standard: 0), Time.GetUtcNow(), Lease, Ct)).Select(c => c.Id));
    }

    [Fact]
    public async Task Claim_LaneLimits_AreCountedPerLane()
    {
        var priority = await Store.EnqueueAsync([Badge(1, lane: Lane.Priority), Badge(2, lane: Lane.Priority), Badge(3, lane: Lane.Priority)], Ct);
        var standard = await Store.EnqueueAsync([Badge(4, lane: Lane.Standard), Badge(5, lane: Lane.Standard), Badge(6, lane: Lane.Standard)], Ct);

        var claimed = await Store.ClaimAsync(Owner, new ClaimLimits(Priority: 1, Standard: 2), Time.GetUtcNow(), Lease, Ct);

        Assert.Equal([priority[0], standard[0], standard[1]], claimed.Select(c => c.Id));
        Assert.Equal([Lane.Priority, Lane.Standard, Lane.Standard], claimed.Select(c => c.Lane));
    }

    [Fact]
    public async Task Claim_NegativeLimit_Throws()
    {
        await Assert.ThrowsAnyAsync<ArgumentException>(
            () => Store.ClaimAsync(Owner, new ClaimLimits(Priority: -1, Standard: 1), Time.GetUtcNow(), Lease, Ct));
    }

    [Fact]
    public async Task Claim_TenantWithABigBacklog_DoesNotPushAnotherTenantsRowOut()
    {
        await CreateTenantAsync(OtherTenant);
        var bulk = new List<NewNotification>(5_000);
        for (var i = 0; i < 5_000; i++)
        {
            bulk.Add(Badge(i, lane: Lane.Standard));
        }

        for (var i = 0; i < bulk.Count; i += 1_000)
        {
            await Store.EnqueueAsync(bulk.GetRange(i, 1_000), Ct);
        }

        Time.Advance(TimeSpan.FromSeconds(5));
        var single = (await Store.EnqueueAsync([Badge(1, lane: Lane.Standard) with { TenantId = OtherTenant }], Ct))[0];

        var claimed = await Store.ClaimAsync(Owner, new ClaimLimits(Priority: 10, Standard: 10), Time.GetUtcNow(), Lease, Ct);

        Assert.Equal(10, claimed.Count);
        Assert.Contains(single, claimed.Select(c => c.Id));
        Assert.Equal(9, claimed.Count(c => c.TenantId == Tenant));
    }

    [Fact]
    public async Task Claim_Tenants_TakeTurnsInDueOrder()
    {
        await CreateTenantAsync("b");
        await CreateTenantAsync("c");
        var a = new List<long>();
        var b = new List<long>();
        var c = new List<long>();
        for (var i = 0; i < 5; i++)
        {
            a.Add((await Store.EnqueueAsync([Badge(i)], Ct))[0]);
            Time.Advance(TimeSpan.FromMilliseconds(10));
        }

        for (var i = 0; i < 2; i++)
        {
            b.Add((await Store.EnqueueAsync([Badge(i) with { TenantId = "b" }], Ct))[0]);
            Time.Advance(TimeSpan.FromMilliseconds(10));
        }

        c.Add((await Store.EnqueueAsync([Badge(0) with { TenantId = "c" }], Ct))[0]);

        // Turn 1: a0 b0 c0; turn 2: a1 b1; turn 3: a2 (c and then b have nothing left).
        var claimed = await Store.ClaimAsync(Owner, new ClaimLimits(Priority: 0, Standard: 6), Time.GetUtcNow(), Lease, Ct);

        Assert.Equal(new[] { a[0], a[1], a[2], b[0], b[1], c[0] }.Order(), claimed.Select(n => n.Id).Order());
        var rest = await Store.ClaimAsync(Owner, Both(10), Time.GetUtcNow(), Lease, Ct);
        Assert.Equal([a[3], a[4]], rest.Select(n => n.Id));
    }

    [Fact]
    public async Task Claim_ManyTenantsWithEqualBacklogs_ShareTheBatchEvenly()
    {
        var tenants = new[] { "t1", "t2", "t3", "t4" };
        foreach (var tenant in tenants)
        {
            await CreateTenantAsync(tenant);
        }

        var batch = new List<NewNotification>();
        foreach (var tenant in tenants)
        {
            for (var i = 0; i < 100; i++)
            {
                batch.Add(Badge(i) with { TenantId = tenant });
            }
        }

        await Store.EnqueueAsync(batch, Ct);

        var claimed = await Store.ClaimAsync(Owner, new ClaimLimits(Priority: 0, Standard: 40), Time.GetUtcNow(), Lease, Ct);

        Assert.Equal(40, claimed.Count);
        Assert.All(tenants, t => Assert.Equal(10, claimed.Count(c => c.TenantId == t)));
    }

    [Fact]
    public async Task Claim_FairnessDoesNotCrossLanes()
    {
        await CreateTenantAsync(OtherTenant);
        await Store.EnqueueAsync([Badge(1, lane: Lane.Priority), Badge(2, lane: Lane.Priority), Badge(3, lane: Lane.Priority)], Ct);
        var standard = (await Store.EnqueueAsync([Badge(4, lane: Lane.Standard) with { TenantId = OtherTenant }], Ct))[0];

        var claimed = await Store.ClaimAsync(Owner, new ClaimLimits(Priority: 2, Standard: 2), Time.GetUtcNow(), Lease, Ct);

        Assert.Equal(3, claimed.Count);
        Assert.Equal(2, claimed.Count(c => c.Lane == Lane.Priority && c.TenantId == Tenant));
        Assert.Equal(standard, claimed.Single(c => c.Lane == Lane.Standard).Id);
    }

    // ---- the attempt log ----------------------------------------------------------------------

    [Fact]
    public async Task Complete_RecordsOneAttemptPerOutcome_NumberedFromOne()
    {
        var id = (await Store.EnqueueAsync([Badge(1)], Ct))[0];
        var first = Assert.Single(await Store.ClaimAsync(Owner, Both(10), Time.GetUtcNow(), Lease, Ct));
        var firstAt = Time.GetUtcNow();
        await Store.CompleteAsync(Owner, [Retry(first, Time.GetUtcNow(), status: 503)], Ct);
        Time.Advance(TimeSpan.FromSeconds(1));
        var second = Assert.Single(await Store.ClaimAsync(Owner, Both(10), Time.GetUtcNow(), Lease, Ct));
        await Store.CompleteAsync(Owner, [Retry(second, Time.GetUtcNow(), status: 429)], Ct);
        Time.Advance(TimeSpan.FromSeconds(1));
        var third = Assert.Single(await Store.ClaimAsync(Owner, Both(10), Time.GetUtcNow(), Lease, Ct));
        await Store.CompleteAsync(Owner, [Outcome(third, NotificationState.Dead, 500, "InternalServerError")], Ct);

        var attempts = await Store.GetAttemptsAsync(id, Ct);

        Assert.Equal([1, 2, 3], attempts.Select(a => a.Attempt));
        Assert.Equal([NotificationState.Retrying, NotificationState.Retrying, NotificationState.Dead], attempts.Select(a => a.Outcome));
        Assert.Equal([503, 429, 500], attempts.Select(a => a.Status));
        Assert.Equal(["ServiceUnavailable", "ServiceUnavailable", "InternalServerError"], attempts.Select(a => a.Reason));
        Assert.Equal([firstAt, firstAt + TimeSpan.FromSeconds(1), firstAt + TimeSpan.FromSeconds(2)], attempts.Select(a => a.At));
        Assert.All(attempts, a => Assert.Equal(id, a.NotificationId));
        Assert.Empty(await Store.GetAttemptsAsync(id + 1000, Ct));
    }

    [Fact]
    public async Task Complete_FencedOff_RecordsNoAttempt()
    {
        var id = (await Store.EnqueueAsync([Badge(1)], Ct))[0];
        var claimed = Assert.Single(await Store.ClaimAsync(Owner, Both(10), Time.GetUtcNow(), Lease, Ct));

        Assert.Equal(0, await Store.CompleteAsync(OtherOwner, [Sent(claimed)], Ct));
        Assert.Empty(await Store.GetAttemptsAsync(id, Ct));

        await Store.CompleteAsync(Owner, [Sent(claimed) with { Attempt = 0 }], Ct); // no number given: the row's count
        var attempt = Assert.Single(await Store.GetAttemptsAsync(id, Ct));
        Assert.Equal(1, attempt.Attempt);
        Assert.Equal(NotificationState.Sent, attempt.Outcome);
    }

    // ---- send requests ------------------------------------------------------------------------

    [Fact]
    public async Task Request_SaveAndGet_RoundTripsForItsTenantOnly()
    {
        await CreateTenantAsync(OtherTenant);
        var request = new NotificationRequestRecord("req-1", Tenant, Lane.Standard, PushKind.Alert, 25_000, Time.GetUtcNow(), "key-admin");

        await Store.SaveRequestAsync(request, Ct);

        Assert.Equal(request, await Store.GetRequestAsync(Tenant, "req-1", Ct));
        Assert.Null(await Store.GetRequestAsync(OtherTenant, "req-1", Ct));
        Assert.Null(await Store.GetRequestAsync(Tenant, "req-unknown", Ct));
        await Assert.ThrowsAsync<StoreConflictException>(() => Store.SaveRequestAsync(request with { TenantId = OtherTenant }, Ct));
    }

    [Fact]
    public async Task Request_CountsByState_AndPagesById()
    {
        await CreateTenantAsync(OtherTenant);
        await Store.SaveRequestAsync(new NotificationRequestRecord("req-1", Tenant, Lane.Standard, PushKind.Badge, 25, Time.GetUtcNow(), "me"), Ct);
        var batch = new List<NewNotification>();
        for (var i = 0; i < 25; i++)
        {
            batch.Add(Badge(i, token: "token-" + i) with { RequestId = "req-1" });
        }

        var ids = await Store.EnqueueAsync(batch, Ct);
        await Store.EnqueueAsync([Badge(99) with { RequestId = "req-2" }], Ct);
        var claimed = await Store.ClaimAsync(Owner, new ClaimLimits(Priority: 0, Standard: 4), Time.GetUtcNow(), Lease, Ct);
        await Store.CompleteAsync(Owner, [Sent(claimed[0]), Sent(claimed[1]), Outcome(claimed[2], NotificationState.Failed, 400, "BadDeviceToken")], Ct);

        var counts = await Store.GetRequestCountsAsync(Tenant, "req-1", Ct);

        Assert.Equal(21, counts[NotificationState.Queued]);
        Assert.Equal(1, counts[NotificationState.Sending]);
        Assert.Equal(2, counts[NotificationState.Sent]);
        Assert.Equal(1, counts[NotificationState.Failed]);
        Assert.Equal(4, counts.Count);
        Assert.Empty(await Store.GetRequestCountsAsync(OtherTenant, "req-1", Ct));

        var pages = new List<NotificationRecord>();
        for (var offset = 0; offset < 30; offset += 10)
        {
            var page = await Store.GetRequestNotificationsAsync(Tenant, "req-1", offset, 10, Ct);
            Assert.Equal(Math.Min(10, 25 - offset), page.Count);
            pages.AddRange(page);
        }

        Assert.Equal(ids, pages.Select(r => r.Id));
        Assert.Empty(await Store.GetRequestNotificationsAsync(Tenant, "req-1", 25, 10, Ct));
        Assert.Empty(await Store.GetRequestNotificationsAsync(OtherTenant, "req-1", 0, 10, Ct));

        // Per-target views: the platform, and a fingerprint of the token while it is stored (never the token).
        var queued = pages[^1];
        Assert.Equal(NotificationState.Queued, queued.State);
        Assert.Equal(Platform.Apns, queued.Platform);
        Assert.Equal(Redact.Token("token-24"), queued.TokenFingerprint);
        var sent = pages.Single(r => r.Id == claimed[0].Id);
        Assert.Equal(NotificationState.Sent, sent.State);
        Assert.Equal(Platform.Apns, sent.Platform);
        Assert.Null(sent.TokenFingerprint); // a finished row forgets its token
    }

    [Fact]
    public async Task GetNotification_HasPlatformAndTokenFingerprint()
    {
        var id = (await Store.EnqueueAsync([Badge(1, token: "fcm-token-1") with { Platform = Platform.Fcm }], Ct))[0];

        var record = await Store.GetNotificationAsync(id, Ct);

        Assert.Equal(Platform.Fcm, record!.Platform);
        Assert.Equal(Redact.Token("fcm-token-1"), record.TokenFingerprint);
        Assert.DoesNotContain("fcm-token-1", record.ToString(), StringComparison.Ordinal);
    }

    // ---- dead letters -------------------------------------------------------------------------

    [Fact]
    public async Task Dead_ListRequeueAndClaim_TheTokenIsIntact()
    {
        await CreateTenantAsync(OtherTenant);
        var mine = await KillAsync(Badge(1, token: "token-mine"));
        Time.Advance(TimeSpan.FromSeconds(1));
        var newer = await KillAsync(Badge(2, token: "token-newer"));
        Time.Advance(TimeSpan.FromSeconds(1));
        var theirs = await KillAsync(Badge(3, token: "token-theirs") with { TenantId = OtherTenant });

        Assert.Equal([newer, mine], (await Store.ListDeadAsync(Tenant, 10, Ct)).Select(r => r.Id));
        Assert.Equal([theirs, newer, mine], (await Store.ListDeadAsync(null, 10, Ct)).Select(r => r.Id));
        Assert.Equal([theirs], (await Store.ListDeadAsync(null, 1, Ct)).Select(r => r.Id));
        var dead = (await Store.ListDeadAsync(Tenant, 10, Ct))[1];
        Assert.Equal(NotificationState.Dead, dead.State);
        Assert.Equal(Redact.Token("token-mine"), dead.TokenFingerprint);

        Time.Advance(TimeSpan.FromMinutes(1));
        Assert.Equal(2, await Store.RequeueDeadAsync(Tenant, null, Time.GetUtcNow(), Ct));

        Assert.Equal([theirs], (await Store.ListDeadAsync(null, 10, Ct)).Select(r => r.Id));
        var record = await Store.GetNotificationAsync(mine, Ct);
        Assert.Equal(NotificationState.Queued, record!.State);
        Assert.Equal(0, record.Attempts);
        Assert.Equal(Time.GetUtcNow(), record.DueAt);
        var claimed = await Store.ClaimAsync(Owner, Both(10), Time.GetUtcNow(), Lease, Ct);
        Assert.Equal([mine, newer], claimed.Select(c => c.Id));
        Assert.Equal(["token-mine", "token-newer"], claimed.Select(c => c.Token));
        Assert.All(claimed, c => Assert.Equal(1, c.Attempt));

        // The attempt log keeps the history: the attempt that died, then the new first attempt.
        await Store.CompleteAsync(Owner, [Sent(claimed[0])], Ct);
        Assert.Equal([(1, NotificationState.Dead), (1, NotificationState.Sent)], (await Store.GetAttemptsAsync(mine, Ct)).Select(a => (a.Attempt, a.Outcome)));
    }

    [Fact]
    public async Task Dead_RequeueByIds_OnlyThoseOfTheTenant()
    {
        await CreateTenantAsync(OtherTenant);
        var first = await KillAsync(Badge(1));
        var second = await KillAsync(Badge(2));
        var theirs = await KillAsync(Badge(3) with { TenantId = OtherTenant });
        var alive = (await Store.EnqueueAsync([Badge(4)], Ct))[0];

        Assert.Equal(1, await Store.RequeueDeadAsync(Tenant, [first, theirs, alive, 9_999], Time.GetUtcNow(), Ct));

        Assert.Equal(NotificationState.Queued, (await Store.GetNotificationAsync(first, Ct))!.State);
        Assert.Equal(NotificationState.Dead, (await Store.GetNotificationAsync(second, Ct))!.State);
        Assert.Equal(NotificationState.Dead, (await Store.GetNotificationAsync(theirs, Ct))!.State);
        Assert.Equal(0, await Store.RequeueDeadAsync(Tenant, [], Time.GetUtcNow(), Ct));

        // The admin (no tenant) may requeue any tenant's.
        Assert.Equal(1, await Store.RequeueDeadAsync(null, [theirs], Time.GetUtcNow(), Ct));
        Assert.Equal(NotificationState.Queued, (await Store.GetNotificationAsync(theirs, Ct))!.State);
    }

    [Fact]
    public async Task Dead_RequeueWhileItsKeyIsPending_FoldsIntoThePendingRow()
    {
        var dead = await KillAsync(Badge(1, "k1") with { Content = new NotificationContent { Kind = PushKind.Alert, Title = "Hi", Badge = 1 } });
        var pending = (await Store.EnqueueAsync([Badge(5, "k1")], Ct))[0];

        Assert.Equal(1, await Store.RequeueDeadAsync(Tenant, null, Time.GetUtcNow(), Ct));

        var folded = await Store.GetNotificationAsync(dead, Ct);
        Assert.Equal(NotificationState.Failed, folded!.State);
        Assert.Equal("Coalesced", folded.LastReason);
        var claimed = Assert.Single(await Store.ClaimAsync(Owner, Both(10), Time.GetUtcNow(), Lease, Ct));
        Assert.Equal(pending, claimed.Id);
        Assert.Equal(PushKind.Alert, claimed.Content.Kind); // the older alert is not lost
        Assert.Equal(5, claimed.Content.Badge);
    }

    [Fact]
    public async Task Dead_OfADeletedRegistration_ForgetsItsTokenAndStaysDead()
    {
        var registration = await CreateRegistrationAsync("reg-1", "cb_one");
        var dead = await KillAsync(Badge(1, registrationId: "reg-1", token: registration.Token));
        registration.Token = "rotated-token";
        Assert.True(await Store.UpdateAsync(registration, Ct));
        Assert.Equal(Redact.Token("rotated-token"), (await Store.GetNotificationAsync(dead, Ct))!.TokenFingerprint); // follows the rotation

        Assert.True(await Store.DeleteAsync(Tenant, "reg-1", Time.GetUtcNow(), Ct));

        Assert.Null((await Store.GetNotificationAsync(dead, Ct))!.TokenFingerprint);
        Assert.Equal(0, await Store.RequeueDeadAsync(Tenant, null, Time.GetUtcNow(), Ct));
        Assert.Equal(NotificationState.Dead, (await Store.GetNotificationAsync(dead, Ct))!.State);
    }

    [Fact]
    public async Task Dead_Purge_DeletesTheRowsAndTheirAttempts()
    {
        await CreateTenantAsync(OtherTenant);
        var first = await KillAsync(Badge(1));
        var second = await KillAsync(Badge(2));
        var theirs = await KillAsync(Badge(3) with { TenantId = OtherTenant });
        var sentId = (await Store.EnqueueAsync([Badge(4)], Ct))[0];
        await Store.CompleteAsync(Owner, [Sent(Assert.Single(await Store.ClaimAsync(Owner, Both(10), Time.GetUtcNow(), Lease, Ct)))], Ct);

        Assert.Equal(1, await Store.PurgeDeadAsync(Tenant, [first, theirs, sentId], Ct));
        Assert.Null(await Store.GetNotificationAsync(first, Ct));
        Assert.Empty(await Store.GetAttemptsAsync(first, Ct));
        Assert.NotNull(await Store.GetNotificationAsync(theirs, Ct));
        Assert.NotNull(await Store.GetNotificationAsync(sentId, Ct)); // only dead rows are purged

        Assert.Equal(1, await Store.PurgeDeadAsync(Tenant, null, Ct));
        Assert.Null(await Store.GetNotificationAsync(second, Ct));
        Assert.Equal(1, await Store.PurgeDeadAsync(null, null, Ct));
        Assert.Null(await Store.GetNotificationAsync(theirs, Ct));
        Assert.Empty(await Store.ListDeadAsync(null, 10, Ct));
        Assert.Single(await Store.GetAttemptsAsync(sentId, Ct));
    }

    // ---- registrations in bulk ----------------------------------------------------------------

    [Fact]
    public async Task Registration_GetMany_OnlyTheTenantsLiveOnes()
    {
        await CreateTenantAsync(OtherTenant);
        await CreateRegistrationAsync("reg-1", "cb_one");
        await CreateRegistrationAsync("reg-2", "cb_two");
        await CreateRegistrationAsync("reg-deleted", "cb_three");
        Assert.True(await Store.DeleteAsync(Tenant, "reg-deleted", Time.GetUtcNow(), Ct));
        var template = NewRegistration("reg-theirs");
        var theirs = new Registration
        {
            Id = template.Id,
            TenantId = OtherTenant,
            Platform = template.Platform,
            Token = template.Token,
            Topic = template.Topic,
        };
        await Store.CreateAsync(theirs, null, Ct);

        var found = await Store.GetManyAsync(Tenant, ["reg-1", "reg-2", "reg-deleted", "reg-theirs", "reg-unknown", "reg-1"], Ct);

        Assert.Equal(["reg-1", "reg-2"], found.Keys.Order(StringComparer.Ordinal));
        Assert.Equal("a0b1c2d3e4f5reg-2", found["reg-2"].Token);
        Assert.Equal(["reg-theirs"], (await Store.GetManyAsync(OtherTenant, ["reg-1", "reg-theirs"], Ct)).Keys);
        Assert.Empty(await Store.GetManyAsync(Tenant, [], Ct));
    }

    [Fact]
    public async Task Registration_GetMany_MoreIdsThanOneStatementTakes()
    {
        var ids = new List<string>();
        for (var i = 0; i < 1_203; i++)
        {
            ids.Add("missing-" + i + "-\"quoted\"");
        }

        await CreateRegistrationAsync("reg-early", "cb_one");
        await CreateRegistrationAsync("reg-late", "cb_two");
        ids.Insert(3, "reg-early");
        ids.Add("reg-late");

        var found = await Store.GetManyAsync(Tenant, ids, Ct);

        Assert.Equal(["reg-early", "reg-late"], found.Keys.Order(StringComparer.Ordinal));
    }

    // ---- helpers ------------------------------------------------------------------------------

    protected Task CreateTenantAsync(string id) => Store.CreateTenantAsync(new Tenant(id, id, Time.GetUtcNow()), Ct);

    /// <summary>Enqueues a notification, claims it and completes it as dead. Returns its id.</summary>
    protected async Task<long> KillAsync(NewNotification notification)
    {
        var id = (await Store.EnqueueAsync([notification], Ct))[0];
        var claimed = (await Store.ClaimAsync(Owner, Both(1_000), Time.GetUtcNow(), Lease, Ct)).Single(c => c.Id == id);
        Assert.Equal(1, await Store.CompleteAsync(Owner, [Outcome(claimed, NotificationState.Dead, 503, "ServiceUnavailable")], Ct));
        return id;
    }
}
