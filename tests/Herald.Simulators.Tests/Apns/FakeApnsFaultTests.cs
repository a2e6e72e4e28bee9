using System.Net;
using Herald.Simulators.Apns;
using Xunit;

namespace Herald.Simulators.Tests.Apns;

/// <summary>The fake APNs's seeded fault injection: what each fault looks like to an HTTP/2 client, and that a seed replays.</summary>
public sealed class FakeApnsFaultTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task SameSeed_SameFaultSequence_CountedAndDeliveredAsDocumented()
    {
        var faults = new FakeApnsFaults { Seed = 7, ServiceUnavailableRate = 0.10, StreamResetRate = 0.05 };
        var first = await RunSequenceAsync(faults, 300);
        var second = await RunSequenceAsync(faults, 300);

        Assert.Equal(first.Outcomes, second.Outcomes);
        Assert.Equal(first.Counts, second.Counts);
        var counts = first.Counts;
        Assert.Equal(300, counts.Drawn);
        Assert.Equal(counts.ServiceUnavailable, first.Outcomes.Count(o => o == "503"));
        Assert.Equal(counts.StreamResets, first.Outcomes.Count(o => o == "reset"));
        Assert.InRange(counts.ServiceUnavailable, 15, 50); // 10 % of 300, seeded
        Assert.InRange(counts.StreamResets, 4, 30);
        Assert.Equal(0, counts.ConnectionResets);

        // A reset stream was delivered (APNs accepted it; the answer was lost); a 503 was not.
        Assert.Equal(300 - counts.ServiceUnavailable, first.Delivered);
    }

    [Fact]
    public async Task StreamReset_FailsOnlyThatStream_TheConnectionKeepsServing()
    {
        await using var h = await FakeApnsHarness.StartAsync(new FakeApnsServerOptions { KeepReceipts = true });
        h.Server.InjectFaults(new FakeApnsFaults { StreamResetRate = 1 });
        var failure = await Assert.ThrowsAsync<HttpRequestException>(() => h.SendAsync(WithId(h.ValidRequest(), 1)));
        Assert.Equal(HttpRequestError.HttpProtocolError, failure.HttpRequestError);
        var protocol = Assert.IsType<HttpProtocolException>(failure.InnerException);
        Assert.Equal(2, protocol.ErrorCode); // RST_STREAM INTERNAL_ERROR

        h.Server.InjectFaults(null);
        var (status, _, _, _) = await h.SendAsync(WithId(h.ValidRequest(), 2));
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal(1, h.Server.ReceiptCount(Id(1)));
        Assert.Equal(1, h.Server.FaultCounts.StreamResets);
    }

    [Fact]
    public async Task ConnectionReset_FailsTheStreamsInFlight_ANewConnectionServesTheNext()
    {
        await using var h = await FakeApnsHarness.StartAsync(new FakeApnsServerOptions { KeepReceipts = true });

        // A stalled stream is in flight on the connection when another request on it triggers the reset: both fail.
        h.Server.InjectFaults(new FakeApnsFaults { StallRate = 1, StallDuration = TimeSpan.FromMinutes(5) });
        var stalled = h.SendAsync(WithId(h.ValidRequest(), 0));
        for (var i = 0; i < 200 && h.Server.FaultCounts.Stalls == 0; i++)
        {
            await Task.Delay(10, Ct);
        }

        h.Server.InjectFaults(new FakeApnsFaults { ConnectionResetRate = 1 });
        var failure = await Assert.ThrowsAnyAsync<Exception>(() => h.SendAsync(WithId(h.ValidRequest(), 1)));
        Assert.True(failure is HttpRequestException or IOException, failure.ToString());
        var inFlight = await Assert.ThrowsAnyAsync<Exception>(() => stalled.WaitAsync(TimeSpan.FromSeconds(30), Ct));
        Assert.True(inFlight is HttpRequestException or IOException, inFlight.ToString());

        h.Server.InjectFaults(null);
        var (status, _, _, _) = await h.SendAsync(WithId(h.ValidRequest(), 2));
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal(1, h.Server.FaultCounts.ConnectionResets);
        Assert.Equal(1, h.Server.ReceiptCount(Id(1)));
    }

    [Fact]
    public async Task Stall_HoldsTheAnswerForTheStallDurationOnTheFakesClock()
    {
        await using var h = await FakeApnsHarness.StartAsync();
        h.Server.InjectFaults(new FakeApnsFaults { StallRate = 1, StallDuration = TimeSpan.FromSeconds(2) });
        var send = h.SendAsync(WithId(h.ValidRequest(), 1));
        for (var i = 0; i < 200 && h.Server.FaultCounts.Stalls == 0; i++)
        {
            await Task.Delay(10, Ct);
        }

        Assert.Equal(1, h.Server.FaultCounts.Stalls);
        await Task.Delay(100, Ct);
        Assert.False(send.IsCompleted, "a stalled answer came before the clock moved");
        h.Time.Advance(TimeSpan.FromSeconds(2));
        var (status, _, _, _) = await send.WaitAsync(TimeSpan.FromSeconds(30), Ct);
        Assert.Equal(HttpStatusCode.OK, status);
    }

    private static async Task<(List<string> Outcomes, FakeApnsFaultCounts Counts, int Delivered)> RunSequenceAsync(FakeApnsFaults faults, int requests)
    {
        await using var h = await FakeApnsHarness.StartAsync(new FakeApnsServerOptions { KeepReceipts = true, Faults = faults });
        var outcomes = new List<string>(requests);
        for (var i = 0; i < requests; i++)
        {
            try
            {
                var (status, _, _, _) = await h.SendAsync(WithId(h.ValidRequest(), i));
                outcomes.Add(((int)status).ToString(System.Globalization.CultureInfo.InvariantCulture));
            }
            catch (HttpRequestException)
            {
                outcomes.Add("reset");
            }
        }

        return (outcomes, h.Server.FaultCounts, h.Server.Receipts.Values.Sum());
    }

    private static HttpRequestMessage WithId(HttpRequestMessage request, int i)
    {
        request.Headers.Remove("apns-id");
        request.Headers.TryAddWithoutValidation("apns-id", Id(i));
        return request;
    }

    private static string Id(int i) => string.Create(System.Globalization.CultureInfo.InvariantCulture, $"6f1d9c1e-2b3a-4c5d-8e9f-{i:x12}");
}
