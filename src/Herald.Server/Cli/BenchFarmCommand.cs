using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Herald.Core.Notifications;
using Herald.Core.Ports;
using Herald.Core.Registrations;
using Herald.Server.Hosting;
using Herald.Simulators.Apns;
using Npgsql;

namespace Herald.Server.Cli;

/// <summary>
/// <c>herald bench farm</c>: farm throughput with 1, 2, 3… nodes on one PostgreSQL database against one fake APNs,
/// and end-to-end latency (EWS callback acknowledged → push at APNs) under a steady callback load spread over the
/// nodes. Each run gets a fresh database (created and dropped through the given connection, which needs CREATEDB).
/// The nodes run in this process (one gateway each, with its own Kestrel, connection pool and dispatcher): on one
/// machine they share its cores either way, so the ratio between runs matters, not the absolute numbers.
/// </summary>
internal static class BenchFarmCommand
{
    private const string Team = "BENCHTEAM1";
    private const string KeyId = "BENCHKEY01";
    private const string Topic = "org.herald.bench";
    private const string AdminKey = "hk_bench_admin_key_not_for_production";

    public static Command Create()
    {
        var command = new Command("farm", "Farm throughput with 1, 2, 3… nodes on one PostgreSQL database, and end-to-end p99.");
        var postgres = new Option<string>("--postgres") { Description = "Npgsql connection string of a server where the bench may create and drop databases.", Required = true };
        var nodes = new Option<string>("--nodes") { Description = "Node counts to run, comma-separated.", DefaultValueFactory = _ => "1,2,3" };
        var count = new Option<int>("--count") { Description = "Notifications drained per run (one per device).", DefaultValueFactory = _ => 20_000 };
        var devices = new Option<int>("--devices") { Description = "Registered EWS-push devices for the latency phase.", DefaultValueFactory = _ => 500 };
        var rate = new Option<int>("--rate") { Description = "Callbacks a second in the latency phase, spread over the nodes.", DefaultValueFactory = _ => 300 };
        var seconds = new Option<int>("--seconds") { Description = "Length of the latency phase.", DefaultValueFactory = _ => 15 };
        command.Options.Add(postgres);
        command.Options.Add(nodes);
        command.Options.Add(count);
        command.Options.Add(devices);
        command.Options.Add(rate);
        command.Options.Add(seconds);
        command.SetAction(async (parse, cancellationToken) =>
        {
            var runs = new List<int>();
            foreach (var part in parse.GetValue(nodes)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            {
                if (!int.TryParse(part, NumberStyles.None, CultureInfo.InvariantCulture, out var n) || n is < 1 or > 16)
                {
                    await Console.Error.WriteLineAsync("herald: --nodes must be numbers 1..16, for example 1,2,3.");
                    return HeraldCli.UsageError;
                }

                runs.Add(n);
            }

            var options = new Run(parse.GetValue(postgres)!, parse.GetValue(count), parse.GetValue(devices), parse.GetValue(rate), parse.GetValue(seconds));
            if (options.Count is < 1 or > 1_000_000 || options.Devices is < 1 or > 100_000 || options.Rate is < 1 or > 100_000 || options.Seconds is < 1 or > 3600)
            {
                await Console.Error.WriteLineAsync("herald: --count 1..1000000, --devices 1..100000, --rate 1..100000, --seconds 1..3600.");
                return HeraldCli.UsageError;
            }

            var ok = true;
            var results = new List<string>();
            foreach (var n in runs)
            {
                var (line, passed) = await RunAsync(n, options, cancellationToken);
                ok &= passed;
                results.Add(line);
                Console.WriteLine(line);
            }

            Console.WriteLine();
            Console.WriteLine("| nodes | drain (sends/s) | e2e callbacks | p50 | p95 | p99 |");
            Console.WriteLine("| ---: | ---: | ---: | ---: | ---: | ---: |");
            foreach (var line in results)
            {
                Console.WriteLine(line[(line.IndexOf('|', StringComparison.Ordinal))..]);
            }

            return ok ? HeraldCli.Success : HeraldCli.Failure;
        });
        return command;
    }

    private sealed record Run(string Postgres, int Count, int Devices, int Rate, int Seconds);

    private static async Task<(string Line, bool Passed)> RunAsync(int nodes, Run run, CancellationToken cancellationToken)
    {
        var directory = Path.Combine(Path.GetTempPath(), "herald-bench-farm-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(directory);
        var database = "herald_bench_" + nodes.ToString(CultureInfo.InvariantCulture) + "_" + Guid.NewGuid().ToString("N")[..8];
        await ExecuteAsync(run.Postgres, $"CREATE DATABASE {database}", cancellationToken);
        var apps = new List<WebApplication>();
        var started = new List<WebApplication>();
        FakeApnsServer? apns = null;
        try
        {
            apns = await FakeApnsServer.StartAsync(
                new FakeApnsServerOptions { UseTls = true, MaxRecordedRequests = run.Count + (run.Rate * run.Seconds) + 10_000 },
                cancellationToken: cancellationToken);
            var pem = apns.GenerateSigningKey(Team, KeyId, Topic);
            var trust = Path.Combine(directory, "fake-apns.pem");
            await File.WriteAllTextAsync(trust, apns.CertificatePem, cancellationToken);
            var keys = Path.Combine(directory, "keys");
            await File.WriteAllTextAsync(keys, "k1 " + Convert.ToBase64String(RandomNumberGenerator.GetBytes(32)) + "\n", cancellationToken);
            var connection = new NpgsqlConnectionStringBuilder(run.Postgres) { Database = database }.ConnectionString;
            for (var i = 1; i <= nodes; i++)
            {
                var settings = new Dictionary<string, string?>
                {
                    ["Herald:Database"] = "postgres:" + connection,
                    ["Herald:SecretKeyFile"] = keys,
                    ["Herald:NodeName"] = "bench-" + i.ToString(CultureInfo.InvariantCulture),
                    ["Herald:Region"] = "bench",
                    ["Herald:AdminApiKey"] = AdminKey,
                    ["Herald:Apns:ProductionUrl"] = apns.BaseUrl,
                    ["Herald:Apns:SandboxUrl"] = apns.BaseUrl,
                    ["Herald:Apns:TeamId"] = Team,
                    ["Herald:Apns:KeyId"] = KeyId,
                    ["Herald:Apns:PrivateKeyPem"] = pem,
                    ["Herald:Apns:Topic"] = Topic,
                    ["Herald:Apns:TrustedCertificateFile"] = trust,
                    ["Logging:LogLevel:Default"] = "Warning",
                };
                apps.Add(HeraldApp.Build(["--urls=http://127.0.0.1:0"], configure: b => b.Configuration.AddInMemoryCollection(settings)));
            }

            // Phase 1: a backlog drained by the farm.
            await apps[0].Services.GetRequiredService<IStoreAdmin>().MigrateAsync(cancellationToken);
            await FillAsync(apps[0].Services.GetRequiredService<INotificationQueue>(), run.Count, cancellationToken);
            var drain = Stopwatch.StartNew();
            foreach (var app in apps)
            {
                await HeraldApp.StartAsync(app, cancellationToken);
                started.Add(app);
            }

            var dispatchers = apps.Select(a => a.Services.GetRequiredService<Core.Pipeline.Dispatcher>()).ToArray();
            long Sent() => dispatchers.Sum(d => d.Counters.Sent);
            while (Sent() < run.Count && drain.Elapsed < TimeSpan.FromMinutes(10))
            {
                await Task.Delay(20, cancellationToken);
            }

            var drainTime = drain.Elapsed;
            var drained = Sent();
            var drainRate = drained / drainTime.TotalSeconds;

            // Phase 2: EWS callbacks at a steady rate, round robin over the nodes; latency = acknowledged → at APNs.
            var latencies = await LatencyAsync(apps, apns, run, cancellationToken);
            latencies.Sort();
            string P(double q) => latencies.Count == 0 ? "-" : latencies[Math.Min(latencies.Count - 1, (int)Math.Ceiling(q * latencies.Count) - 1)].ToString("0.0", CultureInfo.InvariantCulture) + " ms";
            var line = string.Create(
                CultureInfo.InvariantCulture,
                $"farm of {nodes}: drained {drained} in {drainTime.TotalSeconds:0.00} s; e2e {latencies.Count} callbacks at {run.Rate}/s " +
                $"| {nodes} | {drainRate:0} | {latencies.Count} | {P(0.50)} | {P(0.95)} | {P(0.99)} |");
            return (line, drained >= run.Count && latencies.Count > 0);
        }
        finally
        {
            foreach (var app in started)
            {
                await app.StopAsync(CancellationToken.None);
            }

            foreach (var app in apps)
            {
                await app.DisposeAsync();
            }

            if (apns is not null)
            {
                await apns.DisposeAsync();
            }

            NpgsqlConnection.ClearAllPools();
            await ExecuteAsync(run.Postgres, $"DROP DATABASE IF EXISTS {database} WITH (FORCE)", CancellationToken.None);
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

    private static async Task FillAsync(INotificationQueue queue, int count, CancellationToken cancellationToken)
    {
        var content = new NotificationContent { Kind = PushKind.Badge, Badge = 1 };
        var expires = DateTimeOffset.UtcNow.AddHours(1);
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
    }

    private static async Task<List<double>> LatencyAsync(List<WebApplication> apps, FakeApnsServer apns, Run run, CancellationToken cancellationToken)
    {
        using var handler = new SocketsHttpHandler { MaxConnectionsPerServer = 64, PooledConnectionLifetime = TimeSpan.FromMinutes(5) };
        using var http = new HttpClient(handler) { Timeout = TimeSpan.FromSeconds(30) };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", AdminKey);
        var bases = apps.Select(a => a.Urls.First().TrimEnd('/')).ToArray();

        var paths = new string[run.Devices];
        var tokens = new string[run.Devices];
        for (var d = 0; d < run.Devices; d++)
        {
            tokens[d] = "e2e" + d.ToString("x8", CultureInfo.InvariantCulture) + new string('f', 53);
            using var response = await http.PostAsJsonAsync(bases[d % bases.Length] + "/v1/registrations", new { platform = "apns", token = tokens[d], source = "ews-push" }, cancellationToken);
            response.EnsureSuccessStatusCode();
            using var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync(cancellationToken));
            paths[d] = new Uri(json.RootElement.GetProperty("callbackUrl").GetString()!).PathAndQuery;
        }

        var acknowledged = new Dictionary<(string Token, int Badge), DateTimeOffset>();
        var badges = new int[run.Devices];
        var total = run.Rate * run.Seconds;
        var posts = new List<Task>(total);
        using var gate = new SemaphoreSlim(512);
        var clock = Stopwatch.StartNew();
        for (var i = 0; i < total; i++)
        {
            // Pace: event i is due at i / rate seconds.
            var due = TimeSpan.FromSeconds(i / (double)run.Rate);
            if (due > clock.Elapsed)
            {
                await Task.Delay(due - clock.Elapsed, cancellationToken);
            }

            var d = i % run.Devices;
            var badge = ++badges[d];
            var url = bases[i % bases.Length] + paths[d];
            await gate.WaitAsync(cancellationToken);
            posts.Add(PostAsync(url, d, badge));
        }

        await Task.WhenAll(posts);

        // Wait until every device's last acknowledged badge has arrived.
        var waited = Stopwatch.StartNew();
        Dictionary<(string, int), DateTimeOffset> arrived = [];
        while (waited.Elapsed < TimeSpan.FromSeconds(60))
        {
            arrived = [];
            foreach (var r in apns.Requests)
            {
                if (r.Accepted && r.Token.StartsWith("e2e", StringComparison.Ordinal) && BadgeOf(r.Payload) is { } b && !arrived.ContainsKey((r.Token, b)))
                {
                    arrived[(r.Token, b)] = r.ReceivedAt;
                }
            }

            var last = Enumerable.Range(0, run.Devices).Where(d => badges[d] > 0);
            if (last.All(d => arrived.ContainsKey((tokens[d], badges[d])) || !acknowledged.ContainsKey((tokens[d], badges[d]))))
            {
                break;
            }

            await Task.Delay(100, cancellationToken);
        }

        // Events folded into a later one (coalesced before they were sent) have no push of their own.
        var latencies = new List<double>(acknowledged.Count);
        foreach (var (key, at) in acknowledged)
        {
            if (arrived.TryGetValue(key, out var received))
            {
                latencies.Add(Math.Max(0, (received - at).TotalMilliseconds));
            }
        }

        return latencies;

        async Task PostAsync(string url, int device, int badge)
        {
            try
            {
                using var content = new StringContent(NewMail("BENCH-" + device.ToString(CultureInfo.InvariantCulture), badge), Encoding.UTF8, "text/xml");
                using var request = new HttpRequestMessage(HttpMethod.Post, url) { Content = content };
                request.Headers.Add("SOAPAction", "\"http://schemas.microsoft.com/exchange/services/2006/messages/SendNotification\"");
                var sentAt = DateTimeOffset.UtcNow;
                using var response = await http.SendAsync(request, cancellationToken);
                if (response.IsSuccessStatusCode)
                {
                    lock (acknowledged)
                    {
                        acknowledged[(tokens[device], badge)] = sentAt;
                    }
                }
            }
            catch (HttpRequestException)
            {
                // Not acknowledged: not measured.
            }
            finally
            {
                gate.Release();
            }
        }
    }

    private static int? BadgeOf(string? payload)
    {
        const string Key = "\"badge\":";
        var i = payload?.IndexOf(Key, StringComparison.Ordinal) ?? -1;
        if (i < 0)
        {
            return null;
        }

        var start = i + Key.Length;
        var end = start;
        while (end < payload!.Length && char.IsAsciiDigit(payload[end]))
        {
            end++;
        }

        return int.TryParse(payload.AsSpan(start, end - start), NumberStyles.None, CultureInfo.InvariantCulture, out var badge) ? badge : null;
    }

    /// <summary>An EWS SendNotification with a new-mail event and the inbox unread count (the badge).</summary>
    private static string NewMail(string subscriptionId, int unread) => $"""
        <?xml version="1.0" encoding="utf-8"?>
        <soap11:Envelope xmlns:soap11="http://schemas.xmlsoap.org/soap/envelope/">
          <soap11:Header><t:RequestServerVersion xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types" Version="Exchange2016"/></soap11:Header>
          <soap11:Body>
            <m:SendNotification xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages" xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types">
              <m:ResponseMessages>
                <m:SendNotificationResponseMessage ResponseClass="Success">
                  <m:ResponseCode>NoError</m:ResponseCode>
                  <m:Notification>
                    <t:SubscriptionId>{subscriptionId}</t:SubscriptionId>
                    <t:PreviousWatermark>AAAA=</t:PreviousWatermark>
                    <t:MoreEvents>false</t:MoreEvents>
                    <t:NewMailEvent><t:Watermark>W{unread}</t:Watermark><t:TimeStamp>2026-11-23T10:00:00Z</t:TimeStamp><t:ItemId Id="AAMkItem{unread}=" ChangeKey="CQAAAA=="/><t:ParentFolderId Id="AQMkAGInbox=" ChangeKey="AQAAAA=="/></t:NewMailEvent>
                    <t:ModifiedEvent><t:Watermark>X{unread}</t:Watermark><t:TimeStamp>2026-11-23T10:00:00Z</t:TimeStamp><t:FolderId Id="AQMkAGInbox=" ChangeKey="AQAAAA=="/><t:ParentFolderId Id="AQMkAGRoot=" ChangeKey="AQAAAA=="/><t:UnreadCount>{unread}</t:UnreadCount></t:ModifiedEvent>
                  </m:Notification>
                </m:SendNotificationResponseMessage>
              </m:ResponseMessages>
            </m:SendNotification>
          </soap11:Body>
        </soap11:Envelope>
        """;

    private static async Task ExecuteAsync(string connectionString, string sql, CancellationToken cancellationToken)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync(cancellationToken);
        await using var command = new NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync(cancellationToken);
    }
}
