using System.Net;
using System.Net.Sockets;
using Herald.Core.Notifications;
using Herald.Core.Registrations;
using Herald.Providers.Wns;
using Herald.Simulators.Wns;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using Xunit;

namespace Herald.Providers.Tests.Wns;

/// <summary>A <see cref="WnsProvider"/> wired to a <see cref="FakeWnsServer"/> (token endpoint and channels) on one fake clock.</summary>
internal sealed class WnsTestHarness : IAsyncDisposable
{
    public const string PackageSid = "ms-app://s-1-15-2-2972962901-2322836549-3722629029-1345238579-3987825745-2155616079-650196962";
    public const string Secret = "Vex8L9WOFZuj95euaLrvSH7XyoDhLJc7";

    private long _nextId;
    private string? _pemFile;

    private WnsTestHarness(FakeTimeProvider time, FakeWnsServer server)
    {
        Time = time;
        Server = server;
    }

    public FakeTimeProvider Time { get; }
    public FakeWnsServer Server { get; }
    public WnsOptions Options { get; private set; } = null!;
    public WnsTokenClient TokenClient { get; private set; } = null!;
    public WnsTokenCache Tokens { get; private set; } = null!;
    public WnsProvider Provider { get; private set; } = null!;

    /// <summary>A channel of the fake, created for the harness's app.</summary>
    public string Channel { get; private set; } = null!;

    /// <param name="configure">Changes to the provider's options (after the harness's defaults).</param>
    /// <param name="tls">The fake speaks TLS with a self-signed certificate.</param>
    /// <param name="trustCertificate">With <paramref name="tls"/>: pin the fake's certificate (TrustedCertificateFile).</param>
    /// <param name="withCredential">Configure the Package SID and secret.</param>
    /// <param name="server">Changes to the fake's options.</param>
    public static async Task<WnsTestHarness> StartAsync(
        Action<WnsOptions>? configure = null,
        bool tls = false,
        bool trustCertificate = false,
        bool withCredential = true,
        Action<FakeWnsServerOptions>? server = null)
    {
        var time = new FakeTimeProvider(new DateTimeOffset(2025, 6, 2, 9, 0, 0, TimeSpan.Zero));
        var ct = TestContext.Current.CancellationToken;
        var serverOptions = new FakeWnsServerOptions { UseTls = tls };
        server?.Invoke(serverOptions);
        var fake = await FakeWnsServer.StartAsync(serverOptions, time, ct);
        fake.AddApplication(PackageSid, Secret);
        var h = new WnsTestHarness(time, fake) { Channel = fake.CreateChannel(PackageSid) };

        var options = new WnsOptions
        {
            TokenUrl = fake.TokenUrl,
            AllowedChannelHosts = ["*.notify.windows.com", fake.Authority],
            AllowHttpChannels = !tls,
        };
        if (withCredential)
        {
            options.PackageSid = PackageSid;
            options.ClientSecret = Secret;
        }

        if (tls && trustCertificate)
        {
            h._pemFile = Path.Combine(Path.GetTempPath(), "herald-wns-" + Guid.NewGuid().ToString("N") + ".pem");
            await File.WriteAllTextAsync(h._pemFile, fake.CertificatePem, ct);
            options.TrustedCertificateFile = h._pemFile;
        }

        configure?.Invoke(options);
        h.Build(options);
        return h;
    }

    private void Build(WnsOptions options)
    {
        Options = options;
        var wrapped = Microsoft.Extensions.Options.Options.Create(options);
        TokenClient = new WnsTokenClient(wrapped, Time);
        Tokens = new WnsTokenCache(TokenClient, Time, wrapped);
        Provider = new WnsProvider(wrapped, new OptionsWnsCredentialSource(wrapped, Time), Tokens, Time, NullLogger<WnsProvider>.Instance);
    }

    public ClaimedNotification Notification(
        NotificationContent? content = null,
        string? channel = null,
        string? collapseId = null,
        DateTimeOffset? expiresAt = null)
        => new()
        {
            Id = Interlocked.Increment(ref _nextId),
            MessageId = Guid.NewGuid(),
            TenantId = "tenant-1",
            RegistrationId = "reg-1",
            Platform = Platform.Wns,
            Token = channel ?? Channel,
            Topic = PackageSid,
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
        TokenClient.Dispose();
        await Server.DisposeAsync();
        if (_pemFile is not null)
        {
            File.Delete(_pemFile);
        }
    }
}

/// <summary>
/// A listening socket nobody serves: if anything connects to it, the connection waits in the backlog and
/// <see cref="Touched"/> turns true. Proves that a refused channel URI caused no connection at all.
/// </summary>
internal sealed class Tripwire : IDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);

    public Tripwire() => _listener.Start();

    public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

    public bool Touched => _listener.Pending();

    public void Dispose() => _listener.Dispose();
}

/// <summary>Ports that nothing listens on (allocated, then released).</summary>
internal static class ClosedPort
{
    public static int Get()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
