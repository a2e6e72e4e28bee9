using Herald.Core.Registrations;

namespace Herald.Server.Json;

/// <summary>The API's spelling of domain enums (lower-case, as in CONTRACT §3).</summary>
internal static class Wire
{
    public static string Name(Platform p) => p switch
    {
        Platform.Apns => "apns",
        Platform.Fcm => "fcm",
        Platform.Wns => "wns",
        _ => p.ToString().ToLowerInvariant(),
    };

    public static bool TryParsePlatform(string? s, out Platform p)
    {
        switch (s)
        {
            case "apns": p = Platform.Apns; return true;
            case "fcm": p = Platform.Fcm; return true;
            case "wns": p = Platform.Wns; return true;
            default: p = default; return false;
        }
    }

    public static string Name(PushEnvironment e) => e == PushEnvironment.Sandbox ? "sandbox" : "production";

    public static bool TryParseEnvironment(string? s, out PushEnvironment e)
    {
        switch (s)
        {
            case "production": e = PushEnvironment.Production; return true;
            case "sandbox": e = PushEnvironment.Sandbox; return true;
            default: e = default; return false;
        }
    }

    public static string Name(SourceKind s) => s switch
    {
        SourceKind.None => "none",
        SourceKind.EwsPush => "ews-push",
        SourceKind.EwsStreaming => "ews-streaming",
        SourceKind.Graph => "graph",
        SourceKind.Dovecot => "dovecot",
        _ => s.ToString().ToLowerInvariant(),
    };

    public static bool TryParseSource(string? s, out SourceKind k)
    {
        switch (s)
        {
            case "none": k = SourceKind.None; return true;
            case "ews-push": k = SourceKind.EwsPush; return true;
            case "ews-streaming": k = SourceKind.EwsStreaming; return true;
            case "graph": k = SourceKind.Graph; return true;
            case "dovecot": k = SourceKind.Dovecot; return true;
            default: k = default; return false;
        }
    }

    public static string Name(NotificationStyle s) => s switch
    {
        NotificationStyle.Badge => "badge",
        NotificationStyle.Generic => "generic",
        NotificationStyle.Preview => "preview",
        NotificationStyle.PreviewEncrypted => "preview-encrypted",
        _ => s.ToString().ToLowerInvariant(),
    };

    public static bool TryParseStyle(string? s, out NotificationStyle k)
    {
        switch (s)
        {
            case "badge": k = NotificationStyle.Badge; return true;
            case "generic": k = NotificationStyle.Generic; return true;
            case "preview": k = NotificationStyle.Preview; return true;
            case "preview-encrypted": k = NotificationStyle.PreviewEncrypted; return true;
            default: k = default; return false;
        }
    }

    public static string Name(RegistrationStatus s) => s switch
    {
        RegistrationStatus.Active => "active",
        RegistrationStatus.Inactive => "inactive",
        RegistrationStatus.Deleted => "deleted",
        _ => s.ToString().ToLowerInvariant(),
    };
}
