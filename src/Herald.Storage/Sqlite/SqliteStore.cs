using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Herald.Storage.Sqlite;

/// <summary>
/// Herald's store on one SQLite file: the durable notification queue, ingest, registrations, tenants and keys.
/// <para>
/// Durability: WAL journal with <c>synchronous=FULL</c>, so a committed transaction survives power loss and
/// SIGKILL; callers acknowledge only after a method returns. Claims, completions and lease renewals alone commit
/// with <c>synchronous=NORMAL</c> (they survive SIGKILL; power loss may take the last of them: a resend, never a loss). Writes go through one dedicated connection
/// guarded by an async gate (SQLite has one writer; queuing in-process is cheaper than lock retries),
/// each write is one short <c>BEGIN IMMEDIATE</c> transaction of prepared, reused statements. Reads use a
/// small pool of read-only connections and never wait for the writer (WAL snapshots).
/// </para>
/// <para>
/// Errors (busy, locked, full, I/O) propagate as <see cref="SqliteException"/> after the transaction is rolled
/// back: nothing of a failed call is stored, and the caller answers 5xx/503.
/// </para>
/// </summary>
public sealed partial class SqliteStore : IHeraldStore
{
    private const int MaxIdleReaders = 8;

    // synchronous=FULL: in WAL mode NORMAL may lose the last commits on power loss; an acknowledged
    // callback must not. busy_timeout covers another process (a `herald migrate` while serving).
    private const string WriterPragmas = """
        PRAGMA synchronous = FULL;
        PRAGMA busy_timeout = 5000;
        PRAGMA foreign_keys = ON;
        PRAGMA temp_store = MEMORY;
        PRAGMA cache_size = -16384;
        PRAGMA wal_autocheckpoint = 8192;
        PRAGMA journal_size_limit = 67108864;
        """;

    private const string ReaderPragmas = """
        PRAGMA busy_timeout = 5000;
        PRAGMA query_only = ON;
        """;

    private readonly string _connectionString;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly SemaphoreSlim _writeGate = new(1, 1);

    /// <summary>How long a write waits for the single write connection before the store reports itself unavailable.</summary>
    internal static readonly TimeSpan WriteGateTimeout = TimeSpan.FromSeconds(3);
    private readonly Stack<SqliteSession> _idleReaders = new();
    private readonly Lock _readersLock = new();
    private SqliteSession? _writer;
    private volatile bool _disposed;

    /// <summary>
    /// Opens (creating if needed) the database file at <paramref name="path"/> and its write connection.
    /// The schema is not touched: call <see cref="MigrateAsync"/> before use.
    /// </summary>
    public SqliteStore(string path, TimeProvider time, ILogger logger)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        ArgumentNullException.ThrowIfNull(time);
        ArgumentNullException.ThrowIfNull(logger);
        FilePath = Path.GetFullPath(path);
        _time = time;
        _logger = logger;
        if (Path.GetDirectoryName(FilePath) is { Length: > 0 } folder)
        {
            Directory.CreateDirectory(folder);
        }

        _connectionString = new SqliteConnectionStringBuilder
        {
            DataSource = FilePath,
            Mode = SqliteOpenMode.ReadWriteCreate,
            Cache = SqliteCacheMode.Private,
            Pooling = false, // the store keeps its own connections (and their prepared statements)
            // Microsoft.Data.Sqlite retries a busy database until this many seconds have passed, on top of
            // busy_timeout: keep the two equal, so a locked database fails in ~5 s (a 503 Exchange retries), not 35.
            DefaultTimeout = 5,
        }.ToString();

        _writer = OpenWriter();
    }

    /// <summary>The full path of the database file.</summary>
    public string FilePath { get; }

    /// <inheritdoc />
    public bool IsSingleNode => true;

    /// <summary>Opens a store on <paramref name="path"/> with the system clock and no logging unless given.</summary>
    public static SqliteStore Open(string path, TimeProvider? time = null, ILogger? logger = null)
        => new(path, time ?? TimeProvider.System, logger ?? NullLogger.Instance);

    /// <summary>Opens a store on <paramref name="path"/> and migrates its schema.</summary>
    public static async Task<SqliteStore> OpenAndMigrateAsync(string path, TimeProvider time, ILogger logger, CancellationToken cancellationToken)
    {
        var store = new SqliteStore(path, time, logger);
        try
        {
            await store.MigrateAsync(cancellationToken).ConfigureAwait(false);
            return store;
        }
        catch
        {
            await store.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <inheritdoc />
    public Task MigrateAsync(CancellationToken cancellationToken) => WriteAsync(Migrate, cancellationToken);

    /// <inheritdoc />
    public Task<bool> PingAsync(CancellationToken cancellationToken)
        => ReadAsync(static s => s.Statement("SELECT 1").Scalar() is long one && one == 1, cancellationToken);

    /// <inheritdoc />
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        _writeGate.Wait();
        try
        {
            CloseConnections();
        }
        finally
        {
            _writeGate.Release();
        }
    }

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        await _writeGate.WaitAsync().ConfigureAwait(false);
        try
        {
            CloseConnections();
        }
        finally
        {
            _writeGate.Release();
        }
    }

    /// <summary>A pragma's value as the write connection sees it (for tests and <c>herald doctor</c>).</summary>
    internal async Task<string?> GetWriterPragmaAsync(string pragma, CancellationToken cancellationToken)
    {
        await _writeGate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            var session = _writer ??= OpenWriter();
            return Convert.ToString(session.ExecuteScalar("PRAGMA " + pragma), System.Globalization.CultureInfo.InvariantCulture);
        }
        finally
        {
            _writeGate.Release();
        }
    }

    private void CloseConnections()
    {
        lock (_readersLock)
        {
            while (_idleReaders.TryPop(out var reader))
            {
                reader.Dispose();
            }
        }

        StopCheckpointer();

        // The writer closes last: closing the last connection checkpoints the WAL into the main file.
        _writer?.Dispose();
        _writer = null;
    }

    private SqliteSession OpenWriter()
    {
        var session = SqliteSession.Open(_connectionString, WriterPragmas);
        try
        {
            // WAL is a property of the file; asking on every open also converts a file created without it.
            var mode = Convert.ToString(session.ExecuteScalar("PRAGMA journal_mode = WAL"), System.Globalization.CultureInfo.InvariantCulture);
            if (!string.Equals(mode, "wal", StringComparison.OrdinalIgnoreCase))
            {
                Log.NotWal(_logger, FilePath, mode);
            }

            Log.Opened(_logger, FilePath, mode);
            ApplyPageLimit(session);
            return session;
        }
        catch
        {
            session.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Runs <paramref name="work"/> in one <c>BEGIN IMMEDIATE</c> transaction on the write connection, one
    /// caller at a time. Commits when it returns; rolls back and rethrows when it (or the commit) throws.
    /// The work is synchronous: SQLite is, and it keeps the gate's hold time to the transaction itself.
    /// </summary>
    /// <param name="work">The transaction's work.</param>
    /// <param name="cancellationToken">Cancels the wait for the write connection.</param>
    /// <param name="relaxed">
    /// Commit with <c>synchronous=NORMAL</c> (no fsync): only for claims, completions and lease renewals, whose loss on
    /// power failure means a resend (a duplicate, never a loss); the next FULL commit makes them durable with it.
    /// </param>
    private async Task<T> WriteAsync<T>(Func<SqliteSession, T> work, CancellationToken cancellationToken, bool relaxed = false)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);

        // Writes take milliseconds; a writer that waits this long is behind one stuck on a locked database.
        // Failing fast lets callers answer 503 (Exchange retries) instead of queueing for minutes.
        if (!await _writeGate.WaitAsync(WriteGateTimeout, cancellationToken).ConfigureAwait(false))
        {
            throw new StoreUnavailableException("The database is busy: a write waited more than " + WriteGateTimeout.TotalSeconds + " s for its turn.");
        }

        try
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            var session = _writer ??= OpenWriter();
            if (relaxed)
            {
                session.SetFullSync(false);
            }

            try
            {
                session.Begin();
                try
                {
                    var result = work(session);
                    session.Commit();
                    NoteCommit();
                    return result;
                }
                catch
                {
                    Abort(session);
                    throw;
                }
            }
            finally
            {
                if (relaxed && _writer == session)
                {
                    session.SetFullSync(true); // every other write (enqueue, ingest, the API) commits with FULL
                }
            }
        }
        finally
        {
            _writeGate.Release();
        }
    }

    private Task<bool> WriteAsync(Action<SqliteSession> work, CancellationToken cancellationToken)
        => WriteAsync(
            s =>
            {
                work(s);
                return true;
            },
            cancellationToken);

    private void Abort(SqliteSession session)
    {
        try
        {
            session.Rollback();
        }
        catch (SqliteException ex)
        {
            // The connection is in an unknown state: drop it, the next write opens a fresh one.
            // The original exception still propagates to the caller.
            Log.RollbackFailed(_logger, ex);
            _writer = null;
            session.Dispose();
        }
    }

    /// <summary>Runs a read on a pooled read-only connection (a consistent WAL snapshot per statement).</summary>
    private Task<T> ReadAsync<T>(Func<SqliteSession, T> read, CancellationToken cancellationToken)
    {
        if (cancellationToken.IsCancellationRequested)
        {
            return Task.FromCanceled<T>(cancellationToken);
        }

        try
        {
            return Task.FromResult(Read(read));
        }
        catch (Exception ex)
        {
            return Task.FromException<T>(ex);
        }
    }

    private T Read<T>(Func<SqliteSession, T> read)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        SqliteSession? session = null;
        lock (_readersLock)
        {
            _idleReaders.TryPop(out session);
        }

        session ??= SqliteSession.Open(_connectionString, ReaderPragmas);
        T result;
        try
        {
            result = read(session);
        }
        catch
        {
            session.Dispose(); // a failed read may leave the connection in any state: do not pool it
            throw;
        }

        lock (_readersLock)
        {
            if (!_disposed && _idleReaders.Count < MaxIdleReaders)
            {
                _idleReaders.Push(session);
                return result;
            }
        }

        session.Dispose();
        return result;
    }

    private void Migrate(SqliteSession s)
    {
        s.ExecuteScript("""
            CREATE TABLE IF NOT EXISTS schema_migrations (
                version     INTEGER NOT NULL PRIMARY KEY,
                name        TEXT    NOT NULL,
                applied_at  INTEGER NOT NULL
            )
            """);
        var applied = new HashSet<int>();
        using (var reader = s.Statement("SELECT version FROM schema_migrations").Query())
        {
            while (reader.Read())
            {
                applied.Add(reader.GetInt32(0));
            }
        }

        var migrations = SqliteMigrations.All;
        var newest = migrations.Count == 0 ? 0 : migrations[^1].Version;
        if (applied.Count > 0 && applied.Max() > newest)
        {
            throw new InvalidOperationException(
                $"The database {FilePath} has schema version {applied.Max()}, newer than this Herald supports ({newest}). Upgrade Herald, or use another database.");
        }

        var now = _time.GetUtcNow();
        RegisterTokenFingerprintFunction(s.Connection); // 0011 fills existing rows with it
        foreach (var migration in migrations)
        {
            if (applied.Contains(migration.Version))
            {
                continue;
            }

            s.ExecuteScript(migration.Script);
            s.Statement("INSERT INTO schema_migrations (version, name, applied_at) VALUES (@version, @name, @at)", "@version", "@name", "@at")
                .Set(0, migration.Version)
                .Set(1, migration.Name)
                .Set(2, now)
                .Execute();
            Log.Migrated(_logger, migration.Version, migration.Name);
        }

        s.Statement(InsertTenantIfMissingSql, "@id", "@name", "@created_at")
            .Set(0, DefaultTenantId)
            .Set(1, "Default")
            .Set(2, now)
            .Execute();
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 3001, Level = LogLevel.Information, Message = "Opened SQLite store {Path} (journal mode {JournalMode})")]
        public static partial void Opened(ILogger logger, string path, string? journalMode);

        [LoggerMessage(EventId = 3002, Level = LogLevel.Warning, Message = "SQLite store {Path} could not use WAL (journal mode is {JournalMode}): durability holds, but reads now wait for writes. Is it on a network file system?")]
        public static partial void NotWal(ILogger logger, string path, string? journalMode);

        [LoggerMessage(EventId = 3003, Level = LogLevel.Information, Message = "Applied database migration {Version} ({Name})")]
        public static partial void Migrated(ILogger logger, int version, string name);

        [LoggerMessage(EventId = 3004, Level = LogLevel.Error, Message = "Rolling back a failed transaction failed; the write connection will be reopened")]
        public static partial void RollbackFailed(ILogger logger, Exception exception);

        [LoggerMessage(EventId = 3005, Level = LogLevel.Information, Message = "Released {Count} expired leases ({Coalesced} of them folded into a newer pending notification)")]
        public static partial void LeasesReleased(ILogger logger, int count, int coalesced);

        [LoggerMessage(EventId = 3006, Level = LogLevel.Information, Message = "Registration {RegistrationId} deactivated: {Reason}")]
        public static partial void Deactivated(ILogger logger, string registrationId, string reason);

        [LoggerMessage(EventId = 3007, Level = LogLevel.Information, Message = "Purged {Count} completed notifications older than {OlderThan}")]
        public static partial void Purged(ILogger logger, int count, DateTimeOffset olderThan);
    }
}
