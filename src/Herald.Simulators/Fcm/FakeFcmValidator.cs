using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace Herald.Simulators.Fcm;

/// <summary>
/// Validates a <c>messages:send</c> body the way FCM's proto-JSON front end does: unknown field names are
/// refused (both the proto name and its lowerCamelCase JSON name are known), values must have the field's
/// type, data values must be strings, exactly one target, enum and Duration syntax, the size limit. Each
/// failure carries Google's wording for it.
/// </summary>
internal static partial class FakeFcmValidator
{
    private static readonly HashSet<string> BodyFields = ["message", "validate_only", "validateOnly"];

    private static readonly HashSet<string> MessageFields =
        ["name", "data", "notification", "android", "webpush", "apns", "fcm_options", "fcmOptions", "token", "topic", "condition"];

    private static readonly HashSet<string> NotificationFields = ["title", "body", "image"];

    private static readonly HashSet<string> AndroidFields =
    [
        "collapse_key", "collapseKey", "priority", "ttl", "restricted_package_name", "restrictedPackageName", "data",
        "notification", "fcm_options", "fcmOptions", "direct_boot_ok", "directBootOk",
        "bandwidth_constrained_ok", "bandwidthConstrainedOk", "restricted_satellite_ok", "restrictedSatelliteOk",
    ];

    private static readonly HashSet<string> AndroidNotificationFields =
    [
        "title", "body", "icon", "color", "sound", "tag", "click_action", "clickAction", "body_loc_key", "bodyLocKey",
        "body_loc_args", "bodyLocArgs", "title_loc_key", "titleLocKey", "title_loc_args", "titleLocArgs",
        "channel_id", "channelId", "ticker", "sticky", "event_time", "eventTime", "local_only", "localOnly",
        "notification_priority", "notificationPriority", "default_sound", "defaultSound",
        "default_vibrate_timings", "defaultVibrateTimings", "default_light_settings", "defaultLightSettings",
        "vibrate_timings", "vibrateTimings", "visibility", "notification_count", "notificationCount",
        "light_settings", "lightSettings", "image", "bypass_proxy_notification", "bypassProxyNotification", "proxy",
    ];

    /// <summary>FCM's longest time to live: four weeks.</summary>
    private const long MaxTtlSeconds = 2_419_200;

    /// <summary>Validates <paramref name="body"/>; on success returns null and the message's target.</summary>
    public static string? Validate(ReadOnlySpan<byte> body, int maxBytes, out Target target)
    {
        target = default;
        JsonDocument? document = null;
        try
        {
            var reader = new Utf8JsonReader(body, new JsonReaderOptions { CommentHandling = JsonCommentHandling.Disallow });
            document = JsonDocument.ParseValue(ref reader);
            if (reader.Read())
            {
                document.Dispose();
                return "Invalid JSON payload received. Unexpected token.";
            }
        }
        catch (JsonException)
        {
            document?.Dispose();
            return "Invalid JSON payload received. Unexpected token.";
        }

        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                return "Invalid JSON payload received. Expected an object.";
            }

            var validateOnly = false;
            JsonElement message = default;
            foreach (var property in root.EnumerateObject())
            {
                if (!BodyFields.Contains(property.Name))
                {
                    return $"Invalid JSON payload received. Unknown name \"{property.Name}\": Cannot find field.";
                }

                if (property.Name == "message")
                {
                    if (property.Value.ValueKind != JsonValueKind.Object)
                    {
                        return $"Invalid value at 'message' (type.googleapis.com/google.firebase.fcm.v1.Message), {property.Value.GetRawText()}";
                    }

                    message = property.Value;
                }
                else if (property.Value.ValueKind is JsonValueKind.True or JsonValueKind.False)
                {
                    validateOnly = property.Value.GetBoolean();
                }
                else
                {
                    return $"Invalid value at 'validate_only' (TYPE_BOOL), {property.Value.GetRawText()}";
                }
            }

            if (message.ValueKind != JsonValueKind.Object)
            {
                return "Request contains an invalid argument: the message is missing.";
            }

            var error = ValidateMessage(message, out var token, out var topic, out var condition);
            if (error is not null)
            {
                return error;
            }

            if (body.Length > maxBytes)
            {
                return "Message is too big";
            }

            target = new Target(token, topic, condition, validateOnly);
            return null;
        }
    }

    private static string? ValidateMessage(JsonElement message, out string? token, out string? topic, out string? condition)
    {
        token = topic = condition = null;
        string? targetField = null;
        foreach (var property in message.EnumerateObject())
        {
            var name = property.Name;
            var value = property.Value;
            if (!MessageFields.Contains(name))
            {
                return $"Invalid JSON payload received. Unknown name \"{name}\" at 'message': Cannot find field.";
            }

            string? error = name switch
            {
                "name" => ExpectString(value, "message.name"),
                "data" => ValidateStringMap(value, "message.data"),
                "notification" => ValidateObject(value, "message.notification", NotificationFields, "google.firebase.fcm.v1.Notification", ValidateNotificationField),
                "android" => ValidateObject(value, "message.android", AndroidFields, "google.firebase.fcm.v1.AndroidConfig", ValidateAndroidField),
                "webpush" or "apns" or "fcm_options" or "fcmOptions" => value.ValueKind == JsonValueKind.Object ? null : $"Invalid value at 'message.{name}', {value.GetRawText()}",
                _ => null,
            };
            if (error is not null)
            {
                return error;
            }

            if (name is "token" or "topic" or "condition")
            {
                if (value.ValueKind != JsonValueKind.String)
                {
                    return $"Invalid value at 'message.{name}' (TYPE_STRING), {value.GetRawText()}";
                }

                if (targetField is not null)
                {
                    return $"Invalid value at 'message' (oneof), oneof field 'target' is already set. Cannot set '{name}'";
                }

                targetField = name;
                switch (name)
                {
                    case "token": token = value.GetString(); break;
                    case "topic": topic = value.GetString(); break;
                    default: condition = value.GetString(); break;
                }
            }
        }

        if (targetField is null)
        {
            return "Recipient of the message is not set.";
        }

        if (token is not null && string.IsNullOrWhiteSpace(token))
        {
            return "The registration token is not a valid FCM registration token";
        }

        if (topic is not null)
        {
            var bare = topic.StartsWith("/topics/", StringComparison.Ordinal) ? topic["/topics/".Length..] : topic;
            if (!TopicName().IsMatch(bare))
            {
                return "Invalid topic name: " + topic;
            }
        }

        if (condition is not null && string.IsNullOrWhiteSpace(condition))
        {
            return "Invalid condition expression provided.";
        }

        return null;
    }

    private static string? ValidateNotificationField(string name, JsonElement value, string path)
        => ExpectString(value, path + "." + name);

    private static string? ValidateAndroidField(string name, JsonElement value, string path)
    {
        switch (name)
        {
            case "priority":
                if (value.ValueKind != JsonValueKind.String || value.GetString() is not ("normal" or "high" or "NORMAL" or "HIGH"))
                {
                    return $"Invalid value at '{path}.priority' (type.googleapis.com/google.firebase.fcm.v1.AndroidMessagePriority), {value.GetRawText()}";
                }

                return null;

            case "ttl":
                if (value.ValueKind != JsonValueKind.String || !Duration().IsMatch(value.GetString()!))
                {
                    return $"Invalid value at '{path}.ttl' (type.googleapis.com/google.protobuf.Duration), {value.GetRawText()}";
                }

                var text = value.GetString()!;
                var tooLong = !decimal.TryParse(text.AsSpan(0, text.Length - 1), NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var seconds)
                    || seconds > MaxTtlSeconds;
                return tooLong ? $"Invalid value at '{path}.ttl': the maximum time to live is 4 weeks ({MaxTtlSeconds}s); it is {text}" : null;

            case "data":
                return ValidateStringMap(value, path + ".data");

            case "notification":
                return ValidateObject(value, path + ".notification", AndroidNotificationFields, "google.firebase.fcm.v1.AndroidNotification", ValidateAndroidNotificationField);

            case "fcm_options" or "fcmOptions":
                return value.ValueKind == JsonValueKind.Object ? null : $"Invalid value at '{path}.{name}', {value.GetRawText()}";

            case "direct_boot_ok" or "directBootOk" or "bandwidth_constrained_ok" or "bandwidthConstrainedOk" or "restricted_satellite_ok" or "restrictedSatelliteOk":
                return value.ValueKind is JsonValueKind.True or JsonValueKind.False ? null : $"Invalid value at '{path}.{name}' (TYPE_BOOL), {value.GetRawText()}";

            default: // collapse_key, restricted_package_name
                return ExpectString(value, path + "." + name);
        }
    }

    private static string? ValidateAndroidNotificationField(string name, JsonElement value, string path)
    {
        switch (name)
        {
            case "notification_count" or "notificationCount":
                return value.ValueKind == JsonValueKind.Number && value.TryGetInt32(out var count) && count >= 0
                    ? null
                    : $"Invalid value at '{path}.{name}' (TYPE_INT32), {value.GetRawText()}";
            case "sticky" or "local_only" or "localOnly" or "default_sound" or "defaultSound" or "default_vibrate_timings"
                or "defaultVibrateTimings" or "default_light_settings" or "defaultLightSettings" or "bypass_proxy_notification" or "bypassProxyNotification":
                return value.ValueKind is JsonValueKind.True or JsonValueKind.False ? null : $"Invalid value at '{path}.{name}' (TYPE_BOOL), {value.GetRawText()}";
            default:
                return null; // strings, arrays and nested settings: their shapes are not checked
        }
    }

    private static string? ValidateObject(JsonElement value, string path, HashSet<string> fields, string type, Func<string, JsonElement, string, string?> validateField)
    {
        if (value.ValueKind != JsonValueKind.Object)
        {
            return $"Invalid value at '{path}' (type.googleapis.com/{type}), {value.GetRawText()}";
        }

        foreach (var property in value.EnumerateObject())
        {
            if (!fields.Contains(property.Name))
            {
                return $"Invalid JSON payload received. Unknown name \"{property.Name}\" at '{path}': Cannot find field.";
            }

            var error = validateField(property.Name, property.Value, path);
            if (error is not null)
            {
                return error;
            }
        }

        return null;
    }

    private static string? ValidateStringMap(JsonElement value, string path)
    {
        if (value.ValueKind != JsonValueKind.Object)
        {
            return $"Invalid value at '{path}', {value.GetRawText()}";
        }

        var index = 0;
        foreach (var property in value.EnumerateObject())
        {
            if (property.Value.ValueKind != JsonValueKind.String)
            {
                return string.Create(CultureInfo.InvariantCulture, $"Invalid value at '{path}[{index}].value' (TYPE_STRING), {property.Value.GetRawText()}");
            }

            index++;
        }

        return null;
    }

    private static string? ExpectString(JsonElement value, string path)
        => value.ValueKind == JsonValueKind.String ? null : $"Invalid value at '{path}' (TYPE_STRING), {value.GetRawText()}";

    [GeneratedRegex(@"^\d+(\.\d{1,9})?s$", RegexOptions.CultureInvariant)]
    private static partial Regex Duration();

    [GeneratedRegex(@"^[a-zA-Z0-9\-_.~%]+$", RegexOptions.CultureInvariant)]
    private static partial Regex TopicName();

    /// <summary>Where a valid message goes.</summary>
    internal readonly record struct Target(string? Token, string? Topic, string? Condition, bool ValidateOnly);
}
