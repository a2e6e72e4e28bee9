namespace Herald.Core.Settings;

/// <summary>
/// The provider connection settings in force now (<see cref="ConnectionSettings"/>), read on every use so a change saved
/// through <c>/v1/admin/settings</c> applies without a restart. <see cref="SettingsMonitor"/> is the implementation.
/// </summary>
public interface ILiveConnectionSettings
{
    /// <summary>The idle time before a provider connection closes, or null for the provider's configured one.</summary>
    TimeSpan? IdleTimeout { get; }
}
