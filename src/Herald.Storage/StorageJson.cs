using System.Text.Json;
using System.Text.Json.Serialization;
using Herald.Core.Notifications;
using Herald.Core.Settings;

namespace Herald.Storage;

/// <summary>
/// JSON documents stored in columns, serialised by source-generated code (no reflection). Enums are
/// written by name so a stored document never depends on an enum's numeric value.
/// </summary>
[JsonSourceGenerationOptions(
    PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    UseStringEnumConverter = true)]
[JsonSerializable(typeof(NotificationContent))]
[JsonSerializable(typeof(IReadOnlyList<string>))]
[JsonSerializable(typeof(IReadOnlyList<long>))]
internal sealed partial class StorageJsonContext : JsonSerializerContext;

/// <summary>
/// The settings document: every property written (a null rate reads "not throttled"), durations as
/// <c>[d.]hh:mm:ss[.fffffff]</c> strings, the throttle scope as <c>"farm"</c> or <c>"node"</c>.
/// </summary>
[JsonSourceGenerationOptions(
    PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase,
    DefaultIgnoreCondition = JsonIgnoreCondition.Never,
    Converters = [typeof(ThrottleScopeJsonConverter)])]
[JsonSerializable(typeof(QueueSettings))]
internal sealed partial class SettingsJsonContext : JsonSerializerContext;

/// <summary>Writes <see cref="ThrottleScope"/> in lower case and reads only names.</summary>
internal sealed class ThrottleScopeJsonConverter() : JsonStringEnumConverter<ThrottleScope>(JsonNamingPolicy.CamelCase, allowIntegerValues: false);

/// <summary>Column (de)serialisation of the JSON documents.</summary>
internal static class StorageJson
{
    public static string Serialize(NotificationContent content)
        => JsonSerializer.Serialize(content, StorageJsonContext.Default.NotificationContent);

    public static NotificationContent DeserializeContent(string json)
        => JsonSerializer.Deserialize(json, StorageJsonContext.Default.NotificationContent)
           ?? throw new InvalidDataException("A stored notification content is null.");

    public static string Serialize(IReadOnlyList<string> folders)
        => JsonSerializer.Serialize(folders, StorageJsonContext.Default.IReadOnlyListString);

    /// <summary>A list of ids as a JSON array, for <c>json_each(@ids)</c>.</summary>
    public static string Serialize(IReadOnlyList<long> ids)
        => JsonSerializer.Serialize(ids, StorageJsonContext.Default.IReadOnlyListInt64);

    public static string Serialize(QueueSettings settings)
        => JsonSerializer.Serialize(settings, SettingsJsonContext.Default.QueueSettings);

    public static QueueSettings DeserializeSettings(string json)
        => JsonSerializer.Deserialize(json, SettingsJsonContext.Default.QueueSettings)
           ?? throw new InvalidDataException("The stored settings are null.");

    public static IReadOnlyList<string> DeserializeFolders(string json)
        => JsonSerializer.Deserialize(json, StorageJsonContext.Default.IReadOnlyListString) ?? [];
}
