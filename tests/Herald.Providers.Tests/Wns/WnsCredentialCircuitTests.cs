using Herald.Core.Credentials;
using Herald.Core.Notifications;
using Herald.Core.Pipeline;
using Herald.Core.Ports;
using Herald.Core.Registrations;
using Herald.Providers.Credentials;
using Herald.Providers.Wns;
using Herald.Simulators.Wns;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using Xunit;

namespace Herald.Providers.Tests.Wns;

/// <summary>
/// Per-credential circuits of the WNS provider against the fake WNS: a tenant's refused Package SID and secret stop
/// only that credential's sends (credential faults, off the wire), other tenants keep sending, health names the
/// credential, and the circuit closes when the credential is replaced or the fault clears.
/// </summary>
public sealed class WnsCredentialCircuitTests
{
    [Fact]
    public async Task RevokedSecret_OpensOnlyItsCircuit_OtherTenantsKeepSending_AndAReplacementDrainsAtOnce()
    {
        await using var h = await CircuitHarness.StartAsync();
        Assert.Equal(PushOutcome.Sent, (await h.SendAsync("tenant-a")).Outcome);
        h.Server.RevokeApplication(CircuitHarness.SidA);

        var refused = await h.SendAsync("tenant-a");

        // 401 on the push, the renewal refused with invalid_client: a credential fault, not failed, not a dead channel.
        Assert.Equal(new PushResult(PushOutcome.CredentialFault, 400, WnsReasons.AuthFailed), refused);
        var credential = h.Source.Find("tenant-a", CircuitHarness.SidA)!;
        Assert.True(credential.Circuit.IsOpen);
        var state = Assert.Single(h.Health.Credentials());
        Assert.Equal((Platform.Wns, "tenant-a", "wns:" + CircuitHarness.SidA), (state.Platform, state.TenantId, state.Credential));
        Assert.Equal(WnsReasons.AuthFailed, state.Fault!.Reason);

        var pushesBefore = h.Server.Requests.Count;
        var tokenRequestsBefore = h.Server.TokenRequests;
        var paused = await h.SendAsync("tenant-a");
        var other = new List<PushResult>();
        for (var i = 0; i < 3; i++)
        {
            other.Add(await h.SendAsync("tenant-b"));
        }

        Assert.Equal(PushOutcome.CredentialFault, paused.Outcome);
        Assert.Equal(CredentialCircuit.InitialPause, paused.RetryAfter);
        Assert.All(other, r => Assert.Equal(PushOutcome.Sent, r.Outcome));
        Assert.Equal(pushesBefore + 3, h.Server.Requests.Count);
        Assert.All(h.Server.Requests.Skip(pushesBefore), r => Assert.Equal(h.ChannelB, r.Channel));
        Assert.Equal(tokenRequestsBefore + 1, h.Server.TokenRequests); // tenant B's first token only

        // A new secret is issued and uploaded: a new credential with a closed circuit, the old fault forgotten.
        h.Server.AddApplication(CircuitHarness.SidA, "new-secret-of-a");
        h.Apply("tenant-a", CircuitHarness.SidA, "new-secret-of-a", version: 2);
        Assert.Empty(h.Health.Credentials());
        var resumed = await h.SendAsync("tenant-a");

        Assert.Equal(PushOutcome.Sent, resumed.Outcome);
        Assert.False(h.Source.Find("tenant-a", CircuitHarness.SidA)!.Circuit.IsOpen);
    }

    [Fact]
    public async Task SecretRestored_TheProbeAfterThePauseClosesTheCircuit_WithoutAReplacement()
    {
        await using var h = await CircuitHarness.StartAsync();
        h.Server.RevokeApplication(CircuitHarness.SidA);
        var refused = await h.SendAsync("tenant-a");
        Assert.Equal(PushOutcome.CredentialFault, refused.Outcome);
        Assert.Equal(1, h.Server.TokenRequests);

        // The first probe is still refused: the pause doubles.
        h.Time.Advance(h.Options.TokenFailureBackoff);
        Assert.Equal(PushOutcome.CredentialFault, (await h.SendAsync("tenant-a")).Outcome);
        Assert.Equal(2, h.Server.TokenRequests);
        Assert.Equal(CredentialCircuit.InitialPause * 2, (await h.SendAsync("tenant-a")).RetryAfter);
        Assert.Equal(2, h.Server.TokenRequests);

        h.Server.AddApplication(CircuitHarness.SidA, CircuitHarness.SecretA);
        h.Time.Advance(CredentialCircuit.InitialPause * 2);
        var recovered = await h.SendAsync("tenant-a");

        Assert.Equal(PushOutcome.Sent, recovered.Outcome);
        Assert.False(h.Source.Find("tenant-a", CircuitHarness.SidA)!.Circuit.IsOpen);
        Assert.Empty(h.Health.Credentials());
    }

    [Fact]
    public async Task Unauthorized_AfterARenewal_IsACredentialFault_AndAWorkingPushClosesIt()
    {
        await using var h = await CircuitHarness.StartAsync();
        h.Server.Script(h.ChannelA, (401, null), (401, null));

        var result = await h.SendAsync("tenant-a");

        Assert.Equal(new PushResult(PushOutcome.CredentialFault, 401, WnsReasons.Unauthorized), result);
        Assert.Equal(2, h.Server.Requests.Count); // sent, renewed, resent once
        Assert.Equal(2, h.Server.TokenRequests);
        Assert.Equal(WnsReasons.Unauthorized, Assert.Single(h.Health.Credentials()).Fault!.Reason);

        h.Time.Advance(CredentialCircuit.InitialPause);
        Assert.Equal(PushOutcome.Sent, (await h.SendAsync("tenant-a")).Outcome);
        Assert.Empty(h.Health.Credentials());
    }

    [Fact]
    public async Task Forbidden_IsACredentialFaultOfThatCredentialOnly()
    {
        await using var h = await CircuitHarness.StartAsync();

        // Tenant A's app pushing to a channel of B's app: WNS answers 403.
        var a = await h.SendAsync("tenant-a", h.ChannelB);
        var b = await h.SendAsync("tenant-b");

        Assert.Equal(new PushResult(PushOutcome.CredentialFault, 403, WnsReasons.Forbidden), a);
        Assert.Equal(PushOutcome.Sent, b.Outcome);
        Assert.Equal("tenant-a", Assert.Single(h.Health.Credentials()).TenantId);
    }

    [Theory]
    [InlineData(500)]
    [InlineData(503)]
    [InlineData(429)]
    public async Task TokenEndpointOutage_IsARetry_AndNeverOpensTheCircuit(int status)
    {
        await using var h = await CircuitHarness.StartAsync();
        h.Server.FailTokenRequests(1, status);

        var result = await h.SendAsync("tenant-a");

        Assert.Equal(new PushResult(PushOutcome.Retry, status, WnsReasons.AuthUnavailable), result);
        Assert.False(h.Source.Find("tenant-a", CircuitHarness.SidA)!.Circuit.IsOpen);
        Assert.Empty(h.Health.Credentials());
    }

    [Theory]
    [InlineData(406)]
    [InlineData(500)]
    [InlineData(503)]
    public async Task ServiceThrottlingOrOutage_IsARetry_AndNeverOpensTheCircuit(int status)
    {
        await using var h = await CircuitHarness.StartAsync();
        h.Server.FailNext(3, status);

        var results = new List<PushResult>();
        for (var i = 0; i < 3; i++)
        {
            results.Add(await h.SendAsync("tenant-a"));
        }

        Assert.All(results, r => Assert.Equal(PushOutcome.Retry, r.Outcome));
        Assert.Equal(3, h.Server.Requests.Count);
        Assert.False(h.Source.Find("tenant-a", CircuitHarness.SidA)!.Circuit.IsOpen);
        Assert.Empty(h.Health.Credentials());
    }

    [Fact]
    public async Task AsTheServerWiresIt_TheFaultReachesHealth_AndAReplacementForgetsIt()
    {
        await using var h = await CircuitHarness.StartAsync();
        var services = new ServiceCollection();
        services.AddLogging();
        services.AddSingleton<TimeProvider>(h.Time);
        services.AddSingleton(new CredentialRegistry(null, null, h.Time));
        services.AddSingleton<CredentialHealth>();
        services.AddWnsProvider().Configure(o =>
        {
            o.TokenUrl = h.Server.TokenUrl;
            o.AllowedChannelHosts = [h.Server.Authority];
            o.AllowHttpChannels = true;
        });
        await using var sp = services.BuildServiceProvider();
        var registry = sp.GetRequiredService<CredentialRegistry>();
        var health = sp.GetRequiredService<CredentialHealth>();
        var push = Assert.Single(sp.GetServices<IPushProvider>());
        registry.Apply(Stored("tenant-a", CircuitHarness.SidA, "a-wrong-secret", 1));

        var result = await push.SendAsync(h.Notification("tenant-a"), TestContext.Current.CancellationToken);

        Assert.Equal(new PushResult(PushOutcome.CredentialFault, 400, WnsReasons.AuthFailed), result);
        var state = Assert.Single(health.Credentials());
        Assert.Equal((Platform.Wns, "tenant-a", "wns:" + CircuitHarness.SidA), (state.Platform, state.TenantId, state.Credential));

        registry.Apply(Stored("tenant-a", CircuitHarness.SidA, CircuitHarness.SecretA, 2));
        Assert.Empty(health.Credentials());
        Assert.Equal(PushOutcome.Sent, (await push.SendAsync(h.Notification("tenant-a"), TestContext.Current.CancellationToken)).Outcome);
    }

    private static TenantCredential Stored(string tenant, string sid, string secret, long version)
    {
        var upload = TenantCredentialUploads.WnsClientSecret(sid, secret);
        return new TenantCredential(new StoredCredential(tenant, Platform.Wns, upload.Kind, "sealed", upload.PublicId, upload.Topics, upload.Thumbprint, upload.ExpiresAt, DateTimeOffset.UnixEpoch, version), upload.SecretJson);
    }

    /// <summary>A WNS provider with per-tenant credentials (two apps: tenant-a, tenant-b) from a registry, against one fake WNS.</summary>
    private sealed class CircuitHarness : IAsyncDisposable
    {
        public const string SidA = "ms-app://s-1-15-2-1111111111-2222222222-3333333333-4444444444-5555555555-6666666666-7777777777";
        public const string SidB = "ms-app://s-1-15-2-8888888888-2222222222-3333333333-4444444444-5555555555-6666666666-7777777777";
        public const string SecretA = "secret-of-app-a";
        public const string SecretB = "secret-of-app-b";

        private long _nextId;

        public required FakeTimeProvider Time { get; init; }
        public required FakeWnsServer Server { get; init; }
        public required WnsOptions Options { get; init; }
        public required CredentialRegistry Registry { get; init; }
        public required TenantWnsCredentialSource Source { get; init; }
        public required WnsTokenClient TokenClient { get; init; }
        public required WnsProvider Provider { get; init; }
        public required CredentialHealth Health { get; init; }
        public required string ChannelA { get; init; }
        public required string ChannelB { get; init; }

        public static async Task<CircuitHarness> StartAsync()
        {
            var time = new FakeTimeProvider(new DateTimeOffset(2025, 6, 2, 9, 0, 0, TimeSpan.Zero));
            var server = await FakeWnsServer.StartAsync(new FakeWnsServerOptions(), time, TestContext.Current.CancellationToken);
            server.AddApplication(SidA, SecretA);
            server.AddApplication(SidB, SecretB);
            var options = new WnsOptions { TokenUrl = server.TokenUrl, AllowedChannelHosts = [server.Authority], AllowHttpChannels = true };
            var wrapped = Microsoft.Extensions.Options.Options.Create(options);
            var registry = new CredentialRegistry(null, null, time);
            var source = new TenantWnsCredentialSource(registry, new OptionsWnsCredentialSource(wrapped, time), NullLogger<TenantWnsCredentialSource>.Instance, time);
            var client = new WnsTokenClient(wrapped, time);
            var health = new CredentialHealth();
            var h = new CircuitHarness
            {
                Time = time,
                Server = server,
                Options = options,
                Registry = registry,
                Source = source,
                TokenClient = client,
                Health = health,
                Provider = new WnsProvider(wrapped, source, new WnsTokenCache(client, time, wrapped), time, NullLogger<WnsProvider>.Instance, health),
                ChannelA = server.CreateChannel(SidA),
                ChannelB = server.CreateChannel(SidB),
            };
            h.Apply("tenant-a", SidA, SecretA, version: 1);
            h.Apply("tenant-b", SidB, SecretB, version: 1);
            return h;
        }

        /// <summary>Stores (or replaces) the tenant's WNS credential, as the credentials API does.</summary>
        public void Apply(string tenant, string sid, string secret, long version)
        {
            var upload = TenantCredentialUploads.WnsClientSecret(sid, secret);
            var stored = new StoredCredential(tenant, Platform.Wns, upload.Kind, "sealed", upload.PublicId, upload.Topics, upload.Thumbprint, upload.ExpiresAt, Time.GetUtcNow(), version);
            Registry.Apply(new TenantCredential(stored, upload.SecretJson));
        }

        public ValueTask<PushResult> SendAsync(string tenant, string? channel = null)
            => Provider.SendAsync(Notification(tenant, channel), TestContext.Current.CancellationToken);

        public ClaimedNotification Notification(string tenant, string? channel = null)
            => new()
            {
                Id = Interlocked.Increment(ref _nextId),
                MessageId = Guid.NewGuid(),
                TenantId = tenant,
                RegistrationId = "reg-" + tenant,
                Platform = Platform.Wns,
                Token = channel ?? (tenant == "tenant-a" ? ChannelA : ChannelB),
                Topic = tenant == "tenant-a" ? SidA : SidB,
                Content = new NotificationContent { Kind = PushKind.Badge, Badge = 1 },
                Attempt = 1,
            };

        public async ValueTask DisposeAsync()
        {
            Provider.Dispose();
            TokenClient.Dispose();
            Source.Dispose();
            await Server.DisposeAsync();
        }
    }
}
