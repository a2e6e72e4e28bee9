using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Headers;
using System.Text.RegularExpressions;
using Herald.Core.Ports;
using Herald.Server.Hosting;
using Herald.Simulators.Exchange;
using Herald.Storage;

namespace Herald.Server.Cli;

/// <summary>
/// <c>herald bench ingest</c> (issue 10, item 4): the highest rate of acknowledged <c>SendNotification</c> callbacks
/// (each answered OK only after Herald's group commit on SQLite <c>synchronous=FULL</c>) from many concurrent
/// keep-alive connections, closed loop, with the dispatcher draining to the fake APNs at the same time; then the rate
/// of <c>POST /v1/registrations</c>. The gateway runs in this process.
/// </summary>
internal static partial class BenchIngest
{
    internal sealed record Result(string What, int Connections, long Ok, long Other, double Seconds, double Cores)
    {
        public double Rate => Ok / Seconds;
    }

    public static Command Create()
    {
        var duration = new Option<string>("--duration") { Description = "Each phase: 10s, 1m...", DefaultValueFactory = _ => "10s" };
        var connections = new Option<int>("--connections") { Description = "Concurrent keep-alive connections (callbacks in flight).", DefaultValueFactory = _ => 1024 };
        var mailboxes = new Option<int>("--mailboxes") { Description = "Registrations Exchange posts for.", DefaultValueFactory = _ => 20_000 };
        var warmUp = new Option<string>("--warm-up") { Description = "Untimed load before each phase (JIT and tiered compilation reach their steady state): 10s, 1m...", DefaultValueFactory = _ => "10s" };
        var docs = new Option<bool>("--append-docs") { Description = "Append the table to docs/BENCHMARKS.md." };
        var command = new Command("ingest", "Highest rate of acknowledged EWS callbacks and of POST /v1/registrations.");
        command.Options.Add(duration);
        command.Options.Add(connections);
        command.Options.Add(mailboxes);
        command.Options.Add(warmUp);
        command.Options.Add(docs);
        command.SetAction(async (parse, cancellationToken) =>
        {
            var c = parse.GetValue(connections);
            var m = parse.GetValue(mailboxes);
            if (c is < 1 or > 10_000 || m < c || m > 5_000_000 || !DemoCommand.TryParseDuration(parse.GetValue(duration), out var d)
                || !DemoCommand.TryParseDuration(parse.GetValue(warmUp), out var w))
            {
                await Console.Error.WriteLineAsync("herald: --connections 1..10000, --mailboxes ≥ connections, --duration and --warm-up like 10s.");
                return HeraldCli.UsageError;
            }

            var results = await RunAsync(d, c, m, Console.Out, cancellationToken, w);
            await PrintAsync(results, parse.GetValue(docs), Console.Out);
            return results.All(r => r.Ok > 0) ? HeraldCli.Success : HeraldCli.Failure;
        });
        return command;
    }

    internal static async Task PrintAsync(IReadOnlyList<Result> results, bool appendDocs, TextWriter output)
    {
        var table = BenchSupport.Table(
            ["what", "connections", "acknowledged", "other answers", "seconds", "rate/s", "CPU (cores)"],
            results.Select(r => (IReadOnlyList<string>)[r.What, r.Connections.ToString(CultureInfo.InvariantCulture), r.Ok.ToString("N0", CultureInfo.InvariantCulture), r.Other.ToString(CultureInfo.InvariantCulture), BenchSupport.F(r.Seconds, "0.0"), BenchSupport.F(r.Rate), BenchSupport.F(r.Cores, "0.00")]));
        const string Notes = "Closed loop: each connection posts its next request when the previous one is answered, after an untimed warm-up (`--warm-up`). "
            + "wrk row: the gateway is a child process (`herald serve`; the CPU column is its own), wrk (C, HTTP/1.1, one thread) posts one SendNotification "
            + "(Created, NewMail, Modified) to each mailbox's callback URL in turn, and only callbacks the gateway counted as accepted (stored, answered OK) are counted; "
            + "the fake APNs, in the bench process, receives every push. In-process rows: the gateway, the dispatcher (pushing every event to the fake APNs), "
            + "the fake Exchange (one post per mailbox at a time, as Exchange) and the fake APNs share one process and its cores; CPU is the process's.";
        await output.WriteLineAsync();
        await output.WriteLineAsync(table);
        await output.WriteLineAsync(Notes);
        if (appendDocs)
        {
            var path = BenchSupport.AppendToDocs("Ingest (`herald bench ingest`)", table + Environment.NewLine + Notes + Environment.NewLine);
            await output.WriteLineAsync(path is null ? "docs/BENCHMARKS.md not found; not appended." : "appended to " + path);
        }
    }

    internal static async Task<IReadOnlyList<Result>> RunAsync(TimeSpan duration, int connections, int mailboxCount, TextWriter output, CancellationToken cancellationToken, TimeSpan? warmUp = null)
    {
        var warm = warmUp ?? TimeSpan.FromSeconds(1);
        var results = new List<Result>();
        if (BenchSupport.Which("wrk") is { } wrk)
        {
            results.Add(await WrkPhaseAsync(wrk, duration, warm, connections, mailboxCount, output, cancellationToken));
        }
        else
        {
            await output.WriteLineAsync("wrk is not on PATH (Debian: apt-get install wrk): the child-process row is skipped.");
        }

        results.AddRange(await InProcessAsync(duration, warm, connections, mailboxCount, output, cancellationToken));
        return results;
    }

    private static async Task<IReadOnlyList<Result>> InProcessAsync(TimeSpan duration, TimeSpan warm, int connections, int mailboxCount, TextWriter output, CancellationToken cancellationToken)
    {
        var directory = Path.Combine(Path.GetTempPath(), "herald-ingest-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(directory);
        try
        {
            var (apns, settings) = await BenchCommand.StartFakeForGatewayAsync(directory, cancellationToken);
            await using var apnsScope = apns;
            await using var app = HeraldApp.Build(["--urls=http://127.0.0.1:0"], configure: b => b.Configuration.AddInMemoryCollection(settings));
            await app.Services.GetRequiredService<IStoreAdmin>().MigrateAsync(cancellationToken);
            var registrations = await BenchSupport.LoadRegistrationsAsync(app.Services.GetRequiredService<IHeraldStore>(), mailboxCount, BenchCommand.Topic, cancellationToken);
            await HeraldApp.StartAsync(app, cancellationToken);
            var baseUrl = app.Urls.First().TrimEnd('/');

            using var handler = new SocketsHttpHandler { MaxConnectionsPerServer = connections, PooledConnectionIdleTimeout = TimeSpan.FromMinutes(1) };
            await using var exchange = new FakeExchange(new HttpClient(handler, disposeHandler: false) { Timeout = TimeSpan.FromSeconds(30) }, TimeProvider.System);
            var subscriptions = registrations.Select(r => exchange.Subscribe(new Uri(baseUrl + "/ews/notify/" + r.Key), TimeSpan.FromMinutes(30))).ToArray();

            var results = new List<Result>
            {
                await ClosedLoopAsync("EWS SendNotification callbacks from the fake Exchange, in process (acknowledged OK after commit)", connections, duration, warm, async (worker, i, ct) =>
                {
                    // Worker w owns mailboxes w, w + C, w + 2C...: one post per mailbox at a time.
                    var per = subscriptions.Length / connections;
                    var attempt = await exchange.DeliverNewMailAsync(subscriptions[worker + (connections * (int)(i % per))], ct);
                    return attempt?.Answer == ExchangeAnswer.Ok;
                }, output, cancellationToken),
            };

            using var http = new HttpClient(handler, disposeHandler: false) { BaseAddress = new Uri(baseUrl + "/"), Timeout = TimeSpan.FromSeconds(30) };
            http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", BenchCommand.AdminKey);
            long next = 0x10000000L;
            results.Add(await ClosedLoopAsync("POST /v1/registrations, in process (201 after commit)", connections, duration, warm, async (worker, i, ct) =>
            {
                var token = BenchSupport.DeviceToken(Interlocked.Increment(ref next));
                using var response = await http.PostAsJsonAsync("v1/registrations", new { platform = "apns", token, source = "ews-push", style = "badge" }, ct);
                return response.StatusCode == System.Net.HttpStatusCode.Created;
            }, output, cancellationToken));
            await app.StopAsync(CancellationToken.None);
            return results;
        }
        finally
        {
            BenchCommand.TryDelete(directory);
        }
    }

    /// <summary>
    /// EWS callbacks from wrk (C and LuaJIT, HTTP/1.1 keep-alive) to the gateway as a child process, so neither the load
    /// generator's nor the fake APNs' work is charged to the gateway's CPU. Every request goes to the next mailbox's
    /// callback URL (so the connections' posts are for different mailboxes, as from Exchange) with one SendNotification
    /// body (each registration binds its subscription id on first contact). A callback counts only if the gateway's own
    /// counter says it was stored and accepted, whatever wrk saw.
    /// </summary>
    private static async Task<Result> WrkPhaseAsync(string wrk, TimeSpan duration, TimeSpan warmUp, int connections, int mailboxCount, TextWriter output, CancellationToken cancellationToken)
    {
        const string What = "EWS SendNotification callbacks from wrk to `herald serve` (acknowledged OK after commit)";
        var directory = Path.Combine(Path.GetTempPath(), "herald-ingest-wrk-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(directory);
        try
        {
            var (apns, settings) = await BenchCommand.StartFakeForGatewayAsync(directory, cancellationToken);
            await using var apnsScope = apns;
            var (child, registrations) = await BenchChildGateway.StartLoadedAsync(settings, mailboxCount, cancellationToken);
            await using var childScope = child;
            var paths = Path.Combine(directory, "paths.txt");
            await File.WriteAllLinesAsync(paths, registrations.Select(r => "/ews/notify/" + r.Key), cancellationToken);
            var body = Path.Combine(directory, "send-notification.xml");
            using (var client = new HttpClient())
            {
                await using var exchange = new FakeExchange(client, TimeProvider.System);
                await File.WriteAllBytesAsync(body, exchange.Subscribe(new Uri(child.BaseUrl + "/ews/notify/x"), TimeSpan.FromMinutes(30)).NewMailBody(1).ToArray(), cancellationToken);
            }

            var script = Path.Combine(directory, "ews-callbacks.lua");
            await File.WriteAllTextAsync(script, WrkScript, cancellationToken);
            using var scrape = new HttpClient { BaseAddress = new Uri(child.BaseUrl + "/"), Timeout = TimeSpan.FromSeconds(30) };
            string[] Arguments(TimeSpan d) =>
            [
                "-t", "1", "-c", connections.ToString(CultureInfo.InvariantCulture),
                "-d", Math.Max(1, (int)Math.Round(d.TotalSeconds)).ToString(CultureInfo.InvariantCulture) + "s",
                "--timeout", "30s", "-s", script, child.BaseUrl, "--", paths, body,
            ];

            // Warm-up run (untimed), then the measured run, with the gateway's CPU and its own count around it.
            await BenchSupport.RunProcessAsync(wrk, Arguments(warmUp), directory, warmUp + TimeSpan.FromMinutes(2), cancellationToken);
            var (accepted0, unsubscribed0) = await CallbackCountsAsync(scrape, cancellationToken);
            var pushes0 = apns.AcceptedCount;
            var (cpu0, _) = BenchSupport.ProcessUsage(child.Id);
            var clock = System.Diagnostics.Stopwatch.StartNew();
            var (exit, text) = await BenchSupport.RunProcessAsync(wrk, Arguments(duration), directory, duration + TimeSpan.FromMinutes(2), cancellationToken);
            var seconds = clock.Elapsed.TotalSeconds;
            var (cpu1, rss) = BenchSupport.ProcessUsage(child.Id);
            var (accepted1, unsubscribed1) = await CallbackCountsAsync(scrape, cancellationToken);
            var accepted = accepted1 - accepted0;
            var done = WrkRequests().Match(text);
            if (exit != 0 || !done.Success)
            {
                await output.WriteLineAsync("wrk failed: " + text.Trim().ReplaceLineEndings(" ")[..Math.Min(300, text.Trim().Length)]);
            }

            // wrk's own clock when it printed one; else the wall clock around it.
            if (done.Success && double.TryParse(done.Groups[2].Value, NumberStyles.Float, CultureInfo.InvariantCulture, out var wrkSeconds) && done.Groups[3].Value == "s")
            {
                seconds = wrkSeconds;
            }

            var requests = done.Success ? long.Parse(done.Groups[1].Value, CultureInfo.InvariantCulture) : 0;
            var cores = (cpu1 - cpu0).TotalSeconds / clock.Elapsed.TotalSeconds;
            var result = new Result(What, connections, accepted, Math.Max(0, requests - accepted) + (unsubscribed1 - unsubscribed0), seconds, cores);
            await output.WriteLineAsync(string.Create(CultureInfo.InvariantCulture,
                $"{What}: {accepted:N0} accepted ({requests:N0} answered to wrk) in {seconds:0.0} s = {result.Rate:0}/s, gateway CPU {cores:0.00} cores, RSS {BenchSupport.Mib(rss)}, pushes accepted by the fake APNs meanwhile {apns.AcceptedCount - pushes0:N0}, load {BenchSupport.LoadAverage()}"));
            return result;
        }
        finally
        {
            BenchCommand.TryDelete(directory);
        }
    }

    /// <summary>wrk's script: each request is for the next mailbox (one counter per wrk thread), one fixed body.</summary>
    private const string WrkScript = """
        local paths, body, n = {}, nil, 0
        local headers = { ["Content-Type"] = "text/xml; charset=utf-8",
          ["SOAPAction"] = '"http://schemas.microsoft.com/exchange/services/2006/messages/SendNotification"' }
        function init(args)
          for line in io.lines(args[1]) do paths[#paths + 1] = line end
          local f = assert(io.open(args[2], "rb"))
          body = f:read("*a")
          f:close()
        end
        function request()
          n = n + 1
          return wrk.format("POST", paths[(n % #paths) + 1], headers, body)
        end
        """;

    /// <summary>The gateway's <c>herald_source_callbacks_total</c>, summed over sources, by verdict.</summary>
    private static async Task<(long Accepted, long Unsubscribed)> CallbackCountsAsync(HttpClient http, CancellationToken cancellationToken)
    {
        var text = await http.GetStringAsync("metrics", cancellationToken);
        long accepted = 0, unsubscribed = 0;
        foreach (var line in text.Split('\n'))
        {
            if (!line.StartsWith("herald_source_callbacks_total{", StringComparison.Ordinal))
            {
                continue;
            }

            var value = (long)double.Parse(line[(line.LastIndexOf(' ') + 1)..], CultureInfo.InvariantCulture);
            if (line.Contains("verdict=\"accepted\"", StringComparison.Ordinal))
            {
                accepted += value;
            }
            else
            {
                unsubscribed += value;
            }
        }

        return (accepted, unsubscribed);
    }

    [GeneratedRegex(@"(\d+) requests in ([0-9.]+)(ms|s|m),")]
    private static partial Regex WrkRequests();

    private static async Task<Result> ClosedLoopAsync(string what, int connections, TimeSpan duration, TimeSpan warmUp, Func<int, long, CancellationToken, Task<bool>> call, TextWriter output, CancellationToken cancellationToken)
    {
        // Warm-up, not counted.
        using (var warm = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken))
        {
            warm.CancelAfter(warmUp);
            await LoopAsync(connections, call, () => { }, () => { }, warm.Token);
        }

        long ok = 0, other = 0;
        var (cpu0, _) = BenchSupport.ProcessUsage();
        var clock = Stopwatch.StartNew();
        using (var run = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken))
        {
            run.CancelAfter(duration);
            await LoopAsync(connections, call, () => Interlocked.Increment(ref ok), () => Interlocked.Increment(ref other), run.Token);
        }

        var seconds = clock.Elapsed.TotalSeconds;
        var cores = (BenchSupport.ProcessUsage().Cpu - cpu0).TotalSeconds / seconds;
        var result = new Result(what, connections, ok, other, seconds, cores);
        await output.WriteLineAsync(string.Create(CultureInfo.InvariantCulture, $"{what}: {ok:N0} in {seconds:0.0} s = {result.Rate:0}/s ({other} other answers), CPU {cores:0.00} cores, load {BenchSupport.LoadAverage()}"));
        return result;
    }

    private static Task LoopAsync(int connections, Func<int, long, CancellationToken, Task<bool>> call, Action ok, Action other, CancellationToken stop)
        => Task.WhenAll(Enumerable.Range(0, connections).Select(worker => Task.Run(async () =>
        {
            for (long i = worker * 1_000_000L; !stop.IsCancellationRequested; i++)
            {
                try
                {
                    if (await call(worker, i, stop))
                    {
                        ok();
                    }
                    else
                    {
                        other();
                    }
                }
                catch (OperationCanceledException) when (stop.IsCancellationRequested)
                {
                    return;
                }
                catch (HttpRequestException)
                {
                    other();
                }
            }
        })));
}
