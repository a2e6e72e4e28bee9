using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;
using Herald.Core.Connectors;

namespace Herald.Server.Cli;

/// <summary>The checks of <c>herald doctor</c> that reach out to mail systems: each connector, and the clock against its peers.</summary>
internal static class DoctorConnectors
{
    /// <summary>Clock skew that breaks signed tokens (APNs rejects a provider token whose iat is far off).</summary>
    private static readonly TimeSpan FailSkew = TimeSpan.FromMinutes(5);

    /// <summary>Clock skew worth fixing before it grows.</summary>
    private static readonly TimeSpan WarnSkew = TimeSpan.FromSeconds(30);

    /// <summary>Checks every stored connector; collects the Date headers of the answers for the clock check.</summary>
    public static async Task<IReadOnlyList<DoctorCommand.Check>> CheckAsync(ConnectorService connectors, string? publicBaseUrl, List<DateTimeOffset> peerDates, TimeProvider time, CancellationToken cancellationToken)
    {
        IReadOnlyList<Connector> all;
        try
        {
            all = await connectors.ListAsync(null, cancellationToken);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            return [new DoctorCommand.Check("connectors", "fail", "cannot read the connectors: " + e.Message + " (run 'herald migrate'; is the secret key ring the farm's?)")];
        }

        if (all.Count == 0)
        {
            return [new DoctorCommand.Check("connectors", "pass", "none configured (EWS push needs none)")];
        }

        var checks = new List<DoctorCommand.Check>(all.Count);
        using var http = new HttpClient(new SocketsHttpHandler { AllowAutoRedirect = false, ConnectTimeout = TimeSpan.FromSeconds(5) }) { Timeout = TimeSpan.FromSeconds(10) };
        foreach (var connector in all)
        {
            var name = $"connector:{connector.TenantId}/{connector.Name}";
            checks.Add(connector.Kind switch
            {
                ConnectorKind.Graph => await GraphAsync(http, name, connector.Config, peerDates, cancellationToken),
                ConnectorKind.Ews => await EwsAsync(http, name, connector.Config, peerDates, cancellationToken),
                _ => new DoctorCommand.Check(name, "pass", $"Dovecot calls Herald: point its push_notification ox driver at {(publicBaseUrl ?? "<PublicBaseUrl>").TrimEnd('/')}/dovecot/notify/... with user '{connector.Config.Username}'"),
            });
        }

        return checks;
    }

    /// <summary>The local clock against the Date headers of the peers that answered.</summary>
    public static DoctorCommand.Check ClockSkew(IReadOnlyList<DateTimeOffset> peerDates, TimeProvider time)
    {
        if (peerDates.Count == 0)
        {
            return new DoctorCommand.Check("clock", "warn", "no peer answered with a Date header; check NTP on this host (provider tokens are time-stamped)");
        }

        var now = time.GetUtcNow();
        var worst = peerDates.Select(d => now - d).MaxBy(d => d.Duration());
        var text = string.Create(CultureInfo.InvariantCulture, $"{(worst >= TimeSpan.Zero ? "ahead of" : "behind")} the peers by {worst.Duration().TotalSeconds:0} s ({peerDates.Count} answers)");
        return worst.Duration() >= FailSkew
            ? new DoctorCommand.Check("clock", "fail", text + ": provider tokens will be rejected; fix NTP on this host")
            : worst.Duration() >= WarnSkew
                ? new DoctorCommand.Check("clock", "warn", text + "; check NTP")
                : new DoctorCommand.Check("clock", "pass", text);
    }

    private static async Task<DoctorCommand.Check> GraphAsync(HttpClient http, string name, ConnectorConfig config, List<DateTimeOffset> peerDates, CancellationToken cancellationToken)
    {
        if (config.Auth is not { IsOAuth2: true } auth)
        {
            return new DoctorCommand.Check(name, "fail", "a graph connector needs OAuth2 client credentials");
        }

        var token = await TokenAsync(http, auth, peerDates, cancellationToken);
        return token.Error is not null
            ? new DoctorCommand.Check(name, "fail", $"Graph token from {Host(auth.TokenUrl)}: {token.Error}")
            : new DoctorCommand.Check(name, "pass", $"Graph token from {Host(auth.TokenUrl)} for client {auth.ClientId} (scope {auth.Scope}); API at {config.BaseUrl}");
    }

    private static async Task<DoctorCommand.Check> EwsAsync(HttpClient http, string name, ConnectorConfig config, List<DateTimeOffset> peerDates, CancellationToken cancellationToken)
    {
        if (config.Auth is not { } auth)
        {
            return new DoctorCommand.Check(name, "fail", "an ews connector needs auth (oauth2 or basic)");
        }

        AuthenticationHeaderValue header;
        if (auth.IsOAuth2)
        {
            var token = await TokenAsync(http, auth, peerDates, cancellationToken);
            if (token.Error is not null)
            {
                return new DoctorCommand.Check(name, "fail", $"EWS token from {Host(auth.TokenUrl)}: {token.Error}");
            }

            header = new AuthenticationHeaderValue("Bearer", token.AccessToken);
        }
        else
        {
            header = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(System.Text.Encoding.UTF8.GetBytes(auth.Username + ":" + auth.Password)));
        }

        var target = config.EwsUrl ?? config.AutodiscoverUrl;
        if (target is null)
        {
            return new DoctorCommand.Check(name, "warn", "EWS URLs come from Autodiscover per mailbox (checked when each mailbox is subscribed); set autodiscoverUrl to check it here");
        }

        try
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, target);
            request.Headers.Authorization = header;
            using var response = await http.SendAsync(request, cancellationToken);
            Remember(response, peerDates);
            return response.StatusCode switch
            {
                HttpStatusCode.Unauthorized or HttpStatusCode.Forbidden => new DoctorCommand.Check(name, "fail", $"{Host(target)} refused the service account ({(int)response.StatusCode}): check the credentials and the ApplicationImpersonation role"),
                >= HttpStatusCode.MovedPermanently and < HttpStatusCode.BadRequest => new DoctorCommand.Check(name, "warn", $"{Host(target)} redirects ({(int)response.StatusCode}); Herald does not follow redirects to other hosts: configure the final URL"),
                _ => new DoctorCommand.Check(name, "pass", $"{Host(target)} accepts the service account ({(int)response.StatusCode})"),
            };
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
        {
            cancellationToken.ThrowIfCancellationRequested();
            return new DoctorCommand.Check(name, "fail", $"{Host(target)} unreachable: {e.Message}");
        }
    }

    private static async Task<(string? AccessToken, string? Error)> TokenAsync(HttpClient http, ConnectorAuth auth, List<DateTimeOffset> peerDates, CancellationToken cancellationToken)
    {
        try
        {
            using var form = new FormUrlEncodedContent(new Dictionary<string, string>
            {
                ["grant_type"] = "client_credentials",
                ["client_id"] = auth.ClientId ?? string.Empty,
                ["client_secret"] = auth.ClientSecret ?? string.Empty,
                ["scope"] = auth.Scope ?? string.Empty,
            });
            using var response = await http.PostAsync(auth.TokenUrl, form, cancellationToken);
            Remember(response, peerDates);
            var body = await response.Content.ReadAsStringAsync(cancellationToken);
            using var json = TryParse(body);
            if (response.IsSuccessStatusCode && json?.RootElement.TryGetProperty("access_token", out var token) == true && token.GetString() is { Length: > 0 } value)
            {
                return (value, null);
            }

            var error = json?.RootElement.TryGetProperty("error", out var e) == true ? e.ToString() : "no access_token in the answer";
            return (null, $"{(int)response.StatusCode} {error} (check the client id, secret and the app's permissions)");
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException or InvalidOperationException)
        {
            cancellationToken.ThrowIfCancellationRequested();
            return (null, "unreachable: " + e.Message);
        }
    }

    private static JsonDocument? TryParse(string body)
    {
        try
        {
            return JsonDocument.Parse(body);
        }
        catch (JsonException)
        {
            return null;
        }
    }

    private static void Remember(HttpResponseMessage response, List<DateTimeOffset> peerDates)
    {
        if (response.Headers.Date is { } date)
        {
            peerDates.Add(date);
        }
    }

    private static string Host(string? url) => Uri.TryCreate(url, UriKind.Absolute, out var uri) ? uri.Authority : url ?? "-";
}
