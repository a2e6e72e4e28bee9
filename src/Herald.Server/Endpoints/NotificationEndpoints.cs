using System.Text;
using Herald.Core.Notifications;
using Herald.Core.Ports;
using Herald.Core.Registrations;
using Herald.Providers.Apns;
using Herald.Providers.Wns;
using Herald.Server.Auth;
using Herald.Server.Json;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Options;

namespace Herald.Server.Endpoints;

/// <summary>
/// Direct, bulk and MDM sends (<c>/v1/notifications</c>) and dead letters (<c>/v1/admin/dead</c>).
/// A send request is stored with all its targets before it is answered 202.
/// </summary>
internal static class NotificationEndpoints
{
    /// <summary>Targets one request may address.</summary>
    public const int MaxTargets = 100_000;

    /// <summary>Bulk requests may be larger than other bodies: 100,000 targets of a few dozen bytes each.</summary>
    public const long MaxBodyBytes = 32L * 1024 * 1024;

    private const int EnqueueBatch = 5_000;

    public static void Map(RouteGroupBuilder v1)
    {
        var group = v1.MapGroup("/notifications").WithTags("Notifications");
        group.MapPost("/", SendAsync);
        group.MapGet("/{id}", GetAsync);

        var dead = v1.MapGroup("/admin/dead").WithTags("Administration");
        dead.MapGet("/", ListDeadAsync);
        dead.MapPost("/requeue", RequeueDeadAsync);
        dead.MapPost("/purge", PurgeDeadAsync);
    }

    private static async Task<IResult> SendAsync(
        HttpContext http,
        INotificationQueue queue,
        IRegistrationStore registrations,
        IOptions<ApnsOptions> apns,
        IOptions<WnsOptions> wns,
        TimeProvider time,
        CancellationToken cancellationToken)
    {
        var caller = CallerContext.Get(http);
        if (http.Features.Get<IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } limit)
        {
            limit.MaxRequestBodySize = MaxBodyBytes;
        }

        var body = await JsonBody.ReadAsync(http, QueueJsonContext.Default.NotificationRequestDto, cancellationToken);
        if (body.Error is not null)
        {
            return body.Error;
        }

        var request = body.Value!;
        if (!TryContent(request, out var content, out var error)
            || !TryLane(request.Lane, out var lane, out error)
            || !TryExpiry(request.TtlSeconds, time.GetUtcNow(), out var expiresAt, out error)
            || !TryCollapse(request.CollapseKey, out error))
        {
            return Problems.BadRequest(error);
        }

        var byRegistration = request.Registrations is { Count: > 0 };
        var byDevice = request.Devices is { Count: > 0 };
        if (byRegistration == byDevice)
        {
            return Problems.BadRequest("Give either 'registrations' (ids) or 'devices' (platform, token, topic), not both and not neither.");
        }

        var count = byRegistration ? request.Registrations!.Count : request.Devices!.Count;
        if (count > MaxTargets)
        {
            return Problems.BadRequest($"At most {MaxTargets} targets per request; split larger jobs.");
        }

        var now = time.GetUtcNow();
        var requestId = "ntf_" + Guid.CreateVersion7().ToString("N");
        var targets = new List<NewNotification>(count);
        List<string>? notFound = null;
        List<string>? inactive = null;

        if (byRegistration)
        {
            if (content.Kind == PushKind.Mdm)
            {
                return Problems.BadRequest("MDM wake-ups address 'devices' with their 'pushMagic', not registrations.");
            }

            var ids = request.Registrations!.Distinct(StringComparer.Ordinal).ToList();
            for (var i = 0; i < ids.Count; i += 1000)
            {
                var chunk = ids.GetRange(i, Math.Min(1000, ids.Count - i));
                var found = await registrations.GetManyAsync(caller.TenantId, chunk, cancellationToken);
                foreach (var id in chunk)
                {
                    if (!found.TryGetValue(id, out var r))
                    {
                        (notFound ??= []).Add(Validation.Printable(id));
                    }
                    else if (r.Status != RegistrationStatus.Active)
                    {
                        (inactive ??= []).Add(id);
                    }
                    else
                    {
                        targets.Add(new NewNotification
                        {
                            TenantId = caller.TenantId,
                            RegistrationId = r.Id,
                            RequestId = requestId,
                            Lane = lane,
                            Platform = r.Platform,
                            Token = r.Token,
                            Topic = r.Topic,
                            Environment = r.Environment,
                            Content = content,
                            CoalesceKey = request.CollapseKey is null ? null : "reg:" + r.Id + ":" + request.CollapseKey,
                            CollapseId = request.CollapseKey,
                            ExpiresAt = expiresAt,
                            EventAt = now,
                        });
                    }
                }
            }
        }
        else
        {
            var index = 0;
            foreach (var device in request.Devices!)
            {
                if (!TryDevice(device, index++, content, apns.Value, wns.Value, out var platform, out var token, out var topic, out var environment, out error))
                {
                    return Problems.BadRequest(error);
                }

                targets.Add(new NewNotification
                {
                    TenantId = caller.TenantId,
                    RequestId = requestId,
                    Lane = lane,
                    Platform = platform,
                    Token = token,
                    Topic = topic,
                    Environment = environment,
                    Content = content.Kind == PushKind.Mdm ? content with { PushMagic = device.PushMagic } : content,
                    CollapseId = request.CollapseKey,
                    ExpiresAt = expiresAt,
                    EventAt = now,
                });
            }
        }

        // Stored (request first, then its targets in transactional batches) before it is acknowledged.
        await queue.SaveRequestAsync(new NotificationRequestRecord(requestId, caller.TenantId, lane, content.Kind, targets.Count, now, caller.KeyId), cancellationToken);
        for (var i = 0; i < targets.Count; i += EnqueueBatch)
        {
            await queue.EnqueueAsync(targets.GetRange(i, Math.Min(EnqueueBatch, targets.Count - i)), cancellationToken);
        }

        http.RequestServices.GetService<Core.Metrics.HeraldMetrics>()?.ApiRequest(targets.Count);
        if (targets.Count > 0)
        {
            http.RequestServices.GetRequiredService<Core.Pipeline.QueueSignal>().Notify();
        }

        return TypedResults.Json(new NotificationAcceptedDto(requestId, targets.Count, notFound, inactive), QueueJsonContext.Default.NotificationAcceptedDto, statusCode: StatusCodes.Status202Accepted);
    }

    private static async Task<IResult> GetAsync(string id, HttpContext http, INotificationQueue queue, int? offset, int? limit, CancellationToken cancellationToken)
    {
        var caller = CallerContext.Get(http);
        var request = await queue.GetRequestAsync(caller.TenantId, id, cancellationToken);
        if (request is null)
        {
            return Problems.NotFound($"No notification request '{Validation.Printable(id)}' in this tenant.");
        }

        var o = Math.Max(0, offset ?? 0);
        var l = Math.Clamp(limit ?? 100, 1, 1000);
        var counts = await queue.GetRequestCountsAsync(caller.TenantId, id, cancellationToken);
        var page = await queue.GetRequestNotificationsAsync(caller.TenantId, id, o, l, cancellationToken);
        var states = Enum.GetValues<NotificationState>().ToDictionary(s => StateName(s), s => counts.TryGetValue(s, out var n) ? n : 0);
        return TypedResults.Json(
            new NotificationStatusDto(request.Id, LaneName(request.Lane), KindName(request.Kind), request.TargetCount, request.CreatedAt, states, page.Select(ToTarget).ToList(), o, l),
            QueueJsonContext.Default.NotificationStatusDto);
    }

    private static async Task<IResult> ListDeadAsync(HttpContext http, INotificationQueue queue, int? limit, CancellationToken cancellationToken)
    {
        var caller = CallerContext.Get(http);
        var dead = await queue.ListDeadAsync(caller.IsAdmin ? null : caller.TenantId, Math.Clamp(limit ?? 100, 1, 1000), cancellationToken);
        return TypedResults.Json(new DeadLettersDto(dead.Select(ToTarget).ToList()), QueueJsonContext.Default.DeadLettersDto);
    }

    private static async Task<IResult> RequeueDeadAsync(HttpContext http, INotificationQueue queue, Core.Pipeline.QueueSignal signal, TimeProvider time, CancellationToken cancellationToken)
    {
        var caller = CallerContext.Get(http);
        var ids = await ReadIdsAsync(http, cancellationToken);
        if (ids.Error is not null)
        {
            return ids.Error;
        }

        var n = await queue.RequeueDeadAsync(caller.IsAdmin ? null : caller.TenantId, ids.Value, time.GetUtcNow(), cancellationToken);
        if (n > 0)
        {
            signal.Notify();
        }

        return TypedResults.Json(new CountDto(n), QueueJsonContext.Default.CountDto);
    }

    private static async Task<IResult> PurgeDeadAsync(HttpContext http, INotificationQueue queue, CancellationToken cancellationToken)
    {
        var caller = CallerContext.Get(http);
        var ids = await ReadIdsAsync(http, cancellationToken);
        if (ids.Error is not null)
        {
            return ids.Error;
        }

        var n = await queue.PurgeDeadAsync(caller.IsAdmin ? null : caller.TenantId, ids.Value, cancellationToken);
        return TypedResults.Json(new CountDto(n), QueueJsonContext.Default.CountDto);
    }

    private static async Task<(IReadOnlyList<long>? Value, IResult? Error)> ReadIdsAsync(HttpContext http, CancellationToken cancellationToken)
    {
        if (http.Request.ContentLength is null or 0 && !http.Request.HasJsonContentType())
        {
            return (null, null); // no body: all of them
        }

        var body = await JsonBody.ReadAsync(http, QueueJsonContext.Default.DeadLetterActionDto, cancellationToken);
        return body.Error is not null ? (null, body.Error) : (body.Value!.Ids, null);
    }

    private static NotificationTargetDto ToTarget(NotificationRecord r)
        => new(r.Id, r.RegistrationId, Wire.Name(r.Platform), r.TokenFingerprint, StateName(r.State), r.Attempts, r.LastStatus, r.LastReason, r.SentAt);

    private static string StateName(NotificationState s) => s.ToString().ToLowerInvariant();

    private static string LaneName(Lane l) => l == Lane.Priority ? "priority" : "standard";

    private static string KindName(PushKind k) => k.ToString().ToLowerInvariant();

    private static bool TryLane(string? name, out Lane lane, out string error)
    {
        error = string.Empty;
        switch (name)
        {
            case null or "standard": lane = Lane.Standard; return true;
            case "priority": lane = Lane.Priority; return true;
            default:
                lane = default;
                error = "'lane' must be 'priority' or 'standard'.";
                return false;
        }
    }

    private static bool TryExpiry(int? ttlSeconds, DateTimeOffset now, out DateTimeOffset? expiresAt, out string error)
    {
        error = string.Empty;
        expiresAt = null;
        if (ttlSeconds is null)
        {
            expiresAt = now.AddDays(1);
            return true;
        }

        if (ttlSeconds is < 0 or > 28 * 24 * 3600)
        {
            error = "'ttlSeconds' must be between 0 and 2419200 (28 days).";
            return false;
        }

        // 0 = deliver now or never: it must go out on the first attempt.
        expiresAt = now.AddSeconds(Math.Max(1, ttlSeconds.Value));
        return true;
    }

    private static bool TryCollapse(string? key, out string error)
    {
        error = string.Empty;
        if (key is not null && (key.Length == 0 || Encoding.UTF8.GetByteCount(key) > 64))
        {
            error = "'collapseKey' must be 1 to 64 bytes (APNs apns-collapse-id).";
            return false;
        }

        return true;
    }

    private static bool TryContent(NotificationRequestDto r, out NotificationContent content, out string error)
    {
        content = null!;
        error = string.Empty;
        if (r.Badge is < 0 or > 99_999)
        {
            error = "'badge' must be between 0 and 99999.";
            return false;
        }

        if (r.Data is { } data && (data.Count > 50 || data.Any(kv => kv.Key.Length is 0 or > 64 || kv.Key == "aps" || kv.Value is null || kv.Value.Length > 2048)))
        {
            error = "'data' must have at most 50 string values, keys of 1 to 64 characters other than 'aps', values up to 2048 characters.";
            return false;
        }

        switch (r.Kind)
        {
            case "badge":
                if (r.Badge is null)
                {
                    error = "kind 'badge' needs 'badge'.";
                    return false;
                }

                content = new NotificationContent { Kind = PushKind.Badge, Badge = r.Badge, Data = r.Data };
                return true;
            case "alert":
                if (string.IsNullOrWhiteSpace(r.Alert?.Body) && string.IsNullOrWhiteSpace(r.Alert?.Title))
                {
                    error = "kind 'alert' needs 'alert' with a 'title' or a 'body'.";
                    return false;
                }

                content = new NotificationContent { Kind = PushKind.Alert, Title = r.Alert!.Title, Body = r.Alert.Body, Badge = r.Badge, Sound = "default", Data = r.Data };
                return true;
            case "background":
                content = new NotificationContent { Kind = PushKind.Background, Data = r.Data };
                return true;
            case "mdm":
                content = new NotificationContent { Kind = PushKind.Mdm };
                return true;
            default:
                error = "'kind' must be one of badge, alert, background, mdm.";
                return false;
        }
    }

    private static bool TryDevice(DeviceTargetDto d, int index, NotificationContent content, ApnsOptions apns, WnsOptions wns, out Platform platform, out string token, out string topic, out PushEnvironment environment, out string error)
    {
        token = string.Empty;
        topic = string.Empty;
        environment = apns.Environment;
        var where = $"devices[{index}]";
        if (!Wire.TryParsePlatform(d.Platform ?? "apns", out platform))
        {
            error = $"{where}.platform must be one of apns, fcm, wns.";
            return false;
        }

        if (!Targets.TryNormalize(platform, d.Token, d.Topic, apns, wns, out token, out topic, out error))
        {
            error = where + ": " + error;
            return false;
        }

        if (d.Environment is not null && !Wire.TryParseEnvironment(d.Environment, out environment))
        {
            error = $"{where}.environment must be 'production' or 'sandbox'.";
            return false;
        }

        if (content.Kind == PushKind.Mdm)
        {
            if (platform != Platform.Apns)
            {
                error = $"{where}: MDM wake-ups are APNs only.";
                return false;
            }

            if (string.IsNullOrWhiteSpace(d.PushMagic) || d.PushMagic.Length > 256)
            {
                error = $"{where}.pushMagic is required for kind 'mdm' (the device's PushMagic, at most 256 characters).";
                return false;
            }

            if (!topic.StartsWith("com.apple.mgmt.", StringComparison.Ordinal))
            {
                error = $"{where}.topic must be the MDM push certificate's topic (com.apple.mgmt.External.…) for kind 'mdm'.";
                return false;
            }
        }

        error = string.Empty;
        return true;
    }
}
