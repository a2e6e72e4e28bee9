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
/// <c>dispatch: N sent in S s = R/s</c>. Any APNs endpoint can be the common target of a side-by-side run;
/// without <c>--apns-url</c> the built-in fake APNs (TLS, HTTP/2) is started.
/// </summary>
internal static class BenchCommand
{
    private const string Team = "BENCHTEAM1";
    private const string KeyId = "BENCHKEY01";
    private const string Topic = "org.herald.bench";

    public static Command Create()
    {
        var bench = new Command("bench", "Reproducible performance runs.");
        var url = new Option<string?>("--apns-url") { Description = "APNs endpoint (https://host:port, or http:// for HTTP/2 cleartext). Default: a built-in fake APNs over TLS." };
        var count = new Option<int>("--count") { Description = "Notifications (one per device).", DefaultValueFactory = _ => 100_000 };
        var trust = new Option<string?>("--trust-cert") { Description = "PEM certificate of the endpoint to trust explicitly (self-signed peers)." };
        var dispatch = new Command("dispatch", "Enqueue N badge notifications in a fresh store, then drain them to an APNs endpoint.");
        dispatch.Options.Add(url);
        dispatch.Options.Add(count);
        dispatch.Options.Add(trust);
        dispatch.SetAction(async (parse, cancellationToken) =>
        {
            var n = parse.GetValue(count);
            if (n is < 1 or > 10_000_000)
            {
                await Console.Error.WriteLineAsync("herald: --count must be 1..10000000.");
                return HeraldCli.UsageError;
            }

            return await DispatchAsync(parse.GetValue(url), n, parse.GetValue(trust), cancellationToken);
        });
        bench.Subcommands.Add(dispatch);
        return bench;
    }

    private static async Task<int> DispatchAsync(string? apnsUrl, int count, string? trustCert, CancellationToken cancellationToken)
    {
        var directory = Path.Combine(Path.GetTempPath(), "herald-bench-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(directory);
        FakeApnsServer? fake = null;
        try
        {
            string pem;
            if (apnsUrl is null)
            {
                fake = await FakeApnsServer.StartAsync(new FakeApnsServerOptions { UseTls = true, RecordRequests = false }, cancellationToken: cancellationToken);
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

            var settings = new Dictionary<string, string?>
            {
                ["Herald:Database"] = "sqlite:" + Path.Combine(directory, "herald.db"),
                ["Herald:AdminApiKey"] = "hk_bench_admin_key_not_for_production",
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
            await using var app = HeraldApp.Build(["--urls=http://127.0.0.1:0"], configure: b => b.Configuration.AddInMemoryCollection(settings));

            // Fill the queue before the dispatcher starts, so the run measures the drain alone.
            var store = app.Services.GetRequiredService<IStoreAdmin>();
            await store.MigrateAsync(cancellationToken);
            var queue = app.Services.GetRequiredService<INotificationQueue>();
            var content = new NotificationContent { Kind = PushKind.Badge, Badge = 1 };
            var expires = DateTimeOffset.UtcNow.AddHours(1);
            var fill = Stopwatch.StartNew();
            var batch = new List<NewNotification>(5000);
            for (var i = 0; i < count; i++)
            {
                batch.Add(new NewNotification
                {
                    TenantId = "default",
                    Lane = Lane.Priority,
                    Platform = Platform.Apns,
                    Token = i.ToString("x8", CultureInfo.InvariantCulture) + "0123456789abcdef0123456789abcdef0123456789abcdef01234567",
                    Topic = Topic,
                    Content = content,
                    ExpiresAt = expires,
                });
                if (batch.Count == 5000 || i == count - 1)
                {
                    await queue.EnqueueAsync(batch, cancellationToken);
                    batch.Clear();
                }
            }

            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"enqueue: {count} in {fill.Elapsed.TotalSeconds:0.00} s = {count / fill.Elapsed.TotalSeconds:0}/s"));

            var dispatcher = app.Services.GetRequiredService<Dispatcher>();
            var clock = Stopwatch.StartNew();
            await HeraldApp.StartAsync(app, cancellationToken);
            var c = dispatcher.Counters;
            while (c.Sent + c.Failed + c.Dead + c.Expired < count && clock.Elapsed < TimeSpan.FromMinutes(30))
            {
                await Task.Delay(20, cancellationToken);
            }

            var seconds = clock.Elapsed.TotalSeconds;
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"dispatch: {c.Sent} sent in {seconds:0.00} s = {c.Sent / seconds:0}/s (failed {c.Failed}, retried {c.Retried}, dead {c.Dead}, expired {c.Expired})"));
            await app.StopAsync(CancellationToken.None);
            return c.Sent == count ? HeraldCli.Success : HeraldCli.Failure;
        }
        finally
        {
            if (fake is not null)
            {
                await fake.DisposeAsync();
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
}
