-- Queue lanes, throttling, retries, bulk sends and live settings (issue 4).

-- Fair claiming: within a lane, tenants take turns. The claim walks the distinct tenants of a lane with
-- pending rows (one seek per tenant) and takes each tenant's oldest due rows from here, so a tenant with
-- 100,000 due rows costs no more to pass over than a tenant with one. NextDue walks it the same way, so
-- ix_notifications_due (lane, due_at) goes: one index less to update on every enqueue and claim.
CREATE INDEX ix_notifications_tenant_due ON notifications (lane, tenant_id, due_at) WHERE state IN (0, 2);

DROP INDEX ix_notifications_due;

-- Dead rows (6) now keep their token so they can be requeued; they follow their registration's token
-- rotation and forget the token when it is deleted, so they are indexed by registration like pending rows.
DROP INDEX ix_notifications_registration;

CREATE INDEX ix_notifications_registration ON notifications (registration_id)
    WHERE registration_id IS NOT NULL AND state IN (0, 2, 6);

-- A send request's rows, checked against their tenant and paged by id from the index alone. Neither
-- column ever changes, so the index costs nothing when a row changes state.
DROP INDEX ix_notifications_request;

CREATE INDEX ix_notifications_request ON notifications (request_id, tenant_id) WHERE request_id IS NOT NULL;

-- The dead-letter views, newest first: every tenant's (admin) and one tenant's. Only dead rows are in them.
CREATE INDEX ix_notifications_dead ON notifications (completed_at) WHERE state = 6;

CREATE INDEX ix_notifications_dead_tenant ON notifications (tenant_id, completed_at) WHERE state = 6;

-- One row per send attempt (CompleteAsync), oldest first by id. A notification's attempts go with it
-- when it is purged (PostgreSQL: the same foreign key with ON DELETE CASCADE). `attempt` is not unique:
-- a requeued dead notification and a coalesced replacement count their attempts from 1 again.
CREATE TABLE notification_attempts (
    id               INTEGER PRIMARY KEY,             -- rowid alias (PostgreSQL: bigint identity)
    notification_id  INTEGER NOT NULL REFERENCES notifications (id) ON DELETE CASCADE,
    attempt          INTEGER NOT NULL,
    at               INTEGER NOT NULL,
    outcome          INTEGER NOT NULL,                -- state: 2 retrying, 3 sent, 4 failed, 5 expired, 6 dead
    status           INTEGER NOT NULL,                -- the provider's HTTP status, 0 when none
    reason           TEXT    NULL
);

CREATE INDEX ix_notification_attempts_notification ON notification_attempts (notification_id);

-- Send requests (POST /v1/notifications); their notifications carry the id in notifications.request_id.
CREATE TABLE notification_requests (
    id            TEXT    NOT NULL PRIMARY KEY,
    tenant_id     TEXT    NOT NULL REFERENCES tenants (id),
    lane          INTEGER NOT NULL,
    kind          INTEGER NOT NULL,                   -- PushKind: 0 badge, 1 alert, 2 background, 3 mdm
    target_count  INTEGER NOT NULL,
    created_at    INTEGER NOT NULL,
    created_by    TEXT    NOT NULL
);

CREATE INDEX ix_notification_requests_tenant ON notification_requests (tenant_id, created_at);

-- Runtime settings shared by every node: one row, a JSON document (QueueSettings), and its version.
CREATE TABLE settings (
    id          INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    json        TEXT    NOT NULL,
    version     INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    updated_by  TEXT    NOT NULL
);

-- Every change of the settings: who, when, before and after (old_json is the defaults for version 1).
CREATE TABLE settings_audit (
    version   INTEGER NOT NULL PRIMARY KEY,
    at        INTEGER NOT NULL,
    actor     TEXT    NOT NULL,
    old_json  TEXT    NOT NULL,
    new_json  TEXT    NOT NULL
);

-- Token buckets of the farm-wide throttle: tokens left at updated_at (unix ms); refilled on each take.
CREATE TABLE throttle_buckets (
    name        TEXT    NOT NULL PRIMARY KEY,
    tokens      REAL    NOT NULL,                     -- PostgreSQL: double precision
    updated_at  INTEGER NOT NULL
);
