using Herald.Core.Settings;
using Xunit;

namespace Herald.Storage.Tests;

/// <summary>Runtime settings with their audit trail, and the farm-wide token buckets.</summary>
public abstract partial class StoreContractTests
{
    private const string Bucket = "lane:standard";

    // ---- settings -----------------------------------------------------------------------------

    [Fact]
    public async Task Settings_NeverSaved_AreNullWithNoHistory()
    {
        Assert.Null(await Store.GetSettingsAsync(Ct));
        Assert.Empty(await Store.GetSettingsHistoryAsync(10, Ct));
    }

    [Fact]
    public async Task Settings_SaveTwice_VersionsAndAuditsOldToNew()
    {
        var first = QueueSettings.Default with
        {
            Standard = new LaneSettings { RatePerMinute = 120, Scope = ThrottleScope.Node },
            Retry = new RetrySettings { MaxAttempts = 7, InitialDelay = TimeSpan.FromSeconds(10), MaxDelay = TimeSpan.FromMinutes(30) },
        };
        var firstAt = Time.GetUtcNow();
        var saved = await Store.SaveSettingsAsync(first, "key-admin", firstAt, Ct);
        Time.Advance(TimeSpan.FromMinutes(5));
        var second = first with { Priority = new LaneSettings { MaxAttempts = 3 } };
        var secondAt = Time.GetUtcNow();
        var savedAgain = await Store.SaveSettingsAsync(second, "key-ops", secondAt, Ct);

        Assert.Equal(new StoredSettings(first, 1, firstAt, "key-admin"), saved);
        Assert.Equal(new StoredSettings(second, 2, secondAt, "key-ops"), savedAgain);
        var stored = await Store.GetSettingsAsync(Ct);
        Assert.Equal(new StoredSettings(second, 2, secondAt, "key-ops"), stored);

        var history = await Store.GetSettingsHistoryAsync(10, Ct);
        Assert.Equal([2L, 1L], history.Select(h => h.Version));
        Assert.Equal(["key-ops", "key-admin"], history.Select(h => h.Actor));
        Assert.Equal([secondAt, firstAt], history.Select(h => h.At));
        Assert.Equal(history[1].NewJson, history[0].OldJson);
        Assert.Contains("\"ratePerMinute\":50", history[1].OldJson, StringComparison.Ordinal); // the defaults
        Assert.Contains("\"ratePerMinute\":120", history[1].NewJson, StringComparison.Ordinal);
        Assert.Contains("\"scope\":\"node\"", history[1].NewJson, StringComparison.Ordinal);
        Assert.Contains("\"scope\":\"farm\"", history[1].OldJson, StringComparison.Ordinal);
        Assert.Contains("\"initialDelay\":\"00:00:10\"", history[1].NewJson, StringComparison.Ordinal);
        Assert.Contains("\"maxDelay\":\"00:30:00\"", history[1].NewJson, StringComparison.Ordinal);
        Assert.Equal([2L], (await Store.GetSettingsHistoryAsync(1, Ct)).Select(h => h.Version));
    }

    [Fact]
    public async Task Settings_Invalid_AreRefusedAndNothingIsStored()
    {
        var invalid = QueueSettings.Default with { Retry = new RetrySettings { MaxAttempts = 0 } };

        await Assert.ThrowsAsync<ArgumentException>(() => Store.SaveSettingsAsync(invalid, "key-admin", Time.GetUtcNow(), Ct));

        Assert.Null(await Store.GetSettingsAsync(Ct));
        Assert.Empty(await Store.GetSettingsHistoryAsync(10, Ct));
    }

    [Fact]
    public async Task Settings_SurviveAReopen()
    {
        var settings = QueueSettings.Default with { Standard = new LaneSettings { RatePerMinute = null } };
        await Store.SaveSettingsAsync(settings, "key-admin", Time.GetUtcNow(), Ct);

        await ReopenAsync();

        var stored = await Store.GetSettingsAsync(Ct);
        Assert.Equal(settings, stored!.Settings);
        Assert.Null(stored.Settings.Standard.RatePerMinute);
        Assert.Equal(1, stored.Version);
    }

    // ---- throttle -----------------------------------------------------------------------------

    [Fact]
    public async Task Throttle_NewBucket_StartsFull()
    {
        Assert.Equal(3, await Store.TakeTokensAsync(Bucket, 3, ratePerMinute: 60, capacity: 5, Time.GetUtcNow(), Ct));
        Assert.Equal(2, await Store.TakeTokensAsync(Bucket, 5, ratePerMinute: 60, capacity: 5, Time.GetUtcNow(), Ct));
        Assert.Equal(0, await Store.TakeTokensAsync(Bucket, 5, ratePerMinute: 60, capacity: 5, Time.GetUtcNow(), Ct));
        Assert.Equal(4, await Store.TakeTokensAsync("lane:other", 4, ratePerMinute: 60, capacity: 5, Time.GetUtcNow(), Ct)); // buckets are separate
    }

    [Fact]
    public async Task Throttle_RefillsWithTime_UpToCapacity()
    {
        Assert.Equal(1, await Store.TakeTokensAsync(Bucket, 1, ratePerMinute: 60, capacity: 1, Time.GetUtcNow(), Ct));
        Assert.Equal(0, await Store.TakeTokensAsync(Bucket, 1, ratePerMinute: 60, capacity: 1, Time.GetUtcNow(), Ct));
        Time.Advance(TimeSpan.FromMilliseconds(500));
        Assert.Equal(0, await Store.TakeTokensAsync(Bucket, 1, ratePerMinute: 60, capacity: 1, Time.GetUtcNow(), Ct));
        Time.Advance(TimeSpan.FromMilliseconds(500));
        Assert.Equal(1, await Store.TakeTokensAsync(Bucket, 1, ratePerMinute: 60, capacity: 1, Time.GetUtcNow(), Ct));

        Time.Advance(TimeSpan.FromMinutes(10)); // 600 tokens' worth of time, but the bucket holds 1
        Assert.Equal(1, await Store.TakeTokensAsync(Bucket, 5, ratePerMinute: 60, capacity: 1, Time.GetUtcNow(), Ct));

        // 50 a minute: one token every 1.2 s.
        Assert.Equal(50, await Store.TakeTokensAsync("lane:slow", 100, ratePerMinute: 50, capacity: 50, Time.GetUtcNow(), Ct));
        Time.Advance(TimeSpan.FromSeconds(12));
        Assert.Equal(10, await Store.TakeTokensAsync("lane:slow", 100, ratePerMinute: 50, capacity: 50, Time.GetUtcNow(), Ct));
    }

    [Fact]
    public async Task Throttle_ClockBehindTheBucket_RefillsNothing()
    {
        Assert.Equal(2, await Store.TakeTokensAsync(Bucket, 2, ratePerMinute: 60, capacity: 2, Time.GetUtcNow(), Ct));

        // Another node whose clock is 5 s behind: no tokens from its past, and the bucket's time stays.
        Assert.Equal(0, await Store.TakeTokensAsync(Bucket, 2, ratePerMinute: 60, capacity: 2, Time.GetUtcNow() - TimeSpan.FromSeconds(5), Ct));
        Assert.Equal(1, await Store.TakeTokensAsync(Bucket, 2, ratePerMinute: 60, capacity: 2, Time.GetUtcNow() + TimeSpan.FromSeconds(1), Ct));
    }

    [Fact]
    public async Task Throttle_ReturnedTokens_AreCappedAtCapacity()
    {
        Assert.Equal(3, await Store.TakeTokensAsync(Bucket, 10, ratePerMinute: 60, capacity: 3, Time.GetUtcNow(), Ct));

        await Store.ReturnTokensAsync(Bucket, 2, capacity: 3, Ct);
        Assert.Equal(2, await Store.TakeTokensAsync(Bucket, 10, ratePerMinute: 60, capacity: 3, Time.GetUtcNow(), Ct));

        await Store.ReturnTokensAsync(Bucket, 10, capacity: 3, Ct);
        Assert.Equal(3, await Store.TakeTokensAsync(Bucket, 10, ratePerMinute: 60, capacity: 3, Time.GetUtcNow(), Ct));

        await Store.ReturnTokensAsync("lane:unknown", 10, capacity: 3, Ct); // nothing to give back to; starts full
        Assert.Equal(3, await Store.TakeTokensAsync("lane:unknown", 10, ratePerMinute: 60, capacity: 3, Time.GetUtcNow(), Ct));
    }

    [Fact]
    public async Task Throttle_ConcurrentTakers_NeverExceedRateTimesTimePlusCapacity()
    {
        const double rate = 600; // 10 a second
        const double capacity = 5;
        var start = Time.GetUtcNow();
        var step = TimeSpan.FromMilliseconds(50);
        const int steps = 40;

        // Four nodes take 2 tokens every 50 ms of their clock (which agree), interleaved at random.
        var takers = Enumerable.Range(0, 4).Select(n => Task.Run(
            async () =>
            {
                var taken = 0;
                for (var i = 0; i < steps; i++)
                {
                    taken += await Store.TakeTokensAsync(Bucket, 2, rate, capacity, start + (step * i), Ct);
                }

                return taken;
            },
            Ct));
        var total = (await Task.WhenAll(takers)).Sum();

        var elapsed = step * (steps - 1);
        var allowed = (rate * elapsed.TotalMinutes) + capacity;
        Assert.InRange(total, (int)capacity, (int)Math.Floor(allowed));
    }
}
