namespace Herald.Core.Connectors;

/// <summary>What kind of mail system a connector reaches, or is reached by.</summary>
public enum ConnectorKind
{
    /// <summary>Exchange Web Services: Herald holds streaming subscriptions with a service account.</summary>
    Ews = 0,
    /// <summary>Microsoft Graph change notifications (Exchange Online).</summary>
    Graph = 1,
    /// <summary>Dovecot's push_notification plugin calls Herald.</summary>
    Dovecot = 2,
}

/// <summary>How Herald authenticates to a mail system (EWS, Graph).</summary>
public sealed record ConnectorAuth
{
    /// <summary><c>oauth2</c> (client credentials, app-only) or <c>basic</c> (on-premises, over HTTPS only).</summary>
    public string Type { get; init; } = "oauth2";

    /// <summary>OAuth2 token endpoint.</summary>
    public string? TokenUrl { get; init; }

    /// <summary>OAuth2 client id.</summary>
    public string? ClientId { get; init; }

    /// <summary>OAuth2 client secret (write-only through the API).</summary>
    public string? ClientSecret { get; init; }

    /// <summary>OAuth2 scope, for example <c>https://outlook.office365.com/.default</c>.</summary>
    public string? Scope { get; init; }

    /// <summary>Basic user name (the service account).</summary>
    public string? Username { get; init; }

    /// <summary>Basic password (write-only through the API).</summary>
    public string? Password { get; init; }

    /// <summary>Whether this is OAuth2 client credentials.</summary>
    public bool IsOAuth2 => string.Equals(Type, "oauth2", StringComparison.OrdinalIgnoreCase);

    /// <summary>Whether this is HTTP Basic.</summary>
    public bool IsBasic => string.Equals(Type, "basic", StringComparison.OrdinalIgnoreCase);
}

/// <summary>A connector's settings. Which fields apply depends on the <see cref="ConnectorKind"/>.</summary>
public sealed record ConnectorConfig
{
    /// <summary>EWS: the service URL, or null to find it with Autodiscover.</summary>
    public string? EwsUrl { get; init; }

    /// <summary>EWS: find each mailbox's EWS URL and grouping information with Autodiscover.</summary>
    public bool Autodiscover { get; init; }

    /// <summary>EWS: the Autodiscover service URL (default: derived from the mailbox domain).</summary>
    public string? AutodiscoverUrl { get; init; }

    /// <summary>Graph: the API base URL, for example <c>https://graph.microsoft.com</c>.</summary>
    public string? BaseUrl { get; init; }

    /// <summary>EWS and Graph: how Herald signs in.</summary>
    public ConnectorAuth? Auth { get; init; }

    /// <summary>Dovecot: the HTTP Basic user name Dovecot's push driver sends.</summary>
    public string? Username { get; init; }

    /// <summary>Dovecot: the HTTP Basic password (write-only through the API).</summary>
    public string? Password { get; init; }

    /// <summary>Dovecot (and callbacks generally): source address ranges (CIDR) allowed to call; empty = any.</summary>
    public IReadOnlyList<string> AllowFrom { get; init; } = [];
}

/// <summary>A tenant's connector: how Herald reaches, or is reached by, one mail system.</summary>
public sealed class Connector
{
    /// <summary>The owning tenant.</summary>
    public required string TenantId { get; init; }

    /// <summary>The name, unique within the tenant (used in URLs and registrations).</summary>
    public required string Name { get; init; }

    /// <summary>The kind of mail system.</summary>
    public required ConnectorKind Kind { get; init; }

    /// <summary>Settings, secrets included (they are sealed at rest and never returned by the API).</summary>
    public required ConnectorConfig Config { get; init; }

    /// <summary>When it was first created.</summary>
    public DateTimeOffset CreatedAt { get; init; }

    /// <summary>When it was last replaced.</summary>
    public DateTimeOffset UpdatedAt { get; init; }
}

/// <summary>A connector as stored: its settings sealed as one value.</summary>
public sealed record ConnectorRecord(string TenantId, string Name, ConnectorKind Kind, string SealedConfig, DateTimeOffset CreatedAt, DateTimeOffset UpdatedAt);
