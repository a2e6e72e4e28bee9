-- Microsoft Graph: the change-notification subscriptions Herald holds (one per mailbox of a graph connector) and the
-- notifications Graph delivered, stored before Graph is answered and processed by the Graph worker (badge lookup).
--   pending_action  0 none, 1 reauthorize, 2 recreate (from lifecycle events)
--   kind            0 created, 1 updated, 2 deleted
-- The clientState is kept only as its keyed hash; the mailbox is sealed. Lease columns let a farm split renewals.

CREATE TABLE graph_subscriptions (
    id                 TEXT    NOT NULL PRIMARY KEY,
    tenant_id          TEXT    NOT NULL,
    connector          TEXT    NOT NULL,
    mailbox_hash       BLOB    NOT NULL,
    sealed_mailbox     TEXT    NOT NULL,
    client_state_hash  BLOB    NOT NULL,
    expires_at         INTEGER NOT NULL,
    created_at         INTEGER NOT NULL,
    renewed_at         INTEGER NOT NULL,
    pending_action     INTEGER NOT NULL DEFAULT 0,
    lease_owner        TEXT    NULL,
    lease_until        INTEGER NULL
);

CREATE INDEX ix_graph_subscriptions_connector ON graph_subscriptions (tenant_id, connector);
CREATE INDEX ix_graph_subscriptions_expiry ON graph_subscriptions (expires_at);
CREATE UNIQUE INDEX ix_graph_subscriptions_client_state ON graph_subscriptions (client_state_hash);

CREATE TABLE graph_notifications (
    seq              INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    dedup_key        BLOB    NOT NULL UNIQUE,
    subscription_id  TEXT    NOT NULL,
    kind             INTEGER NOT NULL,
    message_id       TEXT    NULL,
    received_at      INTEGER NOT NULL,
    keep_until       INTEGER NOT NULL,
    done_at          INTEGER NULL,
    lease_owner      TEXT    NULL,
    lease_until      INTEGER NULL
);

CREATE INDEX ix_graph_notifications_pending ON graph_notifications (seq) WHERE done_at IS NULL;
CREATE INDEX ix_graph_notifications_done ON graph_notifications (keep_until) WHERE done_at IS NOT NULL;
