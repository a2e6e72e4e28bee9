using System.Diagnostics;
using System.Net.Http.Json;
using System.Text.Json;
using Herald.Server.Workers;
using Herald.Simulators.Apns;
using Herald.Simulators.Exchange.Streaming;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Xunit;
using static Herald.Server.Tests.EwsStreamingTestKit;

namespace Herald.Server.Tests;

/// <summary>
/// The EWS streaming worker follows registration changes made through the API at once (a change signal), not on a
/// timer: with the lease beat and the safety-net re-read both ten minutes away, a new registration is streamed, a
/// deleted one dropped and a patched style applied within seconds. The safety-net re-read alone picks up a
/// registration nobody signalled (as one made through another node of a farm).
/// </summary>
public sealed class EwsStreamingChangeSignalTests
{
    private const string Alice = "alice@contoso.test";
    private const string Bob = "bob@contoso.test";

    private static readonly TimeSpan Within = TimeSpan.FromSeconds(20);

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static string Token(int n) => "e6" + n.ToString("x2") + new string('b', 60);

    /// <summary>Nothing happens on a timer within a test: only change signals move the worker.</summary>
    private static Dictionary<string, string?> SignalsOnly => new()
    {
        ["Herald:EwsStreaming:PollInterval"] = "00:10:00",
        ["Herald:EwsStreaming:ReconcileInterval"] = "00:10:00",
        ["Herald:EwsStreaming:MinBackOff"] = "00:00:00.100",
    };

    [Fact]
    public async Task NewRegistration_IsStreamedAtOnce_AndItsMailIsPushed()
    {
        await using var exchange = await FakeEwsServer.StartAsync(new FakeEwsServerOptions { Seed = 21 }, cancellationToken: Ct);
        exchange.AddMailbox(Alice, "MBX01");
        exchange.AddMailbox(Bob, "MBX01");
        await using var gw = await GatewayHarness.StartAsync(SignalsOnly, cancellationToken: Ct);
        await ConnectAsync(gw, exchange);

        await RegisterAsync(gw, Alice, Token(1), "badge");
        await Eventually(() => exchange.SubscriptionsOf(Alice) == 1 && exchange.OpenConnections == 1, "alice streaming");
        exchange.EmitNewMail(Alice, "one", "n", "n@example.org");
        await WaitForPushAsync(gw.Apns, r => r.Token == Token(1) && r.Payload!.Contains("\"badge\":1", StringComparison.Ordinal));

        // A second mailbox joins the running connector (same backend: the same group).
        await RegisterAsync(gw, Bob, Token(2), "badge");
        await Eventually(() => exchange.SubscriptionsOf(Bob) == 1, "bob streaming");
        exchange.EmitNewMail(Bob, "two", "n", "n@example.org");
        await WaitForPushAsync(gw.Apns, r => r.Token == Token(2) && r.Payload!.Contains("\"badge\":1", StringComparison.Ordinal));
        Assert.Equal(1, exchange.SubscriptionsOf(Alice));
    }

    [Fact]
    public async Task DeletedRegistration_IsDroppedAtOnce_NoPushForIt()
    {
        await using var exchange = await FakeEwsServer.StartAsync(new FakeEwsServerOptions { Seed = 22 }, cancellationToken: Ct);
        exchange.AddMailbox(Alice, "MBX01");
        exchange.AddMailbox(Bob, "MBX01");
        await using var gw = await GatewayHarness.StartAsync(SignalsOnly, cancellationToken: Ct);
        await ConnectAsync(gw, exchange);
        var alice = await RegisterAsync(gw, Alice, Token(3), "badge");
        await RegisterAsync(gw, Bob, Token(4), "badge");
        await Eventually(() => exchange.SubscriptionsOf(Alice) == 1 && exchange.SubscriptionsOf(Bob) == 1, "both streaming");

        using (var delete = await gw.Client.DeleteAsync("v1/registrations/" + alice, Ct))
        {
            Assert.True(delete.IsSuccessStatusCode);
        }

        await Eventually(() => exchange.SubscriptionsOf(Alice) == 0, "alice unsubscribed");
        Assert.Equal(1, exchange.SubscriptionsOf(Bob));

        // Mail to both: Bob's is pushed; Alice's (sent first) is not.
        exchange.EmitNewMail(Alice, "gone", "n", "n@example.org");
        exchange.EmitNewMail(Bob, "here", "n", "n@example.org");
        await WaitForPushAsync(gw.Apns, r => r.Token == Token(4));
        Assert.DoesNotContain(gw.Apns.Requests, r => r.Token == Token(3));

        // Deleting it again is a 404, and nothing else changed.
        using var again = await gw.Client.DeleteAsync("v1/registrations/" + alice, Ct);
        Assert.Equal(System.Net.HttpStatusCode.NotFound, again.StatusCode);
        Assert.Equal(1, exchange.SubscriptionsOf(Bob));
    }

    [Fact]
    public async Task PatchedStyle_AppliesWithoutAPass_PreviewFollows()
    {
        await using var exchange = await FakeEwsServer.StartAsync(new FakeEwsServerOptions { Seed = 23 }, cancellationToken: Ct);
        exchange.AddMailbox(Alice, "MBX01");
        await using var gw = await GatewayHarness.StartAsync(SignalsOnly, cancellationToken: Ct);
        await ConnectAsync(gw, exchange);
        var alice = await RegisterAsync(gw, Alice, Token(5), "badge");
        await Eventually(() => exchange.SubscriptionsOf(Alice) == 1 && exchange.OpenConnections == 1, "streaming");
        exchange.EmitNewMail(Alice, "before", "Sender One", "one@example.org");
        var badgeOnly = await WaitForPushAsync(gw.Apns, r => r.Token == Token(5));
        Assert.DoesNotContain("before", badgeOnly.Payload!, StringComparison.Ordinal);

        using (var patch = await gw.Client.PatchAsJsonAsync("v1/registrations/" + alice, new { style = "preview" }, Ct))
        {
            Assert.True(patch.IsSuccessStatusCode, await patch.Content.ReadAsStringAsync(Ct));
        }

        // The worker re-reads the connector on the patch's signal; a mail after that carries subject and sender. The
        // re-read runs beside this test, so mail is sent until one comes back with a preview (bounded).
        var clock = Stopwatch.StartNew();
        for (var n = 1; ; n++)
        {
            var subject = "after " + n.ToString(System.Globalization.CultureInfo.InvariantCulture);
            exchange.EmitNewMail(Alice, subject, "Sender Two", "two@example.org");
            var push = await WaitForPushAsync(gw.Apns, r => r.Token == Token(5) && r.Payload!.Contains("\"badge\":" + (n + 1).ToString(System.Globalization.CultureInfo.InvariantCulture), StringComparison.Ordinal));
            if (push.Payload!.Contains(subject, StringComparison.Ordinal))
            {
                using var payload = JsonDocument.Parse(push.Payload!);
                Assert.Equal("Sender Two", payload.RootElement.GetProperty("aps").GetProperty("alert").GetProperty("title").GetString());
                break;
            }

            Assert.True(clock.Elapsed < Within, "the patched style was not applied");
            await Task.Delay(200, Ct);
        }
    }

    [Fact]
    public async Task UnsignalledRegistration_IsPickedUpByTheSafetyNetReRead()
    {
        await using var exchange = await FakeEwsServer.StartAsync(new FakeEwsServerOptions { Seed = 24 }, cancellationToken: Ct);
        exchange.AddMailbox(Alice, "MBX01");
        var settings = SignalsOnly;
        settings["Herald:EwsStreaming:ReconcileInterval"] = "00:00:01";
        await using var gw = await GatewayHarness.StartAsync(settings, cancellationToken: Ct);
        await ConnectAsync(gw, exchange);

        // Written to the store directly, as another node of a farm would: no change signal on this node.
        await WriteUnsignalledAsync(gw, Alice, Token(6));

        await Eventually(() => exchange.SubscriptionsOf(Alice) == 1, "streamed after the safety-net re-read");
        exchange.EmitNewMail(Alice, "net", "n", "n@example.org");
        await WaitForPushAsync(gw.Apns, r => r.Token == Token(6));
    }

    [Theory]
    [InlineData("00:00:00")]
    [InlineData("-00:00:01")]
    [InlineData("1.00:00:01")]
    public void ReconcileInterval_OutOfRange_IsRejected(string value)
    {
        using var provider = OptionsProvider(value);
        var ex = Assert.Throws<OptionsValidationException>(() => provider.GetRequiredService<IOptions<EwsStreamingWorkerOptions>>().Value);
        Assert.Contains("ReconcileInterval", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ReconcileInterval_DefaultsToAMinute()
    {
        using var provider = OptionsProvider(null);
        Assert.Equal(TimeSpan.FromSeconds(60), provider.GetRequiredService<IOptions<EwsStreamingWorkerOptions>>().Value.ReconcileInterval);
    }

    private static ServiceProvider OptionsProvider(string? reconcileInterval)
    {
        var services = new ServiceCollection();
        var values = new Dictionary<string, string?>();
        if (reconcileInterval is not null)
        {
            values["Herald:EwsStreaming:ReconcileInterval"] = reconcileInterval;
        }

        services.AddSingleton<IConfiguration>(new ConfigurationBuilder().AddInMemoryCollection(values).Build());
        EwsStreamingServices.Add(services);
        return services.BuildServiceProvider();
    }

    private static async Task<FakeApnsRequest> WaitForPushAsync(FakeApnsServer apns, Func<FakeApnsRequest, bool> predicate)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        timeout.CancelAfter(Within);
        try
        {
            return await apns.WaitForRequestAsync(predicate, timeout.Token);
        }
        catch (OperationCanceledException) when (!Ct.IsCancellationRequested)
        {
            Assert.Fail($"No matching push within {Within.TotalSeconds} s");
            throw;
        }
    }

}
