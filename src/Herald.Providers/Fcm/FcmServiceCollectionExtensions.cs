using Herald.Core.Credentials;
using Herald.Core.Ports;
using Herald.Providers.Credentials;
using Herald.Providers.Http;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;

namespace Herald.Providers.Fcm;

/// <summary>Registers the FCM provider with dependency injection.</summary>
public static class FcmServiceCollectionExtensions
{
    /// <summary>
    /// Registers <see cref="FcmProvider"/> as an <see cref="IPushProvider"/> with the single-account credential
    /// source, the in-process access-token cache and the options validator. Bind the returned builder, e.g.
    /// <c>services.AddFcmProvider().BindConfiguration(FcmOptions.SectionName).ValidateOnStart()</c>.
    /// Replace <see cref="IFcmCredentialSource"/> or <see cref="IFcmTokenCache"/> by registering yours first.
    /// </summary>
    public static OptionsBuilder<FcmOptions> AddFcmProvider(this IServiceCollection services)
    {
        ArgumentNullException.ThrowIfNull(services);
        services.TryAddSingleton(TimeProvider.System);
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<FcmOptions>, FcmOptionsValidator>());
        services.TryAddSingleton<IFcmCredentialSource>(static sp =>
        {
            // Per-tenant credentials when the host keeps them (a CredentialRegistry), the configured one as fallback.
            var time = sp.GetRequiredService<TimeProvider>();
            var fallback = new OptionsFcmCredentialSource(sp.GetRequiredService<IOptions<FcmOptions>>(), time);
            return sp.GetService<CredentialRegistry>() is { } registry
                ? new TenantFcmCredentialSource(registry, fallback, sp.GetService<ILogger<TenantFcmCredentialSource>>(), time)
                : fallback;
        });
        services.TryAddSingleton<IFcmTokenCache, FcmTokenCache>();
        services.TryAddSingleton<FcmProvider>();
        services.AddSingleton<IPushProvider>(static sp => sp.GetRequiredService<FcmProvider>());
        var builder = services.AddOptions<FcmOptions>();
        builder.PostConfigure<IOptions<OutboundProxyOptions>>(static (o, proxy) => o.Proxy ??= proxy.Value.IsEnabled ? proxy.Value : null);
        return builder;
    }
}
