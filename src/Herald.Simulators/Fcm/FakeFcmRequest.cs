using System.Runtime.CompilerServices;
using System.Text.Json;

namespace Herald.Simulators.Fcm;

/// <summary>One send request the fake FCM server received, and how it answered.</summary>
public sealed class FakeFcmRequest
{
    private StrongBox<JsonElement>? _message;

    /// <summary>The HTTP method.</summary>
    public required string Method { get; init; }

    /// <summary>The request path.</summary>
    public required string Path { get; init; }

    /// <summary>The project from the path (<c>/v1/projects/{project}/messages:send</c>); empty when the path was wrong.</summary>
    public required string Project { get; init; }

    /// <summary>The HTTP protocol the request came over ("HTTP/2", "HTTP/1.1").</summary>
    public required string Protocol { get; init; }

    /// <summary>The <c>Authorization</c> header as sent.</summary>
    public string? Authorization { get; init; }

    /// <summary>The request body as UTF-8 text; null when not read.</summary>
    public string? Body { get; init; }

    /// <summary><c>message.token</c>, when the body carried one.</summary>
    public string? Token { get; init; }

    /// <summary><c>message.topic</c>, when the body carried one.</summary>
    public string? Topic { get; init; }

    /// <summary><c>message.condition</c>, when the body carried one.</summary>
    public string? Condition { get; init; }

    /// <summary>The body's <c>validate_only</c>.</summary>
    public bool ValidateOnly { get; init; }

    /// <summary>When the request arrived, by the server's <see cref="TimeProvider"/>.</summary>
    public required DateTimeOffset ReceivedAt { get; init; }

    /// <summary>The HTTP status answered.</summary>
    public required int Status { get; init; }

    /// <summary>The <c>error.status</c> answered (null for 200).</summary>
    public string? ErrorStatus { get; init; }

    /// <summary>The FcmError <c>errorCode</c> answered, when the answer carried one.</summary>
    public string? ErrorCode { get; init; }

    /// <summary>The <c>error.message</c> answered (null for 200).</summary>
    public string? ErrorMessage { get; init; }

    /// <summary>The message name answered on success (<c>projects/{p}/messages/{id}</c>).</summary>
    public string? MessageName { get; init; }

    /// <summary>True when answered 200.</summary>
    public bool Accepted => Status == 200;

    /// <summary>The body's <c>message</c> object (undefined when the body had none or was not JSON).</summary>
    public JsonElement Message => (_message ??= new StrongBox<JsonElement>(ParseMessage(Body))).Value;

    /// <summary><c>message.data</c> (empty when absent).</summary>
    public IReadOnlyDictionary<string, string> Data => Strings(Message, "data");

    /// <summary><c>message.notification.title</c>.</summary>
    public string? NotificationTitle => String(Message, "notification", "title");

    /// <summary><c>message.notification.body</c>.</summary>
    public string? NotificationBody => String(Message, "notification", "body");

    /// <summary>True when the message has a <c>notification</c> block.</summary>
    public bool HasNotification => Message.ValueKind == JsonValueKind.Object && Message.TryGetProperty("notification", out _);

    /// <summary><c>message.android.priority</c>.</summary>
    public string? AndroidPriority => String(Message, "android", "priority");

    /// <summary><c>message.android.collapse_key</c>.</summary>
    public string? CollapseKey => String(Message, "android", "collapse_key");

    /// <summary><c>message.android.ttl</c>.</summary>
    public string? Ttl => String(Message, "android", "ttl");

    private static JsonElement ParseMessage(string? body)
    {
        if (body is null)
        {
            return default;
        }

        try
        {
            using var document = JsonDocument.Parse(body);
            return document.RootElement.ValueKind == JsonValueKind.Object && document.RootElement.TryGetProperty("message", out var message)
                ? message.Clone()
                : default;
        }
        catch (JsonException)
        {
            return default;
        }
    }

    private static string? String(JsonElement element, string outer, string inner)
        => element.ValueKind == JsonValueKind.Object
            && element.TryGetProperty(outer, out var o) && o.ValueKind == JsonValueKind.Object
            && o.TryGetProperty(inner, out var i) && i.ValueKind == JsonValueKind.String
            ? i.GetString()
            : null;

    private static Dictionary<string, string> Strings(JsonElement element, string name)
    {
        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        if (element.ValueKind == JsonValueKind.Object && element.TryGetProperty(name, out var map) && map.ValueKind == JsonValueKind.Object)
        {
            foreach (var property in map.EnumerateObject())
            {
                result[property.Name] = property.Value.ValueKind == JsonValueKind.String ? property.Value.GetString()! : property.Value.GetRawText();
            }
        }

        return result;
    }
}
