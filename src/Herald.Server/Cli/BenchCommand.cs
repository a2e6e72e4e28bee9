using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using Herald.Core.Notifications;
using Herald.Core.Pipeline;
using Herald.Core.Ports;
using Herald.Core.Registrations;
using Herald.Server.Hosting;
using Herald.Simulators.Apns;

namespace Herald.Server.Cli;

/// <summary>
/// <c>herald bench dispatch</c> (CONTRACT §1): N badge notifications for N devices are put in a fresh durable
/// store first, then drained through the normal dispatcher to an APNs endpoint; prints
/// <c>dispatch: N sent in S s = R/s</c> (with <c>--warm-up W</c>, N is what was sent after the W untimed ones). Any APNs endpoint can be the common target of a side-by-side run;
/// without <c>--apns-url</c> the built-in fake APNs (TLS, HTTP/2) is started. With <c>--peers</c> the same
/// fake then takes the same N requests from h2load and the Node.js peers (see <see cref="BenchPeers"/>).
/// </summary>
internal static class BenchCommand
{
    internal const string Team = "BENCHTEAM1";
    internal const string KeyId = "BENCHKEY01";
    internal const string Topic = "org.herald.bench";

    public static Command Create()
    {
        var bench = new Command("bench", "Reproducible performance runs.");
        var url = new Option<string?>("--apns-url") { Description = "APNs endpoint (https://host:port, or http:// for HTTP/2 cleartext). Default: a built-in fake APNs over TLS." };
        var count = new Option<int?>("--count") { Description = "Notifications (one per device). Default 100,000; 200,000 with --peers." };
        var trust = new Option<string?>("--trust-cert") { Description = "PEM certificate of the endpoint to trust explicitly (self-signed peers)." };
        var peers = new Option<bool>("--peers") { Description = "Also send the same N requests to the same fake APNs with h2load, @parse/node-apn and apns2, and print one table." };
        var docs = new Option<bool>("--append-docs") { Description = "Append the table, machine, versions and command to docs/BENCHMARKS.md." };
        var warmUp = new Option<int?>("--warm-up") { Description = "Untimed sends before the clock starts, for every sender of the run (a gateway is a long-running process). Default 0; 20,000 with --peers." };
        var allocations = new Option<bool>("--allocations") { Description = "Also print the types the drain allocated most, from the runtime's sampled allocation events." };
        var dispatch = new Command("dispatch", "Enqueue N badge notifications in a fresh store, then drain them to an APNs endpoint.");
        dispatch.Options.Add(url);
        dispatch.Options.Add(count);
        dispatch.Options.Add(trust);
        dispatch.Options.Add(peers);
        dispatch.Options.Add(docs);
        dispatch.Options.Add(allocations);
        dispatch.Options.Add(warmUp);
        dispatch.SetAction(async (parse, cancellationToken) =>
        {
            var withPeers = parse.GetValue(peers);
            var n = parse.GetValue(count) ?? (withPeers ? 200_000 : 100_000);
            if (n is < 1 or > 10_000_000)
            {
                await Console.Error.WriteLineAsync("herald: --count must be 1..10000000.");
                return HeraldCli.UsageError;
            }

            var warm = parse.GetValue(warmUp) ?? (withPeers ? 20_000 : 0);
            if (warm is < 0 or > 1_000_000)
            {
                await Console.Error.WriteLineAsync("herald: --warm-up must be 0..1000000.");
                return HeraldCli.UsageError;
            }

            if (withPeers)
            {
                if (parse.GetValue(url) is not null)
                {
                    await Console.Error.WriteLineAsync("herald: --peers runs every sender against the built-in fake APNs; leave out --apns-url.");
                    return HeraldCli.UsageError;
                }

                return await BenchPeers.RunAsync(n, parse.GetValue(docs), Console.Out, cancellationToken, warmUp: warm);
            }

            var result = await DispatchAsync(parse.GetValue(url), n, parse.GetValue(trust), Console.Out, cancellationToken, allocations: parse.GetValue(allocations), warmUp: warm);
            return result.Sent == n ? HeraldCli.Success : HeraldCli.Failure;
        });
        bench.Subcommands.Add(dispatch);
        bench.Subcommands.Add(BenchStreamingCommand.Create());
        bench.Subcommands.Add(BenchE2e.Create());
        bench.Subcommands.Add(BenchScale.Create());
        bench.Subcommands.Add(BenchIngest.Create());
        return bench;
    }

    /// <summary>The result of one Herald drain: notifications sent and the seconds the drain took.</summary>
    internal sealed record DrainResult(long Sent, long Failed, double Seconds, double EnqueueSeconds, TimeSpan Cpu, long Allocated);

    /// <summary>Starts a fake APNs for benchmarks (TLS, HTTP/2, no request recording).</summary>
    internal static Task<FakeApnsServer> StartFakeAsync(CancellationToken cancellationToken, bool record = false)
        => FakeApnsServer.StartAsync(new FakeApnsServerOptions { UseTls = true, RecordRequests = record, MaxRecordedRequests = 2_000_000 }, cancellationToken: cancellationToken);

    private static long Done(DispatchCounters c) => c.Sent + c.Failed + c.Dead + c.Expired;

    internal static async Task<DrainResult> DispatchAsync(string? apnsUrl, int count, string? trustCert, TextWriter output, CancellationToken cancellationToken, FakeApnsServer? sharedFake = null, bool allocations = false, int warmUp = 0)
    {
        var directory = Path.Combine(Path.GetTempPath(), "herald-bench-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(directory);
        FakeApnsServer? ownFake = null;
        try
        {
            string pem;
            if (apnsUrl is null)
            {
                var fake = sharedFake ?? (ownFake = await StartFakeAsync(cancellationToken));
                pem = fake.GenerateSigningKey(Team, KeyId, Topic);
                apnsUrl = fake.BaseUrl;
                trustCert = Path.Combine(directory, "fake-apns.pem");
                await File.WriteAllTextAsync(trustCert, fake.CertificatePem, cancellationToken);
            }
            else
            {
                using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
                pem = key.ExportPkcs8PrivateKeyPem();
            }

            await using var app = HeraldApp.Build(["--urls=http://127.0.0.1:0"], configure: b => b.Configuration.AddInMemoryCollection(GatewaySettings(directory, apnsUrl, pem, trustCert)));

            // Fill the queue before the dispatcher starts, so the run measures the drain alone.
            var store = app.Services.GetRequiredService<IStoreAdmin>();
            await store.MigrateAsync(cancellationToken);
            var queue = app.Services.GetRequiredService<INotificationQueue>();
            var content = new NotificationContent { Kind = PushKind.Badge, Badge = 1 };
            var expires = DateTimeOffset.UtcNow.AddHours(1);
            var fill = Stopwatch.StartNew();
            var batch = new List<NewNotification>(5000);
            var total = warmUp + count;
            for (var i = 0; i < total; i++)
            {
                batch.Add(new NewNotification
                {
                    TenantId = "default",
                    Lane = Lane.Priority,
                    Platform = Platform.Apns,
                    Token = i < warmUp ? BenchSupport.WarmUpDeviceToken(i) : BenchSupport.DeviceToken(i - warmUp), // the warm-up rows first
                    Topic = Topic,
                    Content = content,
                    ExpiresAt = expires,
                });
                if (batch.Count == 5000 || i == total - 1)
                {
                    await queue.EnqueueAsync(batch, cancellationToken);
                    batch.Clear();
                }
            }

            var enqueueSeconds = fill.Elapsed.TotalSeconds;
            await output.WriteLineAsync(string.Create(CultureInfo.InvariantCulture, $"enqueue: {total} ({warmUp} warm-up + {count}) in {enqueueSeconds:0.00} s = {total / enqueueSeconds:0}/s"));

            var dispatcher = app.Services.GetRequiredService<Dispatcher>();
            var c = dispatcher.Counters;
            var limit = Stopwatch.StartNew();
            if (warmUp > 0)
            {
                await HeraldApp.StartAsync(app, cancellationToken);
                while (Done(c) < warmUp && limit.Elapsed < TimeSpan.FromMinutes(30))
                {
                    await Task.Delay(1, cancellationToken);
                }
            }

            // The clock starts once the warm-up rows are done; without a warm-up, before the host starts, so that all N rows
            // are timed (CONTRACT §1's line: N sent in S s), the dispatcher's start included as before.
            var sentBefore = c.Sent;
            var doneBefore = Done(c);
            var cpuBefore = BenchSupport.ProcessUsage().Cpu;
            using var sampler = allocations ? new BenchAllocations() : null;
            sampler?.Start();
            var allocatedBefore = GC.GetTotalAllocatedBytes();
            var gen0Before = GC.CollectionCount(0);
            var gen2Before = GC.CollectionCount(2);
            var pausedBefore = GC.GetTotalPauseDuration();
            var clock = Stopwatch.StartNew();
            if (warmUp == 0)
            {
                await HeraldApp.StartAsync(app, cancellationToken);
            }

            while (Done(c) < total && limit.Elapsed < TimeSpan.FromMinutes(30))
            {
                await Task.Delay(1, cancellationToken);
            }

            var seconds = clock.Elapsed.TotalSeconds;
            var cpu = BenchSupport.ProcessUsage().Cpu - cpuBefore;
            var allocated = GC.GetTotalAllocatedBytes() - allocatedBefore;
            sampler?.Stop();
            if (sampler is not null)
            {
                await output.WriteLineAsync("allocations of the drain by type (sampled; share of bytes, bytes a notification):");
                await output.WriteAsync(sampler.Report(Math.Max(1, c.Sent - sentBefore)));
            }

            // Timed: the rows done after the warm-up (the counters move a completed batch at a time, so the clock may start a
            // few hundred rows past it). Without a warm-up this is CONTRACT §1's line exactly: N sent in S s = R/s.
            var measured = Math.Max(1, Done(c) - doneBefore);
            var sent = c.Sent - sentBefore;
            var rate = measured / seconds;
            var after = warmUp > 0 ? $"; timed after {doneBefore} warm-up" : string.Empty;
            await output.WriteLineAsync(string.Create(CultureInfo.InvariantCulture, $"dispatch: {sent} sent in {seconds:0.00} s = {sent / seconds:0}/s (failed {c.Failed}, retried {c.Retried}, dead {c.Dead}, expired {c.Expired}{after})"));
            await output.WriteLineAsync(string.Create(
                CultureInfo.InvariantCulture,
                $"dispatch process (Herald and, by default, the fake APNs): CPU {cpu.TotalSeconds:0.0} s ({cpu.TotalMicroseconds / measured:0} µs a notification), allocated {allocated / measured:0} bytes a notification, GCs gen0 {GC.CollectionCount(0) - gen0Before}, gen2 {GC.CollectionCount(2) - gen2Before}, paused {(GC.GetTotalPauseDuration() - pausedBefore).TotalMilliseconds:0} ms"));
            await app.StopAsync(CancellationToken.None);
            var failed = c.Failed + c.Dead + c.Expired;
            return new DrainResult(c.Sent - warmUp, failed, count / rate, enqueueSeconds, cpu * count / measured, allocated * count / measured);
        }
        finally
        {
            if (ownFake is not null)
            {
                await ownFake.DisposeAsync();
            }

            TryDelete(directory);
        }
    }

    /// <summary>
    /// Starts a fake APNs for a bench run, gives Herald a signing key for it, writes its certificate into
    /// <paramref name="directory"/> and returns the gateway settings pointing at it (a fresh SQLite file in the same folder).
    /// </summary>
    internal static async Task<(FakeApnsServer Fake, Dictionary<string, string?> Settings)> StartFakeForGatewayAsync(string directory, CancellationToken cancellationToken, bool record = false)
    {
        var apns = await StartFakeAsync(cancellationToken, record);
        var pem = apns.GenerateSigningKey(Team, KeyId, Topic);
        var trust = Path.Combine(directory, "fake-apns.pem");
        await File.WriteAllTextAsync(trust, apns.CertificatePem, cancellationToken);
        return (apns, GatewaySettings(directory, apns.BaseUrl, pem, trust));
    }

    /// <summary>The gateway settings every bench shares: a fresh SQLite file, no rate limits, APNs pointed at <paramref name="apnsUrl"/>.</summary>
    internal static Dictionary<string, string?> GatewaySettings(string directory, string apnsUrl, string pem, string? trustCert) => new()
    {
        ["Herald:Database"] = "sqlite:" + Path.Combine(directory, "herald.db"),
        ["Herald:AdminApiKey"] = AdminKey,
        ["Herald:RateLimits:PerKeyPerSecond"] = "0", // one local driver makes all the calls
        ["Herald:RateLimits:PerAddressPerSecond"] = "0",
        ["Herald:Apns:ProductionUrl"] = apnsUrl,
        ["Herald:Apns:SandboxUrl"] = apnsUrl,
        ["Herald:Apns:TeamId"] = Team,
        ["Herald:Apns:KeyId"] = KeyId,
        ["Herald:Apns:PrivateKeyPem"] = pem,
        ["Herald:Apns:Topic"] = Topic,
        ["Herald:Apns:TrustedCertificateFile"] = trustCert,
        ["Logging:LogLevel:Default"] = "Warning",
    };

    internal const string AdminKey = "hk_bench_admin_key_not_for_production";

    internal static void TryDelete(string directory)
    {
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
