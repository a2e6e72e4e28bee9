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
/// Graph subscriptions managed by share (the farm's fenced work leases): two nodes on one store and one fake Graph, each
/// acting only on the mailboxes of the shares it holds; a node whose share is lost touches nothing more, and the node
/// that takes the share renews the subscription (no second one is created) at once, without waiting for the old per-row
/// lease to run out.
/// </summary>
public sealed class GraphRenewalSharesTests
{
    private const string Alice = "alice@contoso.com";
    private const string Bob = "bob@contoso.com";

    [Fact]
    public async Task TwoNodes_EachActsOnlyOnItsShares_ALostShareIsLeftAlone_TheNewHolderRenewsAtOnce()
    {
        var ct = TestContext.Current.CancellationToken;
        var time = new FakeTimeProvider(new DateTimeOffset(2026, 11, 23, 9, 0, 0, TimeSpan.Zero));
        await using var gw = await GatewayHarness.StartAsync(cancellationToken: ct);
        await using var graph = await FakeGraphServer.StartAsync(new FakeGraphOptions { GrantedLifetime = TimeSpan.FromHours(1) }, time, ct);
        graph.RegisterApplication("app", "secret");
        graph.AddMailbox(Alice);
        graph.AddMailbox(Bob);

        await using var store = HeraldStore.Open("sqlite:" + Path.Combine(gw.Directory, "shares.db"), time, NullLoggerFactory.Instance);
        await store.MigrateAsync(ct);
        var secrets = SecretBox.CreateEphemeral();
        var aliceHash = secrets.MailboxHash(Alice);
        var bobHash = secrets.MailboxHash(Bob);
        var directory = new FixedMailboxDirectory(Registration("r1", Alice, secrets), Registration("r2", Bob, secrets));
        using var http = new HttpClient();
        var connector = new Connector
        {
            TenantId = "default",
            Name = "o365",
            Kind = ConnectorKind.Graph,
            Config = new ConnectorConfig { BaseUrl = graph.BaseUrl, Auth = new ConnectorAuth { TokenUrl = graph.TokenUrl, ClientId = "app", ClientSecret = "secret" } },
        };
        GraphSubscriptionManager Manager(string node) => new(
            (IGraphSubscriptionStore)store, directory, new ConnectorService((IConnectorStore)store, secrets, time), secrets, new GraphClientPool(http, time),
            Options.Create(new GraphSourceOptions()), time, NullLogger<GraphSubscriptionManager>.Instance)
        {
            PublicBaseUrl = gw.BaseUrl,
            NodeName = node,
        };
        var a = Manager("node-a/1");
        var b = Manager("node-b/1");
        using var aliceShareOfA = new CancellationTokenSource();
        using var bobShareOfB = new CancellationTokenSource();
        using var aliceShareOfB = new CancellationTokenSource();
        var aliceHolder = "a";
        CancellationToken? OwnerA(byte[] hash) => hash.SequenceEqual(aliceHash) && aliceHolder == "a" ? aliceShareOfA.Token : null;
        CancellationToken? OwnerB(byte[] hash) => hash.SequenceEqual(bobHash) ? bobShareOfB.Token : hash.SequenceEqual(aliceHash) && aliceHolder == "b" ? aliceShareOfB.Token : null;

        // Each node creates the subscription of its own share only.
        await a.ReconcileAsync(connector, OwnerA, ct);
        var alice = Assert.Single(graph.Subscriptions);
        Assert.Contains("alice", alice.Resource, StringComparison.Ordinal);
        await b.ReconcileAsync(connector, OwnerB, ct);
        Assert.Equal(2, graph.Subscriptions.Count);
        await a.ReconcileAsync(connector, OwnerA, ct); // sees bob's as another node's: leaves it alone
        await b.ReconcileAsync(connector, OwnerB, ct);
        Assert.Equal(2, graph.Subscriptions.Count);
        Assert.Single(graph.Subscriptions, s => s.Resource.Contains("bob", StringComparison.Ordinal));

        // Node a loses alice's share (its lease's lost token is cancelled) just as the renewal falls due: it does nothing.
        time.Advance(TimeSpan.FromMinutes(46));
        await aliceShareOfA.CancelAsync();
        await a.ReconcileAsync(connector, OwnerA, ct);
        Assert.All(graph.Subscriptions, s => Assert.Equal(0, s.Renewals));

        // Node b takes the share: it renews alice's subscription at once (no new one), although node a's per-row lease on
        // it, taken when it was created, has not run out; and it renews bob's.
        aliceHolder = "b";
        await b.ReconcileAsync(connector, OwnerB, ct);
        Assert.Equal(2, graph.Subscriptions.Count);
        Assert.Equal(1, graph.Subscriptions.Single(s => s.Id == alice.Id).Renewals);
        Assert.All(graph.Subscriptions, s => Assert.Equal(1, s.Renewals));

        // Node a, still believing nothing, is told by its owner function that nothing is its own: it touches nothing.
        aliceHolder = "b";
        await a.ReconcileAsync(connector, OwnerA, ct);
        Assert.All(graph.Subscriptions, s => Assert.Equal(1, s.Renewals));
        Assert.Equal(2, (await ((IGraphSubscriptionStore)store).ListGraphSubscriptionsAsync("default", "o365", ct)).Count);
    }

    private static Registration Registration(string id, string mailbox, SecretBox secrets) => new()
    {
        Id = id,
        TenantId = "default",
        Platform = Platform.Apns,
        Token = id + "aa",
        Topic = "t",
        Source = SourceKind.Graph,
        Connector = "o365",
        MailboxHash = secrets.MailboxHash(mailbox),
        SealedMailbox = secrets.Seal(mailbox, "mailbox"),
    };
}
