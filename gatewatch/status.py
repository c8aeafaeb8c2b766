"""`gatewatch status`: what the last runs did and what is still waiting.

Read from the store: ``step_state`` (the last run of each step per source,
rule and delivery), ``source_state`` (the newest event time per source),
``rule_state`` (how far each rule has evaluated), ``rejects`` and ``outbox``.
"""

from __future__ import annotations

import fcntl
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb

from gatewatch.config import Config
from gatewatch.store import utc_now


@dataclass
class Status:
    """The state of one store, with times as naive UTC datetimes."""

    checked_at: datetime
    # pid of the process that holds the run lock, 0 when it is held by a
    # process whose pid is unknown, None when no run is active.
    running_pid: int | None
    sources: list[dict[str, Any]] = field(default_factory=list)
    rules: list[dict[str, Any]] = field(default_factory=list)
    outbox: list[dict[str, Any]] = field(default_factory=list)
    delivery: dict[str, Any] | None = None

    @property
    def failing(self) -> list[str]:
        """Return the steps whose last run recorded an error, as ``step name`` strings."""
        failed = [f"ingest {s['source']}" for s in self.sources if s["error"]]
        failed += [f"evaluate {r['rule_id']}" for r in self.rules if r["error"]]
        if self.delivery is not None and self.delivery["error"]:
            failed.append("deliver")
        return failed


def run_lock_holder(database: Path) -> int | None:
    """Return the pid holding ``<database>.lock``, 0 if the pid is unreadable, or None if free."""
    lock_path = Path(f"{database}.lock")
    try:
        handle = open(lock_path)
    except OSError:
        return None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = handle.read().strip()
            return int(text) if text.isdigit() else 0
        fcntl.flock(handle, fcntl.LOCK_UN)
    return None


def _records(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
    cursor = con.execute(sql, params or [])
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def collect_status(con: duckdb.DuckDBPyConnection, config: Config, database: Path, now: datetime | None = None) -> Status:
    """Read the status of the store behind ``con`` for the sources of ``config``."""
    now = now or utc_now()
    status = Status(checked_at=now, running_pid=run_lock_holder(database))
    names = [source.name for source in config.sources]
    status.sources = _records(
        con,
        """
        WITH configured AS (SELECT unnest(?::VARCHAR[]) AS source)
        SELECT c.source, s.finished_at AS last_run, s.lines, s.events, s.rejects AS rejects_last_run,
               (SELECT count(*) FROM rejects AS r WHERE r.source = c.source AND r.ingested_at >= ? - INTERVAL 1 DAY)
                   AS rejects_24h,
               st.max_ts AS newest_event, ? - st.max_ts AS lag, s.last_success_at, s.error
        FROM configured AS c
        LEFT JOIN step_state AS s ON s.step = 'ingest' AND s.name = c.source
        LEFT JOIN source_state AS st ON st.source = c.source
        ORDER BY c.source
        """,
        [names, now, now],
    )
    status.rules = _records(
        con,
        """
        SELECT s.name AS rule_id, s.finished_at AS last_run, r.evaluated_to, s.alerts AS alerts_last_run,
               (SELECT count(*) FROM alerts AS a WHERE a.rule_id = s.name) AS alerts_total,
               s.last_success_at, s.error
        FROM step_state AS s LEFT JOIN rule_state AS r ON r.rule_id = s.name
        WHERE s.step = 'evaluate'
        ORDER BY s.name
        """,
    )
    status.outbox = _records(
        con,
        """
        SELECT o.notifier, count(*) FILTER (WHERE o.state <> 'sent') AS backlog,
               count(*) FILTER (WHERE o.state = 'sent') AS sent,
               min(a.created_at) FILTER (WHERE o.state <> 'sent') AS oldest_unsent,
               max(o.last_error) FILTER (WHERE o.state <> 'sent') AS last_error
        FROM outbox AS o LEFT JOIN alerts AS a USING (alert_id)
        GROUP BY o.notifier ORDER BY o.notifier
        """,
    )
    delivery = _records(
        con,
        "SELECT finished_at AS last_run, sent, failed, last_success_at, error "
        "FROM step_state WHERE step = 'deliver'",
    )
    status.delivery = delivery[0] if delivery else None
    return status


def format_age(value: timedelta | None) -> str:
    """Write a time span as ``3d 4h``, ``5m 10s`` or ``-`` when unknown."""
    if value is None:
        return "-"
    seconds = int(value.total_seconds())
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{sign}{days}d {hours}h"
    if hours:
        return f"{sign}{hours}h {minutes}m"
    if minutes:
        return f"{sign}{minutes}m {secs}s"
    return f"{sign}{secs}s"
