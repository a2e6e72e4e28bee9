namespace Herald.Providers.Http;

/// <summary>
/// A token that cancels on the caller's token or after a timeout measured by a <see cref="TimeProvider"/> (every
/// provider request's deadline); the caller tells the two apart by checking its own token.
/// </summary>
internal sealed class LinkedTimeout : IDisposable
{
    private readonly CancellationTokenSource _source;
    private readonly CancellationTokenRegistration _link;

    public LinkedTimeout(TimeSpan timeout, TimeProvider time, CancellationToken cancellationToken)
    {
        _source = new CancellationTokenSource(timeout, time);
        _link = cancellationToken.CanBeCanceled
            ? cancellationToken.UnsafeRegister(static state => ((CancellationTokenSource)state!).Cancel(), _source)
            : default;
    }

    public CancellationToken Token => _source.Token;

    public void Dispose()
    {
        _link.Dispose();
        _source.Dispose();
    }
}
