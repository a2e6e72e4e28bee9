using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using System.Text.RegularExpressions;
using Herald.Simulators.Apns;
using Xunit;

namespace Herald.Server.Tests;

/// <summary>
/// Crash safety under load: <c>herald serve</c> is SIGKILLed at a random moment while Exchange-style callbacks and sends are
/// in flight, 20 times in a row, restarted on the same SQLite file each time. Every acknowledged event must reach the device
/// (a push carrying its badge or a newer one); duplicates may only be sends that were in flight at a kill.
/// </summary>
public sealed partial class CrashLoopTests
{
    private const int Devices = 12;
    private const int Kills = 20;

    [Fact]
    public async Task TwentySigKillsDuringLoad_LoseNoAcknowledgedEvent()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var apns = await FakeApnsServer.StartAsync(cancellationToken: ct);
        var pem = apns.GenerateSigningKey(GatewayHarness.TeamId, GatewayHarness.KeyId, GatewayHarness.Topic);
        var directory = Path.Combine(Path.GetTempPath(), "herald-crashloop-" + Guid.NewGuid().ToString("N")[..12]);
        Directory.CreateDirectory(directory);
        var settings = GatewayHarness.Settings(directory, apns.BaseUrl, pem);
        settings["Herald:Retry:InitialDelay"] = "00:00:00.200";
        settings["Herald:Retry:MaxAttempts"] = "1000";
        var random = new Random(4242);
        var acknowledged = new Dictionary<string, int>(StringComparer.Ordinal); // token -> highest acknowledged unread count
        var callbacks = new List<(string Token, string Url)>();
        var posted = 0;
        try
        {
            for (var life = 0; life < Kills; life++)
            {
                await using var herald = await HeraldProcess.StartAsync(settings, ct);
                using var http = new HttpClient { BaseAddress = new Uri(herald.BaseUrl + "/"), Timeout = TimeSpan.FromSeconds(10) };
                http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", GatewayHarness.AdminKey);
                if (life == 0)
                {
                    for (var i = 0; i < Devices; i++)
                    {
                        var token = i.ToString("x2") + new string('e', 62);
                        using var response = await http.PostAsJsonAsync("v1/registrations", new { platform = "apns", token, source = "ews-push" }, ct);
                        using var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync(ct));
                        callbacks.Add((token, json.RootElement.GetProperty("callbackUrl").GetString()!));
                    }
                }

                // Load from several "Exchange servers" at once, each serving its own mailboxes in order (as a subscription's
                // notifications are sequential); the kill lands at a random moment among them.
                using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
                var senders = Enumerable.Range(0, 4).Select(s => Task.Run(async () =>
                {
                    var local = new Random(life * 31 + s);
                    while (!stop.IsCancellationRequested)
                    {
                        var (token, url) = callbacks[(local.Next(Devices / 4) * 4) + s];
                        var unread = Interlocked.Increment(ref posted);
                        try
                        {
                            var (status, body) = await Soap.PostAsync(http, url.Replace(new Uri(url).GetLeftPart(UriPartial.Authority), herald.BaseUrl, StringComparison.Ordinal), Soap.NewMail("SUB-" + token[..2], unread), cancellationToken: stop.Token);
                            if (status == 200 && Soap.StatusOf(body) == "OK")
                            {
                                lock (acknowledged)
                                {
                                    acknowledged[token] = Math.Max(acknowledged.GetValueOrDefault(token), unread);
                                }
                            }
                        }
                        catch (Exception e) when (e is HttpRequestException or OperationCanceledException or IOException)
                        {
                            // Not acknowledged: the process died or the test stopped; Exchange would retry.
                        }
                    }
                }, CancellationToken.None)).ToArray();

                await Task.Delay(150 + random.Next(600), ct);
                await herald.KillAsync();
                await stop.CancelAsync();
                await Task.WhenAll(senders);
            }

            // The last life only delivers.
            await using var survivor = await HeraldProcess.StartAsync(settings, ct);

            // Every acknowledged event reached its device: a push with its badge, or a newer one.
            using var deadline = CancellationTokenSource.CreateLinkedTokenSource(ct);
            deadline.CancelAfter(TimeSpan.FromSeconds(90));
            foreach (var (token, badge) in acknowledged)
            {
                try
                {
                    await apns.WaitForRequestAsync(r => r.Token == token && r.Accepted && BadgeOf(r.Payload) >= badge, deadline.Token);
                }
                catch (OperationCanceledException) when (!ct.IsCancellationRequested)
                {
                    var seen = string.Join(", ", apns.Requests.Where(r => r.Token == token).Select(r => $"{r.Status}:{BadgeOf(r.Payload)}"));
                    Assert.Fail($"device {token[..2]}: acknowledged badge {badge} never arrived; it got [{seen}]\n{survivor.Output}");
                }
            }

            var accepted = apns.Requests.Where(r => r.Accepted).ToList();
            var duplicates = accepted.GroupBy(r => r.ApnsId).Sum(g => g.Count() - 1);
            TestContext.Current.TestOutputHelper?.WriteLine(
                $"crash loop: {Kills} SIGKILLs, {posted} callbacks posted, {acknowledged.Count} devices with acknowledged events, " +
                $"{accepted.Count} pushes accepted, lost 0, duplicates (same apns-id resent after a kill) {duplicates}");

            // A duplicate is a resend of a message that was in flight at a kill: at most one batch per kill.
            Assert.True(duplicates <= Kills * 512, $"{duplicates} duplicates for {Kills} kills");
        }
        finally
        {
            try
            {
                Directory.Delete(directory, recursive: true);
            }
            catch (IOException)
            {
            }
        }
    }

    private static int BadgeOf(string? payload)
    {
        var match = payload is null ? Match.Empty : BadgeRegex().Match(payload);
        return match.Success ? int.Parse(match.Groups[1].ValueSpan, System.Globalization.CultureInfo.InvariantCulture) : -1;
    }

    [GeneratedRegex("\"badge\":(\\d+)")]
    private static partial Regex BadgeRegex();
}
