using Herald.Core.Registrations;
using Herald.Providers.Apns;
using Herald.Providers.Wns;

namespace Herald.Server.Endpoints;

/// <summary>
/// The device address rules of each platform, shared by registrations and direct sends:
/// APNs hex tokens, FCM registration tokens, and WNS channel URIs (checked against the allow-list here,
/// before anything is stored, as well as at send time).
/// </summary>
internal static class Targets
{
    public static bool TryNormalize(
        Platform platform,
        string? rawToken,
        string? rawTopic,
        ApnsOptions apns,
        WnsOptions wns,
        out string token,
        out string topic,
        out string error)
    {
        token = string.Empty;
        topic = string.Empty;
        switch (platform)
        {
            case Platform.Apns:
                if (!Validation.TryNormalizeApnsToken(rawToken, out token, out error))
                {
                    return false;
                }

                topic = rawTopic ?? apns.Topic ?? string.Empty;
                if (!Validation.IsTopic(topic))
                {
                    error = rawTopic is null
                        ? "'topic' is required (no default topic is configured: Herald:Apns:Topic)."
                        : "'topic' must be a bundle id of letters, digits, '.', '-' or '_' (at most 255 characters).";
                    return false;
                }

                return true;

            case Platform.Fcm:
                if (string.IsNullOrEmpty(rawToken) || rawToken.Length > 4096 || !rawToken.All(c => char.IsAsciiLetterOrDigit(c) || c is ':' or '_' or '-' or '.'))
                {
                    error = "'token' must be an FCM registration token (letters, digits, ':', '_', '-', '.'; at most 4096 characters).";
                    return false;
                }

                token = rawToken;
                topic = rawTopic ?? string.Empty; // the FCM project id; empty = the service account's project
                if (topic.Length > 64 || !topic.All(c => char.IsAsciiLetterLower(c) || char.IsAsciiDigit(c) || c == '-'))
                {
                    error = "'topic' for fcm is the Firebase project id (lower-case letters, digits and '-').";
                    return false;
                }

                error = string.Empty;
                return true;

            case Platform.Wns:
                var verdict = WnsChannelPolicy.FromOptions(wns).Check(rawToken, out var uri);
                if (verdict != WnsChannelVerdict.Allowed || uri is null)
                {
                    error = verdict switch
                    {
                        WnsChannelVerdict.Malformed => "'token' for wns must be the channel URI (absolute, at most 2048 characters).",
                        WnsChannelVerdict.SchemeNotAllowed => "'token' for wns must be an https:// channel URI.",
                        WnsChannelVerdict.UserInfoNotAllowed => "'token' for wns must not carry user information.",
                        _ => "'token' for wns must be a channel URI on an allowed host (Herald:Wns:AllowedChannelHosts, default *.notify.windows.com).",
                    };
                    return false;
                }

                token = uri.AbsoluteUri;
                topic = rawTopic ?? string.Empty; // the WNS package, informational
                if (topic.Length > 255)
                {
                    error = "'topic' for wns must be at most 255 characters.";
                    return false;
                }

                error = string.Empty;
                return true;

            default:
                error = "'platform' must be one of apns, fcm, wns.";
                return false;
        }
    }
}
