using System.Text;
using Herald.Sources.Ews;
using Herald.Sources.Ews.Streaming;
using Herald.Testing;
using Xunit;

namespace Herald.Simulators.Tests.Exchange.Streaming;

public sealed class StreamingFramingTests
{
    [Fact]
    public void Grouping_SplitsByEwsUrlAndGroupingInformation_At200_AnchorIsAlphabeticallyFirst()
    {
        var a = new Uri("https://mail.contoso.test/EWS/Exchange.asmx");
        var b = new Uri("https://mail2.contoso.test/EWS/Exchange.asmx");
        var mailboxes = new List<EwsMailboxPlacement>();
        // 450 on (a, DAG1) in shuffled order, 3 on (a, DAG2), 2 on (b, DAG1).
        foreach (var i in Enumerable.Range(0, 450).OrderBy(i => (i * 7919) % 450))
        {
            mailboxes.Add(new EwsMailboxPlacement($"u{i:D3}@contoso.test", a, "DAG1"));
        }

        mailboxes.Add(new EwsMailboxPlacement("zed@contoso.test", a, "DAG2"));
        mailboxes.Add(new EwsMailboxPlacement("Amy@contoso.test", a, "DAG2"));
        mailboxes.Add(new EwsMailboxPlacement("bob@contoso.test", a, "DAG2"));
        mailboxes.Add(new EwsMailboxPlacement("carol@contoso.test", b, "DAG1"));
        mailboxes.Add(new EwsMailboxPlacement("alice@contoso.test", b, "DAG1"));

        var plans = EwsGrouping.Plan(mailboxes);

        Assert.Equal(5, plans.Count);
        var dag1 = plans.Where(p => p.Key == EwsGrouping.KeyOf(a, "DAG1")).ToList();
        Assert.Equal([200, 200, 50], dag1.Select(p => p.Members.Count));
        Assert.Equal(["u000@contoso.test", "u200@contoso.test", "u400@contoso.test"], dag1.Select(p => p.AnchorMailbox));
        Assert.All(dag1, p => Assert.Equal(p.Members.Order(StringComparer.OrdinalIgnoreCase), p.Members));
        var dag2 = Assert.Single(plans, p => p.Key == EwsGrouping.KeyOf(a, "DAG2"));
        Assert.Equal("Amy@contoso.test", dag2.AnchorMailbox); // case-insensitive alphabetical order
        Assert.Equal(["Amy@contoso.test", "bob@contoso.test", "zed@contoso.test"], dag2.Members);
        var other = Assert.Single(plans, p => p.EwsUrl == b);
        Assert.Equal("alice@contoso.test", other.AnchorMailbox);
        Assert.Equal(455, plans.Sum(p => p.Members.Count));
    }

    [Fact]
    public void Grouping_SmallerGroupSize_ChunksAndNeverExceeds200()
    {
        var url = new Uri("https://mail.contoso.test/EWS/Exchange.asmx");
        var plans = EwsGrouping.Plan(Enumerable.Range(0, 10).Select(i => new EwsMailboxPlacement($"m{i}@x.test", url, "")), 3);
        Assert.Equal([3, 3, 3, 1], plans.Select(p => p.Members.Count));
        Assert.Throws<ArgumentOutOfRangeException>(() => EwsGrouping.Plan([], 201));
    }

    [Fact]
    public void Splitter_ByteByByte_YieldsEachEnvelopeOnceComplete()
    {
        var one = Envelope("<m:ConnectionStatus>OK</m:ConnectionStatus>");
        var two = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\r\n" + Envelope("<x a=\"1>2\" b='/>'/><!-- </s:Envelope> --><![CDATA[</s:Envelope>]]><m:ConnectionStatus>Closed</m:ConnectionStatus>");
        var stream = Encoding.UTF8.GetBytes("\uFEFF" + one + "\n" + two + "  ");
        var splitter = new EwsEnvelopeSplitter();
        var found = new List<string>();
        var completedAt = new List<int>();
        for (var i = 0; i < stream.Length; i++)
        {
            splitter.Append(stream.AsSpan(i, 1));
            while (splitter.TryRead(out var envelope))
            {
                found.Add(Encoding.UTF8.GetString(envelope.Span));
                completedAt.Add(i);
            }
        }

        Assert.Equal([one, two], found);
        // Each envelope is handed over at its last byte, not later (no waiting for the next one).
        Assert.Equal(Encoding.UTF8.GetByteCount("\uFEFF" + one) - 1, completedAt[0]);
        Assert.True(EwsNotificationParser.TryParseEnvelope(Encoding.UTF8.GetBytes(found[1]), out var parsed, out _));
        Assert.Equal(EwsConnectionStatus.Closed, parsed.ConnectionStatus);
    }

    [Fact]
    public void Splitter_Doctype_OrTextOutsideRoot_IsRejected()
    {
        var splitter = new EwsEnvelopeSplitter();
        splitter.Append("<!DOCTYPE x [<!ENTITY a 'b'>]><x/>"u8);
        Assert.Throws<InvalidDataException>(() => splitter.TryRead(out _));

        var text = new EwsEnvelopeSplitter();
        text.Append("<a/>garbage<b/>"u8);
        Assert.True(text.TryRead(out _));
        Assert.Throws<InvalidDataException>(() => text.TryRead(out _));
    }

    [Fact]
    public void Splitter_EnvelopeOverLimit_IsRejected()
    {
        var splitter = new EwsEnvelopeSplitter(1024);
        splitter.Append(Encoding.UTF8.GetBytes("<s:Envelope>" + new string('x', 2048)));
        Assert.Throws<InvalidDataException>(() => splitter.TryRead(out _));
    }

    [Fact]
    public void Splitter_MicrosoftSamples_ConcatenatedAsOneStream_ParseAsSent()
    {
        var folder = SharedData.RequireEws();
        var names = new[]
        {
            "exchangelib_getstreamingevents_connectionstatus_closed.xml",
            "exchangelib_sendnotification_statusevent.xml", // (the msdocs error sample leaves an element unclosed: a doc defect)
            "exchangelib_fault_errorserverbusy_backoffmilliseconds.xml",
        };
        var bytes = names.SelectMany(n => File.ReadAllBytes(Path.Combine(folder, "examples", n))).ToArray();
        var splitter = new EwsEnvelopeSplitter();
        var envelopes = new List<EwsEnvelope>();
        foreach (var chunk in bytes.Chunk(7))
        {
            splitter.Append(chunk);
            while (splitter.TryRead(out var body))
            {
                Assert.True(EwsNotificationParser.TryParseEnvelope(body, out var envelope, out var error), error.Message);
                envelopes.Add(envelope);
            }
        }

        Assert.Equal(3, envelopes.Count);
        Assert.Equal(EwsConnectionStatus.Closed, envelopes[0].ConnectionStatus);
        Assert.Equal("XXXXX=", Assert.Single(envelopes[1].Notifications).SubscriptionId);
        Assert.Equal(EwsRecovery.Resubscribe, EwsStreamingException.Classify("ErrorInvalidSubscription"));
        Assert.Equal("ErrorServerBusy", envelopes[2].ErrorCode);
        Assert.Equal(TimeSpan.FromMilliseconds(297749), envelopes[2].BackOff);
    }

    [Fact]
    public void Requests_EscapeValues_AndImpersonate()
    {
        var subscribe = Encoding.UTF8.GetString(EwsRequests.Subscribe("Exchange2013_SP1", "a&b<c>@x.test"));
        Assert.Contains("<t:PrimarySmtpAddress>a&amp;b&lt;c&gt;@x.test</t:PrimarySmtpAddress>", subscribe, StringComparison.Ordinal);
        Assert.Contains("<m:StreamingSubscriptionRequest>", subscribe, StringComparison.Ordinal);
        foreach (var type in new[] { "NewMailEvent", "CreatedEvent", "ModifiedEvent", "MovedEvent", "DeletedEvent" })
        {
            Assert.Contains("<t:EventType>" + type + "</t:EventType>", subscribe, StringComparison.Ordinal);
        }

        Assert.Contains("<t:DistinguishedFolderId Id=\"calendar\"/>", subscribe, StringComparison.Ordinal);
        var get = Encoding.UTF8.GetString(EwsRequests.GetStreamingEvents("Exchange2013_SP1", null, ["id1", "id2"], 30));
        Assert.DoesNotContain("ExchangeImpersonation", get, StringComparison.Ordinal);
        Assert.Contains("<m:ConnectionTimeout>30</m:ConnectionTimeout>", get, StringComparison.Ordinal);
    }

    [Fact]
    public void Options_Validate_RejectsBadValues()
    {
        Assert.Throws<ArgumentException>(() => new EwsStreamingOptions { ConnectionTimeout = TimeSpan.FromMinutes(31) }.Validate());
        Assert.Throws<ArgumentException>(() => new EwsStreamingOptions { ConnectionTimeout = TimeSpan.FromSeconds(90) }.Validate());
        Assert.Throws<ArgumentException>(() => new EwsStreamingOptions { MaxGroupSize = 201 }.Validate());
        new EwsStreamingOptions().Validate();
    }

    private static string Envelope(string inner) =>
        "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Body><m:GetStreamingEventsResponse xmlns:m=\"http://schemas.microsoft.com/exchange/services/2006/messages\">"
        + "<m:ResponseMessages><m:GetStreamingEventsResponseMessage ResponseClass=\"Success\"><m:ResponseCode>NoError</m:ResponseCode>"
        + inner + "</m:GetStreamingEventsResponseMessage></m:ResponseMessages></m:GetStreamingEventsResponse></s:Body></s:Envelope>";
}
