using Herald.Core.Connectors;
using Herald.Simulators.Exchange.Streaming;
using Herald.Sources.Ews.Streaming;
using Microsoft.Extensions.Time.Testing;
using Xunit;
using static Herald.Simulators.Tests.Exchange.Streaming.StreamingKit;

namespace Herald.Simulators.Tests.Exchange.Streaming;

public sealed class StreamingConnectorTests
{
    [Fact]
    public async Task NewMail_IsStreamedWithTheInboxUnreadCount()
    {
        await using var kit = await StartAsync();
        var addresses = await kit.StreamAsync(4);

        var first = kit.Server.EmitNewMail(addresses[2], "Quarterly numbers", "Dana", "dana@contoso.test");
        var second = kit.Server.EmitNewMail(addresses[2], "Re: Quarterly numbers", "Eve", "eve@contoso.test");
        await Eventually(() => kit.Sink.NewMailItems(addresses[2]).Count == 2);

        Assert.Equal([first.ItemId, second.ItemId], kit.Sink.NewMailItems(addresses[2]));
        var folderEvents = kit.Sink.Notifications.Where(n => n.Mailbox == addresses[2]).SelectMany(n => n.Notification.Events).Where(e => e.IsFolderEvent).ToList();
        Assert.Equal([1, 2], folderEvents.Select(e => e.UnreadCount));
        Assert.Empty(kit.Sink.Missed);
        Assert.All(kit.Sink.Notifications, n => Assert.Equal(addresses[2], n.Mailbox));
    }

    [Fact]
    public async Task Groups_FollowBackends_OneConnectionEach_AnchorFirstAlphabetically()
    {
        await using var kit = await StartAsync();
        // Even users on MBX01, odd on MBX02.
        var addresses = await kit.StreamAsync(6, i => i % 2 == 0 ? "MBX01" : "MBX02");

        var groups = kit.Connector.Groups;
        Assert.Equal(2, groups.Count);
        var mbx1 = Assert.Single(groups, g => g.Key.EndsWith("|DAG-MBX01", StringComparison.Ordinal));
        Assert.Equal([addresses[0], addresses[2], addresses[4]], mbx1.Members);
        Assert.Equal(addresses[0], mbx1.AnchorMailbox);
        var mbx2 = Assert.Single(groups, g => g.Key.EndsWith("|DAG-MBX02", StringComparison.Ordinal));
        Assert.Equal(addresses[1], mbx2.AnchorMailbox);
        Assert.Equal(2, kit.Server.OpenConnections);
        Assert.Equal(1, kit.Connector.Autodiscover!.SoapRequests); // one GetUserSettings for all six
    }

    [Fact]
    public async Task Affinity_FirstSubscribeSetsCookie_EveryLaterRequestOfTheGroupReplaysIt()
    {
        await using var kit = await StartAsync();
        var addresses = await kit.StreamAsync(5, _ => "MBX02");
        kit.Server.CloseStreamingConnections(); // one more GetStreamingEvents round
        await Eventually(() => kit.Server.Requests.Count(r => r.Operation == "GetStreamingEvents" && r.ResponseCode == "NoError") >= 2);

        var requests = kit.Server.Requests.Where(r => r.Operation is "Subscribe" or "GetStreamingEvents").ToList();
        var firstSubscribe = requests[0];
        Assert.Equal("Subscribe", firstSubscribe.Operation);
        Assert.Equal(addresses[0], firstSubscribe.Impersonated); // the anchor subscribes first, alone
        Assert.Null(firstSubscribe.Cookie);
        Assert.True(firstSubscribe.PreferServerAffinity);
        Assert.NotNull(firstSubscribe.SetCookie);
        Assert.All(requests, r => Assert.Equal(addresses[0], r.AnchorMailbox));
        Assert.All(requests.Skip(1), r => Assert.Equal(firstSubscribe.SetCookie, r.Cookie));
        Assert.All(requests.Where(r => r.Operation == "Subscribe"), r => Assert.True(r.PreferServerAffinity));
        Assert.Equal(addresses.Order(StringComparer.OrdinalIgnoreCase), requests.Where(r => r.Operation == "Subscribe").Select(r => r.Impersonated!).Order(StringComparer.OrdinalIgnoreCase));
        Assert.All(requests.Where(r => r.Operation == "GetStreamingEvents"), r => Assert.Equal(addresses[0], r.Impersonated));
        Assert.Equal(firstSubscribe.SetCookie, Assert.Single(kit.Connector.Groups).BackEndCookie);
    }

    [Fact]
    public async Task DroppedConnection_Reconnects_AndNothingIsLost()
    {
        await using var kit = await StartAsync();
        var addresses = await kit.StreamAsync(3);
        var before = kit.Server.ConnectionsOpened;

        kit.Server.DropStreamingConnections();
        // While the connections are down, Exchange keeps queueing for the live subscriptions.
        var emits = Enumerable.Range(0, 3).Select(i => kit.Server.EmitNewMail(addresses[i], "s" + i, "n", "n@x.test")).ToList();
        await Eventually(() => addresses.All(a => kit.Sink.NewMailItems(a).Count == 1));

        Assert.True(kit.Server.ConnectionsOpened > before);
        for (var i = 0; i < 3; i++)
        {
            Assert.Equal([emits[i].ItemId], kit.Sink.NewMailItems(addresses[i]));
        }

        Assert.Empty(kit.Sink.Missed); // the subscriptions survived: no sync wake-up needed
        Assert.Equal(3, kit.Server.SubscriptionCount);
    }

    [Fact]
    public async Task ExpiredSubscription_IsRecreated_AndTheDeviceGetsASyncWakeUp()
    {
        await using var kit = await StartAsync();
        var addresses = await kit.StreamAsync(3, _ => "MBX01");

        kit.Server.ExpireSubscriptions(addresses[1]);
        kit.Server.EmitNewMail(addresses[1], "lost", "n", "n@x.test"); // nobody holds a subscription: this one is gone
        kit.Server.CloseStreamingConnections();
        await Eventually(() => kit.Sink.Missed.Contains(addresses[1]), "sync wake-up");
        await Eventually(() => kit.Server.SubscriptionsOf(addresses[1]) == 1 && kit.Connector.Groups.All(g => g.Connected));

        Assert.Contains(kit.Server.Requests, r => r.Operation == "GetStreamingEvents" && r.ResponseCode == "ErrorSubscriptionNotFound");
        var after = kit.Server.EmitNewMail(addresses[1], "after", "n", "n@x.test");
        await Eventually(() => kit.Sink.NewMailItems(addresses[1]).Contains(after.ItemId));
        Assert.Equal([addresses[1]], kit.Sink.Missed); // only the mailbox that lost its subscription
    }

    [Fact]
    public async Task MissedNotificationEvents_SyncWakeUp_AndResubscribe()
    {
        await using var kit = await StartAsync();
        var addresses = await kit.StreamAsync(2, _ => "MBX01");
        var oldCount = kit.Server.Requests.Count(r => r.Operation == "Subscribe");

        kit.Server.InjectMissedEvents(addresses[0]);
        await Eventually(() => kit.Sink.Missed.Contains(addresses[0]));
        await Eventually(() => kit.Server.SubscriptionsOf(addresses[0]) == 1 && kit.Connector.Groups.All(g => g.Connected && g.Subscribed == 2));

        Assert.Equal(oldCount + 1, kit.Server.Requests.Count(r => r.Operation == "Subscribe"));
        var mail = kit.Server.EmitNewMail(addresses[0], "x", "n", "n@x.test");
        await Eventually(() => kit.Sink.NewMailItems(addresses[0]).Contains(mail.ItemId));
        Assert.Single(kit.Sink.Missed);
    }

    [Fact]
    public async Task ServerBusy_WaitsBackOffMilliseconds_BeforeTryingAgain()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var kit = await StartAsync(clientTime: time);
        kit.Server.AddMailbox(Address(0));
        kit.Server.FailNext(1, FakeEwsFailure.ServerBusy, "Subscribe", TimeSpan.FromMinutes(4));

        await kit.Connector.SetMailboxesAsync([Address(0)], Ct);
        await Eventually(() => kit.Server.Requests.Any(r => r.ResponseCode == "ErrorServerBusy"));
        await Task.Delay(300, Ct);
        Assert.Equal(1, kit.Server.Requests.Count(r => r.Operation == "Subscribe")); // still waiting

        time.Advance(TimeSpan.FromMinutes(3));
        await Task.Delay(200, Ct);
        Assert.Equal(1, kit.Server.Requests.Count(r => r.Operation == "Subscribe"));

        time.Advance(TimeSpan.FromMinutes(1) + TimeSpan.FromSeconds(1));
        await Eventually(() => kit.Connector.Groups.All(g => g.Connected));
        Assert.Equal(2, kit.Server.Requests.Count(r => r.Operation == "Subscribe"));
    }

    [Fact]
    public async Task Http503_BacksOffAndDoubles_ThenRecovers()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var kit = await StartAsync(options: new EwsStreamingOptions { MinBackOff = TimeSpan.FromSeconds(10) }, clientTime: time);
        kit.Server.AddMailbox(Address(0));
        kit.Server.FailNext(2, FakeEwsFailure.Http503, "GetStreamingEvents");

        await kit.Connector.SetMailboxesAsync([Address(0)], Ct);
        await Eventually(() => kit.Server.Requests.Count(r => r.Status == 503) == 1);
        await Task.Delay(200, Ct);
        time.Advance(TimeSpan.FromSeconds(10)); // first back-off: 10 s
        await Eventually(() => kit.Server.Requests.Count(r => r.Status == 503) == 2);
        time.Advance(TimeSpan.FromSeconds(10));
        await Task.Delay(300, Ct);
        Assert.False(kit.Connector.Groups.Single().Connected); // the second back-off is 20 s
        time.Advance(TimeSpan.FromSeconds(10));
        await Eventually(() => kit.Connector.Groups.All(g => g.Connected));
        Assert.Equal(1, kit.Server.Requests.Count(r => r.Operation == "Subscribe")); // the subscription was kept
    }

    [Fact]
    public async Task MailboxMoved_ProxyRequestNotAllowed_RedoesAutodiscover_AndRegroups()
    {
        await using var kit = await StartAsync();
        var addresses = await kit.StreamAsync(3, _ => "MBX01");
        var soapBefore = kit.Connector.Autodiscover!.SoapRequests;

        kit.Server.MoveMailbox(addresses[1], "MBX02");
        kit.Server.CloseStreamingConnections();
        await Eventually(() => kit.Connector.Groups.Count == 2 && kit.Connector.Groups.All(g => g.Connected && g.Subscribed == g.Members.Count));

        Assert.True(kit.Server.Requests.Any(r => r.Operation == "Subscribe" && r.ResponseCode == "ErrorProxyRequestNotAllowed"), string.Join("\n", kit.Server.Requests));
        Assert.True(kit.Connector.Autodiscover.SoapRequests > soapBefore);
        var moved = Assert.Single(kit.Connector.Groups, g => g.Key.EndsWith("|DAG-MBX02", StringComparison.Ordinal));
        Assert.Equal([addresses[1]], moved.Members);
        var mail = kit.Server.EmitNewMail(addresses[1], "moved", "n", "n@x.test");
        await Eventually(() => kit.Sink.NewMailItems(addresses[1]).Contains(mail.ItemId));
        Assert.Contains(addresses[1], kit.Sink.Missed); // its subscription died with the move
    }

    [Fact]
    public async Task ExceededConnectionCount_PacksMailboxesIntoFewerConnections()
    {
        var server = new FakeEwsServerOptions { Seed = 3, HeartbeatInterval = TimeSpan.FromSeconds(1), HangingConnectionLimit = 1 };
        var options = new EwsStreamingOptions { MaxGroupSize = 2, ImpersonateAnchorOnStream = false };
        await using var kit = await StartAsync(server, options);
        var addresses = Enumerable.Range(0, 3).Select(Address).ToList();
        foreach (var address in addresses)
        {
            kit.Server.AddMailbox(address, "MBX01");
        }

        await kit.Connector.SetMailboxesAsync(addresses, Ct);
        // The group counts as connected once response headers arrive, which also happens for a refused stream
        // (an error envelope in a 200), so the wait includes the server's own count of open streams.
        await Eventually(() => kit.Connector.Groups.Count == 1 && kit.Connector.Groups[0].Connected && kit.Connector.Groups[0].Subscribed == 3
            && kit.Server.OpenConnections == 1);

        Assert.Contains(kit.Server.Requests, r => r.ResponseCode == "ErrorExceededConnectionCount");
        var mails = addresses.Select(a => kit.Server.EmitNewMail(a, "x", "n", "n@x.test")).ToList();
        await Eventually(() => addresses.All(a => kit.Sink.NewMailItems(a).Count == 1));
        Assert.Equal(3, kit.Server.SubscriptionCount); // packing moved the subscriptions, it did not recreate them
    }

    [Fact]
    public async Task SilentConnection_HeartbeatWatchdog_Reconnects()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var server = new FakeEwsServerOptions { Seed = 5, HeartbeatInterval = TimeSpan.FromHours(1) }; // a server that goes quiet
        await using var kit = await StartAsync(server, new EwsStreamingOptions { HeartbeatTimeout = TimeSpan.FromSeconds(60) }, time);
        await kit.StreamAsync(1);
        var opened = kit.Server.ConnectionsOpened;

        time.Advance(TimeSpan.FromSeconds(59));
        await Task.Delay(200, Ct);
        Assert.Equal(opened, kit.Server.ConnectionsOpened);
        time.Advance(TimeSpan.FromSeconds(2));
        await Eventually(() => kit.Server.ConnectionsOpened > opened);
    }

    [Fact]
    public async Task Connection_IsRenewedBeforeTheServerTimeout()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var options = new EwsStreamingOptions { ConnectionTimeout = TimeSpan.FromMinutes(2), ReconnectMargin = TimeSpan.FromSeconds(30), HeartbeatTimeout = TimeSpan.FromMinutes(5) };
        await using var kit = await StartAsync(clientTime: time, options: options);
        var addresses = await kit.StreamAsync(1);
        var opened = kit.Server.ConnectionsOpened;
        Assert.Contains(kit.Server.Requests, r => r.Operation == "GetStreamingEvents");

        time.Advance(TimeSpan.FromSeconds(91));
        await Eventually(() => kit.Server.ConnectionsOpened > opened);
        var mail = kit.Server.EmitNewMail(addresses[0], "x", "n", "n@x.test");
        await Eventually(() => kit.Sink.NewMailItems(addresses[0]).Contains(mail.ItemId));
    }

    [Fact]
    public async Task ClosedStatus_Reconnects()
    {
        await using var kit = await StartAsync();
        var addresses = await kit.StreamAsync(2);
        var opened = kit.Server.ConnectionsOpened;
        kit.Server.CloseStreamingConnections();
        await Eventually(() => kit.Server.ConnectionsOpened >= opened + 2 && kit.Connector.Groups.All(g => g.Connected));
        var mail = kit.Server.EmitNewMail(addresses[1], "x", "n", "n@x.test");
        await Eventually(() => kit.Sink.NewMailItems(addresses[1]).Contains(mail.ItemId));
        Assert.Empty(kit.Sink.Missed);
    }

    [Fact]
    public async Task RemovedMailbox_IsUnsubscribed_AddedOneJoinsAGroupWithRoom()
    {
        await using var kit = await StartAsync();
        var addresses = await kit.StreamAsync(3, _ => "MBX01");
        kit.Server.AddMailbox("zz@contoso.test", "MBX01");

        await kit.Connector.SetMailboxesAsync([addresses[0], addresses[2], "zz@contoso.test"], Ct);
        await Eventually(() => kit.Server.SubscriptionsOf(addresses[1]) == 0 && kit.Server.SubscriptionsOf("zz@contoso.test") == 1);

        var group = Assert.Single(kit.Connector.Groups);
        Assert.Equal([addresses[0], addresses[2], "zz@contoso.test"], group.Members);
        Assert.Equal(addresses[0], group.AnchorMailbox);
        await Eventually(() => kit.Connector.Groups.Single().Connected);
        var mail = kit.Server.EmitNewMail("zz@contoso.test", "x", "n", "n@x.test");
        await Eventually(() => kit.Sink.NewMailItems("zz@contoso.test").Contains(mail.ItemId));
    }

    [Fact]
    public async Task PoxFallback_WhenSoapAutodiscoverIsMissing()
    {
        await using var kit = await StartAsync(new FakeEwsServerOptions { Seed = 9, SoapAutodiscover = false, HeartbeatInterval = TimeSpan.FromSeconds(1) });
        await kit.StreamAsync(2, i => i == 0 ? "MBX01" : "MBX02");

        Assert.Equal(2, kit.Connector.Groups.Count);
        Assert.Equal(2, kit.Connector.Autodiscover!.PoxRequests);
        Assert.Contains(kit.Server.Requests, r => r.Status == 404);

        // Cached: a second resolve asks nobody.
        var settings = await kit.Connector.Autodiscover.ResolveAsync([Address(0), Address(1)], Ct);
        Assert.Equal(2, kit.Connector.Autodiscover.PoxRequests);
        Assert.Equal("DAG-MBX02", settings[Address(1)].GroupingInformation);
        Assert.Equal(kit.Server.EwsUrl, settings[Address(0)].EwsUrl.AbsoluteUri);
    }

    [Fact]
    public async Task StaticEwsUrl_WithOAuth2_TokenIsFetchedOnceAndCached()
    {
        await using var kit = await StartAsync(config: server => new ConnectorConfig
        {
            EwsUrl = server.EwsUrl,
            Auth = new ConnectorAuth { Type = "oauth2", TokenUrl = server.TokenUrl, ClientId = server.Options.OAuthClientId, ClientSecret = server.Options.OAuthClientSecret, Scope = "https://outlook.office365.com/.default" },
        });
        var addresses = await kit.StreamAsync(3, _ => "MBX01");

        Assert.Null(kit.Connector.Autodiscover);
        Assert.Equal(1, kit.Server.TokensIssued);
        Assert.All(kit.Server.Requests.Where(r => r.Operation != "token"), r => Assert.Equal("Bearer", r.Authorization));
        var mail = kit.Server.EmitNewMail(addresses[1], "x", "n", "n@x.test");
        await Eventually(() => kit.Sink.NewMailItems(addresses[1]).Contains(mail.ItemId));
    }

    [Fact]
    public async Task Preview_And_UnreadCount_AreFetchedImpersonated()
    {
        await using var kit = await StartAsync();
        var addresses = await kit.StreamAsync(2);
        var mail = kit.Server.EmitNewMail(addresses[1], "Budget <draft> & notes", "Zoë Müller", "zoe@contoso.test");
        var url = kit.Connector.EwsUrlOf(addresses[1])!;

        var preview = await kit.Connector.Client.GetPreviewAsync(url, addresses[1], mail.ItemId, Ct);
        Assert.Equal(new EwsItemPreview("Budget <draft> & notes", "Zoë Müller", "zoe@contoso.test"), preview);
        Assert.Equal(1, await kit.Connector.Client.GetUnreadCountAsync(url, addresses[1], "inbox", Ct));
        kit.Server.MarkRead(addresses[1]);
        Assert.Equal(0, await kit.Connector.Client.GetUnreadCountAsync(url, addresses[1], "inbox", Ct));
        var getItem = Assert.Single(kit.Server.Requests, r => r.Operation == "GetItem");
        Assert.Equal(addresses[1], getItem.Impersonated);

        // Another mailbox's item is not visible through this impersonation.
        var ex = await Assert.ThrowsAsync<EwsStreamingException>(() => kit.Connector.Client.GetPreviewAsync(url, addresses[0], mail.ItemId, Ct));
        Assert.Equal("ErrorItemNotFound", ex.ResponseCode);
    }

    [Fact]
    public async Task BasicOverPlainHttp_IsRefusedExceptToLoopback()
    {
        await using var server = await FakeEwsServer.StartAsync(new FakeEwsServerOptions { Seed = 1 }, cancellationToken: Ct);
        using var http = new EwsHttp();
        var options = new EwsStreamingOptions();
        using var auth = new EwsAuthenticator(Basic(server), http, TimeProvider.System, options);
        var ex = await Assert.ThrowsAsync<EwsStreamingException>(async () => await auth.GetAsync(new Uri("http://mail.contoso.test/EWS/Exchange.asmx"), Ct));
        Assert.Equal("InsecureTransportRefused", ex.ResponseCode);
        Assert.Equal("Basic", (await auth.GetAsync(new Uri("https://mail.contoso.test/EWS/Exchange.asmx"), Ct)).Scheme);
        Assert.Equal("Basic", (await auth.GetAsync(new Uri(server.EwsUrl), Ct)).Scheme); // a loopback peer
    }

    [Fact]
    public async Task Tls_WithPinnedCertificate_Streams()
    {
        await using var server = await FakeEwsServer.StartAsync(new FakeEwsServerOptions { Seed = 2, UseTls = true, HeartbeatInterval = TimeSpan.FromSeconds(1) }, cancellationToken: Ct);
        using var http = new EwsHttp(server.Certificate);
        var sink = new RecordingSink();
        await using var connector = new EwsStreamingConnector(Autodiscover(server), new EwsStreamingOptions(), sink, http, TimeProvider.System, Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance);
        server.AddMailbox("tls@contoso.test");
        await connector.SetMailboxesAsync(["tls@contoso.test"], Ct);
        await Eventually(() => connector.Groups.Count == 1 && connector.Groups[0].Connected);
        var mail = server.EmitNewMail("tls@contoso.test", "x", "n", "n@x.test");
        await Eventually(() => sink.NewMailItems("tls@contoso.test").Contains(mail.ItemId));
        Assert.StartsWith("https://", server.BaseUrl, StringComparison.Ordinal);
    }
}
