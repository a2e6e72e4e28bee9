using FsCheck;
using FsCheck.Xunit;
using Herald.Core.Notifications;
using Herald.Core.Pipeline;
using Herald.Core.Planning;
using Herald.Core.Settings;

namespace Herald.Core.Tests;

/// <summary>Properties of the retry schedule and of coalescing, over generated inputs.</summary>
public sealed class RetryPropertyTests
{
    private static RetrySettings Settings(int initialMs, int extraMs) => new()
    {
        MaxAttempts = 5,
        InitialDelay = TimeSpan.FromMilliseconds(initialMs),
        MaxDelay = TimeSpan.FromMilliseconds(initialMs + extraMs),
    };

    [Property(MaxTest = 1000)]
    public bool NextDelay_IsAlwaysWithinInitialAndMax(PositiveInt initial, NonNegativeInt extra, PositiveInt attempt, double jitter)
    {
        var s = Settings(Math.Min(initial.Get, 3_600_000), Math.Min(extra.Get, 86_400_000));
        var j = double.IsFinite(jitter) ? Math.Abs(jitter % 1) : 0.5;
        var d = RetryPolicy.NextDelay(s, attempt.Get, null, j);
        return d >= s.InitialDelay && d <= s.MaxDelay;
    }

    [Property(MaxTest = 1000)]
    public bool NextDelay_WithFixedJitter_NeverShrinksAsAttemptsGrow(PositiveInt initial, NonNegativeInt extra, PositiveInt attempt)
    {
        var s = Settings(Math.Min(initial.Get, 3_600_000), Math.Min(extra.Get, 86_400_000));
        var a = Math.Min(attempt.Get, 60);
        return RetryPolicy.NextDelay(s, a, null, 0.5) <= RetryPolicy.NextDelay(s, a + 1, null, 0.5);
    }

    [Property(MaxTest = 1000)]
    public bool NextDelay_JitterStaysWithinTwentyPercent_UnlessClamped(PositiveInt attempt, double jitter)
    {
        var s = Settings(1000, 10_000_000);
        var a = Math.Min(attempt.Get, 12); // below the cap: no clamping
        var j = double.IsFinite(jitter) ? Math.Abs(jitter % 1) : 0.5;
        var nominal = 1000 * Math.Pow(2, a - 1);
        var d = RetryPolicy.NextDelay(s, a, null, j).TotalMilliseconds;
        return d >= Math.Max(1000, nominal * 0.8) - 1 && d <= (nominal * 1.2) + 1;
    }

    [Property(MaxTest = 500)]
    public bool NextDelay_RetryAfter_IsHonouredUpToMax(PositiveInt attempt, PositiveInt retryAfterSeconds)
    {
        var s = Settings(30_000, 3_570_000);
        var ra = TimeSpan.FromSeconds(Math.Min(retryAfterSeconds.Get, 100_000));
        var d = RetryPolicy.NextDelay(s, Math.Min(attempt.Get, 60), ra, 0.5);
        return d >= (ra < s.MaxDelay ? ra : s.MaxDelay) && d <= s.MaxDelay;
    }

    [Property(MaxTest = 500)]
    public bool Coalescing_SequenceOfUpdates_LeavesOnePendingWithTheNewestBadge(NonEmptyArray<(bool Alert, byte Badge)> updates)
    {
        // The queue keeps one pending row per key and folds each newer notification into it with Merge.
        NotificationContent? pending = null;
        var anyAlert = false;
        foreach (var (alert, badge) in updates.Get)
        {
            var next = alert
                ? new NotificationContent { Kind = PushKind.Alert, Body = "New mail", Badge = badge }
                : new NotificationContent { Kind = PushKind.Badge, Badge = badge };
            anyAlert |= alert;
            pending = pending is null ? next : Coalescing.Merge(pending, next);
        }

        var newest = updates.Get[^1].Badge;
        return pending!.Badge == newest && (pending.Kind == PushKind.Alert) == anyAlert;
    }
}
