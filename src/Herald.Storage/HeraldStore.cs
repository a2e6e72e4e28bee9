using Herald.Storage.Postgres;
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
    /// working directory; missing folders are created) or <c>postgres:CONNECTION STRING</c> (an Npgsql
    /// connection string, for example <c>postgres:Host=db;Database=herald;Username=herald;Password=…</c>).
    /// The schema is not touched: call <see cref="Core.Ports.IStoreAdmin.MigrateAsync"/> next.
    /// </summary>
    /// <exception cref="ArgumentException">The value is empty, names no known database kind, or is not a valid connection string.</exception>
    public static IHeraldStore Open(string database, TimeProvider time, ILoggerFactory loggerFactory)
        => Open(database, time, loggerFactory, postgres: null);

    /// <summary>As <see cref="Open(string, TimeProvider, ILoggerFactory)"/>, with the PostgreSQL store's options (<c>Herald:Postgres</c>).</summary>
    public static IHeraldStore Open(string database, TimeProvider time, ILoggerFactory loggerFactory, PostgresStoreOptions? postgres)
    {
        ArgumentNullException.ThrowIfNull(time);
        ArgumentNullException.ThrowIfNull(loggerFactory);
        var (kind, target) = Parse(database);
        return kind switch
        {
            DatabaseKind.Sqlite => new SqliteStore(target, time, loggerFactory.CreateLogger<SqliteStore>()),
            _ => new PostgresStore(target, postgres ?? new PostgresStoreOptions(), time, loggerFactory.CreateLogger<PostgresStore>()),
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
            if (target.Length == 0)
            {
                throw new ArgumentException(
                    $"Herald:Database '{scheme}:' needs an Npgsql connection string after the colon, for example 'postgres:Host=db;Database=herald;Username=herald;Password=…'.",
                    nameof(database));
            }

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
