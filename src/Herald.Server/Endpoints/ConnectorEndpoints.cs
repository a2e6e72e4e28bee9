using System.Net;
using Herald.Core.Connectors;
using Herald.Core.Ports;
using Herald.Server.Auth;
using Herald.Server.Json;

namespace Herald.Server.Endpoints;

/// <summary><c>/v1/connectors</c>: a tenant's connectors to EWS, Graph and Dovecot (CONTRACT §3). Secrets are write-only.</summary>
internal static class ConnectorEndpoints
{
    private const int MaxAllowFrom = 64;

    public static void Map(RouteGroupBuilder v1)
    {
        var group = v1.MapGroup("/connectors").WithTags("Connectors");
        group.MapGet("/", ListAsync);
        group.MapGet("/{name}", GetAsync);
        group.MapPut("/{name}", PutAsync);
        group.MapDelete("/{name}", DeleteAsync);
    }

    private static async Task<IResult> ListAsync(HttpContext http, ConnectorService connectors, IMailboxDirectory directory, CancellationToken cancellationToken)
    {
        var caller = CallerContext.Get(http);
        var list = await connectors.ListAsync(caller.TenantId, cancellationToken);
        var items = new List<ConnectorDto>(list.Count);
        foreach (var connector in list)
        {
            items.Add(ToDto(connector, await directory.CountByConnectorAsync(connector.TenantId, connector.Name, cancellationToken)));
        }

        return TypedResults.Ok(new ConnectorListDto(items));
    }

    private static async Task<IResult> GetAsync(string name, HttpContext http, ConnectorService connectors, IMailboxDirectory directory, CancellationToken cancellationToken)
    {
        var caller = CallerContext.Get(http);
        var connector = await connectors.GetAsync(caller.TenantId, name, cancellationToken);
        return connector is null
            ? Problems.NotFound($"No connector '{Validation.Printable(name)}' in this tenant.")
            : TypedResults.Ok(ToDto(connector, await directory.CountByConnectorAsync(caller.TenantId, name, cancellationToken)));
    }

    private static async Task<IResult> PutAsync(string name, HttpContext http, ConnectorService connectors, IMailboxDirectory directory, CancellationToken cancellationToken)
    {
        var caller = CallerContext.Get(http);
        if (!IsName(name))
        {
            return Problems.BadRequest("A connector name is 1 to 64 characters of letters, digits, '.', '-' or '_'.");
        }

        var body = await JsonBody.ReadAsync(http, ConnectorJsonContext.Default.ConnectorDto, cancellationToken);
        if (body.Error is not null)
        {
            return body.Error;
        }

        var request = body.Value!;
        if (request.Name is not null && request.Name != name)
        {
            return Problems.BadRequest("'name' in the body differs from the name in the URL.");
        }

        var existing = await connectors.GetAsync(caller.TenantId, name, cancellationToken);
        if (!TryBuild(request, existing, out var kind, out var config, out var error))
        {
            return Problems.BadRequest(error);
        }

        if (existing is not null && existing.Kind != kind && await directory.CountByConnectorAsync(caller.TenantId, name, cancellationToken) > 0)
        {
            return Problems.Conflict($"Connector '{name}' is a {Name(existing.Kind)} connector used by registrations; it cannot become a {Name(kind)} connector.");
        }

        var saved = await connectors.SaveAsync(new Connector { TenantId = caller.TenantId, Name = name, Kind = kind, Config = config }, cancellationToken);
        var dto = ToDto(saved, await directory.CountByConnectorAsync(caller.TenantId, name, cancellationToken));
        return existing is null ? TypedResults.Created("/v1/connectors/" + name, dto) : TypedResults.Ok(dto);
    }

    private static async Task<IResult> DeleteAsync(string name, HttpContext http, ConnectorService connectors, IMailboxDirectory directory, CancellationToken cancellationToken)
    {
        var caller = CallerContext.Get(http);
        var inUse = await directory.CountByConnectorAsync(caller.TenantId, name, cancellationToken);
        if (inUse > 0)
        {
            return Problems.Conflict($"Connector '{Validation.Printable(name)}' is used by {inUse} active registration(s); delete them first.");
        }

        return await connectors.DeleteAsync(caller.TenantId, name, cancellationToken)
            ? TypedResults.NoContent()
            : Problems.NotFound($"No connector '{Validation.Printable(name)}' in this tenant.");
    }

    internal static string Name(ConnectorKind kind) => kind switch
    {
        ConnectorKind.Ews => "ews",
        ConnectorKind.Graph => "graph",
        ConnectorKind.Dovecot => "dovecot",
        _ => kind.ToString(),
    };

    internal static bool IsName(string? name)
        => !string.IsNullOrEmpty(name) && name.Length <= 64 && name.All(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '-' or '_');

    /// <summary>Validates a request into settings; secrets left out of a replacement keep their stored values.</summary>
    internal static bool TryBuild(ConnectorDto request, Connector? existing, out ConnectorKind kind, out ConnectorConfig config, out string error)
    {
        config = null!;
        error = string.Empty;
        switch (request.Kind)
        {
            case "ews": kind = ConnectorKind.Ews; break;
            case "graph": kind = ConnectorKind.Graph; break;
            case "dovecot": kind = ConnectorKind.Dovecot; break;
            default:
                kind = default;
                error = "'kind' must be one of ews, graph, dovecot.";
                return false;
        }

        var previous = existing?.Kind == kind ? existing.Config : null;
        switch (kind)
        {
            case ConnectorKind.Ews:
            {
                var autodiscover = request.Autodiscover ?? request.EwsUrl is null;
                if (request.EwsUrl is null && !autodiscover)
                {
                    error = "An ews connector needs 'ewsUrl', or 'autodiscover': true.";
                    return false;
                }

                if (request.EwsUrl is not null && !IsServiceUrl(request.EwsUrl, out error, "ewsUrl"))
                {
                    return false;
                }

                if (request.AutodiscoverUrl is not null && !IsServiceUrl(request.AutodiscoverUrl, out error, "autodiscoverUrl"))
                {
                    return false;
                }

                if (!TryAuth(request.Auth, previous?.Auth, "https://outlook.office365.com/.default", out var auth, out error))
                {
                    return false;
                }

                config = new ConnectorConfig { EwsUrl = request.EwsUrl, Autodiscover = autodiscover, AutodiscoverUrl = request.AutodiscoverUrl, Auth = auth };
                return true;
            }

            case ConnectorKind.Graph:
            {
                var baseUrl = request.BaseUrl ?? "https://graph.microsoft.com";
                if (!IsServiceUrl(baseUrl, out error, "baseUrl"))
                {
                    return false;
                }

                if (!TryAuth(request.Auth, previous?.Auth, "https://graph.microsoft.com/.default", out var auth, out error))
                {
                    return false;
                }

                if (!auth.IsOAuth2)
                {
                    error = "A graph connector signs in with OAuth2 client credentials ('auth.type': 'oauth2').";
                    return false;
                }

                config = new ConnectorConfig { BaseUrl = baseUrl.TrimEnd('/'), Auth = auth };
                return true;
            }

            default:
            {
                var password = request.Password ?? previous?.Password;
                if (string.IsNullOrWhiteSpace(request.Username) || request.Username.Length > 128 || request.Username.Contains(':', StringComparison.Ordinal) || request.Username.Any(char.IsControl))
                {
                    error = "A dovecot connector needs 'username': 1 to 128 printable characters without ':'.";
                    return false;
                }

                if (string.IsNullOrEmpty(password) || password.Length < 12 || password.Length > 256)
                {
                    error = "A dovecot connector needs 'password': 12 to 256 characters (Dovecot sends it with HTTP Basic).";
                    return false;
                }

                var allow = request.AllowFrom ?? [];
                if (allow.Count > MaxAllowFrom)
                {
                    error = $"'allowFrom' holds at most {MaxAllowFrom} ranges.";
                    return false;
                }

                foreach (var range in allow)
                {
                    if (range is null || !IPNetwork.TryParse(range, out _) && !IPAddress.TryParse(range, out _))
                    {
                        error = $"'allowFrom' entry '{Validation.Printable(range ?? "null")}' is not an address or CIDR range.";
                        return false;
                    }
                }

                config = new ConnectorConfig { Username = request.Username, Password = password, AllowFrom = [.. allow] };
                return true;
            }
        }
    }

    private static bool TryAuth(ConnectorAuthDto? dto, ConnectorAuth? previous, string defaultScope, out ConnectorAuth auth, out string error)
    {
        auth = null!;
        error = string.Empty;
        if (dto is null)
        {
            error = "'auth' is required: { \"type\": \"oauth2\", \"tokenUrl\", \"clientId\", \"clientSecret\", \"scope\" } or { \"type\": \"basic\", \"username\", \"password\" }.";
            return false;
        }

        switch (dto.Type)
        {
            case "oauth2":
            {
                var secret = dto.ClientSecret ?? (previous is { IsOAuth2: true } ? previous.ClientSecret : null);
                if (dto.TokenUrl is null || !IsServiceUrl(dto.TokenUrl, out error, "auth.tokenUrl"))
                {
                    error = error.Length > 0 ? error : "'auth.tokenUrl' is required for oauth2.";
                    return false;
                }

                if (string.IsNullOrWhiteSpace(dto.ClientId) || string.IsNullOrEmpty(secret))
                {
                    error = "'auth.clientId' and 'auth.clientSecret' are required for oauth2.";
                    return false;
                }

                auth = new ConnectorAuth { Type = "oauth2", TokenUrl = dto.TokenUrl, ClientId = dto.ClientId, ClientSecret = secret, Scope = dto.Scope ?? defaultScope };
                return true;
            }

            case "basic":
            {
                var password = dto.Password ?? (previous is { IsBasic: true } ? previous.Password : null);
                if (string.IsNullOrWhiteSpace(dto.Username) || string.IsNullOrEmpty(password))
                {
                    error = "'auth.username' and 'auth.password' are required for basic.";
                    return false;
                }

                auth = new ConnectorAuth { Type = "basic", Username = dto.Username, Password = password };
                return true;
            }

            default:
                error = "'auth.type' must be 'oauth2' or 'basic'.";
                return false;
        }
    }

    /// <summary>An absolute https URL (http only to a loopback host, for test peers): credentials never travel in clear.</summary>
    private static bool IsServiceUrl(string value, out string error, string field)
    {
        error = string.Empty;
        if (!Uri.TryCreate(value, UriKind.Absolute, out var uri) || !string.IsNullOrEmpty(uri.UserInfo) || !string.IsNullOrEmpty(uri.Fragment))
        {
            error = $"'{field}' must be an absolute URL without user info.";
            return false;
        }

        if (uri.Scheme == Uri.UriSchemeHttps || (uri.Scheme == Uri.UriSchemeHttp && uri.IsLoopback))
        {
            return true;
        }

        error = $"'{field}' must use https (http is accepted only for a loopback test peer).";
        return false;
    }

    private static ConnectorDto ToDto(Connector c, int registrations) => new()
    {
        Name = c.Name,
        Kind = Name(c.Kind),
        EwsUrl = c.Config.EwsUrl,
        Autodiscover = c.Kind == ConnectorKind.Ews ? c.Config.Autodiscover : null,
        AutodiscoverUrl = c.Config.AutodiscoverUrl,
        BaseUrl = c.Config.BaseUrl,
        Auth = c.Config.Auth is { } a
            ? new ConnectorAuthDto
            {
                Type = a.Type,
                TokenUrl = a.TokenUrl,
                ClientId = a.ClientId,
                Scope = a.Scope,
                Username = a.Username,
                SecretSet = !string.IsNullOrEmpty(a.ClientSecret) || !string.IsNullOrEmpty(a.Password),
            }
            : null,
        Username = c.Config.Username,
        PasswordSet = c.Kind == ConnectorKind.Dovecot ? !string.IsNullOrEmpty(c.Config.Password) : null,
        AllowFrom = c.Kind == ConnectorKind.Dovecot ? [.. c.Config.AllowFrom] : null,
        Registrations = registrations,
        CreatedAt = c.CreatedAt,
        UpdatedAt = c.UpdatedAt,
    };
}

/// <summary>Checks the mailbox and connector of a registration whose events come through a connector.</summary>
internal static class MailboxSource
{
    /// <summary>The sealing purpose of mailbox addresses.</summary>
    public const string SealPurpose = "mailbox";

    public static async Task<IResult?> ValidateAsync(Core.Registrations.SourceKind source, string? mailbox, string? connectorName, string tenantId, ConnectorService connectors, CancellationToken cancellationToken)
    {
        var sourceName = Wire.Name(source);
        if (string.IsNullOrEmpty(connectorName))
        {
            return Problems.BadRequest($"Source '{sourceName}' needs 'connector': the name of one of this tenant's connectors (PUT /v1/connectors/{{name}}).");
        }

        if (string.IsNullOrWhiteSpace(mailbox) || mailbox.Length > 320 || mailbox.Any(char.IsControl))
        {
            return Problems.BadRequest($"Source '{sourceName}' needs 'mailbox': the address (or Graph user id, or Dovecot user), 1 to 320 printable characters.");
        }

        if (source == Core.Registrations.SourceKind.EwsStreaming && !IsAddress(mailbox.Trim()))
        {
            return Problems.BadRequest("Source 'ews-streaming' needs 'mailbox' as an SMTP address (user@domain): Herald subscribes to it by impersonation.");
        }

        var connector = await connectors.GetAsync(tenantId, connectorName, cancellationToken);
        if (connector is null)
        {
            return Problems.BadRequest($"No connector '{Validation.Printable(connectorName)}' in this tenant; create it first with PUT /v1/connectors/{{name}}.");
        }

        var expected = source switch
        {
            Core.Registrations.SourceKind.EwsStreaming => ConnectorKind.Ews,
            Core.Registrations.SourceKind.Graph => ConnectorKind.Graph,
            _ => ConnectorKind.Dovecot,
        };
        return connector.Kind == expected
            ? null
            : Problems.BadRequest($"Source '{sourceName}' needs a {ConnectorEndpoints.Name(expected)} connector; '{connectorName}' is a {ConnectorEndpoints.Name(connector.Kind)} connector.");
    }

    private static bool IsAddress(string value)
    {
        var at = value.IndexOf('@', StringComparison.Ordinal);
        return at > 0 && at == value.LastIndexOf('@') && at < value.Length - 3 && value.IndexOf('.', at) > at + 1 && !value.Any(char.IsWhiteSpace);
    }
}
