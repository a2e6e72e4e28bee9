using System.Data.Common;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;

namespace Herald.Storage.Postgres;

/// <summary>
/// Herald's store on PostgreSQL, shared by every node of a farm: the same behaviour as
/// <see cref="Sqlite.SqliteStore"/> behind the same ports.
/// <para>
/// Connections come from one Npgsql pool; every write is one short transaction (READ COMMITTED) whose
/// statements are sent together where they do not depend on each other (<see cref="NpgsqlBatch"/>), so a
/// write costs one or two round trips. Statements are prepared automatically by Npgsql after their second
/// use (<c>Max Auto Prepare</c>, unless the connection string sets it).
/// </para>
/// <para>
/// Several nodes share the queue: claims lock their rows with <c>FOR UPDATE SKIP LOCKED</c> (two nodes
/// never lease one row, and neither waits for the other), completions are fenced on the lease owner,
/// and expired leases are released by whichever node's reaper finds them first. Enqueues send
/// <c>pg_notify('herald_queue')</c> in their transaction; each node LISTENs (unless
/// <see cref="PostgresStoreOptions.Listen"/> is off) and raises <see cref="QueueWake"/>, a hint on top of
/// the dispatcher's own polling. The same connection LISTENs for registration changes
/// (<c>herald_registrations</c>, sent by triggers) and raises them as an <see cref="Core.Ports.IRegistrationChangeFeed"/>.
/// </para>
/// <para>
/// Errors propagate as <see cref="NpgsqlException"/> (a <see cref="DbException"/>) after the transaction
/// is rolled back: nothing of a failed call is stored, and the caller answers 5xx/503.
/// </para>
/// </summary>
public sealed partial class PostgresStore : IHeraldStore, IQueueWakeSource
{
    /// <summary>The channel of the queue's wake-up hint.</summary>
    public const string QueueChannel = "herald_queue";

    /// <summary>The advisory lock key that serialises migrations across nodes (the ASCII of "herald01").</summary>
    internal const long MigrationLockKey = 0x68657261_6c643031;

    /// <summary>The advisory lock key that serialises settings changes (the ASCII of "herald02").</summary>
    internal const long SettingsLockKey = 0x68657261_6c643032;

    private readonly NpgsqlDataSource _dataSource;
    private readonly string _listenConnectionString;
    private readonly PostgresStoreOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly Lock _wakeLock = new();
    private readonly CancellationTokenSource _stopping = new();
    private Action? _queueWake;
    private Task? _listener;
    private long _fencedCompletions;
    private volatile bool _disposed;

    /// <summary>
    /// Creates a store on the database of <paramref name="connectionString"/> (an Npgsql connection string).
    /// Nothing is opened yet; the schema is not touched: call <see cref="MigrateAsync"/> before use.
    /// </summary>
    /// <exception cref="ArgumentException">The connection string cannot be parsed.</exception>
    public PostgresStore(string connectionString, PostgresStoreOptions options, TimeProvider time, ILogger logger)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(connectionString);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(time);
        ArgumentNullException.ThrowIfNull(logger);
        _options = options;
        _time = time;
        _logger = logger;

        NpgsqlConnectionStringBuilder builder;
        try
        {
            builder = new NpgsqlConnectionStringBuilder(connectionString);
        }
        catch (ArgumentException ex)
        {
            // Never echo the connection string: it may hold a password.
            throw new ArgumentException("Herald:Database 'postgres:…' is not a valid Npgsql connection string: " + ex.Message.Split('\'')[0].Trim(), nameof(connectionString));
        }

        var given = new DbConnectionStringBuilder { ConnectionString = connectionString };
        if (!Has(given, "Max Auto Prepare", "MaxAutoPrepare"))
        {
            // Every statement is a constant: prepare the hot ones once per physical connection.
            builder.MaxAutoPrepare = 64;
            builder.AutoPrepareMinUsages = 2;
        }

        if (!Has(given, "Timeout"))
        {
            builder.Timeout = 5; // a pool or server that cannot give a connection in 5 s is an outage (503), not a queue
        }

        if (!Has(given, "Application Name", "ApplicationName"))
        {
            builder.ApplicationName = "herald";
        }

        if (!Has(given, "Keepalive", "Keep Alive", "KeepAlive"))
        {
            builder.KeepAlive = 30; // notices a dead server on an idle pooled or listening connection
        }

        Target = builder.Host + (builder.Port != 0 ? ":" + builder.Port.ToString(System.Globalization.CultureInfo.InvariantCulture) : string.Empty) + "/" + builder.Database;
        _dataSource = new NpgsqlDataSourceBuilder(builder.ConnectionString).Build();

        // The listener holds its connection for the life of the store: keep it out of the pool, and never
        // auto-prepare on it.
        var listen = new NpgsqlConnectionStringBuilder(builder.ConnectionString) { Pooling = false, MaxAutoPrepare = 0 };
        _listenConnectionString = listen.ConnectionString;
    }

    /// <summary>Host, port and database (never the password), for logs and <c>herald doctor</c>.</summary>
    public string Target { get; }

    /// <inheritdoc />
    public bool IsSingleNode => false;

    /// <summary>
    /// Completions refused because the row was no longer leased to the caller (its lease expired and was
    /// reaped, and another node may have sent it): counted since the store was opened.
    /// </summary>
    public long FencedCompletions => Interlocked.Read(ref _fencedCompletions);

    /// <summary>Whether the LISTEN connection is up (false when listening is off or reconnecting).</summary>
    public bool IsListening { get; private set; }

    /// <summary>
    /// Raised (on a background thread) when another node, or this one, enqueued or released work. Subscribing
    /// the first handler starts the LISTEN connection, unless <see cref="PostgresStoreOptions.Listen"/> is off.
    /// </summary>
    public event Action? QueueWake
    {
        add
        {
            lock (_wakeLock)
            {
                ObjectDisposedException.ThrowIf(_disposed, this);
                _queueWake += value;
                StartListenerLocked();
            }
        }

        remove
        {
            lock (_wakeLock)
            {
                _queueWake -= value;
            }
        }
    }

    /// <summary>Opens a store with the default options, the system clock and no logging unless given.</summary>
    public static PostgresStore Open(string connectionString, PostgresStoreOptions? options = null, TimeProvider? time = null, ILogger? logger = null)
        => new(connectionString, options ?? new PostgresStoreOptions(), time ?? TimeProvider.System, logger ?? NullLogger.Instance);

    /// <inheritdoc />
    public Task MigrateAsync(CancellationToken cancellationToken) => PostgresMigrator.MigrateAsync(this, cancellationToken);

    /// <inheritdoc />
    public Task<bool> PingAsync(CancellationToken cancellationToken)
        => ReadAsync(
            static async (c, ct) =>
            {
                await using var command = new NpgsqlCommand("SELECT 1", c);
                return await command.ExecuteScalarAsync(ct).ConfigureAwait(false) is int one && one == 1;
            },
            cancellationToken);

    /// <inheritdoc />
    public void Dispose() => DisposeAsync().AsTask().GetAwaiter().GetResult();

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        Task? listener;
        lock (_wakeLock)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            listener = _listener;
        }

        await _stopping.CancelAsync().ConfigureAwait(false);
        if (listener is not null)
        {
            try
            {
                await listener.ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                // Stopped.
            }
        }

        _stopping.Dispose();
        await _dataSource.DisposeAsync().ConfigureAwait(false);
    }

    /// <summary>The time as the store's clock says, in unix ms.</summary>
    private long NowMs => Pg.Ms(_time.GetUtcNow());

    /// <summary>Opens a pooled connection for the migrator and tests.</summary>
    internal async Task<NpgsqlConnection> OpenConnectionAsync(CancellationToken cancellationToken)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return await _dataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
    }

    internal TimeProvider Time => _time;

    internal ILogger Logger => _logger;

    /// <summary>
    /// Runs <paramref name="work"/> in one transaction on a pooled connection. Commits when it returns;
    /// rolls back (by disposing the transaction) and rethrows when it throws.
    /// </summary>
    private async Task<T> WriteAsync<T>(Func<NpgsqlConnection, CancellationToken, Task<T>> work, CancellationToken cancellationToken)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken).ConfigureAwait(false);
        var result = await work(connection, cancellationToken).ConfigureAwait(false);

        // Not cancellable: a commit cut short leaves the caller not knowing whether it happened.
        await transaction.CommitAsync(CancellationToken.None).ConfigureAwait(false);
        return result;
    }

    /// <summary>Runs a read on a pooled connection, outside any explicit transaction (each statement sees committed data).</summary>
    private async Task<T> ReadAsync<T>(Func<NpgsqlConnection, CancellationToken, Task<T>> read, CancellationToken cancellationToken)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        return await read(connection, cancellationToken).ConfigureAwait(false);
    }

    private static bool Has(DbConnectionStringBuilder given, params ReadOnlySpan<string> keys)
    {
        foreach (var key in keys)
        {
            if (given.ContainsKey(key))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>Starts the LISTEN connection (one, for the queue and the registration feed) unless listening is off; under <c>_wakeLock</c>.</summary>
    private void StartListenerLocked()
    {
        if (_options.Listen && _listener is null)
        {
            _listener = Task.Run(() => ListenLoopAsync(_stopping.Token));
        }
    }

    private void RaiseQueueWake() => InvokeGuarded(Volatile.Read(ref _queueWake), static h => h(), Log.WakeHandlerFailed);

    /// <summary>
    /// Runs a snapshot of an event's handlers on the listener's thread (a delegate field is immutable, so one read is a
    /// consistent snapshot); a failing handler is logged and never ends the listener.
    /// </summary>
    private void InvokeGuarded<THandler>(THandler? handlers, Action<THandler> invoke, Action<ILogger, Exception> failed)
        where THandler : Delegate
    {
        if (handlers is null)
        {
            return;
        }

        try
        {
            invoke(handlers);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            failed(_logger, ex);
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 3101, Level = LogLevel.Information, Message = "Applied database migration {Version} ({Name}) to PostgreSQL {Target}")]
        public static partial void Migrated(ILogger logger, int version, string name, string target);

        [LoggerMessage(EventId = 3102, Level = LogLevel.Information, Message = "Released {Count} expired leases ({Coalesced} of them folded into a newer pending notification)")]
        public static partial void LeasesReleased(ILogger logger, int count, int coalesced);

        [LoggerMessage(EventId = 3103, Level = LogLevel.Information, Message = "Registration {RegistrationId} deactivated: {Reason}")]
        public static partial void Deactivated(ILogger logger, string registrationId, string reason);

        [LoggerMessage(EventId = 3104, Level = LogLevel.Information, Message = "Purged {Count} completed notifications older than {OlderThan}")]
        public static partial void Purged(ILogger logger, int count, DateTimeOffset olderThan);

        [LoggerMessage(EventId = 3105, Level = LogLevel.Warning, Message = "{Count} outcomes of {Owner} were ignored: their leases had expired and were released (another node may have sent them)")]
        public static partial void Fenced(ILogger logger, int count, string owner);

        [LoggerMessage(EventId = 3106, Level = LogLevel.Information, Message = "Listening for queue wake-ups and registration changes on {Target}")]
        public static partial void Listening(ILogger logger, string target);

        [LoggerMessage(EventId = 3107, Level = LogLevel.Warning, Message = "The LISTEN connection on {Target} failed; reconnecting in {Delay} (the dispatcher polls meanwhile; the mailbox sources re-read everything once reconnected)")]
        public static partial void ListenFailed(ILogger logger, string target, TimeSpan delay, Exception exception);

        [LoggerMessage(EventId = 3108, Level = LogLevel.Error, Message = "A queue wake-up handler failed")]
        public static partial void WakeHandlerFailed(ILogger logger, Exception exception);
    }
}

/// <summary>Options of the PostgreSQL store (<c>Herald:Postgres</c>).</summary>
public sealed class PostgresStoreOptions
{
    /// <summary>
    /// Whether each node holds a LISTEN connection for the queue's wake-up hint. Turn it off behind a
    /// transaction-pooling proxy (PgBouncer <c>pool_mode=transaction</c>), where LISTEN does not work:
    /// nodes then find other nodes' work by polling (<c>Herald:Dispatch:IdlePoll</c>).
    /// </summary>
    public bool Listen { get; set; } = true;
}

/// <summary>A store that can tell this node that work may be waiting (other nodes' enqueues).</summary>
public interface IQueueWakeSource
{
    /// <summary>Raised when work may be waiting; a hint only (it may be late, duplicated or missed).</summary>
    event Action? QueueWake;
}
