using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.Options;

namespace Herald.Server.Hosting;

/// <summary>Builds the URLs that mail systems call, from <c>Herald:PublicBaseUrl</c> or the first listening address.</summary>
public sealed class PublicUrls(IOptions<HeraldOptions> options, IServer server)
{
    /// <summary>The externally reachable base URL, without a trailing slash.</summary>
    public string Base
    {
        get
        {
            var configured = options.Value.PublicBaseUrl;
            if (!string.IsNullOrWhiteSpace(configured))
            {
                return configured.TrimEnd('/');
            }

            var first = server.Features.Get<IServerAddressesFeature>()?.Addresses.FirstOrDefault();
            return (first ?? "http://127.0.0.1:8080").TrimEnd('/');
        }
    }

    /// <summary>The EWS push callback URL for a registration's key.</summary>
    public string EwsCallback(string key) => Base + "/ews/notify/" + key;
}
