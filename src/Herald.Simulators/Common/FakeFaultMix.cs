namespace Herald.Simulators.Common;

/// <summary>What a request the fake would accept meets instead, drawn by <see cref="FakeFaultMix"/>.</summary>
public enum FakeFault
{
    /// <summary>Answered normally.</summary>
    None,

    /// <summary>Answered 503 instead; nothing delivered.</summary>
    Unavailable,

    /// <summary>Delivered, then the connection aborted instead of answered (a resend is a duplicate on the device).</summary>
    Reset,

    /// <summary>Answered normally after <see cref="FakeFaultMix.StallDuration"/>.</summary>
    Stall,
}

/// <summary>
/// A seeded mix of transport faults for the fake FCM and WNS (the fake APNs has its own, with HTTP/2 specifics:
/// <see cref="Apns.FakeApnsFaults"/>). Only requests the fake would accept draw a number, so validation answers are
/// never masked; the n-th drawing request always meets the same fault for the same seed. Thread-safe.
/// </summary>
public sealed class FakeFaultMix
{
    private readonly Random _random;
    private readonly Lock _gate = new();
    private long _unavailable;
    private long _resets;
    private long _stalls;

    /// <summary>A mix; rates are fractions of accepted requests and add up to at most 1.</summary>
    public FakeFaultMix(int seed, double unavailableRate, double resetRate, double stallRate, TimeSpan? stallDuration = null)
    {
        foreach (var rate in (ReadOnlySpan<double>)[unavailableRate, resetRate, stallRate])
        {
            if (double.IsNaN(rate) || rate < 0 || rate > 1)
            {
                throw new ArgumentOutOfRangeException(nameof(unavailableRate), "Fault rates lie between 0 and 1.");
            }
        }

        if (unavailableRate + resetRate + stallRate > 1)
        {
            throw new ArgumentOutOfRangeException(nameof(unavailableRate), "The fault rates add up to more than 1.");
        }

        _random = new Random(seed);
        UnavailableRate = unavailableRate;
        ResetRate = resetRate;
        StallRate = stallRate;
        StallDuration = stallDuration ?? TimeSpan.FromSeconds(2);
    }

    /// <summary>Fraction answered 503.</summary>
    public double UnavailableRate { get; }

    /// <summary>Fraction delivered, then reset.</summary>
    public double ResetRate { get; }

    /// <summary>Fraction answered late.</summary>
    public double StallRate { get; }

    /// <summary>How long a stalled answer waits (on the fake's clock).</summary>
    public TimeSpan StallDuration { get; }

    /// <summary>Faults injected so far.</summary>
    public (long Unavailable, long Resets, long Stalls) Counts
        => (Interlocked.Read(ref _unavailable), Interlocked.Read(ref _resets), Interlocked.Read(ref _stalls));

    /// <summary>The fault the next accepted request meets.</summary>
    public FakeFault Draw()
    {
        double x;
        lock (_gate)
        {
            x = _random.NextDouble();
        }

        if (x < UnavailableRate)
        {
            Interlocked.Increment(ref _unavailable);
            return FakeFault.Unavailable;
        }

        if (x < UnavailableRate + ResetRate)
        {
            Interlocked.Increment(ref _resets);
            return FakeFault.Reset;
        }

        if (x < UnavailableRate + ResetRate + StallRate)
        {
            Interlocked.Increment(ref _stalls);
            return FakeFault.Stall;
        }

        return FakeFault.None;
    }

    /// <summary>One line for test output.</summary>
    public override string ToString()
    {
        var (unavailable, resets, stalls) = Counts;
        return FormattableString.Invariant($"503 {unavailable}, resets {resets}, stalls {stalls}");
    }
}
