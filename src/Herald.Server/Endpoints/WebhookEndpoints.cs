using System.Text.Json;
using Herald.Core.Credentials;
using Herald.Core.Ports;
using Herald.Core.Security;

namespace Herald.Server.Endpoints;

/// <summary>
/// <c>/v1/tenants/{id}/webhook</c>: a tenant's feedback webhook. Herald POSTs signed JSON events to it when a
/// registration is deactivated (with the provider's reason and timestamp) and when a notification goes dead,
/// so management servers can prune tokens (see <see cref="WebhookSender"/>).
/// </summary>
internal static class WebhookEndpoints
{
    /// <summary>The SecretBox purpose of webhook secrets.</summary>
    public const string Purpose = "webhook";

    public static void Map(RouteGroupBuilder v1)
    {
        var group = v1.MapGroup("/tenants/{id}/webhook").WithTags("Webhooks");
        group.MapPut("/", PutAsync);
        group.MapGet("/", GetAsync);
        group.MapDelete("/", DeleteAsync);
        group.MapGet("/events", EventsAsync);
    }

    private static async Task<IResult> PutAsync(string id, HttpContext http, IAccessStore access, ICredentialStore store, SecretBox box, TimeProvider time, CancellationToken cancellationToken)
    {
        if (await CredentialEndpoints.AuthorizeAsync(http, id, access, cancellationToken) is { } denied)
        {
            return denied;
        }

        var body = await JsonBody.ReadAsync(http, CredentialJsonContext.Default.WebhookRequestDto, cancellationToken);
        if (body.Error is not null)
        {
            return body.Error;
        }

        var request = body.Value!;
        if (string.IsNullOrWhiteSpace(request.Url) || request.Url.Length > 2048
            || !Uri.TryCreate(request.Url, UriKind.Absolute, out var url)
            || (url.Scheme != Uri.UriSchemeHttps && url.Scheme != Uri.UriSchemeHttp)
            || !string.IsNullOrEmpty(url.UserInfo) || !string.IsNullOrEmpty(url.Fragment))
        {
            return Problems.BadRequest("'url' must be an absolute https:// (or http://) URL without credentials or fragment.");
        }

        if (string.IsNullOrEmpty(request.Secret) || request.Secret.Length is < 16 or > 512)
        {
            return Problems.BadRequest("'secret' is required: 16 to 512 characters, the HMAC-SHA256 key the receiver verifies X-Herald-Signature with.");
        }

        var record = new WebhookRecord(id, url.AbsoluteUri, box.Seal(request.Secret, Purpose), time.GetUtcNow());
        await store.PutWebhookAsync(record, cancellationToken);
        return TypedResults.Json(new WebhookDto(record.Url, record.UpdatedAt), CredentialJsonContext.Default.WebhookDto);
    }

    private static async Task<IResult> GetAsync(string id, HttpContext http, IAccessStore access, ICredentialStore store, CancellationToken cancellationToken)
    {
        if (await CredentialEndpoints.AuthorizeAsync(http, id, access, cancellationToken) is { } denied)
        {
            return denied;
        }

        var webhook = await store.GetWebhookAsync(id, cancellationToken);
        return webhook is null
            ? Problems.NotFound($"Tenant '{Validation.Printable(id)}' has no webhook.")
            : TypedResults.Json(new WebhookDto(webhook.Url, webhook.UpdatedAt), CredentialJsonContext.Default.WebhookDto);
    }

    private static async Task<IResult> DeleteAsync(string id, HttpContext http, IAccessStore access, ICredentialStore store, CancellationToken cancellationToken)
    {
        if (await CredentialEndpoints.AuthorizeAsync(http, id, access, cancellationToken) is { } denied)
        {
            return denied;
        }

        return await store.DeleteWebhookAsync(id, cancellationToken)
            ? TypedResults.NoContent()
            : Problems.NotFound($"Tenant '{Validation.Printable(id)}' has no webhook.");
    }

    private static async Task<IResult> EventsAsync(string id, HttpContext http, IAccessStore access, ICredentialStore store, int? limit, CancellationToken cancellationToken)
    {
        if (await CredentialEndpoints.AuthorizeAsync(http, id, access, cancellationToken) is { } denied)
        {
            return denied;
        }

        var events = await store.ListWebhookEventsAsync(id, Math.Clamp(limit ?? 100, 1, 1000), cancellationToken);
        var items = new List<WebhookEventDto>(events.Count);
        foreach (var e in events)
        {
            using var doc = JsonDocument.Parse(e.Body);
            items.Add(new WebhookEventDto(
                e.Id,
                e.Type,
                e.State switch { WebhookStates.Delivered => "delivered", WebhookStates.Failed => "failed", _ => "pending" },
                e.Attempts,
                e.LastStatus,
                e.LastError,
                e.CreatedAt,
                doc.RootElement.Clone()));
        }

        return TypedResults.Json(new WebhookEventListDto(items), CredentialJsonContext.Default.WebhookEventListDto);
    }
}
