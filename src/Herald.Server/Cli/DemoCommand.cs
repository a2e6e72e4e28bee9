using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Headers;
using System.Text.Json;
using Herald.Core.Pipeline;
using Herald.Server.Hosting;
using Herald.Simulators.Apns;
using Herald.Simulators.Exchange;
using Herald.Simulators.Fcm;
using Herald.Simulators.Wns;

namespace Herald.Server.Cli;

/// <summary>
/// <c>herald demo</c>: the whole data path with nothing to configure. A gateway on a fresh SQLite file,
/// the fake Exchange, APNs, FCM and WNS on loopback ports, simulated devices registered through the real
/// API, mail traffic at a fixed rate, live progress, and a summary. Exit 0 only if every expected push arrived.
/// </summary>
internal static class DemoCommand
{
    private const string Team = "DEMOTEAM01";
    private const string KeyId = "DEMOKEY001";
    private const string Topic = "org.herald.demo.mail";
    private const string AdminKey = "hk_demo_admin_key_not_for_production";
    private const string WnsSid = "ms-app://s-1-15-2-4242424242-herald-demo";
    private const string WnsSecret = "herald-demo-wns-secret";

    public static Command Create()
    {
        var devices = new Option<int>("--devices") { Description = "Simulated devices (mailboxes).", DefaultValueFactory = _ => 200 };
        var rate = new Option<double>("--rate") { Description = "Mail events per second, across all mailboxes.", DefaultValueFactory = _ => 200 };
        var duration = new Option<string>("--duration") { Description = "How long to send mail: seconds, or 30s, 2m, 00:01:00.", DefaultValueFactory = _ => "10s" };
        var keep = new Option<bool>("--keep-running") { Description = "Keep the gateway and simulators up after the summary, until Ctrl+C." };
        var command = new Command("demo", "Run the gateway with simulated Exchange, APNs and devices, and report what happened.");
        command.Options.Add(devices);
        command.Options.Add(rate);
        command.Options.Add(duration);
        command.Options.Add(keep);
        command.SetAction(async (parse, cancellationToken) =>
        {
            var n = parse.GetValue(devices);
            var r = parse.GetValue(rate);
            if (n is < 1 or > 100_000 || r is <= 0 or > 100_000 || !TryParseDuration(parse.GetValue(duration), out var d))
            {
                await Console.Error.WriteLineAsync("herald: --devices must be 1..100000, --rate 0..100000 events/s, --duration like 30s or 2m.");
                return HeraldCli.UsageError;
            }

            return await RunAsync(n, r, d, parse.GetValue(keep), cancellationToken);
        });
        return command;
    }

    internal static bool TryParseDuration(string? text, out TimeSpan duration)
    {
        duration = default;
        if (string.IsNullOrWhiteSpace(text))
        {
            return false;
        }

        text = text.Trim();
        var ok = text[^1] switch
        {
            's' => double.TryParse(text[..^1], NumberStyles.Float, CultureInfo.InvariantCulture, out var s) && (duration = TimeSpan.FromSeconds(s)) > TimeSpan.Zero,
            'm' => double.TryParse(text[..^1], NumberStyles.Float, CultureInfo.InvariantCulture, out var m) && (duration = TimeSpan.FromMinutes(m)) > TimeSpan.Zero,
            _ => (double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var secs) && (duration = TimeSpan.FromSeconds(secs)) > TimeSpan.Zero)
                 || (TimeSpan.TryParse(text, CultureInfo.InvariantCulture, out duration) && duration > TimeSpan.Zero),
        };
        return ok && duration <= TimeSpan.FromHours(24);
    }

    private sealed class Device
    {
        public required int Index { get; init; }
        public required string Platform { get; init; }
        public required string Token { get; init; }
        public required bool DeadToken { get; init; }
        public required bool Flaky { get; init; }
        public string RegistrationId { get; set; } = string.Empty;
        public FakeExchangeSubscription Subscription { get; set; } = null!;
        public SemaphoreSlim Gate { get; } = new(1, 1);
        public int Sent { get; set; }
        public List<(int Unread, DateTimeOffset PostedAt)> Events { get; } = [];
    }

    public static async Task<int> RunAsync(int deviceCount, double rate, TimeSpan duration, bool keepRunning, CancellationToken cancellationToken)
    {
        var directory = Path.Combine(Path.GetTempPath(), "herald-demo-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(directory);
        Console.WriteLine($"Herald demo: {deviceCount} devices, {rate:0} mail events/s for {duration.TotalSeconds:0} s");
        Console.WriteLine($"  database   sqlite:{Path.Combine(directory, "herald.db")} (fresh)");

        // The fake APNs speaks TLS so it can also do certificate auth (MDM wake-ups), trusting a demo "WWDR" CA.
        using var appleCa = FakeApnsCertificateAuthority.Create("Herald demo Apple WWDR CA");
        var apnsOptions = new FakeApnsServerOptions { MaxRecordedRequests = 1_000_000, UseTls = true };
        apnsOptions.ClientCertificateAuthorities.Add(appleCa.Certificate);
        await using var apns = await FakeApnsServer.StartAsync(apnsOptions, cancellationToken: cancellationToken);
        var pem = apns.GenerateSigningKey(Team, KeyId, Topic);
        var apnsTrust = Path.Combine(directory, "fake-apns.pem");
        await File.WriteAllTextAsync(apnsTrust, apns.CertificatePem, cancellationToken);
        Console.WriteLine($"  fake APNs  {apns.BaseUrl} (HTTP/2 over TLS, token and certificate auth, validates like Apple)");

        await using var fcm = await FakeFcmServer.StartAsync(cancellationToken: cancellationToken);
        var serviceAccount = fcm.CreateServiceAccount("herald-demo");
        Console.WriteLine($"  fake FCM   {fcm.BaseUrl} (HTTP/2, OAuth2 service account, validates like Google)");
        await using var wns = await FakeWnsServer.StartAsync(cancellationToken: cancellationToken);
        wns.AddApplication(WnsSid, WnsSecret);
        Console.WriteLine($"  fake WNS   {wns.BaseUrl} (client-credentials token, validates like Microsoft)");

        var settings = new Dictionary<string, string?>
        {
            ["Herald:Fcm:BaseUrl"] = fcm.BaseUrl,
            ["Herald:Fcm:ServiceAccountJson"] = serviceAccount,
            ["Herald:Wns:TokenUrl"] = wns.TokenUrl,
            ["Herald:Wns:PackageSid"] = WnsSid,
            ["Herald:Wns:ClientSecret"] = WnsSecret,
            ["Herald:Wns:AllowedChannelHosts:0"] = wns.Authority,
            ["Herald:Wns:AllowHttpChannels"] = "true",
            ["Herald:Database"] = "sqlite:" + Path.Combine(directory, "herald.db"),
            ["Herald:AdminApiKey"] = AdminKey,
            ["Herald:RateLimits:PerKeyPerSecond"] = "0", // one local driver makes all the calls
            ["Herald:RateLimits:PerAddressPerSecond"] = "0",
            ["Herald:Apns:ProductionUrl"] = apns.BaseUrl,
            ["Herald:Apns:SandboxUrl"] = apns.BaseUrl,
            ["Herald:Apns:TeamId"] = Team,
            ["Herald:Apns:KeyId"] = KeyId,
            ["Herald:Apns:PrivateKeyPem"] = pem,
            ["Herald:Apns:Topic"] = Topic,
            ["Herald:Apns:TrustedCertificateFile"] = apnsTrust,
            // Fast retries so the demo's injected 503s recover within seconds (production default: 30 s).
            ["Herald:Retry:InitialDelay"] = "00:00:00.250",
            ["Herald:Retry:MaxDelay"] = "00:00:02",
            ["Logging:LogLevel:Default"] = "Warning",
            ["Logging:LogLevel:Herald"] = "Warning",
        };
        await using var app = HeraldApp.Build(["--urls=http://127.0.0.1:0"], configure: b => b.Configuration.AddInMemoryCollection(settings));
        await HeraldApp.StartAsync(app, cancellationToken);
        var baseUrl = app.Urls.First().TrimEnd('/');
        var dispatcher = app.Services.GetRequiredService<Dispatcher>();
        Console.WriteLine($"  gateway    {baseUrl}");

        using var handler = new SocketsHttpHandler { MaxConnectionsPerServer = 512, PooledConnectionIdleTimeout = TimeSpan.FromMinutes(1) };
        using var http = new HttpClient(handler, disposeHandler: false) { BaseAddress = new Uri(baseUrl + "/"), Timeout = TimeSpan.FromSeconds(30) };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", AdminKey);
        await using var exchange = new FakeExchange(new HttpClient(handler, disposeHandler: false) { Timeout = TimeSpan.FromSeconds(30) }, TimeProvider.System);

        // Devices: 3 in 5 iPhones (APNs), 1 in 5 Android (FCM), 1 in 5 Windows (WNS). Of the iPhones about
        // 3 % have tokens Apple no longer accepts and 5 % meet a 503 on their first push.
        var random = new Random(20261123);
        var devices = new Device[deviceCount];
        var allBytes = Enumerable.Range(0, 256).Select(b => (byte)b).ToArray();
        for (var i = 0; i < deviceCount; i++)
        {
            var platform = (i % 5) switch { 1 => "fcm", 2 => "wns", _ => "apns" };
            var token = platform switch
            {
                "fcm" => "dEmO" + i.ToString(CultureInfo.InvariantCulture) + ":APA91b" + Convert.ToHexStringLower(random.GetItems(allBytes, 40)),
                "wns" => wns.CreateChannel(WnsSid),
                _ => Convert.ToHexStringLower(BitConverter.GetBytes(i)) + Convert.ToHexStringLower(random.GetItems(allBytes, 28)),
            };
            var apnsDevice = platform == "apns";
            devices[i] = new Device { Index = i, Platform = platform, Token = token, DeadToken = apnsDevice && deviceCount >= 20 && i % 50 == 10, Flaky = apnsDevice && deviceCount >= 20 && i % 20 == 3 };
            if (devices[i].DeadToken)
            {
                apns.Unregister(token, DateTimeOffset.UtcNow.AddDays(-3));
            }
            else if (devices[i].Flaky)
            {
                apns.Script(token, (503, "ServiceUnavailable"));
            }
        }

        var clock = Stopwatch.StartNew();
        await Parallel.ForEachAsync(devices, new ParallelOptions { MaxDegreeOfParallelism = 16, CancellationToken = cancellationToken }, async (device, ct) =>
        {
            var style = device.Platform != "wns" && device.Index % 4 == 0 ? "generic" : "badge"; // a WNS toast carries no badge
            using var response = await http.PostAsJsonAsync("v1/registrations", new { platform = device.Platform, token = device.Token, source = "ews-push", style, locale = device.Index % 8 == 0 ? "ja-JP" : "en" }, ct);
            response.EnsureSuccessStatusCode();
            using var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync(ct));
            device.RegistrationId = json.RootElement.GetProperty("id").GetString()!;
            device.Subscription = exchange.Subscribe(new Uri(json.RootElement.GetProperty("callbackUrl").GetString()!), TimeSpan.FromMinutes(30));
        });
        Console.WriteLine($"  registered {deviceCount} devices ({devices.Count(d => d.Platform == "apns")} APNs, {devices.Count(d => d.Platform == "fcm")} FCM, {devices.Count(d => d.Platform == "wns")} WNS) through POST /v1/registrations in {clock.Elapsed.TotalSeconds:0.00} s; each has an EWS push subscription on the fake Exchange");
        Console.WriteLine();

        // Traffic: new mail at the offered rate, one post at a time per mailbox (as Exchange does).
        var total = (long)Math.Max(1, Math.Round(rate * duration.TotalSeconds));
        long posted = 0, acked = 0, unsubscribed = 0, postFailures = 0;
        using var inFlight = new SemaphoreSlim(512);
        var tasks = new List<Task>();
        var traffic = Stopwatch.StartNew();
        var nextProgress = TimeSpan.FromSeconds(1);
        for (long sent = 0; sent < total;)
        {
            var due = Math.Min(total, (long)(rate * traffic.Elapsed.TotalSeconds) + 1);
            for (; sent < due; sent++)
            {
                var device = devices[random.Next(deviceCount)];
                await inFlight.WaitAsync(cancellationToken);
                tasks.Add(Task.Run(async () =>
                {
                    try
                    {
                        await device.Gate.WaitAsync(cancellationToken);
                        try
                        {
                            if (device.Subscription.State != FakeSubscriptionState.Active)
                            {
                                return;
                            }

                            var postedAt = DateTimeOffset.UtcNow;
                            var attempt = await exchange.DeliverNewMailAsync(device.Subscription, cancellationToken);
                            Interlocked.Increment(ref posted);
                            device.Sent++;
                            device.Events.Add((device.Subscription.UnreadCount, postedAt));
                            switch (attempt?.Answer)
                            {
                                case ExchangeAnswer.Ok: Interlocked.Increment(ref acked); break;
                                case ExchangeAnswer.Unsubscribe: Interlocked.Increment(ref unsubscribed); break;
                                default: Interlocked.Increment(ref postFailures); break;
                            }
                        }
                        finally
                        {
                            device.Gate.Release();
                        }
                    }
                    finally
                    {
                        inFlight.Release();
                    }
                }, cancellationToken));
            }

            if (traffic.Elapsed >= nextProgress)
            {
                Progress(traffic.Elapsed, posted, acked, apns.AcceptedCount + fcm.AcceptedCount + wns.AcceptedCount, dispatcher.Counters);
                nextProgress += TimeSpan.FromSeconds(1);
            }

            await Task.Delay(5, cancellationToken);
        }

        await Task.WhenAll(tasks);
        var trafficSeconds = traffic.Elapsed.TotalSeconds;

        // Dead-token devices get one more mail so Exchange hears Unsubscribe for each of them.
        foreach (var device in devices.Where(d => d.DeadToken))
        {
            await WaitUntilAsync(async () => await StatusAsync(http, device.RegistrationId, cancellationToken) == "inactive", TimeSpan.FromSeconds(20), cancellationToken);
            if (device.Subscription.State == FakeSubscriptionState.Active)
            {
                var attempt = await exchange.DeliverNewMailAsync(device.Subscription, cancellationToken);
                if (attempt?.Answer == ExchangeAnswer.Unsubscribe)
                {
                    Interlocked.Increment(ref unsubscribed);
                }
            }
        }

        // Wait for every healthy device's latest badge (bounded).
        var healthy = devices.Where(d => !d.DeadToken && d.Sent > 0).ToArray();
        var complete = await WaitUntilAsync(
            () =>
            {
                var last = LastBadges(apns, fcm, wns);
                return Task.FromResult(healthy.All(d => last.TryGetValue(d.Token, out var badge) && badge == d.Subscription.UnreadCount));
            },
            TimeSpan.FromSeconds(60),
            cancellationToken,
            () => Progress(traffic.Elapsed, posted, acked, apns.AcceptedCount + fcm.AcceptedCount + wns.AcceptedCount, dispatcher.Counters));
        Progress(traffic.Elapsed, posted, acked, apns.AcceptedCount + fcm.AcceptedCount + wns.AcceptedCount, dispatcher.Counters);

        var mdm = await MdmWakeUpsAsync(http, apns, appleCa, Math.Clamp(deviceCount / 5, 3, 100), cancellationToken);
        var report = Summarize(devices, apns, fcm, wns, posted, acked, unsubscribed, postFailures, trafficSeconds, dispatcher.Counters);
        var deadOk = devices.Where(d => d.DeadToken && d.Sent > 0).All(d => d.Subscription.State == FakeSubscriptionState.Unsubscribed);
        var success = complete && deadOk && postFailures == 0 && mdm.Delivered == mdm.Expected;
        Console.WriteLine(report);
        Console.WriteLine($"  MDM wake-ups: {mdm.Delivered}/{mdm.Expected} delivered over certificate auth (tenant 'mdm-demo', .p12 uploaded via PUT /v1/tenants/{{id}}/credentials/apns; payload {{\"mdm\":\"<PushMagic>\"}}, push type mdm)");
        Console.WriteLine(success
            ? "RESULT: PASS: every expected push arrived; every dead token was deactivated and its Exchange subscription told to Unsubscribe."
            : $"RESULT: FAIL: {(mdm.Delivered == mdm.Expected ? string.Empty : "some MDM wake-ups were not delivered; ")}{(complete ? string.Empty : "some devices did not get their latest badge; ")}{(deadOk ? string.Empty : "some dead-token subscriptions were not unsubscribed; ")}{(postFailures == 0 ? string.Empty : $"{postFailures} callbacks were not acknowledged")}");
        Console.WriteLine($"Admin API: {baseUrl}/v1 (admin key: {AdminKey}); health {baseUrl}/readyz; queue {baseUrl}/v1/admin/queue; console {baseUrl}/");

        if (keepRunning)
        {
            Console.WriteLine("Keeping the gateway and simulators up; press Ctrl+C to stop.");
            try
            {
                await Task.Delay(Timeout.Infinite, cancellationToken);
            }
            catch (OperationCanceledException)
            {
                // Ctrl+C.
            }
        }

        await app.StopAsync(CancellationToken.None);
        try
        {
            Directory.Delete(directory, recursive: true);
        }
        catch (IOException)
        {
            // Left for the OS's temp cleanup.
        }

        return success ? HeraldCli.Success : HeraldCli.Failure;
    }

    private static void Progress(TimeSpan elapsed, long posted, long acked, long pushes, DispatchCounters c)
        => Console.WriteLine($"  [{elapsed.TotalSeconds,5:0.0}s] mail events posted {posted,7}  acknowledged {acked,7}  pushes accepted {pushes,7}  retries {c.Retried,4}  deactivated {c.Deactivated,3}");

    private static async Task<string?> StatusAsync(HttpClient http, string id, CancellationToken cancellationToken)
    {
        using var json = JsonDocument.Parse(await http.GetStringAsync("v1/registrations/" + id, cancellationToken));
        return json.RootElement.GetProperty("status").GetString();
    }

    private static async Task<bool> WaitUntilAsync(Func<Task<bool>> condition, TimeSpan limit, CancellationToken cancellationToken, Action? tick = null)
    {
        var clock = Stopwatch.StartNew();
        var lastTick = TimeSpan.Zero;
        while (clock.Elapsed < limit)
        {
            if (await condition())
            {
                return true;
            }

            if (tick is not null && clock.Elapsed - lastTick >= TimeSpan.FromSeconds(1))
            {
                tick();
                lastTick = clock.Elapsed;
            }

            await Task.Delay(50, cancellationToken);
        }

        return await condition();
    }

    /// <summary>Each token's latest accepted badge, in one pass over what the fake providers received.</summary>
    /// <summary>
    /// MDM wake-ups as an MDM server sends them: a tenant uploads its MDM push certificate (.p12) through the API and
    /// wakes <paramref name="count"/> devices; counts the exact <c>{"mdm":"&lt;PushMagic&gt;"}</c> pushes the fake APNs accepted.
    /// </summary>
    private static async Task<(int Expected, int Delivered)> MdmWakeUpsAsync(HttpClient http, FakeApnsServer apns, FakeApnsCertificateAuthority appleCa, int count, CancellationToken cancellationToken)
    {
        var topic = "com.apple.mgmt.External." + Guid.NewGuid().ToString("D");
        using var certificate = appleCa.Issue(topic, kind: FakeApnsCertificateKind.Production);
        using var created = await http.PostAsJsonAsync("v1/tenants", new { name = "mdm-demo" }, cancellationToken);
        created.EnsureSuccessStatusCode();
        using var tenant = JsonDocument.Parse(await created.Content.ReadAsStringAsync(cancellationToken));
        var tenantId = tenant.RootElement.GetProperty("id").GetString()!;
        using var keyResponse = await http.PostAsync($"v1/tenants/{tenantId}/keys", null, cancellationToken);
        keyResponse.EnsureSuccessStatusCode();
        using var key = JsonDocument.Parse(await keyResponse.Content.ReadAsStringAsync(cancellationToken));
        using var tenantHttp = new HttpClient { BaseAddress = http.BaseAddress, Timeout = TimeSpan.FromSeconds(30) };
        tenantHttp.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key.RootElement.GetProperty("key").GetString());

        var pfx = Convert.ToBase64String(FakeApnsCertificateAuthority.ExportPkcs12(certificate, "mdm-demo"));
        using var put = await tenantHttp.PutAsJsonAsync($"v1/tenants/{tenantId}/credentials/apns", new { certificatePfxBase64 = pfx, password = "mdm-demo" }, cancellationToken);
        put.EnsureSuccessStatusCode();

        var magic = Enumerable.Range(0, count).ToDictionary(i => (i + 1).ToString("x8", CultureInfo.InvariantCulture) + new string('d', 56), _ => Guid.NewGuid().ToString("D").ToUpperInvariant());
        using var sent = await tenantHttp.PostAsJsonAsync(
            "v1/notifications",
            new { lane = "priority", kind = "mdm", devices = magic.Select(m => new { platform = "apns", token = m.Key, topic, pushMagic = m.Value }).ToArray() },
            cancellationToken);
        sent.EnsureSuccessStatusCode();

        int Delivered() => apns.Requests.Count(r => r.Accepted && r.PushType == "mdm" && r.Topic == topic && r.Authorization is null
            && magic.TryGetValue(r.Token, out var m) && r.Payload == "{\"mdm\":\"" + m + "\"}");
        await WaitUntilAsync(() => Task.FromResult(Delivered() >= count), TimeSpan.FromSeconds(30), cancellationToken);
        return (count, Delivered());
    }

    private static Dictionary<string, int> LastBadges(FakeApnsServer apns, FakeFcmServer fcm, FakeWnsServer wns)
    {
        var last = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var (token, badge, _) in Received(apns, fcm, wns))
        {
            last[token] = badge;
        }

        return last;
    }

    /// <summary>Every accepted push with a badge, in arrival order per provider: (token, badge, time).</summary>
    private static IEnumerable<(string Token, int Badge, DateTimeOffset At)> Received(FakeApnsServer apns, FakeFcmServer fcm, FakeWnsServer wns)
    {
        foreach (var r in apns.Requests)
        {
            if (r.Accepted && BadgeOf(r.Payload) is { } badge)
            {
                yield return (r.Token, badge, r.ReceivedAt);
            }
        }

        foreach (var r in fcm.Requests)
        {
            if (r.Accepted && r.Token is { } token && r.Data.TryGetValue("badge", out var b) && int.TryParse(b, NumberStyles.Integer, CultureInfo.InvariantCulture, out var badge))
            {
                yield return (token, badge, r.ReceivedAt);
            }
        }

        foreach (var r in wns.Requests)
        {
            if (r.Accepted && WnsBadgeOf(r.Body) is { } badge)
            {
                yield return (r.Channel, badge, r.ReceivedAt);
            }
        }
    }

    private static int? WnsBadgeOf(string? body)
    {
        const string marker = "value=\"";
        var i = body?.IndexOf(marker, StringComparison.Ordinal) ?? -1;
        if (i < 0)
        {
            return null;
        }

        var start = i + marker.Length;
        var end = body!.IndexOf('"', start);
        return end > start && int.TryParse(body.AsSpan(start, end - start), NumberStyles.Integer, CultureInfo.InvariantCulture, out var n) ? n : null;
    }

    private static int? BadgeOf(string? payload)
    {
        if (payload is null)
        {
            return null;
        }

        using var json = JsonDocument.Parse(payload);
        return json.RootElement.TryGetProperty("aps", out var aps) && aps.TryGetProperty("badge", out var b) ? b.GetInt32() : null;
    }

    private static string Summarize(Device[] devices, FakeApnsServer apns, FakeFcmServer fcm, FakeWnsServer wns, long posted, long acked, long unsubscribed, long postFailures, double seconds, DispatchCounters counters)
    {
        // Latency per event: from Exchange starting the post to APNs accepting a push that carries that event's badge or later.
        var received = Received(apns, fcm, wns).GroupBy(r => r.Token).ToDictionary(g => g.Key, g => g.Select(r => (r.Badge, ReceivedAt: r.At)).ToList());
        var latencies = new List<double>();
        foreach (var device in devices.Where(d => !d.DeadToken))
        {
            if (!received.TryGetValue(device.Token, out var pushes))
            {
                continue;
            }

            foreach (var (unread, start) in device.Events)
            {
                foreach (var (badge, at) in pushes)
                {
                    if (badge >= unread && at >= start - TimeSpan.FromMilliseconds(1))
                    {
                        latencies.Add(Math.Max(0, (at - start).TotalMilliseconds));
                        break;
                    }
                }
            }
        }

        latencies.Sort();
        double P(double q) => latencies.Count == 0 ? double.NaN : latencies[Math.Min(latencies.Count - 1, (int)Math.Ceiling(q * latencies.Count) - 1)];
        var rejected = apns.RejectedByReason();
        var lines = new List<string>
        {
            string.Empty,
            "Summary",
            $"  events in      {posted} EWS SendNotification posts ({posted / Math.Max(0.001, seconds):0} events/s offered and acknowledged), {acked} answered OK, {unsubscribed} answered Unsubscribe, {postFailures} not acknowledged",
            $"  pushes out     apns {apns.AcceptedCount}, fcm {fcm.AcceptedCount}, wns {wns.AcceptedCount} accepted (coalescing folds a burst for one device into its latest badge)",
            $"  failures       {(rejected.Count == 0 ? "none" : string.Join(", ", rejected.Select(kv => $"{kv.Key} {kv.Value}")))}; retried {counters.Retried}, dead {counters.Dead}, expired {counters.Expired}, registrations deactivated {counters.Deactivated}",
            $"  latency        event post -> provider acceptance over {latencies.Count} events: p50 {P(0.50):0.0} ms, p95 {P(0.95):0.0} ms, p99 {P(0.99):0.0} ms, max {(latencies.Count == 0 ? double.NaN : latencies[^1]):0.0} ms",
        };
        return string.Join(Environment.NewLine, lines);
    }
}
