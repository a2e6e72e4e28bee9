using System.Text;
using System.Text.Json;
using Herald.Core.Ports;
using Herald.Core.Registrations;
using Microsoft.Extensions.Logging;

namespace Herald.Storage.Postgres;

/// <summary>
/// The cross-node registration change feed: migration 0012's triggers send <c>pg_notify('herald_registrations')</c>
/// with <c>["tenant", source, "connector"]</c> in every transaction that creates, changes, deletes or deactivates a
/// registration with a connector; the LISTEN connection (<see cref="ListenLoopAsync"/>, shared with the queue's
/// wake-up) raises <see cref="RegistrationChanged"/> for each, and <see cref="RegistrationChangesMissed"/> on every
/// (re)connection, since notifications sent while not listening are lost. With <see cref="PostgresStoreOptions.Listen"/>
/// off nothing is raised: the workers' safety-net re-reads find other nodes' changes.
/// </summary>
public sealed partial class PostgresStore : IRegistrationChangeFeed
{
    /// <summary>The channel of the registration change notifications.</summary>
    public const string RegistrationsChannel = "herald_registrations";

    /// <summary>The payload the triggers send for a change they cannot name (ids too long for a notification).</summary>
    internal const string AllRegistrationsPayload = "*";

    private Action<RegistrationChange>? _registrationChanged;
    private Action? _registrationChangesMissed;

    /// <inheritdoc />
    /// <remarks>Subscribing the first handler starts the LISTEN connection, unless <see cref="PostgresStoreOptions.Listen"/> is off.</remarks>
    public event Action<RegistrationChange>? RegistrationChanged
    {
        add
        {
            lock (_wakeLock)
            {
                ObjectDisposedException.ThrowIf(_disposed, this);
                _registrationChanged += value;
                StartListenerLocked();
            }
        }

        remove
        {
            lock (_wakeLock)
            {
                _registrationChanged -= value;
            }
        }
    }

    /// <inheritdoc />
    /// <remarks>Subscribing the first handler starts the LISTEN connection, unless <see cref="PostgresStoreOptions.Listen"/> is off.</remarks>
    public event Action? RegistrationChangesMissed
    {
        add
        {
            lock (_wakeLock)
            {
                ObjectDisposedException.ThrowIf(_disposed, this);
                _registrationChangesMissed += value;
                StartListenerLocked();
            }
        }

        remove
        {
            lock (_wakeLock)
            {
                _registrationChangesMissed -= value;
            }
        }
    }

    /// <summary>
    /// Reads a notification's payload: <c>["tenant", source, "connector"]</c> (as <c>json_build_array</c> writes it), or
    /// null for <see cref="AllRegistrationsPayload"/> and anything unreadable (then everything is re-read).
    /// </summary>
    internal static RegistrationChange? ParseRegistrationPayload(string? payload)
    {
        if (string.IsNullOrEmpty(payload) || payload == AllRegistrationsPayload)
        {
            return null;
        }

        try
        {
            var reader = new Utf8JsonReader(Encoding.UTF8.GetBytes(payload));
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartArray
                || !reader.Read() || reader.TokenType != JsonTokenType.String)
            {
                return null;
            }

            var tenantId = reader.GetString();
            if (!reader.Read() || reader.TokenType != JsonTokenType.Number || !reader.TryGetInt16(out var source)
                || !reader.Read() || reader.TokenType != JsonTokenType.String)
            {
                return null;
            }

            var connector = reader.GetString();
            if (!reader.Read() || reader.TokenType != JsonTokenType.EndArray || reader.Read()
                || string.IsNullOrEmpty(tenantId) || string.IsNullOrEmpty(connector))
            {
                return null;
            }

            return new RegistrationChange(tenantId, (SourceKind)source, connector);
        }
        catch (JsonException)
        {
            return null;
        }
    }

    /// <summary>Raises the feed for one notification of <see cref="RegistrationsChannel"/> (on the listener's thread).</summary>
    private void RaiseRegistrationChanged(string? payload)
    {
        if (ParseRegistrationPayload(payload) is not { } change)
        {
            if (payload != AllRegistrationsPayload)
            {
                Log.RegistrationPayloadUnreadable(_logger, payload?.Length ?? 0);
            }

            RaiseRegistrationChangesMissed();
            return;
        }

        InvokeGuarded(Volatile.Read(ref _registrationChanged), h => h(change), Log.RegistrationHandlerFailed);
    }

    /// <summary>Tells the feed's subscribers that changes may have been missed (the listener (re)connected).</summary>
    private void RaiseRegistrationChangesMissed()
        => InvokeGuarded(Volatile.Read(ref _registrationChangesMissed), static h => h(), Log.RegistrationHandlerFailed);

    private static partial class Log
    {
        [LoggerMessage(EventId = 3112, Level = LogLevel.Error, Message = "A registration change handler failed")]
        public static partial void RegistrationHandlerFailed(ILogger logger, Exception exception);

        [LoggerMessage(EventId = 3113, Level = LogLevel.Warning, Message = "A registration change notification could not be read ({Length} characters); every connector is re-read instead")]
        public static partial void RegistrationPayloadUnreadable(ILogger logger, int length);
    }
}
