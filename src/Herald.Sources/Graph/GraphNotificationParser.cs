using System.Text.Json;

namespace Herald.Sources.Graph;

/// <summary>One item of a Graph change or lifecycle notification body.</summary>
public sealed record GraphNotificationItem
{
    public required string SubscriptionId { get; init; }
    public string? ClientState { get; init; }

    /// <summary><c>created</c>, <c>updated</c>, <c>deleted</c> (change notifications).</summary>
    public string? ChangeType { get; init; }
    public string? Resource { get; init; }

    /// <summary><c>resourceData.id</c>: the message id.</summary>
    public string? ResourceId { get; init; }

    /// <summary><c>reauthorizationRequired</c>, <c>subscriptionRemoved</c>, <c>missed</c> (lifecycle notifications).</summary>
    public string? LifecycleEvent { get; init; }
    public string? TenantId { get; init; }
}

/// <summary>
/// Parses Graph's notification bodies <c>{"value":[{subscriptionId, clientState, changeType, resource, resourceData,
/// tenantId, subscriptionExpirationDateTime, lifecycleEvent}]}</c>. Limits: <see cref="MaxBodyBytes"/>,
/// <see cref="MaxItems"/> items, <see cref="MaxDepth"/> levels; unknown fields are skipped.
/// </summary>
public static class GraphNotificationParser
{
    /// <summary>The largest body accepted.</summary>
    public const int MaxBodyBytes = 1024 * 1024;

    /// <summary>The most items in one body (Graph batches notifications; far fewer in practice).</summary>
    public const int MaxItems = 1000;

    /// <summary>The deepest nesting accepted.</summary>
    public const int MaxDepth = 8;

    private const int MaxFieldLength = 2048;

    /// <summary>Parses <paramref name="utf8"/>; on failure <paramref name="error"/> says why, fit for a problem detail.</summary>
    public static bool TryParse(ReadOnlySpan<byte> utf8, out IReadOnlyList<GraphNotificationItem>? items, out string? error)
    {
        items = null;
        if (utf8.Length > MaxBodyBytes)
        {
            error = $"The body is larger than {MaxBodyBytes} bytes.";
            return false;
        }

        try
        {
            using var doc = JsonDocument.Parse(utf8.ToArray(), new JsonDocumentOptions { MaxDepth = MaxDepth });
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("value", out var value) || value.ValueKind != JsonValueKind.Array)
            {
                error = "The body must be a JSON object with a 'value' array of notifications.";
                return false;
            }

            if (value.GetArrayLength() > MaxItems)
            {
                error = $"The body holds more than {MaxItems} notifications.";
                return false;
            }

            var list = new List<GraphNotificationItem>(value.GetArrayLength());
            var index = 0;
            foreach (var item in value.EnumerateArray())
            {
                if (item.ValueKind != JsonValueKind.Object)
                {
                    error = $"value[{index}] must be an object.";
                    return false;
                }

                if (!TryString(item, "subscriptionId", index, out var subscriptionId, out error)
                    || !TryString(item, "clientState", index, out var clientState, out error)
                    || !TryString(item, "changeType", index, out var changeType, out error)
                    || !TryString(item, "resource", index, out var resource, out error)
                    || !TryString(item, "lifecycleEvent", index, out var lifecycle, out error)
                    || !TryString(item, "tenantId", index, out var tenant, out error))
                {
                    return false;
                }

                if (string.IsNullOrEmpty(subscriptionId))
                {
                    error = $"value[{index}].subscriptionId is required.";
                    return false;
                }

                string? resourceId = null;
                if (item.TryGetProperty("resourceData", out var data) && data.ValueKind == JsonValueKind.Object
                    && data.TryGetProperty("id", out var id) && id.ValueKind == JsonValueKind.String)
                {
                    resourceId = id.GetString();
                    if (resourceId!.Length > MaxFieldLength)
                    {
                        error = $"value[{index}].resourceData.id is too long.";
                        return false;
                    }
                }

                list.Add(new GraphNotificationItem
                {
                    SubscriptionId = subscriptionId,
                    ClientState = clientState,
                    ChangeType = changeType,
                    Resource = resource,
                    ResourceId = resourceId,
                    LifecycleEvent = lifecycle,
                    TenantId = tenant,
                });
                index++;
            }

            items = list;
            error = null;
            return true;
        }
        catch (JsonException e)
        {
            error = "The body is not valid JSON" + (e.LineNumber is { } line ? $" (line {line + 1}, byte {e.BytePositionInLine + 1})." : ".");
            return false;
        }
        catch (InvalidOperationException)
        {
            // JsonDocument checks structure only; a string's invalid UTF-8 shows when it is read (found by the fuzz suite).
            error = "The body is not valid UTF-8 JSON: a string holds bytes that are not UTF-8.";
            return false;
        }
    }

    private static bool TryString(JsonElement item, string name, int index, out string? value, out string? error)
    {
        value = null;
        error = null;
        if (!item.TryGetProperty(name, out var element) || element.ValueKind == JsonValueKind.Null)
        {
            return true;
        }

        if (element.ValueKind != JsonValueKind.String)
        {
            error = $"value[{index}].{name} must be a string.";
            return false;
        }

        value = element.GetString();
        if (value!.Length > MaxFieldLength)
        {
            error = $"value[{index}].{name} is longer than {MaxFieldLength} characters.";
            value = null;
            return false;
        }

        return true;
    }
}
