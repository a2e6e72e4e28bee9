using Herald.Core.Settings;
using Npgsql;

namespace Herald.Storage.Postgres;

public sealed partial class PostgresStore
{
    private const string SelectSettingsSql = "SELECT json, version, updated_at, updated_by FROM settings WHERE id = 1";

    // Under SettingsLockKey: two nodes saving at once get consecutive versions, never the same one.
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

    // A new bucket starts full. Sent in one batch with TakeTokensSql (one round trip, one implicit transaction).
    private const string EnsureBucketSql = """
        INSERT INTO throttle_buckets (name, tokens, updated_at) VALUES (@name, @capacity, @now)
        ON CONFLICT (name) DO NOTHING
        """;

    // The farm-wide bucket, refilled and taken from in one statement: the row lock makes it atomic for every
    // node (a concurrent take waits for this one and then reads what it left). Refill multiplies first (1,000 ms
    // at 60 a minute is exactly 1 token); a clock behind the bucket refills nothing and never moves it back; the
    // capacity caps the tokens also when it shrank; fractions of 1e-9 short of a token count as the token.
    private const string TakeTokensSql = """
        UPDATE throttle_buckets AS t
        SET tokens = GREATEST(0, r.refilled - r.taken), updated_at = r.at
        FROM (
            SELECT s.name, s.refilled, s.at, GREATEST(0, FLOOR(LEAST(@requested::double precision, s.refilled + 1e-9))) AS taken
            FROM (
                SELECT b.name, GREATEST(b.updated_at, @now) AS at,
                    LEAST(@capacity, b.tokens + CASE WHEN @now > b.updated_at THEN (@now - b.updated_at) * @rate / 60000.0 ELSE 0 END) AS refilled
                FROM throttle_buckets AS b
                WHERE b.name = @name
                FOR UPDATE) AS s) AS r
        WHERE t.name = r.name
        RETURNING r.taken::integer
        """;

    private const string ReturnTokensSql = "UPDATE throttle_buckets SET tokens = LEAST(@capacity, tokens + @count) WHERE name = @name";

    /// <inheritdoc />
    public Task<StoredSettings?> GetSettingsAsync(CancellationToken cancellationToken)
        => ReadAsync(
            static async (c, ct) =>
            {
                await using var command = Pg.Command(c, SelectSettingsSql);
                await using var reader = await command.ExecuteReaderAsync(ct).ConfigureAwait(false);
                return await reader.ReadAsync(ct).ConfigureAwait(false)
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
            throw new ArgumentException("The settings are not valid: " + string.Join(" ", errors), nameof(settings));
        }

        var json = StorageJson.Serialize(settings);
        return WriteAsync(
            async (c, ct) =>
            {
                await using (var lockCommand = Pg.Command(c, "SELECT pg_advisory_xact_lock(@key)").Add("key", SettingsLockKey))
                {
                    await lockCommand.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
                }

                string oldJson;
                long version;
                await using (var select = Pg.Command(c, SelectSettingsVersionSql))
                await using (var reader = await select.ExecuteReaderAsync(ct).ConfigureAwait(false))
                {
                    (oldJson, version) = await reader.ReadAsync(ct).ConfigureAwait(false)
                        ? (reader.GetString(0), reader.GetInt64(1) + 1)
                        : (StorageJson.Serialize(QueueSettings.Default), 1L);
                }

                await using var batch = new NpgsqlBatch(c)
                {
                    BatchCommands =
                    {
                        Pg.BatchCommand(UpsertSettingsSql).Add("json", json).Add("version", version).Add("at", now).Add("by", actor),
                        Pg.BatchCommand(InsertSettingsAuditSql)
                            .Add("version", version)
                            .Add("at", now)
                            .Add("actor", actor)
                            .Add("old_json", oldJson)
                            .Add("new_json", json),
                    },
                };
                await batch.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
                return new StoredSettings(settings, version, now, actor);
            },
            cancellationToken);
    }

    /// <inheritdoc />
    public Task<IReadOnlyList<SettingsChange>> GetSettingsHistoryAsync(int limit, CancellationToken cancellationToken)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(limit);
        return ReadAsync<IReadOnlyList<SettingsChange>>(
            async (c, ct) =>
            {
                var changes = new List<SettingsChange>(Math.Min(limit, 256));
                await using var command = Pg.Command(c, SelectSettingsHistorySql).Add("limit", limit);
                await using var reader = await command.ExecuteReaderAsync(ct).ConfigureAwait(false);
                while (await reader.ReadAsync(ct).ConfigureAwait(false))
                {
                    changes.Add(new SettingsChange(reader.GetInt64(0), reader.Time(1), reader.GetString(2), reader.GetString(3), reader.GetString(4)));
                }

                return changes;
            },
            cancellationToken);
    }

    /// <inheritdoc />
    /// <remarks>
    /// One round trip: the bucket is created full if missing, then refilled and taken from by one
    /// <c>UPDATE … RETURNING</c> under its row lock, so every node of the farm shares one bucket.
    /// </remarks>
    public async Task<int> TakeTokensAsync(string bucket, int requested, double ratePerMinute, double capacity, DateTimeOffset now, CancellationToken cancellationToken)
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
            return 0;
        }

        ObjectDisposedException.ThrowIf(_disposed, this);
        var nowMs = Pg.Ms(now);
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var batch = new NpgsqlBatch(connection)
        {
            BatchCommands =
            {
                Pg.BatchCommand(EnsureBucketSql).Add("name", bucket).Add("capacity", capacity).Add("now", nowMs),
                Pg.BatchCommand(TakeTokensSql)
                    .Add("requested", requested)
                    .Add("now", nowMs)
                    .Add("capacity", capacity)
                    .Add("rate", ratePerMinute)
                    .Add("name", bucket),
            },
        };
        await using var reader = await batch.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        do
        {
            if (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                return reader.GetInt32(0);
            }
        }
        while (await reader.NextResultAsync(cancellationToken).ConfigureAwait(false));

        throw new InvalidOperationException($"Throttle bucket '{bucket}' was not found after it was created.");
    }

    /// <inheritdoc />
    public async Task ReturnTokensAsync(string bucket, int count, double capacity, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrEmpty(bucket);
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        if (count == 0)
        {
            return;
        }

        ObjectDisposedException.ThrowIf(_disposed, this);
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var command = Pg.Command(connection, ReturnTokensSql).Add("capacity", capacity).Add("count", count).Add("name", bucket);
        await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
    }
}
