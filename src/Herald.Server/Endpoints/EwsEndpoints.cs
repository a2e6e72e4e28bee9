using Herald.Core.Pipeline;
using Herald.Core.Ports;
using Herald.Core.Security;
using Herald.Sources.Ews;

namespace Herald.Server.Endpoints;

/// <summary>
/// <c>POST /ews/notify/{key}</c>: Exchange's push notifications. Exchange sends no Authorization header, so
/// the unguessable key in the URL is the credential. The answer is <c>OK</c> only after the events'
/// notification is committed; an unknown, deleted or inactive key is answered <c>Unsubscribe</c>; when the
/// store cannot take the events the answer is 503, so Exchange retries.
/// </summary>
internal static partial class EwsEndpoints
{
    public static void Map(IEndpointRouteBuilder app)
        => app.MapPost("/ews/notify/{key}", NotifyAsync)
            .WithTags("Mail sources")
            .WithSummary("EWS push notification callback (SendNotification, SOAP 1.1 and 1.2).");

    private static async Task NotifyAsync(HttpContext http, string key, IngestService ingest, TimeProvider time, ILoggerFactory loggers)
    {
        var request = http.Request;
        var version = EwsSoap.VersionFromContentType(request.ContentType);
        var logger = loggers.CreateLogger("Herald.Sources.Ews.Push");

        if (!IsSoapContentType(request.ContentType))
        {
            await WriteAsync(http, EwsSoapResponses.Fault(version, "The body must be a SOAP message: Content-Type text/xml (SOAP 1.1) or application/soap+xml (SOAP 1.2)."), StatusCodes.Status415UnsupportedMediaType);
            return;
        }

        var max = EwsNotificationParser.MaxBodyBytes;
        EwsSendNotification? parsed;
        EwsParseError error;
        using (var body = await RequestBody.ReadAsync(request, max, http.RequestAborted))
        {
            if (body.TooLarge)
            {
                await WriteAsync(http, EwsSoapResponses.Fault(version, "The body is larger than 1 MiB."), StatusCodes.Status413PayloadTooLarge);
                return;
            }

            EwsNotificationParser.TryParseSendNotification(body.Memory, request.ContentType, out parsed, out error);
        }

        if (parsed is null)
        {
            Log.Rejected(logger, error.Code);

            // Client faults are 400 in both SOAP versions: a malformed body is not worth a retry.
            await WriteAsync(http, EwsSoapResponses.Fault(error), StatusCodes.Status400BadRequest);
            return;
        }

        if (!IsKeyShaped(key))
        {
            await WriteAsync(http, EwsSoapResponses.SendNotificationResult(parsed.SoapVersion, EwsSubscriptionStatus.Unsubscribe));
            return;
        }

        var item = new IngestItem
        {
            Route = new IngestRoute(RouteKind.CallbackKey, Secrets.Hash(key)),
            Notifications = parsed.Notifications,
            ReceivedAt = time.GetUtcNow(),
        };

        IngestVerdict verdict;
        try
        {
            verdict = await ingest.IngestAsync(item, http.RequestAborted);
        }
        catch (OperationCanceledException) when (http.RequestAborted.IsCancellationRequested)
        {
            return; // Exchange gave up waiting; it will retry, and a committed item is coalesced then.
        }
        catch (Exception ex)
        {
            Log.StoreFailed(logger, ex);
            http.Response.Headers.RetryAfter = "5";
            await WriteAsync(http, EwsSoapResponses.Fault(parsed.SoapVersion, "Herald could not store the notification; retry later."), StatusCodes.Status503ServiceUnavailable);
            return;
        }

        await WriteAsync(http, EwsSoapResponses.ForVerdict(parsed.SoapVersion, verdict));
    }

    private static bool IsSoapContentType(string? contentType)
    {
        if (string.IsNullOrEmpty(contentType))
        {
            return false;
        }

        var media = contentType.AsSpan();
        var semicolon = media.IndexOf(';');
        media = (semicolon >= 0 ? media[..semicolon] : media).Trim();
        return media.Equals("text/xml", StringComparison.OrdinalIgnoreCase)
            || media.Equals("application/soap+xml", StringComparison.OrdinalIgnoreCase)
            || media.Equals("application/xml", StringComparison.OrdinalIgnoreCase);
    }

    /// <summary>Callback keys are base64url; anything else cannot be one of ours and is answered without a lookup.</summary>
    private static bool IsKeyShaped(string key)
    {
        if (key.Length is < 16 or > 128)
        {
            return false;
        }

        foreach (var c in key)
        {
            if (!char.IsAsciiLetterOrDigit(c) && c is not '-' and not '_')
            {
                return false;
            }
        }

        return true;
    }

    private static Task WriteAsync(HttpContext http, EwsSoapResponse response, int? statusCode = null)
    {
        http.Response.StatusCode = statusCode ?? response.StatusCode;
        http.Response.ContentType = response.ContentType;
        http.Response.ContentLength = response.Body.Length;
        return http.Response.Body.WriteAsync(response.Body).AsTask();
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 5001, Level = LogLevel.Information, Message = "Rejected an EWS callback body: {Code}")]
        public static partial void Rejected(ILogger logger, EwsParseErrorCode code);

        [LoggerMessage(EventId = 5002, Level = LogLevel.Error, Message = "Could not store an EWS callback; answered 503 so Exchange retries")]
        public static partial void StoreFailed(ILogger logger, Exception exception);
    }
}
