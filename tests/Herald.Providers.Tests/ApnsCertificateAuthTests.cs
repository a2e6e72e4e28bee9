using System.Security.Cryptography.X509Certificates;
using Herald.Core.Credentials;
using Herald.Core.Notifications;
using Herald.Core.Pipeline;
using Herald.Core.Registrations;
using Herald.Providers.Apns;
using Herald.Simulators.Apns;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;
using Xunit;

namespace Herald.Providers.Tests;

/// <summary>
/// Certificate auth end to end: the provider presents a TLS client certificate to a fake APNs that accepts only
/// certificates of its test CA, checks topics and environments, and answers Apple's reasons.
/// </summary>
public sealed class ApnsCertificateAuthTests
{
    private const string AppTopic = "com.example.mail";
    private const string MdmTopic = "com.apple.mgmt.External.4a1b2c3d-0000-4000-8000-00000000abcd";
    private const string Token = ApnsTestHarness.Token;
    private const string PushMagic = "5E9B1C3A-1111-4000-8000-000000000001";

    [Fact]
    public async Task Mdm_OverCertificate_SendsExactPayloadPushTypeAndPriority_WithoutAuthorization()
    {
        await using var h = await CertHarness.StartAsync(ca => ca.Issue(MdmTopic, kind: FakeApnsCertificateKind.Production));

        var result = await h.SendAsync(h.Notification(MdmTopic, new NotificationContent { Kind = PushKind.Mdm, PushMagic = PushMagic }));

        Assert.Equal(PushOutcome.Sent, result.Outcome);
        var r = Assert.Single(h.Production.Requests);
        Assert.Equal("{\"mdm\":\"" + PushMagic + "\"}", r.Payload);
        Assert.Equal("mdm", r.PushType);
        Assert.Equal("10", r.Priority);
        Assert.Equal(MdmTopic, r.Topic);
        Assert.Null(r.Authorization);
    }

    [Fact]
    public async Task Mdm_ToATopicOutsideTheMdmNamespace_FailsWithBadTopic()
    {
        await using var h = await CertHarness.StartAsync(ca => ca.Issue(AppTopic));

        var result = await h.SendAsync(h.Notification(AppTopic, new NotificationContent { Kind = PushKind.Mdm, PushMagic = PushMagic }));

        Assert.Equal(new PushResult(PushOutcome.Failed, 400, ApnsReasons.BadTopic), result);
        Assert.Empty(h.Production.Requests);
    }

    [Fact]
    public async Task Mdm_WithoutPushMagic_FailsWithMissingPushMagic()
    {
        await using var h = await CertHarness.StartAsync(ca => ca.Issue(MdmTopic));

        var result = await h.SendAsync(h.Notification(MdmTopic, new NotificationContent { Kind = PushKind.Mdm }));

        Assert.Equal(PushOutcome.Failed, result.Outcome);
        Assert.Equal(ApnsReasons.MissingPushMagic, result.Reason);
    }

    [Fact]
    public async Task MultiTopicCertificate_SendsToEachOfItsTopics()
    {
        await using var h = await CertHarness.StartAsync(ca => ca.Issue(AppTopic, ["com.example.calendar"]));

        var first = await h.SendAsync(h.Notification(AppTopic));
        var second = await h.SendAsync(h.Notification("com.example.calendar"));

        Assert.Equal(PushOutcome.Sent, first.Outcome);
        Assert.Equal(PushOutcome.Sent, second.Outcome);
        Assert.Equal([AppTopic, "com.example.calendar"], h.Production.Requests.Select(r => r.Topic));
    }

    [Fact]
    public async Task TopicNotInTheCertificate_FailsLocallyWithTopicDisallowed()
    {
        await using var h = await CertHarness.StartAsync(ca => ca.Issue(AppTopic));

        var result = await h.SendAsync(h.Notification("com.example.other"));

        Assert.Equal(new PushResult(PushOutcome.Failed, 400, ApnsReasons.TopicDisallowed), result);
        Assert.Empty(h.Production.Requests);
    }

    [Fact]
    public async Task CertificateOfAnotherCa_GetsBadCertificate_ACredentialFaultThatOpensTheCircuit()
    {
        using var stranger = FakeApnsCertificateAuthority.Create("Someone else's CA");
        await using var h = await CertHarness.StartAsync(_ => stranger.Issue(AppTopic));

        var first = await h.SendAsync(h.Notification(AppTopic));
        var second = await h.SendAsync(h.Notification(AppTopic));

        Assert.Equal(new PushResult(PushOutcome.CredentialFault, 403, ApnsReasons.BadCertificate), first);
        Assert.Equal(PushOutcome.CredentialFault, second.Outcome);
        Assert.Equal(ApnsReasons.BadCertificate, second.Reason);
        Assert.Single(h.Production.Requests); // the open circuit kept the second send off the wire
        var state = Assert.Single(h.Health.Credentials());
        Assert.Equal(ApnsReasons.BadCertificate, state.Fault!.Reason);

        // After the pause one probe goes out again.
        h.Time.Advance(CredentialCircuit.InitialPause + TimeSpan.FromSeconds(1));
        await h.SendAsync(h.Notification(AppTopic));
        Assert.Equal(2, h.Production.Requests.Count);
    }

    [Fact]
    public async Task RevokedCertificate_GetsBadCertificate_AndRecoversWhenAProbeSucceeds()
    {
        await using var h = await CertHarness.StartAsync(ca => ca.Issue(AppTopic));
        var ok = await h.SendAsync(h.Notification(AppTopic));
        h.Production.RevokeCertificate(h.Certificate.Thumbprint);

        var revoked = await h.SendAsync(h.Notification(AppTopic));

        Assert.Equal(PushOutcome.Sent, ok.Outcome);
        Assert.Equal(new PushResult(PushOutcome.CredentialFault, 403, ApnsReasons.BadCertificate), revoked);
        Assert.NotNull(h.Health.Credentials().Single().Fault);
    }

    [Fact]
    public async Task ExpiredCertificate_IsNotPresented_AndIsACredentialFault()
    {
        await using var h = await CertHarness.StartAsync(ca => ca.Issue(AppTopic, notBefore: CertHarness.Start.AddDays(-30), notAfter: CertHarness.Start.AddDays(-1)));

        var result = await h.SendAsync(h.Notification(AppTopic));

        Assert.Equal(new PushResult(PushOutcome.CredentialFault, 0, ApnsReasons.CertificateExpired), result);
        Assert.Empty(h.Production.Requests);
        Assert.Equal(ApnsReasons.CertificateExpired, h.Health.Credentials().Single().Fault!.Reason);
    }

    [Fact]
    public async Task CertificateExpiringWithin30Days_IsReportedToHealthWithItsExpiry()
    {
        var notAfter = CertHarness.Start.AddDays(10);
        await using var h = await CertHarness.StartAsync(ca => ca.Issue(AppTopic, notBefore: CertHarness.Start.AddDays(-300), notAfter: notAfter));

        var state = Assert.Single(h.Health.Credentials());

        Assert.Equal(notAfter, state.ExpiresAt);
        Assert.Null(state.Fault);
    }

    [Fact]
    public async Task DevelopmentCertificate_ToAProductionToken_FailsWithBadCertificateEnvironment()
    {
        await using var h = await CertHarness.StartAsync(ca => ca.Issue(AppTopic, kind: FakeApnsCertificateKind.Development));

        var production = await h.SendAsync(h.Notification(AppTopic));
        var sandbox = await h.SendAsync(h.Notification(AppTopic, environment: PushEnvironment.Sandbox));

        Assert.Equal(new PushResult(PushOutcome.Failed, 403, ApnsReasons.BadCertificateEnvironment), production);
        Assert.Equal(PushOutcome.Sent, sandbox.Outcome);
        Assert.Empty(h.Production.Requests);
        Assert.Single(h.Sandbox.Requests);
    }

    [Fact]
    public async Task TokenAndCertificateConfigured_CertificateServesMdm_TokenServesTheApp()
    {
        await using var h = await CertHarness.StartAsync(ca => ca.Issue(MdmTopic), withToken: true);

        var mdm = await h.SendAsync(h.Notification(MdmTopic, new NotificationContent { Kind = PushKind.Mdm, PushMagic = PushMagic }));
        var app = await h.SendAsync(h.Notification(AppTopic));

        Assert.Equal(PushOutcome.Sent, mdm.Outcome);
        Assert.Equal(PushOutcome.Sent, app.Outcome);
        Assert.Null(h.Production.Requests[0].Authorization);
        Assert.StartsWith("bearer ", h.Production.Requests[1].Authorization, StringComparison.Ordinal);
    }

    [Fact]
    public async Task VoipTopic_UsesPushTypeVoip_AndThe5120ByteLimit()
    {
        await using var h = await CertHarness.StartAsync(ca => ca.Issue(AppTopic, [AppTopic + ".voip"]));
        var fits = new NotificationContent { Kind = PushKind.Alert, Body = new string('v', 4900) };
        var tooLarge = new NotificationContent { Kind = PushKind.Alert, Body = new string('v', 5200) };

        var sent = await h.SendAsync(h.Notification(AppTopic + ".voip", fits));
        var refused = await h.SendAsync(h.Notification(AppTopic + ".voip", tooLarge));
        var appTooLarge = await h.SendAsync(h.Notification(AppTopic, fits));

        Assert.Equal(PushOutcome.Sent, sent.Outcome);
        Assert.Equal("voip", Assert.Single(h.Production.Requests).PushType);
        Assert.Equal(new PushResult(PushOutcome.Failed, 413, ApnsReasons.PayloadTooLarge), refused);
        Assert.Equal(new PushResult(PushOutcome.Failed, 413, ApnsReasons.PayloadTooLarge), appTooLarge);
    }

    [Fact]
    public async Task OneTenantsRejectedCertificate_DoesNotStopAnotherTenantsSends()
    {
        using var stranger = FakeApnsCertificateAuthority.Create("Revoked reseller CA");
        await using var h = await CertHarness.StartAsync(ca => ca.Issue(AppTopic));
        using var badCertificate = stranger.Issue(AppTopic);
        var bad = new ApnsCertificateCredential(ApnsCertificate.FromPkcs12(FakeApnsCertificateAuthority.ExportPkcs12(badCertificate, null), null), "tenant-bad", h.Time);
        var good = new ApnsCertificateCredential(ApnsCertificate.FromPkcs12(FakeApnsCertificateAuthority.ExportPkcs12(h.Certificate, null), null), "tenant-good", h.Time);
        using var provider = new ApnsProvider(
            Options.Create(h.Options),
            new PerTenantSource(new Dictionary<string, ApnsCredential> { ["tenant-bad"] = bad, ["tenant-good"] = good }),
            new ApnsTokenCache(h.Time, Options.Create(h.Options)),
            h.Time,
            NullLogger<ApnsProvider>.Instance,
            h.Health);

        var ct = TestContext.Current.CancellationToken;
        var badFirst = await provider.SendAsync(h.Notification(AppTopic, tenant: "tenant-bad"), ct);
        var goodSends = new List<PushResult>();
        for (var i = 0; i < 3; i++)
        {
            goodSends.Add(await provider.SendAsync(h.Notification(AppTopic, tenant: "tenant-good"), ct));
        }

        var badAgain = await provider.SendAsync(h.Notification(AppTopic, tenant: "tenant-bad"), ct);

        Assert.Equal(PushOutcome.CredentialFault, badFirst.Outcome);
        Assert.All(goodSends, r => Assert.Equal(PushOutcome.Sent, r.Outcome));
        Assert.Equal(PushOutcome.CredentialFault, badAgain.Outcome);
        Assert.Equal(4, h.Production.Requests.Count); // one bad attempt, three good ones; the second bad one stayed home
        Assert.True(bad.Circuit.IsOpen);
        Assert.False(good.Circuit.IsOpen);
        var fault = Assert.Single(h.Health.Credentials(), c => c.Fault is not null);
        Assert.Equal("tenant-bad", fault.TenantId);
    }

    private sealed class PerTenantSource(Dictionary<string, ApnsCredential> credentials) : IApnsCredentialSource
    {
        public ApnsCredential? Find(string tenantId, string topic) => credentials.GetValueOrDefault(tenantId);
    }

    /// <summary>A provider with a certificate credential against production and sandbox fakes doing certificate auth over TLS.</summary>
    private sealed class CertHarness : IAsyncDisposable
    {
        // Near the real clock: issued certificates are valid from a day before now, and the TLS peers use real time.
        public static readonly DateTimeOffset Start = new(DateTime.UtcNow.Date, TimeSpan.Zero);

        private readonly List<string> _files = [];
        private long _nextId;

        public required FakeTimeProvider Time { get; init; }
        public required FakeApnsCertificateAuthority Ca { get; init; }
        public required FakeApnsServer Production { get; init; }
        public required FakeApnsServer Sandbox { get; init; }
        public required X509Certificate2 Certificate { get; init; }
        public required ApnsOptions Options { get; init; }
        public required ApnsProvider Provider { get; init; }
        public required CredentialHealth Health { get; init; }

        public static async Task<CertHarness> StartAsync(Func<FakeApnsCertificateAuthority, X509Certificate2> issue, bool withToken = false)
        {
            var ct = TestContext.Current.CancellationToken;
            var time = new FakeTimeProvider(Start);
            var ca = FakeApnsCertificateAuthority.Create();
            var certificate = issue(ca);
            var productionOptions = new FakeApnsServerOptions { UseTls = true, Environment = FakeApnsEnvironment.Production };
            productionOptions.ClientCertificateAuthorities.Add(ca.Certificate);
            var production = await FakeApnsServer.StartAsync(productionOptions, time, ct);

            // One pinned server certificate for both fakes: the sandbox presents production's.
            var sandboxOptions = new FakeApnsServerOptions { UseTls = true, Environment = FakeApnsEnvironment.Sandbox, ServerCertificate = production.Certificate };
            sandboxOptions.ClientCertificateAuthorities.Add(ca.Certificate);
            var sandbox = await FakeApnsServer.StartAsync(sandboxOptions, time, ct);

            var files = new List<string>();
            var trust = Path.Combine(Path.GetTempPath(), "herald-apns-trust-" + Guid.NewGuid().ToString("N") + ".pem");
            await File.WriteAllTextAsync(trust, production.CertificatePem, ct);
            files.Add(trust);
            var options = new ApnsOptions
            {
                ProductionUrl = production.BaseUrl,
                SandboxUrl = sandbox.BaseUrl,
                Topic = AppTopic,
                TrustedCertificateFile = trust,
                CertificatePem = FakeApnsCertificateAuthority.ExportPem(certificate),
            };
            if (withToken)
            {
                var pem = production.GenerateSigningKey(ApnsTestHarness.TeamId, ApnsTestHarness.KeyId);
                options.TeamId = ApnsTestHarness.TeamId;
                options.KeyId = ApnsTestHarness.KeyId;
                options.PrivateKeyPem = pem;
            }

            var health = new CredentialHealth();
            var wrapped = Microsoft.Extensions.Options.Options.Create(options);
            var source = new OptionsApnsCredentialSource(wrapped, time);
            var provider = new ApnsProvider(wrapped, source, new ApnsTokenCache(time, wrapped), time, NullLogger<ApnsProvider>.Instance, health);
            var h = new CertHarness
            {
                Time = time,
                Ca = ca,
                Production = production,
                Sandbox = sandbox,
                Certificate = certificate,
                Options = options,
                Provider = provider,
                Health = health,
            };
            h._files.AddRange(files);
            return h;
        }

        public ClaimedNotification Notification(string topic, NotificationContent? content = null, PushEnvironment environment = PushEnvironment.Production, string tenant = "tenant-1")
            => new()
            {
                Id = Interlocked.Increment(ref _nextId),
                MessageId = Guid.NewGuid(),
                TenantId = tenant,
                RegistrationId = "reg-1",
                Platform = Platform.Apns,
                Token = Token,
                Topic = topic,
                Environment = environment,
                Content = content ?? new NotificationContent { Kind = PushKind.Badge, Badge = 1 },
                Attempt = 1,
            };

        public ValueTask<PushResult> SendAsync(ClaimedNotification notification)
            => Provider.SendAsync(notification, TestContext.Current.CancellationToken);

        public async ValueTask DisposeAsync()
        {
            Provider.Dispose();
            await Production.DisposeAsync();
            await Sandbox.DisposeAsync();
            Certificate.Dispose();
            Ca.Dispose();
            foreach (var f in _files)
            {
                File.Delete(f);
            }
        }
    }
}
