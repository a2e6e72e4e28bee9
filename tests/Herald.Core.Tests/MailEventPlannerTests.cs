using Herald.Core.Events;
using Herald.Core.Notifications;
using Herald.Core.Planning;
using Herald.Core.Ports;
using Herald.Core.Registrations;
using Microsoft.Extensions.Options;
using Xunit;

namespace Herald.Core.Tests;

public sealed class MailEventPlannerTests
{
    private static readonly DateTimeOffset Now = new(2026, 11, 23, 12, 0, 0, TimeSpan.Zero);
    private readonly MailEventPlanner _planner = new(Options.Create(new PlannerOptions()));

    private static Registration NewRegistration(NotificationStyle style = NotificationStyle.Badge, string locale = "en") => new()
    {
        Id = "reg_1",
        TenantId = "default",
        Platform = Platform.Apns,
        Token = "aabbccddeeff00112233445566778899",
        Topic = "com.example.mail",
        Style = style,
        Locale = locale,
        CreatedAt = Now,
    };

    private static IngestItem Item(params MailboxNotification[] notifications) => new()
    {
        Route = new IngestRoute(RouteKind.CallbackKey, [1, 2, 3]),
        Notifications = notifications,
        ReceivedAt = Now,
    };

    private static MailboxNotification Notification(string subscription, params MailEvent[] events) => new() { SubscriptionId = subscription, Events = events };

    private static MailEvent NewMail(string inbox = "inbox-id") => new() { Kind = MailEventKind.NewMail, ItemId = "item", ParentFolderId = inbox };

    private static MailEvent FolderUnread(int count, string folder = "inbox-id") => new() { Kind = MailEventKind.Modified, FolderId = folder, UnreadCount = count };

    [Fact]
    public void Plan_StatusEventOnly_RecordsContactAndQueuesNothing()
    {
        var registration = NewRegistration();
        var decision = _planner.Plan(registration, Item(Notification("sub-1", new MailEvent { Kind = MailEventKind.Status, Watermark = "w" })));

        Assert.Equal(IngestVerdict.Accepted, decision.Verdict);
        Assert.Null(decision.Notification);
        Assert.Equal("sub-1", registration.SubscriptionId);
        Assert.Equal(Now, registration.LastEventAt);
    }

    [Fact]
    public void Plan_NewMailWithFolderUnreadCount_BadgeIsTheServersCount()
    {
        var registration = NewRegistration();
        registration.UnreadCount = 2;
        var decision = _planner.Plan(registration, Item(Notification("sub-1", NewMail(), FolderUnread(7))));

        var n = Assert.IsType<NewNotification>(decision.Notification);
        Assert.Equal(PushKind.Badge, n.Content.Kind);
        Assert.Equal(7, n.Content.Badge);
        Assert.Equal(Lane.Priority, n.Lane);
        Assert.Equal("reg:reg_1", n.CoalesceKey);
        Assert.Equal(Now, n.EventAt);
        Assert.Equal(Now.AddHours(24), n.ExpiresAt);
        Assert.Equal("inbox-id", registration.InboxFolderId);
    }

    [Fact]
    public void Plan_NewMailWithoutCount_CountsFromLastKnown()
    {
        var registration = NewRegistration();
        registration.UnreadCount = 4;
        var decision = _planner.Plan(registration, Item(Notification("sub-1", NewMail(), NewMail())));

        Assert.Equal(6, decision.Notification!.Content.Badge);
        Assert.Equal(6, registration.UnreadCount);
    }

    [Fact]
    public void Plan_CountOfAnotherFolder_IsIgnoredOnceInboxIsKnown()
    {
        var registration = NewRegistration();
        registration.InboxFolderId = "inbox-id";
        registration.UnreadCount = 3;
        var decision = _planner.Plan(registration, Item(Notification("sub-1", FolderUnread(0, "calendar-id"))));

        Assert.Null(decision.Notification);
        Assert.Equal(3, registration.UnreadCount);
    }

    [Fact]
    public void Plan_ReadElsewhere_LowersTheBadgeWithABadgeOnlyPush()
    {
        var registration = NewRegistration(NotificationStyle.Generic);
        registration.InboxFolderId = "inbox-id";
        registration.UnreadCount = 3;
        var decision = _planner.Plan(registration, Item(Notification("sub-1", new MailEvent { Kind = MailEventKind.Modified, ItemId = "i", ParentFolderId = "inbox-id" }, FolderUnread(2))));

        Assert.Equal(PushKind.Badge, decision.Notification!.Content.Kind);
        Assert.Equal(2, decision.Notification.Content.Badge);
    }

    [Theory]
    [InlineData("en", "New mail")]
    [InlineData("ja-JP", "新着メール")]
    [InlineData("ja", "新着メール")]
    [InlineData("xx-YY", "New mail")]
    public void Plan_GenericStyle_AlertIsLocalised(string locale, string expected)
    {
        var registration = NewRegistration(NotificationStyle.Generic, locale);
        var decision = _planner.Plan(registration, Item(Notification("sub-1", NewMail(), FolderUnread(1))));

        var content = decision.Notification!.Content;
        Assert.Equal(PushKind.Alert, content.Kind);
        Assert.Equal(expected, content.Body);
        Assert.Equal(1, content.Badge);
    }

    [Theory]
    [InlineData(RegistrationStatus.Inactive)]
    [InlineData(RegistrationStatus.Deleted)]
    public void Plan_RegistrationNotActive_AnswersUnsubscribe(RegistrationStatus status)
    {
        var registration = NewRegistration();
        registration.Status = status;
        var decision = _planner.Plan(registration, Item(Notification("sub-1", NewMail())));

        Assert.Equal(IngestVerdict.Unsubscribe, decision.Verdict);
        Assert.Null(decision.Notification);
    }

    [Fact]
    public void Plan_NewSubscriptionReplacesOld_OldOneIsToldToUnsubscribe()
    {
        var registration = NewRegistration();
        _planner.Plan(registration, Item(Notification("sub-old", NewMail())));
        var adopt = _planner.Plan(registration, Item(Notification("sub-new", NewMail())));
        var stale = _planner.Plan(registration, Item(Notification("sub-old", NewMail())));

        Assert.Equal(IngestVerdict.Accepted, adopt.Verdict);
        Assert.Equal("sub-new", registration.SubscriptionId);
        Assert.Equal(IngestVerdict.Unsubscribe, stale.Verdict);
        Assert.Null(stale.Notification);
        Assert.Equal(2, registration.UnreadCount); // the stale subscription's mail was not counted
    }

    [Fact]
    public void Merge_BadgeAfterPendingAlert_KeepsTheAlertWithTheNewBadge()
    {
        var alert = new NotificationContent { Kind = PushKind.Alert, Body = "New mail", Badge = 3 };
        var badge = new NotificationContent { Kind = PushKind.Badge, Badge = 2 };

        var merged = Coalescing.Merge(alert, badge);

        Assert.Equal(PushKind.Alert, merged.Kind);
        Assert.Equal("New mail", merged.Body);
        Assert.Equal(2, merged.Badge);
        Assert.Same(alert, Coalescing.Merge(badge, alert));
    }
}

public sealed class MailboxSourcePlannerTests
{
    private static readonly DateTimeOffset Now = new(2026, 11, 23, 12, 0, 0, TimeSpan.Zero);

    private static Registration Reg(NotificationStyle style) => new()
    {
        Id = "reg_m",
        TenantId = "default",
        Platform = Platform.Apns,
        Token = "aabbccddeeff00112233445566778899",
        Topic = "com.example.mail",
        Source = SourceKind.Dovecot,
        Style = style,
        CreatedAt = Now,
    };

    private static IngestItem Item(MailPreview? preview, params MailEvent[] events) => new()
    {
        Route = IngestRoute.ForMailbox("default", "imap", [9, 9]),
        Notifications = [new MailboxNotification { Events = events }],
        ReceivedAt = Now,
        Preview = preview,
    };

    [Fact]
    public void Preview_IsHeldInMemoryAndTheQueuedContentCarriesNoSubject()
    {
        var cache = new PreviewCache();
        var planner = new MailEventPlanner(Options.Create(new PlannerOptions()), cache);
        var decision = planner.Plan(Reg(NotificationStyle.Preview), Item(new MailPreview("Quarterly numbers", "Bob"), new MailEvent { Kind = MailEventKind.NewMail, ParentFolderId = "inbox" }));

        var content = Assert.IsType<NewNotification>(decision.Notification).Content;
        Assert.True(content.UsePreview);
        Assert.Equal(PushKind.Alert, content.Kind);
        Assert.Equal("New mail", content.Body);
        Assert.Null(content.Title);
        Assert.True(cache.TryGet("reg_m", Now, out var held));
        Assert.Equal("Quarterly numbers", held.Subject);
        Assert.False(cache.TryGet("reg_m", Now + TimeSpan.FromDays(2), out _));
    }

    [Fact]
    public void Preview_ForAGenericRegistration_IsNotKept()
    {
        var cache = new PreviewCache();
        var planner = new MailEventPlanner(Options.Create(new PlannerOptions()), cache);
        var decision = planner.Plan(Reg(NotificationStyle.Generic), Item(new MailPreview("Secret", "Eve"), new MailEvent { Kind = MailEventKind.NewMail }));

        Assert.False(Assert.IsType<NewNotification>(decision.Notification).Content.UsePreview);
        Assert.Equal(0, cache.Count);
    }

    [Fact]
    public void Missed_QueuesASyncWakeUp_AndASyncNeverReplacesAPendingAlert()
    {
        var planner = new MailEventPlanner(Options.Create(new PlannerOptions()));
        var decision = planner.Plan(Reg(NotificationStyle.Badge), Item(null, new MailEvent { Kind = MailEventKind.Missed }));

        var content = Assert.IsType<NewNotification>(decision.Notification).Content;
        Assert.Equal(PushKind.Background, content.Kind);
        Assert.Equal("1", content.Data![MailEventPlanner.SyncDataKey]);

        // A later mail push coalesces under its own key, so it cannot replace the pending wake-up with a badge that
        // would not wake the app.
        var sync = Assert.IsType<NewNotification>(decision.Notification);
        var mail = planner.Plan(Reg(NotificationStyle.Badge), Item(null, new MailEvent { Kind = MailEventKind.NewMail, ItemId = "AAMk1" })).Notification;
        Assert.Equal(MailEventPlanner.SyncCoalesceKeyFor("reg_m"), sync.CoalesceKey);
        Assert.Equal(MailEventPlanner.CoalesceKeyFor("reg_m"), Assert.IsType<NewNotification>(mail).CoalesceKey);
        Assert.NotEqual(sync.CoalesceKey, Assert.IsType<NewNotification>(mail).CoalesceKey);

        var alert = new NotificationContent { Kind = PushKind.Alert, Body = "New mail", Badge = 3 };
        Assert.Same(alert, Coalescing.Merge(alert, content));
        Assert.Same(content, Coalescing.Merge(new NotificationContent { Kind = PushKind.Badge, Badge = 1 }, content));
    }

    [Fact]
    public void PreviewCache_WhenFull_KeepsLivePreviewsAndDropsNewOnes()
    {
        var cache = new PreviewCache(capacity: 2);
        cache.Put("a", new MailPreview("1", null), Now + TimeSpan.FromMinutes(1));
        cache.Put("b", new MailPreview("2", null), Now + TimeSpan.FromMinutes(1));
        cache.Put("c", new MailPreview("3", null), Now + TimeSpan.FromMinutes(1));

        Assert.Equal(2, cache.Count);
        Assert.False(cache.TryGet("c", Now, out _));
        cache.Put("a", new MailPreview("1b", null), Now + TimeSpan.FromMinutes(1)); // replacing a held one always works
        Assert.True(cache.TryGet("a", Now, out var a));
        Assert.Equal("1b", a.Subject);
    }
}
