using Herald.Core.Ports;
using Herald.Core.Security;
using Herald.Server.Auth;
using Herald.Server.Json;
using Herald.Storage;

namespace Herald.Server.Endpoints;

/// <summary><c>/v1/tenants</c>: the admin key creates tenants and their API keys (CONTRACT §3).</summary>
internal static class TenantEndpoints
{
    public static void Map(RouteGroupBuilder v1)
    {
        var group = v1.MapGroup("/tenants").WithTags("Tenants");
        group.MapPost("/", CreateAsync);
        group.MapPost("/{id}/keys", CreateKeyAsync);
        group.MapDelete("/{id}/keys/{keyId}", RevokeKeyAsync);
    }

    private static async Task<IResult> RevokeKeyAsync(string id, string keyId, HttpContext http, IAccessStore store, IHeraldStore admin, ApiKeyAuthenticator authenticator, TimeProvider time, CancellationToken cancellationToken)
    {
        var caller = CallerContext.Get(http);
        if (!caller.IsAdmin)
        {
            return Problems.Forbidden("Only the admin key manages tenants.");
        }

        if (keyId == caller.KeyId)
        {
            return Problems.BadRequest("A key cannot revoke itself; revoke it with another admin key.");
        }

        if (await store.GetTenantAsync(id, cancellationToken) is null)
        {
            return Problems.NotFound($"No tenant '{Validation.Printable(id)}'.");
        }

        // Key ids are unique across tenants; the admin key may revoke any of them.
        if (!await admin.RevokeApiKeyAsync(keyId, time.GetUtcNow(), cancellationToken))
        {
            return Problems.NotFound($"No active key '{Validation.Printable(keyId)}'.");
        }

        authenticator.Forget(); // this node stops accepting it at once; other nodes within the cache time
        return TypedResults.NoContent();
    }

    private static async Task<IResult> CreateAsync(HttpContext http, IAccessStore store, TimeProvider time, CancellationToken cancellationToken)
    {
        if (!CallerContext.Get(http).IsAdmin)
        {
            return Problems.Forbidden("Only the admin key manages tenants.");
        }

        var body = await JsonBody.ReadAsync(http, HeraldJsonContext.Default.TenantRequest, cancellationToken);
        if (body.Error is not null)
        {
            return body.Error;
        }

        var name = body.Value!.Name?.Trim();
        if (string.IsNullOrEmpty(name) || name.Length > 100 || name.Any(char.IsControl))
        {
            return Problems.BadRequest("'name' is required: 1 to 100 printable characters.");
        }

        var tenant = new Tenant("tn_" + Guid.CreateVersion7().ToString("N"), name, time.GetUtcNow());
        await store.CreateTenantAsync(tenant, cancellationToken);
        return TypedResults.Created("/v1/tenants/" + tenant.Id, new TenantResponse(tenant.Id, tenant.Name, tenant.CreatedAt));
    }

    private static async Task<IResult> CreateKeyAsync(string id, HttpContext http, IAccessStore store, TimeProvider time, CancellationToken cancellationToken)
    {
        if (!CallerContext.Get(http).IsAdmin)
        {
            return Problems.Forbidden("Only the admin key manages tenants.");
        }

        if (await store.GetTenantAsync(id, cancellationToken) is null)
        {
            return Problems.NotFound($"No tenant '{Validation.Printable(id)}'.");
        }

        var key = Secrets.NewKey("hk_", 24);
        var record = new ApiKeyRecord("key_" + Guid.CreateVersion7().ToString("N"), id, Secrets.Hash(key), false, time.GetUtcNow(), null);
        await store.AddApiKeyAsync(record, cancellationToken);
        return TypedResults.Created("/v1/tenants/" + id + "/keys/" + record.Id, new ApiKeyResponse(record.Id, key));
    }
}
