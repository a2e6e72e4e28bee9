using System.Text.Json;
using System.Text.Json.Serialization;
using Herald.Core.Credentials;
using Herald.Core.Pipeline;
using Herald.Core.Ports;
using Herald.Core.Registrations;
using Herald.Core.Security;
using Herald.Providers.Credentials;
using Herald.Server.Auth;

namespace Herald.Server.Endpoints;

/// <summary>
/// <c>/v1/tenants/{id}/credentials</c> (CONTRACT §3): a tenant's APNs, FCM and WNS credentials. Uploads are
/// validated by loading them as the providers will (400 for a malformed body, 422 for a credential that cannot be
/// used), sealed with the key ring, and take effect at once: the tenant's retrying backlog for that platform is made
/// due and the dispatcher woken. Reads return metadata only, never secret material. A tenant key sees its own
/// tenant; the admin key acts on any.
/// </summary>
internal static class CredentialEndpoints
{
    public static void Map(RouteGroupBuilder v1)
    {
        var group = v1.MapGroup("/tenants/{id}/credentials").WithTags("Credentials");
        group.MapGet("/", ListAsync);
        group.MapGet("/{platform}", GetAsync);
        group.MapPut("/{platform}", PutAsync);
        group.MapDelete("/{platform}", DeleteAsync);
    }

    /// <summary>Null when the caller may act on tenant <paramref name="id"/>, else the problem to answer.</summary>
    internal static async Task<IResult?> AuthorizeAsync(HttpContext http, string id, IAccessStore access, CancellationToken cancellationToken)
    {
        var caller = CallerContext.Get(http);
        if (!caller.IsAdmin && !string.Equals(caller.TenantId, id, StringComparison.Ordinal))
        {
            return Problems.Forbidden("A tenant key manages only its own tenant.");
        }

        return await access.GetTenantAsync(id, cancellationToken) is null
            ? Problems.NotFound($"No tenant '{Validation.Printable(id)}'.")
            : null;
    }

    private static async Task<IResult> ListAsync(string id, HttpContext http, IAccessStore access, ICredentialStore store, CredentialHealth health, CancellationToken cancellationToken)
    {
        if (await AuthorizeAsync(http, id, access, cancellationToken) is { } denied)
        {
            return denied;
        }

        var list = await store.ListCredentialsAsync(id, cancellationToken);
        return TypedResults.Json(new CredentialListDto([.. list.Select(c => ToDto(c) with { Fault = FaultOf(health, c) })]), CredentialJsonContext.Default.CredentialListDto);
    }

    private static async Task<IResult> GetAsync(string id, string platform, HttpContext http, IAccessStore access, ICredentialStore store, CredentialHealth health, CancellationToken cancellationToken)
    {
        if (await AuthorizeAsync(http, id, access, cancellationToken) is { } denied)
        {
            return denied;
        }

        if (!TryPlatform(platform, out var p))
        {
            return Problems.NotFound($"No credential platform '{Validation.Printable(platform)}': use apns, fcm or wns.");
        }

        var stored = await store.GetCredentialAsync(id, p, cancellationToken);
        return stored is null
            ? Problems.NotFound($"Tenant '{Validation.Printable(id)}' has no {platform} credential.")
            : TypedResults.Json(ToDto(stored) with { Fault = FaultOf(health, stored) }, CredentialJsonContext.Default.CredentialDto);
    }

    /// <summary>The provider's last refusal of this tenant's credential while its circuit is open (this node's view), else null.</summary>
    private static CredentialFaultDto? FaultOf(CredentialHealth health, StoredCredential credential)
        => health.Credentials().FirstOrDefault(c => c.Platform == credential.Platform && c.TenantId == credential.TenantId && c.Fault is not null) is { Fault: { } f }
            ? new CredentialFaultDto(f.At, f.Status, f.Reason)
            : null;

    private static async Task<IResult> PutAsync(
        string id,
        string platform,
        HttpContext http,
        IAccessStore access,
        ICredentialStore store,
        SecretBox box,
        CredentialRegistry registry,
        CredentialHealth health,
        QueueSignal signal,
        TimeProvider time,
        CancellationToken cancellationToken)
    {
        if (await AuthorizeAsync(http, id, access, cancellationToken) is { } denied)
        {
            return denied;
        }

        if (!TryPlatform(platform, out var p))
        {
            return Problems.NotFound($"No credential platform '{Validation.Printable(platform)}': use apns, fcm or wns.");
        }

        var body = await JsonBody.ReadAsync(http, CredentialJsonContext.Default.CredentialUploadDto, cancellationToken);
        if (body.Error is not null)
        {
            return body.Error;
        }

        var upload = body.Value!;
        var now = time.GetUtcNow();
        ValidatedCredential validated;
        try
        {
            validated = p switch
            {
                Platform.Apns when upload.CertificatePfxBase64 is not null && upload.PrivateKeyPem is not null
                    => throw new CredentialUploadException("Give either a token key (teamId, keyId, privateKeyPem, topics) or a certificate (certificatePfxBase64, password), not both.", false),
                Platform.Apns when upload.CertificatePfxBase64 is not null => TenantCredentialUploads.ApnsCertificate(upload.CertificatePfxBase64, upload.Password, now),
                Platform.Apns => TenantCredentialUploads.ApnsToken(upload.TeamId, upload.KeyId, upload.PrivateKeyPem, upload.Topics),
                Platform.Fcm => TenantCredentialUploads.FcmServiceAccount(upload.ServiceAccountJson),
                _ => TenantCredentialUploads.WnsClientSecret(upload.PackageSid, upload.ClientSecret),
            };
        }
        catch (CredentialUploadException ex)
        {
            return ex.Unprocessable
                ? TypedResults.Problem(ex.Message, statusCode: StatusCodes.Status422UnprocessableEntity, title: "Unusable credential")
                : Problems.BadRequest(ex.Message);
        }

        var record = new StoredCredential(
            id,
            p,
            validated.Kind,
            box.Seal(validated.SecretJson, StoredCredential.Purpose(p)),
            validated.PublicId,
            validated.Topics,
            validated.Thumbprint,
            validated.ExpiresAt,
            now);
        var stored = await store.PutCredentialAsync(record, cancellationToken);

        // In effect now on this node (other nodes reload within seconds): old circuit and faults forgotten,
        // the backlog that waited for a working credential due again, the dispatcher woken.
        registry.Apply(new TenantCredential(stored, validated.SecretJson));
        health.Forget(p, id);
        await store.ResumeBacklogAsync(id, p, now, cancellationToken);
        signal.Notify();
        return TypedResults.Json(ToDto(stored), CredentialJsonContext.Default.CredentialDto);
    }

    private static async Task<IResult> DeleteAsync(
        string id,
        string platform,
        HttpContext http,
        IAccessStore access,
        ICredentialStore store,
        CredentialRegistry registry,
        CredentialHealth health,
        CancellationToken cancellationToken)
    {
        if (await AuthorizeAsync(http, id, access, cancellationToken) is { } denied)
        {
            return denied;
        }

        if (!TryPlatform(platform, out var p))
        {
            return Problems.NotFound($"No credential platform '{Validation.Printable(platform)}': use apns, fcm or wns.");
        }

        if (!await store.DeleteCredentialAsync(id, p, cancellationToken))
        {
            return Problems.NotFound($"Tenant '{Validation.Printable(id)}' has no {platform} credential.");
        }

        registry.Remove(id, p);
        health.Forget(p, id);
        return TypedResults.NoContent();
    }

    private static bool TryPlatform(string value, out Platform platform)
    {
        switch (value)
        {
            case "apns": platform = Platform.Apns; return true;
            case "fcm": platform = Platform.Fcm; return true;
            case "wns": platform = Platform.Wns; return true;
            default: platform = default; return false;
        }
    }

    private static CredentialDto ToDto(StoredCredential c) => new(
        TenantCredentialUploads.Name(c.Platform),
        c.Kind,
        c.PublicId,
        c.Topics.Count == 0 ? null : c.Topics,
        c.Thumbprint,
        c.ExpiresAt,
        c.UpdatedAt,
        c.Version);
}

/// <summary>The body of <c>PUT /v1/tenants/{id}/credentials/{platform}</c>: the fields of one platform's credential.</summary>
public sealed class CredentialUploadDto
{
    public string? TeamId { get; set; }
    public string? KeyId { get; set; }
    public string? PrivateKeyPem { get; set; }
    public List<string>? Topics { get; set; }
    public string? CertificatePfxBase64 { get; set; }
    public string? Password { get; set; }
    public string? ServiceAccountJson { get; set; }
    public string? PackageSid { get; set; }
    public string? ClientSecret { get; set; }
}

/// <summary>A credential's metadata (never secret material).</summary>
public sealed record CredentialDto(
    string Platform,
    string Kind,
    string? Id,
    IReadOnlyList<string>? Topics,
    string? Thumbprint,
    DateTimeOffset? ExpiresAt,
    DateTimeOffset UpdatedAt,
    long Version)
{
    /// <summary>Set while a provider refuses the credential (its circuit is open, its sends wait in retry); absent when healthy.</summary>
    public CredentialFaultDto? Fault { get; init; }
}

/// <summary>How a provider last refused a credential: when, the HTTP status (0 when not from the provider's answer) and its reason.</summary>
public sealed record CredentialFaultDto(DateTimeOffset At, int Status, string? Reason);

/// <summary>A tenant's credentials.</summary>
public sealed record CredentialListDto(IReadOnlyList<CredentialDto> Items);

/// <summary>The body of <c>PUT /v1/tenants/{id}/webhook</c>.</summary>
public sealed class WebhookRequestDto
{
    public string? Url { get; set; }
    public string? Secret { get; set; }
}

/// <summary>A tenant's webhook (the secret is never returned).</summary>
public sealed record WebhookDto(string Url, DateTimeOffset UpdatedAt);

/// <summary>One outbox event of a tenant's webhook.</summary>
public sealed record WebhookEventDto(long Id, string Type, string State, int Attempts, int LastStatus, string? LastError, DateTimeOffset CreatedAt, JsonElement Body);

/// <summary>A tenant's recent webhook events.</summary>
public sealed record WebhookEventListDto(IReadOnlyList<WebhookEventDto> Items);

/// <summary>JSON types of the credential and webhook API.</summary>
[JsonSourceGenerationOptions(JsonSerializerDefaults.Web, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull, MaxDepth = 32)]
[JsonSerializable(typeof(CredentialUploadDto))]
[JsonSerializable(typeof(CredentialDto))]
[JsonSerializable(typeof(CredentialListDto))]
[JsonSerializable(typeof(WebhookRequestDto))]
[JsonSerializable(typeof(WebhookDto))]
[JsonSerializable(typeof(WebhookEventListDto))]
internal sealed partial class CredentialJsonContext : JsonSerializerContext;
