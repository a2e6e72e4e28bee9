using Microsoft.Extensions.Logging;

namespace Herald.Storage.Sqlite;

/// <summary>
/// WAL checkpoints off the write path. SQLite's automatic checkpoint runs inside the commit that crosses
/// <c>wal_autocheckpoint</c> pages: that commit (an ingest's group commit, a claim) then copies every page changed since the
/// last checkpoint into the database file and syncs it, while every other write waits at the gate. With small
/// transactions at a low event rate the WAL fills quickly (each commit writes whole pages), so this stall came back every
/// few seconds and was the tail of the streaming benchmark's latency. Here a dedicated thread runs a PASSIVE checkpoint on
/// its own connection after every 32 commits (at most four times a second): WAL readers and the writer go on meanwhile (SQLite lets a checkpoint run
/// beside one writer), and the WAL stays far below the automatic threshold, which remains as the backstop.
/// </summary>
public sealed partial class SqliteStore
{
    /// <summary>Commits after which a background checkpoint is requested (if none is running).</summary>
    internal const int CheckpointEveryCommits = 32;

    private const string CheckpointerPragmas = """
        PRAGMA synchronous = FULL;
        PRAGMA busy_timeout = 5000;
        """;

    private readonly SemaphoreSlim _checkpointWake = new(0, 1);
    private readonly Lock _checkpointLock = new();
    private Thread? _checkpointThread;
    private int _commitsSinceCheckpoint;
    private long _lastCheckpointRequest;
    private long _checkpoints;

    /// <summary>Background checkpoints run so far (for tests and diagnostics).</summary>
    internal long Checkpoints => Interlocked.Read(ref _checkpoints);

    /// <summary>
    /// The shortest time between two background checkpoints: each one writes the pages changed since the last and syncs
    /// the database file, so checkpointing after every few commits at a high rate would cost more I/O than it saves.
    /// </summary>
    internal static readonly TimeSpan CheckpointMinInterval = TimeSpan.FromMilliseconds(250);

    /// <summary>Called after each commit on the write connection, with the gate held.</summary>
    private void NoteCommit()
    {
        if (++_commitsSinceCheckpoint < CheckpointEveryCommits
            || (_lastCheckpointRequest != 0 && _time.GetElapsedTime(_lastCheckpointRequest) < CheckpointMinInterval))
        {
            return;
        }

        _commitsSinceCheckpoint = 0;
        _lastCheckpointRequest = _time.GetTimestamp();
        RequestCheckpoint();
    }

    /// <summary>Wakes the checkpoint thread (starting it on first use); a request while one runs is folded into the next.</summary>
    internal void RequestCheckpoint()
    {
        if (_disposed)
        {
            return;
        }

        lock (_checkpointLock)
        {
            if (_checkpointThread is null)
            {
                _checkpointThread = new Thread(CheckpointLoop) { IsBackground = true, Name = "herald-sqlite-checkpoint" };
                _checkpointThread.Start();
            }
        }

        if (_checkpointWake.CurrentCount == 0)
        {
            try
            {
                _checkpointWake.Release();
            }
            catch (SemaphoreFullException)
            {
                // Already requested.
            }
        }
    }

    private void CheckpointLoop()
    {
        SqliteSession? session = null;
        try
        {
            while (true)
            {
                _checkpointWake.Wait();
                if (_disposed)
                {
                    return;
                }

                try
                {
                    session ??= SqliteSession.Open(_connectionString, CheckpointerPragmas);
                    session.ExecuteScalar("PRAGMA wal_checkpoint(PASSIVE)");
                    Interlocked.Increment(ref _checkpoints);
                }
                catch (Exception ex) when (ex is Microsoft.Data.Sqlite.SqliteException or InvalidOperationException or IOException)
                {
                    // The writer's automatic checkpoint still bounds the WAL; try again on the next request.
                    Log.CheckpointFailed(_logger, ex);
                    session?.Dispose();
                    session = null;
                }
            }
        }
        finally
        {
            session?.Dispose();
        }
    }

    /// <summary>Stops the checkpoint thread (before the connections close).</summary>
    private void StopCheckpointer()
    {
        Thread? thread;
        lock (_checkpointLock)
        {
            thread = _checkpointThread;
            _checkpointThread = null;
        }

        if (thread is null)
        {
            return;
        }

        if (_checkpointWake.CurrentCount == 0)
        {
            try
            {
                _checkpointWake.Release();
            }
            catch (SemaphoreFullException)
            {
                // Already woken.
            }
        }

        thread.Join(TimeSpan.FromSeconds(10));
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 3010, Level = LogLevel.Warning, Message = "A background WAL checkpoint failed; the next one retries")]
        public static partial void CheckpointFailed(ILogger logger, Exception exception);
    }
}
