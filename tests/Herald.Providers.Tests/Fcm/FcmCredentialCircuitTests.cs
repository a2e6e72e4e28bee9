using System.Text.Json;
using Herald.Core.Credentials;
using Herald.Core.Notifications;
using Herald.Core.Pipeline;
using Herald.Core.Ports;
using Herald.Core.Registrations;
using Herald.Providers.Credentials;
using Herald.Providers.Fcm;
using Herald.Simulators.Fcm;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using Xunit;

namespace Herald.Providers.Tests.Fcm;

/// <summary>
/// Per-credential circuits of the FCM provider against the fake FCM: a tenant's refused service account stops only
/// that account's sends (they go to retry as credential faults, off the wire), other tenants keep sending, health
/// names the account, and the circuit closes when the account is replaced or the fault clears.
/// </summary>
public sealed class FcmCredentialCircuitTests
{
    private const string Project = FcmTestHarness.Project;
    private const string Token = FcmTestHarness.Token;

    [Fact]
    public async Task RevokedAccount_OpensOnlyItsCircuit_OtherTenantsKeepSending_AndAReplacementDrainsAtOnce()
    {
        await using var h = await CircuitHarness.StartAsync();
        Assert.Equal(PushOutcome.Sent, (await h.SendAsync("tenant-a")).Outcome);
        h.Server.RevokeServiceAccount(h.Email("tenant-a")); // its key deleted: its access token is refused too

        var refused = await h.SendAsync("tenant-a");

        // 401 on the send, the renewal refused with invalid_grant: a credential fault, not failed, not a dead token.
        Assert.Equal(PushOutcome.CredentialFault, refused.Outcome);
        Assert.Equal(FcmReasons.AuthFailed, refused.Reason);
        var account = h.Source.Find("tenant-a", Project)!;
        Assert.True(account.Circuit.IsOpen);
        var state = Assert.Single(h.Health.Credentials());
        Assert.Equal((Platform.Fcm, "tenant-a", account.Name), (state.Platform, state.TenantId, state.Credential));
        Assert.Equal(FcmReasons.AuthFailed, state.Fault!.Reason);

        // While open: the account's sends stay home and come back when the probe is due; tenant B is untouched.
        var sendsBefore = h.Server.Requests.Count;
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
        Assert.Equal(sendsBefore + 3, h.Server.Requests.Count);
        Assert.All(h.Server.Requests.Skip(sendsBefore), r => Assert.Equal(200, r.Status));
        Assert.Equal(tokenRequestsBefore + 1, h.Server.TokenRequests); // tenant B's first token only
        Assert.False(h.Source.Find("tenant-b", Project)!.Circuit.IsOpen);

        // The tenant uploads a new key: a new object with a closed circuit, the old fault forgotten, sends resume now.
        h.Apply("tenant-a", h.Server.CreateServiceAccount(Project), version: 2);
        Assert.Empty(h.Health.Credentials());
        var resumed = await h.SendAsync("tenant-a");

        Assert.Equal(PushOutcome.Sent, resumed.Outcome);
        Assert.False(h.Source.Find("tenant-a", Project)!.Circuit.IsOpen);
    }

    [Fact]
    public async Task ThirdPartyAuthError_OpensTheCircuit_AndAProbeAfterThePauseClosesItOnceTheFaultClears()
    {
        await using var h = await CircuitHarness.StartAsync();
        h.Server.FaultServiceAccount(h.Email("tenant-a"), 401, FcmReasons.ThirdPartyAuthError);

        var refused = await h.SendAsync("tenant-a");
        var held = await h.SendAsync("tenant-a");

        Assert.Equal(new PushResult(PushOutcome.CredentialFault, 401, FcmReasons.ThirdPartyAuthError), refused);
        Assert.Equal(PushOutcome.CredentialFault, held.Outcome);
        Assert.Equal(FcmReasons.ThirdPartyAuthError, held.Reason);
        Assert.Single(h.Server.Requests); // THIRD_PARTY_AUTH_ERROR is not answered with a token renewal, and the second stayed home

        // Still refused at the first probe: the pause doubles.
        h.Time.Advance(CredentialCircuit.InitialPause);
        var probe = await h.SendAsync("tenant-a");
        var afterProbe = await h.SendAsync("tenant-a");
        Assert.Equal(PushOutcome.CredentialFault, probe.Outcome);
        Assert.Equal(2, h.Server.Requests.Count);
        Assert.Equal(CredentialCircuit.InitialPause * 2, afterProbe.RetryAfter);

        // The APNs key in Firebase is fixed: the next probe is sent and closes the circuit, and health is clear.
        h.Server.ClearServiceAccountFault(h.Email("tenant-a"));
        h.Time.Advance(CredentialCircuit.InitialPause * 2);
        var recovered = await h.SendAsync("tenant-a");
        var next = await h.SendAsync("tenant-a");

        Assert.Equal(PushOutcome.Sent, recovered.Outcome);
        Assert.Equal(PushOutcome.Sent, next.Outcome);
        Assert.False(h.Source.Find("tenant-a", Project)!.Circuit.IsOpen);
        Assert.DoesNotContain(h.Health.Credentials(), c => c.Fault is not null);
    }

    [Fact]
    public async Task PermissionDenied_IsACredentialFaultOfThatAccountOnly()
    {
        await using var h = await CircuitHarness.StartAsync();
        h.Server.FaultServiceAccount(h.Email("tenant-a"), 403, FcmReasons.PermissionDenied);

        var a = await h.SendAsync("tenant-a");
        var b = await h.SendAsync("tenant-b");

        Assert.Equal(new PushResult(PushOutcome.CredentialFault, 403, FcmReasons.PermissionDenied), a);
        Assert.Equal(PushOutcome.Sent, b.Outcome);
        Assert.Equal("tenant-a", Assert.Single(h.Health.Credentials()).TenantId);
    }

    [Fact]
    public async Task RevokedAccountRestored_RecoversAfterTheTokenHoldAndThePause_WithoutAReplacement()
    {
        await using var h = await CircuitHarness.StartAsync();
        h.Server.RevokeServiceAccount(h.Email("tenant-a"));
        Assert.Equal(PushOutcome.CredentialFault, (await h.SendAsync("tenant-a")).Outcome);

        h.Server.RestoreServiceAccount(h.Email("tenant-a"));
        h.Time.Advance(FcmTokenCache.PermanentFailureHold); // longer than the circuit's first pause
        var result = await h.SendAsync("tenant-a");

        Assert.Equal(PushOutcome.Sent, result.Outcome);
        Assert.False(h.Source.Find("tenant-a", Project)!.Circuit.IsOpen);
        Assert.Empty(h.Health.Credentials());
    }

    [Theory]
    [InlineData(503, "UNAVAILABLE")]
    [InlineData(500, "INTERNAL")]
    [InlineData(429, "QUOTA_EXCEEDED")]
    public async Task ProviderOutage_IsARetry_AndNeverOpensTheCircuit(int status, string errorCode)
    {
        await using var h = await CircuitHarness.StartAsync();
        h.Server.FailNext(3, status, errorCode);

        var results = new List<PushResult>();
        for (var i = 0; i < 3; i++)
        {
            results.Add(await h.SendAsync("tenant-a"));
        }

        Assert.All(results, r => Assert.Equal(new PushResult(PushOutcome.Retry, status, errorCode), r));
        Assert.Equal(3, h.Server.Requests.Count); // every one went out: no circuit
        Assert.False(h.Source.Find("tenant-a", Project)!.Circuit.IsOpen);
        Assert.Empty(h.Health.Credentials());
    }

    [Fact]
    public async Task TokenEndpointOutage_IsARetry_AndNeverOpensTheCircuit()
    {
        await using var h = await CircuitHarness.StartAsync();
        h.Server.FailTokenRequests(1, 503);

        var result = await h.SendAsync("tenant-a");

        Assert.Equal(new PushResult(PushOutcome.Retry, 0, FcmReasons.AuthUnavailable), result);
        Assert.False(h.Source.Find("tenant-a", Project)!.Circuit.IsOpen);
        Assert.Empty(h.Health.Credentials());
    }

    [Fact]
    public async Task ProbeEndingInATransportFault_LetsTheNextSendProbe()
    {
        await using var h = await CircuitHarness.StartAsync();
        h.Server.FaultServiceAccount(h.Email("tenant-a"), 401, FcmReasons.ThirdPartyAuthError);
        await h.SendAsync("tenant-a");
        h.Server.ClearServiceAccountFault(h.Email("tenant-a"));
        h.Time.Advance(CredentialCircuit.InitialPause);
        h.Server.FailNext(1, 503, "UNAVAILABLE");

        var inconclusive = await h.SendAsync("tenant-a");
        var next = await h.SendAsync("tenant-a");

        Assert.Equal(PushOutcome.Retry, inconclusive.Outcome);
        Assert.Equal(PushOutcome.Sent, next.Outcome); // not held back for another pause
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
        services.AddFcmProvider().Configure(o => o.BaseUrl = h.Server.BaseUrl);
        await using var sp = services.BuildServiceProvider();
        var registry = sp.GetRequiredService<CredentialRegistry>();
        var health = sp.GetRequiredService<CredentialHealth>();
        var push = Assert.Single(sp.GetServices<IPushProvider>());
        var json = h.Server.CreateServiceAccount(Project);
        h.Server.FaultServiceAccount(System.Text.Json.JsonDocument.Parse(json).RootElement.GetProperty("client_email").GetString()!, 403, FcmReasons.PermissionDenied);
        registry.Apply(Stored("tenant-x", json, 1));

        var result = await push.SendAsync(h.Notification("tenant-x"), TestContext.Current.CancellationToken);

        Assert.Equal(PushOutcome.CredentialFault, result.Outcome);
        var state = Assert.Single(health.Credentials());
        Assert.Equal((Platform.Fcm, "tenant-x"), (state.Platform, state.TenantId));
        Assert.Equal(403, state.Fault!.Status);

        registry.Apply(Stored("tenant-x", h.Server.CreateServiceAccount(Project), 2));
        Assert.Empty(health.Credentials());
        Assert.Equal(PushOutcome.Sent, (await push.SendAsync(h.Notification("tenant-x"), TestContext.Current.CancellationToken)).Outcome);
    }

    private static TenantCredential Stored(string tenant, string json, long version)
    {
        var upload = TenantCredentialUploads.FcmServiceAccount(json);
        return new TenantCredential(new StoredCredential(tenant, Platform.Fcm, upload.Kind, "sealed", upload.PublicId, upload.Topics, upload.Thumbprint, upload.ExpiresAt, DateTimeOffset.UnixEpoch, version), upload.SecretJson);
    }

    /// <summary>An FCM provider with per-tenant accounts (tenant-a, tenant-b) from a registry, against one fake FCM.</summary>
    private sealed class CircuitHarness : IAsyncDisposable
    {
        private readonly Dictionary<string, string> _emails = new(StringComparer.Ordinal);
        private long _nextId;

        public required FakeTimeProvider Time { get; init; }
        public required FakeFcmServer Server { get; init; }
        public required CredentialRegistry Registry { get; init; }
        public required TenantFcmCredentialSource Source { get; init; }
        public required FcmTokenCache Tokens { get; init; }
        public required FcmProvider Provider { get; init; }
        public required CredentialHealth Health { get; init; }

        public static async Task<CircuitHarness> StartAsync()
        {
            var time = new FakeTimeProvider(new DateTimeOffset(2025, 6, 2, 9, 0, 0, TimeSpan.Zero));
            var server = await FakeFcmServer.StartAsync(new FakeFcmServerOptions(), time, TestContext.Current.CancellationToken);
            var options = Microsoft.Extensions.Options.Options.Create(new FcmOptions { BaseUrl = server.BaseUrl });
            var registry = new CredentialRegistry(null, null, time);
            var source = new TenantFcmCredentialSource(registry, new OptionsFcmCredentialSource(options, time), NullLogger<TenantFcmCredentialSource>.Instance, time);
            var tokens = new FcmTokenCache(time, options);
            var health = new CredentialHealth();
            var h = new CircuitHarness
            {
                Time = time,
                Server = server,
                Registry = registry,
                Source = source,
                Tokens = tokens,
                Health = health,
                Provider = new FcmProvider(options, source, tokens, time, NullLogger<FcmProvider>.Instance, health),
            };
            h.Apply("tenant-a", server.CreateServiceAccount(Project), version: 1);
            h.Apply("tenant-b", server.CreateServiceAccount(Project), version: 1);
            return h;
        }

        public string Email(string tenant) => _emails[tenant];

        /// <summary>Stores (or replaces) the tenant's service account, as the credentials API does.</summary>
        public void Apply(string tenant, string json, long version)
        {
            using (var doc = JsonDocument.Parse(json))
            {
                _emails[tenant] = doc.RootElement.GetProperty("client_email").GetString()!;
            }

            var upload = TenantCredentialUploads.FcmServiceAccount(json);
            var stored = new StoredCredential(tenant, Platform.Fcm, upload.Kind, "sealed", upload.PublicId, upload.Topics, upload.Thumbprint, upload.ExpiresAt, Time.GetUtcNow(), version);
            Registry.Apply(new TenantCredential(stored, upload.SecretJson));
        }

        public ValueTask<PushResult> SendAsync(string tenant) => Provider.SendAsync(Notification(tenant), TestContext.Current.CancellationToken);

        public ClaimedNotification Notification(string tenant)
            => new()
            {
                Id = Interlocked.Increment(ref _nextId),
                MessageId = Guid.NewGuid(),
                TenantId = tenant,
                RegistrationId = "reg-" + tenant,
                Platform = Platform.Fcm,
                Token = Token,
                Topic = Project,
                Content = new NotificationContent { Kind = PushKind.Badge, Badge = 1 },
                Attempt = 1,
            };

        public async ValueTask DisposeAsync()
        {
            Provider.Dispose();
            Tokens.Dispose();
            Source.Dispose();
            await Server.DisposeAsync();
        }
    }
}
