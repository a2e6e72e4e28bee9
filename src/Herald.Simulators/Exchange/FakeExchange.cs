using System.Buffers;
using System.Net.Http.Headers;

namespace Herald.Simulators.Exchange;

/// <summary>
/// The Exchange side of EWS push subscriptions, for the demo, end-to-end tests and benchmarks: it keeps simulated
/// mailboxes and posts <c>SendNotification</c> requests to their callback URLs exactly as Exchange does (SOAP 1.1,
/// <c>Content-Type: text/xml; charset=utf-8</c>, a <c>SOAPAction</c> header, no Authorization header), reads the
/// <c>SubscriptionStatus</c> answer, and behaves like Exchange on <c>Unsubscribe</c>, failures (retries after 30 s,
/// doubling, until StatusFrequency is exceeded) and idle time (StatusEvent heartbeats).
/// </summary>
/// <remarks>
/// All time comes from the <see cref="TimeProvider"/>: with a FakeTimeProvider, retries and heartbeats happen when
/// the test advances the clock, never on their own. Request timeouts are the <see cref="HttpClient"/>'s. One shared
/// client serves every subscription; a post allocates its body and the request objects, nothing more.
/// </remarks>
public sealed class FakeExchange : IAsyncDisposable
{
    private readonly HttpClient _http;
    private readonly bool _ownsClient;
    private readonly CancellationTokenSource _lifetime = new();
    private readonly Lock _gate = new();
    private readonly List<FakeExchangeSubscription> _subscriptions = [];
    private readonly HashSet<Task> _background = [];
    private readonly Random _random;
    private readonly byte[] _databaseGuid = new byte[16];
    private long _attempts;
    private long _succeeded;
    private long _failed;
    private bool _disposed;

    /// <summary>A fake that posts with <paramref name="httpClient"/> (not disposed by the fake).</summary>
    public FakeExchange(HttpClient httpClient, TimeProvider timeProvider, FakeExchangeOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(httpClient);
        ArgumentNullException.ThrowIfNull(timeProvider);
        _http = httpClient;
        TimeProvider = timeProvider;
        Options = options ?? new FakeExchangeOptions();
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(Options.InitialRetryDelay, TimeSpan.Zero, nameof(options));
        ArgumentOutOfRangeException.ThrowIfLessThan(Options.MaxResponseBytes, 1, nameof(options));
#pragma warning disable CA5394 // Simulated ids only need to look random and be reproducible with a seed.
        _random = Options.Seed is int seed ? new Random(seed) : new Random();
        _random.NextBytes(_databaseGuid);
#pragma warning restore CA5394
    }

    /// <summary>A fake that posts through <paramref name="handler"/> (not disposed by the fake) with one client of its own.</summary>
    public FakeExchange(HttpMessageHandler handler, TimeProvider timeProvider, FakeExchangeOptions? options = null)
        : this(new HttpClient(handler ?? throw new ArgumentNullException(nameof(handler)), disposeHandler: false), timeProvider, options)
    {
        _ownsClient = true;
    }

    /// <summary>The clock of retries, heartbeats and timestamps.</summary>
    public TimeProvider TimeProvider { get; }

    /// <summary>The options.</summary>
    public FakeExchangeOptions Options { get; }

    /// <summary>Every subscription created, in order.</summary>
    public IReadOnlyList<FakeExchangeSubscription> Subscriptions
    {
        get { lock (_gate) { return [.. _subscriptions]; } }
    }

    /// <summary>Posts finished, over all subscriptions.</summary>
    public long TotalAttempts => Interlocked.Read(ref _attempts);

    /// <summary>Posts answered with a valid SubscriptionStatus.</summary>
    public long SucceededAttempts => Interlocked.Read(ref _succeeded);

    /// <summary>Posts that failed (and will be retried unless the subscription expired).</summary>
    public long FailedAttempts => Interlocked.Read(ref _failed);

    /// <summary>
    /// Creates a push subscription for a new simulated mailbox (empty inbox) that posts to <paramref name="callbackUrl"/>.
    /// No heartbeats are sent; see the overload.
    /// </summary>
    /// <param name="callbackUrl">An absolute http or https URL.</param>
    /// <param name="statusFrequency">Whole minutes from 1 to 1440, as Exchange accepts.</param>
    public FakeExchangeSubscription Subscribe(Uri callbackUrl, TimeSpan statusFrequency) => Subscribe(callbackUrl, statusFrequency, sendHeartbeats: false);

    /// <summary>
    /// Creates a push subscription; with <paramref name="sendHeartbeats"/> a StatusEvent is posted whenever
    /// <paramref name="statusFrequency"/> passes without a successful post.
    /// </summary>
    public FakeExchangeSubscription Subscribe(Uri callbackUrl, TimeSpan statusFrequency, bool sendHeartbeats)
    {
        ArgumentNullException.ThrowIfNull(callbackUrl);
        if (!callbackUrl.IsAbsoluteUri || (callbackUrl.Scheme != Uri.UriSchemeHttp && callbackUrl.Scheme != Uri.UriSchemeHttps))
        {
            throw new ArgumentException("The callback URL must be an absolute http or https URL.", nameof(callbackUrl));
        }

        if (statusFrequency < TimeSpan.FromMinutes(1) || statusFrequency > TimeSpan.FromMinutes(1440) || statusFrequency.Ticks % TimeSpan.TicksPerMinute != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(statusFrequency), statusFrequency, "StatusFrequency is a whole number of minutes from 1 to 1440.");
        }

        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            var ids = new FakeMailboxIds(this, NewBytes(16));
            var subscription = new FakeExchangeSubscription(this, NewSubscriptionId(), callbackUrl, statusFrequency, sendHeartbeats, ids);
            _subscriptions.Add(subscription);
            return subscription;
        }
    }

    /// <summary>
    /// A message arrives in the mailbox's inbox; posts CreatedEvent, NewMailEvent and the inbox's ModifiedEvent with
    /// the new UnreadCount (plus anything still pending).
    /// </summary>
    /// <returns>
    /// The attempt, or null when nothing was posted now: the subscription has ended, a retry is scheduled (the events
    /// go with it), or a concurrent post already carried them.
    /// </returns>
    /// <param name="subscription">A subscription of this fake.</param>
    /// <param name="cancellationToken">Cancels waiting for the subscription's previous post; a post that has started completes.</param>
    public Task<ExchangePostAttempt?> DeliverNewMailAsync(FakeExchangeSubscription subscription, CancellationToken cancellationToken = default)
    {
        Check(subscription);
        return subscription.AddNewMail() ? subscription.FlushAsync(ExchangePostTrigger.Events, cancellationToken) : Task.FromResult<ExchangePostAttempt?>(null);
    }

    /// <summary>
    /// The oldest unread message is read: posts the item's ModifiedEvent and then the inbox's ModifiedEvent with the
    /// lower UnreadCount. Nothing happens (null) when nothing is unread. Otherwise as <see cref="DeliverNewMailAsync"/>.
    /// </summary>
    public Task<ExchangePostAttempt?> MarkReadAsync(FakeExchangeSubscription subscription, CancellationToken cancellationToken = default)
    {
        Check(subscription);
        return subscription.AddMarkRead() ? subscription.FlushAsync(ExchangePostTrigger.Events, cancellationToken) : Task.FromResult<ExchangePostAttempt?>(null);
    }

    /// <summary>
    /// Posts a heartbeat (a notification with only a StatusEvent) now. Null when the subscription has ended or a
    /// retry is scheduled; when events are pending they are posted instead.
    /// </summary>
    public Task<ExchangePostAttempt?> SendStatusAsync(FakeExchangeSubscription subscription, CancellationToken cancellationToken = default)
    {
        Check(subscription);
        return subscription.AddStatus() ? subscription.FlushAsync(ExchangePostTrigger.Status, cancellationToken) : Task.FromResult<ExchangePostAttempt?>(null);
    }

    /// <summary>Stops every timer, cancels posts in flight and waits for the background work to end.</summary>
    public async ValueTask DisposeAsync()
    {
        Task[] background;
        FakeExchangeSubscription[] subscriptions;
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            subscriptions = [.. _subscriptions];
        }

        foreach (var subscription in subscriptions)
        {
            subscription.Shutdown();
        }

        await _lifetime.CancelAsync().ConfigureAwait(false);
        lock (_background)
        {
            background = [.. _background];
        }

        try
        {
            await Task.WhenAll(background).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }

        _lifetime.Dispose();
        if (_ownsClient)
        {
            _http.Dispose();
        }
    }

    /// <summary>Starts a timer-driven post, tracked so that disposal can wait for it.</summary>
    internal void RunInBackground(FakeExchangeSubscription subscription, ExchangePostTrigger trigger)
    {
        lock (_background)
        {
            if (_lifetime.IsCancellationRequested)
            {
                return;
            }

            // Queued rather than run inline: a timer callback (or FakeTimeProvider.Advance) must not wait for HTTP.
            var token = _lifetime.Token;
            var task = Task.Run(() => subscription.FlushAsync(trigger, token), token);
            _background.Add(task);
            _ = task.ContinueWith(
                static (t, state) =>
                {
                    var self = (FakeExchange)state!;
                    lock (self._background)
                    {
                        self._background.Remove(t);
                    }

                    _ = t.Exception; // observed: a cancelled or failed background post has nobody to report to
                },
                this,
                CancellationToken.None,
                TaskContinuationOptions.ExecuteSynchronously,
                TaskScheduler.Default);
        }
    }

    /// <summary>Posts one SendNotification; never throws except when the fake is disposed.</summary>
    internal async Task<PostOutcome> PostAsync(Uri callbackUrl, ReadOnlyMemory<byte> body)
    {
        var token = _lifetime.Token;
        using var request = new HttpRequestMessage(HttpMethod.Post, callbackUrl);
        request.Headers.TryAddWithoutValidation("SOAPAction", ExchangeSoap.SoapAction);
        request.Content = new ReadOnlyMemoryContent(body);
        request.Content.Headers.ContentType = new MediaTypeHeaderValue("text/xml") { CharSet = "utf-8" };
        try
        {
            using var response = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, token).ConfigureAwait(false);
            var status = (int)response.StatusCode;
            if (!response.IsSuccessStatusCode)
            {
                return new PostOutcome(status, $"HTTP {status}", ExchangeAnswer.None);
            }

            var answer = await ReadAnswerAsync(response.Content, token).ConfigureAwait(false);
            return answer == ExchangeAnswer.None
                ? new PostOutcome(status, "unparsable response", answer)
                : new PostOutcome(status, null, answer);
        }
        catch (OperationCanceledException) when (token.IsCancellationRequested)
        {
            throw;
        }
        catch (OperationCanceledException)
        {
            return new PostOutcome(null, "timeout", ExchangeAnswer.None);
        }
        catch (HttpRequestException ex)
        {
            return new PostOutcome(null, $"transport error: {ex.HttpRequestError}", ExchangeAnswer.None);
        }
        catch (IOException)
        {
            return new PostOutcome(null, "transport error: IO", ExchangeAnswer.None);
        }
    }

    internal void Count(ExchangePostAttempt attempt)
    {
        Interlocked.Increment(ref _attempts);
        Interlocked.Increment(ref attempt.Succeeded ? ref _succeeded : ref _failed);
    }

    internal byte[] NewBytes(int count)
    {
        var bytes = new byte[count];
        lock (_random)
        {
#pragma warning disable CA5394 // See the constructor.
            _random.NextBytes(bytes);
#pragma warning restore CA5394
        }

        return bytes;
    }

    internal ReadOnlySpan<byte> DatabaseGuid => _databaseGuid;

    private async Task<ExchangeAnswer> ReadAnswerAsync(HttpContent content, CancellationToken cancellationToken)
    {
        var max = Options.MaxResponseBytes;
        if (content.Headers.ContentLength > max)
        {
            return ExchangeAnswer.None;
        }

        var stream = await content.ReadAsStreamAsync(cancellationToken).ConfigureAwait(false);
        await using (stream.ConfigureAwait(false))
        {
            var buffer = ArrayPool<byte>.Shared.Rent((int)Math.Min(max + 1L, content.Headers.ContentLength + 1 ?? 4096));
            try
            {
                var length = 0;
                while (true)
                {
                    if (length == buffer.Length)
                    {
                        if (length > max)
                        {
                            return ExchangeAnswer.None;
                        }

                        var bigger = ArrayPool<byte>.Shared.Rent(Math.Min(max + 1, buffer.Length * 2));
                        buffer.AsSpan(0, length).CopyTo(bigger);
                        ArrayPool<byte>.Shared.Return(buffer);
                        buffer = bigger;
                    }

                    var read = await stream.ReadAsync(buffer.AsMemory(length), cancellationToken).ConfigureAwait(false);
                    if (read == 0)
                    {
                        break;
                    }

                    length += read;
                }

                return length > max ? ExchangeAnswer.None : ExchangeSoap.ReadAnswer(buffer, length);
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(buffer);
            }
        }
    }

    private void Check(FakeExchangeSubscription subscription)
    {
        ArgumentNullException.ThrowIfNull(subscription);
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (subscription.Ids.Exchange != this)
        {
            throw new ArgumentException("The subscription belongs to another FakeExchange.", nameof(subscription));
        }
    }

    /// <summary>Like Exchange's: a length-prefixed mailbox server name, then a GUID, base64.</summary>
    private string NewSubscriptionId()
    {
        var server = System.Text.Encoding.ASCII.GetBytes(Options.ServerName);
        var bytes = new byte[2 + server.Length + 4 + 16];
        BitConverter.TryWriteBytes(bytes.AsSpan(0, 2), (short)server.Length);
        server.CopyTo(bytes, 2);
        BitConverter.TryWriteBytes(bytes.AsSpan(2 + server.Length, 4), 16);
        NewBytes(16).CopyTo(bytes, 2 + server.Length + 4);
        return Convert.ToBase64String(bytes);
    }
}

/// <summary>Ids of one simulated mailbox, shaped like Exchange's (opaque base64 with the mailbox GUID inside).</summary>
internal sealed class FakeMailboxIds(FakeExchange exchange, byte[] mailboxGuid)
{
    public FakeExchange Exchange { get; } = exchange;

    /// <summary>An item id: <c>AAMk…</c>.</summary>
    public string NewItemId() => NewId([0x00, 0x03, 0x24, 0x00], 0x46, 48);

    /// <summary>A folder id: <c>AQMk…</c>.</summary>
    public string NewFolderId() => NewId([0x01, 0x03, 0x24, 0x00], 0x2E, 24);

    /// <summary>A watermark: a version, the database GUID, an event counter.</summary>
    public string Watermark(long counter)
    {
        Span<byte> bytes = stackalloc byte[29];
        bytes[0] = 0x01;
        Exchange.DatabaseGuid.CopyTo(bytes[4..]);
        BitConverter.TryWriteBytes(bytes.Slice(20, 8), counter);
        bytes[28] = 0x01;
        return Convert.ToBase64String(bytes);
    }

    private string NewId(ReadOnlySpan<byte> prefix, byte kind, int randomLength)
    {
        var random = Exchange.NewBytes(randomLength);
        var bytes = new byte[prefix.Length + mailboxGuid.Length + 4 + randomLength];
        prefix.CopyTo(bytes);
        mailboxGuid.CopyTo(bytes, prefix.Length);
        bytes[prefix.Length + mailboxGuid.Length] = kind;
        random.CopyTo(bytes, prefix.Length + mailboxGuid.Length + 4);
        return Convert.ToBase64String(bytes);
    }
}
