using System.Collections.Concurrent;
using Herald.Core.Connectors;
using Herald.Core.Events;
using Herald.Simulators.Exchange.Streaming;
using Herald.Sources.Ews.Streaming;
using Microsoft.Extensions.Logging.Abstractions;
using Xunit;

namespace Herald.Simulators.Tests.Exchange.Streaming;

/// <summary>What the streaming connector handed on, in order.</summary>
internal sealed class RecordingSink : IEwsStreamingSink
{
    public ConcurrentQueue<(string Mailbox, MailboxNotification Notification)> Notifications { get; } = new();
    public ConcurrentQueue<string> Missed { get; } = new();

    public Task OnNotificationAsync(string mailbox, MailboxNotification notification, CancellationToken cancellationToken)
    {
        Notifications.Enqueue((mailbox, notification));
        return Task.CompletedTask;
    }

    public Task OnMissedAsync(string mailbox, CancellationToken cancellationToken)
    {
        Missed.Enqueue(mailbox);
        return Task.CompletedTask;
    }

    /// <summary>The item ids of NewMail events heard for <paramref name="mailbox"/>.</summary>
    public List<string> NewMailItems(string mailbox) =>
        [.. Notifications.Where(n => string.Equals(n.Mailbox, mailbox, StringComparison.OrdinalIgnoreCase))
            .SelectMany(n => n.Notification.Events)
            .Where(e => e.Kind == MailEventKind.NewMail)
            .Select(e => e.ItemId!)];
}

/// <summary>A fake Exchange and a streaming connector against it.</summary>
internal sealed class StreamingKit : IAsyncDisposable
{
    public const string Domain = "contoso.test";

    private StreamingKit(FakeEwsServer server, EwsHttp http, EwsStreamingConnector connector, RecordingSink sink)
    {
        Server = server;
        Http = http;
        Connector = connector;
        Sink = sink;
    }

    public FakeEwsServer Server { get; }
    public EwsHttp Http { get; }
    public EwsStreamingConnector Connector { get; }
    public RecordingSink Sink { get; }

    public static CancellationToken Ct => TestContext.Current.CancellationToken;

    public static string Address(int i) => $"user{i:D3}@{Domain}";

    public static async Task<StreamingKit> StartAsync(
        FakeEwsServerOptions? serverOptions = null,
        EwsStreamingOptions? options = null,
        TimeProvider? clientTime = null,
        Func<FakeEwsServer, ConnectorConfig>? config = null)
    {
        var server = await FakeEwsServer.StartAsync(serverOptions ?? new FakeEwsServerOptions { Seed = 7, HeartbeatInterval = TimeSpan.FromSeconds(1) }, cancellationToken: Ct);
        var http = new EwsHttp();
        options ??= new EwsStreamingOptions();
        options.AllowInsecureHttp = true;
        options.MinBackOff = options.MinBackOff == TimeSpan.FromSeconds(2) ? TimeSpan.FromMilliseconds(50) : options.MinBackOff;
        var sink = new RecordingSink();
        var connectorConfig = config?.Invoke(server) ?? Autodiscover(server);
        var connector = new EwsStreamingConnector(connectorConfig, options, sink, http, clientTime ?? TimeProvider.System, NullLogger.Instance);
        return new StreamingKit(server, http, connector, sink);
    }

    public static ConnectorConfig Autodiscover(FakeEwsServer server) => new()
    {
        Autodiscover = true,
        AutodiscoverUrl = server.AutodiscoverUrl,
        Auth = Basic(server),
    };

    public static ConnectorAuth Basic(FakeEwsServer server) => new()
    {
        Type = "basic",
        Username = server.Options.BasicUsername,
        Password = server.Options.BasicPassword,
    };

    /// <summary>Adds mailboxes to the fake and streams them; waits until every group is connected.</summary>
    public async Task<List<string>> StreamAsync(int count, Func<int, string?>? backend = null)
    {
        var addresses = Enumerable.Range(0, count).Select(Address).ToList();
        for (var i = 0; i < count; i++)
        {
            Server.AddMailbox(addresses[i], backend?.Invoke(i));
        }

        await Connector.SetMailboxesAsync(addresses, Ct);
        await Eventually(() => Connector.Groups.Count > 0 && Connector.Groups.All(g => g.Connected && g.Subscribed == g.Members.Count) && Connector.Groups.Sum(g => g.Members.Count) == count);
        return addresses;
    }

    /// <summary>Polls <paramref name="condition"/> every 20 ms for up to 20 s.</summary>
    public static async Task Eventually(Func<bool> condition, string? what = null)
    {
        for (var i = 0; i < 1000; i++)
        {
            if (condition())
            {
                return;
            }

            await Task.Delay(20, Ct);
        }

        Assert.Fail("Timed out waiting" + (what is null ? "." : ": " + what));
    }

    public async ValueTask DisposeAsync()
    {
        await Connector.DisposeAsync();
        Http.Dispose();
        await Server.DisposeAsync();
    }
}
