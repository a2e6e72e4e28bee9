using System.Security.Cryptography;
using System.Text;
using Microsoft.AspNetCore.Http.HttpResults;
using Herald.Core.Events;
using Herald.Core.Pipeline;
using Herald.Core.Ports;
using Herald.Core.Registrations;
using Herald.Core.Security;
using Herald.Server.Workers;
using Herald.Sources.Graph;
using Herald.Storage;
using Microsoft.Extensions.Options;

namespace Herald.Server.Endpoints;

/// <summary>Counters of the Graph callbacks (exposed for tests and operators' logs).</summary>
internal sealed class GraphCallbackStats
{
    private long _clientStateMismatches;
    private long _duplicates;

    /// <summary>Notifications rejected because their clientState did not match the subscription's.</summary>
    public long ClientStateMismatches => Interlocked.Read(ref _clientStateMismatches);

    /// <summary>Notifications that were already stored (Graph retries).</summary>
    public long Duplicates => Interlocked.Read(ref _duplicates);

    public void Mismatch(int n) => Interlocked.Add(ref _clientStateMismatches, n);

    public void Duplicate(int n) => Interlocked.Add(ref _duplicates, n);
}

/// <summary>
/// <c>POST /graph/notify/{tenant}/{connector}</c> and <c>/graph/lifecycle/{tenant}/{connector}</c> (and the one-segment
/// forms for the default tenant): Microsoft Graph change and lifecycle notifications of the subscriptions Herald created.
/// A <c>validationToken</c> query is answered at once, 200 <c>text/plain</c> with the decoded token. Every notification's
/// clientState is checked against the stored keyed hash (mismatches are counted and dropped; a body of nothing but
/// mismatches is 400); accepted change notifications are stored (a Graph retry of one already stored is absorbed by its
/// dedup key) and answered 202; the Graph worker fetches the badge and ingests them. Lifecycle events: <c>missed</c> is
/// ingested as a sync wake-up before the answer; <c>reauthorizationRequired</c> and <c>subscriptionRemoved</c> are recorded
/// on the subscription and the worker acts at once. 503 when the store cannot take them (Graph retries).
/// </summary>
internal static partial class GraphEndpoints
{
    /// <summary>The longest validation token echoed (Graph's are about 150 characters).</summary>
    public const int MaxValidationTokenLength = 4096;

    public static void Map(IEndpointRouteBuilder app)
    {
        app.MapPost("/graph/notify/{tenant}/{connector}", (HttpContext http, string tenant, string connector) => HandleAsync(http, tenant, connector, lifecycle: false))
            .WithTags("Mail sources").WithSummary("Microsoft Graph change notifications (and the validationToken handshake).");
        app.MapPost("/graph/notify/{connector}", (HttpContext http, string connector) => HandleAsync(http, "default", connector, lifecycle: false))
            .WithTags("Mail sources").WithSummary("Microsoft Graph change notifications of a default-tenant connector.");
        app.MapPost("/graph/lifecycle/{tenant}/{connector}", (HttpContext http, string tenant, string connector) => HandleAsync(http, tenant, connector, lifecycle: true))
            .WithTags("Mail sources").WithSummary("Microsoft Graph lifecycle notifications (and the validationToken handshake).");
        app.MapPost("/graph/lifecycle/{connector}", (HttpContext http, string connector) => HandleAsync(http, "default", connector, lifecycle: true))
            .WithTags("Mail sources").WithSummary("Microsoft Graph lifecycle notifications of a default-tenant connector.");
    }

    private static async Task<IResult> HandleAsync(HttpContext http, string tenant, string connector, bool lifecycle)
    {
        // The handshake first: Graph waits at most 10 s for it, and it needs nothing but the query.
        if (http.Request.Query.TryGetValue("validationToken", out var validation))
        {
            var token = validation.ToString();
            if (token.Length > MaxValidationTokenLength)
            {
                return Problems.BadRequest($"The validationToken is longer than {MaxValidationTokenLength} characters.");
            }

            return TypedResults.Text(token, "text/plain", Encoding.UTF8, StatusCodes.Status200OK);
        }

        var services = http.RequestServices;
        var logger = services.GetRequiredService<ILoggerFactory>().CreateLogger("Herald.Sources.Graph");
        if (services.GetRequiredService<IHeraldStore>() is not IGraphSubscriptionStore store)
        {
            return Problems.Unavailable("This node's store does not support the Graph source.");
        }

        var max = GraphNotificationParser.MaxBodyBytes;
        IReadOnlyList<GraphNotificationItem>? items;
        string? error;
        using (var body = await RequestBody.ReadAsync(http.Request, max, http.RequestAborted))
        {
            if (body.TooLarge)
            {
                return TooLarge();
            }

            if (!GraphNotificationParser.TryParse(body.Memory.Span, out items, out error))
            {
                Log.Rejected(logger, error!);
                return Problems.BadRequest(error!);
            }
        }

        var secrets = services.GetRequiredService<SecretBox>();
        var time = services.GetRequiredService<TimeProvider>();
        var stats = services.GetRequiredService<GraphCallbackStats>();
        var wake = services.GetRequiredService<GraphWake>();
        var window = services.GetRequiredService<IOptions<GraphSourceOptions>>().Value.DedupWindow;
        var now = time.GetUtcNow();

        var pending = new List<GraphPendingNotification>();
        var missed = new List<GraphSubscription>();
        var actions = new List<(string Id, string GraphId, GraphSubscriptionAction Action)>();
        int mismatched = 0, accepted = 0;
        try
        {
            var known = new Dictionary<string, GraphSubscription?>(StringComparer.Ordinal);
            foreach (var item in items!)
            {
                if (!known.TryGetValue(item.SubscriptionId, out var subscription))
                {
                    subscription = await store.GetGraphSubscriptionAsync(item.SubscriptionId, http.RequestAborted);
                    known[item.SubscriptionId] = subscription;
                }

                var presented = secrets.KeyedHash(item.ClientState ?? string.Empty, GraphSubscriptionManager.ClientStatePurpose);
                if (subscription is null)
                {
                    // Graph may call before its create call has returned to Herald: the subscription is still stored under a
                    // provisional id, found by its clientState (a keyed hash nobody can compute without the key).
                    subscription = await store.FindGraphSubscriptionByClientStateAsync(presented, http.RequestAborted);
                    if (subscription is not null && !subscription.Id.StartsWith(GraphSubscriptionManager.ProvisionalPrefix, StringComparison.Ordinal))
                    {
                        subscription = null;
                    }
                }

                if (subscription is null || subscription.TenantId != tenant || subscription.Connector != connector)
                {
                    continue; // not ours (any more): dropped; Graph stops once the subscription expires or is deleted
                }

                if (!CryptographicOperations.FixedTimeEquals(presented, subscription.ClientStateHash))
                {
                    mismatched++;
                    continue;
                }

                accepted++;
                if (lifecycle)
                {
                    switch (item.LifecycleEvent)
                    {
                        case "missed":
                            missed.Add(subscription);
                            break;
                        case "reauthorizationRequired":
                            actions.Add((subscription.Id, item.SubscriptionId, GraphSubscriptionAction.Reauthorize));
                            break;
                        case "subscriptionRemoved":
                            actions.Add((subscription.Id, item.SubscriptionId, GraphSubscriptionAction.Recreate));
                            break;
                    }

                    continue;
                }

                GraphChangeKind? kind = item.ChangeType switch
                {
                    "created" => GraphChangeKind.Created,
                    "updated" => GraphChangeKind.Updated,
                    "deleted" => GraphChangeKind.Deleted,
                    _ => null,
                };
                if (kind is null)
                {
                    continue;
                }

                pending.Add(new GraphPendingNotification
                {
                    DedupKey = SHA256.HashData(Encoding.UTF8.GetBytes(item.SubscriptionId + "\n" + item.ChangeType + "\n" + item.Resource + "\n" + item.ResourceId)),
                    SubscriptionId = item.SubscriptionId, // Graph's id, which a provisional subscription takes once its create returns
                    Kind = kind.Value,
                    MessageId = item.ResourceId,
                    ReceivedAt = now,

                    // A new message absorbs Graph's retries for the window; an update only while it waits, so a later
                    // change of the same message (read, then unread) still moves the badge.
                    KeepUntil = kind == GraphChangeKind.Created ? now + window : now,
                });
            }

            if (pending.Count > 0)
            {
                var added = await store.AddGraphNotificationsAsync(pending, http.RequestAborted);
                stats.Duplicate(pending.Count - added);
                wake.Notifications();
            }

            foreach (var (id, graphId, action) in actions)
            {
                // The provisional id may have become Graph's id in the meantime.
                if (!await store.SetGraphSubscriptionActionAsync(id, action, http.RequestAborted))
                {
                    await store.SetGraphSubscriptionActionAsync(graphId, action, http.RequestAborted);
                }
            }

            if (missed.Count > 0)
            {
                var ingest = services.GetRequiredService<IngestService>();
                foreach (var subscription in missed.DistinctBy(s => s.Id))
                {
                    await ingest.IngestAsync(
                        new IngestItem
                        {
                            Route = IngestRoute.ForMailbox(subscription.TenantId, subscription.Connector, subscription.MailboxHash),
                            Notifications = [new MailboxNotification { Events = [new MailEvent { Kind = MailEventKind.Missed }] }],
                            ReceivedAt = now,
                            Source = SourceKind.Graph,
                        },
                        http.RequestAborted);
                }
            }
        }
        catch (OperationCanceledException) when (http.RequestAborted.IsCancellationRequested)
        {
            return TypedResults.Empty; // Graph gave up; it retries and the dedup key absorbs what was stored
        }
        catch (Exception e)
        {
            Log.StoreFailed(logger, e);
            http.Response.Headers.RetryAfter = "5";
            return Problems.Unavailable("Herald could not store the notifications; retry later.");
        }

        if (actions.Count > 0)
        {
            wake.Reconcile();
        }

        if (mismatched > 0)
        {
            stats.Mismatch(mismatched);
            Log.ClientStateMismatch(logger, mismatched, connector);
            if (accepted == 0)
            {
                return Problems.BadRequest("clientState does not match the subscription's: the notification was not accepted.");
            }
        }

        return TypedResults.Accepted((string?)null);
    }

    private static ProblemHttpResult TooLarge()
        => TypedResults.Problem($"The body is larger than {GraphNotificationParser.MaxBodyBytes} bytes.", statusCode: StatusCodes.Status413PayloadTooLarge, title: "Payload too large");

    private static partial class Log
    {
        [LoggerMessage(EventId = 5301, Level = LogLevel.Information, Message = "Rejected a Graph notification body: {Reason}")]
        public static partial void Rejected(ILogger logger, string reason);

        [LoggerMessage(EventId = 5302, Level = LogLevel.Error, Message = "Could not store Graph notifications; answered 503 so Graph retries")]
        public static partial void StoreFailed(ILogger logger, Exception exception);

        [LoggerMessage(EventId = 5303, Level = LogLevel.Warning, Message = "Rejected {Count} Graph notifications for connector {Connector}: clientState mismatch")]
        public static partial void ClientStateMismatch(ILogger logger, int count, string connector);
    }
}
