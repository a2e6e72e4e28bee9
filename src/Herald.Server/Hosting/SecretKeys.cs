using Herald.Core.Security;

namespace Herald.Server.Hosting;

/// <summary>Finds the secret key ring for <see cref="SecretBox"/>: configured file, environment variable, or a file beside an SQLite database.</summary>
public static class SecretKeys
{
    /// <summary>The environment variable holding one base64 key when no key file is configured.</summary>
    public const string EnvironmentVariable = "HERALD_SECRET_KEY";

    /// <summary>Loads (or, for a fresh SQLite install, creates) the key ring.</summary>
    /// <exception cref="InvalidOperationException">No key is configured for a PostgreSQL farm, or the key file is unreadable.</exception>
    public static SecretBox Load(HeraldOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (!string.IsNullOrWhiteSpace(options.SecretKeyFile))
        {
            return FromFile(options.SecretKeyFile, create: false);
        }

        var fromEnvironment = Environment.GetEnvironmentVariable(EnvironmentVariable);
        if (!string.IsNullOrWhiteSpace(fromEnvironment))
        {
            try
            {
                return new SecretBox([SecretKeyRing.ParseKey("env", fromEnvironment, EnvironmentVariable)]);
            }
            catch (FormatException e)
            {
                throw new InvalidOperationException(e.Message, e);
            }
        }

        if (options.Database.StartsWith("sqlite:", StringComparison.OrdinalIgnoreCase))
        {
            var dbPath = options.Database["sqlite:".Length..];
            return FromFile(Path.GetFullPath(dbPath) + ".keys", create: true);
        }

        throw new InvalidOperationException(
            $"Herald:SecretKeyFile or {EnvironmentVariable} must be set for a shared database: every node needs the same key ring to open stored credentials.");
    }

    private static SecretBox FromFile(string path, bool create)
    {
        if (create && !File.Exists(path))
        {
            var ring = SecretKeyRing.Format([SecretKey.Generate("k1")]);
            var directory = Path.GetDirectoryName(path);
            if (!string.IsNullOrEmpty(directory))
            {
                Directory.CreateDirectory(directory);
            }

            var fileOptions = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write };
            if (!OperatingSystem.IsWindows())
            {
                fileOptions.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
            }

            try
            {
                using var writer = new StreamWriter(path, System.Text.Encoding.ASCII, fileOptions);
                writer.Write(ring);
            }
            catch (IOException) when (File.Exists(path))
            {
                // Another process created it first: use theirs.
            }
        }

        try
        {
            return new SecretBox(SecretKeyRing.Parse(File.ReadAllText(path)));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException)
        {
            throw new InvalidOperationException($"The secret key file {path} cannot be used: {e.Message}", e);
        }
    }
}
