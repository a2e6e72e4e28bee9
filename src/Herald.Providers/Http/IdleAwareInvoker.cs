using Herald.Core.Settings;

namespace Herald.Providers.Http;

/// <summary>
/// One long-lived HTTP/2 connection pool whose idle time follows the live setting
/// (<see cref="ILiveConnectionSettings.IdleTimeout"/>, else the provider's configured one). A pool's idle time is fixed
/// once it is built (<see cref="SocketsHttpHandler.PooledConnectionIdleTimeout"/>), so when the setting changes the next
/// send builds a new pool and the old one is disposed after <see cref="RetireAfter"/>, long enough for the sends still
/// on it to finish. While the setting does not change this is one volatile read and a compare per send. Sends pass the
/// pool's <see cref="HeaderWriteGate"/>.
/// </summary>
internal sealed class IdleAwareInvoker : IDisposable
{
    /// <summary>How long a replaced pool stays open for the sends already on it.</summary>
    public static readonly TimeSpan RetireAfter = TimeSpan.FromMinutes(2);

    private readonly Func<TimeSpan, HttpMessageInvoker> _factory;
    private readonly TimeSpan _configured;
    private readonly ILiveConnectionSettings? _live;
    private readonly TimeProvider _time;
    private readonly Lock _gate = new();
    private readonly List<(HttpMessageInvoker Invoker, ITimer Timer)> _retiring = [];
    private readonly HeaderWriteGate _headers = new();
    private volatile Pool _current;
    private bool _disposed;

    /// <summary>A pool built by <paramref name="factory"/> for the idle time in force.</summary>
    public IdleAwareInvoker(Func<TimeSpan, HttpMessageInvoker> factory, TimeSpan configured, ILiveConnectionSettings? live, TimeProvider time)
    {
        _factory = factory ?? throw new ArgumentNullException(nameof(factory));
        _configured = configured;
        _live = live;
        _time = time ?? throw new ArgumentNullException(nameof(time));
        var idle = Effective;
        _current = new Pool(factory(idle), idle);
    }

    /// <summary>The idle time in force now.</summary>
    public TimeSpan Effective => _live?.IdleTimeout ?? _configured;

    /// <summary>The idle time of the current pool.</summary>
    public TimeSpan CurrentIdleTimeout => _current.Idle;

    /// <summary>Pools replaced after a setting change (for tests and logs).</summary>
    public int Rebuilds { get; private set; }

    /// <summary>The pool to send on: the current one, or a new one when the idle time changed.</summary>
    public HttpMessageInvoker Invoker
    {
        get
        {
            var pool = _current;
            var idle = Effective;
            return pool.Idle == idle ? pool.Invoker : Rebuild(idle);
        }
    }

    /// <summary>Sends on <see cref="Invoker"/>, through the pool's <see cref="HeaderWriteGate"/>.</summary>
    public Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        => _headers.SendAsync(Invoker, request, cancellationToken);

    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            _current.Invoker.Dispose();
            foreach (var (invoker, timer) in _retiring)
            {
                timer.Dispose();
                invoker.Dispose();
            }

            _retiring.Clear();
        }

        _headers.Dispose();
    }

    private HttpMessageInvoker Rebuild(TimeSpan idle)
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            var old = _current;
            if (old.Idle == idle)
            {
                return old.Invoker; // another send rebuilt it first
            }

            _current = new Pool(_factory(idle), idle);
            Rebuilds++;
            var timer = _time.CreateTimer(_ => Retire(old.Invoker), null, RetireAfter, Timeout.InfiniteTimeSpan);
            _retiring.Add((old.Invoker, timer));
            return _current.Invoker;
        }
    }

    private void Retire(HttpMessageInvoker invoker)
    {
        lock (_gate)
        {
            var index = _retiring.FindIndex(r => ReferenceEquals(r.Invoker, invoker));
            if (index < 0)
            {
                return;
            }

            _retiring[index].Timer.Dispose();
            _retiring.RemoveAt(index);
        }

        invoker.Dispose();
    }

    private sealed record Pool(HttpMessageInvoker Invoker, TimeSpan Idle);
}
