using System.Text.Json.Serialization;

namespace Herald.Server.Json;

/// <summary>How a connector signs in to its mail system, as the API takes and shows it (secrets write-only).</summary>
public sealed class ConnectorAuthDto
{
    public string? Type { get; set; }
    public string? TokenUrl { get; set; }
    public string? ClientId { get; set; }
    public string? ClientSecret { get; set; }
    public string? Scope { get; set; }
    public string? Username { get; set; }
    public string? Password { get; set; }

    /// <summary>In answers only: whether a client secret or password is stored.</summary>
    public bool? SecretSet { get; set; }
}

/// <summary>Body of <c>PUT /v1/connectors/{name}</c> (CONTRACT §3), and its answer without secrets.</summary>
public sealed class ConnectorDto
{
    public string? Name { get; set; }
    public string? Kind { get; set; }
    public string? EwsUrl { get; set; }
    public bool? Autodiscover { get; set; }
    public string? AutodiscoverUrl { get; set; }
    public string? BaseUrl { get; set; }
    public ConnectorAuthDto? Auth { get; set; }
    public string? Username { get; set; }
    public string? Password { get; set; }
    public List<string>? AllowFrom { get; set; }

    /// <summary>In answers only: whether a Dovecot password is stored.</summary>
    public bool? PasswordSet { get; set; }

    /// <summary>In answers only: active registrations using the connector.</summary>
    public int? Registrations { get; set; }

    public DateTimeOffset? CreatedAt { get; set; }
    public DateTimeOffset? UpdatedAt { get; set; }
}

/// <summary>Answer of <c>GET /v1/connectors</c>.</summary>
public sealed record ConnectorListDto(IReadOnlyList<ConnectorDto> Items);

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(ConnectorDto))]
[JsonSerializable(typeof(ConnectorListDto))]
internal sealed partial class ConnectorJsonContext : JsonSerializerContext;
