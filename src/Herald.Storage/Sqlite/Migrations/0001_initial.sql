-- Herald schema, version 1 (SQLite dialect).
--
-- Conventions, kept so a PostgreSQL dialect can mirror these tables column for column:
--   * times are unix milliseconds in INTEGER columns (PostgreSQL: bigint);
--   * enums are stored as the integer values Herald.Core declares explicitly (smallint):
--       platform     0 apns, 1 fcm, 2 wns
--       environment  0 production, 1 sandbox
--       source       0 none, 1 ews-push, 2 ews-streaming, 3 graph, 4 dovecot
--       style        0 badge, 1 generic, 2 preview
--       status       0 active, 1 inactive, 2 deleted
--       lane         0 priority, 1 standard            (ORDER BY lane serves priority first)
--       state        0 queued, 1 sending, 2 retrying, 3 sent, 4 failed, 5 expired, 6 dead
--   * hashes and message ids are BLOBs (bytea; message_id could be uuid);
--   * JSON documents are TEXT (jsonb).
-- Secrets are never stored in clear: API keys and callback keys only as SHA-256 hashes.

CREATE TABLE tenants (
    id          TEXT    NOT NULL PRIMARY KEY,
    name        TEXT    NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE TABLE api_keys (
    id          TEXT    NOT NULL PRIMARY KEY,
    tenant_id   TEXT    NOT NULL REFERENCES tenants (id),
    hash        BLOB    NOT NULL UNIQUE,
    is_admin    INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER NULL
);

CREATE INDEX ix_api_keys_tenant ON api_keys (tenant_id);

CREATE TABLE registrations (
    id                        TEXT    NOT NULL PRIMARY KEY,
    tenant_id                 TEXT    NOT NULL REFERENCES tenants (id),
    platform                  INTEGER NOT NULL,
    token                     TEXT    NOT NULL,           -- '' once deleted (privacy)
    topic                     TEXT    NOT NULL,
    environment               INTEGER NOT NULL,
    source                    INTEGER NOT NULL,
    style                     INTEGER NOT NULL,
    folders                   TEXT    NOT NULL,           -- JSON array of folder names
    locale                    TEXT    NOT NULL,
    status                    INTEGER NOT NULL,
    inactive_reason           TEXT    NULL,
    inactive_at               INTEGER NULL,
    callback_key_hash         BLOB    NULL UNIQUE,        -- SHA-256 of the callback URL key; kept after delete
    subscription_id           TEXT    NULL,
    previous_subscription_id  TEXT    NULL,
    inbox_folder_id           TEXT    NULL,
    unread_count              INTEGER NULL,
    created_at                INTEGER NOT NULL,
    updated_at                INTEGER NOT NULL,
    last_event_at             INTEGER NULL,
    last_push_at              INTEGER NULL,
    last_push_result          TEXT    NULL
);

CREATE INDEX ix_registrations_tenant ON registrations (tenant_id);

-- The queue. Rows are never deleted by the pipeline: terminal rows (sent, failed, expired, dead)
-- stay for the API until PurgeCompleted removes them. No foreign keys here: this is the hot table,
-- and registrations are tombstoned, not deleted.
CREATE TABLE notifications (
    id               INTEGER PRIMARY KEY,             -- rowid alias (PostgreSQL: bigint identity)
    message_id       BLOB    NOT NULL,                -- 16-byte UUID v4, RFC 4122 byte order (apns-id)
    tenant_id        TEXT    NOT NULL,
    registration_id  TEXT    NULL,
    request_id       TEXT    NULL,
    lane             INTEGER NOT NULL,
    state            INTEGER NOT NULL,
    coalesce_key     TEXT    NULL,
    platform         INTEGER NOT NULL,
    token            TEXT    NOT NULL,
    topic            TEXT    NOT NULL,
    environment      INTEGER NOT NULL,
    content          TEXT    NOT NULL,                -- JSON NotificationContent
    collapse_id      TEXT    NULL,
    expires_at       INTEGER NULL,
    event_at         INTEGER NULL,
    created_at       INTEGER NOT NULL,
    due_at           INTEGER NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    lease_owner      TEXT    NULL,
    lease_until      INTEGER NULL,
    last_status      INTEGER NOT NULL DEFAULT 0,
    last_reason      TEXT    NULL,
    sent_at          INTEGER NULL,
    completed_at     INTEGER NULL                     -- set on entering a terminal state (for purging)
);

-- Never more than one pending (queued or retrying) row per coalescing key; a row being sent is not pending.
CREATE UNIQUE INDEX ux_notifications_coalesce ON notifications (coalesce_key)
    WHERE coalesce_key IS NOT NULL AND state IN (0, 2);

-- Claiming: pending rows by lane, then due time (then id, the rowid every index entry ends with).
CREATE INDEX ix_notifications_due ON notifications (lane, due_at) WHERE state IN (0, 2);

-- The reaper: leases of rows being sent.
CREATE INDEX ix_notifications_lease ON notifications (lease_until) WHERE state = 1;

-- A registration's rows (token rotation, deactivation, delete).
CREATE INDEX ix_notifications_registration ON notifications (registration_id) WHERE registration_id IS NOT NULL;

-- A send request's rows (GET /v1/notifications/{id}).
CREATE INDEX ix_notifications_request ON notifications (request_id) WHERE request_id IS NOT NULL;

-- Purging terminal rows by age.
CREATE INDEX ix_notifications_completed ON notifications (completed_at) WHERE state IN (3, 4, 5, 6);
