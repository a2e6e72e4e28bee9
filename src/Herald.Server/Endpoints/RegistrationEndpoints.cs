using System.Text.Json;
using Herald.Core.Connectors;
using Herald.Core.Ports;
using Herald.Core.Registrations;
using Herald.Core.Security;
using Herald.Server.Auth;
using Herald.Server.Hosting;
using Herald.Server.Json;
using Herald.Providers.Apns;
using Herald.Providers.Wns;
using Microsoft.Extensions.Options;

namespace Herald.Server.Endpoints;

/// <summary>The registration service: <c>/v1/registrations</c> (CONTRACT §3).</summary>
internal static class RegistrationEndpoints
{
    private const int MaxFolders = 16;

    public static void Map(RouteGroupBuilder v1)
    {
        var group = v1.MapGroup("/registrations").WithTags("Registrations");
        group.MapPost("/", CreateAsync);
        group.MapGet("/{id}", GetAsync);
        group.MapPatch("/{id}", PatchAsync);
        group.MapDelete("/{id}", DeleteAsync);
    }

    private static async Task<IResult> CreateAsync(
        HttpContext http,
        IRegistrationStore store,
        PublicUrls urls,
        IOptions<ApnsOptions> apnsDefaults,
        IOptions<WnsOptions> wnsOptions,
        ConnectorService connectors,
        SecretBox secrets,
        RegistrationChanges changes,
        TimeProvider time,
        CancellationToken cancellationToken)
    {
        var caller = CallerContext.Get(http);
        var body = await JsonBody.ReadAsync(http, HeraldJsonContext.Default.RegistrationRequest, cancellationToken);
        if (body.Error is not null)
        {
            return body.Error;
        }

        var request = body.Value!;
        if (!Wire.TryParsePlatform(request.Platform, out var platform))
        {
            return Problems.BadRequest("'platform' must be one of apns, fcm, wns.");
        }

        var defaults = apnsDefaults.Value;
        if (!Targets.TryNormalize(platform, request.Token, request.Topic, defaults, wnsOptions.Value, out var token, out var topic, out var targetError))
        {
            return Problems.BadRequest(targetError);
        }

        var environment = defaults.Environment;
        if (request.Environment is not null && !Wire.TryParseEnvironment(request.Environment, out environment))
        {
            return Problems.BadRequest("'environment' must be 'production' or 'sandbox'.");
        }

        var source = SourceKind.EwsPush;
        if (request.Source is not null && !Wire.TryParseSource(request.Source, out source))
        {
            return Problems.BadRequest("'source' must be one of ews-push, ews-streaming, graph, dovecot, none.");
        }

        string? connectorName = null;
        byte[]? mailboxHash = null;
        string? sealedMailbox = null;
        if (source is SourceKind.EwsPush or SourceKind.None)
        {
            if (request.Mailbox is not null || request.Connector is not null)
            {
                return Problems.BadRequest("'mailbox' and 'connector' are only for the ews-streaming, graph and dovecot sources; Herald does not store an address it does not need.");
            }
        }
        else
        {
            var mailboxError = await MailboxSource.ValidateAsync(source, request.Mailbox, request.Connector, caller.TenantId, connectors, cancellationToken);
            if (mailboxError is not null)
            {
                return mailboxError;
            }

            connectorName = request.Connector!;
            mailboxHash = secrets.MailboxHash(request.Mailbox!);
            sealedMailbox = secrets.Seal(request.Mailbox!.Trim(), MailboxSource.SealPurpose);
        }

        var style = NotificationStyle.Badge;
        if (request.Style is not null && !Wire.TryParseStyle(request.Style, out style))
        {
            return Problems.BadRequest("'style' must be one of badge, generic, preview, preview-encrypted.");
        }

        if (style.WantsPreview() && source is SourceKind.EwsPush or SourceKind.None)
        {
            return Problems.BadRequest($"Style '{Wire.Name(style)}' needs a source that provides subject and sender (ews-streaming, graph, dovecot); EWS push notifications carry neither. Use 'badge' or 'generic'.");
        }

        if (!EncryptionKeys.TryParse(request.EncryptionKey, out var encryptionKey, out var keyError))
        {
            return keyError!;
        }

        if (EncryptionKeys.StyleError(style, encryptionKey) is { } styleKeyError)
        {
            return styleKeyError;
        }

        if (!Validation.TryFolders(request.Folders, MaxFolders, out var folders, out var folderError))
        {
            return Problems.BadRequest(folderError);
        }

        var locale = request.Locale ?? "en";
        if (!Validation.IsLocale(locale))
        {
            return Problems.BadRequest("'locale' must be a language tag such as 'en' or 'ja-JP'.");
        }

        var now = time.GetUtcNow();
        var registration = new Registration
        {
            Id = "reg_" + Guid.CreateVersion7().ToString("N"),
            TenantId = caller.TenantId,
            Platform = platform,
            Token = token,
            Topic = topic,
            Environment = environment,
            Source = source,
            Style = style,
            Folders = folders,
            Locale = locale,
            Status = RegistrationStatus.Active,
            Connector = connectorName,
            MailboxHash = mailboxHash,
            SealedMailbox = sealedMailbox,
            EncryptionKey = encryptionKey,
            CreatedAt = now,
            UpdatedAt = now,
        };

        string? callbackUrl = null;
        byte[]? keyHash = null;
        if (source == SourceKind.EwsPush)
        {
            // 192 random bits: the URL itself is the credential, since Exchange sends no Authorization.
            var key = Secrets.NewKey(string.Empty, 24);
            keyHash = Secrets.Hash(key);
            callbackUrl = urls.EwsCallback(key);
        }

        await store.CreateAsync(registration, keyHash, cancellationToken);
        changes.Notify(registration); // its source's worker picks the mailbox up now
        return TypedResults.Created("/v1/registrations/" + registration.Id, ToResponse(registration, callbackUrl));
    }

    private static async Task<IResult> GetAsync(string id, HttpContext http, IRegistrationStore store, CancellationToken cancellationToken)
    {
        var caller = CallerContext.Get(http);
        var registration = await store.GetAsync(caller.TenantId, id, cancellationToken);
        return registration is null
            ? Problems.NotFound($"No registration '{Validation.Printable(id)}' in this tenant.")
            : TypedResults.Ok(ToResponse(registration, null));
    }

    private static async Task<IResult> PatchAsync(string id, HttpContext http, IRegistrationStore store, IOptions<ApnsOptions> apns, IOptions<WnsOptions> wns, RegistrationChanges changes, TimeProvider time, CancellationToken cancellationToken)
    {
        var caller = CallerContext.Get(http);
        var body = await JsonBody.ReadAsync(http, HeraldJsonContext.Default.RegistrationPatch, cancellationToken);
        if (body.Error is not null)
        {
            return body.Error;
        }

        var patch = body.Value!;
        var registration = await store.GetAsync(caller.TenantId, id, cancellationToken);
        if (registration is null)
        {
            return Problems.NotFound($"No registration '{Validation.Printable(id)}' in this tenant.");
        }

        if (patch.Token is not null || patch.Topic is not null)
        {
            if (!Targets.TryNormalize(registration.Platform, patch.Token ?? registration.Token, patch.Topic ?? registration.Topic, apns.Value, wns.Value, out var token, out var topic, out var targetError))
            {
                return Problems.BadRequest(targetError);
            }

            if (token != registration.Token && registration.Status == RegistrationStatus.Inactive)
            {
                // A rotated token revives a registration whose old token died.
                registration.Status = RegistrationStatus.Active;
                registration.InactiveReason = null;
                registration.InactiveAt = null;
            }

            registration.Token = token;
            registration.Topic = topic;
        }

        if (patch.Environment is not null)
        {
            if (!Wire.TryParseEnvironment(patch.Environment, out var environment))
            {
                return Problems.BadRequest("'environment' must be 'production' or 'sandbox'.");
            }

            registration.Environment = environment;
        }

        if (patch.Style is not null)
        {
            if (!Wire.TryParseStyle(patch.Style, out var style))
            {
                return Problems.BadRequest("'style' must be one of badge, generic, preview, preview-encrypted.");
            }

            if (style.WantsPreview() && registration.Source == SourceKind.EwsPush)
            {
                return Problems.BadRequest($"Style '{Wire.Name(style)}' needs a source that provides subject and sender (ews-streaming, graph, dovecot); EWS push notifications carry neither.");
            }

            registration.Style = style;
        }

        if (patch.EncryptionKey is not null)
        {
            // Key rotation: pushes planned from now on are sealed for the new key.
            if (!EncryptionKeys.TryParse(patch.EncryptionKey, out var encryptionKey, out var keyError))
            {
                return keyError!;
            }

            registration.EncryptionKey = encryptionKey;
        }

        if (EncryptionKeys.StyleError(registration.Style, registration.EncryptionKey) is { } styleKeyError)
        {
            return styleKeyError;
        }

        if (patch.Folders is not null)
        {
            if (!Validation.TryFolders(patch.Folders, MaxFolders, out var folders, out var folderError))
            {
                return Problems.BadRequest(folderError);
            }

            registration.Folders = folders;
        }

        if (patch.Locale is not null)
        {
            if (!Validation.IsLocale(patch.Locale))
            {
                return Problems.BadRequest("'locale' must be a language tag such as 'en' or 'ja-JP'.");
            }

            registration.Locale = patch.Locale;
        }

        registration.UpdatedAt = time.GetUtcNow();
        if (!await store.UpdateAsync(registration, cancellationToken))
        {
            return Problems.NotFound($"No registration '{Validation.Printable(id)}' in this tenant.");
        }

        changes.Notify(registration); // a revived status or a new style matters to its source's worker
        return TypedResults.Ok(ToResponse(registration, null));
    }

    private static async Task<IResult> DeleteAsync(string id, HttpContext http, IRegistrationStore store, RegistrationChanges changes, TimeProvider time, CancellationToken cancellationToken)
    {
        var caller = CallerContext.Get(http);
        var registration = await store.GetAsync(caller.TenantId, id, cancellationToken); // its connector, for the change notice
        if (registration is null || !await store.DeleteAsync(caller.TenantId, id, time.GetUtcNow(), cancellationToken))
        {
            return Problems.NotFound($"No registration '{Validation.Printable(id)}' in this tenant.");
        }

        changes.Notify(registration); // its source's worker drops the mailbox now
        return TypedResults.NoContent();
    }

    internal static RegistrationResponse ToResponse(Registration r, string? callbackUrl) => new()
    {
        Id = r.Id,
        Status = Wire.Name(r.Status),
        InactiveReason = r.InactiveReason,
        InactiveAt = r.InactiveAt,
        CallbackUrl = callbackUrl,
        Platform = Wire.Name(r.Platform),
        TokenFingerprint = Redact.Token(r.Token),
        Topic = r.Topic,
        Environment = Wire.Name(r.Environment),
        Source = Wire.Name(r.Source),
        Connector = r.Connector,
        Style = Wire.Name(r.Style),
        EncryptionKey = EncryptionKeys.Show(r.EncryptionKey),
        Folders = r.Folders,
        Locale = r.Locale,
        SubscriptionBound = r.SubscriptionId is not null,
        UnreadCount = r.UnreadCount,
        LastEventAt = r.LastEventAt,
        LastPush = r.LastPushAt is null && r.LastPushResult is null ? null : new LastPushDto(r.LastPushAt, r.LastPushResult),
        CreatedAt = r.CreatedAt,
        UpdatedAt = r.UpdatedAt,
    };
}

/// <summary>Reads a JSON body with the size limit, content type and depth enforced, as a clear 4xx on failure.</summary>
internal static class JsonBody
{
    public readonly record struct Result<T>(T? Value, IResult? Error);

    public static async Task<Result<T>> ReadAsync<T>(HttpContext http, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> type, CancellationToken cancellationToken)
        where T : class
    {
        if (!http.Request.HasJsonContentType())
        {
            return new(null, TypedResults.Problem("The body must be JSON: send 'Content-Type: application/json'.", statusCode: StatusCodes.Status415UnsupportedMediaType, title: "Unsupported media type"));
        }

        try
        {
            var value = await JsonSerializer.DeserializeAsync(http.Request.Body, type, cancellationToken);
            return value is null ? new(null, Problems.BadRequest("The body must be a JSON object.")) : new(value, null);
        }
        catch (JsonException ex)
        {
            var where = ex.Path is null ? string.Empty : $" at {ex.Path}";
            return new(null, Problems.BadRequest($"The body is not valid JSON for this request{where} (line {ex.LineNumber + 1}, byte {ex.BytePositionInLine})."));
        }
    }
}
