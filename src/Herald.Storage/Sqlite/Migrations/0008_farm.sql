-- The farm (issue 7): the node registry and leases with fencing tokens on items of long-lived work.
-- PostgreSQL has the same tables column for column (Postgres/Migrations/0008_farm.sql).

-- One row per node name, rewritten by every heartbeat. `instance` is the lease owner id of the process that
-- last reported (a new one on every start), so a node's leases can be told apart from a dead predecessor's.
CREATE TABLE farm_nodes (
    name              TEXT    NOT NULL PRIMARY KEY,
    instance          TEXT    NOT NULL,
    region            TEXT    NOT NULL,
    version           TEXT    NOT NULL,
    started_at        INTEGER NOT NULL,               -- unix ms
    heartbeat_at      INTEGER NOT NULL,               -- unix ms
    sends_per_second  REAL    NOT NULL,
    queue_claimed     INTEGER NOT NULL,
    connections       INTEGER NOT NULL
);

-- One row per item of work ever leased ('farm:leader', 'ews-group:…', …). A released or expired lease keeps its
-- row and its token, so the token only ever grows: every new holder gets token + 1 (the fencing token).
CREATE TABLE work_leases (
    key          TEXT    NOT NULL PRIMARY KEY,
    owner        TEXT    NULL,                        -- NULL when released
    token        INTEGER NOT NULL,
    acquired_at  INTEGER NOT NULL,                    -- unix ms, when the current holder took it
    expires_at   INTEGER NOT NULL                     -- unix ms; 0 when released
);
