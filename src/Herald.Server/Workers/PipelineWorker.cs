using Herald.Core.Pipeline;
using Herald.Core.Settings;

namespace Herald.Server.Workers;

/// <summary>
/// Runs the pipeline's long-lived loops (ingest writer, dispatcher, settings) for the life of the host. The lease
/// reaper is a leader duty (<see cref="FarmWorker"/>): one node of the farm sweeps for all.
/// A loop that crashes is logged and restarted after a pause: one fault must not stop the gateway.
/// </summary>
internal sealed partial class PipelineWorker(
    IngestService ingest,
    Dispatcher dispatcher,
    SettingsMonitor settings,
    TimeProvider time,
    ILogger<PipelineWorker> logger) : BackgroundService
{
    protected override Task ExecuteAsync(CancellationToken stoppingToken)
        => Task.WhenAll(
            KeepRunningAsync("ingest", ingest.RunAsync, stoppingToken),
            KeepRunningAsync("dispatcher", dispatcher.RunAsync, stoppingToken),
            KeepRunningAsync("settings", settings.RunAsync, stoppingToken));

    private async Task KeepRunningAsync(string name, Func<CancellationToken, Task> loop, CancellationToken stoppingToken)
    {
        await Task.Yield();
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await loop(stoppingToken);
                return;
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex)
            {
                Log.LoopCrashed(logger, name, ex);
                try
                {
                    await Task.Delay(TimeSpan.FromSeconds(1), time, stoppingToken);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 3001, Level = LogLevel.Error, Message = "The {Loop} loop failed; restarting it")]
        public static partial void LoopCrashed(ILogger logger, string loop, Exception exception);
    }
}
