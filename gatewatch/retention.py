"""Retention: delete old events, optionally exporting them to Parquet first.

Events older than ``retention.events`` (by event time) are deleted, except
those that a rule window not yet evaluated may still need. With
``retention.export_dir`` they are first written to Parquet files partitioned
by event date (``date=YYYY-MM-DD/events-<run>-<n>.parquet``), a layout
that DuckDB reads back with ``read_parquet('<dir>/*/*.parquet',
hive_partitioning = true)``.

The export is written to a staging folder, then the DELETE and a row in
``retention_runs`` commit in one transaction, and only then are the files
moved into place. A crash before the commit leaves a staging folder without
a row, and the next run deletes it. A crash after the commit leaves a row in
state ``staged``, and the next run moves its files into place. Either way every
deleted event is in exactly one exported file.
"""

from __future__ import annotations

import logging
import shutil
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from gatewatch.store import Store, utc_now

logger = logging.getLogger(__name__)

STAGING_PREFIX = ".staging-"


@dataclass
class RetentionReport:
    cutoff: datetime | None = None
    deleted_events: int = 0
    exported_files: int = 0
    deleted_rejects: int = 0


def protected_after(store: Store, max_window: timedelta) -> datetime | None:
    """Return the time from which events must stay: windows after it are not all evaluated yet.

    None means no rule has evaluated anything, so no event may go.
    """
    oldest = store.con.execute("SELECT min(evaluated_to) FROM rule_state").fetchone()[0]
    return None if oldest is None else oldest - max_window


def apply_retention(
    store: Store,
    *,
    events_age: timedelta | None,
    rejects_age: timedelta | None,
    export_dir: Path | None,
    max_window: timedelta,
    now: datetime | None = None,
) -> RetentionReport:
    """Delete events older than ``events_age`` and rejects older than ``rejects_age``."""
    now = now or utc_now()
    report = RetentionReport()
    if export_dir is not None:
        finish_staged(store, export_dir)
    if events_age is not None:
        protected = protected_after(store, max_window)
        if protected is not None:
            report.cutoff = min(now - events_age, protected)
            _expire_events(store, report.cutoff, export_dir, report)
    if rejects_age is not None:
        with store.transaction() as con:
            report.deleted_rejects = con.execute(
                "DELETE FROM rejects WHERE ingested_at < ?", [now - rejects_age]
            ).fetchone()[0]
    return report


def _expire_events(store: Store, cutoff: datetime, export_dir: Path | None, report: RetentionReport) -> None:
    count = store.con.execute("SELECT count(*) FROM events WHERE ts < ?", [cutoff]).fetchone()[0]
    if count == 0:
        return
    run_id = uuid.uuid4().hex[:12]
    staging = export_dir / f"{STAGING_PREFIX}{run_id}" if export_dir is not None else None
    with store.transaction() as con:
        if staging is not None:
            staging.parent.mkdir(parents=True, exist_ok=True)
            # COPY takes no parameters; the cutoff is our own datetime and the
            # path is quoted as a SQL string literal.
            target = str(staging).replace("'", "''")
            con.execute(
                f"COPY (SELECT *, CAST(ts AS DATE) AS date FROM events WHERE ts < TIMESTAMP '{cutoff.isoformat()}') "
                f"TO '{target}' (FORMAT parquet, PARTITION_BY (date), FILENAME_PATTERN 'events-{run_id}-{{i}}')"
            )
        report.deleted_events = con.execute("DELETE FROM events WHERE ts < ?", [cutoff]).fetchone()[0]
        con.execute(
            "INSERT INTO retention_runs VALUES (?, ?, ?, ?, ?, ?)",
            [run_id, cutoff, report.deleted_events, str(export_dir) if export_dir else None,
             "staged" if staging is not None else "done", utc_now()],
        )
    if staging is not None:
        report.exported_files = _move_into_place(staging, export_dir)
        with store.transaction() as con:
            con.execute("UPDATE retention_runs SET state = 'done' WHERE run_id = ?", [run_id])


def _move_into_place(staging: Path, export_dir: Path) -> int:
    moved = 0
    for file in sorted(staging.rglob("*.parquet")):
        target = export_dir / file.relative_to(staging)
        target.parent.mkdir(parents=True, exist_ok=True)
        file.replace(target)
        moved += 1
    shutil.rmtree(staging, ignore_errors=True)
    return moved


def finish_staged(store: Store, export_dir: Path) -> None:
    """Finish or discard the staging folders that an interrupted run left in ``export_dir``."""
    if not export_dir.is_dir():
        return
    staged = {
        row[0]
        for row in store.con.execute("SELECT run_id FROM retention_runs WHERE state = 'staged'").fetchall()
    }
    for folder in sorted(export_dir.glob(f"{STAGING_PREFIX}*")):
        run_id = folder.name[len(STAGING_PREFIX) :]
        if run_id in staged:
            moved = _move_into_place(folder, export_dir)
            with store.transaction() as con:
                con.execute("UPDATE retention_runs SET state = 'done' WHERE run_id = ?", [run_id])
            logger.info("retention run=%s: moved %d exported files into place after an interruption", run_id, moved)
        else:
            # Its transaction never committed: the events are still in the store.
            shutil.rmtree(folder, ignore_errors=True)
            logger.info("retention run=%s: removed the staging folder of a run that did not commit", run_id)
