using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using Herald.Simulators.Apns;
using Xunit;

namespace Herald.Server.Tests;

/// <summary>An acknowledged event survives SIGKILL: the process restarted on the same file delivers it.</summary>
public sealed class CrashDurabilityTests
{
    [Fact]
    public async Task SigKill_AfterAcknowledging_RestartDeliversEveryAcknowledgedEvent()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var apns = await FakeApnsServer.StartAsync(cancellationToken: ct);
        var pem = apns.GenerateSigningKey(GatewayHarness.TeamId, GatewayHarness.KeyId, GatewayHarness.Topic);
        var directory = Path.Combine(Path.GetTempPath(), "herald-crash-" + Guid.NewGuid().ToString("N")[..12]);
        Directory.CreateDirectory(directory);
        try
        {
            // Life 1: APNs is unreachable, so every acknowledged event is still in the queue when the process dies.
            var deadApns = $"http://127.0.0.1:{HeraldProcess.FreePort()}";
            var settings = GatewayHarness.Settings(directory, deadApns, pem);
            settings["Herald:Retry:InitialDelay"] = "00:00:01";
            settings["Herald:Retry:MaxAttempts"] = "1000";
            var expected = new Dictionary<string, int>();
            var callbacks = new List<(string Token, string Url)>();
            await using (var first = await HeraldProcess.StartAsync(settings, ct))
            {
                using var http = Client(first.BaseUrl);
                for (var i = 0; i < 20; i++)
                {
                    var token = i.ToString("x2") + new string('c', 62);
                    using var response = await http.PostAsJsonAsync("v1/registrations", new { platform = "apns", token, source = "ews-push" }, ct);
                    Assert.True(response.IsSuccessStatusCode, await response.Content.ReadAsStringAsync(ct));
                    using var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync(ct));
                    callbacks.Add((token, json.RootElement.GetProperty("callbackUrl").GetString()!));
                }

                for (var round = 1; round <= 3; round++)
                {
                    foreach (var (token, url) in callbacks)
                    {
                        var (status, body) = await Soap.PostAsync(http, url, Soap.NewMail("SUB-" + token[..4], round), cancellationToken: ct);
                        Assert.Equal(200, status);
                        Assert.Equal("OK", Soap.StatusOf(body));
                        expected[token] = round; // acknowledged: must be delivered
                    }
                }

                await first.KillAsync();
            }

            Assert.Empty(apns.Requests);

            // Life 2: same database, APNs reachable.
            settings = GatewayHarness.Settings(directory, apns.BaseUrl, pem);
            await using var second = await HeraldProcess.StartAsync(settings, ct);
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
            timeout.CancelAfter(TimeSpan.FromSeconds(60));
            foreach (var (token, badge) in expected)
            {
                await apns.WaitForRequestAsync(r => r.Token == token && r.Accepted && r.Payload!.Contains($"\"badge\":{badge}", StringComparison.Ordinal), timeout.Token);
            }

            // Reclaimed leases are sent once: the three coalesced events of each device became exactly one push.
            using (var admin = Client(second.BaseUrl))
            {
                await WaitForDrainedQueueAsync(admin, ct);
            }

            foreach (var token in expected.Keys)
            {
                Assert.Single(apns.Requests, r => r.Token == token && r.Accepted);
            }
        }
        finally
        {
            try
            {
                Directory.Delete(directory, recursive: true);
            }
            catch (IOException)
            {
                // Cleaned up with the temp folder.
            }
        }
    }

    private static async Task WaitForDrainedQueueAsync(HttpClient admin, CancellationToken ct)
    {
        for (var i = 0; i < 200; i++)
        {
            using var queue = JsonDocument.Parse(await admin.GetStringAsync("v1/admin/queue", ct));
            long pending = 0;
            foreach (var lane in queue.RootElement.GetProperty("lanes").EnumerateObject())
            {
                pending += lane.Value.GetProperty("queued").GetInt64() + lane.Value.GetProperty("sending").GetInt64() + lane.Value.GetProperty("retrying").GetInt64();
            }

            if (pending == 0)
            {
                return;
            }

            await Task.Delay(50, ct);
        }

        Assert.Fail("the queue did not drain after the restart");
    }

    private static HttpClient Client(string baseUrl)
    {
        var http = new HttpClient { BaseAddress = new Uri(baseUrl + "/") };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", GatewayHarness.AdminKey);
        return http;
    }
}
