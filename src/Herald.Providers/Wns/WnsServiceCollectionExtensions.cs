using Herald.Core.Credentials;
using Herald.Core.Ports;
using Herald.Providers.Credentials;
using Herald.Providers.Http;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;

namespace Herald.Providers.Wns;

/// <summary>Registers the WNS provider with dependency injection.</summary>
public static class WnsServiceCollectionExtensions
{
    /// <summary>
    /// Registers <see cref="WnsProvider"/> as an <see cref="IPushProvider"/> with the single-credential source,
    /// the token client, the in-process token cache and the options validator. Bind the returned builder, e.g.
    /// <c>services.AddWnsProvider().BindConfiguration(WnsOptions.SectionName).ValidateOnStart()</c>.
    /// Replace <see cref="IWnsCredentialSource"/> or <see cref="IWnsTokenCache"/> by registering yours first.
    /// </summary>
    public static OptionsBuilder<WnsOptions> AddWnsProvider(this IServiceCollection services)
    {
        ArgumentNullException.ThrowIfNull(services);
        services.TryAddSingleton(TimeProvider.System);
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<WnsOptions>, WnsOptionsValidator>());
        services.TryAddSingleton<IWnsCredentialSource>(static sp =>
        {
            // Per-tenant credentials when the host keeps them (a CredentialRegistry), the configured one as fallback.
            var time = sp.GetRequiredService<TimeProvider>();
            var fallback = new OptionsWnsCredentialSource(sp.GetRequiredService<IOptions<WnsOptions>>(), time);
            return sp.GetService<CredentialRegistry>() is { } registry
                ? new TenantWnsCredentialSource(registry, fallback, sp.GetService<ILogger<TenantWnsCredentialSource>>(), time)
                : fallback;
        });
        services.TryAddSingleton<WnsTokenClient>();
        services.TryAddSingleton<IWnsTokenCache, WnsTokenCache>();
        services.TryAddSingleton<WnsProvider>();
        services.AddSingleton<IPushProvider>(static sp => sp.GetRequiredService<WnsProvider>());
        var builder = services.AddOptions<WnsOptions>();
        builder.PostConfigure<IOptions<OutboundProxyOptions>>(static (o, proxy) => o.Proxy ??= proxy.Value.IsEnabled ? proxy.Value : null);
        return builder;
    }
}
