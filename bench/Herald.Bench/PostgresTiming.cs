using System.Diagnostics;
using System.Globalization;
using Herald.Core.Notifications;
using Herald.Core.Ports;
using Herald.Core.Registrations;
using Herald.Storage.Postgres;
using Npgsql;

namespace Herald.Bench;

/// <summary>
/// A simple timing of the PostgreSQL queue (<c>--postgres "CONNECTION STRING"</c>): enqueue in batches of 512
/// (half each lane, four tenants), then claim with <c>ClaimLimits(256, 256)</c> and complete each claimed
/// batch, by one node and by two nodes (two store instances) at once. Each run starts on emptied tables.
/// </summary>
internal static class PostgresTiming
{
    private const int Batch = 512;
    private const int Rounds = 100;
    private const int Total = Batch * Rounds;
    private static readonly string[] Tenants = ["default", "t1", "t2", "t3"];

    public static async Task RunAsync(string connectionString, TextWriter output)
    {
        await using (var setup = PostgresStore.Open(connectionString))
        {
            await setup.MigrateAsync(CancellationToken.None);
            foreach (var tenant in Tenants.Skip(1))
            {
                if (await setup.GetTenantAsync(tenant, CancellationToken.None) is null)
                {
                    await setup.CreateTenantAsync(new Tenant(tenant, tenant, DateTimeOffset.UtcNow), CancellationToken.None);
                }
            }
        }

        output.WriteLine($"PostgreSQL queue timing, {Total:N0} notifications per run (batches of {Batch}), {Environment.ProcessorCount} cores");
        output.WriteLine("| run | enqueue rows/s | claim+complete rows/s | overall rows/s |");
        output.WriteLine("| --- | ---: | ---: | ---: |");
        foreach (var coalesce in new[] { false, true })
        {
            foreach (var nodes in new[] { 1, 2 })
            {
                for (var attempt = 0; attempt < 2; attempt++)
                {
                    var (enqueue, drain) = await RunOnceAsync(connectionString, coalesce, nodes);
                    if (attempt == 0)
                    {
                        continue; // warm-up: JIT, pool, prepared statements
                    }

                    output.WriteLine(string.Create(
                        CultureInfo.InvariantCulture,
                        $"| {(coalesce ? "coalescing keys" : "direct sends")}, {nodes} node{(nodes > 1 ? "s" : string.Empty)} | {Total / enqueue.TotalSeconds:N0} | {Total / drain.TotalSeconds:N0} | {Total / (enqueue + drain).TotalSeconds:N0} |"));
                }
            }
        }
    }

    private static async Task<(TimeSpan Enqueue, TimeSpan Drain)> RunOnceAsync(string connectionString, bool coalesce, int nodes)
    {
        await using (var connection = new NpgsqlConnection(connectionString))
        {
            await connection.OpenAsync();
            await using var truncate = new NpgsqlCommand("TRUNCATE notifications, notification_attempts", connection);
            await truncate.ExecuteNonQueryAsync();
        }

        var stores = Enumerable.Range(0, nodes).Select(_ => PostgresStore.Open(connectionString, new PostgresStoreOptions { Listen = false })).ToList();
        try
        {
            var batches = new List<List<NewNotification>>(Rounds);
            for (var round = 0; round < Rounds; round++)
            {
                var batch = new List<NewNotification>(Batch);
                for (var j = 0; j < Batch; j++)
                {
                    var i = (round * Batch) + j;
                    batch.Add(Notification(i, Tenants[i % Tenants.Length], j % 2 == 0 ? Lane.Priority : Lane.Standard, coalesce ? "reg:" + i : null));
                }

                batches.Add(batch);
            }

            // Enqueue: each node takes every n-th batch.
            var clock = Stopwatch.StartNew();
            await Task.WhenAll(stores.Select((store, n) => Task.Run(async () =>
            {
                for (var b = n; b < batches.Count; b += stores.Count)
                {
                    await store.EnqueueAsync(batches[b], CancellationToken.None);
                }
            })));
            var enqueue = clock.Elapsed;

            clock.Restart();
            var completed = await Task.WhenAll(stores.Select((store, n) => Task.Run(() => DrainAsync(store, "bench/" + n))));
            var drain = clock.Elapsed;
            return completed.Sum() == Total ? (enqueue, drain) : throw new InvalidOperationException($"Completed {completed.Sum()} of {Total}.");
        }
        finally
        {
            foreach (var store in stores)
            {
                await store.DisposeAsync();
            }
        }
    }

    private static async Task<int> DrainAsync(PostgresStore store, string owner)
    {
        var completed = 0;
        var outcomes = new List<DeliveryOutcome>(Batch);
        while (true)
        {
            var claimed = await store.ClaimAsync(owner, new ClaimLimits(256, 256), DateTimeOffset.UtcNow, TimeSpan.FromMinutes(2), CancellationToken.None);
            if (claimed.Count == 0)
            {
                return completed;
            }

            outcomes.Clear();
            var now = DateTimeOffset.UtcNow;
            foreach (var n in claimed)
            {
                outcomes.Add(new DeliveryOutcome
                {
                    NotificationId = n.Id,
                    RegistrationId = n.RegistrationId,
                    State = NotificationState.Sent,
                    StatusCode = 200,
                    CompletedAt = now,
                    Attempt = n.Attempt,
                });
            }

            completed += await store.CompleteAsync(owner, outcomes, CancellationToken.None);
        }
    }

    private static NewNotification Notification(int i, string tenant, Lane lane, string? coalesceKey) => new()
    {
        TenantId = tenant,
        RegistrationId = "reg-" + i.ToString("D7", CultureInfo.InvariantCulture),
        Lane = lane,
        Platform = Platform.Apns,
        Token = i.ToString("x8", CultureInfo.InvariantCulture).PadLeft(64, 'a'),
        Topic = "com.example.securemail",
        Content = new NotificationContent { Kind = PushKind.Badge, Badge = (i % 50) + 1 },
        CoalesceKey = coalesceKey,
        CollapseId = "herald-mail",
        ExpiresAt = DateTimeOffset.UtcNow.AddDays(1),
        EventAt = DateTimeOffset.UtcNow,
    };
}
