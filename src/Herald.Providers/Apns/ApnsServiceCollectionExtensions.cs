using Herald.Core.Ports;
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
        services.TryAddSingleton<IApnsCredentialSource, OptionsApnsCredentialSource>();
        services.TryAddSingleton<IApnsTokenCache, ApnsTokenCache>();
        services.TryAddSingleton<ApnsProvider>();
        services.AddSingleton<IPushProvider>(static sp => sp.GetRequiredService<ApnsProvider>());
        return services.AddOptions<ApnsOptions>();
    }
}
