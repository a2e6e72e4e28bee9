using System.Text;
using System.Text.Json;
using Herald.Simulators.Exchange.Streaming;
using Xunit;
using static Herald.Server.Tests.EwsStreamingTestKit;

namespace Herald.Server.Tests;

/// <summary>
/// The fake Exchange's streaming side, Herald's EWS streaming worker with a service account and Autodiscover, and the
/// fake APNs: a registration with source ews-streaming becomes a streaming subscription; new mail becomes a push.
/// </summary>
public sealed class EwsStreamingEndToEndTests
{
    private const string Alice = "alice@contoso.test";
    private const string Bob = "bob@contoso.test";

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static string Token(int n) => "e5" + n.ToString("x2") + new string('a', 60);

    private static Dictionary<string, string?> Fast => new()
    {
        ["Herald:EwsStreaming:PollInterval"] = "00:00:00.200",
        ["Herald:EwsStreaming:MinBackOff"] = "00:00:00.100",
    };

    [Fact]
    public async Task NewMail_PushesBadgeAndPreview_DatabaseHoldsNeitherSubjectNorSender()
    {
        await using var exchange = await FakeEwsServer.StartAsync(new FakeEwsServerOptions { Seed = 11 }, cancellationToken: Ct);
        exchange.AddMailbox(Alice, "MBX01");
        exchange.AddMailbox(Bob, "MBX02");
        await using var gw = await GatewayHarness.StartAsync(Fast, cancellationToken: Ct);
        await ConnectAsync(gw, exchange);
        await RegisterAsync(gw, Alice, Token(1), "preview");
        await RegisterAsync(gw, Bob, Token(2), "badge");
        await Eventually(() => exchange.SubscriptionsOf(Alice) == 1 && exchange.SubscriptionsOf(Bob) == 1 && exchange.OpenConnections == 2, "both mailboxes streaming");

        exchange.EmitNewMail(Alice, "Grüße aus Köln", "Jörg Müller", "joerg@example.org");
        var push = await gw.Apns.WaitForRequestAsync(r => r.Token == Token(1), Ct);
        using (var payload = JsonDocument.Parse(push.Payload!))
        {
            var aps = payload.RootElement.GetProperty("aps");
            Assert.Equal(1, aps.GetProperty("badge").GetInt32());
            var alert = aps.GetProperty("alert");
            Assert.Equal("Jörg Müller", alert.GetProperty("title").GetString());
            Assert.Equal("Grüße aus Köln", alert.GetProperty("body").GetString());
        }

        exchange.EmitNewMail(Bob, "Secret merger plans", "Mallory Quux", "mallory@example.org");
        exchange.EmitNewMail(Bob, "Secret merger plans 2", "Mallory Quux", "mallory@example.org");
        var bob = await gw.Apns.WaitForRequestAsync(r => r.Token == Token(2) && r.Payload!.Contains("\"badge\":2", StringComparison.Ordinal), Ct);
        Assert.DoesNotContain("merger", bob.Payload!, StringComparison.Ordinal); // badge style: no preview
        Assert.DoesNotContain(exchange.Requests, r => r.Operation == "GetItem" && r.Impersonated == Bob);

        // Subject and sender are nowhere in the database (nor its WAL).
        await gw.App.StopAsync(Ct);
        var all = Encoding.UTF8.GetString(await File.ReadAllBytesAsync(gw.DatabasePath, Ct));
        var wal = gw.DatabasePath + "-wal";
        if (File.Exists(wal))
        {
            all += Encoding.UTF8.GetString(await File.ReadAllBytesAsync(wal, Ct));
        }

        foreach (var secret in new[] { "Köln", "Müller", "joerg@example.org", "merger", "Mallory", Alice, Bob })
        {
            Assert.DoesNotContain(secret, all, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task LostSubscription_DeviceGetsSyncWakeUp_ThenPushesResume()
    {
        await using var exchange = await FakeEwsServer.StartAsync(new FakeEwsServerOptions { Seed = 12 }, cancellationToken: Ct);
        exchange.AddMailbox(Alice);
        await using var gw = await GatewayHarness.StartAsync(Fast, cancellationToken: Ct);
        await ConnectAsync(gw, exchange);
        await RegisterAsync(gw, Alice, Token(3), "badge");
        await Eventually(() => exchange.SubscriptionsOf(Alice) == 1 && exchange.OpenConnections == 1, "streaming");

        exchange.InjectMissedEvents(Alice);
        var sync = await gw.Apns.WaitForRequestAsync(r => r.Token == Token(3), Ct);
        Assert.Contains("content-available", sync.Payload!, StringComparison.Ordinal);
        Assert.Equal("background", sync.PushType);

        await Eventually(() => exchange.SubscriptionsOf(Alice) == 1 && exchange.OpenConnections == 1, "resubscribed");
        exchange.EmitNewMail(Alice, "after", "n", "n@example.org");
        var push = await gw.Apns.WaitForRequestAsync(r => r.Token == Token(3) && r.Payload!.Contains("\"badge\":1", StringComparison.Ordinal), Ct);
        Assert.NotNull(push);
    }

    [Fact]
    public async Task DeletedRegistration_StopsStreamingTheMailbox()
    {
        await using var exchange = await FakeEwsServer.StartAsync(new FakeEwsServerOptions { Seed = 13 }, cancellationToken: Ct);
        exchange.AddMailbox(Alice);
        exchange.AddMailbox(Bob);
        await using var gw = await GatewayHarness.StartAsync(Fast, cancellationToken: Ct);
        await ConnectAsync(gw, exchange);
        var alice = await RegisterAsync(gw, Alice, Token(4), "badge");
        await RegisterAsync(gw, Bob, Token(5), "badge");
        await Eventually(() => exchange.SubscriptionsOf(Alice) == 1 && exchange.SubscriptionsOf(Bob) == 1, "streaming");

        using (var delete = await gw.Client.DeleteAsync("v1/registrations/" + alice, Ct))
        {
            Assert.True(delete.IsSuccessStatusCode);
        }

        await Eventually(() => exchange.SubscriptionsOf(Alice) == 0, "unsubscribed");
        Assert.Equal(1, exchange.SubscriptionsOf(Bob));
    }
}
