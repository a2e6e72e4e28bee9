using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Text.Json;
using Herald.Simulators.Apns;
using Herald.Simulators.Exchange.Streaming;
using Herald.Simulators.Graph;
using Herald.Testing;
using Npgsql;
using Xunit;

namespace Herald.Server.Tests;

/// <summary>
/// Long-lived work in a farm of real <c>herald serve</c> processes on one PostgreSQL: EWS streaming groups and Graph
/// subscription renewals are owned per item through fenced work leases, spread over the nodes, and a node killed with
/// SIGKILL has its items taken over by the survivors within 30 s. Fail (never skip) when PostgreSQL cannot start.
/// </summary>
public sealed class FarmWorkTests(PostgresServer postgres) : IClassFixture<PostgresServer>
{
    private const string Connector = "contoso-exchange";
    private static readonly TimeSpan Takeover = TimeSpan.FromSeconds(30);

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static void Report(string line) => TestContext.Current.TestOutputHelper?.WriteLine(line);

    [Fact]
    public async Task EwsStreaming_ThreeNodes_KillTheNodeHoldingGroups_GroupsMoveWithin30s_LaterMailDelivered_MissedWindowSyncs()
    {
        await using var ews = await EwsFarm.StartAsync(postgres, 71, Ct);
        var (exchange, farm, mailboxes, backendOf, tokenOf) = (ews.Exchange, ews.Farm, ews.Mailboxes, ews.BackendOf, ews.TokenOf);
        var backends = ews.Backends;
        var spreadClock = Stopwatch.StartNew();
        var groups = await ews.WaitForSpreadAsync(Ct);
        var spreadAfter = spreadClock.Elapsed;
        var instances = await farm.InstancesAsync(Ct);
        var victimInstance = groups.GroupBy(g => g.Owner).OrderByDescending(g => g.Count()).First().Key;
        var victim = farm.Nodes.Single(n => instances[n.Name] == victimInstance);
        var victimGroups = groups.Where(g => g.Owner == victimInstance).Select(g => g.Key).ToHashSet(StringComparer.Ordinal);
        var victimMailboxes = ews.MailboxesOf(victimGroups);
        Assert.NotEmpty(victimMailboxes);

        // Steady new-mail load, round robin over the mailboxes; the node with the most groups is killed mid-load.
        var emits = new ConcurrentQueue<(string Mailbox, int Unread, DateTimeOffset At)>();
        using var stopLoad = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        var load = Task.Run(async () =>
        {
            for (var n = 0; !stopLoad.IsCancellationRequested; n++)
            {
                var mailbox = mailboxes[n % mailboxes.Length];
                var emit = exchange.EmitNewMail(mailbox, "subject " + n, "Sender", "sender@example.org");
                emits.Enqueue((mailbox, emit.UnreadCount, DateTimeOffset.UtcNow));
                try
                {
                    await Task.Delay(150, stopLoad.Token);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
        }, CancellationToken.None);

        await Task.Delay(TimeSpan.FromSeconds(3), Ct);
        await victim.Process.KillAsync();
        var killedAt = DateTimeOffset.UtcNow;
        var clock = Stopwatch.StartNew();

        // The victim's groups are leased by survivors...
        TimeSpan? movedAfter = null;
        while (movedAfter is null)
        {
            var now = await farm.LeasesAsync(EwsGroupPrefix, Ct);
            if (victimGroups.All(k => now.Any(l => l.Key == k && l.Live && l.Owner != victimInstance)))
            {
                movedAfter = clock.Elapsed;
                groups = now;
            }
            else
            {
                Assert.True(clock.Elapsed < Takeover + TimeSpan.FromSeconds(15), $"the dead node's groups did not move: {string.Join(", ", now)}");
                await Task.Delay(200, Ct);
            }
        }

        // ...and streamed by them: once subscribed anew, each of the victim's mailboxes gets a sync wake-up for the window
        // nobody streamed it (the missed-window events).
        var resumedAt = new Dictionary<string, DateTimeOffset>(StringComparer.OrdinalIgnoreCase);
        foreach (var mailbox in victimMailboxes)
        {
            using var wait = CancellationTokenSource.CreateLinkedTokenSource(Ct);
            wait.CancelAfter(Takeover);
            var sync = await farm.Apns.WaitForRequestAsync(
                r => r.Token == tokenOf[mailbox] && r.Accepted && r.ReceivedAt >= killedAt && r.PushType == "background" && r.Payload!.Contains("content-available", StringComparison.Ordinal),
                wait.Token);
            resumedAt[mailbox] = sync.ReceivedAt;
        }

        var resumedAfter = resumedAt.Values.Max() - killedAt;
        Assert.True(movedAfter <= Takeover, $"groups moved after {movedAfter}");
        Assert.True(resumedAfter <= Takeover, $"streaming resumed after {resumedAfter}");
        Assert.DoesNotContain(groups.Where(g => g.Live), g => g.Owner == victimInstance);
        Assert.Equal(2, groups.Where(g => g.Live).Select(g => g.Owner).Distinct().Count());

        await Task.Delay(TimeSpan.FromSeconds(6), Ct);
        await stopLoad.CancelAsync();
        await load;

        // Every new mail emitted after its mailbox was streamed again (for the survivors' own mailboxes: all of them)
        // reaches the device: a push with that badge or, when the dispatcher coalesced a burst, a later one.
        var all = emits.ToArray();
        var owed = all.Where(e => !victimMailboxes.Contains(e.Mailbox) || e.At > resumedAt[e.Mailbox]).ToList();
        Assert.Contains(owed, e => victimMailboxes.Contains(e.Mailbox));
        var deliveryClock = Stopwatch.StartNew();
        List<(string Mailbox, int Unread, DateTimeOffset At)> missing;
        while (true)
        {
            var requests = farm.Apns.Requests.Where(r => r.Accepted && r.Payload!.Contains("\"badge\"", StringComparison.Ordinal)).ToList();
            missing = [.. owed.Where(e => !requests.Any(r => r.Token == tokenOf[e.Mailbox] && BadgeOf(r.Payload!) >= e.Unread))];
            var last = mailboxes.Select(m => all.Where(e => e.Mailbox == m).MaxBy(e => e.Unread)).Where(e => e != default)
                .Where(e => !requests.Any(r => r.Token == tokenOf[e.Mailbox] && BadgeOf(r.Payload!) == e.Unread)).ToList();
            if (missing.Count == 0 && last.Count == 0)
            {
                break;
            }

            if (deliveryClock.Elapsed >= TimeSpan.FromSeconds(45))
            {
                foreach (var node in farm.Nodes)
                {
                    Report($"---- {node.Name} ({instances[node.Name]})\n" + node.Process.Output);
                }

                Assert.Fail($"not delivered: {string.Join(", ", missing.Concat(last).Select(e => e.Mailbox + " badge " + e.Unread + " at " + e.At.ToString("HH:mm:ss.fff", CultureInfo.InvariantCulture)))}; " +
                    $"victim {victim.Name} had {string.Join(" ", victimMailboxes)}, killed {killedAt:HH:mm:ss.fff}, resumed {string.Join(" ", resumedAt.Select(r => r.Key[..6] + "@" + r.Value.ToString("HH:mm:ss.fff", CultureInfo.InvariantCulture)))}; " +
                    $"subscriptions {string.Join(" ", mailboxes.Select(m => m[..6] + "=" + exchange.SubscriptionsOf(m)))}; {exchange.OpenConnections} connections; leases {string.Join(", ", groups)}");
            }

            await Task.Delay(250, Ct);
        }

        // Duplicates: the same badge pushed twice to one device (a group streamed by two nodes would do that).
        var pushes = farm.Apns.Requests.Where(r => r.Accepted && r.Payload!.Contains("\"badge\"", StringComparison.Ordinal)).ToList();
        var duplicates = pushes.GroupBy(r => (r.Token, Badge: BadgeOf(r.Payload!))).Where(g => g.Count() > 1).ToList();
        var lostWindow = all.Count(e => victimMailboxes.Contains(e.Mailbox) && e.At >= killedAt && e.At <= resumedAt[e.Mailbox]);
        Report($"ews streaming farm: 3 nodes, {backends.Length} groups spread after {spreadAfter.TotalSeconds:0.0} s; killed {victim.Name} holding {victimGroups.Count} groups " +
            $"({victimMailboxes.Count} mailboxes); leases moved after {movedAfter.Value.TotalSeconds:0.0} s, streaming resumed (sync wake-ups delivered) after {resumedAfter.TotalSeconds:0.0} s; " +
            $"{all.Length} mails emitted, {owed.Count} owed after takeover all delivered, {lostWindow} in the missed window covered by sync; " +
            $"{duplicates.Sum(d => d.Count() - 1)} duplicate badge pushes ({string.Join(", ", duplicates.Select(d => d.Key.Token[..4] + ":" + d.Key.Badge))})");

        // Duplicates only for sends in flight on the dead node at the kill (resent once its claims expired), never from a
        // group streamed by two nodes at once.
        Assert.All(duplicates, d => Assert.True(d.Min(r => r.ReceivedAt) <= killedAt + TimeSpan.FromSeconds(1), $"duplicate of {d.Key.Token[..4]} badge {d.Key.Badge} first sent {d.Min(r => r.ReceivedAt):HH:mm:ss.fff}, after the kill"));
    }

    [Fact]
    public async Task EwsStreaming_ConnectorChangedThroughOneNode_EveryNodeRestartsWithTheNewSettings()
    {
        await using var ews = await EwsFarm.StartAsync(postgres, 73, Ct);
        var (exchange, farm) = (ews.Exchange, ews.Farm);
        await ews.WaitForSpreadAsync(Ct);

        // A wrong password saved through node 0: every node's streaming stops (the other two hear of it through the
        // database's change feed, migration 0013; their safety-net re-read is 10 minutes away) and cannot reconnect.
        await PutConnectorAsync(farm.Nodes[0], exchange, exchange.Options.BasicPassword + "-wrong");
        var clock = Stopwatch.StartNew();
        while (exchange.OpenConnections > 0)
        {
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(30), $"{exchange.OpenConnections} streaming connections still open with the old settings");
            await Task.Delay(200, Ct);
        }

        Report($"every node dropped the old settings after {clock.Elapsed.TotalSeconds:0.0} s");

        // The right password again, through node 2: every group streams again, spread over the three nodes (the mailboxes'
        // old subscriptions linger at Exchange until they expire, as Exchange's do, so they are not counted here).
        await PutConnectorAsync(farm.Nodes[2], exchange, exchange.Options.BasicPassword);
        clock.Restart();
        while (true)
        {
            var groups = await farm.LeasesAsync(EwsGroupPrefix, Ct);
            if (groups.Count == ews.Backends.Length && groups.All(g => g.Live) && groups.Select(g => g.Owner).Distinct().Count() == 3
                && exchange.OpenConnections == ews.Backends.Length)
            {
                break;
            }

            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(90), $"streaming did not resume: {string.Join(", ", groups)}; {exchange.OpenConnections} connections");
            await Task.Delay(250, Ct);
        }

        Report($"streaming resumed on every node after {clock.Elapsed.TotalSeconds:0.0} s");
    }

    private static async Task PutConnectorAsync(FarmNode node, FakeEwsServer exchange, string? password)
    {
        using var put = await node.Client.PutAsJsonAsync("v1/connectors/" + Connector, new
        {
            kind = "ews",
            autodiscover = true,
            autodiscoverUrl = exchange.AutodiscoverUrl,
            auth = new { type = "basic", username = exchange.Options.BasicUsername, password },
        }, Ct);
        Assert.True(put.IsSuccessStatusCode, await put.Content.ReadAsStringAsync(Ct));
    }

    [Fact]
    public async Task EwsStreaming_NodeFrozenPastItsLeases_StopsItsGroupsOnThaw_IngestsNothingFromThem()
    {
        await using var ews = await EwsFarm.StartAsync(postgres, 72, Ct);
        var (exchange, farm, mailboxes, tokenOf) = (ews.Exchange, ews.Farm, ews.Mailboxes, ews.TokenOf);
        var groups = await ews.WaitForSpreadAsync(Ct);
        var instances = await farm.InstancesAsync(Ct);
        var victimInstance = groups.GroupBy(g => g.Owner).OrderByDescending(g => g.Count()).First().Key;
        var victim = farm.Nodes.Single(n => instances[n.Name] == victimInstance);
        var victimGroups = groups.Where(g => g.Owner == victimInstance).Select(g => g.Key).ToHashSet(StringComparer.Ordinal);
        var victimMailboxes = ews.MailboxesOf(victimGroups);

        // The node freezes (SIGSTOP) with its streaming connections open: its leases run out and the survivors take its
        // groups; mail keeps arriving, and Exchange keeps queueing it on the frozen node's subscriptions too.
        await victim.Process.PauseAsync();
        var pausedAt = DateTimeOffset.UtcNow;
        var clock = Stopwatch.StartNew();
        while (!victimGroups.All(k => groups.Any(l => l.Key == k && l.Live && l.Owner != victimInstance)))
        {
            Assert.True(clock.Elapsed < Takeover, $"the frozen node's groups did not move: {string.Join(", ", groups)}");
            await Task.Delay(200, Ct);
            groups = await farm.LeasesAsync(EwsGroupPrefix, Ct);
        }

        var movedAfter = clock.Elapsed;
        foreach (var mailbox in victimMailboxes)
        {
            using var wait = CancellationTokenSource.CreateLinkedTokenSource(Ct);
            wait.CancelAfter(Takeover);
            await farm.Apns.WaitForRequestAsync(r => r.Token == tokenOf[mailbox] && r.Accepted && r.ReceivedAt >= pausedAt && r.PushType == "background", wait.Token);
        }

        for (var round = 0; round < 3; round++)
        {
            foreach (var mailbox in victimMailboxes)
            {
                exchange.EmitNewMail(mailbox, "while frozen " + round, "Sender", "sender@example.org");
            }

            await Task.Delay(300, Ct);
        }

        // Thawed, it must see at once that its leases are gone: it drops what its old subscriptions still deliver and
        // unsubscribes them, so each mailbox is streamed once again.
        await victim.Process.ResumeAsync();
        var thawClock = Stopwatch.StartNew();
        while (!(victimMailboxes.All(m => exchange.SubscriptionsOf(m) == 1) && exchange.OpenConnections == ews.Backends.Length))
        {
            Assert.True(thawClock.Elapsed < TimeSpan.FromSeconds(20), $"the thawed node still streams its old groups: {string.Join(" ", mailboxes.Select(m => m[..6] + "=" + exchange.SubscriptionsOf(m)))}, {exchange.OpenConnections} connections");
            await Task.Delay(200, Ct);
        }

        var stoppedAfter = thawClock.Elapsed;

        // The farm settles (the thawed node is live again and may get a share back); then one more mail per mailbox is
        // delivered with its exact badge, exactly once.
        await ews.WaitForSpreadAsync(Ct, owners: 3);
        await Task.Delay(TimeSpan.FromSeconds(2), Ct);
        var final = mailboxes.ToDictionary(m => m, m => exchange.EmitNewMail(m, "final", "Sender", "sender@example.org").UnreadCount, StringComparer.OrdinalIgnoreCase);
        foreach (var (mailbox, badge) in final)
        {
            using var wait = CancellationTokenSource.CreateLinkedTokenSource(Ct);
            wait.CancelAfter(TimeSpan.FromSeconds(20));
            await farm.Apns.WaitForRequestAsync(r => r.Token == tokenOf[mailbox] && r.Accepted && r.Payload!.Contains("\"badge\":" + badge.ToString(CultureInfo.InvariantCulture), StringComparison.Ordinal), wait.Token);
        }

        await Task.Delay(TimeSpan.FromSeconds(2), Ct);
        var pushes = farm.Apns.Requests.Where(r => r.Accepted && r.Payload!.Contains("\"badge\"", StringComparison.Ordinal)).ToList();

        // Nothing ingested twice: the same badge in two different notifications (two apns-ids) would be a group's events
        // taken in by both the new owner and the thawed node.
        var doubled = pushes.GroupBy(r => (r.Token, Badge: BadgeOf(r.Payload!)))
            .Where(g => g.Select(r => r.RequestApnsId).Distinct(StringComparer.OrdinalIgnoreCase).Count() > 1)
            .ToList();
        var log = victim.Process.Output;
        Report($"ews frozen node: {victim.Name} held {victimGroups.Count} groups ({victimMailboxes.Count} mailboxes); they moved {movedAfter.TotalSeconds:0.0} s after SIGSTOP; " +
            $"after SIGCONT it stopped streaming them within {stoppedAfter.TotalSeconds:0.0} s; {doubled.Count} badges ingested twice; " +
            $"lease-lost log lines {CountOf(log, "Lost the lease on ews-group")}, events dropped by fencing {CountOf(log, "was lost; dropped")}");
        Assert.Empty(doubled);
        Assert.Contains("Lost the lease on ews-group", log, StringComparison.Ordinal);
        Assert.All(final, f => Assert.Single(pushes, r => r.Token == tokenOf[f.Key] && BadgeOf(r.Payload!) == f.Value));
    }

    private static int CountOf(string text, string what)
    {
        var count = 0;
        for (var i = text.IndexOf(what, StringComparison.Ordinal); i >= 0; i = text.IndexOf(what, i + what.Length, StringComparison.Ordinal))
        {
            count++;
        }

        return count;
    }

    [Fact]
    public async Task GraphRenewals_TwoNodes_SharesSpread_OneSubscriptionPerMailbox_KilledNodesRenewalsPickedUpWithin30s()
    {
        const string ClientId = "11111111-2222-3333-4444-555555555555";
        const string ClientSecret = "graph-secret-value";
        await using var graph = await FakeGraphServer.StartAsync(new FakeGraphOptions { GrantedLifetime = TimeSpan.FromSeconds(60) }, cancellationToken: Ct);
        graph.RegisterApplication(ClientId, ClientSecret);
        var mailboxes = Enumerable.Range(0, 12).Select(i => "g" + i.ToString("00", CultureInfo.InvariantCulture) + "@contoso.com").ToArray();
        foreach (var mailbox in mailboxes)
        {
            graph.AddMailbox(mailbox);
        }

        // Each node's notification URLs name itself here (Graph validates them when a subscription is created).
        await using var farm = await ProcessFarm.StartAsync(postgres, 2, port => new Dictionary<string, string?>
        {
            ["Herald:PublicBaseUrl"] = "http://127.0.0.1:" + port.ToString(CultureInfo.InvariantCulture),
            ["Herald:Graph:ReconcileInterval"] = "00:00:02",
        }, Ct);
        using (var put = await farm.Nodes[0].Client.PutAsJsonAsync("v1/connectors/o365", new
        {
            kind = "graph",
            baseUrl = graph.BaseUrl,
            auth = new { type = "oauth2", tokenUrl = graph.TokenUrl, clientId = ClientId, clientSecret = ClientSecret },
        }, Ct))
        {
            Assert.True(put.IsSuccessStatusCode, await put.Content.ReadAsStringAsync(Ct));
        }

        for (var i = 0; i < mailboxes.Length; i++)
        {
            using var reg = await farm.Nodes[i % 2].Client.PostAsJsonAsync("v1/registrations", new { platform = "apns", token = "9c" + i.ToString("x2", CultureInfo.InvariantCulture) + new string('d', 60), source = "graph", mailbox = mailboxes[i], connector = "o365", style = "badge" }, Ct);
            Assert.True(reg.IsSuccessStatusCode, await reg.Content.ReadAsStringAsync(Ct));
        }

        // One subscription per mailbox, the eight shares spread over both nodes.
        var clock = Stopwatch.StartNew();
        IReadOnlyList<LeaseRow> shares;
        while (true)
        {
            shares = await farm.LeasesAsync("graph-renewals:", Ct);
            if (graph.Subscriptions.Count == mailboxes.Length && shares.Count(s => s.Live) == 8 && shares.Select(s => s.Owner).Distinct().Count() == 2)
            {
                break;
            }

            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(90), $"subscriptions {graph.Subscriptions.Count}, shares {string.Join(", ", shares)}");
            await Task.Delay(250, Ct);
        }

        // Watch the subscriptions throughout: never two for one mailbox, never one lapsed.
        var violations = new ConcurrentQueue<string>();
        using var stopWatching = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        var watcher = Task.Run(async () =>
        {
            while (!stopWatching.IsCancellationRequested)
            {
                var live = graph.Subscriptions;
                foreach (var mailbox in mailboxes)
                {
                    var count = live.Count(s => s.Resource.Contains(Uri.EscapeDataString(mailbox), StringComparison.OrdinalIgnoreCase));
                    if (count != 1)
                    {
                        violations.Enqueue($"{mailbox}: {count} live subscriptions at {DateTimeOffset.UtcNow:HH:mm:ss.fff}");
                    }
                }

                try
                {
                    await Task.Delay(200, stopWatching.Token);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
        }, CancellationToken.None);

        // Let both nodes renew for a while (each subscription is due every 30 s), then kill the second node.
        await Task.Delay(TimeSpan.FromSeconds(35), Ct);
        var instances = await farm.InstancesAsync(Ct);
        var victim = farm.Nodes[1];
        var victimInstance = instances[victim.Name];
        var victimShares = shares.Where(s => s.Owner == victimInstance).Select(s => s.Key).ToHashSet(StringComparer.Ordinal);
        var byId = await farm.GraphSubscriptionSharesAsync(Ct);
        var victimSubscriptions = byId.Where(p => victimShares.Contains("graph-renewals:default:o365#" + p.Value.ToString(CultureInfo.InvariantCulture))).Select(p => p.Key).ToHashSet(StringComparer.Ordinal);
        var renewalsAtKill = graph.Subscriptions.ToDictionary(s => s.Id, s => s.Renewals, StringComparer.Ordinal);
        var renewalsBeforeKill = renewalsAtKill.Values.Sum();
        await victim.Process.KillAsync();
        var killClock = Stopwatch.StartNew();

        TimeSpan? movedAfter = null;
        while (movedAfter is null)
        {
            var now = await farm.LeasesAsync("graph-renewals:", Ct);
            if (victimShares.All(k => now.Any(l => l.Key == k && l.Live && l.Owner != victimInstance)))
            {
                movedAfter = killClock.Elapsed;
            }
            else
            {
                Assert.True(killClock.Elapsed < Takeover + TimeSpan.FromSeconds(15), $"the dead node's shares did not move: {string.Join(", ", now)}");
                await Task.Delay(200, Ct);
            }
        }

        // Every subscription, the dead node's included, is renewed again by the survivor before it could lapse.
        var renewClock = Stopwatch.StartNew();
        while (graph.Subscriptions.Any(s => s.Renewals <= renewalsAtKill.GetValueOrDefault(s.Id)))
        {
            Assert.True(renewClock.Elapsed < TimeSpan.FromSeconds(60), "not renewed after the kill: " + string.Join(", ", graph.Subscriptions.Where(s => s.Renewals <= renewalsAtKill.GetValueOrDefault(s.Id)).Select(s => s.Id)));
            await Task.Delay(250, Ct);
        }

        await stopWatching.CancelAsync();
        await watcher;
        var final = graph.Subscriptions;
        Report($"graph renewals farm: 2 nodes, 8 shares spread ({victimShares.Count} on the victim, {victimSubscriptions.Count} of {mailboxes.Length} subscriptions), " +
            $"{renewalsBeforeKill} renewals before the kill; shares moved {movedAfter.Value.TotalSeconds:0.0} s after SIGKILL; every subscription renewed again within {(killClock.Elapsed).TotalSeconds:0.0} s; " +
            $"{final.Sum(s => s.Renewals)} renewals in all, {violations.Count} moments with a mailbox not having exactly one live subscription");
        Assert.True(movedAfter <= Takeover, $"shares moved after {movedAfter}");
        Assert.Empty(violations);
        Assert.Equal(mailboxes.Length, final.Count);
        Assert.True(final.Select(s => s.Id).ToHashSet().SetEquals(renewalsAtKill.Keys), "no subscription was recreated");

        // Never two renewers: with a 60 s lifetime a subscription is due every 30 s, so over the test it can have been
        // renewed about once per 30 s of its life; two nodes renewing it would double that.
        var lifetime = clock.Elapsed + TimeSpan.FromSeconds(5);
        Assert.All(final, s => Assert.True(s.Renewals <= lifetime.TotalSeconds / 30 + 2, $"{s.Id} renewed {s.Renewals} times in {lifetime}"));
    }

    private const string EwsGroupPrefix = "ews-group:";

    private static int BadgeOf(string payload)
    {
        using var json = JsonDocument.Parse(payload);
        return json.RootElement.GetProperty("aps").TryGetProperty("badge", out var badge) ? badge.GetInt32() : -1;
    }

    /// <summary>Three nodes, the fake Exchange with six back ends (six groups), twelve mailboxes with one device each.</summary>
    private sealed class EwsFarm : IAsyncDisposable
    {
        private EwsFarm(FakeEwsServer exchange, ProcessFarm farm, string[] backends, string[] mailboxes, Dictionary<string, string> backendOf, Dictionary<string, string> tokenOf)
        {
            Exchange = exchange;
            Farm = farm;
            Backends = backends;
            Mailboxes = mailboxes;
            BackendOf = backendOf;
            TokenOf = tokenOf;
        }

        public FakeEwsServer Exchange { get; }

        public ProcessFarm Farm { get; }

        public string[] Backends { get; }

        public string[] Mailboxes { get; }

        public Dictionary<string, string> BackendOf { get; }

        public Dictionary<string, string> TokenOf { get; }

        public static async Task<EwsFarm> StartAsync(PostgresServer postgres, int seed, CancellationToken ct)
        {
            var backends = Enumerable.Range(1, 6).Select(i => "MBX0" + i.ToString(CultureInfo.InvariantCulture)).ToArray();
            var exchange = await FakeEwsServer.StartAsync(new FakeEwsServerOptions { Seed = seed, Backends = backends }, cancellationToken: ct);
            var mailboxes = Enumerable.Range(0, 12).Select(i => "user" + i.ToString("00", CultureInfo.InvariantCulture) + "@contoso.test").ToArray();
            var backendOf = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
            for (var i = 0; i < mailboxes.Length; i++)
            {
                backendOf[mailboxes[i]] = backends[i % backends.Length];
                exchange.AddMailbox(mailboxes[i], backendOf[mailboxes[i]]);
            }

            var tokenOf = mailboxes.Select((m, i) => (m, "ea" + i.ToString("x2", CultureInfo.InvariantCulture) + new string('c', 60))).ToDictionary(p => p.m, p => p.Item2, StringComparer.OrdinalIgnoreCase);
            ProcessFarm farm;
            try
            {
                farm = await ProcessFarm.StartAsync(postgres, 3, _ => new Dictionary<string, string?>
                {
                    ["Herald:EwsStreaming:PollInterval"] = "00:00:01",

                    // Registrations are made through all three nodes: a change made through one node reaches the others
                    // by the database's change feed (LISTEN/NOTIFY), not the safety-net re-read, which is kept out of reach.
                    ["Herald:EwsStreaming:ReconcileInterval"] = "00:10:00",
                    ["Herald:EwsStreaming:MinBackOff"] = "00:00:00.100",
                    ["Logging:LogLevel:Herald"] = "Information",
                }, ct);
            }
            catch
            {
                await exchange.DisposeAsync();
                throw;
            }

            var ews = new EwsFarm(exchange, farm, backends, mailboxes, backendOf, tokenOf);
            try
            {
                using (var put = await farm.Nodes[0].Client.PutAsJsonAsync("v1/connectors/" + Connector, new
                {
                    kind = "ews",
                    autodiscover = true,
                    autodiscoverUrl = exchange.AutodiscoverUrl,
                    auth = new { type = "basic", username = exchange.Options.BasicUsername, password = exchange.Options.BasicPassword },
                }, ct))
                {
                    Assert.True(put.IsSuccessStatusCode, await put.Content.ReadAsStringAsync(ct));
                }

                for (var i = 0; i < mailboxes.Length; i++)
                {
                    using var reg = await farm.Nodes[i % 3].Client.PostAsJsonAsync("v1/registrations", new { platform = "apns", token = tokenOf[mailboxes[i]], source = "ews-streaming", mailbox = mailboxes[i], connector = Connector, style = "badge" }, ct);
                    Assert.True(reg.IsSuccessStatusCode, await reg.Content.ReadAsStringAsync(ct));
                }

                return ews;
            }
            catch
            {
                await ews.DisposeAsync();
                throw;
            }
        }

        /// <summary>Waits until the six groups are spread over the three nodes, each mailbox subscribed once, one connection per group.</summary>
        public async Task<IReadOnlyList<LeaseRow>> WaitForSpreadAsync(CancellationToken ct, int owners = 3)
        {
            var clock = Stopwatch.StartNew();
            while (true)
            {
                var groups = await Farm.LeasesAsync(EwsGroupPrefix, ct);
                if (groups.Count == Backends.Length && groups.All(g => g.Live) && groups.Select(g => g.Owner).Distinct().Count() == owners
                    && Exchange.OpenConnections == Backends.Length && Mailboxes.All(m => Exchange.SubscriptionsOf(m) == 1))
                {
                    return groups;
                }

                Assert.True(clock.Elapsed < TimeSpan.FromSeconds(90), $"groups did not spread: {string.Join(", ", groups)}; {Exchange.OpenConnections} connections");
                await Task.Delay(250, ct);
            }
        }

        /// <summary>The mailboxes of the groups with these lease keys.</summary>
        public HashSet<string> MailboxesOf(IReadOnlySet<string> groupKeys)
            => Mailboxes.Where(m => groupKeys.Any(k => k.Contains("|" + FakeEwsServer.GroupingInformationOf(BackendOf[m]) + "#", StringComparison.Ordinal))).ToHashSet(StringComparer.OrdinalIgnoreCase);

        public async ValueTask DisposeAsync()
        {
            await Farm.DisposeAsync();
            await Exchange.DisposeAsync();
        }
    }

    /// <summary>A work lease as the database shows it.</summary>
    private sealed record LeaseRow(string Key, string Owner, long Token, bool Live)
    {
        public override string ToString() => $"{Key[(Key.LastIndexOf('|') + 1)..]}={Owner}{(Live ? string.Empty : " (expired)")}";
    }

    private sealed class FarmNode(string name, HeraldProcess process) : IAsyncDisposable
    {
        public string Name { get; } = name;

        public HeraldProcess Process { get; } = process;

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

    /// <summary>N herald processes on a fresh database of the cluster, product defaults for leases (15 s), and a fake APNs.</summary>
    private sealed class ProcessFarm : IAsyncDisposable
    {
        private readonly PostgresServer _postgres;
        private readonly string _connectionString;

        private ProcessFarm(PostgresServer postgres, string connectionString, FakeApnsServer apns)
        {
            _postgres = postgres;
            _connectionString = connectionString;
            Apns = apns;
        }

        public FakeApnsServer Apns { get; }

        public List<FarmNode> Nodes { get; } = [];

        public static async Task<ProcessFarm> StartAsync(PostgresServer postgres, int nodes, Func<int, Dictionary<string, string?>> extra, CancellationToken ct)
        {
            var connectionString = (await postgres.CreateDatabaseAsync("farmwork")).Replace("Timeout=15", "Timeout=3", StringComparison.Ordinal);
            var apns = await FakeApnsServer.StartAsync(cancellationToken: ct);
            var pem = apns.GenerateSigningKey(GatewayHarness.TeamId, GatewayHarness.KeyId, GatewayHarness.Topic);
            var secret = Convert.ToBase64String(RandomNumberGenerator.GetBytes(32));
            var farm = new ProcessFarm(postgres, connectionString, apns);
            try
            {
                for (var i = 1; i <= nodes; i++)
                {
                    var port = HeraldProcess.FreePort();
                    var settings = GatewayHarness.Settings(Path.GetTempPath(), apns.BaseUrl, pem);
                    settings["Herald:Database"] = "postgres:" + connectionString;
                    settings["HERALD_SECRET_KEY"] = secret;
                    settings["Herald:NodeName"] = "node-" + i.ToString(CultureInfo.InvariantCulture);
                    settings["Herald:Region"] = "emea";
                    settings["Herald:PublicBaseUrl"] = "https://push-emea.example.test";
                    settings["Herald:Farm:HeartbeatInterval"] = "00:00:01";
                    settings["Herald:Farm:DownAfter"] = "00:00:30"; // the product default: takeover must not wait for it
                    settings["Herald:Dispatch:Lease"] = "00:00:10"; // a dead node's claimed sends go back after 10 s
                    settings["Herald:Dispatch:ReaperInterval"] = "00:00:02";
                    foreach (var (key, value) in extra(port))
                    {
                        settings[key] = value;
                    }

                    farm.Nodes.Add(new FarmNode("node-" + i.ToString(CultureInfo.InvariantCulture), await HeraldProcess.StartAsync(settings, port, ct)));
                }

                return farm;
            }
            catch
            {
                await farm.DisposeAsync();
                throw;
            }
        }

        /// <summary>Node name → lease owner id (instance), from the node view.</summary>
        public async Task<Dictionary<string, string>> InstancesAsync(CancellationToken ct)
        {
            using var json = JsonDocument.Parse(await Nodes[0].Client.GetStringAsync("v1/admin/nodes", ct));
            return json.RootElement.GetProperty("nodes").EnumerateArray()
                .ToDictionary(n => n.GetProperty("name").GetString()!, n => n.GetProperty("instance").GetString()!, StringComparer.Ordinal);
        }

        /// <summary>The held work leases under <paramref name="prefix"/>; Live: not expired by the database's clock.</summary>
        public async Task<IReadOnlyList<LeaseRow>> LeasesAsync(string prefix, CancellationToken ct)
        {
            await using var connection = new NpgsqlConnection(_connectionString);
            await connection.OpenAsync(ct);
            await using var command = new NpgsqlCommand(
                "SELECT key, owner, token, expires_at > (extract(epoch from clock_timestamp()) * 1000)::bigint FROM work_leases WHERE owner IS NOT NULL AND starts_with(key, @prefix) ORDER BY key",
                connection);
            command.Parameters.AddWithValue("prefix", prefix);
            var rows = new List<LeaseRow>();
            await using var reader = await command.ExecuteReaderAsync(ct);
            while (await reader.ReadAsync(ct))
            {
                rows.Add(new LeaseRow(reader.GetString(0), reader.GetString(1), reader.GetInt64(2), reader.GetBoolean(3)));
            }

            return rows;
        }

        /// <summary>Graph subscription id → its renewal share (from the mailbox's keyed hash, as the nodes compute it).</summary>
        public async Task<Dictionary<string, int>> GraphSubscriptionSharesAsync(CancellationToken ct)
        {
            await using var connection = new NpgsqlConnection(_connectionString);
            await connection.OpenAsync(ct);
            await using var command = new NpgsqlCommand("SELECT id, mailbox_hash FROM graph_subscriptions", connection);
            var shares = new Dictionary<string, int>(StringComparer.Ordinal);
            await using var reader = await command.ExecuteReaderAsync(ct);
            while (await reader.ReadAsync(ct))
            {
                var hash = (byte[])reader.GetValue(1);
                shares[reader.GetString(0)] = Workers.GraphWorker.ShareOf(hash);
            }

            return shares;
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
}
