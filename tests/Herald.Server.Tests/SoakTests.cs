using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using Herald.Core.Pipeline;
using Herald.Providers.Apns;
using Herald.Server.Hosting;
using Herald.Simulators.Apns;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;
using Xunit;

namespace Herald.Server.Tests;

/// <summary>Memory is measured for the whole test process: this collection runs alone, after the parallel ones.</summary>
[CollectionDefinition(nameof(SoakCollection), DisableParallelization = true)]
public sealed class SoakCollection;

/// <summary>
/// Issue 9's soak: one hour of mixed load in simulated time. The whole gateway (dispatcher, retry schedule, farm lease
/// renewals and leader duties, purge of finished rows, APNs provider-token refresh) and the fake APNs run on one
/// <see cref="FakeTimeProvider"/> that a pump moves ~1 s per 10 ms of wall time, so an hour passes in about a minute.
/// Traffic is real HTTP on 127.0.0.1 (Kestrel, SQLite): API registrations and deletions, EWS callbacks, bulk sends, dead
/// tokens, and 503s, resets, stalls and GOAWAYs from the fake for retries. Not simulated-time: Kestrel's and
/// SocketsHttpHandler's own timers (connection idle close at 60 s real time never fires here; GOAWAYs replace
/// connections instead). After warm-up, the managed heap after a forced full GC must stay flat and the queue must drain.
/// </summary>
[Collection(nameof(SoakCollection))]
public sealed class SoakTests(ITestOutputHelper output)
{
    private const int SimulatedMinutes = 60;
    private const int WarmUpMinutes = 10;
    private const int CheckpointEvery = 10;
    private const int NewMailboxesPerMinute = 20;
    private const int DeletesPerMinute = 3;
    private const int CallbacksPerMinute = 150;
    private const int BulkTargetsPerMinute = 300;
    private const int StandardTargetsPerMinute = 25;
    private static readonly TimeSpan Tick = TimeSpan.FromSeconds(1);

    [Fact]
    public async Task OneSimulatedHourOfMixedLoad_QueueDrains_ManagedMemoryStaysFlat()
    {
        var ct = TestContext.Current.CancellationToken;
        var wall = Stopwatch.StartNew();
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var start = time.GetUtcNow();
        var faults = new FakeApnsFaults { Seed = 3600, ServiceUnavailableRate = 0.02, StreamResetRate = 0.002, StallRate = 0.001, GoAwayEveryStreams = 1_500 };
        await using var apns = await FakeApnsServer.StartAsync(new FakeApnsServerOptions { RecordRequests = false, Faults = faults }, time, ct);
        var pem = apns.GenerateSigningKey(GatewayHarness.TeamId, GatewayHarness.KeyId, GatewayHarness.Topic);
        var directory = Path.Combine(Path.GetTempPath(), "herald-soak-" + Guid.NewGuid().ToString("N")[..12]);
        Directory.CreateDirectory(directory);
        var settings = GatewayHarness.Settings(directory, apns.BaseUrl, pem);

        // Production schedules, on the simulated clock: retries from 30 s, finished rows purged after 10 minutes.
        settings["Herald:Retry:InitialDelay"] = "00:00:30";
        settings["Herald:Retry:MaxDelay"] = "00:10:00";
        settings["Herald:Retry:MaxAttempts"] = "8";
        settings["Herald:Farm:KeepCompleted"] = "00:10:00";
        settings["Herald:Farm:PurgeInterval"] = "00:01:00";

        // A request's timeout is on the simulated clock too, where a slow wall-clock moment is minutes long.
        settings["Herald:Apns:RequestTimeout"] = "00:30:00";
        var app = HeraldApp.Build(["--urls=http://127.0.0.1:0"], configure: b =>
        {
            b.Configuration.AddInMemoryCollection(settings);
            b.Services.AddSingleton<TimeProvider>(time);
        });

        using var stopPump = new CancellationTokenSource();
        var pump = Task.Run(async () =>
        {
            while (!stopPump.IsCancellationRequested)
            {
                time.Advance(Tick);
                try
                {
                    await Task.Delay(10, stopPump.Token);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
        }, CancellationToken.None);

        try
        {
            await HeraldApp.StartAsync(app, ct);
            using var http = new HttpClient { BaseAddress = new Uri(app.Urls.First().TrimEnd('/') + "/"), Timeout = TimeSpan.FromSeconds(60) };
            http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", GatewayHarness.AdminKey);
            var random = new Random(3600);
            var mailboxes = new List<Mailbox>();
            var tally = new Dictionary<string, int>(StringComparer.Ordinal);
            var checkpoints = new List<(int Minute, long Managed, long WorkingSet, long Rows)>();
            var bulkTargets = 0;
            var serial = 0;

            for (var minute = 0; minute < SimulatedMinutes; minute++)
            {
                // API registrations; every fifth new mailbox belongs to an uninstalled app (410 Unregistered).
                for (var i = 0; i < NewMailboxesPerMinute; i++)
                {
                    var n = serial++;
                    var token = "5a" + n.ToString("x6", CultureInfo.InvariantCulture) + new string('3', 56);
                    using var response = await http.PostAsJsonAsync("v1/registrations", new { platform = "apns", token, source = "ews-push", style = "badge", locale = "en" }, ct);
                    Count(tally, "registration " + (int)response.StatusCode);
                    if (response.StatusCode == HttpStatusCode.Created)
                    {
                        using var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync(ct));
                        mailboxes.Add(new Mailbox(json.RootElement.GetProperty("id").GetString()!, json.RootElement.GetProperty("callbackUrl").GetString()!));
                        if (n % 5 == 4)
                        {
                            apns.Unregister(token, time.GetUtcNow());
                        }
                    }
                }

                // Deletions: their next callback is answered Unsubscribe.
                for (var i = 0; i < DeletesPerMinute && mailboxes.Count > 50; i++)
                {
                    var victim = mailboxes[random.Next(mailboxes.Count)];
                    if (!victim.Deleted)
                    {
                        using var response = await http.DeleteAsync("v1/registrations/" + victim.Id, ct);
                        Count(tally, "delete " + (int)response.StatusCode);
                        victim.Deleted = true;
                    }
                }

                // EWS callbacks from Exchange: new mail in random mailboxes, rising unread counts.
                for (var i = 0; i < CallbacksPerMinute; i++)
                {
                    var mailbox = mailboxes[random.Next(mailboxes.Count)];
                    mailbox.Unread++;
                    var (status, body) = await Soap.PostAsync(http, mailbox.CallbackUrl, Soap.NewMail("SUB-SOAK-" + mailbox.Id, mailbox.Unread), cancellationToken: ct);
                    Count(tally, "callback " + status + " " + (Soap.StatusOf(body) ?? "fault"));
                }

                // One bulk send a minute (direct device targets, 1 % dead), with a TTL.
                var devices = Enumerable.Range(0, BulkTargetsPerMinute).Select(t =>
                {
                    var token = "6b" + minute.ToString("x2", CultureInfo.InvariantCulture) + t.ToString("x4", CultureInfo.InvariantCulture) + new string('9', 56);
                    if (t % 100 == 7)
                    {
                        apns.Unregister(token, time.GetUtcNow());
                    }

                    return new { platform = "apns", token, topic = GatewayHarness.Topic };
                }).ToList();
                using (var bulk = await http.PostAsJsonAsync("v1/notifications", new { lane = "priority", kind = "badge", badge = minute + 1, ttlSeconds = 1800, devices }, ct))
                {
                    Count(tally, "bulk " + (int)bulk.StatusCode);
                    bulkTargets += bulk.StatusCode == HttpStatusCode.Accepted ? BulkTargetsPerMinute : 0;
                }

                // And administrative bulk on the standard lane, under its default throttle (50 a minute across the farm).
                var admin = Enumerable.Range(0, StandardTargetsPerMinute)
                    .Select(t => new { platform = "apns", token = "7c" + minute.ToString("x2", CultureInfo.InvariantCulture) + t.ToString("x4", CultureInfo.InvariantCulture) + new string('1', 56), topic = GatewayHarness.Topic })
                    .ToList();
                using (var bulk = await http.PostAsJsonAsync("v1/notifications", new { lane = "standard", kind = "badge", badge = 1, devices = admin }, ct))
                {
                    Count(tally, "standard bulk " + (int)bulk.StatusCode);
                    bulkTargets += bulk.StatusCode == HttpStatusCode.Accepted ? StandardTargetsPerMinute : 0;
                }

                // The rest of this simulated minute passes (the pump runs the clock; the gateway works meanwhile).
                await WaitForClockAsync(time, start + TimeSpan.FromMinutes(minute + 1), ct);
                if ((minute + 1) % CheckpointEvery == 0)
                {
                    var (managed, workingSet) = Measure();
                    var rows = CountRows(Path.Combine(directory, "herald.db"));
                    checkpoints.Add((minute + 1, managed, workingSet, rows));
                    output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"minute {minute + 1,2}: managed {managed / 1048576.0:F1} MiB, working set {workingSet / 1048576.0:F1} MiB, rows {rows}, pending {FaultInjectionTests.CountPending(Path.Combine(directory, "herald.db"))}, wall {wall.Elapsed.TotalSeconds:F0} s"));
                }
            }

            // Traffic stops; the backlog (retries included) drains on the simulated clock.
            var trafficEnd = time.GetUtcNow();
            var drainWall = Stopwatch.StartNew();
            var pending = long.MaxValue;
            while (drainWall.Elapsed < TimeSpan.FromSeconds(60) && (pending = FaultInjectionTests.CountPending(Path.Combine(directory, "herald.db"))) > 0)
            {
                await Task.Delay(100, ct);
            }

            var counters = app.Services.GetRequiredService<Dispatcher>().Counters;
            var mints = (app.Services.GetRequiredService<IApnsTokenCache>() as SharedApnsTokenCache)?.MintCount ?? -1;
            var rejected = apns.RejectedByReason();
            output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"simulated {(time.GetUtcNow() - start).TotalMinutes:F0} min (drain {(time.GetUtcNow() - trafficEnd).TotalMinutes:F1} min) in {wall.Elapsed.TotalSeconds:F0} s wall"));
            output.WriteLine($"traffic: {string.Join(", ", tally.OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => $"{kv.Key}: {kv.Value}"))}; bulk targets {bulkTargets}");
            output.WriteLine($"dispatcher: sent {counters.Sent}, retried {counters.Retried}, failed {counters.Failed}, expired {counters.Expired}, dead {counters.Dead}, registrations deactivated {counters.Deactivated}");
            output.WriteLine($"fake APNs: accepted {apns.AcceptedCount}, rejected {string.Join(", ", rejected.Select(kv => $"{kv.Key} {kv.Value}"))}; faults: {apns.FaultCounts}; provider tokens minted {mints}");

            Assert.Equal(0, pending);
            Assert.True(tally.Keys.All(k => !k.Contains(" 5", StringComparison.Ordinal)), "a 5xx answer under soak load");
            Assert.True(counters.Sent > bulkTargets / 2, "far fewer sends than the traffic asked for");
            Assert.True(counters.Retried > 0 && counters.Deactivated > 0 && counters.Failed > 0, "the mix lacked retries or dead tokens");
            Assert.Equal(0, counters.Dead);

            // The simulated hour did what an hour does: the provider token was refreshed, finished rows were purged.
            Assert.True(mints >= 2, $"the provider token was minted {mints} time(s) in an hour");
            Assert.Equal(0, rejected.GetValueOrDefault("ExpiredProviderToken") + rejected.GetValueOrDefault("TooManyProviderTokenUpdates"));
            Assert.True(checkpoints[^1].Rows < counters.Sent, "finished rows were never purged");

            // No memory growth after warm-up: the last checkpoint within 20 % (and 16 MiB of noise) of the first one after it.
            var baseline = checkpoints.First(c => c.Minute > WarmUpMinutes);
            var last = checkpoints[^1];
            var bound = baseline.Managed + Math.Max(baseline.Managed / 5, 16L * 1024 * 1024);
            Assert.True(last.Managed <= bound, $"managed heap grew from {baseline.Managed} to {last.Managed} bytes (bound {bound})");
            Assert.True(last.WorkingSet <= baseline.WorkingSet * 2, $"working set grew from {baseline.WorkingSet} to {last.WorkingSet} bytes");
        }
        finally
        {
            await stopPump.CancelAsync();
            await pump;
            await app.StopAsync(CancellationToken.None);
            await app.DisposeAsync();
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

    private static void Count(Dictionary<string, int> tally, string key) => tally[key] = tally.GetValueOrDefault(key) + 1;

    private static async Task WaitForClockAsync(FakeTimeProvider time, DateTimeOffset until, CancellationToken ct)
    {
        for (var i = 0; i < 60_000 && time.GetUtcNow() < until; i++)
        {
            await Task.Delay(5, ct);
        }
    }

    private static (long Managed, long WorkingSet) Measure()
    {
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Forced, blocking: true, compacting: true);
        GC.WaitForPendingFinalizers();
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Forced, blocking: true, compacting: true);
        using var process = Process.GetCurrentProcess();
        return (GC.GetTotalMemory(forceFullCollection: false), process.WorkingSet64);
    }

    private static long CountRows(string databasePath)
    {
        using var connection = new Microsoft.Data.Sqlite.SqliteConnection($"Data Source={databasePath};Mode=ReadOnly;Pooling=False");
        connection.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT count(*) FROM notifications";
        return (long)command.ExecuteScalar()!;
    }

    private sealed class Mailbox(string id, string callbackUrl)
    {
        public string Id { get; } = id;

        public string CallbackUrl { get; } = callbackUrl;

        public int Unread { get; set; }

        public bool Deleted { get; set; }
    }
}
