using Herald.Core.Notifications;
using Npgsql;

namespace Herald.Storage.Postgres;

public sealed partial class PostgresStore
{
    // A batch of outcomes in one statement: the outcomes come as parallel arrays; the fenced update (still
    // leased to @owner and being sent) decides which count, and only those get their attempt row and update
    // their registration's last push (the newest per registration, never back in time). Terminal rows forget
    // their token unless dead (a dead row may be requeued). A retry whose row has a coalescing key with a
    // pending row is left out here (it folds into that row the long way): the caller finds it missing.
    private const string CompleteBatchSql = """
        WITH o AS (
            SELECT * FROM unnest(@ids, @states, @statuses, @reasons, @due_ats, @sent_ats, @completed_ats, @ats, @attempts, @results)
                WITH ORDINALITY AS o (id, state, status, reason, due_at, sent_at, completed_at, at, attempt, result, ord)),
        done AS (
            UPDATE notifications AS n
            SET state = o.state, lease_owner = NULL, lease_until = NULL, last_status = o.status, last_reason = o.reason,
                due_at = COALESCE(o.due_at, n.due_at), sent_at = COALESCE(o.sent_at, n.sent_at), completed_at = o.completed_at,
                token = CASE WHEN o.state IN (3, 4, 5) THEN '' ELSE n.token END
            FROM o
            WHERE n.id = o.id AND n.lease_owner = @owner AND n.state = 1
                AND NOT (o.state = 2 AND n.coalesce_key IS NOT NULL AND EXISTS (
                    SELECT 1 FROM notifications AS p WHERE p.coalesce_key = n.coalesce_key AND p.state IN (0, 2)))
            RETURNING n.id, n.registration_id, n.attempts, o.state, o.status, o.reason, o.at, o.attempt, o.result, o.ord),
        attempts AS (
            INSERT INTO notification_attempts (notification_id, attempt, at, outcome, status, reason)
            SELECT d.id, CASE WHEN d.attempt > 0 THEN d.attempt ELSE d.attempts END, d.at, d.state, d.status, d.reason
            FROM done AS d
            WHERE NOT (d.state = 3 AND d.attempt = 1) -- a first attempt that was sent: the row itself records it
            ORDER BY d.ord),
        pushes AS (
            UPDATE registrations AS r SET last_push_at = p.at, last_push_result = p.result
            FROM (
                SELECT DISTINCT ON (d.registration_id) d.registration_id, d.at, d.result
                FROM done AS d
                WHERE d.registration_id IS NOT NULL
                ORDER BY d.registration_id, d.at DESC, d.ord DESC) AS p
            WHERE r.id = p.registration_id AND (r.last_push_at IS NULL OR r.last_push_at <= p.at))
        SELECT id FROM done
        """;

    private async Task<int> CompleteAsync(NpgsqlConnection c, string owner, IReadOnlyList<DeliveryOutcome> outcomes, CancellationToken ct)
    {
        await RelaxCommitAsync(c, ct).ConfigureAwait(false);

        // Dead tokens (which deactivate the registration) take the long way, one by one; so does a second
        // outcome for the same id (the first one wins, as one by one).
        List<DeliveryOutcome>? batch = null;
        List<DeliveryOutcome>? oneByOne = null;
        var ids = new HashSet<long>(outcomes.Count);
        foreach (var outcome in outcomes)
        {
            if (outcome.DeactivateRegistration || !ids.Add(outcome.NotificationId))
            {
                (oneByOne ??= []).Add(outcome);
            }
            else
            {
                (batch ??= new List<DeliveryOutcome>(outcomes.Count)).Add(outcome);
            }
        }

        var applied = 0;
        if (batch is not null)
        {
            var done = await CompleteBatchAsync(c, owner, batch, ct).ConfigureAwait(false);
            applied += done.Count;

            // Retries left out of the batch fold into their key's pending row (or were fenced off).
            List<DeliveryOutcome>? folds = null;
            foreach (var outcome in batch)
            {
                if (outcome.State == NotificationState.Retrying && !done.Contains(outcome.NotificationId))
                {
                    (folds ??= []).Add(outcome);
                }
            }

            if (folds is not null)
            {
                oneByOne = oneByOne is null ? folds : [.. folds, .. oneByOne];
            }
        }

        if (oneByOne is not null)
        {
            foreach (var outcome in oneByOne)
            {
                applied += await CompleteOneAsync(c, owner, outcome, ct).ConfigureAwait(false) ? 1 : 0;
            }
        }

        return applied;
    }

    private static async Task<HashSet<long>> CompleteBatchAsync(NpgsqlConnection c, string owner, List<DeliveryOutcome> batch, CancellationToken ct)
    {
        var n = batch.Count;
        var ids = new long[n];
        var states = new short[n];
        var statuses = new int[n];
        var reasons = new string?[n];
        var dueAts = new long?[n];
        var sentAts = new long?[n];
        var completedAts = new long?[n];
        var ats = new long[n];
        var attempts = new int[n];
        var results = new string?[n];
        for (var i = 0; i < n; i++)
        {
            var o = batch[i];
            var at = Pg.Ms(o.CompletedAt);
            ids[i] = o.NotificationId;
            states[i] = (short)o.State;
            statuses[i] = o.StatusCode;
            reasons[i] = o.Reason;
            dueAts[i] = o.State == NotificationState.Retrying ? Pg.Ms(o.RetryAt ?? o.CompletedAt) : null;
            sentAts[i] = o.State == NotificationState.Sent ? at : null;
            completedAts[i] = o.State == NotificationState.Retrying ? null : at;
            ats[i] = at;
            attempts[i] = o.Attempt;
            results[i] = PushResultText(o);
        }

        await using var command = Pg.Command(c, CompleteBatchSql)
            .Add("ids", ids)
            .Add("states", states)
            .Add("statuses", statuses)
            .Add("reasons", reasons)
            .Add("due_ats", dueAts)
            .Add("sent_ats", sentAts)
            .Add("completed_ats", completedAts)
            .Add("ats", ats)
            .Add("attempts", attempts)
            .Add("results", results)
            .Add("owner", owner);
        var done = new HashSet<long>(n);
        await using var reader = await command.ExecuteReaderAsync(ct).ConfigureAwait(false);
        while (await reader.ReadAsync(ct).ConfigureAwait(false))
        {
            done.Add(reader.GetInt64(0));
        }

        return done;
    }
}
