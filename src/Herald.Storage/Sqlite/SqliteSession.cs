using Microsoft.Data.Sqlite;
using SQLitePCL;

namespace Herald.Storage.Sqlite;

/// <summary>
/// One open SQLite connection and the statements prepared on it. Statements are created on first use
/// and kept, so SQLite compiles each SQL text once per connection; a batch only rebinds parameters.
/// Transactions are plain <c>BEGIN IMMEDIATE</c> / <c>COMMIT</c> / <c>ROLLBACK</c> statements (not
/// <see cref="SqliteTransaction"/>), so the prepared statements need no transaction object and a failed
/// commit can be cleaned up by asking SQLite itself whether a transaction is still open.
/// Not thread-safe: the store hands a session to one caller at a time.
/// </summary>
internal sealed class SqliteSession : IDisposable
{
    private const int UuidsPerFill = 256;
    private readonly Dictionary<string, SqliteStatement> _statements = new(StringComparer.Ordinal);
    private readonly byte[] _random = new byte[16 * UuidsPerFill];
    private int _randomUsed = UuidsPerFill;
    private bool _fullSync = true; // the writer's pragmas say FULL

    private SqliteSession(SqliteConnection connection) => Connection = connection;

    public SqliteConnection Connection { get; }

    /// <summary>Whether SQLite has a transaction open on this connection (it may have rolled one back by itself).</summary>
    public bool InTransaction => raw.sqlite3_get_autocommit(Connection.Handle) == 0;

    /// <summary>The rowid of the last row inserted on this connection (after a plain <c>INSERT</c>, without a reader).</summary>
    public long LastInsertRowId => raw.sqlite3_last_insert_rowid(Connection.Handle);

    /// <summary>
    /// A new random (version 4) UUID in RFC 4122 byte order, for a message id. The random bytes are drawn
    /// 256 UUIDs at a time: <see cref="Guid.NewGuid"/> asks the kernel once per call, which showed up in bulk
    /// enqueue profiles.
    /// </summary>
    public byte[] NewUuidBytes()
    {
        if (_randomUsed == UuidsPerFill)
        {
            System.Security.Cryptography.RandomNumberGenerator.Fill(_random);
            _randomUsed = 0;
        }

        var uuid = _random.AsSpan(16 * _randomUsed++, 16).ToArray();
        uuid[6] = (byte)((uuid[6] & 0x0F) | 0x40); // version 4
        uuid[8] = (byte)((uuid[8] & 0x3F) | 0x80); // RFC 4122 variant
        return uuid;
    }

    /// <summary>Opens a connection and applies the connection-level pragmas.</summary>
    public static SqliteSession Open(string connectionString, string pragmas)
    {
        var connection = new SqliteConnection(connectionString);
        try
        {
            connection.Open();
            using (var command = connection.CreateCommand())
            {
                command.CommandText = pragmas;
                command.ExecuteNonQuery();
            }

            return new SqliteSession(connection);
        }
        catch
        {
            connection.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The statement for <paramref name="sql"/> (a constant). <paramref name="parameterNames"/> are used
    /// the first time only; pass them in the order of the <c>Set</c> indexes.
    /// </summary>
    public SqliteStatement Statement(string sql, params ReadOnlySpan<string> parameterNames)
    {
        if (!_statements.TryGetValue(sql, out var statement))
        {
            statement = new SqliteStatement(Connection, sql, parameterNames);
            _statements.Add(sql, statement);
        }

        return statement;
    }

    /// <summary>Runs a one-off script of one or more statements (migrations).</summary>
    public void ExecuteScript(string sql)
    {
        using var command = Connection.CreateCommand();
        command.CommandText = sql;
        command.ExecuteNonQuery();
    }

    /// <summary>Runs one statement once and returns its first value (pragmas, checks).</summary>
    public object? ExecuteScalar(string sql)
    {
        using var command = Connection.CreateCommand();
        command.CommandText = sql;
        return command.ExecuteScalar();
    }

    /// <summary><c>BEGIN IMMEDIATE</c>: takes the write lock up front, so a read-then-write never fails to upgrade.</summary>
    public void Begin() => Statement("BEGIN IMMEDIATE").Execute();

    /// <summary>
    /// Sets <c>synchronous</c> for the next transactions (outside a transaction only): FULL syncs the WAL at every commit;
    /// NORMAL leaves it to the next FULL commit or checkpoint. In WAL mode a commit is only recovered after a crash with
    /// every commit before it (the frames are checksummed in a chain), so a FULL commit makes all earlier NORMAL commits
    /// durable too; a power loss can only take the last NORMAL commits since the last FULL one.
    /// </summary>
    public void SetFullSync(bool full)
    {
        if (_fullSync == full)
        {
            return;
        }

        Statement(full ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL").Execute();
        _fullSync = full;
    }

    public void Commit() => Statement("COMMIT").Execute();

    /// <summary>Rolls back the open transaction, if SQLite still has one. Throws when the connection is broken.</summary>
    public void Rollback()
    {
        if (InTransaction)
        {
            Statement("ROLLBACK").Execute();
        }
    }

    public void Dispose()
    {
        foreach (var statement in _statements.Values)
        {
            statement.Dispose();
        }

        _statements.Clear();
        Connection.Dispose();
    }
}

/// <summary>A prepared statement with its parameters, set by position.</summary>
internal sealed class SqliteStatement : IDisposable
{
    private readonly SqliteParameter[] _parameters;

    public SqliteStatement(SqliteConnection connection, string sql, ReadOnlySpan<string> parameterNames)
    {
        Command = connection.CreateCommand();
        Command.CommandText = sql;
        _parameters = new SqliteParameter[parameterNames.Length];
        for (var i = 0; i < parameterNames.Length; i++)
        {
            var parameter = new SqliteParameter { ParameterName = parameterNames[i], Value = DBNull.Value };
            Command.Parameters.Add(parameter);
            _parameters[i] = parameter;
        }

        // Compile once; executions then only rebind and reset the statement.
        Command.Prepare();
    }

    public SqliteCommand Command { get; }

    public SqliteStatement Set(int index, string? value)
    {
        _parameters[index].Value = value is null ? DBNull.Value : value;
        return this;
    }

    public SqliteStatement Set(int index, long value)
    {
        _parameters[index].Value = value;
        return this;
    }

    public SqliteStatement Set(int index, long? value)
    {
        _parameters[index].Value = value is { } v ? v : DBNull.Value;
        return this;
    }

    public SqliteStatement Set(int index, double value)
    {
        _parameters[index].Value = value;
        return this;
    }

    public SqliteStatement Set(int index, byte[]? value)
    {
        _parameters[index].Value = value is null ? DBNull.Value : value;
        return this;
    }

    public SqliteStatement Set(int index, DateTimeOffset value) => Set(index, Db.Ms(value));

    public SqliteStatement Set(int index, DateTimeOffset? value) => Set(index, Db.Ms(value));

    public int Execute() => Command.ExecuteNonQuery();

    public SqliteDataReader Query() => Command.ExecuteReader();

    public object? Scalar() => Command.ExecuteScalar();

    public void Dispose() => Command.Dispose();
}

/// <summary>Column conversions shared by the statements.</summary>
internal static class Db
{
    public static long Ms(DateTimeOffset value) => value.ToUnixTimeMilliseconds();

    public static long? Ms(DateTimeOffset? value) => value?.ToUnixTimeMilliseconds();

    public static DateTimeOffset Time(long ms) => DateTimeOffset.FromUnixTimeMilliseconds(ms);

    public static string? StringOrNull(this SqliteDataReader reader, int ordinal)
        => reader.IsDBNull(ordinal) ? null : reader.GetString(ordinal);

    public static long? Int64OrNull(this SqliteDataReader reader, int ordinal)
        => reader.IsDBNull(ordinal) ? null : reader.GetInt64(ordinal);

    public static int? Int32OrNull(this SqliteDataReader reader, int ordinal)
        => reader.IsDBNull(ordinal) ? null : reader.GetInt32(ordinal);

    public static DateTimeOffset Time(this SqliteDataReader reader, int ordinal)
        => Time(reader.GetInt64(ordinal));

    public static DateTimeOffset? TimeOrNull(this SqliteDataReader reader, int ordinal)
        => reader.IsDBNull(ordinal) ? null : Time(reader.GetInt64(ordinal));

    public static byte[] Blob(this SqliteDataReader reader, int ordinal)
        => reader.GetFieldValue<byte[]>(ordinal);

    /// <summary>
    /// Message ids are 16 bytes in RFC 4122 order (see <see cref="SqliteSession.NewUuidBytes"/>), so the column
    /// reads as the canonical UUID (and maps to PostgreSQL <c>uuid</c>).
    /// </summary>
    public static Guid Uuid(this SqliteDataReader reader, int ordinal)
        => new(reader.GetFieldValue<byte[]>(ordinal), bigEndian: true);
}
