using System.Globalization;
using System.Reflection;

namespace Herald.Storage.Sqlite;

/// <summary>One schema migration: an embedded <c>Sqlite/Migrations/NNNN_name.sql</c> script.</summary>
internal sealed record SqliteMigration(int Version, string Name, string Script);

/// <summary>The numbered migration scripts embedded in this assembly, in order (unique numbers; each is applied once, by number).</summary>
internal static class SqliteMigrations
{
    private const string ResourcePrefix = "Herald.Storage.Sqlite.Migrations.";

    public static IReadOnlyList<SqliteMigration> All { get; } = Load();

    private static SqliteMigration[] Load()
    {
        var assembly = typeof(SqliteMigrations).Assembly;
        var migrations = new List<SqliteMigration>();
        foreach (var resource in assembly.GetManifestResourceNames())
        {
            if (!resource.StartsWith(ResourcePrefix, StringComparison.Ordinal) || !resource.EndsWith(".sql", StringComparison.Ordinal))
            {
                continue;
            }

            var name = resource[ResourcePrefix.Length..^".sql".Length];
            var underscore = name.IndexOf('_', StringComparison.Ordinal);
            if (underscore <= 0 || !int.TryParse(name.AsSpan(0, underscore), NumberStyles.None, CultureInfo.InvariantCulture, out var version) || version <= 0)
            {
                throw new InvalidOperationException($"Migration resource '{resource}' is not named NNNN_name.sql.");
            }

            migrations.Add(new SqliteMigration(version, name, Read(assembly, resource)));
        }

        migrations.Sort(static (a, b) => a.Version.CompareTo(b.Version));
        for (var i = 1; i < migrations.Count; i++)
        {
            if (migrations[i].Version == migrations[i - 1].Version)
            {
                throw new InvalidOperationException($"Two migrations share version {migrations[i].Version}: '{migrations[i - 1].Name}' and '{migrations[i].Name}'.");
            }
        }

        return [.. migrations];
    }

    private static string Read(Assembly assembly, string resource)
    {
        using var stream = assembly.GetManifestResourceStream(resource)
            ?? throw new InvalidOperationException($"Migration resource '{resource}' cannot be read.");
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    }
}
