using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Headers;
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
internal static class BenchIngest
{
    internal sealed record Result(string What, int Connections, long Ok, long Other, double Seconds, double Cores)
    {
        public double Rate => Ok / Seconds;
    }

    public static Command Create()
    {
        var duration = new Option<string>("--duration") { Description = "Each phase: 10s, 1m...", DefaultValueFactory = _ => "10s" };
        var connections = new Option<int>("--connections") { Description = "Concurrent keep-alive connections.", DefaultValueFactory = _ => 256 };
        var mailboxes = new Option<int>("--mailboxes") { Description = "Registrations Exchange posts for.", DefaultValueFactory = _ => 20_000 };
        var docs = new Option<bool>("--append-docs") { Description = "Append the table to docs/BENCHMARKS.md." };
        var command = new Command("ingest", "Highest rate of acknowledged EWS callbacks and of POST /v1/registrations.");
        command.Options.Add(duration);
        command.Options.Add(connections);
        command.Options.Add(mailboxes);
        command.Options.Add(docs);
        command.SetAction(async (parse, cancellationToken) =>
        {
            var c = parse.GetValue(connections);
            var m = parse.GetValue(mailboxes);
            if (c is < 1 or > 10_000 || m < c || m > 5_000_000 || !DemoCommand.TryParseDuration(parse.GetValue(duration), out var d))
            {
                await Console.Error.WriteLineAsync("herald: --connections 1..10000, --mailboxes ≥ connections, --duration like 10s.");
                return HeraldCli.UsageError;
            }

            var results = await RunAsync(d, c, m, Console.Out, cancellationToken);
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
        const string Notes = "Closed loop: each connection posts its next request when the previous one is answered; one post per mailbox at a time (as Exchange). "
            + "The gateway, the dispatcher (pushing every event to the fake APNs), the fake Exchange and the fake APNs share this process and its cores; CPU is the process's.";
        await output.WriteLineAsync();
        await output.WriteLineAsync(table);
        await output.WriteLineAsync(Notes);
        if (appendDocs)
        {
            var path = BenchSupport.AppendToDocs("Ingest (`herald bench ingest`)", table + Environment.NewLine + Notes + Environment.NewLine);
            await output.WriteLineAsync(path is null ? "docs/BENCHMARKS.md not found; not appended." : "appended to " + path);
        }
    }

    internal static async Task<IReadOnlyList<Result>> RunAsync(TimeSpan duration, int connections, int mailboxCount, TextWriter output, CancellationToken cancellationToken)
    {
        var directory = Path.Combine(Path.GetTempPath(), "herald-ingest-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(directory);
        try
        {
            await using var apns = await BenchCommand.StartFakeAsync(cancellationToken);
            var pem = apns.GenerateSigningKey(BenchCommand.Team, BenchCommand.KeyId, BenchCommand.Topic);
            var trust = Path.Combine(directory, "fake-apns.pem");
            await File.WriteAllTextAsync(trust, apns.CertificatePem, cancellationToken);
            await using var app = HeraldApp.Build(["--urls=http://127.0.0.1:0"], configure: b => b.Configuration.AddInMemoryCollection(BenchCommand.GatewaySettings(directory, apns.BaseUrl, pem, trust)));
            await app.Services.GetRequiredService<IStoreAdmin>().MigrateAsync(cancellationToken);
            var registrations = await BenchSupport.LoadRegistrationsAsync(app.Services.GetRequiredService<IHeraldStore>(), mailboxCount, BenchCommand.Topic, cancellationToken);
            await HeraldApp.StartAsync(app, cancellationToken);
            var baseUrl = app.Urls.First().TrimEnd('/');

            using var handler = new SocketsHttpHandler { MaxConnectionsPerServer = connections, PooledConnectionIdleTimeout = TimeSpan.FromMinutes(1) };
            await using var exchange = new FakeExchange(new HttpClient(handler, disposeHandler: false) { Timeout = TimeSpan.FromSeconds(30) }, TimeProvider.System);
            var subscriptions = registrations.Select(r => exchange.Subscribe(new Uri(baseUrl + "/ews/notify/" + r.Key), TimeSpan.FromMinutes(30))).ToArray();

            var results = new List<Result>
            {
                await ClosedLoopAsync("EWS SendNotification callbacks (acknowledged OK after commit)", connections, duration, async (worker, i, ct) =>
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
            results.Add(await ClosedLoopAsync("POST /v1/registrations (201 after commit)", connections, duration, async (worker, i, ct) =>
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

    private static async Task<Result> ClosedLoopAsync(string what, int connections, TimeSpan duration, Func<int, long, CancellationToken, Task<bool>> call, TextWriter output, CancellationToken cancellationToken)
    {
        // One second of warm-up, not counted.
        using (var warm = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken))
        {
            warm.CancelAfter(TimeSpan.FromSeconds(1));
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
