-- Registration changes as a cross-node signal: every committed change a mailbox source's worker reacts to (a
-- registration with a connector created, changed in what the worker reads, deleted or deactivated) sends
-- pg_notify('herald_registrations', '["tenant", source, "connector"]') in the writing transaction, so every node that
-- LISTENs re-reads that connector at once (a rolled-back write sends nothing). Triggers rather than statements: every
-- path signals (API create/patch/delete, the dispatcher's dead-token deactivations, bulk loads) without each statement
-- remembering to. The payload names the tenant, the source (as its int) and the connector only: never a token or a
-- mailbox address. One transaction's identical payloads are delivered once (a bulk change of one connector is one
-- notification). A payload near the 8000-byte limit (ids that long are not expected) is sent as '*' (re-read
-- everything) rather than failing the write.
-- The hot paths (ingest state, last push, unread counts) do not touch the listed columns: no trigger fires for them.
CREATE FUNCTION herald_registrations_notify() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    payload text;
BEGIN
    IF TG_OP <> 'INSERT' AND OLD.connector IS NOT NULL THEN
        payload := json_build_array(OLD.tenant_id, OLD.source, OLD.connector)::text;
        PERFORM pg_notify('herald_registrations', CASE WHEN octet_length(payload) <= 4000 THEN payload ELSE '*' END);
    END IF;

    IF TG_OP <> 'DELETE' AND NEW.connector IS NOT NULL THEN
        payload := json_build_array(NEW.tenant_id, NEW.source, NEW.connector)::text;
        PERFORM pg_notify('herald_registrations', CASE WHEN octet_length(payload) <= 4000 THEN payload ELSE '*' END);
    END IF;

    RETURN NULL;
END
$$;

CREATE TRIGGER registrations_notify_insert
    AFTER INSERT ON registrations
    FOR EACH ROW WHEN (NEW.connector IS NOT NULL)
    EXECUTE FUNCTION herald_registrations_notify();

-- Only when something a worker reads really changed (PATCH rewrites every column; an unchanged one is no news).
CREATE TRIGGER registrations_notify_update
    AFTER UPDATE OF tenant_id, source, connector, status, token, topic, environment, style, folders, locale,
        mailbox_hash, sealed_mailbox, encryption_key ON registrations
    FOR EACH ROW WHEN ((OLD.connector IS NOT NULL OR NEW.connector IS NOT NULL)
        AND (OLD.tenant_id, OLD.source, OLD.connector, OLD.status, OLD.token, OLD.topic, OLD.environment, OLD.style,
             OLD.folders, OLD.locale, OLD.mailbox_hash, OLD.sealed_mailbox, OLD.encryption_key)
            IS DISTINCT FROM
            (NEW.tenant_id, NEW.source, NEW.connector, NEW.status, NEW.token, NEW.topic, NEW.environment, NEW.style,
             NEW.folders, NEW.locale, NEW.mailbox_hash, NEW.sealed_mailbox, NEW.encryption_key))
    EXECUTE FUNCTION herald_registrations_notify();

CREATE TRIGGER registrations_notify_delete
    AFTER DELETE ON registrations
    FOR EACH ROW WHEN (OLD.connector IS NOT NULL)
    EXECUTE FUNCTION herald_registrations_notify();
