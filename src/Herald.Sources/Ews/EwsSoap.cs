namespace Herald.Sources.Ews;

/// <summary>The SOAP version of an envelope; Herald answers in the version it was asked in.</summary>
public enum SoapVersion
{
    /// <summary>SOAP 1.1 (<c>http://schemas.xmlsoap.org/soap/envelope/</c>, <c>text/xml</c>): what Exchange sends.</summary>
    Soap11 = 1,

    /// <summary>SOAP 1.2 (<c>http://www.w3.org/2003/05/soap-envelope</c>, <c>application/soap+xml</c>).</summary>
    Soap12 = 2,
}

/// <summary>Namespaces, media types and small helpers of EWS over SOAP.</summary>
public static class EwsSoap
{
    /// <summary>The SOAP 1.1 envelope namespace.</summary>
    public const string Soap11Namespace = "http://schemas.xmlsoap.org/soap/envelope/";

    /// <summary>The SOAP 1.2 envelope namespace.</summary>
    public const string Soap12Namespace = "http://www.w3.org/2003/05/soap-envelope";

    /// <summary>The EWS messages namespace (prefix <c>m</c>).</summary>
    public const string MessagesNamespace = "http://schemas.microsoft.com/exchange/services/2006/messages";

    /// <summary>The EWS types namespace (prefix <c>t</c>).</summary>
    public const string TypesNamespace = "http://schemas.microsoft.com/exchange/services/2006/types";

    /// <summary>The EWS errors namespace used in fault details.</summary>
    public const string ErrorsNamespace = "http://schemas.microsoft.com/exchange/services/2006/errors";

    /// <summary>The SOAPAction of the notification service's SendNotification operation (notification-service.wsdl).</summary>
    public const string SendNotificationAction = "http://schemas.microsoft.com/exchange/services/2006/messages/SendNotification";

    /// <summary>Content-Type of a SOAP 1.1 message.</summary>
    public const string Soap11ContentType = "text/xml; charset=utf-8";

    /// <summary>Content-Type of a SOAP 1.2 message.</summary>
    public const string Soap12ContentType = "application/soap+xml; charset=utf-8";

    /// <summary>The Content-Type Herald answers with for <paramref name="version"/>.</summary>
    public static string ContentType(SoapVersion version) => version == SoapVersion.Soap12 ? Soap12ContentType : Soap11ContentType;

    /// <summary>The envelope namespace of <paramref name="version"/>.</summary>
    public static string EnvelopeNamespace(SoapVersion version) => version == SoapVersion.Soap12 ? Soap12Namespace : Soap11Namespace;

    /// <summary>
    /// The SOAP version a request's Content-Type announces, for answering a body that cannot be parsed:
    /// <c>application/soap+xml</c> is SOAP 1.2; anything else (including <c>text/xml</c>, a missing or garbled header) is
    /// SOAP 1.1, which is what Exchange sends.
    /// </summary>
    public static SoapVersion VersionFromContentType(string? contentType)
    {
        if (string.IsNullOrEmpty(contentType))
        {
            return SoapVersion.Soap11;
        }

        var media = contentType.AsSpan();
        var semicolon = media.IndexOf(';');
        if (semicolon >= 0)
        {
            media = media[..semicolon];
        }

        return media.Trim().Equals("application/soap+xml", StringComparison.OrdinalIgnoreCase) ? SoapVersion.Soap12 : SoapVersion.Soap11;
    }
}
