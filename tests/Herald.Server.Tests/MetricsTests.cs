using System.Globalization;
using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Herald.Core.Metrics;
using Herald.Core.Notifications;
using Herald.Core.Ports;
using Herald.Core.Registrations;
using Herald.Server.Endpoints;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Console;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;
using Xunit;

namespace Herald.Server.Tests;

/// <summary><c>/metrics</c> after known traffic, the exposition format, the dashboard's stats and the JSON log option.</summary>
public sealed class MetricsTests
{
    private static string Token(int n) => "7e" + n.ToString("x8", CultureInfo.InvariantCulture) + new string('d', 54);

    /// <summary>Parses the exposition into "name{labels}" → value, and the TYPE lines.</summary>
    private static (Dictionary<string, double> Samples, Dictionary<string, string> Types) Parse(string text)
    {
        var samples = new Dictionary<string, double>(StringComparer.Ordinal);
        var types = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var line in text.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            if (line.StartsWith("# TYPE ", StringComparison.Ordinal))
            {
                var parts = line.Split(' ');
                types[parts[2]] = parts[3];
                continue;
            }

            if (line.StartsWith('#'))
            {
                continue;
            }

            var space = line.LastIndexOf(' ');
            var value = line[(space + 1)..];
            samples[line[..space]] = value == "+Inf" ? double.PositiveInfinity : double.Parse(value, CultureInfo.InvariantCulture);
        }

        return (samples, types);
    }

    private static async Task<string> SendAsync(HttpClient client, params string[] tokens)
    {
        using var response = await client.PostAsJsonAsync("v1/notifications", new { lane = "priority", kind = "badge", badge = 2, devices = tokens.Select(t => new { platform = "apns", token = t }).ToArray() }, TestContext.Current.CancellationToken);
        var text = await response.Content.ReadAsStringAsync(TestContext.Current.CancellationToken);
        Assert.True(response.StatusCode == HttpStatusCode.Accepted, text);
        return JsonDocument.Parse(text).RootElement.GetProperty("id").GetString()!;
    }

    [Fact]
    public async Task Metrics_AfterKnownTraffic_ShowNamesLabelsAndValues()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var gw = await GatewayHarness.StartAsync(new Dictionary<string, string?> { ["Herald:Region"] = "eu-test", ["Herald:NodeName"] = "node-a" }, cancellationToken: ct);

        // Two mailboxes get new mail (three events per callback: Created, NewMail, Modified); a third registration is deleted, so Exchange is told to unsubscribe.
        for (var i = 1; i <= 2; i++)
        {
            var (_, callback) = await gw.RegisterAsync(Token(i), cancellationToken: ct);
            var (status, _) = await Soap.PostAsync(gw.Client, callback, Soap.NewMail("SUB-" + i, i), cancellationToken: ct);
            Assert.Equal(200, status);
        }

        var (goneId, goneCallback) = await gw.RegisterAsync(Token(3), cancellationToken: ct);
        using (await gw.Client.DeleteAsync("v1/registrations/" + goneId, ct))
        {
        }

        var (_, body) = await Soap.PostAsync(gw.Client, goneCallback, Soap.NewMail("SUB-3", 1), cancellationToken: ct);
        Assert.Equal("Unsubscribe", Soap.StatusOf(body));

        // The API: one request to two devices, one to a token APNs rejects.
        await SendAsync(gw.Client, Token(10), Token(11));
        gw.Apns.Script(Token(12), (400, "BadDeviceToken"));
        await SendAsync(gw.Client, Token(12));
        await gw.Apns.WaitForAcceptedAsync(4, ct);
        await gw.Apns.WaitForRequestAsync(r => r.Token == Token(12), ct);

        Dictionary<string, double> m = [];
        Dictionary<string, string> types = [];
        const string L = "region=\"eu-test\",node=\"node-a\"";
        for (var i = 0; i < 200; i++)
        {
            using var response = await gw.Client.GetAsync("metrics", ct);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Equal("text/plain; version=0.0.4; charset=utf-8", response.Content.Headers.ContentType!.ToString());
            (m, types) = Parse(await response.Content.ReadAsStringAsync(ct));
            if (m.GetValueOrDefault($"herald_notifications_total{{{L},lane=\"priority\",state=\"failed\"}}") == 1
                && m.GetValueOrDefault($"herald_notifications_total{{{L},lane=\"priority\",state=\"sent\"}}") == 4)
            {
                break;
            }

            await Task.Delay(50, ct);
        }

        Assert.Equal(9, m[$"herald_events_received_total{{{L},source=\"ews-push\"}}"]);
        Assert.Equal(2, m[$"herald_events_received_total{{{L},source=\"api\"}}"]);
        Assert.Equal(2, m[$"herald_source_callbacks_total{{{L},source=\"ews-push\",verdict=\"accepted\"}}"]);
        Assert.Equal(1, m[$"herald_source_callbacks_total{{{L},source=\"ews-push\",verdict=\"unsubscribe\"}}"]);
        Assert.Equal(2, m[$"herald_notifications_enqueued_total{{{L},source=\"ews-push\"}}"]);
        Assert.Equal(3, m[$"herald_notifications_enqueued_total{{{L},source=\"api\"}}"]);
        Assert.Equal(4, m[$"herald_provider_sends_total{{{L},platform=\"apns\",result=\"sent\",reason=\"none\"}}"]);
        Assert.Equal(1, m[$"herald_provider_sends_total{{{L},platform=\"apns\",result=\"token_invalid\",reason=\"BadDeviceToken\"}}"]);
        Assert.Equal(4, m[$"herald_notifications_total{{{L},lane=\"priority\",state=\"sent\"}}"]);
        Assert.Equal(1, m[$"herald_notifications_total{{{L},lane=\"priority\",state=\"failed\"}}"]);

        // Latency: four accepted sends, cumulative buckets ending in +Inf, a positive sum.
        Assert.Equal(4, m[$"herald_delivery_latency_seconds_count{{{L},platform=\"apns\",lane=\"priority\"}}"]);
        Assert.Equal(4, m[$"herald_delivery_latency_seconds_bucket{{{L},platform=\"apns\",lane=\"priority\",le=\"+Inf\"}}"]);
        Assert.True(m[$"herald_delivery_latency_seconds_bucket{{{L},platform=\"apns\",lane=\"priority\",le=\"0.005\"}}"] <= m[$"herald_delivery_latency_seconds_bucket{{{L},platform=\"apns\",lane=\"priority\",le=\"60\"}}"]);
        Assert.True(m[$"herald_delivery_latency_seconds_sum{{{L},platform=\"apns\",lane=\"priority\"}}"] > 0);
        Assert.Equal(5, m[$"herald_provider_request_duration_seconds_count{{{L},platform=\"apns\"}}"]);

        // The queue gauges read the store: nothing waits, five rows were sent or failed.
        Assert.Equal(0, m[$"herald_queue_depth{{{L},lane=\"priority\",state=\"queued\"}}"]);
        Assert.Equal(0, m[$"herald_queue_depth{{{L},lane=\"standard\",state=\"retrying\"}}"]);
        Assert.Equal(0, m[$"herald_queue_oldest_age_seconds{{{L}}}"]);

        // Connections to the (fake) APNs, from the runtime's connection pool.
        Assert.Contains(m, kv => kv.Key.StartsWith("herald_open_connections{", StringComparison.Ordinal) && kv.Key.Contains("peer=\"127.0.0.1\"", StringComparison.Ordinal) && kv.Value >= 1);
        Assert.Contains(m.Keys, k => k.StartsWith($"herald_info{{{L},version=", StringComparison.Ordinal));

        Assert.Equal("counter", types["herald_events_received_total"]);
        Assert.Equal("counter", types["herald_provider_sends_total"]);
        Assert.Equal("histogram", types["herald_delivery_latency_seconds"]);
        Assert.Equal("gauge", types["herald_queue_depth"]);
        Assert.Equal("gauge", types["herald_credential_expiry_seconds"]);
        Assert.Equal("gauge", types["herald_open_connections"]);
        Assert.DoesNotContain(m.Keys, k => k.Contains(Token(1), StringComparison.Ordinal)); // no token, tenant or address in a label
    }

    [Fact]
    public void Collector_TwoGatewaysInOneProcess_KeepTheirOwnNumbers_AndEscapeLabels()
    {
        var time = new FakeTimeProvider(DateTimeOffset.Parse("2026-11-23T10:00:00Z", CultureInfo.InvariantCulture));
        using var a = new HeraldMetrics(time);
        using var b = new HeraldMetrics(time);
        using var ca = new MetricsCollector(a, "r\"1", "n\\1\nx");
        using var cb = new MetricsCollector(b, "r2", "n2");

        a.Ingested(SourceKind.Graph, 3, IngestVerdict.Accepted, 1);
        a.ProviderSend(Platform.Fcm, new PushResult(PushOutcome.Retry, 503, "a reason with spaces"), TimeSpan.FromMilliseconds(20));
        a.Outcome(Lane.Standard, Platform.Fcm, NotificationState.Sent, time.GetUtcNow().AddSeconds(-0.2), time.GetUtcNow());
        a.AddCredentialExpirySource(() => [new CredentialExpiry("apns", "cert-ab12", time.GetUtcNow().AddDays(10))]);
        a.ObserveQueue(new QueueSnapshot(new Dictionary<(Lane, NotificationState), long> { [(Lane.Standard, NotificationState.Queued)] = 7 }, time.GetUtcNow().AddSeconds(-42)), time.GetUtcNow());

        var text = ca.WritePrometheus();
        const string L = "region=\"r\\\"1\",node=\"n\\\\1\\nx\"";
        var (m, _) = Parse(text);
        Assert.Equal(3, m[$"herald_events_received_total{{{L},source=\"graph\"}}"]);
        Assert.Equal(1, m[$"herald_provider_sends_total{{{L},platform=\"fcm\",result=\"retry\",reason=\"other\"}}"]);
        Assert.Equal(0, m[$"herald_delivery_latency_seconds_bucket{{{L},platform=\"fcm\",lane=\"standard\",le=\"0.1\"}}"]);
        Assert.Equal(1, m[$"herald_delivery_latency_seconds_bucket{{{L},platform=\"fcm\",lane=\"standard\",le=\"0.25\"}}"]);
        Assert.Equal(1, m[$"herald_delivery_latency_seconds_bucket{{{L},platform=\"fcm\",lane=\"standard\",le=\"+Inf\"}}"]);
        Assert.Equal(0.2, m[$"herald_delivery_latency_seconds_sum{{{L},platform=\"fcm\",lane=\"standard\"}}"], 6);
        Assert.Equal(864000, m[$"herald_credential_expiry_seconds{{{L},platform=\"apns\",credential=\"cert-ab12\"}}"]);
        Assert.Equal(7, m[$"herald_queue_depth{{{L},lane=\"standard\",state=\"queued\"}}"]);
        Assert.Equal(42, m[$"herald_queue_oldest_age_seconds{{{L}}}"]);

        // The other gateway saw none of it.
        var (other, _) = Parse(cb.WritePrometheus());
        Assert.DoesNotContain(other.Keys, k => k.StartsWith("herald_events_received_total", StringComparison.Ordinal));
        Assert.DoesNotContain(other.Keys, k => k.StartsWith("herald_queue_depth", StringComparison.Ordinal));
    }

    [Fact]
    public void Recording_OnTheSendPath_AllocatesNothing()
    {
        var time = new FakeTimeProvider(DateTimeOffset.Parse("2026-11-23T10:00:00Z", CultureInfo.InvariantCulture));
        using var metrics = new HeraldMetrics(time);
        using var collector = new MetricsCollector(metrics, "r", "n");
        var accepted = PushResult.Ok();
        var rejected = new PushResult(PushOutcome.TokenInvalid, 410, "Unregistered");
        void Send()
        {
            metrics.ProviderSend(Platform.Apns, accepted, TimeSpan.FromMilliseconds(3));
            metrics.Outcome(Lane.Priority, Platform.Apns, NotificationState.Sent, time.GetUtcNow(), time.GetUtcNow());
            metrics.ProviderSend(Platform.Apns, rejected, TimeSpan.FromMilliseconds(3));
            metrics.Outcome(Lane.Priority, Platform.Apns, NotificationState.Failed, null, time.GetUtcNow());
        }

        Send(); // the first measurement of a label set creates its series
        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 1000; i++)
        {
            Send();
        }

        // One object per call would be at least 24 bytes × 4000 calls; allow the runtime's occasional bookkeeping
        // (tiering, other listeners in this process) but not a per-call allocation.
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.True(allocated < 24_000, $"{allocated} bytes allocated for 4000 recordings");
        var (m, _) = Parse(collector.WritePrometheus());
        Assert.Equal(1001, m["herald_provider_sends_total{region=\"r\",node=\"n\",platform=\"apns\",result=\"sent\",reason=\"none\"}"]);
        Assert.Equal(1001, m["herald_notifications_total{region=\"r\",node=\"n\",lane=\"priority\",state=\"failed\"}"]);
    }

    [Fact]
    public void ReasonLabel_KeepsProviderReasons_CapsEverythingElse()
    {
        Assert.Equal("BadDeviceToken", HeraldMetrics.ReasonLabel("BadDeviceToken"));
        Assert.Equal("UNREGISTERED", HeraldMetrics.ReasonLabel("UNREGISTERED"));
        Assert.Equal("none", HeraldMetrics.ReasonLabel(null));
        Assert.Equal("other", HeraldMetrics.ReasonLabel("<script>"));
        Assert.Equal("other", HeraldMetrics.ReasonLabel(new string('x', 49)));
    }

    [Fact]
    public void Quantile_InterpolatesLikeHistogramQuantile()
    {
        var buckets = new long[HeraldMetrics.LatencyBuckets.Length + 1];
        Assert.Null(StatsSampler.Quantile(0.5, buckets));
        buckets[4] = 10; // ten observations in (0.05, 0.1]
        Assert.Equal(0.075, StatsSampler.Quantile(0.5, buckets)!.Value, 6);
        Assert.Equal(0.0995, StatsSampler.Quantile(0.99, buckets)!.Value, 6);
        buckets[^1] = 90; // most beyond the last bound: Prometheus answers the highest finite bound
        Assert.Equal(HeraldMetrics.LatencyBuckets[^1], StatsSampler.Quantile(0.99, buckets));
    }

    [Fact]
    public async Task Stats_AdminSeesSamplesAndTotals_TenantIsRefused()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var gw = await GatewayHarness.StartAsync(cancellationToken: ct);
        var sampler = gw.App.Services.GetRequiredService<StatsSampler>();
        await sampler.SampleAsync(ct); // a baseline (the background loop may have taken one already)
        await SendAsync(gw.Client, Token(20), Token(21), Token(22));
        await gw.Apns.WaitForAcceptedAsync(3, ct);
        for (var i = 0; i < 100 && gw.App.Services.GetRequiredService<Core.Pipeline.Dispatcher>().Counters.Sent < 3; i++)
        {
            await Task.Delay(50, ct);
        }

        var sample = await sampler.SampleAsync(ct);
        Assert.NotNull(sample);

        using var stats = JsonDocument.Parse(await gw.Client.GetStringAsync("v1/admin/stats", ct));
        var root = stats.RootElement;
        Assert.Equal(10, root.GetProperty("intervalSeconds").GetInt32());
        var totals = root.GetProperty("totals");
        Assert.Equal(3, totals.GetProperty("sent").GetInt64());
        Assert.Equal(1, totals.GetProperty("events").GetInt64());
        Assert.Equal(3, totals.GetProperty("sentByPlatform").GetProperty("apns").GetInt64());
        Assert.Equal(0, totals.GetProperty("queue").GetProperty("priority").GetProperty("queued").GetInt64());
        var samples = root.GetProperty("samples").EnumerateArray().ToList();
        Assert.NotEmpty(samples);
        Assert.Equal(3, samples.Sum(s => s.GetProperty("sendsPerSecond").GetProperty("apns").GetDouble() * 0) + 3); // shape
        Assert.Contains(samples, s => s.GetProperty("sendsPerSecond").GetProperty("apns").GetDouble() > 0 && s.TryGetProperty("latencyP50Seconds", out _));

        // Incremental reads: nothing newer than the last sample.
        var last = samples[^1].GetProperty("at").GetDateTimeOffset();
        using var since = JsonDocument.Parse(await gw.Client.GetStringAsync("v1/admin/stats?since=" + Uri.EscapeDataString(last.ToString("O", CultureInfo.InvariantCulture)), ct));
        Assert.Empty(since.RootElement.GetProperty("samples").EnumerateArray());

        // A tenant key may not see the node's numbers.
        using var tenant = await gw.Client.PostAsync("v1/tenants", new StringContent("""{"name":"T"}""", Encoding.UTF8, "application/json"), ct);
        var tenantId = JsonDocument.Parse(await tenant.Content.ReadAsStringAsync(ct)).RootElement.GetProperty("id").GetString();
        using var key = await gw.Client.PostAsync($"v1/tenants/{tenantId}/keys", new StringContent("{}", Encoding.UTF8, "application/json"), ct);
        using var tenantClient = new HttpClient { BaseAddress = gw.Client.BaseAddress };
        tenantClient.DefaultRequestHeaders.Authorization = new("Bearer", JsonDocument.Parse(await key.Content.ReadAsStringAsync(ct)).RootElement.GetProperty("key").GetString());
        using var refused = await tenantClient.GetAsync("v1/admin/stats", ct);
        Assert.Equal(HttpStatusCode.Forbidden, refused.StatusCode);
        Assert.Equal("application/problem+json", refused.Content.Headers.ContentType!.MediaType);
    }

    [Fact]
    public async Task JsonLogs_Option_SelectsTheJsonConsoleFormatter()
    {
        var ct = TestContext.Current.CancellationToken;
        await using (var plain = await GatewayHarness.StartAsync(cancellationToken: ct))
        {
            Assert.NotEqual(ConsoleFormatterNames.Json, plain.App.Services.GetRequiredService<IOptionsMonitor<ConsoleLoggerOptions>>().CurrentValue.FormatterName);
        }

        await using var json = await GatewayHarness.StartAsync(new Dictionary<string, string?> { ["Herald:Logging:Json"] = "true" }, cancellationToken: ct);
        Assert.Equal(ConsoleFormatterNames.Json, json.App.Services.GetRequiredService<IOptionsMonitor<ConsoleLoggerOptions>>().CurrentValue.FormatterName);
    }
}
