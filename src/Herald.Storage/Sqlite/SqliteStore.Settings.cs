using Herald.Core.Settings;

namespace Herald.Storage.Sqlite;

public sealed partial class SqliteStore
{
    private const string SelectSettingsSql = "SELECT json, version, updated_at, updated_by FROM settings WHERE id = 1";

    private const string SelectSettingsVersionSql = "SELECT json, version FROM settings WHERE id = 1";

    private const string UpsertSettingsSql = """
        INSERT INTO settings (id, json, version, updated_at, updated_by) VALUES (1, @json, @version, @at, @by)
        ON CONFLICT (id) DO UPDATE SET json = excluded.json, version = excluded.version,
            updated_at = excluded.updated_at, updated_by = excluded.updated_by
        """;

    private const string InsertSettingsAuditSql = """
        INSERT INTO settings_audit (version, at, actor, old_json, new_json) VALUES (@version, @at, @actor, @old_json, @new_json)
        """;

    private const string SelectSettingsHistorySql =
        "SELECT version, at, actor, old_json, new_json FROM settings_audit ORDER BY version DESC LIMIT @limit";

    private const string SelectBucketSql = "SELECT tokens, updated_at FROM throttle_buckets WHERE name = @name";

    private const string UpsertBucketSql = """
        INSERT INTO throttle_buckets (name, tokens, updated_at) VALUES (@name, @tokens, @at)
        ON CONFLICT (name) DO UPDATE SET tokens = excluded.tokens, updated_at = excluded.updated_at
        """;

    private const string ReturnTokensSql = "UPDATE throttle_buckets SET tokens = MIN(@capacity, tokens + @count) WHERE name = @name";

    // Refilled tokens are fractions; a take rounds down, so 0.9999999 left by floating point must count as 1.
    private const double TokenEpsilon = 1e-9;

    /// <inheritdoc />
    public Task<StoredSettings?> GetSettingsAsync(CancellationToken cancellationToken)
        => ReadAsync(
            static s =>
            {
                using var reader = s.Statement(SelectSettingsSql).Query();
                return reader.Read()
                    ? new StoredSettings(StorageJson.DeserializeSettings(reader.GetString(0)), reader.GetInt64(1), reader.Time(2), reader.GetString(3))
                    : null;
            },
            cancellationToken);

    /// <inheritdoc />
    /// <exception cref="ArgumentException">The settings are not valid (<see cref="QueueSettings.Validate"/>).</exception>
    public Task<StoredSettings> SaveSettingsAsync(QueueSettings settings, string actor, DateTimeOffset now, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(settings);
        ArgumentException.ThrowIfNullOrEmpty(actor);
        var errors = settings.Validate();
        if (errors.Count > 0)
        {
            // Every node applies what is stored: refuse settings no node could apply.
            throw new ArgumentException("The settings are not valid: " + string.Join(" ", errors), nameof(settings));
        }

        var json = StorageJson.Serialize(settings);
        return WriteAsync(
            s =>
            {
                string oldJson;
                long version;
                using (var reader = s.Statement(SelectSettingsVersionSql).Query())
                {
                    (oldJson, version) = reader.Read()
                        ? (reader.GetString(0), reader.GetInt64(1) + 1)
                        : (StorageJson.Serialize(QueueSettings.Default), 1L);
                }

                s.Statement(UpsertSettingsSql, "@json", "@version", "@at", "@by").Set(0, json).Set(1, version).Set(2, now).Set(3, actor).Execute();
                s.Statement(InsertSettingsAuditSql, "@version", "@at", "@actor", "@old_json", "@new_json")
                    .Set(0, version)
                    .Set(1, now)
                    .Set(2, actor)
                    .Set(3, oldJson)
                    .Set(4, json)
                    .Execute();
                return new StoredSettings(settings, version, now, actor);
            },
            cancellationToken);
    }

    /// <inheritdoc />
    public Task<IReadOnlyList<SettingsChange>> GetSettingsHistoryAsync(int limit, CancellationToken cancellationToken)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(limit);
        return ReadAsync<IReadOnlyList<SettingsChange>>(
            s =>
            {
                var changes = new List<SettingsChange>(Math.Min(limit, 256));
                using var reader = s.Statement(SelectSettingsHistorySql, "@limit").Set(0, limit).Query();
                while (reader.Read())
                {
                    changes.Add(new SettingsChange(reader.GetInt64(0), reader.Time(1), reader.GetString(2), reader.GetString(3), reader.GetString(4)));
                }

                return changes;
            },
            cancellationToken);
    }

    /// <inheritdoc />
    /// <remarks>
    /// One short <c>BEGIN IMMEDIATE</c> transaction: the write lock makes the read-refill-take atomic for
    /// every process on the file. A clock behind the bucket's last update refills nothing (and never moves
    /// the bucket back in time).
    /// </remarks>
    public Task<int> TakeTokensAsync(string bucket, int requested, double ratePerMinute, double capacity, DateTimeOffset now, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrEmpty(bucket);
        ArgumentOutOfRangeException.ThrowIfNegative(requested);
        if (!(ratePerMinute >= 0) || double.IsInfinity(ratePerMinute))
        {
            throw new ArgumentOutOfRangeException(nameof(ratePerMinute), ratePerMinute, "The rate must be a finite number of tokens a minute, at least 0.");
        }

        if (!(capacity >= 0) || double.IsInfinity(capacity))
        {
            throw new ArgumentOutOfRangeException(nameof(capacity), capacity, "The capacity must be a finite number of tokens, at least 0.");
        }

        if (requested == 0)
        {
            return Task.FromResult(0);
        }

        return WriteAsync(s => TakeTokens(s, bucket, requested, ratePerMinute, capacity, Db.Ms(now)), cancellationToken);
    }

    /// <inheritdoc />
    public Task ReturnTokensAsync(string bucket, int count, double capacity, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrEmpty(bucket);
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        if (count == 0)
        {
            return Task.CompletedTask;
        }

        // A bucket that does not exist yet starts full anyway: nothing to give back to.
        return WriteAsync(
            s => s.Statement(ReturnTokensSql, "@capacity", "@count", "@name").Set(0, capacity).Set(1, count).Set(2, bucket).Execute(),
            cancellationToken);
    }

    private static int TakeTokens(SqliteSession s, string bucket, int requested, double ratePerMinute, double capacity, long nowMs)
    {
        double tokens;
        long updatedMs;
        using (var reader = s.Statement(SelectBucketSql, "@name").Set(0, bucket).Query())
        {
            if (reader.Read())
            {
                tokens = reader.GetDouble(0);
                updatedMs = reader.GetInt64(1);
            }
            else
            {
                tokens = capacity; // a new bucket starts full
                updatedMs = nowMs;
            }
        }

        if (nowMs > updatedMs)
        {
            // Multiply first: 1,000 ms at 60 a minute is exactly 1 token.
            tokens += (nowMs - updatedMs) * ratePerMinute / 60_000d;
            updatedMs = nowMs;
        }

        tokens = Math.Min(tokens, capacity); // also when the capacity shrank since the last take
        var taken = (int)Math.Max(0, Math.Floor(Math.Min(requested, tokens + TokenEpsilon)));
        tokens = Math.Max(0, tokens - taken);
        s.Statement(UpsertBucketSql, "@name", "@tokens", "@at").Set(0, bucket).Set(1, tokens).Set(2, updatedMs).Execute();
        return taken;
    }
}
