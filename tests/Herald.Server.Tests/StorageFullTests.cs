using System.Globalization;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Herald.Storage;
using Herald.Storage.Sqlite;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.DependencyInjection;
using Xunit;

namespace Herald.Server.Tests;

/// <summary>
/// A full disk, provoked for real: the store's write connection is capped (SQLite <c>max_page_count</c>), so writes fail
/// with SQLITE_FULL exactly as on a volume with no space left. Callbacks must answer 5xx (Exchange retries), the API 503
/// with Retry-After, nothing answered OK/201 may be lost, and the node must recover by itself once space is back.
/// (A locked database is covered by <see cref="StoreUnavailableTests"/>.)
/// </summary>
public sealed class StorageFullTests(ITestOutputHelper output)
{
    [Fact]
    public async Task SqliteFull_Callbacks5xx_Api503WithRetryAfter_NothingAcknowledgedLost_RecoversWhenSpaceReturns()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var gw = await GatewayHarness.StartAsync(new Dictionary<string, string?>
        {
            ["Herald:Retry:MaxAttempts"] = "1000",
            ["Herald:Dispatch:Lease"] = "00:00:05", // a completion lost to the full disk is resent within seconds
            ["Logging:LogLevel:Default"] = "None", // every refused write logs an error with its stack
        }, cancellationToken: ct);
        var store = Assert.IsType<SqliteStore>(gw.App.Services.GetRequiredService<IHeraldStore>());

        // Mailboxes registered while there is space; each gets its first event only later.
        var mailboxes = new List<(string Token, string Url)>();
        for (var i = 0; i < 100; i++)
        {
            var token = "f0" + i.ToString("x4", CultureInfo.InvariantCulture) + new string('d', 58);
            var (_, url) = await gw.RegisterAsync(token, cancellationToken: ct);
            mailboxes.Add((token, url));
        }

        var registered = new List<string>(); // registration ids answered 201
        var acknowledged = new List<string>(); // tokens whose callback was answered OK
        var failures = new Dictionary<string, int>(StringComparer.Ordinal);
        var next = 0;
        var registrationSeq = 0;

        // The disk fills: cap the file at its current size and keep writing until both kinds of write fail repeatedly.
        var pages = await store.LimitSizeAsync(1, ct);
        output.WriteLine($"capped at {pages} pages");
        // Sending what was acknowledged while filling frees index space (a sent row leaves the pending index), which the
        // next writes take: fill, let the queue drain, and again, until a round stores nothing at all.
        for (var round = 0; round < 8; round++)
        {
            var before = registered.Count + acknowledged.Count;
            await FillAsync();
            await WaitForQueueAsync(gw.DatabasePath, TimeSpan.FromSeconds(60), ct);
            if (registered.Count + acknowledged.Count == before)
            {
                break;
            }
        }

        // Full: fresh callbacks get a 5xx SOAP fault (neither OK nor Unsubscribe), registrations 503 with Retry-After.
        var refused = new List<(string Token, string Url)>();
        for (var i = 0; i < 3; i++)
        {
            var (token, url) = mailboxes[next++];
            var (status, body) = await Soap.PostAsync(gw.Client, url, Soap.NewMail("SUB-FULL-" + token[..6], 1), cancellationToken: ct);
            Assert.True(status >= 500, $"callback on a full disk answered {status}: {body}");
            Assert.Null(Soap.StatusOf(body));
            refused.Add((token, url));

            using var api = await PostRegistrationAsync(registrationSeq++);
            Assert.Equal(HttpStatusCode.ServiceUnavailable, api.StatusCode);
            Assert.NotNull(api.Headers.RetryAfter);
            Assert.Equal("application/problem+json", api.Content.Headers.ContentType?.MediaType);
        }

        // Reads still work while the disk is full.
        using (var read = await gw.Client.GetAsync("v1/admin/queue", ct))
        {
            Assert.Equal(HttpStatusCode.OK, read.StatusCode);
        }

        // Space comes back (the volume grew, or the operator purged): no restart, the next tries succeed.
        await store.LimitSizeAsync(null, ct);
        foreach (var (token, url) in refused)
        {
            var (status, body) = await Soap.PostAsync(gw.Client, url, Soap.NewMail("SUB-FULL-" + token[..6], 1), cancellationToken: ct);
            Assert.Equal(200, status);
            Assert.Equal("OK", Soap.StatusOf(body));
            acknowledged.Add(token);
        }

        using (var api = await PostRegistrationAsync(registrationSeq++))
        {
            Assert.Equal(HttpStatusCode.Created, api.StatusCode);
            registered.Add(await IdOfAsync(api));
        }

        // Nothing acknowledged is lost: every 201 registration exists, every OK callback reaches its device.
        Assert.True(await WaitForQueueAsync(gw.DatabasePath, TimeSpan.FromSeconds(60), ct), "the queue did not drain after space came back");
        foreach (var id in registered)
        {
            Assert.Equal("active", (await gw.GetRegistrationAsync(id, ct)).GetProperty("status").GetString());
        }

        using var wait = CancellationTokenSource.CreateLinkedTokenSource(ct);
        wait.CancelAfter(TimeSpan.FromSeconds(60));
        foreach (var token in acknowledged)
        {
            await gw.Apns.WaitForRequestAsync(r => r.Token == token && r.Accepted, wait.Token);
        }

        output.WriteLine($"acknowledged while filling and after: {registered.Count} registrations (201), {acknowledged.Count} callbacks (OK); refused: {string.Join(", ", failures.Select(kv => $"{kv.Key} {kv.Value}"))}");
        Assert.True(failures.GetValueOrDefault("callback") >= 3 && failures.GetValueOrDefault("registration") >= 3, "the disk never filled");

        async Task FillAsync()
        {
            for (int consecutive = 0, i = 0; consecutive < 5 && i < 3_000; i++)
            {
                using var api = await PostRegistrationAsync(registrationSeq++);
                if (api.StatusCode == HttpStatusCode.Created)
                {
                    registered.Add(await IdOfAsync(api));
                    consecutive = 0;
                }
                else
                {
                    Assert.Equal(HttpStatusCode.ServiceUnavailable, api.StatusCode);
                    Assert.NotNull(api.Headers.RetryAfter);
                    failures["registration"] = failures.GetValueOrDefault("registration") + 1;
                    consecutive++;
                }
            }

            for (var consecutive = 0; consecutive < 5 && next < mailboxes.Count - 10;)
            {
                var (token, url) = mailboxes[next++];
                var (status, body) = await Soap.PostAsync(gw.Client, url, Soap.NewMail("SUB-FULL-" + token[..6], 1), cancellationToken: ct);
                if (status == 200)
                {
                    Assert.Equal("OK", Soap.StatusOf(body));
                    acknowledged.Add(token);
                    consecutive = 0;
                }
                else
                {
                    Assert.True(status >= 500, $"callback answered {status}: {body}");
                    Assert.Null(Soap.StatusOf(body));
                    failures["callback"] = failures.GetValueOrDefault("callback") + 1;
                    consecutive++;
                }
            }
        }

        Task<HttpResponseMessage> PostRegistrationAsync(int n)
        {
            var token = "e1" + n.ToString("x6", CultureInfo.InvariantCulture) + new string('c', 56);
            return gw.Client.PostAsJsonAsync("v1/registrations", new { platform = "apns", token, source = "ews-push", style = "badge", locale = "en-US", folders = new[] { "inbox", "calendar" } }, ct);
        }
    }

    private static async Task<string> IdOfAsync(HttpResponseMessage response)
    {
        using var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync(TestContext.Current.CancellationToken));
        return json.RootElement.GetProperty("id").GetString()!;
    }

    private static async Task<bool> WaitForQueueAsync(string databasePath, TimeSpan limit, CancellationToken ct)
    {
        var deadline = DateTime.UtcNow + limit;
        while (DateTime.UtcNow < deadline)
        {
            await using var connection = new SqliteConnection($"Data Source={databasePath};Mode=ReadOnly;Pooling=False");
            await connection.OpenAsync(ct);
            await using var command = connection.CreateCommand();
            command.CommandText = "SELECT count(*) FROM notifications WHERE state IN (0, 1, 2)";
            if ((long)(await command.ExecuteScalarAsync(ct))! == 0)
            {
                return true;
            }

            await Task.Delay(100, ct);
        }

        return false;
    }
}
