using Herald.Core.Pipeline;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using Xunit;

namespace Herald.Core.Tests;

public sealed class RetryPolicyTests
{
    private static readonly RetryOptions Options = new() { MaxAttempts = 5, InitialDelay = TimeSpan.FromSeconds(30), MaxDelay = TimeSpan.FromHours(1) };

    [Theory]
    [InlineData(1, 30)]
    [InlineData(2, 60)]
    [InlineData(3, 120)]
    [InlineData(4, 240)]
    public void NextDelay_WithoutJitter_Doubles(int attempt, int expectedSeconds)
        => Assert.Equal(TimeSpan.FromSeconds(expectedSeconds), RetryPolicy.NextDelay(Options, attempt, null, 0.5));

    [Fact]
    public void NextDelay_Jitter_StaysWithinBounds()
    {
        for (var attempt = 1; attempt <= 30; attempt++)
        {
            foreach (var jitter in new[] { 0.0, 0.25, 1.0 })
            {
                var d = RetryPolicy.NextDelay(Options, attempt, null, jitter);
                Assert.InRange(d, Options.InitialDelay, Options.MaxDelay);
            }
        }
    }

    [Fact]
    public void NextDelay_LongerRetryAfter_Wins_ButIsCapped()
    {
        Assert.Equal(TimeSpan.FromMinutes(10), RetryPolicy.NextDelay(Options, 1, TimeSpan.FromMinutes(10), 0.5));
        Assert.Equal(TimeSpan.FromHours(1), RetryPolicy.NextDelay(Options, 1, TimeSpan.FromHours(5), 0.5));
        Assert.Equal(TimeSpan.FromSeconds(30), RetryPolicy.NextDelay(Options, 1, TimeSpan.FromSeconds(1), 0.5));
    }
}

public sealed class GroupCommitWriterTests
{
    private sealed class Item(int value)
    {
        public int Value { get; } = value;
        public bool Stored { get; set; }
    }

    [Fact]
    public async Task Submit_ManyConcurrent_AreCommittedInFewBatchesAndAllCompleted()
    {
        var ct = TestContext.Current.CancellationToken;
        var batches = new List<int>();
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var writer = new GroupCommitWriter<Item>("test", async (batch, _) =>
        {
            await gate.Task; // hold the first commit so the others pile up
            lock (batches)
            {
                batches.Add(batch.Count);
            }

            foreach (var i in batch)
            {
                i.Stored = true;
            }
        }, NullLogger.Instance, capacity: 1000, maxBatch: 100);

        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var loop = writer.RunAsync(cts.Token);
        var items = Enumerable.Range(0, 250).Select(i => new Item(i)).ToArray();
        var submits = items.Select(i => writer.SubmitAsync(i, ct)).ToArray();
        gate.SetResult();
        await Task.WhenAll(submits);

        Assert.All(items, i => Assert.True(i.Stored));
        Assert.Equal(250, batches.Sum());
        Assert.True(batches.Count <= 4, $"expected group commits, got {batches.Count} batches");
        await cts.CancelAsync();
        await loop;
    }

    [Fact]
    public async Task Submit_OneBadItemInBatch_FailsOnlyThatItem()
    {
        var ct = TestContext.Current.CancellationToken;
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var writer = new GroupCommitWriter<Item>("test", async (batch, _) =>
        {
            await gate.Task;
            if (batch.Any(i => i.Value == 13))
            {
                throw new InvalidOperationException("poison");
            }

            foreach (var i in batch)
            {
                i.Stored = true;
            }
        }, NullLogger.Instance, capacity: 100, maxBatch: 50);

        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var loop = writer.RunAsync(cts.Token);
        var items = Enumerable.Range(0, 20).Select(i => new Item(i)).ToArray();
        var submits = items.Select(i => writer.SubmitAsync(i, ct)).ToArray();
        gate.SetResult();

        for (var i = 0; i < items.Length; i++)
        {
            if (i == 13)
            {
                await Assert.ThrowsAsync<InvalidOperationException>(() => submits[i]);
            }
            else
            {
                await submits[i];
                Assert.True(items[i].Stored);
            }
        }

        await cts.CancelAsync();
        await loop;
    }
}

public sealed class AsyncSignalTests
{
    [Fact]
    public async Task Wait_SetBefore_ReturnsAtOnce()
    {
        using var signal = new AsyncSignal();
        signal.Set();
        signal.Set(); // idempotent
        Assert.True(await signal.WaitAsync(TimeSpan.FromHours(1), TimeProvider.System, TestContext.Current.CancellationToken));
        Assert.False(await signal.WaitAsync(TimeSpan.Zero, TimeProvider.System, TestContext.Current.CancellationToken));
    }

    [Fact]
    public async Task Wait_TimesOutOnTheGivenClock_WithoutSleeping()
    {
        using var signal = new AsyncSignal();
        var time = new FakeTimeProvider();
        var wait = signal.WaitAsync(TimeSpan.FromMinutes(5), time, TestContext.Current.CancellationToken);
        Assert.False(wait.IsCompleted);
        time.Advance(TimeSpan.FromMinutes(5));
        Assert.False(await wait);
    }

    [Fact]
    public void Set_AfterDispose_IsANoOp()
    {
        var signal = new AsyncSignal();
        signal.Dispose();
        var thrown = Record.Exception(signal.Set); // a change announced while its worker stops
        Assert.Null(thrown);
    }

    [Fact]
    public async Task Wait_SetWhileWaiting_Wakes()
    {
        using var signal = new AsyncSignal();
        var wait = signal.WaitAsync(TimeSpan.FromHours(1), new FakeTimeProvider(), TestContext.Current.CancellationToken);
        signal.Set();
        Assert.True(await wait);
    }
}
