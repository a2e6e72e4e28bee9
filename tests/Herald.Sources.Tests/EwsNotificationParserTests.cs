using System.Text;
using Herald.Core.Events;
using Herald.Sources.Ews;
using Xunit;
using static Herald.Sources.Tests.EwsSamples;

namespace Herald.Sources.Tests;

public sealed class EwsNotificationParserTests
{
    private const string TextXml = "text/xml; charset=utf-8";

    private static EwsSendNotification ParseOk(string xml, string? contentType = TextXml)
    {
        var ok = EwsNotificationParser.TryParseSendNotification(Utf8(xml), contentType, out var result, out var error);
        Assert.True(ok, $"expected success, got {error.Code} at {error.LineNumber}:{error.LinePosition}");
        Assert.NotNull(result);
        return result;
    }

    private static EwsParseError ParseFails(ReadOnlyMemory<byte> body, string? contentType = TextXml)
    {
        var ok = EwsNotificationParser.TryParseSendNotification(body, contentType, out var result, out var error);
        Assert.False(ok);
        Assert.Null(result);
        Assert.NotEqual(EwsParseErrorCode.None, error.Code);
        return error;
    }

    private static EwsParseError ParseFails(string xml, string? contentType = TextXml) => ParseFails(Utf8(xml), contentType);

    [Fact]
    public void Parse_NewMailWithUnreadCount_ReturnsEventsInOrder()
    {
        var result = ParseOk(NewMailRequest(unread: 7));

        Assert.Equal(SoapVersion.Soap11, result.SoapVersion);
        var n = Assert.Single(result.Notifications);
        Assert.Equal("SUB1=", n.SubscriptionId);
        Assert.Equal("WM0=", n.PreviousWatermark);
        Assert.False(n.MoreEvents);
        Assert.Equal([MailEventKind.Created, MailEventKind.NewMail, MailEventKind.Modified], n.Events.Select(e => e.Kind));

        var created = n.Events[0];
        Assert.Equal("WM1=", created.Watermark);
        Assert.Equal(new DateTimeOffset(2024, 5, 6, 7, 8, 9, TimeSpan.Zero), created.TimeStamp);
        Assert.Equal(Item1, created.ItemId);
        Assert.Null(created.FolderId);
        Assert.Equal(Inbox, created.ParentFolderId);
        Assert.Null(created.UnreadCount);
        Assert.False(created.IsFolderEvent);

        var folder = n.Events[2];
        Assert.True(folder.IsFolderEvent);
        Assert.Equal(Inbox, folder.FolderId);
        Assert.Equal(Root, folder.ParentFolderId);
        Assert.Equal(7, folder.UnreadCount);
        Assert.Equal("WM3=", folder.Watermark);
    }

    [Fact]
    public void Parse_Soap12Request_ReportsSoap12()
    {
        var result = ParseOk(NewMailRequest(version: SoapVersion.Soap12), "application/soap+xml; charset=utf-8");

        Assert.Equal(SoapVersion.Soap12, result.SoapVersion);
        Assert.Equal(3, Assert.Single(result.Notifications).Events.Count);
    }

    [Fact]
    public void Parse_EnvelopeVersionWinsOverContentType()
    {
        // The envelope is authoritative; the Content-Type only matters when the envelope cannot be read.
        Assert.Equal(SoapVersion.Soap12, ParseOk(NewMailRequest(version: SoapVersion.Soap12), TextXml).SoapVersion);
        Assert.Equal(SoapVersion.Soap11, ParseOk(NewMailRequest(), "application/soap+xml").SoapVersion);
    }

    [Fact]
    public void Parse_SeveralNotifications_ReturnsAllInDocumentOrder()
    {
        var xml = Envelope(SendNotification(
            Notification("SUB-A=", "A0=", true, ItemEvent("CreatedEvent", "A1=", Item1, Inbox)),
            Notification("SUB-B=", "B0=", false, Status("B1="), ItemEvent("DeletedEvent", "B2=", Item2, Inbox)),
            Notification("SUB-A=", "A1=", false, FolderModified("A2=", Inbox, Root, 0))));

        var result = ParseOk(xml);

        Assert.Equal(["SUB-A=", "SUB-B=", "SUB-A="], result.Notifications.Select(n => n.SubscriptionId));
        Assert.Equal([true, false, false], result.Notifications.Select(n => n.MoreEvents));
        Assert.Equal([MailEventKind.Status, MailEventKind.Deleted], result.Notifications[1].Events.Select(e => e.Kind));
        Assert.Equal(0, result.Notifications[2].Events[0].UnreadCount);
    }

    [Fact]
    public void Parse_SeveralNotificationsInOneResponseMessage_AreAllReturned()
    {
        var xml = Envelope(SendNotification(
            Notification("SUB-A=", "A0=", false, Status("A1=")) + Notification("SUB-B=", "B0=", false, Status("B1="))));

        Assert.Equal(["SUB-A=", "SUB-B="], ParseOk(xml).Notifications.Select(n => n.SubscriptionId));
    }

    [Fact]
    public void Parse_AllEightEventTypesInAnyOrder_MapsKindsInDocumentOrder()
    {
        var xml = Envelope(SendNotification(Notification(
            "SUB1=",
            "W0=",
            false,
            MovedCopied("CopiedEvent", "W1=", "ItemId", Item2, Drafts, "OldItemId", Item1, Inbox),
            ItemEvent("FreeBusyChangedEvent", "W2=", Item1, Inbox),
            Status("W3="),
            ItemEvent("DeletedEvent", "W4=", Item1, Inbox),
            MovedCopied("MovedEvent", "W5=", "ItemId", Item2, Drafts, "OldItemId", Item1, Inbox),
            ItemEvent("NewMailEvent", "W6=", Item1, Inbox),
            ItemEvent("CreatedEvent", "W7=", Item1, Inbox),
            ItemEvent("ModifiedEvent", "W8=", Item1, Inbox))));

        var events = Assert.Single(ParseOk(xml).Notifications).Events;

        Assert.Equal(
            [
                MailEventKind.Copied, MailEventKind.FreeBusyChanged, MailEventKind.Status, MailEventKind.Deleted,
                MailEventKind.Moved, MailEventKind.NewMail, MailEventKind.Created, MailEventKind.Modified,
            ],
            events.Select(e => e.Kind));
        Assert.Equal(Enumerable.Range(1, 8).Select(i => $"W{i}="), events.Select(e => e.Watermark));
    }

    [Fact]
    public void Parse_StatusEvent_HasWatermarkOnly()
    {
        var e = Assert.Single(Assert.Single(ParseOk(Envelope(SendNotification(Notification("S=", "P=", false, Status("W=")))))
            .Notifications).Events);

        Assert.Equal(new MailEvent { Kind = MailEventKind.Status, Watermark = "W=" }, e);
    }

    [Fact]
    public void Parse_ItemAndFolderModifiedEvents_OnlyFolderCarriesUnreadCount()
    {
        // An item change yields two ModifiedEvents: the item, then its folder with the new unread count.
        var xml = Envelope(SendNotification(Notification(
            "S=", "W0=", false, ItemEvent("ModifiedEvent", "W1=", Item1, Inbox), FolderModified("W2=", Inbox, Root, 3),
            FolderModified("W3=", Drafts, Root, null))));

        var events = Assert.Single(ParseOk(xml).Notifications).Events;

        Assert.False(events[0].IsFolderEvent);
        Assert.Null(events[0].UnreadCount);
        Assert.True(events[1].IsFolderEvent);
        Assert.Equal(3, events[1].UnreadCount);
        Assert.True(events[2].IsFolderEvent);
        Assert.Null(events[2].UnreadCount);
    }

    [Fact]
    public void Parse_MovedAndCopiedEvents_CarryOldIds()
    {
        var xml = Envelope(SendNotification(Notification(
            "S=",
            "W0=",
            false,
            MovedCopied("MovedEvent", "W1=", "ItemId", Item2, Drafts, "OldItemId", Item1, Inbox),
            MovedCopied("CopiedEvent", "W2=", "FolderId", "NEWFOLDER", Root, "OldFolderId", "OLDFOLDER", Drafts))));

        var events = Assert.Single(ParseOk(xml).Notifications).Events;

        Assert.Equal(
            new MailEvent
            {
                Kind = MailEventKind.Moved,
                Watermark = "W1=",
                TimeStamp = new DateTimeOffset(2024, 5, 6, 7, 8, 9, TimeSpan.Zero),
                ItemId = Item2,
                ParentFolderId = Drafts,
                OldItemId = Item1,
                OldParentFolderId = Inbox,
            },
            events[0]);
        Assert.Equal("NEWFOLDER", events[1].FolderId);
        Assert.Equal("OLDFOLDER", events[1].OldFolderId);
        Assert.Equal(Drafts, events[1].OldParentFolderId);
        Assert.Null(events[1].OldItemId);
        Assert.True(events[1].IsFolderEvent);
    }

    [Theory]
    [InlineData("2024-05-06T07:08:09Z", "2024-05-06T07:08:09+00:00")]
    [InlineData("2024-05-06T07:08:09.1234567Z", "2024-05-06T07:08:09.1234567+00:00")]
    [InlineData("2024-05-06T09:08:09+02:00", "2024-05-06T09:08:09+02:00")]
    [InlineData(" 2024-05-06T07:08:09 ", "2024-05-06T07:08:09+00:00")]
    public void Parse_TimeStamp_ParsedInvariantAsXsDateTime(string written, string expected)
    {
        var xml = Envelope(SendNotification(Notification("S=", "W=", false, ItemEvent("NewMailEvent", "W1=", Item1, Inbox, written))));

        var e = Assert.Single(Assert.Single(ParseOk(xml).Notifications).Events);

        Assert.Equal(DateTimeOffset.Parse(expected, System.Globalization.CultureInfo.InvariantCulture), e.TimeStamp);
        Assert.Equal(DateTimeOffset.Parse(expected, System.Globalization.CultureInfo.InvariantCulture).Offset, e.TimeStamp!.Value.Offset);
    }

    [Fact]
    public void Parse_NotificationInAnyNamespace_MatchedByLocalName()
    {
        // Real servers write m:Notification; others write t:Notification or use default namespaces.
        var typesNs = $"""
            <m:SendNotification xmlns:m="{EwsSoap.MessagesNamespace}" xmlns:t="{EwsSoap.TypesNamespace}"><m:ResponseMessages>
            <m:SendNotificationResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode>
            <t:Notification><t:SubscriptionId>S1=</t:SubscriptionId><t:StatusEvent><t:Watermark>W=</t:Watermark></t:StatusEvent></t:Notification>
            </m:SendNotificationResponseMessage></m:ResponseMessages></m:SendNotification>
            """;
        var defaultNs = $"""
            <SendNotification xmlns="{EwsSoap.MessagesNamespace}"><ResponseMessages>
            <SendNotificationResponseMessage ResponseClass="Success"><ResponseCode>NoError</ResponseCode>
            <Notification><SubscriptionId xmlns="{EwsSoap.TypesNamespace}">S2=</SubscriptionId><NewMailEvent xmlns="{EwsSoap.TypesNamespace}"><TimeStamp>2024-01-01T00:00:00Z</TimeStamp><ItemId Id="I"/><ParentFolderId Id="P"/></NewMailEvent></Notification>
            </SendNotificationResponseMessage></ResponseMessages></SendNotification>
            """;

        Assert.Equal("S1=", Assert.Single(ParseOk(Envelope(typesNs)).Notifications).SubscriptionId);
        var n = Assert.Single(ParseOk(Envelope(defaultNs)).Notifications);
        Assert.Equal("S2=", n.SubscriptionId);
        Assert.Null(n.PreviousWatermark);
        Assert.Equal("I", Assert.Single(n.Events).ItemId);
    }

    [Fact]
    public void Parse_UnknownElementsAttributesAndEvents_AreSkipped()
    {
        var future = """
            <t:FutureEvent Kind="x"><t:Watermark>NOT-THIS</t:Watermark><t:ItemId Id="NOT-THIS"/><t:Nested><t:Deeper>text</t:Deeper></t:Nested></t:FutureEvent>
            """;
        var createdWithExtras = $"""
            <t:CreatedEvent Extra="1"><t:Watermark>W1=</t:Watermark><t:Unknown><t:ItemId Id="NOT-THIS"/></t:Unknown>
            <t:TimeStamp>2024-05-06T07:08:09Z</t:TimeStamp><t:ItemId Id="{Item1}" ChangeKey="C" Other="o"/><t:ParentFolderId Id="{Inbox}"/><!-- a comment --><t:Trailer/></t:CreatedEvent>
            """;
        var xml = Envelope(SendNotification(Notification("S=", "W0=", false, future, createdWithExtras, "<t:Extension><x>1</x></t:Extension>")));

        var e = Assert.Single(Assert.Single(ParseOk(xml).Notifications).Events);

        Assert.Equal(MailEventKind.Created, e.Kind);
        Assert.Equal("W1=", e.Watermark);
        Assert.Equal(Item1, e.ItemId);
        Assert.Equal(Inbox, e.ParentFolderId);
    }

    [Fact]
    public void Parse_EscapedText_IsDecoded()
    {
        var xml = Envelope(SendNotification(Notification("a&amp;b&#x3D;", "&lt;w&gt;", false, Status("x&#61;"))));

        var n = Assert.Single(ParseOk(xml).Notifications);

        Assert.Equal("a&b=", n.SubscriptionId);
        Assert.Equal("<w>", n.PreviousWatermark);
        Assert.Equal("x=", n.Events[0].Watermark);
    }

    [Fact]
    public void Parse_Utf16WithByteOrderMark_IsAccepted()
    {
        var xml = NewMailRequest().Replace("encoding=\"utf-8\"", "encoding=\"utf-16\"", StringComparison.Ordinal);
        var bytes = Encoding.Unicode.GetPreamble().Concat(Encoding.Unicode.GetBytes(xml)).ToArray();

        Assert.True(EwsNotificationParser.TryParseSendNotification(bytes, "text/xml; charset=utf-16", out var result, out _));
        Assert.Equal(3, result.Notifications[0].Events.Count);
    }

    [Fact]
    public void Parse_DtdWithExternalEntity_IsRejectedAsMalformed()
    {
        var xml = """
            <?xml version="1.0"?>
            <!DOCTYPE s:Envelope [ <!ENTITY xxe SYSTEM "file:///etc/passwd"> ]>
            <s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>
            <m:SendNotification xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages" xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types">
            <m:ResponseMessages><m:SendNotificationResponseMessage ResponseClass="Success"><m:Notification>
            <t:SubscriptionId>&xxe;</t:SubscriptionId><t:StatusEvent><t:Watermark>W</t:Watermark></t:StatusEvent>
            </m:Notification></m:SendNotificationResponseMessage></m:ResponseMessages></m:SendNotification></s:Body></s:Envelope>
            """;

        Assert.Equal(EwsParseErrorCode.Malformed, ParseFails(xml).Code);
    }

    [Fact]
    public void Parse_BillionLaughs_IsRejectedAsMalformed()
    {
        var entities = new StringBuilder("<!ENTITY lol0 \"lol\">");
        for (var i = 1; i < 10; i++)
        {
            entities.Append(System.Globalization.CultureInfo.InvariantCulture, $"<!ENTITY lol{i} \"&lol{i - 1};&lol{i - 1};&lol{i - 1};&lol{i - 1};&lol{i - 1};&lol{i - 1};&lol{i - 1};&lol{i - 1};&lol{i - 1};&lol{i - 1};\">");
        }

        var xml = $"<?xml version=\"1.0\"?><!DOCTYPE lolz [{entities}]>"
            + NewMailRequest().Replace("<?xml version=\"1.0\" encoding=\"utf-8\"?>", "", StringComparison.Ordinal).Replace("SUB1=", "&lol9;", StringComparison.Ordinal);

        Assert.Equal(EwsParseErrorCode.Malformed, ParseFails(xml).Code);
        Assert.Equal(EwsParseErrorCode.Malformed, EnvelopeCode(xml));

        static EwsParseErrorCode EnvelopeCode(string xml)
        {
            Assert.False(EwsNotificationParser.TryParseEnvelope(Utf8(xml), out _, out var error));
            return error.Code;
        }
    }

    [Fact]
    public void Parse_UndeclaredEntity_IsRejectedAsMalformed()
    {
        Assert.Equal(EwsParseErrorCode.Malformed, ParseFails(NewMailRequest().Replace("SUB1=", "&nbsp;", StringComparison.Ordinal)).Code);
    }

    [Fact]
    public void Parse_EveryTruncation_IsRejectedAndNeverThrows()
    {
        var bytes = Encoding.UTF8.GetBytes(NewMailRequest());
        var end = bytes.AsSpan().LastIndexOf("</s:Envelope>"u8) + "</s:Envelope>".Length;

        for (var length = 0; length < end; length++)
        {
            var ok = EwsNotificationParser.TryParseSendNotification(bytes.AsMemory(0, length), TextXml, out _, out var error);
            Assert.False(ok, $"a body cut at {length} of {bytes.Length} bytes was accepted");
            Assert.NotEqual(EwsParseErrorCode.None, error.Code);
        }

        Assert.True(EwsNotificationParser.TryParseSendNotification(bytes.AsMemory(0, end), TextXml, out _, out _));
    }

    [Theory]
    [InlineData("<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Body></s:Envelop>")]
    [InlineData("<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Body><SendNotification><a></b></SendNotification></s:Body></s:Envelope>")]
    [InlineData("<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Body><SendNotification><x:a/></SendNotification></s:Body></s:Envelope>")]
    [InlineData("<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Body><x:a/></s:Body></s:Envelope>")]
    [InlineData("<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" a=\"1\" a=\"2\"><s:Body/></s:Envelope>")]
    [InlineData("<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Body/></s:Envelope><s:Envelope/>")]
    [InlineData("<?xml version=\"1.0\" encoding=\"ebcdic-nonsense\"?><s:Envelope/>")]
    [InlineData("   ")]
    [InlineData("not xml at all")]
    [InlineData("{\"json\": true}")]
    public void Parse_MalformedXml_IsRejectedAsMalformed(string xml)
    {
        Assert.Equal(EwsParseErrorCode.Malformed, ParseFails(xml).Code);
    }

    [Fact]
    public void Parse_InvalidBytes_AreRejectedAsMalformed()
    {
        var bytes = Encoding.UTF8.GetBytes(NewMailRequest()).ToArray();
        var at = Array.IndexOf(bytes, (byte)'S', 200);
        bytes[at] = 0xFF;
        bytes[at + 1] = 0xFE;

        Assert.Equal(EwsParseErrorCode.Malformed, ParseFails(bytes).Code);
        Assert.Equal(EwsParseErrorCode.Malformed, ParseFails(Utf8(NewMailRequest().Replace("SUB1=", "\u0001", StringComparison.Ordinal))).Code);
    }

    [Theory]
    [InlineData("<Envelope><Body/></Envelope>")]
    [InlineData("<root xmlns=\"http://schemas.xmlsoap.org/soap/envelope/\"><Body/></root>")]
    [InlineData("<s:Envelope xmlns:s=\"https://schemas.xmlsoap.org/soap/envelope/\"><s:Body/></s:Envelope>")]
    [InlineData("<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"/>")]
    [InlineData("<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Header/></s:Envelope>")]
    [InlineData("<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><Body/></s:Envelope>")]
    [InlineData("<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:e=\"http://www.w3.org/2003/05/soap-envelope\"><e:Body/></s:Envelope>")]
    [InlineData("<m:SendNotification xmlns:m=\"http://schemas.microsoft.com/exchange/services/2006/messages\"/>")]
    public void Parse_WrongRootOrNoBody_IsRejectedAsNotSoapEnvelope(string xml)
    {
        Assert.Equal(EwsParseErrorCode.NotSoapEnvelope, ParseFails(xml).Code);
    }

    [Fact]
    public void Parse_EmptyBody_IsRejectedAsEmpty()
    {
        Assert.Equal(EwsParseErrorCode.EmptyBody, ParseFails(ReadOnlyMemory<byte>.Empty).Code);
        Assert.False(EwsNotificationParser.TryParseEnvelope(ReadOnlyMemory<byte>.Empty, out _, out var error));
        Assert.Equal(EwsParseErrorCode.EmptyBody, error.Code);
    }

    [Fact]
    public void Parse_BodyOverOneMebibyte_IsRejectedAsTooLarge()
    {
        var request = NewMailRequest();
        var padded = request.Replace("<s:Header>", "<s:Header><!--" + new string('x', EwsNotificationParser.MaxBodyBytes) + "-->", StringComparison.Ordinal);

        Assert.Equal(EwsParseErrorCode.TooLarge, ParseFails(padded).Code);
    }

    [Theory]
    [InlineData("Header")]
    [InlineData("Event")]
    [InlineData("Body")]
    public void Parse_TooDeepNesting_IsRejected(string where)
    {
        var deep = string.Concat(Enumerable.Repeat("<x>", 80)) + string.Concat(Enumerable.Repeat("</x>", 80));
        var request = NewMailRequest();
        var xml = where switch
        {
            "Header" => request.Replace("<s:Header>", "<s:Header>" + deep, StringComparison.Ordinal),
            "Event" => request.Replace("<t:Watermark>WM2=</t:Watermark>", "<t:Watermark>WM2=</t:Watermark>" + deep, StringComparison.Ordinal),
            _ => request.Replace("<m:ResponseMessages>", "<m:ResponseMessages>" + deep, StringComparison.Ordinal),
        };

        Assert.Equal(EwsParseErrorCode.TooDeep, ParseFails(xml).Code);
    }

    [Fact]
    public void Parse_NestingJustWithinTheLimit_IsAccepted()
    {
        // Header sits at depth 1, so 62 nested elements reach depth 63, the deepest allowed.
        var deep = string.Concat(Enumerable.Repeat("<x>", 62)) + string.Concat(Enumerable.Repeat("</x>", 62));
        var xml = NewMailRequest().Replace("<s:Header>", "<s:Header>" + deep, StringComparison.Ordinal);

        Assert.Single(ParseOk(xml).Notifications);
        var tooDeep = NewMailRequest().Replace("<s:Header>", "<s:Header><y>" + deep + "</y>", StringComparison.Ordinal);
        Assert.Equal(EwsParseErrorCode.TooDeep, ParseFails(tooDeep).Code);
    }

    [Theory]
    [InlineData(SoapVersion.Soap11)]
    [InlineData(SoapVersion.Soap12)]
    public void Parse_NonSendNotificationBody_IsRejectedInTheEnvelopesVersion(SoapVersion version)
    {
        var xml = Envelope($"<m:GetStreamingEvents xmlns:m=\"{EwsSoap.MessagesNamespace}\"><m:Notification/></m:GetStreamingEvents>", version);

        var error = ParseFails(xml, contentType: null);

        Assert.Equal(EwsParseErrorCode.NotSendNotification, error.Code);
        Assert.Equal(version, error.SoapVersion);
    }

    [Fact]
    public void Parse_EmptySoapBodyOrFault_IsNotSendNotification()
    {
        Assert.Equal(EwsParseErrorCode.NotSendNotification, ParseFails(Envelope("")).Code);
        Assert.Equal(EwsParseErrorCode.NotSendNotification, ParseFails(Envelope("<s:Fault><faultcode>s:Client</faultcode></s:Fault>")).Code);
    }

    [Theory]
    [InlineData("no notification")]
    [InlineData("no subscription id")]
    [InlineData("empty subscription id")]
    [InlineData("bad timestamp")]
    [InlineData("bad unread count")]
    [InlineData("negative unread count")]
    [InlineData("bad MoreEvents")]
    [InlineData("child element in text")]
    public void Parse_InvalidEwsContent_IsRejected(string defect)
    {
        var request = NewMailRequest();
        var xml = defect switch
        {
            "no notification" => Envelope(SendNotification()),
            "no subscription id" => request.Replace("<t:SubscriptionId>SUB1=</t:SubscriptionId>", "", StringComparison.Ordinal),
            "empty subscription id" => request.Replace("<t:SubscriptionId>SUB1=</t:SubscriptionId>", "<t:SubscriptionId> </t:SubscriptionId>", StringComparison.Ordinal),
            "bad timestamp" => request.Replace("2024-05-06T07:08:09Z", "06/05/2024 07:08", StringComparison.Ordinal),
            "bad unread count" => request.Replace("<t:UnreadCount>1</t:UnreadCount>", "<t:UnreadCount>one</t:UnreadCount>", StringComparison.Ordinal),
            "negative unread count" => request.Replace("<t:UnreadCount>1</t:UnreadCount>", "<t:UnreadCount>-1</t:UnreadCount>", StringComparison.Ordinal),
            "bad MoreEvents" => request.Replace("<t:MoreEvents>false</t:MoreEvents>", "<t:MoreEvents>no</t:MoreEvents>", StringComparison.Ordinal),
            _ => request.Replace("<t:Watermark>WM1=</t:Watermark>", "<t:Watermark>WM1=<b/></t:Watermark>", StringComparison.Ordinal),
        };
        Assert.NotEqual(request, xml);

        var error = ParseFails(xml);

        Assert.Contains(error.Code, new[] { EwsParseErrorCode.InvalidContent, EwsParseErrorCode.Malformed });
        if (defect != "child element in text")
        {
            Assert.Equal(EwsParseErrorCode.InvalidContent, error.Code);
        }
    }

    [Fact]
    public void Parse_Errors_NeverEchoTheBody()
    {
        const string Secret = "alice@contoso.com-SECRET";
        var bodies = new[]
        {
            $"<{Secret}>",
            $"<s:Envelope xmlns:s=\"{Secret}\"><s:Body/></s:Envelope>",
            NewMailRequest().Replace("SUB1=", $"<{Secret}", StringComparison.Ordinal),
            NewMailRequest().Replace("2024-05-06T07:08:09Z", Secret, StringComparison.Ordinal),
            NewMailRequest().Replace("<s:Body>", $"<s:Body><{Secret}/>", StringComparison.Ordinal),
            $"<!DOCTYPE x [<!ENTITY a \"{Secret}\">]><x>&a;</x>",
        };

        foreach (var body in bodies)
        {
            var error = ParseFails(body);
            Assert.DoesNotContain("SECRET", error.Message, StringComparison.Ordinal);
            Assert.DoesNotContain("SECRET", error.ToString(), StringComparison.Ordinal);
            Assert.DoesNotContain("SECRET", Encoding.UTF8.GetString(EwsSoapResponses.Fault(error).Body.Span), StringComparison.Ordinal);
        }
    }

    [Theory]
    [InlineData("application/soap+xml; charset=utf-8", SoapVersion.Soap12)]
    [InlineData("Application/SOAP+XML", SoapVersion.Soap12)]
    [InlineData("text/xml; charset=utf-8", SoapVersion.Soap11)]
    [InlineData(null, SoapVersion.Soap11)]
    [InlineData("garbage", SoapVersion.Soap11)]
    public void Parse_UnreadableBody_FaultVersionFollowsContentType(string? contentType, SoapVersion expected)
    {
        Assert.Equal(expected, ParseFails("not xml", contentType).SoapVersion);
        Assert.Equal(expected, EwsSoap.VersionFromContentType(contentType));
    }

    [Fact]
    public void Parse_MalformedError_ReportsPosition()
    {
        var error = ParseFails("<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\">\n<s:Body>\n  <SendNotification><a></b>");

        Assert.Equal(EwsParseErrorCode.Malformed, error.Code);
        Assert.Equal(3, error.LineNumber);
    }

    [Fact]
    public void Parse_RandomMutations_NeverThrow()
    {
        // Deterministic fuzzing: flip, drop and duplicate bytes of a valid request. Every outcome must be a clean
        // success or a coded failure.
        var original = Encoding.UTF8.GetBytes(Envelope(SendNotification(
            Notification("S=", "W0=", true, MovedCopied("MovedEvent", "W1=", "ItemId", Item2, Drafts, "OldItemId", Item1, Inbox)),
            Notification("T=", "W0=", false, FolderModified("W1=", Inbox, Root, 4), Status("W2=")))));
        var random = new Random(20240506);
        var alphabet = "<>/&;=\"' :xX#!?-[]\0\u00ff"u8.ToArray();

        for (var i = 0; i < 3000; i++)
        {
            var bytes = original.ToList();
            for (var m = random.Next(1, 4); m > 0; m--)
            {
                var at = random.Next(bytes.Count);
                switch (random.Next(3))
                {
                    case 0: bytes[at] = alphabet[random.Next(alphabet.Length)]; break;
                    case 1: bytes.RemoveAt(at); break;
                    default: bytes.InsertRange(at, bytes.Skip(at).Take(random.Next(1, 40)).ToArray()); break;
                }
            }

            var body = bytes.ToArray();
            var ok = EwsNotificationParser.TryParseSendNotification(body, TextXml, out var parsed, out var error);
            Assert.True(ok ? parsed is not null && parsed.Notifications.Count > 0 : error.Code != EwsParseErrorCode.None);
            var okEnvelope = EwsNotificationParser.TryParseEnvelope(body, out var envelope, out error);
            Assert.True(okEnvelope ? envelope is not null : error.Code != EwsParseErrorCode.None);
        }
    }

    [Fact]
    public async Task Parse_ConcurrentCallers_GetTheirOwnResults()
    {
        var a = Utf8(NewMailRequest(unread: 1));
        var b = Utf8(NewMailRequest(unread: 2, version: SoapVersion.Soap12));
        var bad = Utf8("<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Body><x:y/></s:Body></s:Envelope>");

        var tasks = Enumerable.Range(0, 8).Select(t => Task.Run(
            () =>
            {
                for (var i = 0; i < 500; i++)
                {
                    var which = (t + i) % 3;
                    var body = which switch { 0 => a, 1 => b, _ => bad };
                    var ok = EwsNotificationParser.TryParseSendNotification(body, null, out var result, out _);
                    if (which == 2)
                    {
                        Assert.False(ok);
                        continue;
                    }

                    Assert.True(ok);
                    Assert.Equal(which + 1, result!.Notifications[0].Events[2].UnreadCount);
                    Assert.Equal(which == 0 ? SoapVersion.Soap11 : SoapVersion.Soap12, result.SoapVersion);
                }
            },
            TestContext.Current.CancellationToken));

        await Task.WhenAll(tasks);
    }

    [Fact]
    public void ParseEnvelope_StreamingResponse_ReportsNotificationsStatusAndErrorIds()
    {
        var xml = Envelope($"""
            <m:GetStreamingEventsResponse xmlns:m="{EwsSoap.MessagesNamespace}" xmlns:t="{EwsSoap.TypesNamespace}">
              <m:ResponseMessages>
                <m:GetStreamingEventsResponseMessage ResponseClass="Error">
                  <m:MessageText>Some subscriptions could not be found.</m:MessageText>
                  <m:ResponseCode>ErrorSubscriptionNotFound</m:ResponseCode>
                  <m:Notifications>
                    <m:Notification>
                      <t:SubscriptionId>S1=</t:SubscriptionId>
                      <t:NewMailEvent><t:TimeStamp>2024-01-01T00:00:00Z</t:TimeStamp><t:ItemId Id="I1"/><t:ParentFolderId Id="P"/></t:NewMailEvent>
                    </m:Notification>
                    <m:Notification>
                      <t:SubscriptionId>S2=</t:SubscriptionId>
                      <t:ModifiedEvent><t:TimeStamp>2024-01-01T00:00:00Z</t:TimeStamp><t:FolderId Id="P"/><t:ParentFolderId Id="R"/><t:UnreadCount>5</t:UnreadCount></t:ModifiedEvent>
                    </m:Notification>
                  </m:Notifications>
                  <m:ErrorSubscriptionIds><m:SubscriptionId>GONE1=</m:SubscriptionId><m:SubscriptionId>GONE2=</m:SubscriptionId></m:ErrorSubscriptionIds>
                  <m:ConnectionStatus>OK</m:ConnectionStatus>
                </m:GetStreamingEventsResponseMessage>
              </m:ResponseMessages>
            </m:GetStreamingEventsResponse>
            """);

        Assert.True(EwsNotificationParser.TryParseEnvelope(Utf8(xml), out var envelope, out _));

        Assert.Equal("GetStreamingEventsResponse", envelope.Operation);
        Assert.False(envelope.IsSendNotification);
        Assert.False(envelope.IsFault);
        Assert.Equal(["S1=", "S2="], envelope.Notifications.Select(n => n.SubscriptionId));
        Assert.Equal(5, envelope.Notifications[1].Events[0].UnreadCount);
        Assert.Equal(["GONE1=", "GONE2="], envelope.ErrorSubscriptionIds);
        Assert.Equal(EwsConnectionStatus.Ok, envelope.ConnectionStatus);
        Assert.Equal("ErrorSubscriptionNotFound", envelope.ErrorCode);
    }

    [Fact]
    public void ParseEnvelope_SendNotification_MatchesTheDedicatedParser()
    {
        Assert.True(EwsNotificationParser.TryParseEnvelope(Utf8(NewMailRequest()), out var envelope, out _));

        Assert.True(envelope.IsSendNotification);
        Assert.Null(envelope.ErrorCode);
        Assert.Null(envelope.ConnectionStatus);
        Assert.Empty(envelope.ErrorSubscriptionIds);
        Assert.Equal(ParseOk(NewMailRequest()).Notifications[0].Events, envelope.Notifications[0].Events);
    }

    [Fact]
    public void ParseEnvelope_Soap12Fault_ReportsCode()
    {
        var xml = $"""
            <e:Envelope xmlns:e="{EwsSoap.Soap12Namespace}"><e:Body><e:Fault>
              <e:Code><e:Value>e:Receiver</e:Value><e:Subcode><e:Value>x:Busy</e:Value></e:Subcode></e:Code>
              <e:Reason><e:Text xml:lang="en">busy</e:Text></e:Reason>
            </e:Fault></e:Body></e:Envelope>
            """;

        Assert.True(EwsNotificationParser.TryParseEnvelope(Utf8(xml), out var envelope, out _));

        Assert.Equal(SoapVersion.Soap12, envelope.SoapVersion);
        Assert.True(envelope.IsFault);
        Assert.Equal("e:Receiver", envelope.FaultCode);
    }

    [Fact]
    public void ParseEnvelope_UnknownConnectionStatus_IsInvalidContent()
    {
        var xml = Envelope($"<m:GetStreamingEventsResponse xmlns:m=\"{EwsSoap.MessagesNamespace}\"><m:ConnectionStatus>Maybe</m:ConnectionStatus></m:GetStreamingEventsResponse>");

        Assert.False(EwsNotificationParser.TryParseEnvelope(Utf8(xml), out _, out var error));
        Assert.Equal(EwsParseErrorCode.InvalidContent, error.Code);
    }
}
