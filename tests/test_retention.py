"""Retention over a real store: delete, export to date-partitioned Parquet, recover from a crash."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import yaml
from helpers import REPO, insert_events

from gatewatch.retention import apply_retention, finish_staged
from gatewatch.store import utc_now

NOW = datetime(2026, 11, 10, 12, 0)


def seed(store, days: int = 5) -> None:
    rows = [
        {"ts": NOW - timedelta(days=day, hours=1), "client_ip": f"192.0.2.{day}", "path": "/", "status": 200}
        for day in range(days)
    ]
    insert_events(store, rows)


def evaluated_to(store, moment: datetime) -> None:
    store.con.execute("INSERT INTO rule_state VALUES ('r', ?, ?)", [moment, utc_now()])


def read_export(folder: Path) -> list[tuple]:
    pattern = str(folder / "*" / "*.parquet")
    return duckdb.sql(
        f"SELECT CAST(date AS VARCHAR), client_ip FROM read_parquet('{pattern}', hive_partitioning = true) ORDER BY 1"
    ).fetchall()


def test_retention_deletes_old_events(store):
    seed(store)
    evaluated_to(store, NOW)

    report = apply_retention(store, events_age=timedelta(days=2), rejects_age=None, export_dir=None,
                             max_window=timedelta(minutes=5), now=NOW)

    assert report.deleted_events == 3
    remaining = store.con.execute("SELECT client_ip FROM events ORDER BY ts").fetchall()
    assert remaining == [("192.0.2.1",), ("192.0.2.0",)]


def test_retention_exports_parquet_by_date(store, tmp_path):
    seed(store)
    evaluated_to(store, NOW)
    export = tmp_path / "archive"

    report = apply_retention(store, events_age=timedelta(days=2), rejects_age=None, export_dir=export,
                             max_window=timedelta(minutes=5), now=NOW)

    assert report.exported_files == 3
    assert sorted(p.name for p in export.iterdir()) == ["date=2026-11-06", "date=2026-11-07", "date=2026-11-08"]
    assert read_export(export) == [
        ("2026-11-06", "192.0.2.4"), ("2026-11-07", "192.0.2.3"), ("2026-11-08", "192.0.2.2"),
    ]
    assert not any(p.name.startswith(".staging-") for p in export.iterdir())
    state = store.con.execute("SELECT rows, state FROM retention_runs").fetchall()
    assert state == [(3, "done")]


def test_retention_keeps_unevaluated_windows(store):
    seed(store)
    evaluated_to(store, NOW - timedelta(days=3))

    report = apply_retention(store, events_age=timedelta(days=1), rejects_age=None, export_dir=None,
                             max_window=timedelta(days=1), now=NOW)

    assert report.cutoff == NOW - timedelta(days=4)
    assert report.deleted_events == 1


def test_retention_nothing_before_evaluation(store):
    seed(store)

    report = apply_retention(store, events_age=timedelta(days=1), rejects_age=None, export_dir=None,
                             max_window=timedelta(minutes=5), now=NOW)

    assert report.deleted_events == 0
    assert store.con.execute("SELECT count(*) FROM events").fetchone()[0] == 5


def test_retention_finishes_committed_staging(store, tmp_path):
    export = tmp_path / "archive"
    staged = export / ".staging-abc" / "date=2026-11-01"
    staged.mkdir(parents=True)
    duckdb.sql(f"COPY (SELECT 1 AS x) TO '{staged / 'events-abc-0.parquet'}' (FORMAT parquet)")
    orphan = export / ".staging-def" / "date=2026-11-02"
    orphan.mkdir(parents=True)
    (orphan / "events-def-0.parquet").write_bytes(b"partial")
    store.con.execute("INSERT INTO retention_runs VALUES ('abc', ?, 1, ?, 'staged', ?)", [NOW, str(export), NOW])

    finish_staged(store, export)

    assert (export / "date=2026-11-01" / "events-abc-0.parquet").exists()
    assert not (export / "date=2026-11-02").exists()
    assert sorted(p.name for p in export.iterdir()) == ["date=2026-11-01"]
    assert store.con.execute("SELECT state FROM retention_runs").fetchall() == [("done",)]


def test_retention_deletes_old_rejects(store):
    store.con.execute(
        "INSERT INTO rejects VALUES ('s', 'combined', 'f', 0, 'x', 'bad', ?), ('s', 'combined', 'f', 2, 'y', 'bad', ?)",
        [NOW - timedelta(days=40), NOW - timedelta(days=1)],
    )

    report = apply_retention(store, events_age=None, rejects_age=timedelta(days=30), export_dir=None,
                             max_window=timedelta(0), now=NOW)

    assert report.deleted_rejects == 1
    assert store.con.execute("SELECT line FROM rejects").fetchall() == [("y",)]


def test_retention_run_once_end_to_end(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    shutil.copyfile(REPO / "sample_logs" / "access.log", logs / "access.log")
    config = {
        "database": "gw.duckdb",
        "sources": [{"name": "edge", "format": "combined", "path": "logs/access.log"}],
        "rules": ["builtin"],
        "notifiers": [],
        "retention": {"events": "1d", "export_dir": "archive"},
    }
    (tmp_path / "gatewatch.yaml").write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if k != "GATEWATCH_CONFIG"}

    result = subprocess.run([sys.executable, "-m", "gatewatch.cli", "run", "--once"], cwd=tmp_path,
                            capture_output=True, text=True, env=env, timeout=300)

    assert result.returncode == 0, result.stderr
    lines = sum(1 for line in (logs / "access.log").read_bytes().splitlines() if line.strip())
    with duckdb.connect(str(tmp_path / "gw.duckdb"), read_only=True) as con:
        kept = con.execute("SELECT count(*) FROM events").fetchone()[0]
        rejects = con.execute("SELECT count(*) FROM rejects").fetchone()[0]
        cutoff = con.execute("SELECT cutoff FROM retention_runs").fetchone()[0]
        oldest_kept = con.execute("SELECT min(ts) FROM events").fetchone()[0]
    exported = duckdb.sql(
        f"SELECT count(*), max(ts) FROM read_parquet('{tmp_path / 'archive'}/*/*.parquet', hive_partitioning = true)"
    ).fetchall()[0]
    assert exported[0] > 0
    assert kept > 0
    assert exported[0] + kept + rejects == lines
    assert exported[1] < cutoff <= oldest_kept
