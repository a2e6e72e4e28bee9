using Herald.Core.Credentials;
using Herald.Core.Ports;
using Herald.Providers.Credentials;
using Herald.Providers.Http;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;

namespace Herald.Providers.Apns;

/// <summary>Registers the APNs provider with dependency injection.</summary>
public static class ApnsServiceCollectionExtensions
{
    /// <summary>
    /// Registers <see cref="ApnsProvider"/> as an <see cref="IPushProvider"/> with the single-credential
    /// source, the in-process token cache and the options validator. Bind the returned builder, e.g.
    /// <c>services.AddApnsProvider().BindConfiguration(ApnsOptions.SectionName).ValidateOnStart()</c>.
    /// Replace <see cref="IApnsCredentialSource"/> or <see cref="IApnsTokenCache"/> by registering yours first.
    /// </summary>
    public static OptionsBuilder<ApnsOptions> AddApnsProvider(this IServiceCollection services)
    {
        ArgumentNullException.ThrowIfNull(services);
        services.TryAddSingleton(TimeProvider.System);
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<ApnsOptions>, ApnsOptionsValidator>());
        services.TryAddSingleton<IApnsCredentialSource>(static sp =>
        {
            // Per-tenant credentials when the host keeps them (a CredentialRegistry), the configured ones as fallback.
            var time = sp.GetRequiredService<TimeProvider>();
            var fallback = new OptionsApnsCredentialSource(sp.GetRequiredService<IOptions<ApnsOptions>>(), time);
            return sp.GetService<CredentialRegistry>() is { } registry
                ? new TenantApnsCredentialSource(registry, fallback, time, sp.GetService<ILogger<TenantApnsCredentialSource>>())
                : fallback;
        });
        services.TryAddSingleton<IApnsTokenCache, ApnsTokenCache>();
        services.TryAddSingleton<ApnsProvider>();
        services.AddSingleton<IPushProvider>(static sp => sp.GetRequiredService<ApnsProvider>());
        var builder = services.AddOptions<ApnsOptions>();
        builder.PostConfigure<IOptions<OutboundProxyOptions>>(static (o, proxy) => o.Proxy ??= proxy.Value.IsEnabled ? proxy.Value : null);
        return builder;
    }
}
