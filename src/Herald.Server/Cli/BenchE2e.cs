using System.Collections.Concurrent;
using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using Herald.Simulators.Exchange;

namespace Herald.Server.Cli;

/// <summary>
/// <c>herald bench e2e</c> (issue 10, item 2): the fake Exchange posts <c>SendNotification</c> at a fixed offered
/// rate (open loop: each post starts at its scheduled time whether or not earlier ones were answered; only one
/// post per mailbox is in flight, as Exchange does, so there are twice as many mailboxes as events per second)
/// → the gateway (a child process, <c>herald serve</c>, on a fresh SQLite file) → the fake APNs (TLS, HTTP/2, in this
/// process). Latency runs from the start of Exchange's post to the fake APNs accepting a push carrying that event's
/// badge (or a later one), both on this process's clock. CPU and resident memory are the gateway's own.
/// </summary>
internal static class BenchE2e
{
    internal sealed record Result(double Offered, double Achieved, long Posted, long Unacknowledged, long Shed, int Measured, int Missing, double P50, double P95, double P99, double Max, long QueueMax, long QueueEnd, double Cores, long Rss)
    {
        /// <summary>Sustained: every event acknowledged and delivered, ≥ 97 % of the offered rate, and the queue back near empty when the traffic stopped.</summary>
        public bool Sustained => Unacknowledged == 0 && Shed == 0 && Missing == 0 && Achieved >= 0.97 * Offered && QueueEnd <= Math.Max(100, Offered / 2) && P99 < 1000;
    }

    public static Command Create()
    {
        var rates = new Option<string>("--rates") { Description = "Offered rates in events/s, comma separated.", DefaultValueFactory = _ => "500,2000,5000" };
        var duration = new Option<string>("--duration") { Description = "Traffic per rate: 20s, 1m...", DefaultValueFactory = _ => "20s" };
        var search = new Option<bool>("--find-max") { Description = "Then search upwards for the highest sustained rate." };
        var warm = new Option<string>("--warm-up") { Description = "Untimed closed-loop posts before each rate (the fresh gateway's JIT reaches its steady state): 5s...", DefaultValueFactory = _ => "5s" };
        var docs = new Option<bool>("--append-docs") { Description = "Append the table to docs/BENCHMARKS.md." };
        var command = new Command("e2e", "Fake Exchange → Herald → fake APNs at fixed offered rates: latency percentiles, CPU, memory, queue growth.");
        command.Options.Add(rates);
        command.Options.Add(duration);
        command.Options.Add(search);
        command.Options.Add(warm);
        command.Options.Add(docs);
        command.SetAction(async (parse, cancellationToken) =>
        {
            var list = new List<double>();
            foreach (var part in (parse.GetValue(rates) ?? string.Empty).Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            {
                if (!double.TryParse(part, NumberStyles.Float, CultureInfo.InvariantCulture, out var r) || r is <= 0 or > 100_000)
                {
                    await Console.Error.WriteLineAsync("herald: --rates must be numbers in 1..100000, e.g. 500,2000,5000.");
                    return HeraldCli.UsageError;
                }

                list.Add(r);
            }

            if (list.Count == 0 || !DemoCommand.TryParseDuration(parse.GetValue(duration), out var d) || !DemoCommand.TryParseDuration(parse.GetValue(warm), out var w))
            {
                await Console.Error.WriteLineAsync("herald: give --rates, and a --duration and --warm-up like 20s.");
                return HeraldCli.UsageError;
            }

            return await RunAsync(list, d, parse.GetValue(search), parse.GetValue(docs), Console.Out, cancellationToken, w);
        });
        return command;
    }

    public static async Task<int> RunAsync(IReadOnlyList<double> rates, TimeSpan duration, bool findMax, bool appendDocs, TextWriter output, CancellationToken cancellationToken, TimeSpan? warmUpTime = null)
    {
        var warmUp = warmUpTime ?? TimeSpan.FromSeconds(5);
        var results = new List<Result>();
        foreach (var rate in rates)
        {
            results.Add(await RunRateAsync(rate, duration, warmUp, output, cancellationToken));
        }

        string? highest = null;
        if (findMax)
        {
            // Up by half again while sustained, then bisect twice between the last good and the first bad rate.
            var good = results.Where(r => r.Sustained).Select(r => r.Offered).DefaultIfEmpty(0).Max();
            var bad = results.Where(r => !r.Sustained).Select(r => r.Offered).Where(r => r > good).DefaultIfEmpty(double.PositiveInfinity).Min();
            var probe = good > 0 ? good * 1.5 : rates.Min() / 2;
            for (var step = 0; step < 8 && double.IsPositiveInfinity(bad); step++, probe *= 1.5)
            {
                var r = await RunRateAsync(Math.Round(probe), duration, warmUp, output, cancellationToken);
                results.Add(r);
                if (r.Sustained)
                {
                    good = r.Offered;
                }
                else
                {
                    bad = r.Offered;
                }
            }

            for (var step = 0; step < 2 && !double.IsPositiveInfinity(bad) && bad - good > Math.Max(100, good * 0.1); step++)
            {
                var r = await RunRateAsync(Math.Round((good + bad) / 2 / 100) * 100, duration, warmUp, output, cancellationToken);
                results.Add(r);
                (good, bad) = r.Sustained ? (r.Offered, bad) : (good, r.Offered);
            }

            highest = $"Highest sustained offered rate found: **{good:0} events/s** (first failing: {(double.IsPositiveInfinity(bad) ? "none" : bad.ToString("0", CultureInfo.InvariantCulture))}); sustained = every post acknowledged and delivered, ≥ 97 % of the offered rate achieved, the queue ≤ half a second's worth when the traffic stopped, p99 < 1 s.";
        }

        var table = BenchSupport.Table(
            ["offered/s", "achieved/s", "posts", "not acked", "shed", "p50 ms", "p95 ms", "p99 ms", "max ms", "queue max / end", "CPU (cores)", "RSS", "sustained"],
            results.OrderBy(r => r.Offered).Select(r => (IReadOnlyList<string>)
            [
                BenchSupport.F(r.Offered), BenchSupport.F(r.Achieved), r.Posted.ToString(CultureInfo.InvariantCulture), r.Unacknowledged.ToString(CultureInfo.InvariantCulture),
                r.Shed.ToString(CultureInfo.InvariantCulture), BenchSupport.F(r.P50, "0.0"), BenchSupport.F(r.P95, "0.0"), BenchSupport.F(r.P99, "0.0"), BenchSupport.F(r.Max, "0.0"),
                $"{r.QueueMax} / {r.QueueEnd}", BenchSupport.F(r.Cores, "0.00"), BenchSupport.Mib(r.Rss), r.Sustained ? "yes" : "no",
            ]));
        const string Notes = "Herald runs as a child process (`herald serve`): CPU and RSS are its own; the fake Exchange and the fake APNs run in the bench process on the same two cores. "
            + "Open loop: posts start on schedule; 'shed' counts posts not started because 10,000 were already in flight. 'not acked' = answered other than OK.";
        await output.WriteLineAsync();
        await output.WriteLineAsync(table);
        await output.WriteLineAsync(Notes);
        if (highest is not null)
        {
            await output.WriteLineAsync(highest);
        }

        if (appendDocs)
        {
            var path = BenchSupport.AppendToDocs("End to end at fixed offered rates (`herald bench e2e`)", table + Environment.NewLine + Notes + Environment.NewLine + (highest ?? string.Empty) + Environment.NewLine);
            await output.WriteLineAsync(path is null ? "docs/BENCHMARKS.md not found; not appended." : "appended to " + path);
        }

        return results.All(r => r.Posted > 0 && r.Measured > 0) ? HeraldCli.Success : HeraldCli.Failure;
    }

    private sealed class Mailbox(string token, FakeExchangeSubscription subscription)
    {
        public string Token { get; } = token;
        public FakeExchangeSubscription Subscription { get; } = subscription;
        public SemaphoreSlim Gate { get; } = new(1, 1);
        public List<(int Unread, DateTimeOffset PostedAt)> Events { get; } = [];
    }

    internal static async Task<Result> RunRateAsync(double rate, TimeSpan duration, TimeSpan warmUp, TextWriter output, CancellationToken cancellationToken)
    {
        var directory = Path.Combine(Path.GetTempPath(), "herald-e2e-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(directory);
        try
        {
            var (apns, settings) = await BenchCommand.StartFakeForGatewayAsync(directory, cancellationToken, record: true);
            await using var apnsScope = apns;
            var count = (int)Math.Max(200, Math.Ceiling(rate * 2));

            // The gateway is a child process, so its CPU and memory are its own, not the simulators'.
            var (child, registrations) = await BenchChildGateway.StartLoadedAsync(settings, count, cancellationToken);
            await using var childScope = child;
            var baseUrl = child.BaseUrl;
            using var admin = new HttpClient { BaseAddress = new Uri(baseUrl + "/"), Timeout = TimeSpan.FromSeconds(30) };
            admin.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", BenchCommand.AdminKey);
            var queue = admin;

            using var handler = new SocketsHttpHandler { MaxConnectionsPerServer = 2048, PooledConnectionIdleTimeout = TimeSpan.FromMinutes(1) };
            await using var exchange = new FakeExchange(new HttpClient(handler, disposeHandler: false) { Timeout = TimeSpan.FromSeconds(30) }, TimeProvider.System);
            var mailboxes = registrations.Select(r => new Mailbox(r.Token, exchange.Subscribe(new Uri(baseUrl + "/ews/notify/" + r.Key), TimeSpan.FromMinutes(30)))).ToArray();

            // Warm up the path (JIT and tiered compilation in the fresh gateway, connections, provider token): closed-loop
            // posts from 64 workers over the mailboxes for the warm-up time (untimed), then let the queue drain.
            var warmClock = Stopwatch.StartNew();
            await Parallel.ForEachAsync(Enumerable.Range(0, 64), cancellationToken, async (w, ct) =>
            {
                for (var i = w; warmClock.Elapsed < warmUp && i < 1_000_000; i += 64)
                {
                    await exchange.DeliverNewMailAsync(mailboxes[i % mailboxes.Length].Subscription, ct);
                }
            });
            await WaitDrainedAsync(queue, TimeSpan.FromSeconds(30), cancellationToken);
            apns.ClearRequests();

            long posted = 0, acked = 0, unacked = 0, shed = 0, inFlight = 0, queueMax = 0;
            var total = (long)Math.Round(rate * duration.TotalSeconds);
            var tasks = new ConcurrentBag<Task>();
            var (cpu0, _) = BenchSupport.ProcessUsage(child.Id);
            var clock = Stopwatch.StartNew();
            var nextSample = TimeSpan.Zero;
            for (long k = 0; k < total;)
            {
                var due = Math.Min(total, (long)(rate * clock.Elapsed.TotalSeconds) + 1);
                for (; k < due; k++)
                {
                    if (Interlocked.Read(ref inFlight) >= 10_000)
                    {
                        shed++;
                        continue;
                    }

                    var mailbox = mailboxes[k % mailboxes.Length];
                    Interlocked.Increment(ref inFlight);
                    tasks.Add(Task.Run(
                        async () =>
                        {
                            try
                            {
                                await mailbox.Gate.WaitAsync(cancellationToken);
                                try
                                {
                                    var postedAt = DateTimeOffset.UtcNow;
                                    var attempt = await exchange.DeliverNewMailAsync(mailbox.Subscription, cancellationToken);
                                    Interlocked.Increment(ref posted);
                                    mailbox.Events.Add((mailbox.Subscription.UnreadCount, postedAt));
                                    Interlocked.Increment(ref attempt?.Answer == ExchangeAnswer.Ok ? ref acked : ref unacked);
                                }
                                finally
                                {
                                    mailbox.Gate.Release();
                                }
                            }
                            finally
                            {
                                Interlocked.Decrement(ref inFlight);
                            }
                        },
                        cancellationToken));
                }

                if (clock.Elapsed >= nextSample)
                {
                    queueMax = Math.Max(queueMax, await PendingAsync(queue, cancellationToken));
                    nextSample += TimeSpan.FromMilliseconds(500);
                }

                await Task.Delay(1, cancellationToken);
            }

            var offeredSeconds = clock.Elapsed.TotalSeconds;
            await Task.WhenAll(tasks);
            var trafficSeconds = clock.Elapsed.TotalSeconds;
            var queueEnd = await PendingAsync(queue, cancellationToken);
            queueMax = Math.Max(queueMax, queueEnd);
            var (cpu1, rss) = BenchSupport.ProcessUsage(child.Id);
            await WaitDrainedAsync(queue, TimeSpan.FromSeconds(60), cancellationToken);
            await Task.Delay(200, cancellationToken);

            // Match each event to the first accepted push for its device with that badge or a later one.
            var pushes = new Dictionary<string, List<(int Badge, DateTimeOffset At)>>(StringComparer.Ordinal);
            foreach (var r in apns.Requests)
            {
                if (r.Accepted && BadgeOf(r.Payload) is { } badge)
                {
                    if (!pushes.TryGetValue(r.Token, out var list))
                    {
                        pushes[r.Token] = list = [];
                    }

                    list.Add((badge, r.ReceivedAt));
                }
            }

            var latencies = new List<double>();
            var missing = 0;
            foreach (var m in mailboxes)
            {
                pushes.TryGetValue(m.Token, out var list);
                foreach (var (unread, start) in m.Events)
                {
                    var hit = list?.FirstOrDefault(p => p.Badge >= unread && p.At >= start - TimeSpan.FromMilliseconds(1));
                    if (hit is { At: var at } && hit.Value.Badge > 0)
                    {
                        latencies.Add(Math.Max(0, (at - start).TotalMilliseconds));
                    }
                    else
                    {
                        missing++;
                    }
                }
            }

            latencies.Sort();
            var result = new Result(
                rate, acked / trafficSeconds, posted, unacked, shed, latencies.Count, missing,
                BenchSupport.Percentile(latencies, 0.50), BenchSupport.Percentile(latencies, 0.95), BenchSupport.Percentile(latencies, 0.99), latencies.Count == 0 ? double.NaN : latencies[^1],
                queueMax, queueEnd, (cpu1 - cpu0).TotalSeconds / trafficSeconds, rss);
            await output.WriteLineAsync(string.Create(CultureInfo.InvariantCulture, $"e2e {rate:0}/s for {offeredSeconds:0.0} s: {posted} posted, {acked} acknowledged ({result.Achieved:0}/s), p50 {result.P50:0.0} ms, p95 {result.P95:0.0} ms, p99 {result.P99:0.0} ms, max {result.Max:0.0} ms, {missing} undelivered, queue max {queueMax}, CPU {result.Cores:0.00} cores, RSS {BenchSupport.Mib(rss)}, load {BenchSupport.LoadAverage()}"));
            return result;
        }
        finally
        {
            BenchCommand.TryDelete(directory);
        }
    }

    /// <summary>Notifications not yet finished (queued, being sent or waiting for a retry), from the gateway's <c>GET /v1/admin/queue</c>.</summary>
    internal static async Task<long> PendingAsync(HttpClient admin, CancellationToken cancellationToken)
    {
        using var json = System.Text.Json.JsonDocument.Parse(await admin.GetStringAsync("v1/admin/queue", cancellationToken));
        long pending = 0;
        foreach (var lane in json.RootElement.GetProperty("lanes").EnumerateObject())
        {
            foreach (var state in lane.Value.EnumerateObject())
            {
                if (state.Name is "queued" or "sending" or "retrying")
                {
                    pending += state.Value.GetInt64();
                }
            }
        }

        return pending;
    }

    private static async Task WaitDrainedAsync(HttpClient queue, TimeSpan limit, CancellationToken cancellationToken)
    {
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < limit && await PendingAsync(queue, cancellationToken) > 0)
        {
            await Task.Delay(50, cancellationToken);
        }
    }

    private static int? BadgeOf(string? payload)
    {
        if (payload is null)
        {
            return null;
        }

        using var json = System.Text.Json.JsonDocument.Parse(payload);
        return json.RootElement.TryGetProperty("aps", out var aps) && aps.TryGetProperty("badge", out var b) ? b.GetInt32() : null;
    }
}
