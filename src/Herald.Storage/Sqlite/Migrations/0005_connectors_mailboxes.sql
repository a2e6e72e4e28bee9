-- Connectors (how Herald reaches, or is reached by, a mail system) and the mailbox of registrations whose
-- events come through one. Secrets never in clear: a connector's settings are one value sealed with the
-- key ring outside the database (SecretBox), a mailbox address is sealed and looked up by its keyed hash.
--   kind  0 ews, 1 graph, 2 dovecot

CREATE TABLE connectors (
    tenant_id      TEXT    NOT NULL REFERENCES tenants (id),
    name           TEXT    NOT NULL,
    kind           INTEGER NOT NULL,
    sealed_config  TEXT    NOT NULL,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, name)
);

ALTER TABLE registrations ADD COLUMN connector TEXT NULL;
ALTER TABLE registrations ADD COLUMN mailbox_hash BLOB NULL;
ALTER TABLE registrations ADD COLUMN sealed_mailbox TEXT NULL;

CREATE INDEX ix_registrations_mailbox ON registrations (tenant_id, connector, mailbox_hash) WHERE mailbox_hash IS NOT NULL;
