using System.Collections.Concurrent;
using Herald.Core.Notifications;
using Herald.Core.Registrations;
using Herald.Providers.Fcm;
using Herald.Simulators.Fcm;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;
using Xunit;

namespace Herald.Providers.Tests.Fcm;

/// <summary>An <see cref="FcmProvider"/> wired to a <see cref="FakeFcmServer"/> (FCM and token endpoint) sharing one fake clock.</summary>
internal sealed class FcmTestHarness : IAsyncDisposable
{
    public const string Project = "herald-mail";
    public const string Token = "cXk2Z1JtT0V:APA91bH3x-Example_RegistrationToken-0123456789abcdefghijklmnopqrstuvwxyz";

    private long _nextId;
    private string? _pemFile;

    private FcmTestHarness(FakeTimeProvider time, FakeFcmServer server, string accountJson)
    {
        Time = time;
        Server = server;
        AccountJson = accountJson;
    }

    public FakeTimeProvider Time { get; }
    public FakeFcmServer Server { get; }
    public string AccountJson { get; }
    public FcmOptions Options { get; private set; } = null!;
    public FcmTokenCache Tokens { get; private set; } = null!;
    public FcmProvider Provider { get; private set; } = null!;
    public CapturingLoggerProvider Logs { get; } = new();

    /// <param name="configure">Changes to the provider's options.</param>
    /// <param name="server">Changes to the fake's options.</param>
    /// <param name="withCredential">Configure the service account.</param>
    /// <param name="trustCertificate">With a TLS server: pin its certificate (TrustedCertificateFile).</param>
    public static async Task<FcmTestHarness> StartAsync(
        Action<FcmOptions>? configure = null,
        Action<FakeFcmServerOptions>? server = null,
        bool withCredential = true,
        bool trustCertificate = true)
    {
        var time = new FakeTimeProvider(new DateTimeOffset(2025, 6, 2, 9, 0, 0, TimeSpan.Zero));
        var serverOptions = new FakeFcmServerOptions();
        server?.Invoke(serverOptions);
        var fake = await FakeFcmServer.StartAsync(serverOptions, time, TestContext.Current.CancellationToken);
        var h = new FcmTestHarness(time, fake, fake.CreateServiceAccount(Project));
        var options = new FcmOptions { BaseUrl = fake.BaseUrl };
        if (withCredential)
        {
            options.ServiceAccountJson = h.AccountJson;
        }

        if (fake.CertificatePem is not null && trustCertificate)
        {
            h._pemFile = Path.Combine(Path.GetTempPath(), "herald-fcm-" + Guid.NewGuid().ToString("N") + ".pem");
            await File.WriteAllTextAsync(h._pemFile, fake.CertificatePem, TestContext.Current.CancellationToken);
            options.TrustedCertificateFile = h._pemFile;
        }

        configure?.Invoke(options);
        h.Build(options);
        return h;
    }

    public void Build(FcmOptions options)
    {
        Provider?.Dispose();
        Tokens?.Dispose();
        Options = options;
        var wrapped = Microsoft.Extensions.Options.Options.Create(options);
        var loggers = new LoggerFactory([Logs]);
        Tokens = new FcmTokenCache(Time, wrapped, loggers.CreateLogger<FcmTokenCache>());
        Provider = new FcmProvider(wrapped, new OptionsFcmCredentialSource(wrapped, Time), Tokens, Time, loggers.CreateLogger<FcmProvider>());
    }

    public ClaimedNotification Notification(
        NotificationContent? content = null,
        string token = Token,
        string topic = Project,
        string? collapseId = null,
        DateTimeOffset? expiresAt = null)
        => new()
        {
            Id = Interlocked.Increment(ref _nextId),
            MessageId = Guid.NewGuid(),
            TenantId = "tenant-1",
            RegistrationId = "reg-1",
            Platform = Platform.Fcm,
            Token = token,
            Topic = topic,
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
        Tokens.Dispose();
        await Server.DisposeAsync();
        if (_pemFile is not null)
        {
            File.Delete(_pemFile);
        }
    }
}

/// <summary>Keeps every formatted log line (with its exception) so tests can check what is, and is not, logged.</summary>
internal sealed class CapturingLoggerProvider : ILoggerProvider
{
    private readonly ConcurrentQueue<(LogLevel Level, EventId Id, string Text)> _lines = new();

    public IReadOnlyList<(LogLevel Level, EventId Id, string Text)> Lines => [.. _lines];

    public ILogger CreateLogger(string categoryName) => new Logger(this);

    public void Dispose()
    {
    }

    private sealed class Logger(CapturingLoggerProvider owner) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            var text = formatter(state, exception);
            if (state is IEnumerable<KeyValuePair<string, object?>> values)
            {
                // The structured values as a sink would store them.
                text += " | " + string.Join("; ", values.Select(static v => v.Key + "=" + v.Value));
            }

            owner._lines.Enqueue((logLevel, eventId, text + (exception is null ? string.Empty : " | " + exception)));
        }
    }
}
