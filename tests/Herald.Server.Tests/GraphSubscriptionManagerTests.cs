using Herald.Core.Connectors;
using Herald.Core.Ports;
using Herald.Core.Registrations;
using Herald.Core.Security;
using Herald.Simulators.Graph;
using Herald.Sources.Graph;
using Herald.Storage;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;
using Xunit;

namespace Herald.Server.Tests;

/// <summary>
/// The Graph subscription manager on a fake clock: renewal is planned from the <c>expirationDateTime</c> Graph returns
/// (here one hour although three days were asked for), not from what was requested. The fake Graph shares the clock; a real
/// gateway answers the validation handshake.
/// </summary>
public sealed class GraphSubscriptionManagerTests
{
    [Fact]
    public async Task Renewal_HappensBeforeTheReturnedExpiry_NotBeforeItsDueTime()
    {
        var ct = TestContext.Current.CancellationToken;
        var time = new FakeTimeProvider(new DateTimeOffset(2026, 11, 23, 9, 0, 0, TimeSpan.Zero));
        await using var gw = await GatewayHarness.StartAsync(cancellationToken: ct);
        await using var graph = await FakeGraphServer.StartAsync(new FakeGraphOptions { GrantedLifetime = TimeSpan.FromHours(1) }, time, ct);
        graph.RegisterApplication("app", "secret");
        graph.AddMailbox("alice@contoso.com");

        var directoryPath = Path.Combine(gw.Directory, "manager.db");
        await using var store = HeraldStore.Open("sqlite:" + directoryPath, time, NullLoggerFactory.Instance);
        await store.MigrateAsync(ct);
        var graphStore = (IGraphSubscriptionStore)store;
        var secrets = SecretBox.CreateEphemeral();
        var registration = new Registration
        {
            Id = "r1",
            TenantId = "default",
            Platform = Platform.Apns,
            Token = "aa",
            Topic = "t",
            Source = SourceKind.Graph,
            Connector = "o365",
            MailboxHash = secrets.MailboxHash("alice@contoso.com"),
            SealedMailbox = secrets.Seal("alice@contoso.com", "mailbox"),
        };
        var directory = new FixedMailboxDirectory(registration);
        using var http = new HttpClient();
        var options = Options.Create(new GraphSourceOptions { RequestedLifetime = TimeSpan.FromDays(3) });
        var manager = new GraphSubscriptionManager(
            graphStore, directory, new ConnectorService((IConnectorStore)store, secrets, time), secrets, new GraphClientPool(http, time), options, time, NullLogger<GraphSubscriptionManager>.Instance)
        {
            PublicBaseUrl = gw.BaseUrl,
            NodeName = "node-a",
        };
        var connector = new Connector
        {
            TenantId = "default",
            Name = "o365",
            Kind = ConnectorKind.Graph,
            Config = new ConnectorConfig { BaseUrl = graph.BaseUrl, Auth = new ConnectorAuth { TokenUrl = graph.TokenUrl, ClientId = "app", ClientSecret = "secret" } },
        };

        var start = time.GetUtcNow();
        var due = await manager.ReconcileAsync(connector, ct);

        var created = Assert.Single(graph.Subscriptions);
        Assert.Equal(start + TimeSpan.FromHours(1), created.ExpirationDateTime); // granted, not the 3 days asked for
        var stored = Assert.Single(await graphStore.ListGraphSubscriptionsAsync("default", "o365", ct));
        Assert.Equal(created.Id, stored.Id);
        Assert.Equal(created.ExpirationDateTime, stored.ExpiresAt);
        Assert.Equal(secrets.KeyedHash(created.ClientState!, GraphSubscriptionManager.ClientStatePurpose), stored.ClientStateHash);
        Assert.Equal(created.ExpirationDateTime - TimeSpan.FromMinutes(15), due); // a quarter of the granted lifetime early

        // Just before it is due: nothing happens.
        time.Advance(TimeSpan.FromMinutes(45) - TimeSpan.FromSeconds(1));
        await manager.ReconcileAsync(connector, ct);
        Assert.Equal(0, Assert.Single(graph.Subscriptions).Renewals);

        // Due: renewed, and the new expiry is again what Graph returned.
        time.Advance(TimeSpan.FromSeconds(1));
        var nextDue = await manager.ReconcileAsync(connector, ct);
        var renewed = Assert.Single(graph.Subscriptions);
        Assert.Equal(created.Id, renewed.Id);
        Assert.Equal(1, renewed.Renewals);
        Assert.Equal(time.GetUtcNow() + TimeSpan.FromHours(1), renewed.ExpirationDateTime);
        Assert.Equal(renewed.ExpirationDateTime, (await graphStore.GetGraphSubscriptionAsync(created.Id, ct))!.ExpiresAt);
        Assert.Equal(renewed.ExpirationDateTime - TimeSpan.FromMinutes(15), nextDue);

        // Past the expiry without a renewal (the node was down): Graph dropped it; a new one is created.
        time.Advance(TimeSpan.FromHours(2));
        await manager.ReconcileAsync(connector, ct);
        var replacement = Assert.Single(graph.Subscriptions);
        Assert.NotEqual(created.Id, replacement.Id);
        Assert.Single(await graphStore.ListGraphSubscriptionsAsync("default", "o365", ct));

        // The registration goes away: the subscription is deleted on Graph and forgotten.
        directory.Registrations.Clear();
        await manager.ReconcileAsync(connector, ct);
        Assert.Empty(graph.Subscriptions);
        Assert.Empty(await graphStore.ListGraphSubscriptionsAsync("default", "o365", ct));
    }

    [Fact]
    public async Task AnotherNodesLease_IsRespected_UntilItRunsOut()
    {
        var ct = TestContext.Current.CancellationToken;
        var time = new FakeTimeProvider(new DateTimeOffset(2026, 11, 23, 9, 0, 0, TimeSpan.Zero));
        var path = Path.Combine(Path.GetTempPath(), "herald-graph-lease-" + Guid.NewGuid().ToString("N")[..12] + ".db");
        try
        {
            await using var store = HeraldStore.Open("sqlite:" + path, time, NullLoggerFactory.Instance);
            await store.MigrateAsync(ct);
            var graphStore = (IGraphSubscriptionStore)store;
            var now = time.GetUtcNow();
            await graphStore.SaveGraphSubscriptionAsync(new GraphSubscription
            {
                Id = "s1", TenantId = "t", Connector = "c", MailboxHash = [1], SealedMailbox = "x", ClientStateHash = [2],
                ExpiresAt = now.AddHours(1), CreatedAt = now, RenewedAt = now,
            }, ct);

            Assert.True(await graphStore.TryLeaseGraphSubscriptionAsync("s1", "a", now, now.AddMinutes(2), ct));
            Assert.False(await graphStore.TryLeaseGraphSubscriptionAsync("s1", "b", now.AddMinutes(1), now.AddMinutes(3), ct));
            Assert.True(await graphStore.TryLeaseGraphSubscriptionAsync("s1", "a", now.AddMinutes(1), now.AddMinutes(3), ct));
            Assert.True(await graphStore.TryLeaseGraphSubscriptionAsync("s1", "b", now.AddMinutes(3), now.AddMinutes(5), ct));

            // Notifications: a retry with the same key is absorbed while stored and within its window after processing.
            var n = new GraphPendingNotification { DedupKey = [9, 9], SubscriptionId = "s1", Kind = GraphChangeKind.Created, MessageId = "m", ReceivedAt = now, KeepUntil = now.AddHours(1) };
            Assert.Equal(1, await graphStore.AddGraphNotificationsAsync([n], ct));
            Assert.Equal(0, await graphStore.AddGraphNotificationsAsync([n], ct));
            var claimed = Assert.Single(await graphStore.ClaimGraphNotificationsAsync("a", now, now.AddMinutes(2), 10, ct));
            Assert.Empty(await graphStore.ClaimGraphNotificationsAsync("b", now.AddMinutes(1), now.AddMinutes(3), 10, ct));
            await graphStore.CompleteGraphNotificationsAsync([claimed.Sequence], now.AddMinutes(1), ct);
            Assert.Equal(0, await graphStore.AddGraphNotificationsAsync([n], ct));
            await graphStore.CompleteGraphNotificationsAsync([], now.AddHours(2), ct); // past the window: purged
            Assert.Equal(1, await graphStore.AddGraphNotificationsAsync([n], ct));
        }
        finally
        {
            foreach (var f in new[] { path, path + "-wal", path + "-shm" })
            {
                File.Delete(f);
            }
        }
    }
}
