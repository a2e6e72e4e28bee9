using System.Diagnostics;

namespace Herald.Server.Cli;

/// <summary>
/// A gateway run as a child process (<c>dotnet herald.dll serve</c>) on settings passed as environment variables, so
/// its CPU and resident memory are its own and a load generator in another process drives it as a client would.
/// </summary>
internal sealed class BenchChildGateway : IAsyncDisposable
{
    private readonly Process _process;

    private BenchChildGateway(Process process, string baseUrl, double startSeconds)
    {
        _process = process;
        BaseUrl = baseUrl;
        StartSeconds = startSeconds;
    }

    /// <summary>The gateway's address, <c>http://127.0.0.1:PORT</c>.</summary>
    public string BaseUrl { get; }

    /// <summary>Seconds from the process start to the first successful <c>/readyz</c>.</summary>
    public double StartSeconds { get; }

    /// <summary>The child's process id (for its CPU time and resident memory).</summary>
    public int Id => _process.Id;

    /// <summary>Starts <c>herald serve</c> on a free loopback port and waits (up to 5 minutes) until <c>/readyz</c> answers 2xx.</summary>
    public static async Task<BenchChildGateway> StartAsync(IReadOnlyDictionary<string, string?> settings, CancellationToken cancellationToken)
    {
        var baseUrl = "http://127.0.0.1:" + FreePort().ToString(System.Globalization.CultureInfo.InvariantCulture);
        var info = new ProcessStartInfo("dotnet") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        info.ArgumentList.Add(HeraldDll());
        info.ArgumentList.Add("serve");
        info.ArgumentList.Add("--urls");
        info.ArgumentList.Add(baseUrl);
        foreach (var (key, value) in settings)
        {
            info.Environment[key.Replace(":", "__", StringComparison.Ordinal)] = value;
        }

        using var http = new HttpClient { BaseAddress = new Uri(baseUrl + "/"), Timeout = TimeSpan.FromSeconds(30) };
        var start = Stopwatch.StartNew();
        var child = Process.Start(info) ?? throw new InvalidOperationException("could not start herald serve");
        child.OutputDataReceived += (_, _) => { };
        child.ErrorDataReceived += (_, _) => { };
        child.BeginOutputReadLine();
        child.BeginErrorReadLine();
        try
        {
            while (true)
            {
                if (child.HasExited)
                {
                    throw new InvalidOperationException($"herald serve exited with {child.ExitCode} before /readyz answered.");
                }

                if (start.Elapsed > TimeSpan.FromMinutes(5))
                {
                    throw new TimeoutException("herald serve was not ready within 5 minutes.");
                }

                try
                {
                    using var ready = await http.GetAsync("readyz", cancellationToken);
                    if (ready.IsSuccessStatusCode)
                    {
                        return new BenchChildGateway(child, baseUrl, start.Elapsed.TotalSeconds);
                    }
                }
                catch (HttpRequestException)
                {
                    // Not listening yet.
                }

                await Task.Delay(5, cancellationToken);
            }
        }
        catch
        {
            await new BenchChildGateway(child, baseUrl, 0).DisposeAsync();
            throw;
        }
    }

    /// <summary>
    /// Migrates a fresh database with <paramref name="settings"/>, loads <paramref name="count"/> EWS-push badge
    /// registrations through the store's bulk port (in this process), then starts the gateway on that database.
    /// </summary>
    public static async Task<(BenchChildGateway Gateway, (string Id, string Token, string Key)[] Registrations)> StartLoadedAsync(
        Dictionary<string, string?> settings, int count, CancellationToken cancellationToken)
    {
        (string Id, string Token, string Key)[] registrations;
        await using (var loader = Hosting.HeraldApp.Build(["--urls=http://127.0.0.1:0"], configure: b => b.Configuration.AddInMemoryCollection(settings)))
        {
            await loader.Services.GetRequiredService<Core.Ports.IStoreAdmin>().MigrateAsync(cancellationToken);
            registrations = await BenchSupport.LoadRegistrationsAsync(loader.Services.GetRequiredService<Storage.IHeraldStore>(), count, BenchCommand.Topic, cancellationToken);
        }

        return (await StartAsync(settings, cancellationToken), registrations);
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync(CancellationToken.None);
        }

        _process.Dispose();
    }

    /// <summary>herald.dll beside this assembly (also in a test's output folder, which references the server).</summary>
    internal static string HeraldDll()
    {
        var dll = Path.Combine(AppContext.BaseDirectory, "herald.dll");
        return File.Exists(dll) ? dll : typeof(BenchChildGateway).Assembly.Location;
    }

    private static int FreePort()
    {
        using var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        return ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
    }
}
