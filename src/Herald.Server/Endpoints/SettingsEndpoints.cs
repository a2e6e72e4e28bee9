using System.Globalization;
using System.Text.Json;
using Herald.Core.Ports;
using Herald.Core.Settings;
using Herald.Server.Auth;
using Herald.Server.Json;

namespace Herald.Server.Endpoints;

/// <summary><c>/v1/admin/settings</c>: lanes, throttles and retries, changed at runtime on every node.</summary>
internal static class SettingsEndpoints
{
    public static void Map(RouteGroupBuilder v1)
    {
        var group = v1.MapGroup("/admin/settings").WithTags("Administration");
        group.MapGet("/", Get);
        group.MapPut("/", PutAsync);
        group.MapGet("/history", HistoryAsync);
    }

    private static IResult Get(HttpContext http, SettingsMonitor monitor)
        => !CallerContext.Get(http).IsAdmin
            ? Problems.Forbidden("Settings need the admin key.")
            : TypedResults.Json(ToDto(monitor.CurrentStored), QueueJsonContext.Default.SettingsDto);

    private static async Task<IResult> PutAsync(HttpContext http, SettingsMonitor monitor, CancellationToken cancellationToken)
    {
        var caller = CallerContext.Get(http);
        if (!caller.IsAdmin)
        {
            return Problems.Forbidden("Settings need the admin key.");
        }

        var body = await JsonBody.ReadAsync(http, QueueJsonContext.Default.SettingsDto, cancellationToken);
        if (body.Error is not null)
        {
            return body.Error;
        }

        if (!TryApply(monitor.Current, body.Value!, out var settings, out var error))
        {
            return Problems.BadRequest(error);
        }

        var problems = settings.Validate();
        if (problems.Count > 0)
        {
            return Problems.BadRequest(string.Join(" ", problems));
        }

        var stored = await monitor.SaveAsync(settings, caller.KeyId, cancellationToken);
        return TypedResults.Json(ToDto(stored), QueueJsonContext.Default.SettingsDto);
    }

    private static async Task<IResult> HistoryAsync(HttpContext http, ISettingsStore store, CancellationToken cancellationToken)
    {
        if (!CallerContext.Get(http).IsAdmin)
        {
            return Problems.Forbidden("Settings need the admin key.");
        }

        var changes = await store.GetSettingsHistoryAsync(100, cancellationToken);
        var list = new List<SettingsChangeDto>(changes.Count);
        foreach (var c in changes)
        {
            using var oldJson = JsonDocument.Parse(c.OldJson);
            using var newJson = JsonDocument.Parse(c.NewJson);
            list.Add(new SettingsChangeDto(c.Version, c.At, c.Actor, oldJson.RootElement.Clone(), newJson.RootElement.Clone()));
        }

        return TypedResults.Json(list, QueueJsonContext.Default.ListSettingsChangeDto);
    }

    internal static SettingsDto ToDto(StoredSettings stored) => new()
    {
        Lanes = new LanesDto { Standard = ToDto(stored.Settings.Standard), Priority = ToDto(stored.Settings.Priority) },
        Retry = new RetrySettingsDto
        {
            MaxAttempts = stored.Settings.Retry.MaxAttempts,
            InitialDelay = stored.Settings.Retry.InitialDelay.ToString("c", CultureInfo.InvariantCulture),
            MaxDelay = stored.Settings.Retry.MaxDelay.ToString("c", CultureInfo.InvariantCulture),
        },
        Connections = new ConnectionSettingsDto
        {
            IdleTimeout = stored.Settings.Connections.IdleTimeout?.ToString("c", CultureInfo.InvariantCulture),
        },
        Version = stored.Version,
        UpdatedAt = stored.Version == 0 ? null : stored.UpdatedAt,
        UpdatedBy = stored.Version == 0 ? null : stored.UpdatedBy,
    };

    private static LaneSettingsDto ToDto(LaneSettings lane) => new()
    {
        RatePerMinute = lane.RatePerMinute,
        Scope = lane.Scope == ThrottleScope.Node ? "node" : "farm",
        MaxAttempts = lane.MaxAttempts,
    };

    /// <summary>Applies a PUT body to the settings in force: a lane given replaces that lane; absent retry fields keep their value.</summary>
    internal static bool TryApply(QueueSettings current, SettingsDto dto, out QueueSettings result, out string error)
    {
        result = current;
        error = string.Empty;
        if (dto.Lanes?.Standard is { } standard)
        {
            if (!TryLane(standard, "lanes.standard", out var lane, out error))
            {
                return false;
            }

            result = result with { Standard = lane };
        }

        if (dto.Lanes?.Priority is { } priority)
        {
            if (!TryLane(priority, "lanes.priority", out var lane, out error))
            {
                return false;
            }

            result = result with { Priority = lane };
        }

        if (dto.Retry is { } retry)
        {
            var r = result.Retry;
            if (retry.MaxAttempts is { } attempts)
            {
                r = r with { MaxAttempts = attempts };
            }

            if (retry.InitialDelay is { } initial)
            {
                if (!TimeSpan.TryParse(initial, CultureInfo.InvariantCulture, out var d))
                {
                    error = "retry.initialDelay must be a duration such as \"00:00:30\".";
                    return false;
                }

                r = r with { InitialDelay = d };
            }

            if (retry.MaxDelay is { } max)
            {
                if (!TimeSpan.TryParse(max, CultureInfo.InvariantCulture, out var d))
                {
                    error = "retry.maxDelay must be a duration such as \"01:00:00\".";
                    return false;
                }

                r = r with { MaxDelay = d };
            }

            result = result with { Retry = r };
        }

        if (dto.Connections is { } connections)
        {
            TimeSpan? idle = null;
            if (!string.IsNullOrWhiteSpace(connections.IdleTimeout))
            {
                if (!TimeSpan.TryParse(connections.IdleTimeout, CultureInfo.InvariantCulture, out var d))
                {
                    error = "connections.idleTimeout must be a duration such as \"00:01:00\", or null for the configured default.";
                    return false;
                }

                idle = d;
            }

            result = result with { Connections = new ConnectionSettings { IdleTimeout = idle } };
        }

        return true;
    }

    private static bool TryLane(LaneSettingsDto dto, string name, out LaneSettings lane, out string error)
    {
        lane = new LaneSettings();
        error = string.Empty;
        var scope = ThrottleScope.Farm;
        if (dto.Scope is not null)
        {
            switch (dto.Scope)
            {
                case "farm": scope = ThrottleScope.Farm; break;
                case "node": scope = ThrottleScope.Node; break;
                default:
                    error = $"{name}.scope must be 'farm' or 'node'.";
                    return false;
            }
        }

        lane = new LaneSettings { RatePerMinute = dto.RatePerMinute, Scope = scope, MaxAttempts = dto.MaxAttempts };
        return true;
    }
}
