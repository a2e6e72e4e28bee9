using Herald.Core.Notifications;
using Herald.Providers.Http;
using Herald.Simulators.Apns;
using Xunit;

namespace Herald.Providers.Tests;

/// <summary>
/// The header-writing gate of a connection pool (<see cref="HeaderWriteGate"/>): it bounds only the stretch between entering
/// the handler and the body being asked for, never the requests waiting for their answers.
/// </summary>
public sealed class HeaderWriteGateTests
{
    [Fact]
    public async Task AtMostPermitsRequestsAreBeforeTheirBody_ButAllAreInFlightTogether()
    {
        using var gate = new HeaderWriteGate(permits: 3);
        var handler = new StagedHandler(expected: 20);
        using var invoker = new HttpMessageInvoker(handler);
        var ct = TestContext.Current.CancellationToken;

        var sends = Enumerable.Range(0, 20).Select(_ => gate.SendAsync(invoker, Request(), ct)).ToList();

        // The handler answers nothing until all 20 bodies were written: only possible if each permit came back at its body.
        await handler.AllBodiesWritten.Task.WaitAsync(TimeSpan.FromSeconds(30), ct);
        Assert.True(handler.MaxBeforeBody <= 3, $"{handler.MaxBeforeBody} requests were before their body at once");
        Assert.Equal(3, gate.Available);
        handler.Answer();
        foreach (var response in await Task.WhenAll(sends))
        {
            Assert.Equal(System.Net.HttpStatusCode.OK, response.StatusCode);
            response.Dispose();
        }

        Assert.Equal(3, gate.Available);
    }

    [Fact]
    public async Task AFailureBeforeTheBody_ReturnsThePermit_WhenTheRequestIsDisposed()
    {
        using var gate = new HeaderWriteGate(permits: 1);
        using var invoker = new HttpMessageInvoker(new FailingHandler());
        var ct = TestContext.Current.CancellationToken;

        for (var i = 0; i < 3; i++)
        {
            using (var request = Request())
            {
                await Assert.ThrowsAsync<HttpRequestException>(() => gate.SendAsync(invoker, request, ct));
                Assert.Equal(0, gate.Available); // its body was never asked for: held until the request is disposed
            }

            Assert.Equal(1, gate.Available);
        }
    }

    [Fact]
    public async Task WaitingForAPermit_IsCancellable()
    {
        using var gate = new HeaderWriteGate(permits: 1);
        var handler = new StagedHandler(expected: int.MaxValue, writeBody: false); // holds its permit
        using var invoker = new HttpMessageInvoker(handler);
        var ct = TestContext.Current.CancellationToken;
        using var firstRequest = Request();
        var first = gate.SendAsync(invoker, firstRequest, ct);
        using var cancel = CancellationTokenSource.CreateLinkedTokenSource(ct);

        using var secondRequest = Request();
        var second = gate.SendAsync(invoker, secondRequest, cancel.Token);
        await cancel.CancelAsync();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => second);
        Assert.Equal(0, gate.Available); // the first still holds it
        handler.Answer();
        (await first).Dispose();
        Assert.Equal(0, gate.Available); // this handler never asks for the body
        firstRequest.Dispose();
        Assert.Equal(1, gate.Available);
    }

    [Fact]
    public async Task ContentOfAnotherType_PassesUngated()
    {
        using var gate = new HeaderWriteGate(permits: 1);
        var handler = new StagedHandler(expected: 2, writeBody: false);
        using var invoker = new HttpMessageInvoker(handler);
        var ct = TestContext.Current.CancellationToken;

        var sends = new[] { gate.SendAsync(invoker, Request(new ByteArrayContent([1])), ct), gate.SendAsync(invoker, Request(new ByteArrayContent([2])), ct) };
        await handler.AllEntered.Task.WaitAsync(TimeSpan.FromSeconds(30), ct);
        Assert.Equal(1, gate.Available);
        handler.Answer();
        foreach (var response in await Task.WhenAll(sends))
        {
            response.Dispose();
        }
    }

    /// <summary>
    /// Through SocketsHttpHandler and Kestrel: 100 sends with the fake APNs holding every answer. All 100 requests reach the
    /// server while none is answered, so the handler asked each body after its headers and the gate (32) never capped the
    /// requests in flight. Then every held answer arrives and each send is sent.
    /// </summary>
    [Fact]
    public async Task ThroughSocketsHttpHandler_PermitsComeBackBeforeTheAnswers()
    {
        await using var h = await ApnsTestHarness.StartAsync();
        var stall = h.Options.RequestTimeout / 4; // on the fake clock; three of them stay inside the sends' own timeout
        h.Production.InjectFaults(new FakeApnsFaults { StallRate = 1, StallDuration = stall });
        var ct = TestContext.Current.CancellationToken;
        const int Count = 100;

        var sends = Enumerable.Range(0, Count).Select(_ => h.SendAsync(h.Notification()).AsTask()).ToList();
        await h.Production.WaitForAcceptedAsync(Count, ct).WaitAsync(TimeSpan.FromSeconds(60), ct);
        Assert.DoesNotContain(sends, s => s.IsCompleted);

        // The fake counts a request before it starts holding the answer, so the last ones may start holding just after an
        // advance of the clock: advance again (at most three times) until every held answer went out.
        var all = Task.WhenAll(sends);
        for (var round = 0; round < 3 && !all.IsCompleted; round++)
        {
            h.Time.Advance(stall);
            await Task.WhenAny(all, Task.Delay(TimeSpan.FromSeconds(10), ct));
        }

        Assert.True(all.IsCompleted, $"{sends.Count(s => !s.IsCompleted)} sends still waiting for their answer");
        var results = await all;
        Assert.All(results, r => Assert.Equal(PushOutcome.Sent, r.Outcome));
    }

    private static HttpRequestMessage Request(HttpContent? content = null)
        => new(HttpMethod.Post, "http://127.0.0.1/3/device/x") { Content = content ?? new GatedByteArrayContent("""{"aps":{}}"""u8.ToArray()) };

    /// <summary>
    /// Acts like SocketsHttpHandler: some work before the body (the headers), then the body, then waits for its answer.
    /// Counts how many requests are before their body at once.
    /// </summary>
    private sealed class StagedHandler(int expected, bool writeBody = true) : HttpMessageHandler
    {
        private readonly TaskCompletionSource _answer = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private int _beforeBody;
        private int _maxBeforeBody;
        private int _bodies;
        private int _entered;

        public TaskCompletionSource AllBodiesWritten { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public TaskCompletionSource AllEntered { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public int MaxBeforeBody => Volatile.Read(ref _maxBeforeBody);

        public void Answer() => _answer.TrySetResult();

        protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            if (Interlocked.Increment(ref _entered) == expected)
            {
                AllEntered.TrySetResult();
            }

            var before = Interlocked.Increment(ref _beforeBody);
            InterlockedMax(ref _maxBeforeBody, before);
            await Task.Yield(); // the headers' turn at the connection's writer
            Interlocked.Decrement(ref _beforeBody);
            if (writeBody)
            {
                using var body = new MemoryStream();
                await request.Content!.CopyToAsync(body, cancellationToken);
                if (Interlocked.Increment(ref _bodies) == expected)
                {
                    AllBodiesWritten.TrySetResult();
                }
            }

            await _answer.Task.WaitAsync(cancellationToken);
            return new HttpResponseMessage(System.Net.HttpStatusCode.OK);
        }

        private static void InterlockedMax(ref int target, int value)
        {
            for (var seen = Volatile.Read(ref target); value > seen; seen = Volatile.Read(ref target))
            {
                if (Interlocked.CompareExchange(ref target, value, seen) == seen)
                {
                    return;
                }
            }
        }
    }

    private sealed class FailingHandler : HttpMessageHandler
    {
        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
            => Task.FromException<HttpResponseMessage>(new HttpRequestException("connection refused"));
    }
}
