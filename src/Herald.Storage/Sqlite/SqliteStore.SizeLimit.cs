using System.Globalization;

namespace Herald.Storage.Sqlite;

/// <summary>A cap on the database file's size (SQLite's <c>max_page_count</c> on the write connection).</summary>
public sealed partial class SqliteStore
{
    // SQLite's own ceiling; asking for more is clamped to it.
    private const long NoPageLimit = 4_294_967_294;

    private long _maxPageCount; // 0: no cap set by us

    /// <summary>
    /// Caps the database at about <paramref name="maxBytes"/> (whole pages, never below its current size); null lifts the
    /// cap. A write that would grow the file further fails with SQLITE_FULL and is rolled back, exactly as on a full disk:
    /// callbacks answer 5xx, the API 503. For operators who want the database to stop before the volume does, and for
    /// the storage-full tests. The cap is kept when the write connection is reopened.
    /// </summary>
    /// <returns>The cap in force, in pages.</returns>
    public async Task<long> LimitSizeAsync(long? maxBytes, CancellationToken cancellationToken)
    {
        if (maxBytes is { } bytes)
        {
            ArgumentOutOfRangeException.ThrowIfNegativeOrZero(bytes);
        }

        ObjectDisposedException.ThrowIf(_disposed, this);
        if (!await _writeGate.WaitAsync(WriteGateTimeout, cancellationToken).ConfigureAwait(false))
        {
            throw new StoreUnavailableException("The database is busy: the size limit waited more than " + WriteGateTimeout.TotalSeconds + " s for the write connection.");
        }

        try
        {
            var session = _writer ??= OpenWriter();
            var pageSize = Convert.ToInt64(session.ExecuteScalar("PRAGMA page_size"), CultureInfo.InvariantCulture);
            var pages = maxBytes is { } max ? Math.Max(1, max / pageSize) : NoPageLimit;
            _maxPageCount = maxBytes is null ? 0 : pages;
            return ApplyPageLimit(session, pages);
        }
        finally
        {
            _writeGate.Release();
        }
    }

    /// <summary>Re-applies the cap on a newly opened write connection (max_page_count belongs to the connection).</summary>
    private void ApplyPageLimit(SqliteSession session)
    {
        if (_maxPageCount > 0)
        {
            ApplyPageLimit(session, _maxPageCount);
        }
    }

    private static long ApplyPageLimit(SqliteSession session, long pages)
        => Convert.ToInt64(session.ExecuteScalar(string.Create(CultureInfo.InvariantCulture, $"PRAGMA max_page_count = {pages}")), CultureInfo.InvariantCulture);
}
