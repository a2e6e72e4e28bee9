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
/// The Graph subscription manager when Graph answers with errors (the fake Graph's injected failures, a subscription
/// Graph dropped silently, an access token revoked early) and when lifecycle requests are pending, on a fake clock. A
/// real gateway answers the validation handshakes.
/// </summary>
public sealed class GraphSubscriptionErrorTests
{
    private const string Mailbox = "alice@contoso.com";

    private sealed class Rig : IAsyncDisposable
    {
        private readonly HttpClient _http = new();

        private Rig(GatewayHarness gateway, FakeGraphServer graph, IHeraldStore store, FakeTimeProvider time, GraphSubscriptionManager manager, Connector connector)
        {
            Gateway = gateway;
            Graph = graph;
            Store = store;
            Time = time;
            Manager = manager;
            Connector = connector;
        }

        public GatewayHarness Gateway { get; }
        public FakeGraphServer Graph { get; }
        public IHeraldStore Store { get; }
        public IGraphSubscriptionStore Subscriptions => (IGraphSubscriptionStore)Store;
        public FakeTimeProvider Time { get; }
        public GraphSubscriptionManager Manager { get; private set; }
        public Connector Connector { get; }

        public static async Task<Rig> StartAsync(CancellationToken ct)
        {
            var time = new FakeTimeProvider(new DateTimeOffset(2026, 11, 23, 9, 0, 0, TimeSpan.Zero));
            var gw = await GatewayHarness.StartAsync(cancellationToken: ct);
            var graph = await FakeGraphServer.StartAsync(new FakeGraphOptions { GrantedLifetime = TimeSpan.FromHours(1) }, time, ct);
            graph.RegisterApplication("app", "secret");
            graph.AddMailbox(Mailbox);
            var store = HeraldStore.Open("sqlite:" + Path.Combine(gw.Directory, "errors.db"), time, NullLoggerFactory.Instance);
            await store.MigrateAsync(ct);
            var secrets = SecretBox.CreateEphemeral();
            var directory = new FixedMailboxDirectory(new Registration
            {
                Id = "r1",
                TenantId = "default",
                Platform = Platform.Apns,
                Token = "aa",
                Topic = "t",
                Source = SourceKind.Graph,
                Connector = "o365",
                MailboxHash = secrets.MailboxHash(Mailbox),
                SealedMailbox = secrets.Seal(Mailbox, "mailbox"),
            });
            var connector = new Connector
            {
                TenantId = "default",
                Name = "o365",
                Kind = ConnectorKind.Graph,
                Config = new ConnectorConfig { BaseUrl = graph.BaseUrl, Auth = new ConnectorAuth { TokenUrl = graph.TokenUrl, ClientId = "app", ClientSecret = "secret" } },
            };
            var rig = new Rig(gw, graph, store, time, null!, connector);
            rig.Manager = new GraphSubscriptionManager(
                (IGraphSubscriptionStore)store, directory, new ConnectorService((IConnectorStore)store, secrets, time), secrets, new GraphClientPool(rig._http, time),
                Options.Create(new GraphSourceOptions()), time, NullLogger<GraphSubscriptionManager>.Instance)
            {
                PublicBaseUrl = gw.BaseUrl,
                NodeName = "node-a",
            };
            return rig;
        }

        public Task<DateTimeOffset> ReconcileAsync(CancellationToken ct) => Manager.ReconcileAsync(Connector, ct);

        public async Task<GraphSubscription> StoredAsync(CancellationToken ct) => Assert.Single(await Subscriptions.ListGraphSubscriptionsAsync("default", "o365", ct));

        public async ValueTask DisposeAsync()
        {
            _http.Dispose();
            await Store.DisposeAsync();
            await Graph.DisposeAsync();
            await Gateway.DisposeAsync();
        }
    }

    [Fact]
    public async Task CreateRefused_LeavesNothingBehind_TheNextPassCreates()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var rig = await Rig.StartAsync(ct);
        rig.Graph.FailNext("create", 1, 503, "ServiceUnavailable");

        await rig.ReconcileAsync(ct);
        Assert.Empty(rig.Graph.Subscriptions);
        Assert.Empty(await rig.Subscriptions.ListGraphSubscriptionsAsync("default", "o365", ct)); // no provisional row left

        await rig.ReconcileAsync(ct);
        var created = Assert.Single(rig.Graph.Subscriptions);
        Assert.Equal(created.Id, (await rig.StoredAsync(ct)).Id);
    }

    [Fact]
    public async Task RenewRefused_KeepsTheSubscriptionUntilItsExpiry_TheNextPassRenews()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var rig = await Rig.StartAsync(ct);
        await rig.ReconcileAsync(ct);
        var created = Assert.Single(rig.Graph.Subscriptions);

        rig.Time.Advance(TimeSpan.FromMinutes(46)); // due (15 minutes before the granted hour ends)
        rig.Graph.FailNext("renew", 1, 503, "ServiceUnavailable");
        var retryAt = await rig.ReconcileAsync(ct);
        Assert.Equal(0, Assert.Single(rig.Graph.Subscriptions).Renewals);

        // Tried again shortly, not at once (a due subscription must not be retried in a tight loop) nor a whole interval later.
        Assert.Equal(rig.Time.GetUtcNow() + GraphSubscriptionManager.RetryAfterFailure, retryAt);
        var kept = await rig.StoredAsync(ct);
        Assert.Equal(created.Id, kept.Id);
        Assert.Equal(created.ExpirationDateTime, kept.ExpiresAt);

        var due = await rig.ReconcileAsync(ct);
        var renewed = Assert.Single(rig.Graph.Subscriptions);
        Assert.Equal(created.Id, renewed.Id);
        Assert.Equal(1, renewed.Renewals);
        Assert.Equal(rig.Time.GetUtcNow() + TimeSpan.FromHours(1), (await rig.StoredAsync(ct)).ExpiresAt);
        Assert.Equal(renewed.ExpirationDateTime - TimeSpan.FromMinutes(15), due);
    }

    [Fact]
    public async Task RenewRefusedAgainAndAgain_RetriesBackOff_AndASuccessStartsOver()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var rig = await Rig.StartAsync(ct);
        await rig.ReconcileAsync(ct);
        var created = Assert.Single(rig.Graph.Subscriptions);
        rig.Time.Advance(TimeSpan.FromMinutes(46)); // due; 14 minutes left before it expires

        // Refused four times in a row: 5, 10, 20, 40 s before each next try (a throttling or failing Graph is not hammered).
        foreach (var wait in new[] { 5, 10, 20, 40 })
        {
            rig.Graph.FailNext("renew", 1, 503, "ServiceUnavailable");
            Assert.Equal(rig.Time.GetUtcNow() + TimeSpan.FromSeconds(wait), await rig.ReconcileAsync(ct));
            rig.Time.Advance(TimeSpan.FromSeconds(wait));
        }

        Assert.Equal(0, Assert.Single(rig.Graph.Subscriptions).Renewals);
        await rig.ReconcileAsync(ct); // Graph answers again
        Assert.Equal(1, Assert.Single(rig.Graph.Subscriptions).Renewals);

        // The next failure starts over at 5 s.
        Assert.True(await rig.Subscriptions.SetGraphSubscriptionActionAsync(created.Id, GraphSubscriptionAction.Reauthorize, ct));
        rig.Graph.FailNext("renew", 1, 503, "ServiceUnavailable");
        Assert.Equal(rig.Time.GetUtcNow() + GraphSubscriptionManager.RetryAfterFailure, await rig.ReconcileAsync(ct));
    }

    [Fact]
    public void RetryDelay_Doubles_UpToFiveMinutes()
    {
        Assert.Equal(TimeSpan.FromSeconds(5), GraphSubscriptionManager.RetryDelay(1));
        Assert.Equal(TimeSpan.FromSeconds(10), GraphSubscriptionManager.RetryDelay(2));
        Assert.Equal(TimeSpan.FromSeconds(160), GraphSubscriptionManager.RetryDelay(6));
        Assert.Equal(GraphSubscriptionManager.MaxRetryAfterFailure, GraphSubscriptionManager.RetryDelay(7));
        Assert.Equal(GraphSubscriptionManager.MaxRetryAfterFailure, GraphSubscriptionManager.RetryDelay(64));
        Assert.Equal(GraphSubscriptionManager.RetryAfterFailure, GraphSubscriptionManager.RetryDelay(0));
    }

    [Fact]
    public async Task SubscriptionDroppedByGraph_RenewIs404_ItIsRecreatedInTheSamePass()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var rig = await Rig.StartAsync(ct);
        await rig.ReconcileAsync(ct);
        var created = Assert.Single(rig.Graph.Subscriptions);
        Assert.True(rig.Graph.DropSubscription(created.Id));

        rig.Time.Advance(TimeSpan.FromMinutes(46));
        await rig.ReconcileAsync(ct);

        var replacement = Assert.Single(rig.Graph.Subscriptions);
        Assert.NotEqual(created.Id, replacement.Id);
        Assert.NotEqual(created.ClientState, replacement.ClientState);
        Assert.Equal(replacement.Id, (await rig.StoredAsync(ct)).Id);
    }

    [Fact]
    public async Task AccessTokenRevokedEarly_TheCallIsRetriedWithANewToken()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var rig = await Rig.StartAsync(ct);
        await rig.ReconcileAsync(ct);
        Assert.Equal(1, rig.Graph.TokenRequests);

        rig.Graph.ExpireAccessTokens(); // Graph answers 401 InvalidAuthenticationToken to the cached token
        rig.Time.Advance(TimeSpan.FromMinutes(46));
        await rig.ReconcileAsync(ct);

        Assert.Equal(1, Assert.Single(rig.Graph.Subscriptions).Renewals);
        Assert.Equal(2, rig.Graph.TokenRequests);
    }

    [Fact]
    public async Task PendingLifecycleRequests_AreActedOnBeforeTheRenewalIsDue()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var rig = await Rig.StartAsync(ct);
        await rig.ReconcileAsync(ct);
        var created = Assert.Single(rig.Graph.Subscriptions);

        // reauthorizationRequired (recorded by the lifecycle endpoint): renewed at once although not due for 45 minutes.
        rig.Time.Advance(TimeSpan.FromMinutes(5));
        Assert.True(await rig.Subscriptions.SetGraphSubscriptionActionAsync(created.Id, GraphSubscriptionAction.Reauthorize, ct));
        await rig.ReconcileAsync(ct);
        var renewed = Assert.Single(rig.Graph.Subscriptions);
        Assert.Equal(1, renewed.Renewals);
        var stored = await rig.StoredAsync(ct);
        Assert.Equal(GraphSubscriptionAction.None, stored.PendingAction);
        Assert.Equal(rig.Time.GetUtcNow() + TimeSpan.FromHours(1), stored.ExpiresAt);

        // A reauthorization Graph refuses stays pending and is tried again in seconds, not at the next interval.
        Assert.True(await rig.Subscriptions.SetGraphSubscriptionActionAsync(created.Id, GraphSubscriptionAction.Reauthorize, ct));
        rig.Graph.FailNext("renew", 1, 503, "ServiceUnavailable");
        Assert.Equal(rig.Time.GetUtcNow() + GraphSubscriptionManager.RetryAfterFailure, await rig.ReconcileAsync(ct));
        Assert.Equal(GraphSubscriptionAction.Reauthorize, (await rig.StoredAsync(ct)).PendingAction);
        rig.Time.Advance(GraphSubscriptionManager.RetryAfterFailure);
        await rig.ReconcileAsync(ct);
        Assert.Equal(2, Assert.Single(rig.Graph.Subscriptions).Renewals);
        Assert.Equal(GraphSubscriptionAction.None, (await rig.StoredAsync(ct)).PendingAction);

        // A plain pass afterwards does nothing more.
        await rig.ReconcileAsync(ct);
        Assert.Equal(2, Assert.Single(rig.Graph.Subscriptions).Renewals);

        // subscriptionRemoved: the old one is deleted and a new one created with a new clientState.
        Assert.True(await rig.Subscriptions.SetGraphSubscriptionActionAsync(created.Id, GraphSubscriptionAction.Recreate, ct));
        await rig.ReconcileAsync(ct);
        var recreated = Assert.Single(rig.Graph.Subscriptions);
        Assert.NotEqual(created.Id, recreated.Id);
        Assert.NotEqual(created.ClientState, recreated.ClientState);
        Assert.Equal(recreated.Id, (await rig.StoredAsync(ct)).Id);
    }
}
