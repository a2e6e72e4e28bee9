using System.Globalization;
using System.Security;
using System.Text;

namespace Herald.Simulators.Exchange.Streaming;

/// <summary>One queued EWS event of a streaming subscription, written as Exchange writes it.</summary>
internal sealed record FakeEwsEvent(string Kind, string Watermark, DateTimeOffset TimeStamp, string? ItemId, string? FolderId, string ParentFolderId, int? UnreadCount);

/// <summary>One UserResponse of the fake's GetUserSettings: settings (null for InvalidUser), or a redirect.</summary>
internal sealed record FakeAutodiscoverUser(string Mailbox, IReadOnlyList<(string Name, string Value)>? Settings, string? RedirectCode = null, string? RedirectTarget = null);

/// <summary>The SOAP 1.1 answers of the fake, in Exchange's shape (prefixes s, m, t; ServerVersionInfo header).</summary>
internal static class FakeEwsResponses
{
    public const string Soap11 = "http://schemas.xmlsoap.org/soap/envelope/";
    public const string Messages = "http://schemas.microsoft.com/exchange/services/2006/messages";
    public const string Types = "http://schemas.microsoft.com/exchange/services/2006/types";
    public const string Errors = "http://schemas.microsoft.com/exchange/services/2006/errors";
    public const string AutodiscoverNs = "http://schemas.microsoft.com/exchange/2010/Autodiscover";
    public const string ContentType = "text/xml; charset=utf-8";

    private const string Head = "<?xml version=\"1.0\" encoding=\"utf-8\"?><s:Envelope xmlns:s=\"" + Soap11 + "\"><s:Header>"
        + "<h:ServerVersionInfo MajorVersion=\"15\" MinorVersion=\"1\" MajorBuildNumber=\"2507\" MinorBuildNumber=\"6\" Version=\"V2017_07_11\" "
        + "xmlns:h=\"" + Types + "\" xmlns=\"" + Types + "\"/></s:Header><s:Body>";

    private const string Tail = "</s:Body></s:Envelope>";

    public static string Escape(string text) => SecurityElement.Escape(text) ?? string.Empty;

    /// <summary>A response with one response message per entry: success bodies, or error codes.</summary>
    public static byte[] Operation(string operation, IEnumerable<(string? ErrorCode, string Inner)> messages)
    {
        var builder = new StringBuilder(512);
        builder.Append(Head).Append("<m:").Append(operation).Append("Response xmlns:m=\"").Append(Messages).Append("\" xmlns:t=\"").Append(Types).Append("\"><m:ResponseMessages>");
        foreach (var (error, inner) in messages)
        {
            AppendMessage(builder, operation, error, inner);
        }

        builder.Append("</m:ResponseMessages></m:").Append(operation).Append("Response>").Append(Tail);
        return Encoding.UTF8.GetBytes(builder.ToString());
    }

    private static void AppendMessage(StringBuilder builder, string operation, string? error, string inner)
    {
        builder.Append("<m:").Append(operation).Append("ResponseMessage ResponseClass=\"").Append(error is null ? "Success" : "Error").Append("\">");
        if (error is not null)
        {
            builder.Append("<m:MessageText>").Append(Escape(MessageText(error))).Append("</m:MessageText>");
        }

        builder.Append("<m:ResponseCode>").Append(error ?? "NoError").Append("</m:ResponseCode>");
        if (error is not null)
        {
            builder.Append("<m:DescriptiveLinkKey>0</m:DescriptiveLinkKey>");
        }

        builder.Append(inner).Append("</m:").Append(operation).Append("ResponseMessage>");
    }

    /// <summary>One GetStreamingEvents envelope: notifications, error ids, a connection status.</summary>
    public static byte[] StreamingEnvelope(string? error, IReadOnlyList<(string SubscriptionId, IReadOnlyList<FakeEwsEvent> Events)> notifications, IReadOnlyList<string>? errorIds, string? connectionStatus)
    {
        var inner = new StringBuilder(256);
        if (notifications.Count > 0)
        {
            inner.Append("<m:Notifications>");
            foreach (var (id, events) in notifications)
            {
                inner.Append("<m:Notification><t:SubscriptionId>").Append(Escape(id)).Append("</t:SubscriptionId>");
                foreach (var e in events)
                {
                    AppendEvent(inner, e);
                }

                inner.Append("</m:Notification>");
            }

            inner.Append("</m:Notifications>");
        }

        if (errorIds is { Count: > 0 })
        {
            inner.Append("<m:ErrorSubscriptionIds>");
            foreach (var id in errorIds)
            {
                inner.Append("<m:SubscriptionId>").Append(Escape(id)).Append("</m:SubscriptionId>");
            }

            inner.Append("</m:ErrorSubscriptionIds>");
        }

        if (connectionStatus is not null)
        {
            inner.Append("<m:ConnectionStatus>").Append(connectionStatus).Append("</m:ConnectionStatus>");
        }

        return Operation("GetStreamingEvents", [(error, inner.ToString())]);
    }

    private static void AppendEvent(StringBuilder builder, FakeEwsEvent e)
    {
        builder.Append("<t:").Append(e.Kind).Append("><t:Watermark>").Append(e.Watermark).Append("</t:Watermark><t:TimeStamp>")
            .Append(e.TimeStamp.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture)).Append("</t:TimeStamp>");
        if (e.ItemId is not null)
        {
            builder.Append("<t:ItemId Id=\"").Append(e.ItemId).Append("\" ChangeKey=\"CQAAAA==\"/>");
        }

        if (e.FolderId is not null)
        {
            builder.Append("<t:FolderId Id=\"").Append(e.FolderId).Append("\" ChangeKey=\"AQAAAA==\"/>");
        }

        builder.Append("<t:ParentFolderId Id=\"").Append(e.ParentFolderId).Append("\" ChangeKey=\"AQAAAA==\"/>");
        if (e.UnreadCount is int unread)
        {
            builder.Append("<t:UnreadCount>").Append(unread.ToString(CultureInfo.InvariantCulture)).Append("</t:UnreadCount>");
        }

        builder.Append("</t:").Append(e.Kind).Append('>');
    }

    /// <summary>A SOAP fault as Exchange sends it (HTTP 500): faultcode a:Code, detail with ResponseCode and MessageXml.</summary>
    public static byte[] Fault(string code, TimeSpan? backOff = null)
    {
        var builder = new StringBuilder(512);
        builder.Append("<?xml version=\"1.0\" encoding=\"utf-8\"?><s:Envelope xmlns:s=\"").Append(Soap11).Append("\"><s:Body><s:Fault>")
            .Append("<faultcode xmlns:a=\"").Append(Types).Append("\">a:").Append(code).Append("</faultcode>")
            .Append("<faultstring xml:lang=\"en-US\">").Append(Escape(MessageText(code))).Append("</faultstring><detail>")
            .Append("<e:ResponseCode xmlns:e=\"").Append(Errors).Append("\">").Append(code).Append("</e:ResponseCode>")
            .Append("<e:Message xmlns:e=\"").Append(Errors).Append("\">").Append(Escape(MessageText(code))).Append("</e:Message>");
        if (backOff is TimeSpan wait)
        {
            builder.Append("<t:MessageXml xmlns:t=\"").Append(Types).Append("\"><t:Value Name=\"BackOffMilliseconds\">")
                .Append(((long)wait.TotalMilliseconds).ToString(CultureInfo.InvariantCulture)).Append("</t:Value></t:MessageXml>");
        }

        builder.Append("</detail></s:Fault></s:Body></s:Envelope>");
        return Encoding.UTF8.GetBytes(builder.ToString());
    }

    /// <summary>The SOAP Autodiscover GetUserSettings response (one UserResponse per mailbox).</summary>
    public static byte[] GetUserSettings(IEnumerable<FakeAutodiscoverUser> users)
    {
        var builder = new StringBuilder(1024);
        builder.Append("<?xml version=\"1.0\" encoding=\"utf-8\"?><s:Envelope xmlns:s=\"").Append(Soap11).Append("\" xmlns:a=\"http://www.w3.org/2005/08/addressing\">")
            .Append("<s:Header><a:Action s:mustUnderstand=\"1\">http://schemas.microsoft.com/exchange/2010/Autodiscover/Autodiscover/GetUserSettingsResponse</a:Action>")
            .Append("<h:ServerVersionInfo xmlns:h=\"").Append(AutodiscoverNs).Append("\" xmlns:i=\"http://www.w3.org/2001/XMLSchema-instance\"><h:MajorVersion>15</h:MajorVersion><h:MinorVersion>1</h:MinorVersion><h:MajorBuildNumber>2507</h:MajorBuildNumber><h:MinorBuildNumber>6</h:MinorBuildNumber><h:Version>Exchange2016</h:Version></h:ServerVersionInfo></s:Header>")
            .Append("<s:Body><GetUserSettingsResponseMessage xmlns=\"").Append(AutodiscoverNs).Append("\"><Response xmlns:i=\"http://www.w3.org/2001/XMLSchema-instance\">")
            .Append("<ErrorCode>NoError</ErrorCode><ErrorMessage/><UserResponses>");
        foreach (var (mailbox, settings, redirectCode, redirectTarget) in users)
        {
            builder.Append("<UserResponse>");
            if (redirectCode is not null)
            {
                builder.Append("<ErrorCode>").Append(redirectCode).Append("</ErrorCode><ErrorMessage>Redirection.</ErrorMessage><RedirectTarget>")
                    .Append(Escape(redirectTarget ?? string.Empty)).Append("</RedirectTarget><UserSettingErrors/><UserSettings/>");
            }
            else if (settings is null)
            {
                builder.Append("<ErrorCode>InvalidUser</ErrorCode><ErrorMessage>Invalid user: '").Append(Escape(mailbox)).Append("'</ErrorMessage><RedirectTarget i:nil=\"true\"/><UserSettingErrors/><UserSettings/>");
            }
            else
            {
                builder.Append("<ErrorCode>NoError</ErrorCode><ErrorMessage>No error.</ErrorMessage><RedirectTarget i:nil=\"true\"/><UserSettingErrors/><UserSettings>");
                foreach (var (name, value) in settings)
                {
                    builder.Append("<UserSetting i:type=\"StringSetting\"><Name>").Append(name).Append("</Name><Value>").Append(Escape(value)).Append("</Value></UserSetting>");
                }

                builder.Append("</UserSettings>");
            }

            builder.Append("</UserResponse>");
        }

        builder.Append("</UserResponses></Response></GetUserSettingsResponseMessage></s:Body></s:Envelope>");
        return Encoding.UTF8.GetBytes(builder.ToString());
    }

    /// <summary>The POX Autodiscover response (Outlook response schema 2006a) with an EXPR protocol.</summary>
    public static byte[] Pox(string address, string ewsUrl, string groupingInformation)
    {
        var xml = "<?xml version=\"1.0\" encoding=\"utf-8\"?><Autodiscover xmlns=\"http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006\">"
            + "<Response xmlns=\"http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a\"><User><AutoDiscoverSMTPAddress>" + Escape(address)
            + "</AutoDiscoverSMTPAddress></User><Account><AccountType>email</AccountType><Action>settings</Action>"
            + "<Protocol><Type>EXPR</Type><EwsUrl>" + Escape(ewsUrl) + "</EwsUrl><GroupingInformation>" + Escape(groupingInformation) + "</GroupingInformation></Protocol>"
            + "</Account></Response></Autodiscover>";
        return Encoding.UTF8.GetBytes(xml);
    }

    /// <summary>A POX redirect: <c>redirectAddr</c> (code <c>RedirectAddress</c>) or <c>redirectUrl</c> (code <c>RedirectUrl</c>).</summary>
    public static byte[] PoxRedirect(string code, string target)
    {
        var (action, element) = code == "RedirectAddress" ? ("redirectAddr", "RedirectAddr") : ("redirectUrl", "RedirectUrl");
        var xml = "<?xml version=\"1.0\" encoding=\"utf-8\"?><Autodiscover xmlns=\"http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006\">"
            + "<Response xmlns=\"http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a\"><Account><Action>" + action + "</Action><"
            + element + ">" + Escape(target) + "</" + element + "></Account></Response></Autodiscover>";
        return Encoding.UTF8.GetBytes(xml);
    }

    /// <summary>The POX error for an unknown address (Autodiscover answers 200 with an Error element).</summary>
    public static byte[] PoxError() => Encoding.UTF8.GetBytes(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><Autodiscover xmlns=\"http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006\"><Response>"
        + "<Error Time=\"00:00:00\" Id=\"1\"><ErrorCode>500</ErrorCode><Message>The email address can't be found.</Message><DebugData/></Error></Response></Autodiscover>");

    private static string MessageText(string code) => code switch
    {
        "ErrorServerBusy" => "The server cannot service this request right now. Try again later.",
        "ErrorProxyRequestNotAllowed" => "The request can't be proxied to the mailbox server the affinity cookie names.",
        "ErrorSubscriptionNotFound" => "The specified subscription was not found.",
        "ErrorExceededConnectionCount" => "You have exceeded the available concurrent connections for your account.  Try again once your other requests have completed.",
        "ErrorMissedNotificationEvents" => "Events were missed; the subscription is no longer valid.",
        "ErrorImpersonateUserDenied" => "The account does not have permission to impersonate the requested user.",
        "ErrorNonExistentMailbox" => "The SMTP address has no mailbox associated with it.",
        "ErrorMissingEmailAddress" => "When making a request as an account that does not have a mailbox, you must specify the mailbox primary SMTP address for any distinguished folder Ids.",
        "ErrorItemNotFound" => "The specified object was not found in the store.",
        "ErrorInvalidSubscriptionRequest" => "The subscription request is invalid.",
        "ErrorInvalidRequest" => "The request is invalid.",
        _ => "The request failed.",
    };
}
