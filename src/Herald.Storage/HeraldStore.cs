using Herald.Storage.Sqlite;
using Microsoft.Extensions.Logging;

namespace Herald.Storage;

/// <summary>Opens the store named by the <c>Herald:Database</c> setting.</summary>
public static class HeraldStore
{
    /// <summary>The <c>Herald:Database</c> default: a SQLite file in the working directory.</summary>
    public const string DefaultDatabase = "sqlite:herald.db";

    /// <summary>
    /// Opens <paramref name="database"/>: <c>sqlite:PATH</c> (a relative path is resolved against the
    /// working directory; missing folders are created). <c>postgres:…</c> is not available yet.
    /// The schema is not touched: call <see cref="Core.Ports.IStoreAdmin.MigrateAsync"/> next.
    /// </summary>
    /// <exception cref="ArgumentException">The value is empty or names no known database kind.</exception>
    /// <exception cref="NotSupportedException">The value names PostgreSQL.</exception>
    public static IHeraldStore Open(string database, TimeProvider time, ILoggerFactory loggerFactory)
    {
        ArgumentNullException.ThrowIfNull(time);
        ArgumentNullException.ThrowIfNull(loggerFactory);
        var (kind, target) = Parse(database);
        return kind switch
        {
            DatabaseKind.Sqlite => new SqliteStore(target, time, loggerFactory.CreateLogger<SqliteStore>()),
            _ => throw new NotSupportedException(
                "Herald:Database 'postgres:…' is not supported by this build yet (PostgreSQL storage is a later issue). " +
                "Use 'sqlite:PATH', for example '" + DefaultDatabase + "'."),
        };
    }

    /// <summary>Splits a <c>Herald:Database</c> value into its kind and its target (the path or connection string).</summary>
    internal static (DatabaseKind Kind, string Target) Parse(string database)
    {
        if (string.IsNullOrWhiteSpace(database))
        {
            throw new ArgumentException("Herald:Database is empty; expected 'sqlite:PATH' or 'postgres:CONNECTION STRING'.", nameof(database));
        }

        var colon = database.IndexOf(':', StringComparison.Ordinal);
        var scheme = colon > 0 ? database[..colon].Trim() : string.Empty;
        var target = colon > 0 ? database[(colon + 1)..].Trim() : string.Empty;
        if (scheme.Equals("sqlite", StringComparison.OrdinalIgnoreCase))
        {
            if (target.Length == 0 || target.Equals(":memory:", StringComparison.OrdinalIgnoreCase))
            {
                throw new ArgumentException(
                    $"Herald:Database '{database}' needs a file path after 'sqlite:' (the queue must be durable, so ':memory:' is not accepted).",
                    nameof(database));
            }

            return (DatabaseKind.Sqlite, Path.GetFullPath(target));
        }

        if (scheme.Equals("postgres", StringComparison.OrdinalIgnoreCase) || scheme.Equals("postgresql", StringComparison.OrdinalIgnoreCase))
        {
            return (DatabaseKind.Postgres, target);
        }

        throw new ArgumentException(
            // Never echo the whole value: it may be a connection string with a password.
            $"Herald:Database must start with 'sqlite:' or 'postgres:' (got {(colon > 0 ? "'" + scheme + ":…'" : "a value without a scheme")}), for example '{DefaultDatabase}'.",
            nameof(database));
    }

    internal enum DatabaseKind
    {
        Sqlite,
        Postgres,
    }
}
