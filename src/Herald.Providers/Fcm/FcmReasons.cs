using System.Text.Json;

namespace Herald.Providers.Fcm;

/// <summary>
/// FCM's error codes (<c>details[].errorCode</c> of type <c>google.firebase.fcm.v1.FcmError</c>), the canonical
/// Google statuses (<c>error.status</c>) FCM answers with, and the reasons Herald adds for sends it refuses itself.
/// </summary>
public static class FcmReasons
{
    /// <summary>The <c>@type</c> of FCM's error detail.</summary>
    public const string FcmErrorType = "type.googleapis.com/google.firebase.fcm.v1.FcmError";

#pragma warning disable CS1591 // The names are FCM's and Google's; PROTOCOLS.md documents their handling.
    // FcmError.errorCode
    public const string UnspecifiedError = "UNSPECIFIED_ERROR";
    public const string InvalidArgument = "INVALID_ARGUMENT";
    public const string Unregistered = "UNREGISTERED";
    public const string SenderIdMismatch = "SENDER_ID_MISMATCH";
    public const string QuotaExceeded = "QUOTA_EXCEEDED";
    public const string Unavailable = "UNAVAILABLE";
    public const string Internal = "INTERNAL";
    public const string ThirdPartyAuthError = "THIRD_PARTY_AUTH_ERROR";

    /// <summary>The former name of <see cref="ThirdPartyAuthError"/>.</summary>
    public const string ApnsAuthError = "APNS_AUTH_ERROR";

    // error.status (google.rpc.Code names) without an FcmError detail
    public const string Unauthenticated = "UNAUTHENTICATED";
    public const string PermissionDenied = "PERMISSION_DENIED";
    public const string NotFound = "NOT_FOUND";
    public const string ResourceExhausted = "RESOURCE_EXHAUSTED";
#pragma warning restore CS1591

    /// <summary>Herald: no service account is configured for the tenant and project.</summary>
    public const string NoCredential = nameof(NoCredential);

    /// <summary>Herald: the token endpoint refused the service account (<c>invalid_grant</c>, …) or its key cannot sign.</summary>
    public const string AuthFailed = nameof(AuthFailed);

    /// <summary>Herald: no access token could be obtained because the token endpoint is unavailable (retry later).</summary>
    public const string AuthUnavailable = nameof(AuthUnavailable);

    /// <summary>Herald: the account's circuit is open (it was refused moments ago); the send waits in retry without a round trip.</summary>
    public const string CredentialPaused = nameof(CredentialPaused);

    /// <summary>Herald: the request failed on the wire (connection refused or reset, GOAWAY, TLS, I/O).</summary>
    public const string Transport = nameof(Transport);

    /// <summary>Herald: FCM did not answer within <see cref="FcmOptions.RequestTimeout"/>.</summary>
    public const string Timeout = nameof(Timeout);

    /// <summary>Herald: the notification names no project and the service account has no <c>project_id</c>.</summary>
    public const string NoProject = nameof(NoProject);

    /// <summary>Herald: the notification has no registration token.</summary>
    public const string MissingToken = nameof(MissingToken);

    /// <summary>Herald: the message exceeds FCM's 4096-byte limit.</summary>
    public const string MessageTooBig = nameof(MessageTooBig);

    /// <summary>Herald: MDM wake-ups are an Apple mechanism; FCM cannot carry them.</summary>
    public const string MdmNotSupportedOnFcm = nameof(MdmNotSupportedOnFcm);

    private static readonly string[] Known =
    [
        UnspecifiedError, InvalidArgument, Unregistered, SenderIdMismatch, QuotaExceeded, Unavailable, Internal,
        ThirdPartyAuthError, ApnsAuthError, Unauthenticated, PermissionDenied, NotFound, ResourceExhausted,
    ];

    /// <summary>
    /// Parses Google's error body <c>{"error":{"code","message","status","details":[{"@type","errorCode"}]}}</c>
    /// without reflection. Missing parts stay null; a malformed or foreign body (a proxy's page) gives nulls.
    /// </summary>
    internal static void ParseError(ReadOnlySpan<byte> body, out string? status, out string? errorCode, out string? message)
    {
        status = null;
        errorCode = null;
        message = null;
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
                if (!reader.ValueTextEquals("error"u8))
                {
                    reader.Read();
                    reader.Skip();
                    continue;
                }

                reader.Read();
                if (reader.TokenType != JsonTokenType.StartObject)
                {
                    reader.Skip();
                    continue;
                }

                ReadError(ref reader, ref status, ref errorCode, ref message);
            }
        }
        catch (JsonException)
        {
            // A truncated body: keep what was read.
        }
    }

    private static void ReadError(ref Utf8JsonReader reader, ref string? status, ref string? errorCode, ref string? message)
    {
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            if (reader.ValueTextEquals("status"u8))
            {
                reader.Read();
                if (reader.TokenType == JsonTokenType.String)
                {
                    status = Intern(ref reader);
                }
            }
            else if (reader.ValueTextEquals("message"u8))
            {
                reader.Read();
                if (reader.TokenType == JsonTokenType.String)
                {
                    message = reader.GetString();
                }
            }
            else if (reader.ValueTextEquals("details"u8))
            {
                reader.Read();
                if (reader.TokenType != JsonTokenType.StartArray)
                {
                    reader.Skip();
                    continue;
                }

                while (reader.Read() && reader.TokenType == JsonTokenType.StartObject)
                {
                    var code = ReadDetail(ref reader);
                    errorCode ??= code;
                }
            }
            else
            {
                reader.Read();
                reader.Skip();
            }
        }
    }

    /// <summary>Reads one <c>details</c> entry; returns its errorCode when it is an FcmError.</summary>
    private static string? ReadDetail(ref Utf8JsonReader reader)
    {
        var isFcmError = false;
        string? code = null;
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            if (reader.ValueTextEquals("@type"u8))
            {
                reader.Read();
                isFcmError = reader.TokenType == JsonTokenType.String && reader.ValueTextEquals(FcmErrorType);
            }
            else if (reader.ValueTextEquals("errorCode"u8))
            {
                reader.Read();
                if (reader.TokenType == JsonTokenType.String)
                {
                    code = Intern(ref reader);
                }
            }
            else
            {
                reader.Read();
                reader.Skip();
            }
        }

        return isFcmError ? code : null;
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
