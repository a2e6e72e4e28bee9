using System.Text;
using Herald.Core.Ports;

namespace Herald.Sources.Ews;

/// <summary>The <c>SubscriptionStatus</c> of a <c>SendNotificationResult</c>.</summary>
public enum EwsSubscriptionStatus
{
    /// <summary><c>OK</c>: keep sending.</summary>
    Ok = 0,

    /// <summary><c>Unsubscribe</c>: Exchange ends the subscription.</summary>
    Unsubscribe = 1,
}

/// <summary>An HTTP answer to an EWS callback: status code, Content-Type and body bytes to write as they are.</summary>
/// <param name="StatusCode">The HTTP status code.</param>
/// <param name="ContentType">The Content-Type header value.</param>
/// <param name="Body">The UTF-8 body.</param>
public readonly record struct EwsSoapResponse(int StatusCode, string ContentType, ReadOnlyMemory<byte> Body);

/// <summary>
/// The answers Herald sends to Exchange: <c>SendNotificationResult</c> (precomputed, no allocation per request) and
/// SOAP faults for bodies it cannot accept.
/// </summary>
public static class EwsSoapResponses
{
    private const int MaxReasonLength = 256;

    private static readonly EwsSoapResponse s_ok11 = Result(SoapVersion.Soap11, "OK");
    private static readonly EwsSoapResponse s_unsubscribe11 = Result(SoapVersion.Soap11, "Unsubscribe");
    private static readonly EwsSoapResponse s_ok12 = Result(SoapVersion.Soap12, "OK");
    private static readonly EwsSoapResponse s_unsubscribe12 = Result(SoapVersion.Soap12, "Unsubscribe");

    private static readonly EwsSoapResponse[] s_faults11 = BuildFaults(SoapVersion.Soap11);
    private static readonly EwsSoapResponse[] s_faults12 = BuildFaults(SoapVersion.Soap12);

    /// <summary>
    /// <c>&lt;m:SendNotificationResult&gt;&lt;m:SubscriptionStatus&gt;OK|Unsubscribe&lt;/m:SubscriptionStatus&gt;&lt;/m:SendNotificationResult&gt;</c>
    /// in an envelope of <paramref name="version"/>, HTTP 200. The body is shared and must not be modified.
    /// </summary>
    public static EwsSoapResponse SendNotificationResult(SoapVersion version, EwsSubscriptionStatus status) =>
        (version, status) switch
        {
            (SoapVersion.Soap12, EwsSubscriptionStatus.Unsubscribe) => s_unsubscribe12,
            (SoapVersion.Soap12, _) => s_ok12,
            (_, EwsSubscriptionStatus.Unsubscribe) => s_unsubscribe11,
            _ => s_ok11,
        };

    /// <summary>
    /// The result for an ingest verdict: <see cref="IngestVerdict.Accepted"/> answers <c>OK</c>,
    /// <see cref="IngestVerdict.Unsubscribe"/> answers <c>Unsubscribe</c>. A pending verdict has no answer yet.
    /// </summary>
    public static EwsSoapResponse ForVerdict(SoapVersion version, IngestVerdict verdict) => verdict switch
    {
        IngestVerdict.Accepted => SendNotificationResult(version, EwsSubscriptionStatus.Ok),
        IngestVerdict.Unsubscribe => SendNotificationResult(version, EwsSubscriptionStatus.Unsubscribe),
        _ => throw new ArgumentOutOfRangeException(nameof(verdict), verdict, "Only a decided verdict can be answered."),
    };

    /// <summary>
    /// The SOAP fault for a rejected body (precomputed per error code): <c>soap:Client</c> with HTTP 500 in SOAP 1.1
    /// (its HTTP binding answers faults with 500), <c>Sender</c> with HTTP 400 in SOAP 1.2. The reason is the error's
    /// fixed message.
    /// </summary>
    public static EwsSoapResponse Fault(EwsParseError error)
    {
        var table = error.SoapVersion == SoapVersion.Soap12 ? s_faults12 : s_faults11;
        var index = (int)error.Code;
        return (uint)index < (uint)table.Length ? table[index] : Fault(error.SoapVersion, error.Message);
    }

    /// <summary>
    /// A client fault with <paramref name="reason"/> (escaped, control characters replaced, cut at 256 characters).
    /// Pass only text you wrote: never anything taken from the request.
    /// </summary>
    public static EwsSoapResponse Fault(SoapVersion version, string reason)
    {
        ArgumentNullException.ThrowIfNull(reason);
        var text = Escape(reason);
        var xml = version == SoapVersion.Soap12
            ? "<?xml version=\"1.0\" encoding=\"utf-8\"?>"
              + "<s:Envelope xmlns:s=\"" + EwsSoap.Soap12Namespace + "\"><s:Body><s:Fault>"
              + "<s:Code><s:Value>s:Sender</s:Value></s:Code>"
              + "<s:Reason><s:Text xml:lang=\"en\">" + text + "</s:Text></s:Reason>"
              + "</s:Fault></s:Body></s:Envelope>"
            : "<?xml version=\"1.0\" encoding=\"utf-8\"?>"
              + "<s:Envelope xmlns:s=\"" + EwsSoap.Soap11Namespace + "\"><s:Body><s:Fault>"
              + "<faultcode>s:Client</faultcode>"
              + "<faultstring>" + text + "</faultstring>"
              + "</s:Fault></s:Body></s:Envelope>";
        return new EwsSoapResponse(
            version == SoapVersion.Soap12 ? 400 : 500,
            EwsSoap.ContentType(version),
            Encoding.UTF8.GetBytes(xml));
    }

    private static EwsSoapResponse Result(SoapVersion version, string status)
    {
        var xml = "<?xml version=\"1.0\" encoding=\"utf-8\"?>"
            + "<s:Envelope xmlns:s=\"" + EwsSoap.EnvelopeNamespace(version) + "\">"
            + "<s:Body><m:SendNotificationResult xmlns:m=\"" + EwsSoap.MessagesNamespace + "\">"
            + "<m:SubscriptionStatus>" + status + "</m:SubscriptionStatus>"
            + "</m:SendNotificationResult></s:Body></s:Envelope>";
        return new EwsSoapResponse(200, EwsSoap.ContentType(version), Encoding.UTF8.GetBytes(xml));
    }

    private static EwsSoapResponse[] BuildFaults(SoapVersion version)
    {
        var codes = Enum.GetValues<EwsParseErrorCode>();
        var table = new EwsSoapResponse[(int)codes.Max() + 1];
        for (var i = 0; i < table.Length; i++)
        {
            table[i] = Fault(version, EwsParseError.MessageOf((EwsParseErrorCode)i));
        }

        return table;
    }

    private static string Escape(string reason)
    {
        var builder = new StringBuilder(Math.Min(reason.Length, MaxReasonLength) + 16);
        for (var i = 0; i < reason.Length && i < MaxReasonLength; i++)
        {
            var c = reason[i];
            switch (c)
            {
                case '&': builder.Append("&amp;"); break;
                case '<': builder.Append("&lt;"); break;
                case '>': builder.Append("&gt;"); break;
                case '\t' or '\n' or '\r': builder.Append(' '); break;
                default:
                    // Control characters and surrogates (which a cut could split) are not worth the risk in a fault.
                    builder.Append(c < ' ' || char.IsSurrogate(c) || c is '\uFFFE' or '\uFFFF' ? '?' : c);
                    break;
            }
        }

        return builder.ToString();
    }
}
