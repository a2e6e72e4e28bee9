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
/// <c>herald bench scale</c> (issue 10, item 3): loads N EWS-push registrations into a fresh SQLite file through the
/// store's bulk port (batches of 10,000), then starts the gateway on that file as a child process
/// (<c>dotnet herald.dll serve</c>) and reports its start-up time to <c>/readyz</c>, its resident memory, and the p99
/// of registration lookups: <c>GET /v1/registrations/{id}</c> and the EWS callback path (<c>POST /ews/notify/{key}</c>:
/// callback-key lookup, plus the durable commit every acknowledged callback needs).
/// </summary>
internal static class BenchScale
{
    internal sealed record Result(int Registrations, double LoadSeconds, long FileBytes, double StartSeconds, long RssReady, long RssAfter, double GetP50, double GetP99, double CallbackP50, double CallbackP99);

    public static Command Create()
    {
        var count = new Option<int>("--registrations") { Description = "Registrations to load.", DefaultValueFactory = _ => 1_000_000 };
        var lookups = new Option<int>("--lookups") { Description = "Timed GET lookups (callbacks: a fifth of it).", DefaultValueFactory = _ => 10_000 };
        var docs = new Option<bool>("--append-docs") { Description = "Append the table to docs/BENCHMARKS.md." };
        var command = new Command("scale", "Load N registrations, restart the gateway on that file, and report memory, start-up and lookup p99.");
        command.Options.Add(count);
        command.Options.Add(lookups);
        command.Options.Add(docs);
        command.SetAction(async (parse, cancellationToken) =>
        {
            var n = parse.GetValue(count);
            var l = parse.GetValue(lookups);
            if (n is < 1 or > 50_000_000 || l is < 10 or > 1_000_000)
            {
                await Console.Error.WriteLineAsync("herald: --registrations must be 1..50000000 and --lookups 10..1000000.");
                return HeraldCli.UsageError;
            }

            var result = await RunAsync(n, l, Console.Out, cancellationToken);
            await PrintAsync(result, parse.GetValue(docs), Console.Out);
            return HeraldCli.Success;
        });
        return command;
    }

    internal static async Task PrintAsync(Result r, bool appendDocs, TextWriter output)
    {
        var table = BenchSupport.Table(
            ["registrations", "load (bulk, batches of 10,000)", "database", "start-up to /readyz", "RSS ready / after lookups", "GET /v1/registrations/{id} p50 / p99", "POST /ews/notify/{key} p50 / p99"],
            [[
                r.Registrations.ToString("N0", CultureInfo.InvariantCulture),
                $"{r.LoadSeconds:0.0} s ({r.Registrations / r.LoadSeconds:0}/s)",
                BenchSupport.Mib(r.FileBytes),
                $"{r.StartSeconds:0.00} s",
                $"{BenchSupport.Mib(r.RssReady)} / {BenchSupport.Mib(r.RssAfter)}",
                $"{r.GetP50:0.000} / {r.GetP99:0.000} ms",
                $"{r.CallbackP50:0.000} / {r.CallbackP99:0.000} ms",
            ]]);
        const string Notes = "The gateway is a child process (`dotnet herald.dll serve`) on the loaded file; lookups are sequential over loopback HTTP/1.1 from the bench process, "
            + "so each includes a round trip through Kestrel and the client; the callback path includes the group commit (`synchronous=FULL`) Herald makes before answering OK.";
        await output.WriteLineAsync();
        await output.WriteLineAsync(table);
        await output.WriteLineAsync(Notes);
        if (appendDocs)
        {
            var path = BenchSupport.AppendToDocs("Scale (`herald bench scale`)", table + Environment.NewLine + Notes + Environment.NewLine);
            await output.WriteLineAsync(path is null ? "docs/BENCHMARKS.md not found; not appended." : "appended to " + path);
        }
    }

    internal static async Task<Result> RunAsync(int count, int lookups, TextWriter output, CancellationToken cancellationToken, TimeSpan? warmUp = null)
    {
        var directory = Path.Combine(Path.GetTempPath(), "herald-scale-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(directory);
        try
        {
            var (apns, settings) = await BenchCommand.StartFakeForGatewayAsync(directory, cancellationToken);
            await using var apnsScope = apns;

            (string Id, string Token, string Key)[] registrations;
            var load = Stopwatch.StartNew();
            await using (var loader = HeraldApp.Build(["--urls=http://127.0.0.1:0"], configure: b => b.Configuration.AddInMemoryCollection(settings)))
            {
                await loader.Services.GetRequiredService<IStoreAdmin>().MigrateAsync(cancellationToken);
                var step = Math.Max(10_000, count / 10);
                registrations = await BenchSupport.LoadRegistrationsAsync(
                    loader.Services.GetRequiredService<IHeraldStore>(), count, BenchCommand.Topic, cancellationToken, done =>
                    {
                        if (done % step == 0 || done == count)
                        {
                            output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  loaded {done:N0} in {load.Elapsed.TotalSeconds:0.0} s"));
                        }
                    });
            }

            var loadSeconds = load.Elapsed.TotalSeconds;
            var file = Path.Combine(directory, "herald.db");
            var bytes = new FileInfo(file).Length + (File.Exists(file + "-wal") ? new FileInfo(file + "-wal").Length : 0);

            await using var child = await BenchChildGateway.StartAsync(settings, cancellationToken);
            var baseUrl = child.BaseUrl;
            using var http = new HttpClient { BaseAddress = new Uri(baseUrl + "/"), Timeout = TimeSpan.FromSeconds(30) };
            http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", BenchCommand.AdminKey);
            var startSeconds = child.StartSeconds;
            var rssReady = BenchSupport.ProcessUsage(child.Id).ResidentBytes;
            await output.WriteLineAsync(string.Create(CultureInfo.InvariantCulture, $"  restarted on {count:N0} registrations: /readyz after {startSeconds:0.00} s, RSS {BenchSupport.Mib(rssReady)}"));

            var random = new Random(10);
            async Task<List<double>> TimeAsync(int n, Func<(string Id, string Token, string Key), Task> call)
            {
                var times = new List<double>(n);
                for (var i = 0; i < n; i++)
                {
                    var r = registrations[random.Next(registrations.Length)];
                    var t = Stopwatch.GetTimestamp();
                    await call(r);
                    times.Add(Stopwatch.GetElapsedTime(t).TotalMilliseconds);
                }

                times.Sort();
                return times;
            }

            async Task WarmAsync(Func<(string Id, string Token, string Key), Task> call)
            {
                var warm = Stopwatch.StartNew();
                for (var i = 0; i < 500 || (warm.Elapsed < (warmUp ?? TimeSpan.FromSeconds(3)) && i < 100_000); i++)
                {
                    await call(registrations[random.Next(registrations.Length)]);
                }
            }

            async Task Get((string Id, string Token, string Key) r)
            {
                using var response = await http.GetAsync("v1/registrations/" + r.Id, cancellationToken);
                if (!response.IsSuccessStatusCode)
                {
                    throw new InvalidOperationException($"GET /v1/registrations/{r.Id} answered {(int)response.StatusCode}.");
                }
            }

            // Warm-up, not timed: a freshly started gateway (and this client) JIT-compile the path, then recompile the hot
            // methods optimised (tiered compilation) over the first seconds; the timed lookups measure the steady state.
            await WarmAsync(Get);
            var gets = await TimeAsync(lookups, Get);

            using var handler = new SocketsHttpHandler();
            await using var exchange = new FakeExchange(new HttpClient(handler, disposeHandler: false) { Timeout = TimeSpan.FromSeconds(30) }, TimeProvider.System);
            async Task Callback((string Id, string Token, string Key) r)
            {
                var subscription = exchange.Subscribe(new Uri(baseUrl + "/ews/notify/" + r.Key), TimeSpan.FromMinutes(30));
                var attempt = await exchange.DeliverNewMailAsync(subscription, cancellationToken);
                if (attempt?.Answer != ExchangeAnswer.Ok)
                {
                    throw new InvalidOperationException($"POST /ews/notify/<key> answered {attempt?.Answer}.");
                }
            }

            await WarmAsync(Callback);
            var callbacks = await TimeAsync(Math.Max(10, lookups / 5), Callback);
            var rssAfter = BenchSupport.ProcessUsage(child.Id).ResidentBytes;
            return new Result(
                count, loadSeconds, bytes, startSeconds, rssReady, rssAfter,
                BenchSupport.Percentile(gets, 0.5), BenchSupport.Percentile(gets, 0.99), BenchSupport.Percentile(callbacks, 0.5), BenchSupport.Percentile(callbacks, 0.99));
        }
        finally
        {
            BenchCommand.TryDelete(directory);
        }
    }
}
