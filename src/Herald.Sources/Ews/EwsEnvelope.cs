using Herald.Core.Events;

namespace Herald.Sources.Ews;

/// <summary>A parsed EWS push callback (<c>SendNotification</c>): what Herald stores and the version to answer in.</summary>
public sealed class EwsSendNotification
{
    internal EwsSendNotification(SoapVersion soapVersion, IReadOnlyList<MailboxNotification> notifications)
    {
        SoapVersion = soapVersion;
        Notifications = notifications;
    }

    /// <summary>The request's SOAP version; answer with the same.</summary>
    public SoapVersion SoapVersion { get; }

    /// <summary>One entry per <c>Notification</c> element, in document order; never empty.</summary>
    public IReadOnlyList<MailboxNotification> Notifications { get; }
}

/// <summary>The <c>ConnectionStatus</c> of a GetStreamingEvents response.</summary>
public enum EwsConnectionStatus
{
    /// <summary><c>OK</c>: a heartbeat; the connection stays open.</summary>
    Ok = 1,

    /// <summary><c>Closed</c>: the server ends the connection; open a new one.</summary>
    Closed = 2,
}

/// <summary>
/// Whatever Herald understands of any EWS SOAP envelope: the notifications it carries (SendNotification,
/// GetStreamingEvents, GetEvents responses), and for streaming the connection status, unknown subscription ids and
/// errors.
/// </summary>
public sealed class EwsEnvelope
{
    internal EwsEnvelope(
        SoapVersion soapVersion,
        string? operation,
        bool isFault,
        IReadOnlyList<MailboxNotification> notifications,
        EwsConnectionStatus? connectionStatus,
        IReadOnlyList<string> errorSubscriptionIds,
        string? errorCode,
        string? faultCode,
        TimeSpan? backOff)
    {
        SoapVersion = soapVersion;
        Operation = operation;
        IsFault = isFault;
        Notifications = notifications;
        ConnectionStatus = connectionStatus;
        ErrorSubscriptionIds = errorSubscriptionIds;
        ErrorCode = errorCode;
        FaultCode = faultCode;
        BackOff = backOff;
    }

    /// <summary>The envelope's SOAP version.</summary>
    public SoapVersion SoapVersion { get; }

    /// <summary>
    /// The local name of the body's first element (<c>SendNotification</c>, <c>GetStreamingEventsResponse</c>,
    /// <c>Fault</c>, …), or null for an empty body.
    /// </summary>
    public string? Operation { get; }

    /// <summary>True when the body is a SOAP <c>Fault</c>.</summary>
    public bool IsFault { get; }

    /// <summary>True when the body is an EWS <c>SendNotification</c>.</summary>
    public bool IsSendNotification => Operation == "SendNotification";

    /// <summary>Every <c>Notification</c> element in the body, in document order.</summary>
    public IReadOnlyList<MailboxNotification> Notifications { get; }

    /// <summary>The <c>ConnectionStatus</c> of a streaming response (<c>Closed</c> wins over <c>OK</c>), or null.</summary>
    public EwsConnectionStatus? ConnectionStatus { get; }

    /// <summary>Subscription ids listed under <c>ErrorSubscriptionIds</c>: the server does not know them.</summary>
    public IReadOnlyList<string> ErrorSubscriptionIds { get; }

    /// <summary>
    /// The first EWS <c>ResponseCode</c> other than <c>NoError</c> (response messages and fault details), e.g.
    /// <c>ErrorInvalidSubscription</c> or <c>ErrorServerBusy</c>; null when all succeeded.
    /// </summary>
    public string? ErrorCode { get; }

    /// <summary>The fault code as written (<c>faultcode</c> in SOAP 1.1, <c>Code/Value</c> in 1.2), for faults.</summary>
    public string? FaultCode { get; }

    /// <summary>The <c>BackOffMilliseconds</c> an <c>ErrorServerBusy</c> asks for, when present.</summary>
    public TimeSpan? BackOff { get; }
}
