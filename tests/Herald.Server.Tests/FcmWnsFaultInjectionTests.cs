using System.Globalization;
using Herald.Simulators.Common;
using Herald.Simulators.Fcm;
using Herald.Simulators.Wns;
using Xunit;
using static Herald.Server.Tests.CredentialTestKit;

namespace Herald.Server.Tests;

/// <summary>
/// Issue 9's fault mix against the fake FCM and WNS (the fake APNs has its own, with GOAWAYs: <see cref="FaultInjectionTests"/>):
/// seeded 503s, deliveries whose answer is lost to a reset, and 0.5 s stalls, under a bulk load of both platforms. Every
/// target ends sent, every device got its push (lost = 0), and duplicates come only from resets.
/// </summary>
public sealed class FcmWnsFaultInjectionTests
{
    private const string Project = "herald-faults";
    private const string Sid = "ms-app://s-1-15-2-3333-faults";
    private const string Secret = "faults-wns-secret";
    private const int FcmDevices = 600;
    private const int WnsDevices = 400;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task FaultMix_EveryTargetEndsSent_NothingLost_DuplicatesOnlyFromResets()
    {
        await using var fcm = await FakeFcmServer.StartAsync(cancellationToken: Ct);
        await using var wns = await FakeWnsServer.StartAsync(cancellationToken: Ct);
        wns.AddApplication(Sid, Secret);
        await using var gw = await GatewayHarness.StartAsync(
            new Dictionary<string, string?>
            {
                ["Herald:Retry:InitialDelay"] = "00:00:00.200",
                ["Herald:Retry:MaxDelay"] = "00:00:01",
                ["Herald:Retry:MaxAttempts"] = "25",
                ["Herald:Fcm:BaseUrl"] = fcm.BaseUrl,
                ["Herald:Fcm:ServiceAccountJson"] = fcm.CreateServiceAccount(Project),
                ["Herald:Wns:TokenUrl"] = wns.TokenUrl,
                ["Herald:Wns:PackageSid"] = Sid,
                ["Herald:Wns:ClientSecret"] = Secret,
                ["Herald:Wns:AllowedChannelHosts:0"] = wns.Authority,
                ["Herald:Wns:AllowHttpChannels"] = "true",
            },
            cancellationToken: Ct);

        var fcmFaults = new FakeFaultMix(seed: 91, unavailableRate: 0.05, resetRate: 0.02, stallRate: 0.01, TimeSpan.FromMilliseconds(500));
        var wnsFaults = new FakeFaultMix(seed: 92, unavailableRate: 0.05, resetRate: 0.02, stallRate: 0.01, TimeSpan.FromMilliseconds(500));
        fcm.InjectFaults(fcmFaults);
        wns.InjectFaults(wnsFaults);

        var tokens = Enumerable.Range(0, FcmDevices).Select(i => "fault-token-" + i.ToString("D4", CultureInfo.InvariantCulture) + ":APA91b").ToArray();
        var channels = Enumerable.Range(0, WnsDevices).Select(_ => wns.CreateChannel(Sid)).ToArray();
        var fcmSend = await SendAsync(gw.Client, new { lane = "priority", kind = "badge", badge = 3, devices = tokens.Select(t => new { platform = "fcm", token = t, topic = Project }).ToArray() }, Ct);
        var wnsSend = await SendAsync(gw.Client, new { lane = "priority", kind = "badge", badge = 3, devices = channels.Select(c => new { platform = "wns", token = c, topic = Sid }).ToArray() }, Ct);

        var fcmDone = await WaitForStatesAsync(gw.Client, fcmSend, s => State(s, "sent") == FcmDevices, Ct, rounds: 1200);
        var wnsDone = await WaitForStatesAsync(gw.Client, wnsSend, s => State(s, "sent") == WnsDevices, Ct, rounds: 1200);
        foreach (var done in new[] { fcmDone, wnsDone })
        {
            var states = done.GetProperty("states");
            Assert.Equal(0, State(states, "failed"));
            Assert.Equal(0, State(states, "dead"));
            Assert.Equal(0, State(states, "expired"));
        }

        // Lost = 0: every device got at least one push; extra deliveries only where a reset took the answer away.
        var fcmDelivered = fcm.Requests.Where(r => r.Status == 200 && r.Token is not null).GroupBy(r => r.Token!).ToList();
        var wnsDelivered = wns.Requests.Where(r => r.Status == 200).GroupBy(r => r.Channel).ToList();
        Assert.Equal(FcmDevices, fcmDelivered.Count);
        Assert.Equal(WnsDevices, wnsDelivered.Count);
        var fcmDuplicates = fcmDelivered.Sum(g => g.Count() - 1);
        var wnsDuplicates = wnsDelivered.Sum(g => g.Count() - 1);
        Assert.InRange(fcmDuplicates, 0, fcmFaults.Counts.Resets);
        Assert.InRange(wnsDuplicates, 0, wnsFaults.Counts.Resets);
        Assert.True(fcmFaults.Counts.Unavailable > 0 && fcmFaults.Counts.Resets > 0 && fcmFaults.Counts.Stalls > 0, fcmFaults.ToString());
        Assert.True(wnsFaults.Counts.Unavailable > 0 && wnsFaults.Counts.Resets > 0, wnsFaults.ToString());
        TestContext.Current.SendDiagnosticMessage(
            $"FCM faults {fcmFaults}; duplicates {fcmDuplicates}. WNS faults {wnsFaults}; duplicates {wnsDuplicates}. Lost 0 of {FcmDevices + WnsDevices}.");
    }
}
