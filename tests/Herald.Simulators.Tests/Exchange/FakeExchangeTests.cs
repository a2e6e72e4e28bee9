using System.Net;
using System.Net.Sockets;
using System.Xml;
using System.Xml.Linq;
using System.Xml.Schema;
using Herald.Simulators.Exchange;
using Herald.Testing;
using Microsoft.Extensions.Time.Testing;
using Xunit;
using static Herald.Simulators.Tests.Exchange.ReceivedCallback;

namespace Herald.Simulators.Tests.Exchange;

public sealed class FakeExchangeTests
{
    private static readonly DateTimeOffset Start = new(2025, 3, 4, 5, 6, 7, TimeSpan.Zero);

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>A listener, a fake clock and a FakeExchange posting to the listener.</summary>
    private sealed class Harness : IAsyncDisposable
    {
        private Harness(CallbackListener listener, FakeTimeProvider time, FakeExchange exchange)
        {
            Listener = listener;
            Time = time;
            Exchange = exchange;
        }

        public CallbackListener Listener { get; }
        public FakeTimeProvider Time { get; }
        public FakeExchange Exchange { get; }

        public static async Task<Harness> StartAsync(FakeExchangeOptions? options = null)
        {
            var listener = await CallbackListener.StartAsync(Ct);
            var time = new FakeTimeProvider(Start);
            var exchange = new FakeExchange(new SocketsHttpHandler(), time, options ?? new FakeExchangeOptions { Seed = 42 });
            return new Harness(listener, time, exchange);
        }

        public FakeExchangeSubscription Subscribe(int statusFrequencyMinutes = 30, bool heartbeats = false) =>
            Exchange.Subscribe(Listener.CallbackUrl(), TimeSpan.FromMinutes(statusFrequencyMinutes), heartbeats);

        public async ValueTask DisposeAsync()
        {
            await Exchange.DisposeAsync();
            await Listener.DisposeAsync();
        }
    }

    private static Task<ExchangePostAttempt> WaitFor(FakeExchangeSubscription subscription, int number) =>
        subscription.WaitForAttemptAsync(number, Ct).WaitAsync(TimeSpan.FromSeconds(15), Ct);

    [Fact]
    public async Task DeliverNewMail_OkAnswer_PostsWhatExchangePostsAndStaysActive()
    {
        await using var h = await Harness.StartAsync();
        var sub = h.Subscribe();
        var initialWatermark = sub.Watermark;

        var attempt = await h.Exchange.DeliverNewMailAsync(sub, Ct);

        Assert.NotNull(attempt);
        Assert.Equal(1, attempt.Number);
        Assert.Equal(ExchangePostTrigger.Events, attempt.Trigger);
        Assert.Equal(200, attempt.HttpStatus);
        Assert.Equal(ExchangeAnswer.Ok, attempt.Answer);
        Assert.True(attempt.Succeeded);
        Assert.Equal(3, attempt.EventCount);
        Assert.Equal(FakeSubscriptionState.Active, sub.State);
        Assert.Equal(1, sub.UnreadCount);
        Assert.Equal(0, sub.PendingEventCount);

        var request = Assert.Single(h.Listener.Received);
        Assert.Equal("POST", request.Method);
        Assert.Equal("/ews/notify/k3y", request.Path);
        Assert.Equal("text/xml; charset=utf-8", request.ContentType);
        Assert.Equal("\"http://schemas.microsoft.com/exchange/services/2006/messages/SendNotification\"", request.SoapAction);
        Assert.False(request.HasAuthorization);

        var doc = request.Xml;
        XNamespace soap = "http://schemas.xmlsoap.org/soap/envelope/";
        Assert.Equal(soap + "Envelope", doc.Root!.Name);
        Assert.Equal(M + "SendNotification", doc.Root.Element(soap + "Body")!.Elements().Single().Name);
        Assert.Equal(sub.Id, request.SubscriptionId);
        Assert.Equal(initialWatermark, request.PreviousWatermark);
        Assert.Equal("false", request.Notification.Element(T + "MoreEvents")!.Value);
        Assert.Equal(["CreatedEvent", "NewMailEvent", "ModifiedEvent"], request.EventNames);

        var (created, newMail, folder) = (request.Events[0], request.Events[1], request.Events[2]);
        var itemId = created.Element(T + "ItemId")!.Attribute("Id")!.Value;
        Assert.StartsWith("AAMk", itemId, StringComparison.Ordinal);
        Assert.Equal(itemId, newMail.Element(T + "ItemId")!.Attribute("Id")!.Value);
        Assert.Equal(sub.InboxFolderId, created.Element(T + "ParentFolderId")!.Attribute("Id")!.Value);
        Assert.Equal(sub.InboxFolderId, folder.Element(T + "FolderId")!.Attribute("Id")!.Value);
        Assert.Equal(sub.RootFolderId, folder.Element(T + "ParentFolderId")!.Attribute("Id")!.Value);
        Assert.Equal("1", folder.Element(T + "UnreadCount")!.Value);
        Assert.Equal("2025-03-04T05:06:07Z", created.Element(T + "TimeStamp")!.Value);
        var watermarks = request.Events.Select(e => e.Element(T + "Watermark")!.Value).ToList();
        Assert.Equal(3, watermarks.Distinct().Count());
        Assert.Equal(watermarks[^1], sub.Watermark);
    }

    [Fact]
    public async Task DeliverNewMail_Request_ValidatesAgainstMessagesXsd()
    {
        var schemas = EwsSchemas.Load();
        await using var h = await Harness.StartAsync();
        var sub = h.Subscribe();
        await h.Exchange.DeliverNewMailAsync(sub, Ct);
        await h.Exchange.MarkReadAsync(sub, Ct);
        await h.Exchange.SendStatusAsync(sub, Ct);

        Assert.Equal(3, h.Listener.Received.Count);
        foreach (var request in h.Listener.Received)
        {
            var element = request.Xml.Descendants(M + "SendNotification").Single();
            var errors = new List<string>();
            new XDocument(new XElement(element)).Validate(schemas, (_, e) => errors.Add(e.Message));
            Assert.Empty(errors);
        }
    }

    [Fact]
    public async Task MarkRead_PostsItemThenFolderModifiedWithLowerUnreadCount()
    {
        await using var h = await Harness.StartAsync();
        var sub = h.Subscribe();
        await h.Exchange.DeliverNewMailAsync(sub, Ct);
        await h.Exchange.DeliverNewMailAsync(sub, Ct);

        var attempt = await h.Exchange.MarkReadAsync(sub, Ct);

        Assert.Equal(2, attempt!.EventCount);
        Assert.Equal(1, sub.UnreadCount);
        var requests = h.Listener.Received;
        var read = requests[2];
        Assert.Equal(["ModifiedEvent", "ModifiedEvent"], read.EventNames);
        var firstItem = requests[0].Events[0].Element(T + "ItemId")!.Attribute("Id")!.Value;
        Assert.Equal(firstItem, read.Events[0].Element(T + "ItemId")!.Attribute("Id")!.Value);
        Assert.Null(read.Events[0].Element(T + "UnreadCount"));
        Assert.Equal(sub.InboxFolderId, read.Events[1].Element(T + "FolderId")!.Attribute("Id")!.Value);
        Assert.Equal("1", read.Events[1].Element(T + "UnreadCount")!.Value);
        Assert.Equal(requests[1].Events[^1].Element(T + "Watermark")!.Value, read.PreviousWatermark);
    }

    [Fact]
    public async Task MarkRead_NothingUnread_PostsNothing()
    {
        await using var h = await Harness.StartAsync();
        var sub = h.Subscribe();

        Assert.Null(await h.Exchange.MarkReadAsync(sub, Ct));
        Assert.Empty(h.Listener.Received);
        Assert.Equal(0, sub.AttemptsStarted);
    }

    [Fact]
    public async Task SendStatus_PostsStatusEventOnly()
    {
        await using var h = await Harness.StartAsync();
        var sub = h.Subscribe();
        var previous = sub.Watermark;

        var attempt = await h.Exchange.SendStatusAsync(sub, Ct);

        Assert.Equal(ExchangePostTrigger.Status, attempt!.Trigger);
        var request = Assert.Single(h.Listener.Received);
        var status = Assert.Single(request.Events);
        Assert.Equal(T + "StatusEvent", status.Name);
        Assert.Equal([T + "Watermark"], status.Elements().Select(e => e.Name));
        Assert.Equal(previous, request.PreviousWatermark);
        Assert.NotEqual(previous, sub.Watermark);
    }

    [Fact]
    public async Task Unsubscribe_EndsTheSubscription_NoMorePosts()
    {
        await using var h = await Harness.StartAsync();
        var sub = h.Subscribe(statusFrequencyMinutes: 1, heartbeats: true);
        h.Listener.Reply = ListenerReply.Unsubscribe;

        var attempt = await h.Exchange.DeliverNewMailAsync(sub, Ct);

        Assert.Equal(ExchangeAnswer.Unsubscribe, attempt!.Answer);
        Assert.Equal(FakeSubscriptionState.Unsubscribed, attempt.StateAfter);
        Assert.Equal(FakeSubscriptionState.Unsubscribed, sub.State);
        Assert.Equal(Start, sub.EndedAt);

        h.Listener.Reply = ListenerReply.Ok;
        Assert.Null(await h.Exchange.DeliverNewMailAsync(sub, Ct));
        Assert.Null(await h.Exchange.SendStatusAsync(sub, Ct));
        h.Time.Advance(TimeSpan.FromHours(2));
        Assert.Equal(1, sub.AttemptsStarted);
        Assert.Single(h.Listener.Received);
        await Assert.ThrowsAsync<InvalidOperationException>(() => sub.WaitForAttemptAsync(2, Ct));
    }

    [Theory]
    [InlineData(1, new[] { 0, 30 })]
    [InlineData(5, new[] { 0, 30, 90, 210 })]
    [InlineData(30, new[] { 0, 30, 90, 210, 450, 930 })]
    public async Task FailingEndpoint_RetriesAfter30ThenDoubling_UntilStatusFrequencyExceeded(int statusFrequencyMinutes, int[] expectedSeconds)
    {
        await using var h = await Harness.StartAsync();
        h.Listener.Reply = ListenerReply.ServiceUnavailable;
        var sub = h.Subscribe(statusFrequencyMinutes);

        var first = await h.Exchange.DeliverNewMailAsync(sub, Ct);
        Assert.Equal(503, first!.HttpStatus);
        Assert.Equal("HTTP 503", first.Error);
        Assert.Equal(ExchangeAnswer.None, first.Answer);

        for (var n = 2; n <= expectedSeconds.Length; n++)
        {
            var due = Start.AddSeconds(expectedSeconds[n - 1]);
            Assert.Equal(due, sub.NextRetryAt);

            // One second early: nothing happens.
            h.Time.Advance(due - h.Time.GetUtcNow() - TimeSpan.FromSeconds(1));
            Assert.Equal(n - 1, sub.AttemptsStarted);

            h.Time.Advance(TimeSpan.FromSeconds(1));
            var attempt = await WaitFor(sub, n);
            Assert.Equal(ExchangePostTrigger.Retry, attempt.Trigger);
            Assert.Equal(due, attempt.StartedAt);
            Assert.Equal(3, attempt.EventCount);
        }

        Assert.Equal(expectedSeconds.Select(s => Start.AddSeconds(s)), sub.Attempts.Select(a => a.StartedAt));
        Assert.Equal(FakeSubscriptionState.Expired, sub.State);
        Assert.Equal(FakeSubscriptionState.Expired, sub.LastAttempt!.StateAfter);
        Assert.Null(sub.NextRetryAt);
        Assert.Equal(Start, sub.FirstFailureAt);

        h.Listener.Reply = ListenerReply.Ok;
        h.Time.Advance(TimeSpan.FromDays(2));
        Assert.Null(await h.Exchange.DeliverNewMailAsync(sub, Ct));
        Assert.Equal(expectedSeconds.Length, sub.AttemptsStarted);
        Assert.Equal(expectedSeconds.Length, h.Listener.Received.Count);
        Assert.Equal(expectedSeconds.Length, h.Exchange.FailedAttempts);
    }

    [Fact]
    public async Task FailingEndpoint_EventsDuringRetry_AreBatchedIntoTheNextAttempt()
    {
        await using var h = await Harness.StartAsync();
        var sub = h.Subscribe();
        await h.Exchange.DeliverNewMailAsync(sub, Ct);
        var acknowledged = sub.Watermark;
        h.Listener.Reply = ListenerReply.ServiceUnavailable;

        Assert.False((await h.Exchange.DeliverNewMailAsync(sub, Ct))!.Succeeded);
        h.Time.Advance(TimeSpan.FromSeconds(10));
        Assert.Null(await h.Exchange.DeliverNewMailAsync(sub, Ct));
        Assert.Null(await h.Exchange.MarkReadAsync(sub, Ct));
        Assert.Null(await h.Exchange.SendStatusAsync(sub, Ct));
        Assert.Equal(2, sub.AttemptsStarted);
        Assert.Equal(3 + 3 + 2, sub.PendingEventCount);

        h.Listener.Reply = ListenerReply.Ok;
        h.Time.Advance(TimeSpan.FromSeconds(20));
        var retry = await WaitFor(sub, 3);

        Assert.True(retry.Succeeded);
        Assert.Equal(8, retry.EventCount);
        var request = h.Listener.Received[^1];
        Assert.Equal(acknowledged, request.PreviousWatermark);
        Assert.Equal(
            ["CreatedEvent", "NewMailEvent", "ModifiedEvent", "CreatedEvent", "NewMailEvent", "ModifiedEvent", "ModifiedEvent", "ModifiedEvent"],
            request.EventNames);
        Assert.Equal(["2", "3", "2"], request.Events.Select(e => e.Element(T + "UnreadCount")?.Value).OfType<string>());
        Assert.Equal(0, sub.PendingEventCount);
        Assert.Equal(2, sub.UnreadCount);
        Assert.Null(sub.FirstFailureAt);
        Assert.Null(sub.NextRetryAt);
    }

    [Fact]
    public async Task FailingEndpoint_SuccessResetsTheBackoff()
    {
        await using var h = await Harness.StartAsync();
        var sub = h.Subscribe(statusFrequencyMinutes: 5);
        h.Listener.Reply = ListenerReply.ServiceUnavailable;
        await h.Exchange.DeliverNewMailAsync(sub, Ct);
        h.Time.Advance(TimeSpan.FromSeconds(30));
        await WaitFor(sub, 2);
        h.Listener.Reply = ListenerReply.Ok;
        h.Time.Advance(TimeSpan.FromSeconds(60));
        Assert.True((await WaitFor(sub, 3)).Succeeded);

        h.Listener.Reply = ListenerReply.ServiceUnavailable;
        var failed = await h.Exchange.DeliverNewMailAsync(sub, Ct);

        Assert.Equal(h.Time.GetUtcNow().AddSeconds(30), failed!.NextRetryAt);
        Assert.Equal(h.Time.GetUtcNow(), sub.FirstFailureAt);
    }

    [Fact]
    public async Task TransportError_IsAFailureAndRetried()
    {
        int port;
        using (var probe = new TcpListener(IPAddress.Loopback, 0))
        {
            probe.Start();
            port = ((IPEndPoint)probe.LocalEndpoint).Port;
        }

        var time = new FakeTimeProvider(Start);
        await using var exchange = new FakeExchange(new SocketsHttpHandler { ConnectTimeout = TimeSpan.FromSeconds(5) }, time);
        var sub = exchange.Subscribe(new Uri($"http://127.0.0.1:{port}/ews/notify/x"), TimeSpan.FromMinutes(30));

        var attempt = await exchange.DeliverNewMailAsync(sub, Ct);

        Assert.Null(attempt!.HttpStatus);
        Assert.StartsWith("transport error", attempt.Error, StringComparison.Ordinal);
        Assert.Equal(FakeSubscriptionState.Active, sub.State);
        Assert.Equal(Start.AddSeconds(30), sub.NextRetryAt);
        Assert.Equal(3, sub.PendingEventCount);
    }

    [Theory]
    [InlineData(ListenerReply.Garbage)]
    [InlineData(ListenerReply.Soap12Ok)]
    public async Task UnparsableAnswer_IsAFailureAndRetried(ListenerReply reply)
    {
        await using var h = await Harness.StartAsync();
        h.Listener.Reply = reply;
        var sub = h.Subscribe();

        var attempt = await h.Exchange.DeliverNewMailAsync(sub, Ct);

        Assert.Equal(200, attempt!.HttpStatus);
        Assert.Equal("unparsable response", attempt.Error);
        Assert.False(attempt.Succeeded);
        Assert.Equal(Start.AddSeconds(30), sub.NextRetryAt);
    }

    [Fact]
    public async Task Heartbeat_PostedWhenStatusFrequencyPassesWithoutAPost()
    {
        await using var h = await Harness.StartAsync();
        var sub = h.Subscribe(statusFrequencyMinutes: 1, heartbeats: true);

        h.Time.Advance(TimeSpan.FromSeconds(59));
        Assert.Equal(0, sub.AttemptsStarted);
        h.Time.Advance(TimeSpan.FromSeconds(1));
        var first = await WaitFor(sub, 1);
        Assert.Equal(ExchangePostTrigger.Heartbeat, first.Trigger);
        Assert.Equal(Start.AddMinutes(1), first.StartedAt);
        Assert.Equal(["StatusEvent"], h.Listener.Received[0].EventNames);

        // Mail at +1:30 resets the idle time: the next heartbeat is due at +2:30, not +2:00.
        h.Time.Advance(TimeSpan.FromSeconds(30));
        await h.Exchange.DeliverNewMailAsync(sub, Ct);
        h.Time.Advance(TimeSpan.FromSeconds(30));
        Assert.Equal(2, sub.AttemptsStarted);
        h.Time.Advance(TimeSpan.FromSeconds(30));
        var third = await WaitFor(sub, 3);
        Assert.Equal(ExchangePostTrigger.Heartbeat, third.Trigger);
        Assert.Equal(Start.AddSeconds(150), third.StartedAt);

        h.Time.Advance(TimeSpan.FromMinutes(1));
        Assert.Equal(Start.AddSeconds(210), (await WaitFor(sub, 4)).StartedAt);
        Assert.All(h.Listener.Received.Where((_, i) => i != 1), r => Assert.Equal(["StatusEvent"], r.EventNames));
    }

    [Fact]
    public async Task Heartbeat_FailingIsRetriedLikeAnyNotification()
    {
        await using var h = await Harness.StartAsync();
        var sub = h.Subscribe(statusFrequencyMinutes: 2, heartbeats: true);
        h.Listener.Reply = ListenerReply.ServiceUnavailable;

        h.Time.Advance(TimeSpan.FromMinutes(2));
        Assert.False((await WaitFor(sub, 1)).Succeeded);
        h.Time.Advance(TimeSpan.FromSeconds(30));
        Assert.Equal(ExchangePostTrigger.Retry, (await WaitFor(sub, 2)).Trigger);
        h.Time.Advance(TimeSpan.FromSeconds(60));
        var last = await WaitFor(sub, 3);

        // +0, +30 s, +90 s; the next retry (+210 s) would pass the 2 minutes.
        Assert.Equal(FakeSubscriptionState.Expired, last.StateAfter);
        Assert.All(h.Listener.Received, r => Assert.Equal(["StatusEvent"], r.EventNames));
    }

    [Theory]
    [InlineData(0.0)]
    [InlineData(-1.0)]
    [InlineData(1441.0)]
    [InlineData(0.5)]
    public async Task Subscribe_StatusFrequencyOutsideExchangesRange_Throws(double minutes)
    {
        await using var exchange = new FakeExchange(new SocketsHttpHandler(), TimeProvider.System);

        Assert.Throws<ArgumentOutOfRangeException>(() => exchange.Subscribe(new Uri("http://127.0.0.1:1/x"), TimeSpan.FromMinutes(minutes)));
        Assert.Throws<ArgumentException>(() => exchange.Subscribe(new Uri("/relative", UriKind.Relative), TimeSpan.FromMinutes(1)));
        Assert.Throws<ArgumentException>(() => exchange.Subscribe(new Uri("ftp://127.0.0.1/x"), TimeSpan.FromMinutes(1)));
    }

    [Fact]
    public async Task Subscribe_SameSeed_GivesSameIds()
    {
        await using var a = new FakeExchange(new SocketsHttpHandler(), TimeProvider.System, new FakeExchangeOptions { Seed = 7 });
        await using var b = new FakeExchange(new SocketsHttpHandler(), TimeProvider.System, new FakeExchangeOptions { Seed = 7 });
        var url = new Uri("http://127.0.0.1:1/x");

        var (sa, sb) = (a.Subscribe(url, TimeSpan.FromMinutes(1)), b.Subscribe(url, TimeSpan.FromMinutes(1)));

        Assert.Equal(sa.Id, sb.Id);
        Assert.Equal(sa.InboxFolderId, sb.InboxFolderId);
        Assert.Equal(sa.Watermark, sb.Watermark);
        Assert.NotEqual(sa.Id, a.Subscribe(url, TimeSpan.FromMinutes(1)).Id);
        Assert.StartsWith("AQMk", sa.InboxFolderId, StringComparison.Ordinal);
    }

    [Fact]
    public async Task DisposeAsync_StopsTimersAndRefusesWork()
    {
        var h = await Harness.StartAsync();
        var sub = h.Subscribe(statusFrequencyMinutes: 1, heartbeats: true);
        h.Listener.Reply = ListenerReply.ServiceUnavailable;
        await h.Exchange.DeliverNewMailAsync(sub, Ct);
        var waiter = sub.WaitForAttemptAsync(2, Ct);

        await h.Exchange.DisposeAsync();
        h.Time.Advance(TimeSpan.FromHours(1));

        Assert.Equal(1, sub.AttemptsStarted);
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => waiter);
        await Assert.ThrowsAsync<ObjectDisposedException>(() => h.Exchange.DeliverNewMailAsync(sub, Ct));
        await h.Exchange.DisposeAsync();
        await h.DisposeAsync();
    }

    [Fact]
    public async Task ManySubscriptions_ConcurrentMail_AllAcknowledged()
    {
        await using var h = await Harness.StartAsync();
        var subs = Enumerable.Range(0, 40).Select(i => h.Exchange.Subscribe(h.Listener.CallbackUrl($"key{i}"), TimeSpan.FromMinutes(30))).ToList();

        await Parallel.ForEachAsync(
            subs.SelectMany(s => Enumerable.Repeat(s, 15)),
            new ParallelOptions { MaxDegreeOfParallelism = 16, CancellationToken = Ct },
            async (sub, ct) => await h.Exchange.DeliverNewMailAsync(sub, ct));

        Assert.All(subs, s => Assert.Equal(15, s.UnreadCount));
        Assert.All(subs, s => Assert.Equal(0, s.PendingEventCount));
        Assert.All(subs, s => Assert.Equal(FakeSubscriptionState.Active, s.State));
        Assert.Equal(40 * 15 * 3, h.Listener.Received.Sum(r => r.Events.Count));
        Assert.Equal(0, h.Exchange.FailedAttempts);
        foreach (var group in h.Listener.Received.GroupBy(r => r.SubscriptionId))
        {
            // Every post continues from the previous one's last watermark: nothing lost, nothing repeated.
            var sub = subs.Single(s => s.Id == group.Key);
            var posts = group.ToList();
            for (var i = 1; i < posts.Count; i++)
            {
                Assert.Equal(posts[i - 1].Events[^1].Element(T + "Watermark")!.Value, posts[i].PreviousWatermark);
            }

            Assert.Equal(posts[^1].Events[^1].Element(T + "Watermark")!.Value, sub.Watermark);
        }
    }
}

/// <summary>The EWS schemas of ../shared/ews, compiled once (skips loudly when absent).</summary>
internal static class EwsSchemas
{
    private const string XmlNamespaceSchema = """
        <xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="http://www.w3.org/XML/1998/namespace">
          <xs:attribute name="lang" type="xs:string"/>
          <xs:attribute name="space" type="xs:NCName"/>
          <xs:attribute name="base" type="xs:anyURI"/>
          <xs:attribute name="id" type="xs:ID"/>
        </xs:schema>
        """;

    private static readonly Lazy<XmlSchemaSet> Set = new(Compile);

    public static XmlSchemaSet Load()
    {
        SharedData.RequireEws();
        return Set.Value;
    }

    private static XmlSchemaSet Compile()
    {
        var folder = SharedData.RequireEws();
        var set = new XmlSchemaSet { XmlResolver = null };
        var settings = new XmlReaderSettings { DtdProcessing = DtdProcessing.Prohibit, XmlResolver = null };
        using (var reader = XmlReader.Create(new StringReader(XmlNamespaceSchema), settings))
        {
            set.Add(null, reader);
        }

        foreach (var file in new[] { "types.xsd", "messages.xsd" })
        {
            using var reader = XmlReader.Create(Path.Combine(folder, file), settings);
            set.Add(null, reader);
        }

        set.Compile();
        return set;
    }
}
