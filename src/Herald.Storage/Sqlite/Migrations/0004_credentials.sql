-- Per-tenant provider credentials and feedback webhooks. Secrets never in clear: a credential's secret and a
-- webhook's HMAC key are values sealed with the key ring outside the database (SecretBox); the metadata the API
-- shows (kind, topics, thumbprint, expiry) is in clear.
--   platform  0 apns, 1 fcm, 2 wns (as notifications.platform)
--   webhook_outbox.state  0 pending, 1 delivered, 2 failed (attempts exhausted)

CREATE TABLE credentials (
    tenant_id      TEXT    NOT NULL REFERENCES tenants (id),
    platform       INTEGER NOT NULL,
    kind           TEXT    NOT NULL,
    sealed_secret  TEXT    NOT NULL,
    public_id      TEXT    NULL,
    topics         TEXT    NOT NULL,                 -- JSON array of strings
    thumbprint     TEXT    NULL,
    expires_at     INTEGER NULL,
    updated_at     INTEGER NOT NULL,
    version        INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, platform)
);

-- One row: bumped by every put and delete, so every node notices a change with one cheap read.
CREATE TABLE credential_stamp (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    stamp  INTEGER NOT NULL
);
INSERT INTO credential_stamp (id, stamp) VALUES (1, 0);

CREATE TABLE webhooks (
    tenant_id      TEXT    NOT NULL PRIMARY KEY REFERENCES tenants (id),
    url            TEXT    NOT NULL,
    sealed_secret  TEXT    NOT NULL,
    updated_at     INTEGER NOT NULL
);

CREATE TABLE webhook_outbox (
    id           INTEGER PRIMARY KEY,                -- rowid alias (PostgreSQL: bigint identity)
    tenant_id    TEXT    NOT NULL,
    type         TEXT    NOT NULL,
    body         TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    due_at       INTEGER NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    state        INTEGER NOT NULL DEFAULT 0,
    lease_until  INTEGER NULL,
    last_status  INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT    NULL,
    completed_at INTEGER NULL
);

CREATE INDEX ix_webhook_outbox_due ON webhook_outbox (due_at) WHERE state = 0;
CREATE INDEX ix_webhook_outbox_tenant ON webhook_outbox (tenant_id, id);
