using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Json;
using System.Text.Json;
using Herald.Core.Pipeline;
using Herald.Simulators.Apns;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.DependencyInjection;
using Xunit;

namespace Herald.Server.Tests;

/// <summary>
/// Issue 9's fault injection (and issue 3's "GOAWAY or reset under load loses nothing"): a real gateway (Kestrel + SQLite)
/// under a steady load of bulk sends and EWS callbacks while the fake APNs answers 5 % 503, resets 1 % (streams and, more
/// rarely, whole TCP connections), closes a connection with GOAWAY every 2,000 streams and stalls a few answers 2 s.
/// Every acknowledged notification must end <c>sent</c> (and be on the device), <c>failed</c> with a permanent reason,
/// or <c>expired</c>; duplicates (same <c>apns-id</c> delivered twice) may only come from sends cut off by a reset.
/// </summary>
public sealed class FaultInjectionTests(ITestOutputHelper output)
{
    private const int BulkRequests = 40;
    private const int TargetsPerRequest = 500;  // 20,000 direct sends
    private const int Mailboxes = 40;           // EWS push registrations, 5 of them with dead tokens
    private const int DeadMailboxes = 5;
    private const int DeadTargetEvery = 250;    // every 250th bulk target is an uninstalled app (410)
    private static readonly TimeSpan LoadDuration = TimeSpan.FromSeconds(25);

    [Fact]
    public async Task SteadyLoadUnder503ResetsGoAwaysAndStalls_EveryNotificationEndsSentFailedOrExpired_NoneLost()
    {
        var ct = TestContext.Current.CancellationToken;
        var faults = new FakeApnsFaults
        {
            Seed = 20261124,
            ServiceUnavailableRate = 0.05,
            StreamResetRate = 0.0095,
            ConnectionResetRate = 0.0005,     // with the stream resets: 1 % of requests reset
            GoAwayEveryStreams = 2_000,       // Apple: ~every 10,000 streams; scaled to this run's ~25,000
            StallRate = 0.002,
            StallDuration = TimeSpan.FromSeconds(2),
        };
        var apns = await FakeApnsServer.StartAsync(new FakeApnsServerOptions { RecordRequests = false, KeepReceipts = true, Faults = faults }, cancellationToken: ct);
        await using var gw = await GatewayHarness.StartAsync(new Dictionary<string, string?>
        {
            // Compressed retry schedule (100 ms .. 1 s) with room for the unlucky: 25 attempts at 6 % failure never run out.
            ["Herald:Retry:MaxAttempts"] = "25",
        }, apns, ct);

        // Mailboxes on EWS push; the first few belong to uninstalled apps (410 Unregistered).
        var mailboxes = new List<(string Token, string Url, string RegistrationId)>();
        for (var i = 0; i < Mailboxes; i++)
        {
            var token = "ae" + i.ToString("x4", CultureInfo.InvariantCulture) + new string('5', 58);
            var (id, url) = await gw.RegisterAsync(token, cancellationToken: ct);
            mailboxes.Add((token, url, id));
            if (i < DeadMailboxes)
            {
                apns.Unregister(token, DateTimeOffset.UtcNow);
            }
        }

        // Load: bulk requests paced over LoadDuration, and Exchange callbacks (each mailbox's in order) alongside.
        var loadClock = Stopwatch.StartNew();
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var acknowledged = new int[Mailboxes]; // highest unread count answered OK, per mailbox
        var callbackAnswers = new Dictionary<int, int>();
        var ews = Enumerable.Range(0, 2).Select(lane => Task.Run(async () =>
        {
            var unread = 0;
            while (!stop.IsCancellationRequested)
            {
                unread++;
                for (var m = lane; m < Mailboxes && !stop.IsCancellationRequested; m += 2)
                {
                    var (status, body) = await Soap.PostAsync(gw.Client, mailboxes[m].Url, Soap.NewMail("SUB-F" + m, unread), cancellationToken: ct);
                    lock (callbackAnswers)
                    {
                        callbackAnswers[status] = callbackAnswers.GetValueOrDefault(status) + 1;
                    }

                    if (status == 200 && Soap.StatusOf(body) == "OK")
                    {
                        acknowledged[m] = unread;
                    }
                }

                await Task.Delay(50, ct);
            }
        }, ct)).ToArray();

        var requestIds = new List<(string Id, int Count)>();
        var deadTargets = new HashSet<string>(StringComparer.Ordinal);
        for (var r = 0; r < BulkRequests; r++)
        {
            var devices = new List<object>(TargetsPerRequest);
            for (var t = 0; t < TargetsPerRequest; t++)
            {
                var n = (r * TargetsPerRequest) + t;
                var token = "bf" + n.ToString("x8", CultureInfo.InvariantCulture) + new string('7', 54);
                if (n % DeadTargetEvery == 0)
                {
                    apns.Unregister(token, DateTimeOffset.UtcNow);
                    deadTargets.Add(token);
                }

                devices.Add(new { platform = "apns", token, topic = GatewayHarness.Topic });
            }

            using var response = await gw.Client.PostAsJsonAsync("v1/notifications", new { lane = "priority", kind = "badge", badge = (r % 9) + 1, devices }, ct);
            var text = await response.Content.ReadAsStringAsync(ct);
            Assert.True((int)response.StatusCode == 202, $"bulk request {r}: {(int)response.StatusCode} {text}");
            using var json = JsonDocument.Parse(text);
            requestIds.Add((json.RootElement.GetProperty("id").GetString()!, json.RootElement.GetProperty("count").GetInt32()));

            // Steady pacing: request r goes out at r/BulkRequests of the load window.
            var due = LoadDuration * (r + 1) / BulkRequests;
            if (loadClock.Elapsed < due)
            {
                await Task.Delay(due - loadClock.Elapsed, ct);
            }
        }

        await stop.CancelAsync();
        await Task.WhenAll(ews);
        var loadSeconds = loadClock.Elapsed.TotalSeconds;

        // Drain: every stored notification reaches a final state (retries, stalls and all).
        var drained = await WaitForDrainAsync(gw.DatabasePath, TimeSpan.FromSeconds(150), ct);
        var drainSeconds = loadClock.Elapsed.TotalSeconds - loadSeconds;
        var rows = ReadNotifications(gw.DatabasePath);
        var receipts = apns.Receipts;
        var counts = apns.FaultCounts;

        // Nothing lost at the door: every acknowledged bulk target is a stored notification.
        var byRequest = rows.Where(n => n.RequestId is not null).GroupBy(n => n.RequestId!).ToDictionary(g => g.Key, g => g.Count(), StringComparer.Ordinal);
        foreach (var (id, count) in requestIds)
        {
            Assert.Equal(count, byRequest.GetValueOrDefault(id));
        }

        Assert.Equal(BulkRequests * TargetsPerRequest, requestIds.Sum(r => r.Count));

        var states = rows.GroupBy(n => n.State).ToDictionary(g => g.Key, g => g.Count());
        var sent = rows.Where(n => n.State == 3).ToList();
        var failed = rows.Where(n => n.State == 4).ToList();
        var expired = rows.Count(n => n.State == 5);
        var lostSent = sent.Count(n => !receipts.ContainsKey(n.MessageId)); // "sent" but never on the device
        var duplicates = receipts.Values.Sum(v => Math.Max(0, v - 1));
        var duplicatedIds = receipts.Count(kv => kv.Value > 1);
        var ewsLost = 0;
        for (var m = DeadMailboxes; m < Mailboxes; m++)
        {
            // The device shows the last acknowledged count or a newer one: a sent push with that badge, on the device.
            if (acknowledged[m] > 0 && !rows.Any(n => n.RegistrationId == mailboxes[m].RegistrationId && n.State == 3 && n.Badge >= acknowledged[m] && receipts.ContainsKey(n.MessageId)))
            {
                ewsLost++;
            }
        }

        var deactivated = 0;
        for (var m = 0; m < DeadMailboxes; m++)
        {
            deactivated += (await gw.GetRegistrationAsync(mailboxes[m].RegistrationId, ct)).GetProperty("status").GetString() == "inactive" ? 1 : 0;
        }

        output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"load {loadSeconds:F1} s, drain {drainSeconds:F1} s (drained: {drained})"));
        output.WriteLine($"bulk: {requestIds.Count} requests, {requestIds.Sum(r => r.Count)} targets acknowledged (202); EWS callbacks by status: {string.Join(", ", callbackAnswers.OrderBy(kv => kv.Key).Select(kv => $"{kv.Key}={kv.Value}"))}");
        output.WriteLine($"fake APNs: {apns.AcceptedCount} accepted, {apns.RejectedCount} rejected ({string.Join(", ", apns.RejectedByReason().Select(kv => $"{kv.Key} {kv.Value}"))})");
        output.WriteLine($"faults: {counts}");
        var dispatcher = gw.App.Services.GetRequiredService<Dispatcher>().Counters;
        output.WriteLine($"dispatcher: sent {dispatcher.Sent}, retried {dispatcher.Retried}, failed {dispatcher.Failed}, expired {dispatcher.Expired}, dead {dispatcher.Dead}");
        output.WriteLine($"store: {rows.Count} notifications: {string.Join(", ", states.OrderBy(kv => kv.Key).Select(kv => $"{StateName(kv.Key)} {kv.Value}"))}; failed reasons: {string.Join(", ", failed.GroupBy(f => f.Reason).Select(g => $"{g.Key} {g.Count()}"))}");
        output.WriteLine($"lost: {lostSent} sent-but-not-delivered, {ewsLost} EWS mailboxes without their acknowledged badge; duplicates: {duplicates} extra deliveries of {duplicatedIds} apns-ids; dead-token registrations deactivated {deactivated}/{DeadMailboxes}");

        Assert.True(drained, "the queue did not drain");
        Assert.All(rows, n => Assert.Contains(n.State, new[] { 3, 4, 5 }));
        // The permanent reasons in this run: the uninstalled apps (410), and a retry of a mailbox's push folded into the
        // mailbox's newer pending push ("Coalesced": its content travels with the newer one, checked above per mailbox).
        Assert.All(failed, n => Assert.True(n.Reason == "Unregistered" || (n.Reason == "Coalesced" && n.RegistrationId is not null), $"failed with {n.Reason}"));
        Assert.Equal(0, lostSent);
        Assert.Equal(0, ewsLost);
        Assert.Equal(DeadMailboxes, deactivated);
        Assert.Equal(deadTargets.Count, failed.Count(n => n.RequestId is not null)); // (a row forgets its token when it completes)
        Assert.Equal(0, expired); // no TTLs in this run

        // Every fault kind happened; a duplicate needs a reset that cut off a delivered push's answer.
        Assert.True(counts.ServiceUnavailable > 0 && counts.StreamResets > 0 && counts.ConnectionResets > 0 && counts.Stalls > 0 && counts.GoAways >= 3, counts.ToString());
        var maxInFlight = new DispatchOptions().MaxInFlight;
        Assert.True(duplicatedIds <= counts.StreamResets + (counts.ConnectionResets * maxInFlight), "more duplicates than sends cut off by resets");
        Assert.Equal(0, dispatcher.Dead);
    }

    /// <summary>
    /// Issue 3: graceful GOAWAYs alone, under load. Kestrel's GOAWAY first announces last-stream-id 2^31−1, so every
    /// stream already sent is still answered; later requests go on a new connection. Nothing is lost and nothing is
    /// sent twice; the retries Herald needed are reported (streams caught between a GOAWAY and the close).
    /// </summary>
    [Fact]
    public async Task GoAwayEvery250StreamsUnderLoad_NothingLost_NoDuplicates()
    {
        var ct = TestContext.Current.CancellationToken;
        var apns = await FakeApnsServer.StartAsync(new FakeApnsServerOptions { RecordRequests = false, KeepReceipts = true, Faults = new FakeApnsFaults { GoAwayEveryStreams = 250 } }, cancellationToken: ct);
        await using var gw = await GatewayHarness.StartAsync(new Dictionary<string, string?> { ["Herald:Retry:MaxAttempts"] = "25" }, apns, ct);
        var accepted = 0;
        for (var r = 0; r < 10; r++)
        {
            var devices = Enumerable.Range(0, 500).Select(t => new { platform = "apns", token = "c0" + ((r * 500) + t).ToString("x8", CultureInfo.InvariantCulture) + new string('2', 54), topic = GatewayHarness.Topic }).ToList();
            using var response = await gw.Client.PostAsJsonAsync("v1/notifications", new { lane = "priority", kind = "badge", badge = 1, devices }, ct);
            Assert.Equal(System.Net.HttpStatusCode.Accepted, response.StatusCode);
            accepted += devices.Count;
            await Task.Delay(200, ct);
        }

        Assert.True(await WaitForDrainAsync(gw.DatabasePath, TimeSpan.FromSeconds(90), ct), "the queue did not drain");
        var rows = ReadNotifications(gw.DatabasePath);
        var receipts = apns.Receipts;
        var dispatcher = gw.App.Services.GetRequiredService<Dispatcher>().Counters;
        output.WriteLine($"{accepted} acknowledged; faults: {apns.FaultCounts}; dispatcher: sent {dispatcher.Sent}, retried {dispatcher.Retried}; deliveries {receipts.Values.Sum()} of {receipts.Count} apns-ids");

        Assert.Equal(accepted, rows.Count);
        Assert.All(rows, n => Assert.Equal(3, n.State));
        Assert.All(rows, n => Assert.Equal(1, receipts.GetValueOrDefault(n.MessageId))); // each on the device exactly once
        Assert.True(apns.FaultCounts.GoAways >= 15, apns.FaultCounts.ToString());
    }

    private static string StateName(int state) => state switch
    {
        0 => "queued", 1 => "sending", 2 => "retrying", 3 => "sent", 4 => "failed", 5 => "expired", 6 => "dead", _ => state.ToString(CultureInfo.InvariantCulture),
    };

    internal static async Task<bool> WaitForDrainAsync(string databasePath, TimeSpan limit, CancellationToken ct)
    {
        var deadline = Stopwatch.StartNew();
        while (deadline.Elapsed < limit)
        {
            if (CountPending(databasePath) == 0)
            {
                return true;
            }

            await Task.Delay(250, ct);
        }

        return false;
    }

    internal static long CountPending(string databasePath)
    {
        using var connection = new SqliteConnection($"Data Source={databasePath};Mode=ReadOnly;Pooling=False");
        connection.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT count(*) FROM notifications WHERE state IN (0, 1, 2)";
        return (long)command.ExecuteScalar()!;
    }

    internal static List<StoredNotification> ReadNotifications(string databasePath)
    {
        using var connection = new SqliteConnection($"Data Source={databasePath};Mode=ReadOnly;Pooling=False");
        connection.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT message_id, registration_id, request_id, state, token, last_reason, json_extract(content, '$.badge') FROM notifications";
        using var reader = command.ExecuteReader();
        var rows = new List<StoredNotification>();
        while (reader.Read())
        {
            rows.Add(new StoredNotification(
                new Guid(reader.GetFieldValue<byte[]>(0), bigEndian: true).ToString("D"),
                reader.IsDBNull(1) ? null : reader.GetString(1),
                reader.IsDBNull(2) ? null : reader.GetString(2),
                reader.GetInt32(3),
                reader.GetString(4),
                reader.IsDBNull(5) ? null : reader.GetString(5),
                reader.IsDBNull(6) ? null : reader.GetInt32(6)));
        }

        return rows;
    }

    internal sealed record StoredNotification(string MessageId, string? RegistrationId, string? RequestId, int State, string Token, string? Reason, int? Badge);
}
