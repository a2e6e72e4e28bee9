using System.Text.Json;

namespace Herald.Providers.Apns;

/// <summary>The reason strings APNs answers with, plus the few Herald adds for sends it refuses itself.</summary>
public static class ApnsReasons
{
#pragma warning disable CS1591 // The names are Apple's reasons; PROTOCOLS.md documents each.
    public const string BadCollapseId = nameof(BadCollapseId);
    public const string BadDeviceToken = nameof(BadDeviceToken);
    public const string BadExpirationDate = nameof(BadExpirationDate);
    public const string BadMessageId = nameof(BadMessageId);
    public const string BadPriority = nameof(BadPriority);
    public const string BadTopic = nameof(BadTopic);
    public const string DeviceTokenNotForTopic = nameof(DeviceTokenNotForTopic);
    public const string DuplicateHeaders = nameof(DuplicateHeaders);
    public const string IdleTimeout = nameof(IdleTimeout);
    public const string InvalidPushType = nameof(InvalidPushType);
    public const string MissingDeviceToken = nameof(MissingDeviceToken);
    public const string MissingTopic = nameof(MissingTopic);
    public const string PayloadEmpty = nameof(PayloadEmpty);
    public const string TopicDisallowed = nameof(TopicDisallowed);
    public const string BadCertificate = nameof(BadCertificate);
    public const string BadCertificateEnvironment = nameof(BadCertificateEnvironment);
    public const string ExpiredProviderToken = nameof(ExpiredProviderToken);
    public const string Forbidden = nameof(Forbidden);
    public const string InvalidProviderToken = nameof(InvalidProviderToken);
    public const string MissingProviderToken = nameof(MissingProviderToken);
    public const string UnrelatedKeyIdInToken = nameof(UnrelatedKeyIdInToken);
    public const string BadPath = nameof(BadPath);
    public const string MethodNotAllowed = nameof(MethodNotAllowed);
    public const string ExpiredToken = nameof(ExpiredToken);
    public const string Unregistered = nameof(Unregistered);
    public const string PayloadTooLarge = nameof(PayloadTooLarge);
    public const string TooManyProviderTokenUpdates = nameof(TooManyProviderTokenUpdates);
    public const string TooManyRequests = nameof(TooManyRequests);
    public const string InternalServerError = nameof(InternalServerError);
    public const string ServiceUnavailable = nameof(ServiceUnavailable);
    public const string Shutdown = nameof(Shutdown);
#pragma warning restore CS1591

    /// <summary>Herald: an MDM push needs a certificate credential; token auth cannot send it.</summary>
    public const string MdmRequiresCertificate = nameof(MdmRequiresCertificate);

    /// <summary>Herald: no APNs credential is configured for the tenant and topic.</summary>
    public const string NoCredential = nameof(NoCredential);

    /// <summary>Herald: the request failed on the wire (connection refused or reset, GOAWAY, TLS, I/O).</summary>
    public const string Transport = nameof(Transport);

    /// <summary>
    /// Herald: APNs refused the stream (RST_STREAM REFUSED_STREAM) on every send, SocketsHttpHandler's and Herald's resends
    /// included; it was not processed, so it is a retry.
    /// </summary>
    public const string RefusedStream = nameof(RefusedStream);

    /// <summary>Herald: APNs did not answer within <see cref="ApnsOptions.RequestTimeout"/>.</summary>
    public const string Timeout = nameof(Timeout);

    /// <summary>Herald: the notification has no topic and no default topic is configured.</summary>
    public const string NoTopic = nameof(NoTopic);

    /// <summary>Herald: an MDM notification without its PushMagic.</summary>
    public const string MissingPushMagic = nameof(MissingPushMagic);

    /// <summary>Herald: the certificate credential is expired (or not yet valid); it was not presented to APNs.</summary>
    public const string CertificateExpired = nameof(CertificateExpired);

    /// <summary>Herald: the credential's circuit is open after a fault; the send waits for the next probe.</summary>
    public const string CredentialPaused = nameof(CredentialPaused);

    /// <summary>Herald: the credential kind is not supported by this provider.</summary>
    public const string UnsupportedCredential = nameof(UnsupportedCredential);

    // Known reasons, so parsing an error body does not allocate a string for them.
    private static readonly string[] Known =
    [
        BadCollapseId, BadDeviceToken, BadExpirationDate, BadMessageId, BadPriority, BadTopic,
        DeviceTokenNotForTopic, DuplicateHeaders, IdleTimeout, InvalidPushType, MissingDeviceToken,
        MissingTopic, PayloadEmpty, TopicDisallowed, BadCertificate, BadCertificateEnvironment,
        ExpiredProviderToken, Forbidden, InvalidProviderToken, MissingProviderToken, UnrelatedKeyIdInToken,
        BadPath, MethodNotAllowed, ExpiredToken, Unregistered, PayloadTooLarge, TooManyProviderTokenUpdates,
        TooManyRequests, InternalServerError, ServiceUnavailable, Shutdown,
    ];

    /// <summary>
    /// Parses an APNs error body <c>{"reason":"...","timestamp":ms}</c> without reflection. Unknown or
    /// malformed bodies give a null reason; the status alone then decides.
    /// </summary>
    internal static void ParseError(ReadOnlySpan<byte> body, out string? reason, out DateTimeOffset? timestamp)
    {
        reason = null;
        timestamp = null;
        if (body.IsEmpty)
        {
            return;
        }

        try
        {
            var reader = new Utf8JsonReader(body);
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
            {
                return;
            }

            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                if (reader.ValueTextEquals("reason"u8))
                {
                    reader.Read();
                    if (reader.TokenType == JsonTokenType.String)
                    {
                        reason = Intern(ref reader);
                    }
                }
                else if (reader.ValueTextEquals("timestamp"u8))
                {
                    reader.Read();
                    long ms;
                    if ((reader.TokenType == JsonTokenType.Number && reader.TryGetInt64(out ms))
                        || (reader.TokenType == JsonTokenType.String && long.TryParse(reader.GetString(), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out ms)))
                    {
                        if (ms is >= 0 and <= 253402300799999)
                        {
                            timestamp = DateTimeOffset.FromUnixTimeMilliseconds(ms);
                        }
                    }
                }
                else
                {
                    reader.Read();
                    reader.Skip();
                }
            }
        }
        catch (JsonException)
        {
            // A truncated or foreign body (a proxy's error page): keep what was read.
        }
    }

    private static string Intern(ref Utf8JsonReader reader)
    {
        foreach (var known in Known)
        {
            if (reader.ValueTextEquals(known))
            {
                return known;
            }
        }

        return reader.GetString() ?? string.Empty;
    }
}
