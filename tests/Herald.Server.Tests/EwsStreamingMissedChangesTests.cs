using System.Net.Http.Json;
using Herald.Core.Registrations;
using Herald.Simulators.Exchange.Streaming;
using Microsoft.Extensions.DependencyInjection;
using Xunit;
using static Herald.Server.Tests.EwsStreamingTestKit;

namespace Herald.Server.Tests;

/// <summary>
/// <see cref="RegistrationChanges.AllChanged"/> (raised when the farm's change feed reconnects and may have missed
/// notifications) makes the EWS streaming worker re-read every connector at once, not at its safety-net re-read.
/// </summary>
public sealed class EwsStreamingMissedChangesTests
{
    private const string Alice = "alice@contoso.test";
    private const string Bob = "bob@contoso.test";

    private static readonly TimeSpan Within = TimeSpan.FromSeconds(20);

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static string Token(int n) => "e7" + n.ToString("x2") + new string('b', 60);

    [Fact]
    public async Task MissedChanges_ReReadEverything_AnUnsignalledRegistrationIsStreamed()
    {
        await using var exchange = await FakeEwsServer.StartAsync(new FakeEwsServerOptions { Seed = 31 }, cancellationToken: Ct);
        exchange.AddMailbox(Alice, "MBX01");
        exchange.AddMailbox(Bob, "MBX01");
        await using var gw = await GatewayHarness.StartAsync(
            new Dictionary<string, string?>
            {
                ["Herald:EwsStreaming:PollInterval"] = "00:10:00",
                ["Herald:EwsStreaming:ReconcileInterval"] = "00:10:00",
                ["Herald:EwsStreaming:MinBackOff"] = "00:00:00.100",
            },
            cancellationToken: Ct);
        using (var put = await gw.Client.PutAsJsonAsync("v1/connectors/" + Connector, new
        {
            kind = "ews",
            autodiscover = true,
            autodiscoverUrl = exchange.AutodiscoverUrl,
            auth = new { type = "basic", username = exchange.Options.BasicUsername, password = exchange.Options.BasicPassword },
        }, Ct))
        {
            Assert.True(put.IsSuccessStatusCode, await put.Content.ReadAsStringAsync(Ct));
        }

        // Bob through the API (signalled): once he streams, the worker has read the connector and has nothing pending.
        using (var reg = await gw.Client.PostAsJsonAsync("v1/registrations", new { platform = "apns", token = Token(1), source = "ews-streaming", mailbox = Bob, connector = Connector, style = "badge" }, Ct))
        {
            Assert.True(reg.IsSuccessStatusCode, await reg.Content.ReadAsStringAsync(Ct));
        }

        await Eventually(() => exchange.SubscriptionsOf(Bob) == 1, "bob streaming");

        // Alice written to the store directly, as a change whose notification was lost: nothing signals it.
        await WriteUnsignalledAsync(gw, Alice, Token(2));
        await Task.Delay(1000, Ct);
        Assert.Equal(0, exchange.SubscriptionsOf(Alice)); // not streamed: no signal, and the safety net is 10 minutes away

        gw.App.Services.GetRequiredService<RegistrationChanges>().NotifyAll();

        await Eventually(() => exchange.SubscriptionsOf(Alice) == 1, "alice streamed after the re-read of everything");
        exchange.EmitNewMail(Alice, "found", "n", "n@example.org");
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        timeout.CancelAfter(Within);
        await gw.Apns.WaitForRequestAsync(r => r.Token == Token(2), timeout.Token);
        Assert.Equal(1, exchange.SubscriptionsOf(Bob));
    }

}
