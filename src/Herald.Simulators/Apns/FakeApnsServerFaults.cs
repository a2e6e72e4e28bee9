namespace Herald.Simulators.Apns;

/// <summary>
/// Seeded fault injection of <see cref="FakeApnsServer"/> (set with <see cref="FakeApnsServer.InjectFaults"/> or
/// <see cref="FakeApnsServerOptions.Faults"/>). Faults hit only requests the fake would otherwise accept (200), so
/// validation answers are never masked; each such request draws one number from a generator seeded with
/// <see cref="Seed"/> and gets at most one fault. The n-th drawn request always gets the same fault for the same
/// seed; which notification that is depends on arrival order (concurrent senders).
/// </summary>
/// <remarks>
/// What the client sees, per fault:
/// <list type="bullet">
/// <item><see cref="ServiceUnavailableRate"/>: <c>503 {"reason":"ServiceUnavailable"}</c>; nothing delivered.</item>
/// <item><see cref="StreamResetRate"/>: the push is delivered (counted in <see cref="FakeApnsServer.Receipts"/>), then the
/// stream is reset (HTTP/2 <c>RST_STREAM</c> INTERNAL_ERROR) instead of answered: the client sees a transport error for
/// that request only, as when APNs fails between accepting and answering. A resend is a duplicate on the device.</item>
/// <item><see cref="ConnectionResetRate"/>: the push is delivered, then the whole TCP connection is aborted with an RST
/// (linger 0): every stream in flight on it fails with a transport error, delivered or not.</item>
/// <item><see cref="GoAwayEveryStreams"/>: after every N-th answered request (all connections together) the connection
/// that carried it is closed gracefully: Kestrel sends <c>GOAWAY</c> (NO_ERROR, last-stream-id 2^31−1, then the last
/// processed id; no debug data, so no JSON reason), lets streams in flight finish and closes. An HTTP/2 client opens a
/// new connection for later requests; streams the server never processed are retried by the client itself.</item>
/// <item><see cref="StallRate"/>: the answer waits <see cref="StallDuration"/> (on the fake's clock) before it is sent.</item>
/// </list>
/// </remarks>
public sealed class FakeApnsFaults
{
    /// <summary>The generator's seed: the same seed gives the same sequence of faults.</summary>
    public int Seed { get; set; } = 1;

    /// <summary>Fraction of accepted requests answered 503 ServiceUnavailable instead.</summary>
    public double ServiceUnavailableRate { get; set; }

    /// <summary>Fraction of accepted requests delivered and then reset (RST_STREAM) instead of answered.</summary>
    public double StreamResetRate { get; set; }

    /// <summary>Fraction of accepted requests delivered and then answered by aborting the TCP connection (RST).</summary>
    public double ConnectionResetRate { get; set; }

    /// <summary>Fraction of accepted requests whose 200 is delayed by <see cref="StallDuration"/>.</summary>
    public double StallRate { get; set; }

    /// <summary>How long a stalled answer waits (Apple's stalls under load are seconds long).</summary>
    public TimeSpan StallDuration { get; set; } = TimeSpan.FromSeconds(2);

    /// <summary>A graceful GOAWAY after every this many answered requests (0: never); see <see cref="FakeApnsServer.GoAwayEvery"/>.</summary>
    public int GoAwayEveryStreams { get; set; }

    internal void Validate()
    {
        foreach (var rate in (ReadOnlySpan<double>)[ServiceUnavailableRate, StreamResetRate, ConnectionResetRate, StallRate])
        {
            if (double.IsNaN(rate) || rate < 0 || rate > 1)
            {
                throw new ArgumentOutOfRangeException(nameof(FakeApnsFaults), "Fault rates lie between 0 and 1.");
            }
        }

        if (ServiceUnavailableRate + StreamResetRate + ConnectionResetRate + StallRate > 1)
        {
            throw new ArgumentOutOfRangeException(nameof(FakeApnsFaults), "The fault rates add up to more than 1.");
        }

        ArgumentOutOfRangeException.ThrowIfNegative(GoAwayEveryStreams);
        ArgumentOutOfRangeException.ThrowIfLessThan(StallDuration, TimeSpan.Zero);
    }
}

/// <summary>Faults injected so far by <see cref="FakeApnsServer"/> (a snapshot).</summary>
/// <param name="Drawn">Accepted requests that drew a number (faulted or not).</param>
/// <param name="ServiceUnavailable">Answered 503 instead of 200.</param>
/// <param name="StreamResets">Delivered, then the stream reset.</param>
/// <param name="ConnectionResets">Delivered, then the TCP connection aborted.</param>
/// <param name="Stalls">200s delayed by the stall duration.</param>
/// <param name="GoAways">Graceful connection closes (GOAWAY) requested.</param>
public sealed record FakeApnsFaultCounts(long Drawn, long ServiceUnavailable, long StreamResets, long ConnectionResets, long Stalls, long GoAways)
{
    /// <summary>One line for test output.</summary>
    public override string ToString()
        => FormattableString.Invariant($"drawn {Drawn}: 503 {ServiceUnavailable}, stream resets {StreamResets}, connection resets {ConnectionResets}, stalls {Stalls}, GOAWAYs {GoAways}");
}
