using Herald.Core.Credentials;
using Herald.Core.Ports;
using Herald.Core.Registrations;
using Herald.Storage.Postgres;
using Herald.Testing;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using Xunit;

namespace Herald.Storage.Tests.Postgres;

/// <summary>The ports added after the queue (credentials and webhooks, Graph subscriptions) on PostgreSQL.</summary>
public sealed class PostgresPortTests(PostgresServer server) : IAsyncLifetime
{
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2025, 3, 1, 8, 0, 0, TimeSpan.Zero));
    private string _connectionString = null!;
    private PostgresStore _store = null!;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public async ValueTask InitializeAsync()
    {
        _connectionString = await server.CreateDatabaseAsync("ports");
        _store = new PostgresStore(_connectionString, new PostgresStoreOptions(), _time, NullLogger.Instance);
        await _store.MigrateAsync(Ct);
    }

    public async ValueTask DisposeAsync()
    {
        await _store.DisposeAsync();
        await server.DropDatabaseAsync(_connectionString);
    }

    [Fact]
    public async Task Credentials_PutGetListDelete_BumpTheStampAndVersions()
    {
        var stamp = await _store.CredentialsStampAsync(Ct);
        var first = await _store.PutCredentialAsync(Credential(Platform.Apns, "sealed-1"), Ct);
        var second = await _store.PutCredentialAsync(Credential(Platform.Apns, "sealed-2"), Ct);
        await _store.PutCredentialAsync(Credential(Platform.Fcm, "sealed-3"), Ct);

        Assert.True(second.Version > first.Version);
        var stored = await _store.GetCredentialAsync("default", Platform.Apns, Ct);
        Assert.Equal("sealed-2", stored!.SealedSecret);
        Assert.Equal(["com.example.mail"], stored.Topics);
        Assert.Equal(second.Version, stored.Version);
        Assert.Equal(_time.GetUtcNow().AddDays(30), stored.ExpiresAt);
        Assert.Equal([Platform.Apns, Platform.Fcm], (await _store.ListCredentialsAsync("default", Ct)).Select(c => c.Platform));
        Assert.Equal(stamp + 3, await _store.CredentialsStampAsync(Ct));

        Assert.True(await _store.DeleteCredentialAsync("default", Platform.Fcm, Ct));
        Assert.False(await _store.DeleteCredentialAsync("default", Platform.Fcm, Ct));
        Assert.Equal(stamp + 4, await _store.CredentialsStampAsync(Ct));
        await Assert.ThrowsAsync<InvalidOperationException>(() => _store.PutCredentialAsync(Credential(Platform.Wns, "x") with { TenantId = "nobody" }, Ct));
    }

    [Fact]
    public async Task Webhooks_OutboxIsClaimedOnceAndCompleted()
    {
        Assert.Equal(0, await _store.EnqueueWebhookEventsAsync([new WebhookEvent("default", "token.invalid", "{}", _time.GetUtcNow())], Ct)); // no webhook: nothing stored
        await _store.PutWebhookAsync(new WebhookRecord("default", "https://hooks.example.com/herald", "sealed-key", _time.GetUtcNow()), Ct);
        Assert.Equal("https://hooks.example.com/herald", (await _store.GetWebhookAsync("default", Ct))!.Url);
        Assert.Equal(2, await _store.EnqueueWebhookEventsAsync(
            [new WebhookEvent("default", "token.invalid", "{\"a\":1}", _time.GetUtcNow()), new WebhookEvent("default", "token.invalid", "{\"a\":2}", _time.GetUtcNow())],
            Ct));

        var claimed = await _store.ClaimWebhookEventsAsync(_time.GetUtcNow(), TimeSpan.FromMinutes(1), 10, Ct);
        Assert.Equal(2, claimed.Count);
        Assert.Empty(await _store.ClaimWebhookEventsAsync(_time.GetUtcNow(), TimeSpan.FromMinutes(1), 10, Ct)); // leased
        await _store.CompleteWebhookEventAsync(claimed[0].Id, new WebhookAttemptResult(true, null, 200, null), Ct);
        await _store.CompleteWebhookEventAsync(claimed[1].Id, new WebhookAttemptResult(false, _time.GetUtcNow().AddSeconds(30), 503, "Unavailable"), Ct);

        _time.Advance(TimeSpan.FromSeconds(30));
        var again = Assert.Single(await _store.ClaimWebhookEventsAsync(_time.GetUtcNow(), TimeSpan.FromMinutes(1), 10, Ct));
        Assert.Equal(claimed[1].Id, again.Id);
        Assert.Equal(2, again.Attempts);
        var listed = await _store.ListWebhookEventsAsync("default", 10, Ct);
        Assert.Equal(WebhookStates.Delivered, listed.Single(d => d.Id == claimed[0].Id).State);
        Assert.Equal(503, listed.Single(d => d.Id == claimed[1].Id).LastStatus);

        Assert.True(await _store.DeleteWebhookAsync("default", Ct));
        Assert.Null(await _store.GetWebhookAsync("default", Ct));
    }

    [Fact]
    public async Task GraphSubscriptions_LeaseGoesToOneNodeAndNotificationsAreDeduplicated()
    {
        var subscription = new GraphSubscription
        {
            Id = "sub-1",
            TenantId = "default",
            Connector = "graph-1",
            MailboxHash = [1, 2, 3],
            SealedMailbox = "sealed",
            ClientStateHash = [4, 5, 6],
            ExpiresAt = _time.GetUtcNow().AddDays(2),
            CreatedAt = _time.GetUtcNow(),
            RenewedAt = _time.GetUtcNow(),
        };
        await _store.SaveGraphSubscriptionAsync(subscription, Ct);
        await _store.SaveGraphSubscriptionAsync(subscription with { ExpiresAt = _time.GetUtcNow().AddDays(3) }, Ct);
        Assert.Equal(_time.GetUtcNow().AddDays(3), (await _store.GetGraphSubscriptionAsync("sub-1", Ct))!.ExpiresAt);
        Assert.Single(await _store.ListGraphSubscriptionsAsync("default", "graph-1", Ct));
        Assert.True(await _store.SetGraphSubscriptionActionAsync("sub-1", GraphSubscriptionAction.Recreate, Ct));
        Assert.Equal(GraphSubscriptionAction.Recreate, (await _store.GetGraphSubscriptionAsync("sub-1", Ct))!.PendingAction);

        var until = _time.GetUtcNow().AddMinutes(1);
        var leases = await Task.WhenAll(Enumerable.Range(0, 8).Select(i => _store.TryLeaseGraphSubscriptionAsync("sub-1", "node-" + i, _time.GetUtcNow(), until, Ct)));
        Assert.Equal(1, leases.Count(l => l));

        GraphPendingNotification Pending(byte key) => new()
        {
            DedupKey = [key],
            SubscriptionId = "sub-1",
            Kind = GraphChangeKind.Created,
            MessageId = "m" + key,
            ReceivedAt = _time.GetUtcNow(),
            KeepUntil = _time.GetUtcNow().AddHours(1),
        };

        Assert.Equal(2, await _store.AddGraphNotificationsAsync([Pending(1), Pending(2), Pending(1)], Ct));
        var claimed = await _store.ClaimGraphNotificationsAsync("node-0", _time.GetUtcNow(), until, 10, Ct);
        Assert.Equal(["m1", "m2"], claimed.Select(n => n.MessageId));
        Assert.Empty(await _store.ClaimGraphNotificationsAsync("node-1", _time.GetUtcNow(), until, 10, Ct));
        await _store.CompleteGraphNotificationsAsync([.. claimed.Select(n => n.Sequence)], _time.GetUtcNow(), Ct);
        _time.Advance(TimeSpan.FromHours(2));
        Assert.Empty(await _store.ClaimGraphNotificationsAsync("node-1", _time.GetUtcNow(), _time.GetUtcNow().AddMinutes(1), 10, Ct));

        Assert.Equal("sub-1", (await _store.FindGraphSubscriptionByClientStateAsync([4, 5, 6], Ct))!.Id);
        Assert.Null(await _store.FindGraphSubscriptionByClientStateAsync([9], Ct));
        Assert.True(await _store.ConfirmGraphSubscriptionAsync("sub-1", "graph-id-1", _time.GetUtcNow().AddDays(4), Ct));
        Assert.False(await _store.ConfirmGraphSubscriptionAsync("sub-1", "graph-id-2", _time.GetUtcNow().AddDays(4), Ct));
        Assert.Equal(_time.GetUtcNow().AddDays(4), (await _store.GetGraphSubscriptionAsync("graph-id-1", Ct))!.ExpiresAt);

        Assert.True(await _store.DeleteGraphSubscriptionAsync("graph-id-1", Ct));
        Assert.Null(await _store.GetGraphSubscriptionAsync("graph-id-1", Ct));
    }

    [Fact]
    public async Task SharedTokens_SwappedByManyAtOnce_AllEndWithTheOneStored()
    {
        Assert.Null(await _store.GetSharedTokenAsync("apns:KEY1", Ct));
        var issued = _time.GetUtcNow();
        var results = await Task.WhenAll(Enumerable.Range(0, 6).Select(i =>
            Task.Run(() => _store.SwapSharedTokenAsync("apns:KEY1", null, new SharedToken("jwt-" + i, issued.AddMilliseconds(i)), Ct), Ct)));

        var stored = await _store.GetSharedTokenAsync("apns:KEY1", Ct);
        Assert.NotNull(stored);
        Assert.All(results, r => Assert.Equal(stored, r));

        // Replacing needs the current one: a stale expectation gets the stored token back.
        var next = new SharedToken("jwt-next", issued.AddMinutes(50));
        Assert.Equal(stored, await _store.SwapSharedTokenAsync("apns:KEY1", new SharedToken("old", issued.AddMinutes(-50)), next, Ct));
        Assert.Equal(next, await _store.SwapSharedTokenAsync("apns:KEY1", stored, next, Ct));
        Assert.Equal(next, await _store.GetSharedTokenAsync("apns:KEY1", Ct));
    }

    private StoredCredential Credential(Platform platform, string sealedSecret)
        => new("default", platform, "token", sealedSecret, "KEY123", ["com.example.mail"], null, _time.GetUtcNow().AddDays(30), _time.GetUtcNow());
}
