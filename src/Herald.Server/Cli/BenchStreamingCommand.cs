using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Reflection;
using Herald.Simulators.Apns;
using Herald.Simulators.Exchange.Streaming;

namespace Herald.Server.Cli;

/// <summary>
/// <c>herald bench streaming</c>: one Herald node (a child process, so its memory is measured alone) streams N
/// mailboxes (groups of 200 on N/200 mailbox servers) from the built-in fake Exchange, each with one APNs device; then
/// new mail is emitted at a steady rate to distinct mailboxes and each push's latency from the fake Exchange's emit to
/// the fake APNs' receipt is measured. Prints setup time, the node's resident memory, and latency percentiles.
/// </summary>
internal static class BenchStreamingCommand
{
    private const string Team = "BENCHTEAM1";
    private const string KeyId = "BENCHKEY01";
    private const string Topic = "org.herald.bench";
    private const string AdminKey = "hk_bench_admin_key_not_for_production";

    public static Command Create()
    {
        var mailboxes = new Option<int>("--mailboxes") { Description = "Streamed mailboxes (one device each).", DefaultValueFactory = _ => 20_000 };
        var mails = new Option<int>("--mails") { Description = "New messages emitted for the latency measurement.", DefaultValueFactory = _ => 2_000 };
        var rate = new Option<int>("--rate") { Description = "Messages emitted per second.", DefaultValueFactory = _ => 100 };
        var command = new Command("streaming", "Stream N mailboxes from the fake Exchange; measure the node's memory and emit-to-APNs latency.");
        command.Options.Add(mailboxes);
        command.Options.Add(mails);
        command.Options.Add(rate);
        command.SetAction(async (parse, cancellationToken) =>
        {
            var n = parse.GetValue(mailboxes);
            var m = parse.GetValue(mails);
            var r = parse.GetValue(rate);
            if (n is < 1 or > 200_000 || m < 1 || m > n || r is < 1 or > 10_000)
            {
                await Console.Error.WriteLineAsync("herald: --mailboxes 1..200000, --mails 1..mailboxes, --rate 1..10000.");
                return HeraldCli.UsageError;
            }

            return await RunAsync(n, m, r, cancellationToken);
        });
        return command;
    }

    private static string Address(int i) => string.Create(CultureInfo.InvariantCulture, $"user{i:D6}@bench.herald.test");

    private static string Token(int i) => i.ToString("x8", CultureInfo.InvariantCulture) + "00112233445566778899aabbccddeeff00112233445566778899aabb";

    private static async Task<int> RunAsync(int count, int mails, int rate, CancellationToken cancellationToken)
    {
        var directory = Path.Combine(Path.GetTempPath(), "herald-bench-streaming-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(directory);
        var backends = Enumerable.Range(1, Math.Max(1, (count + 199) / 200)).Select(i => string.Create(CultureInfo.InvariantCulture, $"MBX{i:D3}")).ToList();
        await using var apns = await FakeApnsServer.StartAsync(new FakeApnsServerOptions { MaxRecordedRequests = mails + 1000 }, cancellationToken: cancellationToken);
        var pem = apns.GenerateSigningKey(Team, KeyId, Topic);
        await using var exchange = await FakeEwsServer.StartAsync(new FakeEwsServerOptions { Backends = backends, MaxRecordedRequests = 0, Seed = 1 }, cancellationToken: cancellationToken);
        for (var i = 0; i < count; i++)
        {
            exchange.AddMailbox(Address(i), backends[i / 200]);
        }

        var port = FreePort();
        var baseUrl = string.Create(CultureInfo.InvariantCulture, $"http://127.0.0.1:{port}");
        using var node = StartNode(baseUrl, directory, apns.BaseUrl, pem);
        try
        {
            using var client = new HttpClient { BaseAddress = new Uri(baseUrl + "/"), Timeout = TimeSpan.FromSeconds(60) };
            client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", AdminKey);
            await WaitReadyAsync(client, node, cancellationToken);

            var setup = Stopwatch.StartNew();
            using (var put = await client.PutAsJsonAsync("v1/connectors/bench", new
            {
                kind = "ews",
                autodiscover = true,
                autodiscoverUrl = exchange.AutodiscoverUrl,
                auth = new { type = "basic", username = exchange.Options.BasicUsername, password = exchange.Options.BasicPassword },
            }, cancellationToken))
            {
                put.EnsureSuccessStatusCode();
            }

            await Parallel.ForAsync(0, count, new ParallelOptions { MaxDegreeOfParallelism = 8, CancellationToken = cancellationToken }, async (i, ct) =>
            {
                using var post = await client.PostAsJsonAsync("v1/registrations", new { platform = "apns", token = Token(i), topic = Topic, source = "ews-streaming", mailbox = Address(i), connector = "bench", style = "badge" }, ct);
                post.EnsureSuccessStatusCode();
            });
            var registered = setup.Elapsed;
            var deadline = Stopwatch.StartNew();
            while ((exchange.SubscriptionCount < count || exchange.OpenConnections < backends.Count) && deadline.Elapsed < TimeSpan.FromMinutes(15))
            {
                await Task.Delay(200, cancellationToken);
            }

            if (exchange.SubscriptionCount < count)
            {
                await Console.Error.WriteLineAsync(string.Create(CultureInfo.InvariantCulture, $"herald: only {exchange.SubscriptionCount} of {count} subscriptions after 15 minutes."));
                return HeraldCli.Failure;
            }

            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"setup: {count} registrations in {registered.TotalSeconds:0.0} s; {exchange.SubscriptionCount} subscriptions on {exchange.OpenConnections} connections after {setup.Elapsed.TotalSeconds:0.0} s"));
            await Task.Delay(TimeSpan.FromSeconds(5), cancellationToken); // settle
            node.Refresh();
            var idleRss = node.WorkingSet64;

            // Emit to distinct mailboxes, spread over every group, at a steady rate.
            var step = Math.Max(1, count / mails);
            var emitted = new Dictionary<string, DateTimeOffset>(mails);
            var interval = TimeSpan.FromSeconds(1.0 / rate);
            var clock = Stopwatch.StartNew();
            var clockStart = DateTimeOffset.UtcNow;
            for (var k = 0; k < mails; k++)
            {
                var i = (int)((k * (long)step + (k / Math.Max(1, count / step))) % count);
                var emit = exchange.EmitNewMail(Address(i), "bench", "Bench", "bench@bench.herald.test");
                emitted[Token(i)] = emit.EmittedAt;
                var due = interval * (k + 1);
                var wait = due - clock.Elapsed;
                if (wait > TimeSpan.Zero)
                {
                    await Task.Delay(wait, cancellationToken);
                }
            }

            var drain = Stopwatch.StartNew();
            while (apns.AcceptedCount < emitted.Count && drain.Elapsed < TimeSpan.FromMinutes(2))
            {
                await Task.Delay(50, cancellationToken);
            }

            node.Refresh();
            var peakRss = node.PeakWorkingSet64;
            var rss = node.WorkingSet64;
            var byEmit = apns.Requests
                .Where(q => q.Accepted && emitted.ContainsKey(q.Token))
                .GroupBy(q => q.Token)
                .Select(g => (Emitted: emitted[g.Key], Ms: (g.Min(q => q.ReceivedAt) - emitted[g.Key]).TotalMilliseconds))
                .ToList();
            var latencies = byEmit.Select(x => x.Ms).Order().ToList();
            PrintTimeline(byEmit, clockStart);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"memory: node RSS {idleRss / 1048576.0:0} MiB streaming, {rss / 1048576.0:0} MiB after the run, peak {peakRss / 1048576.0:0} MiB"));
            if (latencies.Count == 0)
            {
                await Console.Error.WriteLineAsync("herald: no push arrived.");
                return HeraldCli.Failure;
            }

            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"latency emit->APNs: {latencies.Count}/{emitted.Count} pushes at {rate}/s: p50 {Percentile(latencies, 0.50):0.0} ms, p95 {Percentile(latencies, 0.95):0.0} ms, p99 {Percentile(latencies, 0.99):0.0} ms, max {latencies[^1]:0.0} ms"));
            return latencies.Count == emitted.Count ? HeraldCli.Success : HeraldCli.Failure;
        }
        finally
        {
            if (!node.HasExited)
            {
                node.Kill(entireProcessTree: true);
                await node.WaitForExitAsync(CancellationToken.None);
            }

            try
            {
                Directory.Delete(directory, recursive: true);
            }
            catch (IOException)
            {
                // Left for the OS's temp cleanup.
            }
        }
    }

    /// <summary>
    /// The slowest push of each second of the run (by emit time), so a periodic stall (a poll interval, a pass of the
    /// worker, a checkpoint) shows as a pattern instead of hiding in the percentiles.
    /// </summary>
    private static void PrintTimeline(List<(DateTimeOffset Emitted, double Ms)> byEmit, DateTimeOffset start)
    {
        var line = new System.Text.StringBuilder("slowest push per second of emit (ms):");
        foreach (var second in byEmit.GroupBy(x => (int)Math.Floor((x.Emitted - start).TotalSeconds)).OrderBy(g => g.Key))
        {
            line.Append(CultureInfo.InvariantCulture, $" {second.Key}s:{second.Max(x => x.Ms):0}");
        }

        Console.WriteLine(line.ToString());
    }

    private static double Percentile(List<double> sorted, double p) => sorted[Math.Min(sorted.Count - 1, (int)Math.Ceiling(p * sorted.Count) - 1)];

    private static Process StartNode(string baseUrl, string directory, string apnsUrl, string pem)
    {
        var self = Environment.ProcessPath ?? "dotnet";
        var info = new ProcessStartInfo(self) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        if (Path.GetFileNameWithoutExtension(self).Equals("dotnet", StringComparison.OrdinalIgnoreCase))
        {
            info.ArgumentList.Add(Assembly.GetEntryAssembly()!.Location);
        }

        info.ArgumentList.Add("serve");
        info.ArgumentList.Add("--urls");
        info.ArgumentList.Add(baseUrl);
        var settings = new Dictionary<string, string>
        {
            ["Herald:Database"] = "sqlite:" + Path.Combine(directory, "herald.db"),
            ["Herald:AdminApiKey"] = AdminKey,
            ["Herald:RateLimits:PerKeyPerSecond"] = "0",
            ["Herald:RateLimits:PerAddressPerSecond"] = "0",
            ["Herald:Apns:ProductionUrl"] = apnsUrl,
            ["Herald:Apns:SandboxUrl"] = apnsUrl,
            ["Herald:Apns:TeamId"] = Team,
            ["Herald:Apns:KeyId"] = KeyId,
            ["Herald:Apns:PrivateKeyPem"] = pem,
            ["Herald:Apns:Topic"] = Topic,
            ["Logging:LogLevel:Default"] = "Warning",
        };
        foreach (var (key, value) in settings)
        {
            info.Environment[key.Replace(":", "__", StringComparison.Ordinal)] = value;
        }

        var process = Process.Start(info) ?? throw new InvalidOperationException("Cannot start the node.");
        process.OutputDataReceived += (_, _) => { };
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is { } line)
            {
                Console.Error.WriteLine("node: " + line);
            }
        };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return process;
    }

    private static async Task WaitReadyAsync(HttpClient client, Process node, CancellationToken cancellationToken)
    {
        for (var i = 0; i < 600; i++)
        {
            if (node.HasExited)
            {
                throw new InvalidOperationException("The node exited with code " + node.ExitCode.ToString(CultureInfo.InvariantCulture));
            }

            try
            {
                using var response = await client.GetAsync("healthz", cancellationToken);
                if (response.StatusCode == HttpStatusCode.OK)
                {
                    return;
                }
            }
            catch (HttpRequestException)
            {
            }

            await Task.Delay(100, cancellationToken);
        }

        throw new TimeoutException("The node did not become healthy.");
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
