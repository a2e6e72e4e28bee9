using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using Herald.Core.Ports;
using Herald.Core.Registrations;
using Herald.Core.Security;
using Herald.Storage;

namespace Herald.Server.Cli;

/// <summary>What the bench commands share: machine facts, process CPU and memory, percentiles, tables, docs.</summary>
internal static class BenchSupport
{
    /// <summary>One line about the machine: cores, memory, load average, OS, .NET.</summary>
    public static string Machine()
    {
        var memory = ReadField("/proc/meminfo", "MemTotal:") is { } kb ? $"{kb / 1024.0 / 1024.0:0.0} GiB RAM" : "memory unknown";
        var cpu = File.Exists("/proc/cpuinfo")
            ? File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal))?.Split(':', 2)[1].Trim()
            : null;
        return string.Create(
            CultureInfo.InvariantCulture,
            $"{Environment.ProcessorCount} cores ({cpu ?? RuntimeInformation.ProcessArchitecture.ToString()}), {memory}, load average {LoadAverage()}, {RuntimeInformation.OSDescription}, .NET {Environment.Version}");
    }

    /// <summary>The 1, 5 and 15 minute load averages, as /proc/loadavg has them.</summary>
    public static string LoadAverage()
        => File.Exists("/proc/loadavg") ? string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3)) : "n/a";

    /// <summary>CPU time (user + system) and resident memory of a process, from /proc (this process when <paramref name="pid"/> is null).</summary>
    public static (TimeSpan Cpu, long ResidentBytes) ProcessUsage(int? pid = null)
    {
        var root = "/proc/" + (pid?.ToString(CultureInfo.InvariantCulture) ?? "self");
        if (!File.Exists(root + "/stat"))
        {
            using var p = pid is null ? Process.GetCurrentProcess() : Process.GetProcessById(pid.Value);
            return (p.TotalProcessorTime, p.WorkingSet64);
        }

        // Fields after the command name (which may hold spaces) start at index 2 = state; utime is field 14, stime 15.
        var stat = File.ReadAllText(root + "/stat");
        var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        var ticks = long.Parse(fields[11], CultureInfo.InvariantCulture) + long.Parse(fields[12], CultureInfo.InvariantCulture);
        var rss = (ReadField(root + "/status", "VmRSS:") ?? 0) * 1024;
        return (TimeSpan.FromSeconds(ticks / 100.0), rss); // USER_HZ is 100 on Linux
    }

    private static long? ReadField(string path, string name)
    {
        if (!File.Exists(path))
        {
            return null;
        }

        var line = File.ReadLines(path).FirstOrDefault(l => l.StartsWith(name, StringComparison.Ordinal));
        return line is null ? null : long.Parse(line[name.Length..].Trim().Split(' ')[0], CultureInfo.InvariantCulture);
    }

    /// <summary>The q-quantile (nearest rank) of sorted values; NaN when empty.</summary>
    public static double Percentile(IReadOnlyList<double> sorted, double q)
        => sorted.Count == 0 ? double.NaN : sorted[Math.Clamp((int)Math.Ceiling(q * sorted.Count) - 1, 0, sorted.Count - 1)];

    /// <summary>A Markdown table.</summary>
    public static string Table(IReadOnlyList<string> header, IEnumerable<IReadOnlyList<string>> rows)
    {
        var text = new StringBuilder();
        text.Append("| ").AppendJoin(" | ", header).AppendLine(" |");
        text.Append('|').AppendJoin('|', header.Select(_ => " --- ")).AppendLine("|");
        foreach (var row in rows)
        {
            text.Append("| ").AppendJoin(" | ", row).AppendLine(" |");
        }

        return text.ToString();
    }

    public static string F(double value, string format = "0") => value.ToString(format, CultureInfo.InvariantCulture);

    public static string Mib(long bytes) => F(bytes / 1024.0 / 1024.0, "0") + " MiB";

    /// <summary>The command line as typed, for the record.</summary>
    public static string CommandLine() => "herald " + string.Join(' ', Environment.GetCommandLineArgs().Skip(1));

    /// <summary>
    /// Appends a section (title, table, machine, versions, command) to docs/BENCHMARKS.md found from the current
    /// directory upwards; returns the file written, or null when none was found.
    /// </summary>
    public static string? AppendToDocs(string title, string body, string? versions = null)
    {
        for (var dir = new DirectoryInfo(Directory.GetCurrentDirectory()); dir is not null; dir = dir.Parent)
        {
            var path = Path.Combine(dir.FullName, "docs", "BENCHMARKS.md");
            if (File.Exists(path))
            {
                var section = new StringBuilder()
                    .AppendLine()
                    .Append("### ").Append(title).Append(" (").Append(DateTimeOffset.UtcNow.ToString("yyyy-MM-dd HH:mm 'UTC'", CultureInfo.InvariantCulture)).AppendLine(")")
                    .AppendLine()
                    .AppendLine("```")
                    .AppendLine(CommandLine())
                    .AppendLine("```")
                    .AppendLine()
                    .Append("Machine: ").AppendLine(Machine() + ".")
                    .AppendLine(versions is null ? string.Empty : "Versions: " + versions + ".")
                    .AppendLine()
                    .Append(body);
                File.AppendAllText(path, section.ToString());
                return path;
            }
        }

        return null;
    }

    /// <summary>The folder of the Node.js peers (bench/peers), found from the current directory or the binary upwards.</summary>
    public static string? FindPeersFolder()
    {
        foreach (var start in new[] { Directory.GetCurrentDirectory(), AppContext.BaseDirectory })
        {
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
            {
                var path = Path.Combine(dir.FullName, "bench", "peers");
                if (File.Exists(Path.Combine(path, "package.json")))
                {
                    return path;
                }
            }
        }

        return null;
    }

    /// <summary>The full path of an executable on PATH, or null.</summary>
    public static string? Which(string name)
    {
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? string.Empty).Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries))
        {
            var path = Path.Combine(dir, name);
            if (File.Exists(path))
            {
                return path;
            }
        }

        return null;
    }

    /// <summary>Runs a process to the end; returns its exit code and standard output (standard error is appended on failure).</summary>
    public static async Task<(int ExitCode, string Output)> RunProcessAsync(string file, IEnumerable<string> arguments, string? workingDirectory, TimeSpan limit, CancellationToken cancellationToken, IReadOnlyDictionary<string, string>? environment = null)
    {
        var info = new ProcessStartInfo(file)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = workingDirectory ?? Directory.GetCurrentDirectory(),
        };
        foreach (var argument in arguments)
        {
            info.ArgumentList.Add(argument);
        }

        foreach (var (key, value) in environment ?? new Dictionary<string, string>())
        {
            info.Environment[key] = value;
        }

        using var process = Process.Start(info) ?? throw new InvalidOperationException("Could not start " + file);
        var stdout = process.StandardOutput.ReadToEndAsync(cancellationToken);
        var stderr = process.StandardError.ReadToEndAsync(cancellationToken);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(limit);
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{Path.GetFileName(file)} did not finish within {limit.TotalSeconds:0} s.");
        }

        var output = await stdout;
        var errors = await stderr;
        return (process.ExitCode, process.ExitCode == 0 ? output : output + errors);
    }

    /// <summary>
    /// Loads <paramref name="count"/> EWS-push badge registrations for APNs in batches through the store's bulk port;
    /// returns each one's id, device token and callback key (the key is what Exchange's URL carries).
    /// </summary>
    public static async Task<(string Id, string Token, string Key)[]> LoadRegistrationsAsync(IHeraldStore store, int count, string topic, CancellationToken cancellationToken, Action<int>? progress = null)
    {
        if (store is not IRegistrationBulkLoad bulk)
        {
            throw new NotSupportedException("This store has no bulk registration load (IRegistrationBulkLoad); the bench needs SQLite.");
        }

        var result = new (string Id, string Token, string Key)[count];
        var batch = new List<BulkRegistration>(10_000);
        var now = DateTimeOffset.UtcNow;
        for (var i = 0; i < count; i++)
        {
            var key = Secrets.NewKey(string.Empty, 24);
            var token = DeviceToken(i);
            var registration = new Registration
            {
                Id = "reg_" + Guid.CreateVersion7().ToString("N"),
                TenantId = "default",
                Platform = Platform.Apns,
                Token = token,
                Topic = topic,
                Source = SourceKind.EwsPush,
                Style = NotificationStyle.Badge,
                Status = RegistrationStatus.Active,
                CreatedAt = now,
                UpdatedAt = now,
            };
            result[i] = (registration.Id, token, key);
            batch.Add(new BulkRegistration(registration, Secrets.Hash(key)));
            if (batch.Count == 10_000 || i == count - 1)
            {
                await bulk.CreateManyAsync(batch, cancellationToken);
                batch.Clear();
                progress?.Invoke(i + 1);
            }
        }

        return result;
    }

    /// <summary>The bench's device token number <paramref name="i"/> (64 hex digits; the Node.js peers build the same).</summary>
    /// <summary>A warm-up send's device token: its own range (0x10000000 and up), as the Node.js peers' warmupToken.</summary>
    public static string WarmUpDeviceToken(long i) => DeviceToken(0x10000000 + i);

    public static string DeviceToken(long i) => i.ToString("x8", CultureInfo.InvariantCulture) + "0123456789abcdef0123456789abcdef0123456789abcdef01234567";
}
