-- The farm (issue 7): the node registry and leases with fencing tokens on items of long-lived work.
-- The same tables as Sqlite/Migrations/0008_farm.sql, column for column (times as unix ms).

-- One row per node name, rewritten by every heartbeat. `instance` is the lease owner id of the process that
-- last reported (a new one on every start), so a node's leases can be told apart from a dead predecessor's.
CREATE TABLE farm_nodes (
    name              text              NOT NULL PRIMARY KEY,
    instance          text              NOT NULL,
    region            text              NOT NULL,
    version           text              NOT NULL,
    started_at        bigint            NOT NULL,
    heartbeat_at      bigint            NOT NULL,
    sends_per_second  double precision  NOT NULL,
    queue_claimed     integer           NOT NULL,
    connections       integer           NOT NULL
);

-- One row per item of work ever leased ('farm:leader', 'ews-group:…', …). A released or expired lease keeps its
-- row and its token, so the token only ever grows: every new holder gets token + 1 (the fencing token). Every
-- change is one INSERT … ON CONFLICT or UPDATE on the row, so the row lock orders competing nodes.
CREATE TABLE work_leases (
    key          text    NOT NULL PRIMARY KEY,
    owner        text    NULL,
    token        bigint  NOT NULL,
    acquired_at  bigint  NOT NULL,
    expires_at   bigint  NOT NULL
);
