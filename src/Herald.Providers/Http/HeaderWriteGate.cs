namespace Herald.Providers.Http;

/// <summary>
/// Bounds how many requests of one connection pool are between entering <see cref="SocketsHttpHandler"/> and having their
/// HEADERS frame written. SocketsHttpHandler's HTTP/2 client serialises each request's headers into a 4 KB buffer rented from
/// <see cref="System.Buffers.ArrayPool{T}.Shared"/> and holds it until the connection's one writer has copied it out. A
/// dispatcher that starts a claim batch of hundreds of sends at once had hundreds of those buffers rented together, far more
/// than the shared pool keeps (32 arrays per core): every send then allocated new 4 KB arrays that the pool dropped again,
/// 45 % of the bytes the dispatch path allocated and the cause of its gen2 collections. With at most
/// <see cref="DefaultPermits"/> requests in that short stretch, the buffers come from the pool and go back to it; the
/// number of requests in flight (waiting for their answers) is not limited by this gate.
/// </summary>
/// <remarks>
/// A request takes part only when its body is a <see cref="GatedByteArrayContent"/>: the handler asks the content for its
/// body right after the headers are written, which is when the permit goes back (or when the send ends, whichever comes first).
/// </remarks>
public sealed class HeaderWriteGate : IDisposable
{
    /// <summary>Requests allowed in the header-writing stretch at once; below what the shared array pool keeps on two cores.</summary>
    public const int DefaultPermits = 32;

    private readonly SemaphoreSlim _permits;

    public HeaderWriteGate(int permits = DefaultPermits)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(permits, 1);
        _permits = new SemaphoreSlim(permits, permits);
        Permits = permits;
    }

    /// <summary>The gate's size.</summary>
    public int Permits { get; }

    /// <summary>Permits free now (for tests).</summary>
    public int Available => _permits.CurrentCount;

    /// <summary>
    /// Sends <paramref name="request"/> through <paramref name="invoker"/>, holding a permit until the handler starts on the
    /// body of a <see cref="GatedByteArrayContent"/>, or until the request is disposed if it never does (a connection that
    /// fails first): the caller must dispose the request, as every caller does with <c>using</c>. Other requests pass
    /// ungated. With a permit free this adds no asynchronous step to the send.
    /// </summary>
    public Task<HttpResponseMessage> SendAsync(HttpMessageInvoker invoker, HttpRequestMessage request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(invoker);
        ArgumentNullException.ThrowIfNull(request);
        if (request.Content is not GatedByteArrayContent gated)
        {
            return invoker.SendAsync(request, cancellationToken);
        }

        if (_permits.Wait(0, CancellationToken.None))
        {
            gated.Hold(_permits);
            return invoker.SendAsync(request, cancellationToken);
        }

        return SendAfterWaitAsync(invoker, request, gated, cancellationToken);
    }

    private async Task<HttpResponseMessage> SendAfterWaitAsync(HttpMessageInvoker invoker, HttpRequestMessage request, GatedByteArrayContent content, CancellationToken cancellationToken)
    {
        await _permits.WaitAsync(cancellationToken).ConfigureAwait(false);
        content.Hold(_permits);
        return await invoker.SendAsync(request, cancellationToken).ConfigureAwait(false);
    }

    public void Dispose() => _permits.Dispose();
}

/// <summary>
/// A request body of bytes (as <see cref="ByteArrayContent"/>: it sets Content-Length) that returns its
/// <see cref="HeaderWriteGate"/> permit when the handler starts writing it, that is once the request's headers are out, or
/// when it is disposed with its request, whichever comes first.
/// </summary>
public sealed class GatedByteArrayContent(byte[] body) : ByteArrayContent(body)
{
    private SemaphoreSlim? _held;

    /// <summary>Whether a permit is held (for tests).</summary>
    internal bool HoldsPermit => Volatile.Read(ref _held) is not null;

    internal void Hold(SemaphoreSlim permits) => Volatile.Write(ref _held, permits);

    /// <summary>Returns the permit once; later calls do nothing.</summary>
    internal void ReleasePermit()
    {
        if (Interlocked.Exchange(ref _held, null) is { } permits)
        {
            try
            {
                permits.Release();
            }
            catch (ObjectDisposedException)
            {
                // The connection pool was disposed (shutdown) while this send was still in it.
            }
        }
    }

    protected override Task SerializeToStreamAsync(Stream stream, System.Net.TransportContext? context, CancellationToken cancellationToken)
    {
        ReleasePermit();
        return base.SerializeToStreamAsync(stream, context, cancellationToken);
    }

    protected override Task SerializeToStreamAsync(Stream stream, System.Net.TransportContext? context)
    {
        ReleasePermit();
        return base.SerializeToStreamAsync(stream, context);
    }

    protected override void SerializeToStream(Stream stream, System.Net.TransportContext? context, CancellationToken cancellationToken)
    {
        ReleasePermit();
        base.SerializeToStream(stream, context, cancellationToken);
    }

    protected override void Dispose(bool disposing)
    {
        ReleasePermit();
        base.Dispose(disposing);
    }
}
