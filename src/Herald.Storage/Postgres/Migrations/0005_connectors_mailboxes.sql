-- Connectors and the mailbox of registrations whose events come through one (mirrors the SQLite script).
--   kind  0 ews, 1 graph, 2 dovecot

CREATE TABLE connectors (
    tenant_id      text     NOT NULL REFERENCES tenants (id),
    name           text     NOT NULL,
    kind           smallint NOT NULL,
    sealed_config  text     NOT NULL,
    created_at     bigint   NOT NULL,
    updated_at     bigint   NOT NULL,
    PRIMARY KEY (tenant_id, name)
);

ALTER TABLE registrations ADD COLUMN connector text NULL;
ALTER TABLE registrations ADD COLUMN mailbox_hash bytea NULL;
ALTER TABLE registrations ADD COLUMN sealed_mailbox text NULL;

CREATE INDEX ix_registrations_mailbox ON registrations (tenant_id, connector, mailbox_hash) WHERE mailbox_hash IS NOT NULL;
