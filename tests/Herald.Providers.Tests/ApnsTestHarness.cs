using Herald.Core.Notifications;
using Herald.Core.Registrations;
using Herald.Providers.Apns;
using Herald.Simulators.Apns;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using Xunit;

namespace Herald.Providers.Tests;

/// <summary>An <see cref="ApnsProvider"/> wired to a production and a sandbox <see cref="FakeApnsServer"/> sharing one fake clock.</summary>
internal sealed class ApnsTestHarness : IAsyncDisposable
{
    public const string TeamId = "TEAM123456";
    public const string KeyId = "KEY1234567";
    public const string Topic = "com.example.mail";
    public const string Token = "8f1c2a9e0b7d4c3f8f1c2a9e0b7d4c3f8f1c2a9e0b7d4c3f8f1c2a9e0b7d4c3f";

    private OptionsApnsCredentialSource? _credentials;
    private long _nextId;
    private string? _pemFile;

    private ApnsTestHarness(FakeTimeProvider time, FakeApnsServer production, FakeApnsServer sandbox)
    {
        Time = time;
        Production = production;
        Sandbox = sandbox;
    }

    public FakeTimeProvider Time { get; }
    public FakeApnsServer Production { get; }
    public FakeApnsServer Sandbox { get; }
    public ApnsOptions Options { get; private set; } = null!;
    public ApnsTokenCache Tokens { get; private set; } = null!;
    public ApnsProvider Provider { get; private set; } = null!;

    /// <summary>The live connection settings the provider reads (what <c>/v1/admin/settings</c> changes in the server).</summary>
    public MutableConnectionSettings Live { get; } = new();

    /// <param name="configure">Changes to the provider's options.</param>
    /// <param name="tls">The production server speaks TLS with a self-signed certificate.</param>
    /// <param name="trustCertificate">With <paramref name="tls"/>: pin the server's certificate (TrustedCertificateFile).</param>
    /// <param name="withCredential">Configure the token credential.</param>
    /// <param name="server">Changes to the production server's options.</param>
    public static async Task<ApnsTestHarness> StartAsync(
        Action<ApnsOptions>? configure = null,
        bool tls = false,
        bool trustCertificate = false,
        bool withCredential = true,
        Action<FakeApnsServerOptions>? server = null)
    {
        var time = new FakeTimeProvider(new DateTimeOffset(2025, 6, 2, 9, 0, 0, TimeSpan.Zero));
        var ct = TestContext.Current.CancellationToken;
        var productionOptions = new FakeApnsServerOptions { UseTls = tls };
        server?.Invoke(productionOptions);
        var production = await FakeApnsServer.StartAsync(productionOptions, time, ct);
        var sandbox = await FakeApnsServer.StartAsync(new FakeApnsServerOptions { Environment = FakeApnsEnvironment.Sandbox }, time, ct);
        var h = new ApnsTestHarness(time, production, sandbox);
        var pem = production.GenerateSigningKey(TeamId, KeyId);
        sandbox.AddSigningKey(TeamId, KeyId, pem);

        var options = new ApnsOptions
        {
            ProductionUrl = production.BaseUrl,
            SandboxUrl = sandbox.BaseUrl,
            Topic = Topic,
        };
        if (withCredential)
        {
            options.TeamId = TeamId;
            options.KeyId = KeyId;
            options.PrivateKeyPem = pem;
        }

        if (tls && trustCertificate)
        {
            h._pemFile = Path.Combine(Path.GetTempPath(), "herald-apns-" + Guid.NewGuid().ToString("N") + ".pem");
            await File.WriteAllTextAsync(h._pemFile, production.CertificatePem, ct);
            options.TrustedCertificateFile = h._pemFile;
        }

        configure?.Invoke(options);
        h.Build(options);
        return h;
    }

    private void Build(ApnsOptions options)
    {
        Options = options;
        var wrapped = Microsoft.Extensions.Options.Options.Create(options);
        _credentials = new OptionsApnsCredentialSource(wrapped);
        Tokens = new ApnsTokenCache(Time, wrapped);
        Provider = new ApnsProvider(wrapped, _credentials, Tokens, Time, NullLogger<ApnsProvider>.Instance, liveSettings: Live);
    }

    public ClaimedNotification Notification(
        NotificationContent? content = null,
        string token = Token,
        PushEnvironment environment = PushEnvironment.Production,
        string? collapseId = null,
        DateTimeOffset? expiresAt = null,
        Guid? messageId = null)
        => new()
        {
            Id = Interlocked.Increment(ref _nextId),
            MessageId = messageId ?? Guid.NewGuid(),
            TenantId = "tenant-1",
            RegistrationId = "reg-1",
            Platform = Platform.Apns,
            Token = token,
            Topic = Topic,
            Environment = environment,
            Content = content ?? new NotificationContent { Kind = PushKind.Badge, Badge = 3 },
            CollapseId = collapseId,
            ExpiresAt = expiresAt,
            Attempt = 1,
        };

    public ValueTask<PushResult> SendAsync(ClaimedNotification notification)
        => Provider.SendAsync(notification, TestContext.Current.CancellationToken);

    public async ValueTask DisposeAsync()
    {
        Provider.Dispose();
        _credentials?.Dispose();
        await Production.DisposeAsync();
        await Sandbox.DisposeAsync();
        if (_pemFile is not null)
        {
            File.Delete(_pemFile);
        }
    }
}
