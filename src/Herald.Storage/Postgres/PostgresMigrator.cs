using System.Globalization;
using System.Reflection;
using Npgsql;

namespace Herald.Storage.Postgres;

/// <summary>One schema migration: an embedded <c>Postgres/Migrations/NNNN_name.sql</c> script.</summary>
internal sealed record PostgresMigration(int Version, string Name, string Script);

/// <summary>
/// Applies the embedded PostgreSQL migrations. Numbers match the SQLite ones (a version means the same
/// tables in both dialects). Every missing version is applied in order, so a migration added later with a
/// lower number than one already applied still runs. Several nodes may start at once: the whole migration
/// is one transaction holding an advisory lock, so one node migrates and the others then find nothing to do.
/// </summary>
internal static class PostgresMigrator
{
    private const string ResourcePrefix = "Herald.Storage.Postgres.Migrations.";

    private const string CreateTableSql = """
        CREATE TABLE IF NOT EXISTS schema_migrations (
            version     integer NOT NULL PRIMARY KEY,
            name        text    NOT NULL,
            applied_at  bigint  NOT NULL
        )
        """;

    public static IReadOnlyList<PostgresMigration> All { get; } = Load();

    public static async Task MigrateAsync(PostgresStore store, CancellationToken cancellationToken)
    {
        await using var connection = await store.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken).ConfigureAwait(false);
        await using (var command = new NpgsqlCommand("SELECT pg_advisory_xact_lock(@key)", connection))
        {
            command.Parameters.AddWithValue("key", PostgresStore.MigrationLockKey);
            await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }

        await using (var command = new NpgsqlCommand(CreateTableSql, connection))
        {
            await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }

        var applied = new HashSet<int>();
        await using (var command = new NpgsqlCommand("SELECT version FROM schema_migrations", connection))
        await using (var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
        {
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                applied.Add(reader.GetInt32(0));
            }
        }

        var newest = All.Count == 0 ? 0 : All[^1].Version;
        if (applied.Count > 0 && applied.Max() > newest)
        {
            throw new InvalidOperationException(
                $"The PostgreSQL database {store.Target} has schema version {applied.Max()}, newer than this Herald supports ({newest}). Upgrade Herald, or use another database.");
        }

        var now = store.Time.GetUtcNow().ToUnixTimeMilliseconds();
        foreach (var migration in All)
        {
            if (applied.Contains(migration.Version))
            {
                continue;
            }

            await using (var command = new NpgsqlCommand(migration.Script, connection))
            {
                await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
            }

            await using (var command = new NpgsqlCommand("INSERT INTO schema_migrations (version, name, applied_at) VALUES (@version, @name, @at)", connection))
            {
                command.Parameters.AddWithValue("version", migration.Version);
                command.Parameters.AddWithValue("name", migration.Name);
                command.Parameters.AddWithValue("at", now);
                await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
            }

            PostgresStore.LogMigrated(store.Logger, migration.Version, migration.Name, store.Target);
        }

        await using (var command = new NpgsqlCommand(PostgresStore.InsertTenantIfMissingSql, connection))
        {
            command.Parameters.AddWithValue("id", PostgresStore.DefaultTenantId);
            command.Parameters.AddWithValue("name", "Default");
            command.Parameters.AddWithValue("created_at", now);
            await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }

        await transaction.CommitAsync(CancellationToken.None).ConfigureAwait(false);
    }

    private static PostgresMigration[] Load()
    {
        var assembly = typeof(PostgresMigrator).Assembly;
        var migrations = new List<PostgresMigration>();
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

            migrations.Add(new PostgresMigration(version, name, Read(assembly, resource)));
        }

        migrations.Sort(static (a, b) => a.Version.CompareTo(b.Version));
        for (var i = 1; i < migrations.Count; i++)
        {
            if (migrations[i].Version == migrations[i - 1].Version)
            {
                throw new InvalidOperationException($"Two PostgreSQL migrations have version {migrations[i].Version}: '{migrations[i - 1].Name}' and '{migrations[i].Name}'.");
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
