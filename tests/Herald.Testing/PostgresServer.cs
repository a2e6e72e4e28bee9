using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Xunit;

namespace Herald.Testing;

/// <summary>
/// A throw-away PostgreSQL cluster for tests: <c>initdb</c> in a temporary folder, started on a free
/// loopback port with trust authentication for 127.0.0.1 only, stopped and deleted at the end. Share one
/// per test assembly with <c>[assembly: AssemblyFixture(typeof(PostgresServer))]</c>; each test (or class)
/// takes a fresh database from <see cref="CreateDatabaseAsync"/>.
/// <para>
/// <c>initdb</c> refuses to run as root: as root the server runs as the <c>postgres</c> system user the
/// Debian package creates (through <c>runuser</c>). When PostgreSQL is not installed or cannot start,
/// <see cref="InitializeAsync"/> throws with the reason and the server log, so every test that needs it
/// fails loudly (never skips).
/// </para>
/// </summary>
public sealed class PostgresServer : IAsyncLifetime
{
    private const string SuperUser = "postgres";
    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(60);
    private string? _bin;
    private string? _root;
    private bool _runAsPostgres;
    private int _databases;

    /// <summary>The loopback port the server listens on.</summary>
    public int Port { get; private set; }

    /// <summary>The folder of the PostgreSQL programs (<c>/usr/lib/postgresql/NN/bin</c>).</summary>
    public string BinDirectory => _bin ?? throw new InvalidOperationException("The PostgreSQL server has not been started.");

    /// <summary>The cluster's data folder.</summary>
    public string DataDirectory => Path.Combine(_root ?? throw new InvalidOperationException("The PostgreSQL server has not been started."), "data");

    /// <summary>An Npgsql connection string for <paramref name="database"/> as the superuser (no password: trust on 127.0.0.1).</summary>
    public string ConnectionString(string database)
        => $"Host=127.0.0.1;Port={Port.ToString(CultureInfo.InvariantCulture)};Username={SuperUser};Database={database};Pooling=true;Timeout=15";

    public async ValueTask InitializeAsync()
    {
        _bin = FindBinDirectory();
        _runAsPostgres = Environment.IsPrivilegedProcess;
        _root = Path.Combine(Path.GetTempPath(), "herald-pg-" + Guid.NewGuid().ToString("N")[..12]);
        Directory.CreateDirectory(_root);
        try
        {
            if (_runAsPostgres)
            {
                // The server runs as postgres: it must own its folder (and reach it through /tmp).
                await RunAsync("chown", ["-R", SuperUser + ":", _root], asPostgres: false).ConfigureAwait(false);
            }

            await RunAsync(
                Path.Combine(_bin, "initdb"),
                ["-D", DataDirectory, "-U", SuperUser, "-A", "trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync", "--no-instructions"],
                _runAsPostgres).ConfigureAwait(false);

            // Trust on loopback TCP only; no Unix socket outside the temporary folder.
            await File.WriteAllTextAsync(
                Path.Combine(DataDirectory, "pg_hba.conf"),
                "host all all 127.0.0.1/32 trust\nlocal all all trust\n").ConfigureAwait(false);

            await StartAsync().ConfigureAwait(false);
        }
        catch
        {
            await DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>Creates a new, empty database and returns its connection string.</summary>
    public async Task<string> CreateDatabaseAsync(string prefix = "herald")
    {
        var name = prefix + "_" + Interlocked.Increment(ref _databases).ToString(CultureInfo.InvariantCulture) + "_" + Guid.NewGuid().ToString("N")[..8];
        await RunAsync(
            Path.Combine(BinDirectory, "createdb"),
            ["-h", "127.0.0.1", "-p", Port.ToString(CultureInfo.InvariantCulture), "-U", SuperUser, "-T", "template0", name],
            asPostgres: false).ConfigureAwait(false);
        return ConnectionString(name);
    }

    /// <summary>Drops a database made by <see cref="CreateDatabaseAsync"/> (its connections are ended).</summary>
    public async Task DropDatabaseAsync(string connectionString)
    {
        var database = connectionString.Split(';').Select(p => p.Split('=', 2)).First(p => p[0] == "Database")[1];
        await RunAsync(
            Path.Combine(BinDirectory, "dropdb"),
            ["-h", "127.0.0.1", "-p", Port.ToString(CultureInfo.InvariantCulture), "-U", SuperUser, "--force", "--if-exists", database],
            asPostgres: false).ConfigureAwait(false);
    }

    /// <summary>Stops the server quickly (in-flight transactions are lost as in a crash; committed ones are not).</summary>
    public Task StopAsync()
        => RunAsync(Path.Combine(BinDirectory, "pg_ctl"), ["stop", "-D", DataDirectory, "-m", "immediate", "-w"], _runAsPostgres);

    /// <summary>Starts the server (again) on the same port.</summary>
    public async Task StartAsync()
    {
        if (Port == 0)
        {
            Port = FreePort();
        }

        var options = string.Join(
            ' ',
            "-p " + Port.ToString(CultureInfo.InvariantCulture),
            "-c listen_addresses=127.0.0.1",
            "-c unix_socket_directories=" + _root,
            "-c max_connections=200",
            "-c shared_buffers=32MB",
            "-c fsync=off", // a throw-away cluster: durability across an OS crash is not under test
            "-c full_page_writes=off",
            "-c log_min_messages=warning");
        var log = Path.Combine(_root!, "server.log");
        try
        {
            await RunAsync(
                Path.Combine(BinDirectory, "pg_ctl"),
                ["start", "-D", DataDirectory, "-l", log, "-w", "-t", ((int)StartTimeout.TotalSeconds).ToString(CultureInfo.InvariantCulture), "-o", options],
                _runAsPostgres).ConfigureAwait(false);
        }
        catch (InvalidOperationException ex)
        {
            var serverLog = File.Exists(log) ? await File.ReadAllTextAsync(log).ConfigureAwait(false) : "(no server log)";
            throw new InvalidOperationException(ex.Message + "\nServer log:\n" + serverLog, ex);
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (_root is null)
        {
            return;
        }

        try
        {
            if (Port != 0 && File.Exists(Path.Combine(DataDirectory, "postmaster.pid")))
            {
                await StopAsync().ConfigureAwait(false);
            }
        }
        catch (InvalidOperationException)
        {
            // Already stopped, or never started: the folder goes anyway.
        }
        finally
        {
            try
            {
                Directory.Delete(_root, recursive: true);
            }
            catch (IOException)
            {
                // Left in the temporary folder; nothing else refers to it.
            }

            _root = null;
        }
    }

    private static string FindBinDirectory()
    {
        const string Root = "/usr/lib/postgresql";
        var candidates = Directory.Exists(Root)
            ? Directory.GetDirectories(Root)
                .Select(d => (Dir: Path.Combine(d, "bin"), Version: int.TryParse(Path.GetFileName(d), NumberStyles.None, CultureInfo.InvariantCulture, out var v) ? v : 0))
                .Where(c => File.Exists(Path.Combine(c.Dir, "initdb")) && File.Exists(Path.Combine(c.Dir, "pg_ctl")))
                .OrderByDescending(c => c.Version)
                .ToList()
            : [];
        if (candidates.Count == 0)
        {
            throw new InvalidOperationException(
                "PostgreSQL is not installed: no initdb and pg_ctl under /usr/lib/postgresql/*/bin. Install the Debian package 'postgresql' (test.sh does when run as root).");
        }

        return candidates[0].Dir;
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    private static async Task RunAsync(string program, IReadOnlyList<string> arguments, bool asPostgres)
    {
        var start = new ProcessStartInfo
        {
            FileName = asPostgres ? "runuser" : program,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = Path.GetTempPath(),
        };
        if (asPostgres)
        {
            foreach (var a in new[] { "-u", SuperUser, "--", program })
            {
                start.ArgumentList.Add(a);
            }
        }

        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        start.Environment["LC_ALL"] = "C.UTF-8";
        Process process;
        try
        {
            process = Process.Start(start) ?? throw new InvalidOperationException($"Could not start {start.FileName}.");
        }
        catch (System.ComponentModel.Win32Exception ex)
        {
            throw new InvalidOperationException($"Could not run {start.FileName}: {ex.Message}" + (asPostgres ? " (as root, the PostgreSQL test server runs as the 'postgres' user through runuser)." : "."), ex);
        }

        using (process)
        {
            var output = new StringBuilder();
            // pg_ctl starts the server with its output sent to the log file (-l): the pipes end with pg_ctl.
            var stdout = process.StandardOutput.ReadToEndAsync();
            var stderr = process.StandardError.ReadToEndAsync();
            using var timeout = new CancellationTokenSource(StartTimeout + TimeSpan.FromSeconds(30));
            try
            {
                await process.WaitForExitAsync(timeout.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                process.Kill(entireProcessTree: true);
                throw new InvalidOperationException($"{Path.GetFileName(program)} did not finish in time.");
            }

            output.Append(await stdout.ConfigureAwait(false)).Append(await stderr.ConfigureAwait(false));
            if (process.ExitCode != 0)
            {
                throw new InvalidOperationException(
                    $"{Path.GetFileName(program)} {string.Join(' ', arguments)} failed (exit {process.ExitCode}){(asPostgres ? " as user postgres" : string.Empty)}: {output.ToString().Trim()}");
            }
        }
    }
}
