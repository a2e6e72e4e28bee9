using Herald.Core.Pipeline;
using Herald.Core.Settings;
using Microsoft.Extensions.Time.Testing;
using Xunit;

namespace Herald.Core.Tests;

public sealed class ThrottleTests
{
    [Theory]
    [InlineData(50, 100)]
    [InlineData(600, 250)]
    [InlineData(1, 500)]
    public void TokenBucket_TenSimulatedMinutes_SendsRateTimesTenWithinOne(int ratePerMinute, int stepMilliseconds)
    {
        var time = new FakeTimeProvider();
        var bucket = new TokenBucket(time);
        var capacity = LaneThrottle.CapacityFor(ratePerMinute);
        var sent = 0;
        for (var elapsed = 0; elapsed < 10 * 60 * 1000; elapsed += stepMilliseconds)
        {
            sent += bucket.Take(1000, ratePerMinute, capacity);
            time.Advance(TimeSpan.FromMilliseconds(stepMilliseconds));
        }

        // The bucket starts with one second's worth (at least one): 500 ± 1 at 50 a minute.
        Assert.InRange(sent, (ratePerMinute * 10) - 1, (ratePerMinute * 10) + (int)Math.Ceiling(capacity));
    }

    [Fact]
    public void TokenBucket_SleepingUntilTheNextToken_AsTheDispatcherDoes_Sends500In10MinutesAt50()
    {
        var time = new FakeTimeProvider();
        var bucket = new TokenBucket(time);
        var end = time.GetUtcNow().AddMinutes(10);
        var sent = 0;
        while (time.GetUtcNow() < end)
        {
            sent += bucket.Take(256, 50, LaneThrottle.CapacityFor(50));
            var wait = bucket.UntilNextToken(50);
            time.Advance(wait < TimeSpan.FromMilliseconds(10) ? TimeSpan.FromMilliseconds(10) : wait);
        }

        Assert.InRange(sent, 499, 501);
    }

    [Fact]
    public void TokenBucket_RateChange_AppliesToTheNextTake()
    {
        var time = new FakeTimeProvider();
        var bucket = new TokenBucket(time);
        var sent = 0;
        for (var s = 0; s < 60; s++)
        {
            sent += bucket.Take(1000, 60, LaneThrottle.CapacityFor(60));
            time.Advance(TimeSpan.FromSeconds(1));
        }

        Assert.InRange(sent, 60, 61);

        sent = 0;
        for (var s = 0; s < 60; s++)
        {
            sent += bucket.Take(1000, 600, LaneThrottle.CapacityFor(600)); // ten times faster from now on
            time.Advance(TimeSpan.FromSeconds(1));
        }

        Assert.InRange(sent, 599, 611);
    }

    [Fact]
    public void TokenBucket_UnusedTokensReturned_AreNotLostButCapped()
    {
        var time = new FakeTimeProvider();
        var bucket = new TokenBucket(time);
        Assert.Equal(1, bucket.Take(10, 60, 1));
        Assert.Equal(0, bucket.Take(10, 60, 1));
        bucket.Return(5, 1);
        Assert.Equal(1, bucket.Take(10, 60, 1));
        Assert.Equal(TimeSpan.FromSeconds(1), bucket.UntilNextToken(60));
    }

    [Fact]
    public void Settings_Defaults_AreTheDocumentedOnes_AndValid()
    {
        var s = QueueSettings.Default;
        Assert.Equal(50, s.Standard.RatePerMinute);
        Assert.Equal(ThrottleScope.Farm, s.Standard.Scope);
        Assert.Null(s.Priority.RatePerMinute);
        Assert.Equal(5, s.Retry.MaxAttempts);
        Assert.Equal(TimeSpan.FromSeconds(30), s.Retry.InitialDelay);
        Assert.Equal(TimeSpan.FromHours(1), s.Retry.MaxDelay);
        Assert.Empty(s.Validate());
    }

    [Fact]
    public void Settings_Invalid_EachProblemIsNamed()
    {
        var s = QueueSettings.Default with
        {
            Standard = new LaneSettings { RatePerMinute = 0 },
            Retry = new RetrySettings { MaxAttempts = 0, InitialDelay = TimeSpan.FromMinutes(5), MaxDelay = TimeSpan.FromMinutes(1) },
        };

        var errors = s.Validate();

        Assert.Contains(errors, e => e.StartsWith("lanes.standard.ratePerMinute", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.StartsWith("retry.maxAttempts", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.StartsWith("retry.maxDelay", StringComparison.Ordinal));
    }
}
