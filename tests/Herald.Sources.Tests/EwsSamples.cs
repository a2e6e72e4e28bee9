using System.Text;
using Herald.Sources.Ews;

namespace Herald.Sources.Tests;

/// <summary>Hand-written EWS documents shaped like what Exchange sends (ids shortened).</summary>
internal static class EwsSamples
{
    public const string Inbox = "AQMkADkzNjJjInbox";
    public const string Root = "AQMkADkzNjJjRoot";
    public const string Drafts = "AQMkADkzNjJjDrafts";
    public const string Item1 = "AAMkADkzNjJjItem1";
    public const string Item2 = "AAMkADkzNjJjItem2";

    public static string Envelope(string bodyContent, SoapVersion version = SoapVersion.Soap11) =>
        $"""
        <?xml version="1.0" encoding="utf-8"?>
        <s:Envelope xmlns:s="{EwsSoap.EnvelopeNamespace(version)}">
          <s:Header>
            <t:RequestServerVersion xmlns:t="{EwsSoap.TypesNamespace}" Version="Exchange2016"/>
          </s:Header>
          <s:Body>
            {bodyContent}
          </s:Body>
        </s:Envelope>
        """;

    public static string SendNotification(params string[] notifications) =>
        $"""
        <m:SendNotification xmlns:t="{EwsSoap.TypesNamespace}" xmlns:m="{EwsSoap.MessagesNamespace}">
          <m:ResponseMessages>
            {string.Concat(notifications.Select(ResponseMessage))}
          </m:ResponseMessages>
        </m:SendNotification>
        """;

    private static string ResponseMessage(string notification) =>
        $"""
        <m:SendNotificationResponseMessage ResponseClass="Success">
          <m:ResponseCode>NoError</m:ResponseCode>
          {notification}
        </m:SendNotificationResponseMessage>
        """;

    public static string Notification(string subscriptionId, string previousWatermark, bool moreEvents, params string[] events) =>
        $"""
        <m:Notification>
          <t:SubscriptionId>{subscriptionId}</t:SubscriptionId>
          <t:PreviousWatermark>{previousWatermark}</t:PreviousWatermark>
          <t:MoreEvents>{(moreEvents ? "true" : "false")}</t:MoreEvents>
          {string.Concat(events)}
        </m:Notification>
        """;

    public static string Status(string watermark) => $"<t:StatusEvent><t:Watermark>{watermark}</t:Watermark></t:StatusEvent>";

    public static string ItemEvent(string element, string watermark, string itemId, string parent, string time = "2024-05-06T07:08:09Z") =>
        $"""
        <t:{element}>
          <t:Watermark>{watermark}</t:Watermark>
          <t:TimeStamp>{time}</t:TimeStamp>
          <t:ItemId Id="{itemId}" ChangeKey="CQAAAA=="/>
          <t:ParentFolderId Id="{parent}" ChangeKey="AQAAAA=="/>
        </t:{element}>
        """;

    public static string FolderModified(string watermark, string folderId, string parent, int? unread, string time = "2024-05-06T07:08:09Z") =>
        $"""
        <t:ModifiedEvent>
          <t:Watermark>{watermark}</t:Watermark>
          <t:TimeStamp>{time}</t:TimeStamp>
          <t:FolderId Id="{folderId}" ChangeKey="AQAAAA=="/>
          <t:ParentFolderId Id="{parent}" ChangeKey="AQAAAA=="/>
          {(unread is int n ? $"<t:UnreadCount>{n}</t:UnreadCount>" : "")}
        </t:ModifiedEvent>
        """;

    public static string MovedCopied(string element, string watermark, string idElement, string id, string parent, string oldIdElement, string oldId, string oldParent) =>
        $"""
        <t:{element}>
          <t:Watermark>{watermark}</t:Watermark>
          <t:TimeStamp>2024-05-06T07:08:09Z</t:TimeStamp>
          <t:{idElement} Id="{id}" ChangeKey="CQAAAA=="/>
          <t:ParentFolderId Id="{parent}"/>
          <t:{oldIdElement} Id="{oldId}" ChangeKey="CQAAAA=="/>
          <t:OldParentFolderId Id="{oldParent}"/>
        </t:{element}>
        """;

    /// <summary>A new message as Exchange reports it: Created, NewMail, then the inbox's ModifiedEvent with its unread count.</summary>
    public static string NewMailRequest(int unread = 1, SoapVersion version = SoapVersion.Soap11) =>
        Envelope(
            SendNotification(Notification(
                "SUB1=",
                "WM0=",
                false,
                ItemEvent("CreatedEvent", "WM1=", Item1, Inbox),
                ItemEvent("NewMailEvent", "WM2=", Item1, Inbox),
                FolderModified("WM3=", Inbox, Root, unread))),
            version);

    public static ReadOnlyMemory<byte> Utf8(string xml) => Encoding.UTF8.GetBytes(xml);
}
