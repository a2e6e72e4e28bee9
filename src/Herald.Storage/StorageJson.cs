using System.Text.Json;
using System.Text.Json.Serialization;
using Herald.Core.Notifications;

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
internal sealed partial class StorageJsonContext : JsonSerializerContext;

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

    public static IReadOnlyList<string> DeserializeFolders(string json)
        => JsonSerializer.Deserialize(json, StorageJsonContext.Default.IReadOnlyListString) ?? [];
}
