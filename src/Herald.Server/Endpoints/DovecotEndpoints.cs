using System.Net;
using System.Security.Cryptography;
using System.Text;
using Microsoft.AspNetCore.Http.HttpResults;
using Herald.Core.Connectors;
using Herald.Core.Events;
using Herald.Core.Pipeline;
using Herald.Core.Ports;
using Herald.Core.Registrations;
using Herald.Core.Security;
using Herald.Sources.Dovecot;

namespace Herald.Server.Endpoints;

/// <summary>
/// <c>PUT|POST /dovecot/notify/{connector}</c> (the default tenant) and <c>/dovecot/notify/{tenant}/{connector}</c>: Dovecot's
/// push_notification OX driver. Connector names are unique per tenant only, so a URL without a tenant means the default
/// tenant. HTTP Basic is checked against the connector's credentials in constant time (after the optional allowFrom CIDR
/// check); a new-message event of user U reaches every active dovecot registration of that connector whose mailbox is U
/// (keyed hash). The answer (204) comes only after the event is durable; 503 when the store cannot take it.
/// Dovecot retries once at most (<c>max_retries</c>, default 1) within <c>timeout_msecs</c> and then drops the event.
/// </summary>
internal static partial class DovecotEndpoints
{
    /// <summary>The folder id Herald gives INBOX in mailbox events (Dovecot only reports INBOX deliveries).</summary>
    public const string InboxId = "inbox";

    public static void Map(IEndpointRouteBuilder app)
    {
        string[] methods = ["PUT", "POST"];
        app.MapMethods("/dovecot/notify/{connector}", methods, (HttpContext http, string connector, DovecotServices services) => NotifyAsync(http, "default", connector, services))
            .WithTags("Mail sources")
            .WithSummary("Dovecot push_notification (OX driver) callback of a default-tenant connector, HTTP Basic.");
        app.MapMethods("/dovecot/notify/{tenant}/{connector}", methods, (HttpContext http, string tenant, string connector, DovecotServices services) => NotifyAsync(http, tenant, connector, services))
            .WithTags("Mail sources")
            .WithSummary("Dovecot push_notification (OX driver) callback of a tenant's connector, HTTP Basic.");
    }

    private static async Task<IResult> NotifyAsync(HttpContext http, string tenant, string connectorName, DovecotServices services)
    {
        var logger = services.Logger;
        var connector = await services.Connectors.GetAsync(tenant, connectorName, http.RequestAborted);
        if (connector is null || connector.Kind != ConnectorKind.Dovecot)
        {
            // Unknown and wrong credentials look the same from outside.
            Log.Unauthorized(logger, "unknown connector");
            return Challenge(http);
        }

        if (connector.Config.AllowFrom.Count > 0 && !IsAllowed(http.Connection.RemoteIpAddress, connector.Config.AllowFrom))
        {
            Log.Forbidden(logger);
            return Problems.Forbidden("This address may not call the connector (allowFrom).");
        }

        if (!CredentialsMatch(http.Request.Headers.Authorization.ToString(), connector.Config.Username, connector.Config.Password))
        {
            Log.Unauthorized(logger, "wrong credentials");
            return Challenge(http);
        }

        var contentType = http.Request.ContentType;
        if (contentType is not null && !contentType.Contains("json", StringComparison.OrdinalIgnoreCase))
        {
            return TypedResults.Problem("The body must be JSON (Content-Type application/json), as Dovecot's OX driver sends it.", statusCode: StatusCodes.Status415UnsupportedMediaType, title: "Unsupported media type");
        }

        var max = DovecotNotificationParser.MaxBodyBytes;
        DovecotNotification? parsed;
        string? error;
        using (var body = await RequestBody.ReadAsync(http.Request, max, http.RequestAborted))
        {
            if (body.TooLarge)
            {
                return TooLarge();
            }

            if (!DovecotNotificationParser.TryParse(body.Memory.Span, out parsed, out error))
            {
                parsed = null;
            }
        }

        if (parsed is null)
        {
            Log.Rejected(logger, error!);
            return Problems.BadRequest(error!);
        }

        if (!parsed.IsMessageNew || parsed.Folder is { } folder && !folder.Equals("INBOX", StringComparison.OrdinalIgnoreCase))
        {
            // Other events (and other folders) mean nothing for a badge; acknowledged so Dovecot does not log an error.
            return TypedResults.NoContent();
        }

        List<MailEvent> events =
        [
            new MailEvent
            {
                Kind = MailEventKind.NewMail,
                ItemId = parsed.Uid is { } uid ? $"{parsed.UidValidity}:{uid}" : null,
                ParentFolderId = InboxId,
                TimeStamp = services.Time.GetUtcNow(),
            },
        ];
        if (parsed.Unseen is { } unseen)
        {
            events.Add(new MailEvent { Kind = MailEventKind.Modified, FolderId = InboxId, UnreadCount = unseen });
        }

        var item = new IngestItem
        {
            Route = IngestRoute.ForMailbox(connector.TenantId, connector.Name, services.Secrets.MailboxHash(parsed.User)),
            Notifications = [new MailboxNotification { Events = events }],
            ReceivedAt = services.Time.GetUtcNow(),
            Source = SourceKind.Dovecot,
            Preview = parsed.Subject is null && parsed.From is null ? null : new MailPreview(parsed.Subject, parsed.From)
            {
                FromAddress = parsed.FromAddress,
                MessageRef = parsed.Uid is { } messageUid ? $"{parsed.UidValidity}:{messageUid}" : null,
            },
        };

        try
        {
            var verdict = await services.Ingest.IngestAsync(item, http.RequestAborted);
            Log.Stored(logger, new RedactedToken(parsed.User), verdict, item.Enqueued);
        }
        catch (OperationCanceledException) when (http.RequestAborted.IsCancellationRequested)
        {
            return TypedResults.Empty; // Dovecot gave up (timeout_msecs); a committed event is coalesced with its retry.
        }
        catch (Exception ex)
        {
            Log.StoreFailed(logger, ex);
            http.Response.Headers.RetryAfter = "5";
            return Problems.Unavailable("Herald could not store the notification; retry later.");
        }

        return TypedResults.NoContent();
    }

    private static ProblemHttpResult Challenge(HttpContext http)
    {
        http.Response.Headers.WWWAuthenticate = "Basic realm=\"herald-dovecot\", charset=\"UTF-8\"";
        return TypedResults.Problem("Unknown connector or wrong credentials: the push driver URL must carry the connector's username and password (http://user:pass@host/dovecot/notify/...).", statusCode: StatusCodes.Status401Unauthorized, title: "Unauthorized");
    }

    private static ProblemHttpResult TooLarge()
        => TypedResults.Problem($"The body is larger than {DovecotNotificationParser.MaxBodyBytes} bytes.", statusCode: StatusCodes.Status413PayloadTooLarge, title: "Payload too large");

    /// <summary>Checks <c>Basic base64(user:password)</c>; both parts compared in constant time (as SHA-256 digests, so lengths do not leak).</summary>
    internal static bool CredentialsMatch(string authorization, string? username, string? password)
    {
        if (string.IsNullOrEmpty(username) || string.IsNullOrEmpty(password) || !authorization.StartsWith("Basic ", StringComparison.OrdinalIgnoreCase))
        {
            return false;
        }

        string decoded;
        try
        {
            decoded = Encoding.UTF8.GetString(Convert.FromBase64String(authorization["Basic ".Length..].Trim()));
        }
        catch (FormatException)
        {
            return false;
        }

        var colon = decoded.IndexOf(':', StringComparison.Ordinal);
        if (colon < 0)
        {
            return false;
        }

        var userOk = CryptographicOperations.FixedTimeEquals(Digest(decoded[..colon]), Digest(username));
        var passwordOk = CryptographicOperations.FixedTimeEquals(Digest(decoded[(colon + 1)..]), Digest(password));
        return userOk & passwordOk;
    }

    private static byte[] Digest(string value) => SHA256.HashData(Encoding.UTF8.GetBytes(value));

    internal static bool IsAllowed(IPAddress? remote, IReadOnlyList<string> allowFrom)
    {
        if (remote is null)
        {
            return false;
        }

        if (remote.IsIPv4MappedToIPv6)
        {
            remote = remote.MapToIPv4();
        }

        foreach (var cidr in allowFrom)
        {
            if (IPNetwork.TryParse(cidr, out var network) && network.Contains(remote))
            {
                return true;
            }

            if (IPAddress.TryParse(cidr, out var single) && single.Equals(remote))
            {
                return true;
            }
        }

        return false;
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 5201, Level = LogLevel.Information, Message = "Rejected a Dovecot callback body: {Reason}")]
        public static partial void Rejected(ILogger logger, string reason);

        [LoggerMessage(EventId = 5202, Level = LogLevel.Error, Message = "Could not store a Dovecot callback; answered 503")]
        public static partial void StoreFailed(ILogger logger, Exception exception);

        [LoggerMessage(EventId = 5203, Level = LogLevel.Warning, Message = "Refused a Dovecot callback: {Reason}")]
        public static partial void Unauthorized(ILogger logger, string reason);

        [LoggerMessage(EventId = 5204, Level = LogLevel.Warning, Message = "Refused a Dovecot callback from an address outside allowFrom")]
        public static partial void Forbidden(ILogger logger);

        [LoggerMessage(EventId = 5205, Level = LogLevel.Debug, Message = "Dovecot new mail for {User}: {Verdict}, {Enqueued} queued")]
        public static partial void Stored(ILogger logger, RedactedToken user, IngestVerdict verdict, int enqueued);
    }
}

/// <summary>What the Dovecot callback needs, resolved once per request.</summary>
internal sealed class DovecotServices(ConnectorService connectors, IngestService ingest, SecretBox secrets, TimeProvider time, ILoggerFactory loggers)
{
    public ConnectorService Connectors { get; } = connectors;
    public IngestService Ingest { get; } = ingest;
    public SecretBox Secrets { get; } = secrets;
    public TimeProvider Time { get; } = time;
    public ILogger Logger { get; } = loggers.CreateLogger("Herald.Sources.Dovecot");
}
