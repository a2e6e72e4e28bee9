using System.Buffers;
using System.Text;
using System.Text.Json;
using Herald.Core.Notifications;

namespace Herald.Storage.Sqlite;

public sealed partial class SqliteStore
{
    // The outcomes of a batch as one JSON array of arrays, in this order (see WriteOutcomes):
    // [id, state, status, reason, sent_at, completed_at, attempt]. Three statements then record the whole
    // batch, where one row at a time cost three statement executions per notification.
    private const string OutcomeColumns = """
        SELECT value ->> 0 AS id, value ->> 1 AS state, value ->> 2 AS status, value ->> 3 AS reason,
            value ->> 4 AS sent_at, value ->> 5 AS completed_at, value ->> 6 AS attempt
        FROM json_each(@outcomes)
        """;

    // Written before the rows change, so the fence (still leased to @owner) is the one the update applies. A first attempt
    // that was sent gets no row: the notification row itself says sent, when, and the provider's status and reason, and
    // GetAttemptsAsync shows it as that attempt (SelectAttemptsSql), so every attempt is still listed.
    private const string InsertAttemptsBatchSql = """
        INSERT INTO notification_attempts (notification_id, attempt, at, outcome, status, reason)
        SELECT n.id, CASE WHEN o.attempt > 0 THEN o.attempt ELSE n.attempts END, o.completed_at, o.state, o.status, o.reason
        FROM (
        """ + OutcomeColumns + """
        ) AS o
        JOIN notifications AS n ON n.id = o.id
        WHERE n.lease_owner = @owner AND n.state = 1 AND NOT (o.state = 3 AND o.attempt = 1)
        """;

    // Terminal outcomes only (sent, failed, expired, dead): the row ends, and forgets its token unless it
    // is dead (a dead row may be requeued).
    private const string CompleteBatchSql = """
        UPDATE notifications
        SET state = o.state, lease_owner = NULL, lease_until = NULL, last_status = o.status, last_reason = o.reason,
            sent_at = COALESCE(o.sent_at, notifications.sent_at), completed_at = o.completed_at,
            token = CASE WHEN o.state IN (3, 4, 5) THEN '' ELSE notifications.token END
        FROM (
        """ + OutcomeColumns + """
        ) AS o
        WHERE notifications.id = o.id AND notifications.lease_owner = @owner AND notifications.state = 1
        RETURNING notifications.id, notifications.registration_id
        """;

    // [registration id, at, result] per registration; the newest result wins, and never goes back in time.
    private const string RecordPushBatchSql = """
        UPDATE registrations SET last_push_at = p.at, last_push_result = p.result
        FROM (SELECT value ->> 0 AS id, value ->> 1 AS at, value ->> 2 AS result FROM json_each(@pushes)) AS p
        WHERE registrations.id = p.id AND (registrations.last_push_at IS NULL OR registrations.last_push_at <= p.at)
        """;

    private int Complete(SqliteSession s, string owner, IReadOnlyList<DeliveryOutcome> outcomes)
    {
        // Retries (which may fold into a newer row) and dead tokens (which deactivate the registration) take the
        // long way, one by one; so does a second outcome for the same id (the first one wins, as one by one).
        List<DeliveryOutcome>? batch = null;
        List<DeliveryOutcome>? oneByOne = null;
        var ids = new HashSet<long>(outcomes.Count);
        foreach (var outcome in outcomes)
        {
            if (outcome.State == NotificationState.Retrying || outcome.DeactivateRegistration || !ids.Add(outcome.NotificationId))
            {
                (oneByOne ??= []).Add(outcome);
            }
            else
            {
                (batch ??= new List<DeliveryOutcome>(outcomes.Count)).Add(outcome);
            }
        }

        var applied = batch is null ? 0 : CompleteBatch(s, owner, batch);
        if (oneByOne is not null)
        {
            foreach (var outcome in oneByOne)
            {
                applied += CompleteOne(s, owner, outcome) ? 1 : 0;
            }
        }

        return applied;
    }

    private static int CompleteBatch(SqliteSession s, string owner, List<DeliveryOutcome> batch)
    {
        var json = WriteOutcomes(batch);
        if (batch.Exists(static o => !IsFirstAttemptSent(o)))
        {
            s.Statement(InsertAttemptsBatchSql, "@outcomes", "@owner").Set(0, json).Set(1, owner).Execute();
        }

        var applied = 0;
        Dictionary<long, string>? registrationOf = null;
        using (var reader = s.Statement(CompleteBatchSql, "@outcomes", "@owner").Set(0, json).Set(1, owner).Query())
        {
            while (reader.Read())
            {
                applied++;
                if (reader.StringOrNull(1) is { } registrationId)
                {
                    (registrationOf ??= new Dictionary<long, string>(batch.Count))[reader.GetInt64(0)] = registrationId;
                }
            }
        }

        if (registrationOf is not null)
        {
            s.Statement(RecordPushBatchSql, "@pushes").Set(0, WritePushes(batch, registrationOf)).Execute();
        }

        return applied;
    }

    /// <summary>A first attempt that was sent: recorded by the notification row alone (see <see cref="InsertAttemptsBatchSql"/>).</summary>
    internal static bool IsFirstAttemptSent(DeliveryOutcome outcome) => outcome.State == NotificationState.Sent && outcome.Attempt == 1;

    private static string WriteOutcomes(List<DeliveryOutcome> batch)
    {
        var buffer = new ArrayBufferWriter<byte>(batch.Count * 48);
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartArray();
            foreach (var o in batch)
            {
                var at = Db.Ms(o.CompletedAt);
                writer.WriteStartArray();
                writer.WriteNumberValue(o.NotificationId);
                writer.WriteNumberValue((int)o.State);
                writer.WriteNumberValue(o.StatusCode);
                WriteStringOrNull(writer, o.Reason);
                if (o.State == NotificationState.Sent)
                {
                    writer.WriteNumberValue(at);
                }
                else
                {
                    writer.WriteNullValue();
                }

                writer.WriteNumberValue(at);
                writer.WriteNumberValue(o.Attempt);
                writer.WriteEndArray();
            }

            writer.WriteEndArray();
        }

        return Encoding.UTF8.GetString(buffer.WrittenSpan);
    }

    /// <summary>The registrations' last push of the applied outcomes: the newest per registration.</summary>
    private static string WritePushes(List<DeliveryOutcome> batch, Dictionary<long, string> registrationOf)
    {
        var newest = new Dictionary<string, DeliveryOutcome>(registrationOf.Count, StringComparer.Ordinal);
        foreach (var o in batch)
        {
            if (registrationOf.TryGetValue(o.NotificationId, out var registrationId)
                && (!newest.TryGetValue(registrationId, out var seen) || seen.CompletedAt <= o.CompletedAt))
            {
                newest[registrationId] = o;
            }
        }

        var buffer = new ArrayBufferWriter<byte>(newest.Count * 48);
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartArray();
            foreach (var (registrationId, o) in newest)
            {
                writer.WriteStartArray();
                writer.WriteStringValue(registrationId);
                writer.WriteNumberValue(Db.Ms(o.CompletedAt));
                writer.WriteStringValue(PushResultText(o));
                writer.WriteEndArray();
            }

            writer.WriteEndArray();
        }

        return Encoding.UTF8.GetString(buffer.WrittenSpan);
    }

    private static void WriteStringOrNull(Utf8JsonWriter writer, string? value)
    {
        if (value is null)
        {
            writer.WriteNullValue();
        }
        else
        {
            writer.WriteStringValue(value);
        }
    }
}
