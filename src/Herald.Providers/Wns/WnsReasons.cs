using Herald.Core.Notifications;

namespace Herald.Providers.Wns;

/// <summary>
/// The <see cref="PushResult.Reason"/> strings of the WNS provider, and the mapping of WNS answers to
/// Herald's outcomes (PROTOCOLS.md, WNS).
/// </summary>
/// <remarks>
/// <list type="table">
/// <listheader><term>WNS answer</term><description>outcome (reason)</description></listheader>
/// <item><term>200, status received (or none)</term><description>Sent</description></item>
/// <item><term>200, status dropped</term><description>Sent (Dropped): WNS accepted the request and the channel is
/// valid, but discarded the notification (a toast to an offline device, or the client refused it). Sending it
/// again would be dropped again, so it is not retried.</description></item>
/// <item><term>200, status channelthrottled</term><description>Retry (ChannelThrottled), after X-WNS-CONTINUE-AFTER</description></item>
/// <item><term>3xx</term><description>Failed (Redirected): redirects are never followed</description></item>
/// <item><term>400</term><description>Failed (BadRequest)</description></item>
/// <item><term>401</term><description>renew the token and resend once; then CredentialFault (Unauthorized)</description></item>
/// <item><term>403</term><description>CredentialFault (Forbidden): the token's app does not own the channel</description></item>
/// <item><term>404 / 410</term><description>TokenInvalid (ChannelNotFound / ChannelExpired)</description></item>
/// <item><term>405</term><description>Failed (MethodNotAllowed)</description></item>
/// <item><term>406</term><description>Retry (Throttled), honouring Retry-After or X-WNS-CONTINUE-AFTER</description></item>
/// <item><term>413</term><description>Failed (PayloadTooLarge)</description></item>
/// <item><term>429</term><description>Retry (TooManyRequests)</description></item>
/// <item><term>5xx</term><description>Retry (ServerError, ServiceUnavailable)</description></item>
/// <item><term>other</term><description>Failed (UnexpectedStatus)</description></item>
/// </list>
/// </remarks>
public static class WnsReasons
{
    /// <summary>No credential is configured for the tenant and topic (CredentialFault).</summary>
    public const string NoCredential = "NoCredential";

    /// <summary>The token endpoint refused the credential: 4xx, e.g. <c>invalid_client</c> (CredentialFault).</summary>
    public const string AuthFailed = "AuthFailed";

    /// <summary>The token endpoint is unreachable, timed out or failed with 5xx/429 (Retry: an outage, not the credential's fault).</summary>
    public const string AuthUnavailable = "AuthUnavailable";

    /// <summary>The credential's circuit is open (it was refused moments ago); the send waits in retry without a round trip (CredentialFault).</summary>
    public const string CredentialPaused = "CredentialPaused";

    /// <summary>WNS answered 401 again after a token renewal (CredentialFault).</summary>
    public const string Unauthorized = "Unauthorized";

    /// <summary>WNS answered 403: the credential's app does not own the channel (CredentialFault).</summary>
    public const string Forbidden = "Forbidden";

    /// <summary>The channel URI's scheme, user information, host or port is not allowed; nothing was sent (Failed).</summary>
    public const string ChannelHostNotAllowed = "ChannelHostNotAllowed";

    /// <summary>The channel URI is not an absolute URI; nothing was sent (Failed).</summary>
    public const string ChannelUriInvalid = "ChannelUriInvalid";

    /// <summary>MDM wake-ups exist only on APNs (Failed).</summary>
    public const string MdmNotSupportedOnWns = "MdmNotSupportedOnWns";

    /// <summary>The payload exceeds 5,000 bytes (Failed, status 413; refused locally without sending).</summary>
    public const string PayloadTooLarge = "PayloadTooLarge";

    /// <summary>WNS answered 400 (Failed).</summary>
    public const string BadRequest = "BadRequest";

    /// <summary>WNS answered 404: the channel is unknown (TokenInvalid).</summary>
    public const string ChannelNotFound = "ChannelNotFound";

    /// <summary>WNS answered 410: the channel expired (TokenInvalid).</summary>
    public const string ChannelExpired = "ChannelExpired";

    /// <summary>WNS answered 405 (Failed).</summary>
    public const string MethodNotAllowed = "MethodNotAllowed";

    /// <summary>WNS answered 406: the cloud service exceeded its throttle limit (Retry).</summary>
    public const string Throttled = "Throttled";

    /// <summary>WNS answered 200 with status channelthrottled: this channel's rate limit (Retry).</summary>
    public const string ChannelThrottled = "ChannelThrottled";

    /// <summary>WNS answered 200 with status dropped (Sent; see the remarks).</summary>
    public const string Dropped = "Dropped";

    /// <summary>The channel host answered a redirect, which is never followed (Failed).</summary>
    public const string Redirected = "Redirected";

    /// <summary>WNS answered 429 (Retry).</summary>
    public const string TooManyRequests = "TooManyRequests";

    /// <summary>WNS answered 500 or another 5xx but 503 (Retry).</summary>
    public const string ServerError = "ServerError";

    /// <summary>WNS answered 503 (Retry).</summary>
    public const string ServiceUnavailable = "ServiceUnavailable";

    /// <summary>WNS answered a status it does not document (Failed).</summary>
    public const string UnexpectedStatus = "UnexpectedStatus";

    /// <summary>The request timed out (Retry).</summary>
    public const string Timeout = "Timeout";

    /// <summary>Connection refused or reset, TLS failure (Retry).</summary>
    public const string Transport = "Transport";

    /// <summary>Maps a WNS answer to Herald's outcome: the table in the remarks.</summary>
    public static PushResult Map(int status, string? notificationStatus, TimeSpan? retryAfter)
    {
        if (status == 200)
        {
            if (string.Equals(notificationStatus, "channelthrottled", StringComparison.OrdinalIgnoreCase))
            {
                return new PushResult(PushOutcome.Retry, status, ChannelThrottled, retryAfter);
            }

            return string.Equals(notificationStatus, "dropped", StringComparison.OrdinalIgnoreCase)
                ? new PushResult(PushOutcome.Sent, status, Dropped)
                : PushResult.Ok(status);
        }

        var (outcome, reason) = status switch
        {
            >= 300 and < 400 => (PushOutcome.Failed, Redirected),
            400 => (PushOutcome.Failed, BadRequest),
            401 => (PushOutcome.CredentialFault, Unauthorized),
            403 => (PushOutcome.CredentialFault, Forbidden),
            404 => (PushOutcome.TokenInvalid, ChannelNotFound),
            405 => (PushOutcome.Failed, MethodNotAllowed),
            406 => (PushOutcome.Retry, Throttled),
            410 => (PushOutcome.TokenInvalid, ChannelExpired),
            413 => (PushOutcome.Failed, PayloadTooLarge),
            429 => (PushOutcome.Retry, TooManyRequests),
            503 => (PushOutcome.Retry, ServiceUnavailable),
            >= 500 and < 600 => (PushOutcome.Retry, ServerError),
            _ => (PushOutcome.Failed, UnexpectedStatus),
        };

        return new PushResult(outcome, status, reason, outcome == PushOutcome.Retry ? retryAfter : null);
    }
}
