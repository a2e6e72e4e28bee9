using System.Text.Json;
using System.Text.Json.Serialization;
using Herald.Core.Ports;
using Herald.Core.Security;
using Herald.Server.Auth;
using Herald.Server.Json;

namespace Herald.Server.Endpoints;

/// <summary>
/// <c>GET /v1/registrations</c>: the caller's tenant's registrations by id, optionally only those whose token has a
/// fingerprint (<c>?fingerprint=tok:1a2b3c4d</c>, as logs, webhooks and the API print tokens). Paged by id with
/// <c>after</c> and <c>limit</c>. A search never crosses tenants: another tenant's fingerprint finds nothing.
/// </summary>
internal static class RegistrationSearchEndpoints
{
    private const int DefaultLimit = 50;
    private const int MaxLimit = 500;

    public static void Map(RouteGroupBuilder v1)
        => v1.MapGet("/registrations", SearchAsync).WithTags("Registrations");

    private static async Task<IResult> SearchAsync(HttpContext http, IRegistrationStore store, string? fingerprint, string? after, int? limit, CancellationToken cancellationToken)
    {
        var caller = CallerContext.Get(http);
        uint? fp = null;
        if (fingerprint is not null)
        {
            if (!TokenFingerprint.TryParse(fingerprint, out var parsed))
            {
                return Problems.BadRequest("'fingerprint' must be a token fingerprint as Herald prints it: 'tok:' and 8 hex digits (the 'tok:' may be left out).");
            }

            fp = parsed;
        }

        var take = limit ?? DefaultLimit;
        if (take is < 1 or > MaxLimit)
        {
            return Problems.BadRequest($"'limit' must be between 1 and {MaxLimit}.");
        }

        if (after is { Length: > 128 })
        {
            return Problems.BadRequest("'after' must be a registration id.");
        }

        if (store is not IRegistrationSearch search)
        {
            return Problems.Unavailable("This store cannot list registrations.");
        }

        // One more than asked tells whether there is a next page.
        var found = await search.SearchRegistrationsAsync(new RegistrationQuery(caller.TenantId, fp, after, take + 1), cancellationToken);
        var page = found.Count > take ? found.Take(take).ToList() : found;
        var items = page.Select(r => RegistrationEndpoints.ToResponse(r, null)).ToList();
        var next = found.Count > take ? page[^1].Id : null;
        return TypedResults.Json(new RegistrationListResponse(items, next), RegistrationSearchJsonContext.Default.RegistrationListResponse);
    }
}

/// <summary>Answer of <c>GET /v1/registrations</c>: a page of registrations and the <c>after</c> of the next page (null at the end).</summary>
public sealed record RegistrationListResponse(IReadOnlyList<RegistrationResponse> Items, string? Next);

[JsonSourceGenerationOptions(JsonSerializerDefaults.Web, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(RegistrationListResponse))]
internal sealed partial class RegistrationSearchJsonContext : JsonSerializerContext;
