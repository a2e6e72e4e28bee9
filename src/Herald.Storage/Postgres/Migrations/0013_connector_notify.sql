-- Connector changes as a cross-node signal, on migration 0012's channel: a connector created, changed (its kind or
-- sealed configuration) or deleted through any node sends pg_notify('herald_registrations', '["tenant", source,
-- "name"]') in the writing transaction, with the source whose worker runs that kind of connector (EWS → EWS streaming,
-- Graph → Graph, Dovecot → Dovecot), so every node's worker re-reads the connector at once instead of at its safety-net
-- re-read. The payload names the tenant, the source and the connector only: never the (sealed) configuration.
CREATE FUNCTION herald_connectors_notify() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    row_tenant text;
    row_name text;
    row_kind smallint;
    payload text;
BEGIN
    IF TG_OP = 'DELETE' THEN
        row_tenant := OLD.tenant_id; row_name := OLD.name; row_kind := OLD.kind;
    ELSE
        row_tenant := NEW.tenant_id; row_name := NEW.name; row_kind := NEW.kind;
    END IF;

    payload := json_build_array(row_tenant, CASE row_kind WHEN 0 THEN 2 WHEN 1 THEN 3 WHEN 2 THEN 4 ELSE 0 END, row_name)::text;
    PERFORM pg_notify('herald_registrations', CASE WHEN octet_length(payload) <= 4000 THEN payload ELSE '*' END);
    IF TG_OP = 'UPDATE' AND OLD.kind <> NEW.kind THEN
        -- A connector that changed kind: the worker of its old kind lets it go.
        payload := json_build_array(OLD.tenant_id, CASE OLD.kind WHEN 0 THEN 2 WHEN 1 THEN 3 WHEN 2 THEN 4 ELSE 0 END, OLD.name)::text;
        PERFORM pg_notify('herald_registrations', CASE WHEN octet_length(payload) <= 4000 THEN payload ELSE '*' END);
    END IF;

    RETURN NULL;
END
$$;

CREATE TRIGGER connectors_notify_insert_delete
    AFTER INSERT OR DELETE ON connectors
    FOR EACH ROW EXECUTE FUNCTION herald_connectors_notify();

CREATE TRIGGER connectors_notify_update
    AFTER UPDATE ON connectors
    FOR EACH ROW WHEN ((OLD.kind, OLD.sealed_config) IS DISTINCT FROM (NEW.kind, NEW.sealed_config))
    EXECUTE FUNCTION herald_connectors_notify();
