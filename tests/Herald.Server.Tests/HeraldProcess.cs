using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Herald.Server.Tests;

/// <summary>A real <c>herald serve</c> child process, for crash tests (SIGKILL and restart on the same database).</summary>
public sealed class HeraldProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _output = new();

    private HeraldProcess(Process process, string baseUrl)
    {
        _process = process;
        BaseUrl = baseUrl;
        process.OutputDataReceived += (_, e) => Append(e.Data);
        process.ErrorDataReceived += (_, e) => Append(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
    }

    public string BaseUrl { get; }

    public string Output
    {
        get
        {
            lock (_output)
            {
                return _output.ToString();
            }
        }
    }

    /// <summary>The built herald.dll beside this test assembly (the test project references the server, so the build copies it here).</summary>
    public static string HeraldDll
    {
        get
        {
            var dll = Path.Combine(AppContext.BaseDirectory, "herald.dll");
            return File.Exists(dll) ? dll : throw new FileNotFoundException("Build tests/Herald.Server.Tests first: " + dll);
        }
    }

    /// <summary>A loopback port that was free a moment ago.</summary>
    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    /// <summary>Starts <c>herald serve</c> with the settings as environment variables and waits until /healthz answers.</summary>
    public static Task<HeraldProcess> StartAsync(IDictionary<string, string?> settings, CancellationToken cancellationToken)
        => StartAsync(settings, FreePort(), cancellationToken);

    /// <summary>Starts <c>herald serve</c> on <paramref name="port"/> (known beforehand, e.g. for its public URL).</summary>
    public static async Task<HeraldProcess> StartAsync(IDictionary<string, string?> settings, int port, CancellationToken cancellationToken)
    {
        var baseUrl = $"http://127.0.0.1:{port}";
        var info = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        info.ArgumentList.Add(HeraldDll);
        info.ArgumentList.Add("serve");
        info.ArgumentList.Add("--urls");
        info.ArgumentList.Add(baseUrl);
        foreach (var (key, value) in settings)
        {
            info.Environment[key.Replace(":", "__", StringComparison.Ordinal)] = value;
        }

        var process = Process.Start(info) ?? throw new InvalidOperationException("could not start herald");
        var herald = new HeraldProcess(process, baseUrl);
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(2) };
        for (var i = 0; i < 300; i++)
        {
            if (process.HasExited)
            {
                throw new InvalidOperationException($"herald exited with {process.ExitCode}:\n{herald.Output}");
            }

            try
            {
                using var response = await http.GetAsync(baseUrl + "/healthz", cancellationToken);
                if (response.IsSuccessStatusCode)
                {
                    return herald;
                }
            }
            catch (HttpRequestException)
            {
                // Not listening yet.
            }
            catch (TaskCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                // Slow start.
            }

            await Task.Delay(100, cancellationToken);
        }

        await herald.DisposeAsync();
        throw new TimeoutException("herald did not become healthy in 30 s:\n" + herald.Output);
    }

    /// <summary>SIGKILL: no shutdown hooks, no flushing, exactly like a crash or power cut of the process.</summary>
    public async Task KillAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: false); // SIGKILL on Linux
        }

        await _process.WaitForExitAsync();
    }

    /// <summary>SIGSTOP: the process freezes (like a paused VM or a long stall) with its connections open; <see cref="ResumeAsync"/> thaws it.</summary>
    public Task PauseAsync() => SignalAsync("-STOP");

    /// <summary>SIGCONT after <see cref="PauseAsync"/>.</summary>
    public Task ResumeAsync() => SignalAsync("-CONT");

    private async Task SignalAsync(string signal)
    {
        using var kill = Process.Start(new ProcessStartInfo("kill") { ArgumentList = { signal, _process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture) }, UseShellExecute = false })
            ?? throw new InvalidOperationException("could not run kill");
        await kill.WaitForExitAsync();
    }

    private void Append(string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (_output)
        {
            if (_output.Length < 200_000)
            {
                _output.AppendLine(line);
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        await KillAsync();
        _process.Dispose();
    }
}
