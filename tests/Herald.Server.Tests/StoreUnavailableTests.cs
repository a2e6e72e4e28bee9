using System.Net;
using System.Net.Http.Json;
using Microsoft.Data.Sqlite;
using Xunit;

namespace Herald.Server.Tests;

/// <summary>When the database cannot take a write, nothing is acknowledged: Exchange gets a 5xx and retries.</summary>
public sealed class StoreUnavailableTests
{
    [Fact]
    public async Task DatabaseLocked_CallbackAnswers503_ApiAnswers503WithRetryAfter_ThenRecoversByItself()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var gw = await GatewayHarness.StartAsync(cancellationToken: ct);
        var token = new string('5', 64);
        var (id, callback) = await gw.RegisterAsync(token, cancellationToken: ct);

        // Another process holds the write lock past Herald's busy timeout.
        await using (var blocker = new SqliteConnection($"Data Source={gw.DatabasePath};Pooling=False"))
        {
            await blocker.OpenAsync(ct);
            await using (var begin = blocker.CreateCommand())
            {
                begin.CommandText = "BEGIN EXCLUSIVE";
                await begin.ExecuteNonQueryAsync(ct);
            }

            var (status, body) = await Soap.PostAsync(gw.Client, callback, Soap.NewMail("SUB-L", 1), cancellationToken: ct);
            Assert.Equal(503, status);
            Assert.Contains("Fault", body, StringComparison.Ordinal);
            Assert.Null(Soap.StatusOf(body)); // neither OK nor Unsubscribe

            using var api = await gw.Client.PostAsJsonAsync("v1/registrations", new { platform = "apns", token = new string('6', 64), source = "ews-push" }, ct);
            Assert.Equal(HttpStatusCode.ServiceUnavailable, api.StatusCode);
            Assert.True(api.Headers.RetryAfter is not null, "503 must carry Retry-After");

            await using var rollback = blocker.CreateCommand();
            rollback.CommandText = "ROLLBACK";
            await rollback.ExecuteNonQueryAsync(ct);
        }

        // Exchange's retry after the lock is gone is acknowledged and delivered.
        var (retryStatus, retryBody) = await Soap.PostAsync(gw.Client, callback, Soap.NewMail("SUB-L", 1), cancellationToken: ct);
        Assert.Equal(200, retryStatus);
        Assert.Equal("OK", Soap.StatusOf(retryBody));
        await gw.Apns.WaitForRequestAsync(r => r.Token == token && r.Accepted, ct);
        Assert.Equal("active", (await gw.GetRegistrationAsync(id, ct)).GetProperty("status").GetString());
    }
}
