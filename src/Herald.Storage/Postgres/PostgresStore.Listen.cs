using Npgsql;

namespace Herald.Storage.Postgres;

public sealed partial class PostgresStore
{
    /// <summary>How long the listener waits for a notification before it proves the connection alive.</summary>
    internal static readonly TimeSpan ListenProbeInterval = TimeSpan.FromSeconds(15);

    private static readonly TimeSpan MaxReconnectDelay = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Holds one connection that LISTENs on <see cref="QueueChannel"/> and <see cref="RegistrationsChannel"/>, and
    /// raises <see cref="QueueWake"/> or <see cref="RegistrationChanged"/> for every notification. When the connection
    /// breaks (database restart, failover, network), it reconnects with a growing delay (up to 30 s) and, once
    /// connected again, raises the wake-up and <see cref="RegistrationChangesMissed"/>, since notifications sent
    /// meanwhile are lost (the first connection raises them too: what changed before it was heard by nobody). The
    /// dispatcher's polling and the workers' safety-net re-reads cover the gap.
    /// </summary>
    private async Task ListenLoopAsync(CancellationToken stopping)
    {
        var delay = TimeSpan.FromMilliseconds(250);
        while (!stopping.IsCancellationRequested)
        {
            try
            {
                await using var connection = new NpgsqlConnection(_listenConnectionString);
                connection.Notification += (_, e) =>
                {
                    if (e.Channel == QueueChannel)
                    {
                        RaiseQueueWake();
                    }
                    else if (e.Channel == RegistrationsChannel)
                    {
                        RaiseRegistrationChanged(e.Payload);
                    }
                };
                await connection.OpenAsync(stopping).ConfigureAwait(false);
                await using (var listen = new NpgsqlCommand("LISTEN " + QueueChannel + "; LISTEN " + RegistrationsChannel, connection))
                {
                    await listen.ExecuteNonQueryAsync(stopping).ConfigureAwait(false);
                }

                IsListening = true;
                Log.Listening(_logger, Target);
                RaiseQueueWake(); // whatever was enqueued while not listening
                RaiseRegistrationChangesMissed(); // and whatever registration changed meanwhile
                delay = TimeSpan.FromMilliseconds(250);
                while (!stopping.IsCancellationRequested)
                {
                    if (!await connection.WaitAsync(ListenProbeInterval, stopping).ConfigureAwait(false))
                    {
                        // Quiet for a while: a round trip proves the connection (a silent dead peer otherwise
                        // leaves the listener deaf until TCP keepalive notices).
                        await using var probe = new NpgsqlCommand("SELECT 1", connection);
                        await probe.ExecuteNonQueryAsync(stopping).ConfigureAwait(false);
                    }
                }
            }
            catch (OperationCanceledException) when (stopping.IsCancellationRequested)
            {
                break;
            }
            catch (Exception ex) when (ex is NpgsqlException or System.Net.Sockets.SocketException or IOException or TimeoutException or InvalidOperationException)
            {
                IsListening = false;
                Log.ListenFailed(_logger, Target, delay, ex);
                try
                {
                    await Task.Delay(delay, _time, stopping).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    break;
                }

                delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, MaxReconnectDelay.Ticks));
            }
        }

        IsListening = false;
    }
}
