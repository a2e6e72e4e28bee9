using Microsoft.Extensions.Logging;

namespace Herald.Sources.Ews;

/// <summary>
/// Log events of the EWS sources (event ids 3100–3199). They carry error codes, positions and sizes only: never a
/// body, a subscription id, an item id or an address.
/// </summary>
public static partial class EwsLog
{
    /// <summary>An EWS callback body was rejected and answered with a SOAP fault.</summary>
    public static void CallbackRejected(ILogger logger, EwsParseError error, int bodyLength) =>
        Rejected(logger, error.Code, error.SoapVersion, error.LineNumber, error.LinePosition, bodyLength);

    /// <summary>A callback was answered <c>Unsubscribe</c> (unknown key, deleted or inactive registration).</summary>
    [LoggerMessage(EventId = 3102, Level = LogLevel.Information, Message = "EWS callback answered Unsubscribe ({Notifications} notifications)")]
    public static partial void AnsweredUnsubscribe(ILogger logger, int notifications);

    [LoggerMessage(EventId = 3101, Level = LogLevel.Warning, Message = "EWS callback rejected: {Code} ({SoapVersion}, line {Line}, position {Position}, {Length} bytes)")]
    private static partial void Rejected(ILogger logger, EwsParseErrorCode code, SoapVersion soapVersion, int line, int position, int length);
}
