using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Herald.Simulators.Apns;
using Herald.Testing;
using Npgsql;
using Xunit;

namespace Herald.Server.Tests;

/// <summary>
/// A farm of real <c>herald serve</c> processes on one throw-away PostgreSQL cluster, with the fake APNs in this
/// process: a node killed with SIGKILL under load, PostgreSQL restarted under load, and the farm-wide throttle.
/// These fail (never skip) when PostgreSQL cannot start: the fixture throws with the reason.
/// </summary>
public sealed class FarmTests(PostgresServer postgres) : IClassFixture<PostgresServer>
{
    private const string PublicBaseUrl = "https://push-emea.example.test";

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task ThreeNodes_OneKilledUnderLoad_EveryAcknowledgedEventDelivered_LeadershipMovesWithin30s()
    {
        var clock = Stopwatch.StartNew();
        await using var farm = await Farm.StartAsync(postgres, nodes: 3, Ct);
        var devices = await farm.RegisterAsync(40, Ct);
        var leaderName = (await farm.WaitForLeaderAsync(farm.Nodes[0], TimeSpan.FromSeconds(20), Ct)).Leader;
        var victim = farm.Nodes.Single(n => n.Name == leaderName); // the hardest case: the leader dies
        var victimInstance = await farm.InstanceOfAsync(victim.Name, Ct);
        var survivor = farm.Nodes.First(n => n != victim);
        var started = clock.Elapsed;

        // A steady load: every 200 ms a round of new-mail callbacks, one per device, spread over the nodes; the
        // leader is killed while a round is in flight, and a watcher notes when a survivor leads.
        var load = new LoadRun(farm, devices);
        HashSet<string> inFlightAtKill = [];
        Task<(FarmView View, TimeSpan At)>? newLeader = null;
        var killedAt = TimeSpan.Zero;
        for (var round = 1; round <= 30; round++)
        {
            var posting = load.RoundAsync(round, Ct);
            if (round == 10)
            {
                await Task.Delay(10, Ct);
                await victim.Process.KillAsync();
                killedAt = clock.Elapsed;
                victim.Dead = true;
                newLeader = WatchAsync();
                inFlightAtKill = await farm.TokensLeasedToAsync(victimInstance, Ct);
            }

            await posting;
            await Task.Delay(200, Ct);
        }

        var loadDone = clock.Elapsed;

        // Leadership moved to a survivor within 30 s of the kill (the dead leader's lease ran out first).
        var (view, takeover) = await newLeader!;
        Assert.NotEqual(victim.Name, view.Leader);
        Assert.True(takeover <= TimeSpan.FromSeconds(30), $"leadership moved after {takeover}");

        async Task<(FarmView, TimeSpan)> WatchAsync()
        {
            var leads = await farm.WaitForLeaderAsync(survivor, TimeSpan.FromSeconds(30), Ct, notNamed: victim.Name);
            return (leads, clock.Elapsed - killedAt);
        }

        // Every acknowledged event is delivered: each device's last acknowledged badge reaches APNs.
        await load.WaitForDeliveryAsync(TimeSpan.FromSeconds(60), Ct);
        var duplicates = load.Duplicates();
        var report = $"{load.Acknowledged} events acknowledged ({load.FailedAttempts} callbacks sent to the dead node got no answer and were posted again to a live one), " +
            $"{farm.Apns.Requests.Count} pushes, {duplicates.Values.Sum(d => d.Extra)} duplicates of {inFlightAtKill.Count} sends in flight at the kill, " +
            $"leadership moved after {takeover.TotalSeconds:0.0} s; start {started.TotalSeconds:0} s, load {(loadDone - started).TotalSeconds:0} s, delivery {(clock.Elapsed - loadDone).TotalSeconds:0} s";
        TestContext.Current.TestOutputHelper?.WriteLine("farm kill: " + report);

        // Duplicates only for sends in flight at the kill (leased to the dead node).
        Assert.All(duplicates.Values, d => Assert.Contains(d.Token, inFlightAtKill));

        // The node view shows the dead node as down and a survivor as the leader.
        await farm.WaitForViewAsync(survivor, v => v.Nodes.Single(n => n.Name == victim.Name).Status == "down", TimeSpan.FromSeconds(20), Ct);
        var final = await farm.ViewAsync(survivor, Ct);
        Assert.Equal(3, final.Nodes.Count);
        Assert.Equal(2, final.Nodes.Count(n => n.Status == "up"));
        Assert.Single(final.Nodes, n => n.Leader);
    }

    [Fact]
    public async Task PostgresRestartedUnderLoad_CallbacksAnswer5xxWhileDown_NodesReconnect_NothingAcknowledgedLost()
    {
        await using var farm = await Farm.StartAsync(postgres, nodes: 2, Ct);
        var devices = await farm.RegisterAsync(40, Ct);
        var load = new LoadRun(farm, devices);
        for (var round = 1; round <= 10; round++)
        {
            await load.RoundAsync(round, Ct);
            await Task.Delay(100, Ct);
        }

        await postgres.StopAsync();
        int downAcknowledged;
        int downRefused;
        try
        {
            // While the database is down, nothing may be acknowledged: Exchange must get a 5xx and retry.
            (downAcknowledged, downRefused) = await load.RoundWhileDownAsync(11, Ct);
        }
        finally
        {
            await postgres.StartAsync();
        }

        Assert.Equal(0, downAcknowledged);
        Assert.Equal(devices.Count, downRefused);

        // The nodes reconnect by themselves: callbacks are acknowledged again within a few seconds.
        await load.WaitUntilAcceptedAsync(12, TimeSpan.FromSeconds(30), Ct);
        for (var round = 13; round <= 20; round++)
        {
            await load.RoundAsync(round, Ct);
            await Task.Delay(100, Ct);
        }

        await load.WaitForDeliveryAsync(TimeSpan.FromSeconds(60), Ct);
        foreach (var node in farm.Nodes)
        {
            var view = await farm.ViewAsync(node, Ct);
            Assert.All(view.Nodes, n => Assert.Equal("up", n.Status));
        }

        TestContext.Current.TestOutputHelper?.WriteLine(
            $"postgres restart: {load.Acknowledged} acknowledged, {downRefused} of {devices.Count} callbacks answered 5xx while the database was down, " +
            $"{load.Duplicates().Values.Sum(d => d.Extra)} duplicates");
    }

    [Fact]
    public async Task FarmThrottle_ThreeNodesShareOneLimit()
    {
        const int RatePerMinute = 3000; // 50 a second for the whole farm
        var window = TimeSpan.FromSeconds(40);
        await using var farm = await Farm.StartAsync(postgres, nodes: 3, Ct);
        var admin = farm.Nodes[0].Client;
        using (var put = await admin.PutAsync(
            "v1/admin/settings",
            new StringContent("{\"lanes\":{\"standard\":{\"ratePerMinute\":" + RatePerMinute.ToString(CultureInfo.InvariantCulture) + ",\"scope\":\"farm\"}}}", Encoding.UTF8, "application/json"),
            Ct))
        {
            Assert.True(put.IsSuccessStatusCode, await put.Content.ReadAsStringAsync(Ct));
        }

        // Every node must apply the setting (within 5 s) before the backlog arrives.
        await Task.Delay(TimeSpan.FromSeconds(6), Ct);

        // A backlog larger than the window can drain, so every node always has standard work to claim.
        var count = (int)(RatePerMinute / 60.0 * (window.TotalSeconds + 20));
        var tokens = Enumerable.Range(0, count).Select(i => i.ToString("x8", CultureInfo.InvariantCulture) + new string('d', 56)).ToArray();
        using (var send = await admin.PostAsJsonAsync(
            "v1/notifications",
            new { lane = "standard", kind = "badge", badge = 1, devices = tokens.Select(t => new { platform = "apns", token = t }).ToArray() },
            Ct))
        {
            Assert.True(send.IsSuccessStatusCode, await send.Content.ReadAsStringAsync(Ct));
        }

        // Measure after the first seconds (the bucket starts full: one second's worth of burst), over the window.
        await Task.Delay(TimeSpan.FromSeconds(5), Ct);
        var start = DateTimeOffset.UtcNow;
        await Task.Delay(window, Ct);
        var end = DateTimeOffset.UtcNow;
        var sent = farm.Apns.Requests.Count(r => r.ReceivedAt >= start && r.ReceivedAt < end);
        var expected = RatePerMinute / 60.0 * (end - start).TotalSeconds;
        var error = (sent - expected) / expected * 100;
        var perNode = await farm.SendsPerNodeAsync(Ct);
        TestContext.Current.TestOutputHelper?.WriteLine(
            $"farm throttle: {sent} sent in {(end - start).TotalSeconds:0.0} s by 3 nodes at {RatePerMinute}/min farm-wide, expected {expected:0}: error {error:+0.00;-0.00} % ({perNode})");
        Assert.InRange(error, -5.0, 5.0);
    }

    /// <summary>One node of the test farm.</summary>
    private sealed class Node(string name, HeraldProcess process) : IAsyncDisposable
    {
        public string Name { get; } = name;

        public HeraldProcess Process { get; } = process;

        public bool Dead { get; set; }

        public HttpClient Client { get; } = new()
        {
            BaseAddress = new Uri(process.BaseUrl + "/"),
            Timeout = TimeSpan.FromSeconds(20),
            DefaultRequestHeaders = { Authorization = new AuthenticationHeaderValue("Bearer", GatewayHarness.AdminKey) },
        };

        public async ValueTask DisposeAsync()
        {
            Client.Dispose();
            await Process.DisposeAsync();
        }
    }

    private sealed record NodeView(string Name, string Status, bool Leader, string Instance, double SendsPerSecond, int QueueClaimed);

    private sealed record FarmView(string? Leader, long? Term, IReadOnlyList<NodeView> Nodes);

    /// <summary>A registered device: its token and the path of its callback URL.</summary>
    private sealed record Device(int Index, string Token, string CallbackPath);

    /// <summary>N herald processes on one fresh database of the cluster, and the fake APNs they send to.</summary>
    private sealed class Farm : IAsyncDisposable
    {
        private readonly PostgresServer _postgres;
        private readonly string _connectionString;

        private Farm(PostgresServer postgres, string connectionString, FakeApnsServer apns, List<Node> nodes)
        {
            _postgres = postgres;
            _connectionString = connectionString;
            Apns = apns;
            Nodes = nodes;
        }

        public FakeApnsServer Apns { get; }

        public List<Node> Nodes { get; }

        public static async Task<Farm> StartAsync(PostgresServer postgres, int nodes, CancellationToken ct)
        {
            var connectionString = (await postgres.CreateDatabaseAsync("farm")).Replace("Timeout=15", "Timeout=3", StringComparison.Ordinal);
            var apns = await FakeApnsServer.StartAsync(cancellationToken: ct);
            var pem = apns.GenerateSigningKey(GatewayHarness.TeamId, GatewayHarness.KeyId, GatewayHarness.Topic);
            var secret = Convert.ToBase64String(RandomNumberGenerator.GetBytes(32));
            var list = new List<Node>();
            var farm = new Farm(postgres, connectionString, apns, list);
            try
            {
                for (var i = 1; i <= nodes; i++)
                {
                    var settings = GatewayHarness.Settings(Path.GetTempPath(), apns.BaseUrl, pem);
                    settings["Herald:Database"] = "postgres:" + connectionString;
                    settings["HERALD_SECRET_KEY"] = secret;
                    settings["Herald:NodeName"] = "node-" + i;
                    settings["Herald:Region"] = "emea";
                    settings["Herald:PublicBaseUrl"] = PublicBaseUrl;
                    settings["Herald:Dispatch:Lease"] = "00:00:10"; // a dead node's claims go back after 10 s
                    settings["Herald:Dispatch:ReaperInterval"] = "00:00:02";
                    settings["Herald:Farm:HeartbeatInterval"] = "00:00:01";
                    settings["Herald:Farm:DownAfter"] = "00:00:05";
                    list.Add(new Node("node-" + i, await HeraldProcess.StartAsync(settings, ct)));
                }

                return farm;
            }
            catch
            {
                await farm.DisposeAsync();
                throw;
            }
        }

        public async Task<List<Device>> RegisterAsync(int count, CancellationToken ct)
        {
            var devices = new List<Device>();
            for (var i = 0; i < count; i++)
            {
                var token = i.ToString("x4", CultureInfo.InvariantCulture) + new string('e', 60);
                var node = Nodes[i % Nodes.Count];
                using var response = await node.Client.PostAsJsonAsync("v1/registrations", new { platform = "apns", token, source = "ews-push" }, ct);
                var text = await response.Content.ReadAsStringAsync(ct);
                Assert.True(response.IsSuccessStatusCode, text);
                using var json = JsonDocument.Parse(text);
                var url = new Uri(json.RootElement.GetProperty("callbackUrl").GetString()!);
                Assert.Equal(new Uri(PublicBaseUrl).Host, url.Host); // callback URLs name the region, not a node
                devices.Add(new Device(i, token, url.PathAndQuery));
            }

            return devices;
        }

        public async Task<FarmView> ViewAsync(Node node, CancellationToken ct)
        {
            using var json = JsonDocument.Parse(await node.Client.GetStringAsync("v1/admin/nodes", ct));
            var root = json.RootElement;
            var nodes = root.GetProperty("nodes").EnumerateArray().Select(n => new NodeView(
                n.GetProperty("name").GetString()!,
                n.GetProperty("status").GetString()!,
                n.GetProperty("leader").GetBoolean(),
                n.GetProperty("instance").GetString()!,
                n.GetProperty("load").GetProperty("sendsPerSecond").GetDouble(),
                n.GetProperty("load").GetProperty("queueClaimed").GetInt32())).ToList();
            return new FarmView(
                root.TryGetProperty("leader", out var leader) ? leader.GetString() : null,
                root.TryGetProperty("term", out var term) ? term.GetInt64() : null,
                nodes);
        }

        public async Task<FarmView> WaitForViewAsync(Node node, Func<FarmView, bool> done, TimeSpan within, CancellationToken ct)
        {
            var clock = Stopwatch.StartNew();
            while (true)
            {
                try
                {
                    var view = await ViewAsync(node, ct);
                    if (done(view))
                    {
                        return view;
                    }

                    if (clock.Elapsed > within)
                    {
                        Assert.Fail($"the node view did not get there in {within}: {JsonSerializer.Serialize(view)}");
                    }
                }
                catch (HttpRequestException) when (clock.Elapsed <= within)
                {
                    // The node is reconnecting.
                }

                await Task.Delay(250, ct);
            }
        }

        public Task<FarmView> WaitForLeaderAsync(Node node, TimeSpan within, CancellationToken ct, string? notNamed = null)
            => WaitForViewAsync(node, v => v.Leader is not null && v.Leader != notNamed && v.Nodes.Any(n => n.Leader && n.Name == v.Leader), within, ct);

        public async Task<string> InstanceOfAsync(string name, CancellationToken ct)
            => (await ViewAsync(Nodes[0], ct)).Nodes.Single(n => n.Name == name).Instance;

        /// <summary>The tokens of the notifications leased to <paramref name="instance"/> (being sent by it) right now.</summary>
        public async Task<HashSet<string>> TokensLeasedToAsync(string instance, CancellationToken ct)
        {
            await using var connection = new NpgsqlConnection(_connectionString);
            await connection.OpenAsync(ct);
            await using var command = new NpgsqlCommand("SELECT token FROM notifications WHERE state = 1 AND lease_owner = @owner", connection);
            command.Parameters.AddWithValue("owner", instance);
            var tokens = new HashSet<string>(StringComparer.Ordinal);
            await using var reader = await command.ExecuteReaderAsync(ct);
            while (await reader.ReadAsync(ct))
            {
                tokens.Add(reader.GetString(0));
            }

            return tokens;
        }

        /// <summary>How many sends each node recorded as its own (attempt rows are not per node: count by the APNs' view of the farm).</summary>
        public async Task<string> SendsPerNodeAsync(CancellationToken ct)
        {
            var view = await ViewAsync(Nodes[0], ct);
            return string.Join(", ", view.Nodes.Select(n => $"{n.Name} {n.SendsPerSecond:0.0}/s"));
        }

        public async ValueTask DisposeAsync()
        {
            foreach (var node in Nodes)
            {
                await node.DisposeAsync();
            }

            await Apns.DisposeAsync();
            try
            {
                await _postgres.DropDatabaseAsync(_connectionString);
            }
            catch (InvalidOperationException)
            {
                // The cluster is stopping with the fixture anyway.
            }
        }
    }

    /// <summary>
    /// Rounds of EWS new-mail callbacks (badge = round) for every device, each posted to one node (round robin over
    /// the farm, dead or alive: the load balancer has not noticed yet) and, when that gets no answer or a 5xx, again to
    /// a live node, as Exchange retries; and the bookkeeping of what was acknowledged and what reached APNs.
    /// </summary>
    private sealed class LoadRun(Farm farm, IReadOnlyList<Device> devices)
    {
        private readonly ConcurrentDictionary<string, int> _lastAcknowledged = new(StringComparer.Ordinal);
        private int _acknowledged;
        private int _failedAttempts;

        public int Acknowledged => _acknowledged;

        /// <summary>Callbacks that got no answer or a 5xx (and were posted again).</summary>
        public int FailedAttempts => _failedAttempts;

        public Task RoundAsync(int round, CancellationToken ct) => Task.WhenAll(devices.Select(d => DeliverAsync(d, round, ct)));

        /// <summary>One attempt per device while the database is down: how many were acknowledged (must be none) and how many got a 5xx.</summary>
        public async Task<(int Acknowledged, int Refused)> RoundWhileDownAsync(int round, CancellationToken ct)
        {
            var before = _acknowledged;
            var refused = 0;
            await Task.WhenAll(devices.Select(async d =>
            {
                if (await TryPostAsync(d, round, farm.Nodes[(d.Index + round) % farm.Nodes.Count], ct) is { } status && status >= 500)
                {
                    Interlocked.Increment(ref refused);
                }
            }));
            return (_acknowledged - before, refused);
        }

        /// <summary>Posts round <paramref name="round"/> again and again until every callback is acknowledged.</summary>
        public async Task WaitUntilAcceptedAsync(int round, TimeSpan within, CancellationToken ct)
        {
            var clock = Stopwatch.StartNew();
            var pending = devices.ToList();
            while (pending.Count > 0)
            {
                Assert.True(clock.Elapsed < within, $"{pending.Count} callbacks still refused {within} after the database came back");
                var results = await Task.WhenAll(pending.Select(async d => (Device: d, Status: await TryPostAsync(d, round, farm.Nodes[d.Index % farm.Nodes.Count], ct))));
                pending = [.. results.Where(r => r.Status != 200).Select(r => r.Device)];
                if (pending.Count > 0)
                {
                    await Task.Delay(500, ct);
                }
            }
        }

        public async Task WaitForDeliveryAsync(TimeSpan within, CancellationToken ct)
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
            timeout.CancelAfter(within);
            try
            {
                foreach (var (token, badge) in _lastAcknowledged)
                {
                    var expected = $"\"badge\":{badge}";
                    await farm.Apns.WaitForRequestAsync(r => r.Token == token && r.Accepted && r.Payload!.Contains(expected, StringComparison.Ordinal), timeout.Token);
                }
            }
            catch (OperationCanceledException) when (!ct.IsCancellationRequested)
            {
                var requests = farm.Apns.Requests;
                var missing = _lastAcknowledged.Where(kv => !requests.Any(r => r.Token == kv.Key && r.Accepted && r.Payload!.Contains($"\"badge\":{kv.Value}", StringComparison.Ordinal)));
                Assert.Fail($"acknowledged events were not delivered within {within}: " + string.Join(", ", missing.Select(m => m.Key[..4] + " badge " + m.Value)));
            }
        }

        /// <summary>
        /// Notifications APNs accepted more than once (the same apns-id: one queued notification sent twice, which is
        /// what a resend after a crash looks like): apns-id → (token, extra copies).
        /// </summary>
        public Dictionary<string, (string Token, int Extra)> Duplicates()
            => farm.Apns.Requests
                .Where(r => r.Accepted && r.RequestApnsId is not null)
                .GroupBy(r => r.RequestApnsId!, StringComparer.OrdinalIgnoreCase)
                .Where(g => g.Count() > 1)
                .ToDictionary(g => g.Key, g => (g.First().Token, g.Count() - 1), StringComparer.OrdinalIgnoreCase);

        private async Task DeliverAsync(Device device, int round, CancellationToken ct)
        {
            var node = farm.Nodes[(device.Index + round) % farm.Nodes.Count];
            for (var attempt = 1; attempt <= 5; attempt++)
            {
                if (await TryPostAsync(device, round, node, ct) == 200)
                {
                    return;
                }

                Interlocked.Increment(ref _failedAttempts);
                var live = farm.Nodes.Where(n => !n.Dead).ToList();
                node = live[(device.Index + round + attempt) % live.Count];
                await Task.Delay(100 * attempt, ct);
            }

            Assert.Fail($"device {device.Index}: round {round} was refused five times by a farm with live nodes");
        }

        /// <summary>One callback: the HTTP status, or null when no answer came (connection refused or reset).</summary>
        private async Task<int?> TryPostAsync(Device device, int round, Node node, CancellationToken ct)
        {
            try
            {
                var (status, body) = await Soap.PostAsync(node.Client, device.CallbackPath, Soap.NewMail("SUB-" + device.Index, round), cancellationToken: ct);
                if (status == 200)
                {
                    Assert.Equal("OK", Soap.StatusOf(body));
                    Interlocked.Increment(ref _acknowledged);
                    _lastAcknowledged.AddOrUpdate(device.Token, round, (_, old) => Math.Max(old, round));
                }
                else
                {
                    Assert.True(status >= 500, $"callback answered {status}: {body}");
                }

                return status;
            }
            catch (HttpRequestException)
            {
                return null; // no answer: not acknowledged
            }
        }
    }
}
