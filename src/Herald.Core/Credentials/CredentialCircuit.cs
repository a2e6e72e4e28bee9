namespace Herald.Core.Credentials;

/// <summary>
/// The circuit of one provider credential: a credential fault (revoked key, bad certificate, auth error) opens
/// it, so further sends with that credential are not put on the wire but go back to retry at once; after a
/// pause (doubling, bounded) one send probes the provider again, and a success closes it. Each credential
/// object has its own circuit, so one tenant's broken credential never stops another tenant's sends, and a
/// replaced credential (a new object) starts closed.
/// </summary>
public sealed class CredentialCircuit(TimeProvider time)
{
    /// <summary>The first pause after a fault.</summary>
    public static readonly TimeSpan InitialPause = TimeSpan.FromSeconds(5);

    /// <summary>The longest pause between probes.</summary>
    public static readonly TimeSpan MaxPause = TimeSpan.FromMinutes(5);

    private readonly Lock _gate = new();
    private DateTimeOffset _probeAt;
    private TimeSpan _pause;
    private bool _probing;

    /// <summary>The last fault while open: status and reason.</summary>
    public (int Status, string? Reason, DateTimeOffset At)? Fault { get; private set; }

    /// <summary>While open: when the next probe may go out (retries of the credential's work are due then).</summary>
    public TimeSpan UntilProbe
    {
        get
        {
            lock (_gate)
            {
                var wait = _probeAt - time.GetUtcNow();
                return Fault is null || wait < TimeSpan.Zero ? TimeSpan.Zero : wait;
            }
        }
    }

    /// <summary>True while the circuit is open (a probe may still be let through by <see cref="TryPass"/>).</summary>
    public bool IsOpen => Fault is not null;

    /// <summary>
    /// Whether a send may go to the provider now: always when closed; when open, one probe once the pause is over.
    /// </summary>
    public bool TryPass()
    {
        if (Fault is null)
        {
            return true;
        }

        lock (_gate)
        {
            if (Fault is null)
            {
                return true;
            }

            var now = time.GetUtcNow();
            if (_probing || now < _probeAt)
            {
                return false;
            }

            _probing = true;
            return true;
        }
    }

    /// <summary>Opens the circuit (or keeps it open with a longer pause after a failed probe).</summary>
    public void Trip(int status, string? reason)
    {
        lock (_gate)
        {
            var now = time.GetUtcNow();
            _pause = Fault is null ? InitialPause : TimeSpan.FromTicks(Math.Min(MaxPause.Ticks, _pause.Ticks * 2));
            _probeAt = now + _pause;
            _probing = false;
            Fault = (status, reason, now);
        }
    }

    /// <summary>Closes the circuit after a send the provider accepted with this credential.</summary>
    public void Reset()
    {
        if (Fault is null && !_probing)
        {
            return;
        }

        lock (_gate)
        {
            Fault = null;
            _probing = false;
            _pause = TimeSpan.Zero;
        }
    }

    /// <summary>A probe ended without a verdict on the credential (transport fault): let the next send probe.</summary>
    public void ProbeInconclusive()
    {
        lock (_gate)
        {
            _probing = false;
        }
    }
}
