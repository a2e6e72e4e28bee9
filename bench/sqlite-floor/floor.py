#!/usr/bin/env python3
"""The SQLite engine's own floor for Herald's queue round trip (issue 4's store target).

Runs the same enqueue + claim + complete pattern as `Herald.Bench --breakdown` directly against SQLite from C-level
loops (executemany and set-based statements: no .NET, no ADO.NET, no JSON), on Herald's real schema (the database
file `herald migrate` writes) or on a minimal queue schema, so what is left is the B-tree work itself.

    Herald__Database=sqlite:/tmp/floor-schema.db dotnet herald.dll migrate
    python3 bench/sqlite-floor/floor.py --schema /tmp/floor-schema.db          # Herald's schema
    python3 bench/sqlite-floor/floor.py --minimal                               # id, state, due, lease, payload only
"""
import argparse, os, shutil, sqlite3, tempfile, time, uuid

MINIMAL = """
CREATE TABLE notifications (id INTEGER PRIMARY KEY, tenant_id TEXT NOT NULL, lane INTEGER NOT NULL, state INTEGER NOT NULL,
  token TEXT NOT NULL, content TEXT NOT NULL, due_at INTEGER NOT NULL, lease_until INTEGER, completed_at INTEGER);
CREATE INDEX ix_due ON notifications (lane, tenant_id, due_at) WHERE state IN (0, 2);
CREATE INDEX ix_lease ON notifications (lease_until) WHERE state = 1;
CREATE INDEX ix_completed ON notifications (completed_at) WHERE state IN (3, 4, 5, 6);
"""

def main():
    p = argparse.ArgumentParser()
    p.add_argument("--schema", help="a database file migrated by `herald migrate` (copied, never changed)")
    p.add_argument("--minimal", action="store_true")
    p.add_argument("--rounds", type=int, default=100)
    p.add_argument("--batch", type=int, default=512)
    a = p.parse_args()
    folder = tempfile.mkdtemp(prefix="herald-floor-")
    path = os.path.join(folder, "q.db")
    if a.schema:
        shutil.copy(a.schema, path)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    for pragma in ("synchronous = FULL", "temp_store = MEMORY", "cache_size = -16384", "wal_autocheckpoint = 8192"):
        db.execute("PRAGMA " + pragma)
    if a.minimal:
        db.executescript(MINIMAL)
    full = not a.minimal
    now = int(time.time() * 1000)
    content = '{"kind":0,"badge":3,"sound":null,"alert":null,"pushMagic":null}'
    t_enq = t_claim = t_done = 0.0
    cpu0 = time.process_time()
    wall0 = time.perf_counter()
    n = 0
    for r in range(a.rounds):
        rows = []
        for i in range(a.batch):
            n += 1
            tenant = "t%d" % (n % 4)
            lane = (n // 4) % 2
            token = "%064x" % n
            if full:
                rows.append((uuid.uuid4().bytes, tenant, "reg-%d" % n, lane, token, "com.example.mail", content, now, now))
            else:
                rows.append((tenant, lane, token, content, now))
        t = time.perf_counter()
        db.execute("PRAGMA synchronous = FULL")
        db.execute("BEGIN IMMEDIATE")
        if full:
            db.executemany("INSERT INTO notifications (message_id, tenant_id, registration_id, lane, state, platform, token, topic, environment, content, created_at, due_at)"
                           " VALUES (?, ?, ?, ?, 0, 0, ?, ?, 0, ?, ?, ?)", rows)
        else:
            db.executemany("INSERT INTO notifications (tenant_id, lane, state, token, content, due_at) VALUES (?, ?, 0, ?, ?, ?)", rows)
        db.execute("COMMIT")
        t_enq += time.perf_counter() - t

        t = time.perf_counter()
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute("BEGIN IMMEDIATE")
        claimed = []
        for lane in (0, 1):
            for tenant in ("t0", "t1", "t2", "t3"):
                lease = ", lease_owner = 'node'" if full else ""
                claimed += [row[0] for row in db.execute(
                    "UPDATE notifications SET state = 1, lease_until = ?" + lease + (", attempts = attempts + 1" if full else "") +
                    " WHERE id IN (SELECT id FROM notifications WHERE lane = ? AND tenant_id = ? AND state IN (0, 2) AND due_at <= ?"
                    " ORDER BY due_at LIMIT ?) RETURNING id", (now + 60000, lane, tenant, now + 1, a.batch // 8))]
        db.execute("COMMIT")
        t_claim += time.perf_counter() - t

        t = time.perf_counter()
        db.execute("BEGIN IMMEDIATE")
        extra = ", lease_owner = NULL, last_status = 200, sent_at = ?2, attempts = attempts" if full else ""
        # Set-based, as Herald's CompleteAsync does for a batch of terminal outcomes.
        db.execute("UPDATE notifications SET state = 3, lease_until = NULL, completed_at = ?2" + extra +
                   " WHERE id IN (SELECT value FROM json_each(?1)) AND state = 1", ("[" + ",".join(map(str, claimed)) + "]", now))
        db.execute("COMMIT")
        t_done += time.perf_counter() - t
        db.execute("PRAGMA synchronous = FULL")
    wall = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0
    done = db.execute("SELECT count(*) FROM notifications WHERE state = 3").fetchone()[0]
    print("schema %-8s rows %d (completed %d): %.0f/s | enqueue %.1f, claim %.1f, complete %.1f µs/row | CPU %.1f µs/row | SQLite %s"
          % ("minimal" if a.minimal else "herald", n, done, n / wall, t_enq / n * 1e6, t_claim / n * 1e6, t_done / n * 1e6, cpu / n * 1e6, sqlite3.sqlite_version))
    db.close()
    shutil.rmtree(folder)

if __name__ == "__main__":
    main()
