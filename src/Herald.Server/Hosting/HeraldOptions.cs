using System.ComponentModel.DataAnnotations;

namespace Herald.Server.Hosting;

/// <summary>The <c>Herald</c> configuration section (CONTRACT §2).</summary>
public sealed class HeraldOptions
{
    public const string Section = "Herald";

    /// <summary><c>sqlite:PATH</c> or <c>postgres:&lt;connection string&gt;</c>.</summary>
    [Required]
    public string Database { get; set; } = "sqlite:herald.db";

    /// <summary>Externally reachable base URL; callback URLs are built from it. Defaults to the first listening address.</summary>
    public string? PublicBaseUrl { get; set; }

    /// <summary>Region name shown in health, admin and metrics.</summary>
    [Required]
    public string Region { get; set; } = "local";

    /// <summary>This node's name in a farm (default: host name).</summary>
    public string? NodeName { get; set; }

    /// <summary>Bootstrap admin key. If unset on first start, one is generated, stored hashed and printed once.</summary>
    public string? AdminApiKey { get; set; }

    /// <summary>
    /// The secret key ring file (one <c>id base64key</c> per line; the first seals, all open). Unset: the
    /// <c>HERALD_SECRET_KEY</c> environment variable (one base64 key), else, for SQLite only, a <c>.keys</c> file beside the
    /// database created on first start (mode 0600). A PostgreSQL farm must configure one or the other on every node.
    /// </summary>
    public string? SecretKeyFile { get; set; }

    /// <summary>The largest request body accepted, in bytes (larger ones get 413).</summary>
    [Range(4096, 64 * 1024 * 1024)]
    public int MaxRequestBodyBytes { get; set; } = 1024 * 1024;
}
