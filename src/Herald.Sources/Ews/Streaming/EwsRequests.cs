using System.Globalization;
using System.Security;
using System.Text;

namespace Herald.Sources.Ews.Streaming;

/// <summary>The SOAP 1.1 request bodies the streaming connector sends (UTF-8), with every value escaped.</summary>
public static class EwsRequests
{
    /// <summary>The folders a streaming subscription watches.</summary>
    public static readonly IReadOnlyList<string> Folders = ["inbox", "calendar"];

    /// <summary>The event types a streaming subscription asks for (EWS names).</summary>
    public static readonly IReadOnlyList<string> EventTypes = ["NewMailEvent", "CreatedEvent", "ModifiedEvent", "MovedEvent", "DeletedEvent"];

    private const string Open = "<?xml version=\"1.0\" encoding=\"utf-8\"?><soap:Envelope xmlns:soap=\"" + EwsSoap.Soap11Namespace
        + "\" xmlns:t=\"" + EwsSoap.TypesNamespace + "\" xmlns:m=\"" + EwsSoap.MessagesNamespace + "\"><soap:Header>";

    /// <summary>Subscribe with a StreamingSubscriptionRequest on inbox and calendar, impersonating <paramref name="mailbox"/>.</summary>
    public static byte[] Subscribe(string version, string mailbox)
    {
        var builder = Start(version, mailbox);
        builder.Append("<m:Subscribe><m:StreamingSubscriptionRequest><t:FolderIds>");
        foreach (var folder in Folders)
        {
            builder.Append("<t:DistinguishedFolderId Id=\"").Append(folder).Append("\"/>");
        }

        builder.Append("</t:FolderIds><t:EventTypes>");
        foreach (var type in EventTypes)
        {
            builder.Append("<t:EventType>").Append(type).Append("</t:EventType>");
        }

        builder.Append("</t:EventTypes></m:StreamingSubscriptionRequest></m:Subscribe>");
        return End(builder);
    }

    /// <summary>GetStreamingEvents for up to 200 subscriptions; impersonating <paramref name="mailbox"/> when given.</summary>
    public static byte[] GetStreamingEvents(string version, string? mailbox, IEnumerable<string> subscriptionIds, int timeoutMinutes)
    {
        ArgumentNullException.ThrowIfNull(subscriptionIds);
        var builder = Start(version, mailbox);
        builder.Append("<m:GetStreamingEvents><m:SubscriptionIds>");
        foreach (var id in subscriptionIds)
        {
            builder.Append("<t:SubscriptionId>").Append(Escape(id)).Append("</t:SubscriptionId>");
        }

        builder.Append("</m:SubscriptionIds><m:ConnectionTimeout>").Append(timeoutMinutes.ToString(CultureInfo.InvariantCulture))
            .Append("</m:ConnectionTimeout></m:GetStreamingEvents>");
        return End(builder);
    }

    /// <summary>Unsubscribe one subscription.</summary>
    public static byte[] Unsubscribe(string version, string mailbox, string subscriptionId)
    {
        var builder = Start(version, mailbox);
        builder.Append("<m:Unsubscribe><m:SubscriptionId>").Append(Escape(subscriptionId)).Append("</m:SubscriptionId></m:Unsubscribe>");
        return End(builder);
    }

    /// <summary>GetItem for the subject and sender only.</summary>
    public static byte[] GetItemPreview(string version, string mailbox, string itemId)
    {
        var builder = Start(version, mailbox);
        builder.Append("<m:GetItem><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape><t:AdditionalProperties>")
            .Append("<t:FieldURI FieldURI=\"item:Subject\"/><t:FieldURI FieldURI=\"message:From\"/></t:AdditionalProperties></m:ItemShape>")
            .Append("<m:ItemIds><t:ItemId Id=\"").Append(Escape(itemId)).Append("\"/></m:ItemIds></m:GetItem>");
        return End(builder);
    }

    /// <summary>GetFolder for a distinguished folder's unread count.</summary>
    public static byte[] GetFolderUnread(string version, string mailbox, string distinguishedFolder)
    {
        var builder = Start(version, mailbox);
        builder.Append("<m:GetFolder><m:FolderShape><t:BaseShape>IdOnly</t:BaseShape><t:AdditionalProperties>")
            .Append("<t:FieldURI FieldURI=\"folder:UnreadCount\"/></t:AdditionalProperties></m:FolderShape>")
            .Append("<m:FolderIds><t:DistinguishedFolderId Id=\"").Append(Escape(distinguishedFolder)).Append("\"/></m:FolderIds></m:GetFolder>");
        return End(builder);
    }

    /// <summary>SOAP Autodiscover GetUserSettings for ExternalEwsUrl and GroupingInformation of up to 100 mailboxes.</summary>
    public static byte[] GetUserSettings(Uri autodiscoverUrl, IEnumerable<string> mailboxes)
    {
        ArgumentNullException.ThrowIfNull(autodiscoverUrl);
        ArgumentNullException.ThrowIfNull(mailboxes);
        var builder = new StringBuilder(512);
        builder.Append("<?xml version=\"1.0\" encoding=\"utf-8\"?><soap:Envelope xmlns:soap=\"").Append(EwsSoap.Soap11Namespace)
            .Append("\" xmlns:a=\"").Append(AutodiscoverNamespace).Append("\" xmlns:wsa=\"http://www.w3.org/2005/08/addressing\"><soap:Header>")
            .Append("<a:RequestedServerVersion>Exchange2013</a:RequestedServerVersion><wsa:Action>").Append(GetUserSettingsAction)
            .Append("</wsa:Action><wsa:To>").Append(Escape(autodiscoverUrl.AbsoluteUri)).Append("</wsa:To></soap:Header><soap:Body>")
            .Append("<a:GetUserSettingsRequestMessage><a:Request><a:Users>");
        foreach (var mailbox in mailboxes)
        {
            builder.Append("<a:User><a:Mailbox>").Append(Escape(mailbox)).Append("</a:Mailbox></a:User>");
        }

        builder.Append("</a:Users><a:RequestedSettings><a:Setting>ExternalEwsUrl</a:Setting><a:Setting>InternalEwsUrl</a:Setting>")
            .Append("<a:Setting>GroupingInformation</a:Setting></a:RequestedSettings></a:Request></a:GetUserSettingsRequestMessage></soap:Body></soap:Envelope>");
        return Encoding.UTF8.GetBytes(builder.ToString());
    }

    /// <summary>A POX Autodiscover request (Outlook request schema 2006, response schema 2006a).</summary>
    public static byte[] Pox(string mailbox) => Encoding.UTF8.GetBytes(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><Autodiscover xmlns=\"http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006\"><Request><EMailAddress>"
        + Escape(mailbox) + "</EMailAddress><AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema></Request></Autodiscover>");

    /// <summary>The SOAP Autodiscover namespace.</summary>
    public const string AutodiscoverNamespace = "http://schemas.microsoft.com/exchange/2010/Autodiscover";

    /// <summary>The SOAPAction (and WS-Addressing Action) of GetUserSettings.</summary>
    public const string GetUserSettingsAction = "http://schemas.microsoft.com/exchange/2010/Autodiscover/Autodiscover/GetUserSettings";

    /// <summary>The SOAPAction of an EWS operation.</summary>
    public static string Action(string operation) => "http://schemas.microsoft.com/exchange/services/2006/messages/" + operation;

    private static StringBuilder Start(string version, string? mailbox)
    {
        var builder = new StringBuilder(640);
        builder.Append(Open).Append("<t:RequestServerVersion Version=\"").Append(Escape(version)).Append("\"/>");
        if (mailbox is not null)
        {
            builder.Append("<t:ExchangeImpersonation><t:ConnectingSID><t:PrimarySmtpAddress>").Append(Escape(mailbox))
                .Append("</t:PrimarySmtpAddress></t:ConnectingSID></t:ExchangeImpersonation>");
        }

        return builder.Append("</soap:Header><soap:Body>");
    }

    private static byte[] End(StringBuilder builder) => Encoding.UTF8.GetBytes(builder.Append("</soap:Body></soap:Envelope>").ToString());

    private static string Escape(string value) => SecurityElement.Escape(value) ?? string.Empty;
}
