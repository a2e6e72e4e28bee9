using Herald.Core.Ports;
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
        services.TryAddSingleton<IWnsCredentialSource, OptionsWnsCredentialSource>();
        services.TryAddSingleton<WnsTokenClient>();
        services.TryAddSingleton<IWnsTokenCache, WnsTokenCache>();
        services.TryAddSingleton<WnsProvider>();
        services.AddSingleton<IPushProvider>(static sp => sp.GetRequiredService<WnsProvider>());
        return services.AddOptions<WnsOptions>();
    }
}
