using System.Globalization;
using System.Xml;

namespace Herald.Sources.Ews.Streaming;

/// <summary>The subject and sender of an item, for a preview push. Transient: never stored, never logged.</summary>
/// <param name="Subject">The subject, or null.</param>
/// <param name="FromName">The sender's display name, or null.</param>
/// <param name="FromAddress">The sender's address, or null.</param>
public sealed record EwsItemPreview(string? Subject, string? FromName, string? FromAddress);

/// <summary>What Autodiscover says about one mailbox.</summary>
/// <param name="EwsUrl">The EWS URL (ExternalEwsUrl, else InternalEwsUrl).</param>
/// <param name="GroupingInformation">The affinity grouping value (empty when the server gives none).</param>
public sealed record EwsUserSettings(Uri EwsUrl, string GroupingInformation);

/// <summary>One mailbox's Autodiscover answer: its settings, or where to ask again, or why not.</summary>
/// <param name="Settings">The settings, when the server gave them.</param>
/// <param name="RedirectAddress">Ask again for this address instead (SOAP <c>RedirectAddress</c>, POX <c>redirectAddr</c>).</param>
/// <param name="RedirectUrl">Ask this Autodiscover service instead (SOAP <c>RedirectUrl</c>, POX <c>redirectUrl</c>).</param>
/// <param name="ErrorCode">The server's error code when it gave neither (for example <c>InvalidUser</c>).</param>
public sealed record EwsAutodiscoverAnswer(EwsUserSettings? Settings, string? RedirectAddress = null, Uri? RedirectUrl = null, string? ErrorCode = null);

/// <summary>Readers of the non-streaming EWS and Autodiscover answers (forward-only, DTDs prohibited, by local name).</summary>
public static class EwsResponses
{
    private static readonly XmlReaderSettings s_settings = new()
    {
        DtdProcessing = DtdProcessing.Prohibit,
        XmlResolver = null,
        MaxCharactersFromEntities = 1,
        MaxCharactersInDocument = EwsNotificationParser.MaxBodyBytes,
        IgnoreComments = true,
        IgnoreWhitespace = true,
        IgnoreProcessingInstructions = true,
    };

    /// <summary>
    /// Throws the classified <see cref="EwsStreamingException"/> when <paramref name="body"/> is a fault or holds an
    /// error ResponseCode; otherwise returns.
    /// </summary>
    public static void ThrowOnError(ReadOnlyMemory<byte> body, int httpStatus)
    {
        if (!EwsNotificationParser.TryParseEnvelope(body, out var envelope, out _))
        {
            throw new EwsStreamingException(EwsRecovery.Reconnect, "InvalidResponse", httpStatus);
        }

        var code = envelope.ErrorCode ?? (envelope.IsFault ? FaultCodeName(envelope.FaultCode) : null);
        if (code is not null)
        {
            throw new EwsStreamingException(EwsStreamingException.Classify(code), code, httpStatus, envelope.BackOff);
        }
    }

    /// <summary>The SubscriptionId of a successful Subscribe response.</summary>
    public static string ReadSubscriptionId(ReadOnlyMemory<byte> body, int httpStatus)
    {
        ThrowOnError(body, httpStatus);
        var id = FirstText(body, "SubscriptionId");
        return string.IsNullOrEmpty(id) ? throw new EwsStreamingException(EwsRecovery.Reconnect, "InvalidResponse", httpStatus) : id;
    }

    /// <summary>The subject and sender of the first item of a GetItem response.</summary>
    public static EwsItemPreview ReadPreview(ReadOnlyMemory<byte> body, int httpStatus)
    {
        ThrowOnError(body, httpStatus);
        string? subject = null, name = null, address = null;
        Walk(body, (reader, path) =>
        {
            switch (reader.LocalName)
            {
                case "Subject" when subject is null:
                    subject = reader.ReadElementContentAsString();
                    return true;
                case "Name" when name is null && path.Contains("From"):
                    name = reader.ReadElementContentAsString();
                    return true;
                case "EmailAddress" when address is null && path.Contains("From"):
                    address = reader.ReadElementContentAsString();
                    return true;
                default:
                    return false;
            }
        });
        return new EwsItemPreview(subject, name, address);
    }

    /// <summary>The UnreadCount of the first folder of a GetFolder response, or null.</summary>
    public static int? ReadUnreadCount(ReadOnlyMemory<byte> body, int httpStatus)
    {
        ThrowOnError(body, httpStatus);
        var text = FirstText(body, "UnreadCount");
        return int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var n) ? n : null;
    }

    /// <summary>
    /// One answer per UserResponse of a SOAP <c>GetUserSettings</c> response, in request order, or null when the body is
    /// not such a response (garbage, a fault, another service).
    /// </summary>
    public static IReadOnlyList<EwsAutodiscoverAnswer>? ReadUserSettings(ReadOnlyMemory<byte> body)
    {
        var users = new List<EwsAutodiscoverAnswer>();
        string? error = null, name = null, external = null, internalUrl = null, grouping = null, redirect = null;
        var sawResponse = false;
        var inUser = false;
        try
        {
            Walk(body, (reader, path) =>
            {
                switch (reader.LocalName)
                {
                    case "GetUserSettingsResponseMessage":
                        sawResponse = true;
                        return false;
                    case "UserResponse":
                        Flush();
                        inUser = true;
                        return false;
                    case "ErrorCode" when inUser:
                        error = reader.ReadElementContentAsString().Trim();
                        return true;
                    case "RedirectTarget" when inUser:
                        redirect = reader.ReadElementContentAsString().Trim();
                        return true;
                    case "Name" when inUser:
                        name = reader.ReadElementContentAsString().Trim();
                        return true;
                    case "Value" when inUser:
                        var value = reader.ReadElementContentAsString().Trim();
                        switch (name)
                        {
                            case "ExternalEwsUrl": external = value; break;
                            case "InternalEwsUrl": internalUrl = value; break;
                            case "GroupingInformation": grouping = value; break;
                            default: break;
                        }

                        return true;
                    default:
                        return false;
                }
            });
        }
        catch (XmlException)
        {
            return null;
        }

        Flush();
        return sawResponse ? users : null;

        void Flush()
        {
            if (!inUser)
            {
                return;
            }

            users.Add(Answer(error, external ?? internalUrl, grouping, error == "RedirectAddress" ? redirect : null, error == "RedirectUrl" ? redirect : null));
            inUser = false;
            error = name = external = internalUrl = grouping = redirect = null;
        }
    }

    /// <summary>
    /// The answer of a POX Autodiscover response: the EXPR (else EXCH) protocol's EwsUrl and GroupingInformation, or a
    /// <c>redirectAddr</c>/<c>redirectUrl</c> action; null when the body is unusable or an error.
    /// </summary>
    public static EwsAutodiscoverAnswer? ReadPox(ReadOnlyMemory<byte> body)
    {
        string? type = null, ews = null, grouping = null, action = null, redirectAddress = null, redirectUrl = null;
        string? bestUrl = null, bestGrouping = null;
        var bestIsExpr = false;
        try
        {
            Walk(body, (reader, path) =>
            {
                switch (reader.LocalName)
                {
                    case "Protocol":
                        Take();
                        return false;
                    case "Type" when path.Contains("Protocol"):
                        type = reader.ReadElementContentAsString().Trim();
                        return true;
                    case "EwsUrl":
                        ews = reader.ReadElementContentAsString().Trim();
                        return true;
                    case "GroupingInformation":
                        grouping = reader.ReadElementContentAsString().Trim();
                        return true;
                    case "Action" when path.Contains("Account"):
                        action = reader.ReadElementContentAsString().Trim();
                        return true;
                    case "RedirectAddr" when path.Contains("Account"):
                        redirectAddress = reader.ReadElementContentAsString().Trim();
                        return true;
                    case "RedirectUrl" when path.Contains("Account"):
                        redirectUrl = reader.ReadElementContentAsString().Trim();
                        return true;
                    default:
                        return false;
                }
            });
        }
        catch (XmlException)
        {
            return null;
        }

        Take();
        if (string.Equals(action, "redirectAddr", StringComparison.OrdinalIgnoreCase))
        {
            return Answer("RedirectAddress", null, null, redirectAddress, null);
        }

        if (string.Equals(action, "redirectUrl", StringComparison.OrdinalIgnoreCase))
        {
            return Answer("RedirectUrl", null, null, null, redirectUrl);
        }

        return bestUrl is null ? null : Answer("NoError", bestUrl, bestGrouping, null, null);

        void Take()
        {
            if (ews is not null && (bestUrl is null || (type == "EXPR" && !bestIsExpr)))
            {
                bestUrl = ews;
                bestGrouping = grouping;
                bestIsExpr = type == "EXPR";
            }

            type = ews = grouping = null;
        }
    }

    private static EwsAutodiscoverAnswer Answer(string? error, string? ewsUrl, string? grouping, string? redirectAddress, string? redirectUrl)
    {
        if (error == "NoError" && Uri.TryCreate(ewsUrl, UriKind.Absolute, out var uri))
        {
            return new EwsAutodiscoverAnswer(new EwsUserSettings(uri, grouping ?? string.Empty));
        }

        if (!string.IsNullOrEmpty(redirectAddress) && redirectAddress.Length <= 320 && redirectAddress.IndexOf('@', StringComparison.Ordinal) > 0)
        {
            return new EwsAutodiscoverAnswer(null, RedirectAddress: redirectAddress);
        }

        if (Uri.TryCreate(redirectUrl, UriKind.Absolute, out var target))
        {
            return new EwsAutodiscoverAnswer(null, RedirectUrl: target);
        }

        return new EwsAutodiscoverAnswer(null, ErrorCode: string.IsNullOrEmpty(error) || error == "NoError" ? "NoSettings" : error);
    }

    private static string? FirstText(ReadOnlyMemory<byte> body, string localName)
    {
        string? found = null;
        Walk(body, (reader, _) =>
        {
            if (found is null && reader.LocalName == localName)
            {
                found = reader.ReadElementContentAsString().Trim();
                return true;
            }

            return false;
        });
        return found;
    }

    private static string? FaultCodeName(string? faultCode)
    {
        if (string.IsNullOrEmpty(faultCode))
        {
            return "Fault";
        }

        var colon = faultCode.LastIndexOf(':');
        return colon >= 0 ? faultCode[(colon + 1)..] : faultCode;
    }

    /// <summary>
    /// Visits every element with the stack of its ancestors' local names; the visitor returns true when it consumed
    /// the element (the reader then already stands on the next node).
    /// </summary>
    private static void Walk(ReadOnlyMemory<byte> body, Func<XmlReader, List<string>, bool> visit)
    {
        using var stream = new ReusableMemoryStream();
        stream.Reset(body);
        using var reader = XmlReader.Create(stream, s_settings);
        var path = new List<string>(16);
        var positioned = false;
        while (positioned || reader.Read())
        {
            positioned = false;
            if (reader.NodeType == XmlNodeType.EndElement)
            {
                if (path.Count > 0)
                {
                    path.RemoveAt(path.Count - 1);
                }

                continue;
            }

            if (reader.NodeType != XmlNodeType.Element)
            {
                continue;
            }

            if (path.Count >= EwsNotificationParser.MaxDepth)
            {
                throw new XmlException("Too deep.");
            }

            var empty = reader.IsEmptyElement;
            var name = reader.LocalName;
            if (visit(reader, path))
            {
                positioned = true;
                continue;
            }

            if (!empty)
            {
                path.Add(name);
            }
        }
    }
}
