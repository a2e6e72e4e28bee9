using System.Diagnostics;
using Herald.Core.Notifications;
using Herald.Core.Ports;

namespace Herald.Bench;

/// <summary>
/// <c>--breakdown</c>: one pass of the round trip with a stopwatch per phase (enqueue, claim, complete), to
/// show where the time of <see cref="StoreThroughputBenchmarks"/> goes. Not a benchmark: one run, no statistics.
/// </summary>
internal sealed class Breakdown : StoreBenchmarkBase
{
    public static async Task RunAsync(TextWriter output)
    {
        foreach (var keyed in new[] { false, true })
        {
            var run = new Breakdown();
            await run.RunOnceAsync(keyed, output, warmup: true);
            await run.RunOnceAsync(keyed, output, warmup: false);
        }
    }

    private async Task RunOnceAsync(bool keyed, TextWriter output, bool warmup)
    {
        const int Batch = 512;
        const int Rounds = 100;
        string[] tenants = ["default", "t1", "t2", "t3"];
        OpenFreshStore("t1", "t2", "t3");
        try
        {
            var batches = new List<List<NewNotification>>();
            for (var round = 0; round < Rounds; round++)
            {
                var batch = new List<NewNotification>(Batch);
                for (var j = 0; j < Batch; j++)
                {
                    var i = (round * Batch) + j;
                    batch.Add(Notification(i, tenants[i % tenants.Length], j % 2 == 0 ? Lane.Priority : Lane.Standard, keyed ? "reg:" + i : null));
                }

                batches.Add(batch);
            }

            var enqueue = new Stopwatch();
            var claim = new Stopwatch();
            var complete = new Stopwatch();
            var outcomes = new List<DeliveryOutcome>(Batch);
            var cpuBefore = Process.GetCurrentProcess().TotalProcessorTime;
            var total = Stopwatch.StartNew();
            foreach (var batch in batches)
            {
                enqueue.Start();
                await Store.EnqueueAsync(batch, Ct);
                enqueue.Stop();

                claim.Start();
                var claimed = await Store.ClaimAsync("bench/1", new ClaimLimits(256, 256), DateTimeOffset.UtcNow, TimeSpan.FromMinutes(2), Ct);
                claim.Stop();

                outcomes.Clear();
                foreach (var n in claimed)
                {
                    outcomes.Add(new DeliveryOutcome { NotificationId = n.Id, RegistrationId = n.RegistrationId, State = NotificationState.Sent, StatusCode = 200, CompletedAt = DateTimeOffset.UtcNow, Attempt = n.Attempt });
                }

                complete.Start();
                await Store.CompleteAsync("bench/1", outcomes, Ct);
                complete.Stop();
            }

            total.Stop();
            var cpu = Process.GetCurrentProcess().TotalProcessorTime - cpuBefore;
            if (!warmup)
            {
                const double n = Batch * Rounds;
                output.WriteLine(
                    $"coalesce keys {keyed,-5}: total {total.Elapsed.TotalMilliseconds,7:F0} ms = {n / total.Elapsed.TotalSeconds,8:F0}/s | " +
                    $"enqueue {enqueue.Elapsed.TotalMicroseconds / n,5:F1} µs/row, claim {claim.Elapsed.TotalMicroseconds / n,5:F1} µs/row, complete {complete.Elapsed.TotalMicroseconds / n,5:F1} µs/row | " +
                    $"CPU {cpu.TotalMicroseconds / n,5:F1} µs/row (all threads; less sensitive to other load than the wall clock)");
            }
        }
        finally
        {
            DeleteStore();
        }
    }
}
