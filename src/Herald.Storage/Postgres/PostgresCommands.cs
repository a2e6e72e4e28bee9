using Npgsql;
using NpgsqlTypes;

namespace Herald.Storage.Postgres;

/// <summary>
/// Typed parameters and column conversions for the PostgreSQL statements. Parameters are named
/// (<c>@name</c>) and typed explicitly, so a null still has a type and a value is never inferred.
/// </summary>
internal static class Pg
{
    public static NpgsqlCommand Command(NpgsqlConnection connection, string sql) => new(sql, connection);

    public static NpgsqlBatchCommand BatchCommand(string sql) => new(sql);

    public static T Add<T>(this T command, string name, string? value)
        where T : class
        => command.Add(name, NpgsqlDbType.Text, value is null ? DBNull.Value : value);

    public static T Add<T>(this T command, string name, long value)
        where T : class
        => command.Add(name, NpgsqlDbType.Bigint, value);

    public static T Add<T>(this T command, string name, long? value)
        where T : class
        => command.Add(name, NpgsqlDbType.Bigint, value is { } v ? v : DBNull.Value);

    public static T Add<T>(this T command, string name, int value)
        where T : class
        => command.Add(name, NpgsqlDbType.Integer, value);

    public static T Add<T>(this T command, string name, int? value)
        where T : class
        => command.Add(name, NpgsqlDbType.Integer, value is { } v ? v : DBNull.Value);

    public static T Add<T>(this T command, string name, short value)
        where T : class
        => command.Add(name, NpgsqlDbType.Smallint, value);

    public static T Add<T>(this T command, string name, double value)
        where T : class
        => command.Add(name, NpgsqlDbType.Double, value);

    public static T Add<T>(this T command, string name, byte[]? value)
        where T : class
        => command.Add(name, NpgsqlDbType.Bytea, value is null ? DBNull.Value : value);

    public static T Add<T>(this T command, string name, DateTimeOffset value)
        where T : class
        => command.Add(name, Ms(value));

    public static T Add<T>(this T command, string name, DateTimeOffset? value)
        where T : class
        => command.Add(name, Ms(value));

    public static T Add<T>(this T command, string name, long[] values)
        where T : class
        => command.Add(name, NpgsqlDbType.Array | NpgsqlDbType.Bigint, values);

    public static T Add<T>(this T command, string name, long?[] values)
        where T : class
        => command.Add(name, NpgsqlDbType.Array | NpgsqlDbType.Bigint, values);

    public static T Add<T>(this T command, string name, int[] values)
        where T : class
        => command.Add(name, NpgsqlDbType.Array | NpgsqlDbType.Integer, values);

    public static T Add<T>(this T command, string name, short[] values)
        where T : class
        => command.Add(name, NpgsqlDbType.Array | NpgsqlDbType.Smallint, values);

    public static T Add<T>(this T command, string name, string?[] values)
        where T : class
        => command.Add(name, NpgsqlDbType.Array | NpgsqlDbType.Text, values);

    public static T Add<T>(this T command, string name, byte[][] values)
        where T : class
        => command.Add(name, NpgsqlDbType.Array | NpgsqlDbType.Bytea, values);

    private static T Add<T>(this T command, string name, NpgsqlDbType type, object value)
        where T : class
    {
        var parameter = new NpgsqlParameter(name, type) { Value = value };
        switch (command)
        {
            case NpgsqlCommand c:
                c.Parameters.Add(parameter);
                break;
            case NpgsqlBatchCommand b:
                b.Parameters.Add(parameter);
                break;
            default:
                throw new ArgumentException("Not an Npgsql command.", nameof(command));
        }

        return command;
    }

    public static long Ms(DateTimeOffset value) => value.ToUnixTimeMilliseconds();

    public static long? Ms(DateTimeOffset? value) => value?.ToUnixTimeMilliseconds();

    public static DateTimeOffset Time(long ms) => DateTimeOffset.FromUnixTimeMilliseconds(ms);

    public static string? StringOrNull(this NpgsqlDataReader reader, int ordinal)
        => reader.IsDBNull(ordinal) ? null : reader.GetString(ordinal);

    public static long? Int64OrNull(this NpgsqlDataReader reader, int ordinal)
        => reader.IsDBNull(ordinal) ? null : reader.GetInt64(ordinal);

    public static int? Int32OrNull(this NpgsqlDataReader reader, int ordinal)
        => reader.IsDBNull(ordinal) ? null : reader.GetInt32(ordinal);

    public static DateTimeOffset Time(this NpgsqlDataReader reader, int ordinal) => Time(reader.GetInt64(ordinal));

    public static DateTimeOffset? TimeOrNull(this NpgsqlDataReader reader, int ordinal)
        => reader.IsDBNull(ordinal) ? null : Time(reader.GetInt64(ordinal));

    /// <summary>A unique violation (23505): the row's identity is taken.</summary>
    public static bool IsUniqueViolation(this PostgresException ex) => ex.SqlState == PostgresErrorCodes.UniqueViolation;

    /// <summary>A foreign key violation (23503): the referenced row (a tenant) does not exist.</summary>
    public static bool IsForeignKeyViolation(this PostgresException ex) => ex.SqlState == PostgresErrorCodes.ForeignKeyViolation;
}
