namespace Herald.Core.Registrations;

/// <summary>Questions about <see cref="NotificationStyle"/> asked in several places.</summary>
public static class NotificationStyles
{
    /// <summary>Whether the style needs subject and sender from the source (preview, in clear or sealed for the device).</summary>
    public static bool WantsPreview(this NotificationStyle style) => style is NotificationStyle.Preview or NotificationStyle.PreviewEncrypted;

    /// <summary>Whether the style shows an alert on new mail (generic, preview, or preview-encrypted with its generic fallback).</summary>
    public static bool ShowsAlert(this NotificationStyle style) => style is NotificationStyle.Generic or NotificationStyle.Preview or NotificationStyle.PreviewEncrypted;
}
