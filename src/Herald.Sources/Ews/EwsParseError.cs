namespace Herald.Sources.Ews;

/// <summary>Why an EWS body was rejected. Each code has one fixed, safe message (see <see cref="EwsParseError.Message"/>).</summary>
public enum EwsParseErrorCode
{
    /// <summary>No error.</summary>
    None = 0,

    /// <summary>The body is empty.</summary>
    EmptyBody = 1,

    /// <summary>The body is larger than <see cref="EwsNotificationParser.MaxBodyBytes"/>.</summary>
    TooLarge = 2,

    /// <summary>Not well-formed XML: truncated, bad encoding, a DTD (DTDs are prohibited), undeclared entities….</summary>
    Malformed = 3,

    /// <summary>Elements nested deeper than <see cref="EwsNotificationParser.MaxDepth"/>.</summary>
    TooDeep = 4,

    /// <summary>The root is not a SOAP 1.1 or 1.2 <c>Envelope</c>, or the envelope has no <c>Body</c>.</summary>
    NotSoapEnvelope = 5,

    /// <summary>A SOAP envelope whose body is not an EWS <c>SendNotification</c>.</summary>
    NotSendNotification = 6,

    /// <summary>EWS content that breaks the schema in a way Herald cannot accept (no SubscriptionId, a bad TimeStamp, …).</summary>
    InvalidContent = 7,
}

/// <summary>
/// A rejected EWS body. The message is fixed per code and never contains any part of the body, so it is safe to
/// log and to return in a SOAP fault.
/// </summary>
/// <param name="Code">What was wrong.</param>
/// <param name="SoapVersion">The version to answer in: the envelope's when it was recognised, else the Content-Type's.</param>
/// <param name="LineNumber">Where the problem was found (1-based), or 0 when unknown.</param>
/// <param name="LinePosition">The position in that line, or 0 when unknown.</param>
public readonly record struct EwsParseError(EwsParseErrorCode Code, SoapVersion SoapVersion, int LineNumber = 0, int LinePosition = 0)
{
    /// <summary>A short, constant description of <see cref="Code"/>.</summary>
    public string Message => MessageOf(Code);

    /// <summary>The constant description of <paramref name="code"/>.</summary>
    public static string MessageOf(EwsParseErrorCode code) => code switch
    {
        EwsParseErrorCode.None => "No error.",
        EwsParseErrorCode.EmptyBody => "The request body is empty.",
        EwsParseErrorCode.TooLarge => "The request body is too large.",
        EwsParseErrorCode.Malformed => "The request body is not well-formed XML.",
        EwsParseErrorCode.TooDeep => "The request body is nested too deeply.",
        EwsParseErrorCode.NotSoapEnvelope => "The request body is not a SOAP 1.1 or 1.2 envelope with a Body.",
        EwsParseErrorCode.NotSendNotification => "The SOAP body is not an EWS SendNotification request.",
        EwsParseErrorCode.InvalidContent => "The EWS notification content is invalid.",
        _ => "The request body is invalid.",
    };
}

/// <summary>Thrown inside the parser to abandon a document; callers only ever see <see cref="EwsParseError"/>.</summary>
internal sealed class EwsFormatException(EwsParseErrorCode code) : Exception(EwsParseError.MessageOf(code))
{
    public EwsParseErrorCode Code { get; } = code;
}
