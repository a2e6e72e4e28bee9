namespace Herald.Core.Planning;

/// <summary>The few user-visible strings Herald itself writes, by locale.</summary>
public static class Localization
{
    /// <summary>The generic alert body for new mail, in the registration's language (English fallback).</summary>
    public static string NewMail(string? locale) => Language(locale) switch
    {
        "ja" => "新着メール",
        "de" => "Neue E-Mail",
        "fr" => "Nouveau message",
        "es" => "Correo nuevo",
        "zh" => "新邮件",
        "ko" => "새 메일",
        _ => "New mail",
    };

    private static string Language(string? locale)
    {
        if (string.IsNullOrEmpty(locale))
        {
            return "en";
        }

        var dash = locale.IndexOfAny(['-', '_']);
        return (dash > 0 ? locale[..dash] : locale).ToLowerInvariant();
    }
}
