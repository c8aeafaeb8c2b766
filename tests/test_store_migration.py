"""A store written before the daemon's schema change opens and migrates in place."""

from __future__ import annotations

import duckdb

from gatewatch.store import MIGRATIONS, SCHEMA_VERSION, Store, utc_now


def test_migration_from_first_schema(tmp_path):
    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE schema_version (version INTEGER NOT NULL, applied_at TIMESTAMP NOT NULL)")
    for statement in MIGRATIONS[0]:
        con.execute(statement)
    con.execute("INSERT INTO schema_version VALUES (1, ?)", [utc_now()])
    con.execute("INSERT INTO outbox (alert_id, notifier, state) VALUES ('a-1', 'slack', 'pending')")
    con.close()

    with Store(path) as store:
        assert store.schema_version() == SCHEMA_VERSION
        row = store.con.execute("SELECT state, message_ref, thread_ref, digest_id FROM outbox").fetchall()
        assert row == [("pending", None, None, None)]
        assert store.con.execute("SELECT count(*) FROM step_state").fetchone()[0] == 0
        assert store.con.execute("SELECT count(*) FROM retention_runs").fetchone()[0] == 0
