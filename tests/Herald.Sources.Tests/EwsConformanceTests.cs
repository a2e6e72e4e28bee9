using System.Xml.Linq;
using Herald.Core.Events;
using Herald.Sources.Ews;
using Herald.Testing;
using Xunit;

namespace Herald.Sources.Tests;

/// <summary>
/// Every file of ../shared/ews/examples (Microsoft's documentation samples and exchangelib's captures of real servers)
/// through both parse methods.
/// </summary>
/// <remarks>
/// Doc defects: some Microsoft samples use <c>https://schemas.xmlsoap.org/soap/envelope/</c> as the envelope namespace,
/// one is a fragment without an Envelope, one leaves an element unclosed. Real servers do not send these, and Herald
/// does not guess: they are rejected (NotSoapEnvelope / Malformed) exactly like any other wrong document. The
/// <c>Repaired…</c> tests fix just the defect and show that the content then parses as documented.
/// </remarks>
public sealed class EwsConformanceTests
{
    private const string HttpsSoap = "https://schemas.xmlsoap.org/soap/envelope/";

    private sealed record Expectation(EwsParseErrorCode SendNotification, EwsParseErrorCode Envelope, string? Operation, string Note);

    private static readonly Dictionary<string, Expectation> Expectations = new(StringComparer.Ordinal)
    {
        ["exchangelib_fault_errorserverbusy_backoffmilliseconds.xml"] =
            new(EwsParseErrorCode.NotSendNotification, EwsParseErrorCode.None, "Fault", "SOAP fault from a real server"),
        ["exchangelib_getstreamingevents_connectionstatus_closed.xml"] =
            new(EwsParseErrorCode.NotSendNotification, EwsParseErrorCode.None, "GetStreamingEventsResponse", "streaming response"),
        ["exchangelib_sendnotification_statusevent.xml"] =
            new(EwsParseErrorCode.None, EwsParseErrorCode.None, "SendNotification", "push callback from a real server"),
        ["exchangelib_sendnotificationresult_ok.xml"] =
            new(EwsParseErrorCode.NotSendNotification, EwsParseErrorCode.None, "SendNotificationResult", "a listener's answer"),
        ["exchangelib_sendnotificationresult_unsubscribe.xml"] =
            new(EwsParseErrorCode.NotSendNotification, EwsParseErrorCode.None, "SendNotificationResult", "a listener's answer"),
        ["msdocs_getstreamingevents_op_error_response.xml"] =
            new(EwsParseErrorCode.NotSendNotification, EwsParseErrorCode.Malformed, null, "doc defect: GetStreamingEventsResponseMessage is never closed (the SendNotification parse stops at the operation name first)"),
        ["msdocs_getstreamingevents_op_request.xml"] =
            new(EwsParseErrorCode.NotSendNotification, EwsParseErrorCode.None, "GetStreamingEvents", "a request"),
        ["msdocs_getstreamingevents_op_response.xml"] =
            new(EwsParseErrorCode.NotSoapEnvelope, EwsParseErrorCode.NotSoapEnvelope, null, "doc defect: Header and Body without an Envelope"),
        ["msdocs_getstreamingevents_request.xml"] =
            new(EwsParseErrorCode.NotSoapEnvelope, EwsParseErrorCode.NotSoapEnvelope, null, "doc defect: https:// envelope namespace"),
        ["msdocs_getstreamingevents_response_created_newmail_modified.xml"] =
            new(EwsParseErrorCode.NotSoapEnvelope, EwsParseErrorCode.NotSoapEnvelope, null, "doc defects: https:// envelope namespace, Envelope never closed"),
        ["msdocs_streaming_subscribe_request.xml"] =
            new(EwsParseErrorCode.NotSoapEnvelope, EwsParseErrorCode.NotSoapEnvelope, null, "doc defect: https:// envelope namespace"),
        ["msdocs_streaming_subscribe_response.xml"] =
            new(EwsParseErrorCode.NotSoapEnvelope, EwsParseErrorCode.NotSoapEnvelope, null, "doc defect: https:// envelope namespace"),
        ["msdocs_subscribe_push_request.xml"] =
            new(EwsParseErrorCode.NotSendNotification, EwsParseErrorCode.None, "Subscribe", "a request"),
        ["msdocs_subscribe_push_response.xml"] =
            new(EwsParseErrorCode.NotSendNotification, EwsParseErrorCode.None, "SubscribeResponse", "a response"),
    };

    private static string Examples => Path.Combine(SharedData.RequireEws(), "examples");

    private static byte[] Read(string name) => File.ReadAllBytes(Path.Combine(Examples, name));

    [Fact]
    public void Examples_EveryFile_ParsesAsExpectedWithoutThrowing()
    {
        var files = Directory.GetFiles(Examples).Select(Path.GetFileName).Order(StringComparer.Ordinal).ToList();
        Assert.NotEmpty(files);

        foreach (var file in files)
        {
            Assert.True(Expectations.TryGetValue(file!, out var expected), $"{file}: a new example; add its expectation to this test");
            var bytes = Read(file!);

            var ok = EwsNotificationParser.TryParseSendNotification(bytes, "text/xml; charset=utf-8", out var notification, out var error);
            Assert.True(expected.SendNotification == (ok ? EwsParseErrorCode.None : error.Code), $"{file} ({expected.Note}): SendNotification parse gave {(ok ? "success" : error.Code)}");
            Assert.Equal(ok, notification is not null);

            ok = EwsNotificationParser.TryParseEnvelope(bytes, out var envelope, out error);
            Assert.True(expected.Envelope == (ok ? EwsParseErrorCode.None : error.Code), $"{file} ({expected.Note}): envelope parse gave {(ok ? "success" : error.Code)}");
            if (ok)
            {
                Assert.Equal(expected.Operation, envelope!.Operation);
            }
        }
    }

    [Fact]
    public void Examples_ExchangelibStatusEvent_ParsesHeartbeat()
    {
        Assert.True(EwsNotificationParser.TryParseSendNotification(Read("exchangelib_sendnotification_statusevent.xml"), "text/xml; charset=utf-8", out var result, out _));

        Assert.Equal(SoapVersion.Soap11, result.SoapVersion);
        var n = Assert.Single(result.Notifications);
        Assert.Equal("XXXXX=", n.SubscriptionId);
        Assert.Equal("AAAAA=", n.PreviousWatermark);
        Assert.False(n.MoreEvents);
        Assert.Equal(new MailEvent { Kind = MailEventKind.Status, Watermark = "BBBBB=" }, Assert.Single(n.Events));
    }

    [Fact]
    public void Examples_ExchangelibServerBusyFault_ReportsBackOff()
    {
        Assert.True(EwsNotificationParser.TryParseEnvelope(Read("exchangelib_fault_errorserverbusy_backoffmilliseconds.xml"), out var envelope, out _));

        Assert.True(envelope.IsFault);
        Assert.Equal("a:ErrorServerBusy", envelope.FaultCode);
        Assert.Equal("ErrorServerBusy", envelope.ErrorCode);
        Assert.Equal(TimeSpan.FromMilliseconds(297749), envelope.BackOff);
        Assert.Empty(envelope.Notifications);
    }

    [Fact]
    public void Examples_ExchangelibConnectionClosed_ReportsClosed()
    {
        Assert.True(EwsNotificationParser.TryParseEnvelope(Read("exchangelib_getstreamingevents_connectionstatus_closed.xml"), out var envelope, out _));

        Assert.Equal(EwsConnectionStatus.Closed, envelope.ConnectionStatus);
        Assert.Null(envelope.ErrorCode);
        Assert.Empty(envelope.Notifications);
        Assert.Empty(envelope.ErrorSubscriptionIds);
    }

    [Theory]
    [InlineData("exchangelib_sendnotificationresult_ok.xml", EwsSubscriptionStatus.Ok)]
    [InlineData("exchangelib_sendnotificationresult_unsubscribe.xml", EwsSubscriptionStatus.Unsubscribe)]
    public void Examples_HeraldResult_MatchesExchangelibCapture(string file, EwsSubscriptionStatus status)
    {
        var theirs = XDocument.Load(new MemoryStream(Read(file)));
        var ours = XDocument.Load(new MemoryStream(EwsSoapResponses.SendNotificationResult(SoapVersion.Soap11, status).Body.ToArray()));

        Assert.Equal(Normalize(theirs.Root!), Normalize(ours.Root!));
    }

    [Fact]
    public void Examples_RepairedHttpsNamespace_ParsesDocumentedEvents()
    {
        // Two defects: the https:// namespace, and the sample stops after </soap:Body> without closing the Envelope.
        var xml = File.ReadAllText(Path.Combine(Examples, "msdocs_getstreamingevents_response_created_newmail_modified.xml"))
            .Replace(HttpsSoap, EwsSoap.Soap11Namespace, StringComparison.Ordinal) + "</s:Envelope>";

        Assert.True(EwsNotificationParser.TryParseEnvelope(EwsSamples.Utf8(xml), out var envelope, out var error), error.ToString());

        AssertDocumentedStreamingEvents(envelope);
    }

    [Fact]
    public void Examples_RepairedFragment_ParsesDocumentedEvents()
    {
        var fragment = File.ReadAllText(Path.Combine(Examples, "msdocs_getstreamingevents_op_response.xml"));
        fragment = fragment[(fragment.IndexOf("?>", StringComparison.Ordinal) + 2)..];
        var xml = $"<soap:Envelope xmlns:soap=\"{EwsSoap.Soap11Namespace}\">{fragment}</soap:Envelope>";

        Assert.True(EwsNotificationParser.TryParseEnvelope(EwsSamples.Utf8(xml), out var envelope, out var error), error.ToString());

        AssertDocumentedStreamingEvents(envelope);
    }

    [Fact]
    public void Examples_RepairedUnclosedElement_ReportsInvalidSubscription()
    {
        var xml = File.ReadAllText(Path.Combine(Examples, "msdocs_getstreamingevents_op_error_response.xml"))
            .Replace("</m:ResponseMessages>", "</m:GetStreamingEventsResponseMessage></m:ResponseMessages>", StringComparison.Ordinal);

        Assert.True(EwsNotificationParser.TryParseEnvelope(EwsSamples.Utf8(xml), out var envelope, out var error), error.ToString());

        Assert.Equal("ErrorInvalidSubscription", envelope.ErrorCode);
        Assert.Equal(EwsConnectionStatus.Closed, envelope.ConnectionStatus);
    }

    [Theory]
    [InlineData("msdocs_getstreamingevents_request.xml", "GetStreamingEvents")]
    [InlineData("msdocs_streaming_subscribe_request.xml", "Subscribe")]
    [InlineData("msdocs_streaming_subscribe_response.xml", "SubscribeResponse")]
    public void Examples_RepairedHttpsNamespace_IsRecognisedButNotASendNotification(string file, string operation)
    {
        var bytes = EwsSamples.Utf8(File.ReadAllText(Path.Combine(Examples, file)).Replace(HttpsSoap, EwsSoap.Soap11Namespace, StringComparison.Ordinal));

        Assert.True(EwsNotificationParser.TryParseEnvelope(bytes, out var envelope, out _));
        Assert.Equal(operation, envelope.Operation);
        Assert.False(EwsNotificationParser.TryParseSendNotification(bytes, null, out _, out var error));
        Assert.Equal(EwsParseErrorCode.NotSendNotification, error.Code);
    }

    private static void AssertDocumentedStreamingEvents(EwsEnvelope envelope)
    {
        Assert.Equal("GetStreamingEventsResponse", envelope.Operation);
        var n = Assert.Single(envelope.Notifications);
        Assert.Null(n.PreviousWatermark);
        Assert.Equal([MailEventKind.Created, MailEventKind.NewMail, MailEventKind.Modified], n.Events.Select(e => e.Kind));
        Assert.All(n.Events, e => Assert.Equal(new DateTimeOffset(2013, 9, 16, 4, 31, 29, TimeSpan.Zero), e.TimeStamp));
        Assert.All(n.Events, e => Assert.Null(e.Watermark));
        Assert.Equal(n.Events[0].ItemId, n.Events[1].ItemId);
        Assert.StartsWith("AAMkADkzNjJj", n.Events[0].ItemId, StringComparison.Ordinal);
        Assert.Equal(n.Events[0].ParentFolderId, n.Events[2].FolderId);
        Assert.True(n.Events[2].IsFolderEvent);
        Assert.Equal(1, n.Events[2].UnreadCount);
    }

    /// <summary>Element names (expanded) and text, without prefixes, namespace declarations or formatting.</summary>
    private static string Normalize(XElement element) =>
        element.HasElements
            ? $"{element.Name}[{string.Concat(element.Elements().Select(Normalize))}]"
            : $"{element.Name}={element.Value.Trim()};";
}
