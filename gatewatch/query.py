"""Read-only SQL over the store, for `gatewatch query` and `gatewatch shell`.

A query connection is opened read-only for one statement and closed right
after, so `gatewatch serve` can take the file between statements. It can
neither write the database nor touch any other file: DuckDB's
``enable_external_access`` is off (no COPY TO, read_csv, ATTACH, INSTALL or
LOAD) and ``lock_configuration`` keeps a statement from turning it back on.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import duckdb

from gatewatch.errors import StoreError
from gatewatch.locking import open_with_wait
from gatewatch.store import SCHEMA_VERSION

DEFAULT_WAIT = timedelta(seconds=10)


@dataclass(frozen=True)
class View:
    """A named query for a common question, available as a view in every query."""

    name: str
    description: str
    sql: str


# Evidence rows are stored per alert as a JSON list of event objects.
VIEWS: tuple[View, ...] = (
    View(
        "requests_per_client",
        "requests, errors, distinct paths and first and last time per client IP",
        """
        SELECT client_ip, count(*) AS requests,
               count(*) FILTER (WHERE status >= 400) AS errors,
               count(DISTINCT path) AS paths,
               count(DISTINCT "user") AS users,
               min(ts) AS first_seen, max(ts) AS last_seen
        FROM events GROUP BY client_ip ORDER BY requests DESC
        """,
    ),
    View(
        "top_paths",
        "requests, clients and error counts per path",
        """
        SELECT path, count(*) AS requests, count(DISTINCT client_ip) AS clients,
               count(*) FILTER (WHERE status BETWEEN 400 AND 499) AS client_errors,
               count(*) FILTER (WHERE status >= 500) AS server_errors
        FROM events GROUP BY path ORDER BY requests DESC
        """,
    ),
    View(
        "alerts_with_evidence",
        "one row per evidence event of each alert (alerts without evidence get one row)",
        """
        SELECT a.alert_id, a.rule_id, a.severity, a.window_start, a.window_end, a.group_key,
               a.summary, ev.position AS evidence_position,
               TRY_CAST(ev.event->>'ts' AS TIMESTAMP) AS ts,
               ev.event->>'client_ip' AS client_ip, ev.event->>'user' AS "user",
               ev.event->>'method' AS method, ev.event->>'path' AS path,
               ev.event->>'query' AS query, TRY_CAST(ev.event->>'status' AS INTEGER) AS status,
               ev.event->>'user_agent' AS user_agent
        FROM alerts AS a
        LEFT JOIN LATERAL (
            SELECT generate_subscripts(a.evidence::JSON[], 1) AS position,
                   unnest(a.evidence::JSON[]) AS event
        ) AS ev ON true
        ORDER BY a.window_end DESC, a.alert_id, ev.position
        """,
    ),
    View(
        "alert_delivery",
        "each alert with its delivery state, attempts and last error per notifier",
        """
        SELECT a.alert_id, a.rule_id, a.severity, a.window_end, o.notifier, o.state,
               o.attempts, o.last_error, o.sent_at
        FROM alerts AS a LEFT JOIN outbox AS o USING (alert_id)
        ORDER BY a.window_end DESC, a.alert_id, o.notifier
        """,
    ),
    View(
        "rejects_by_reason",
        "rejected lines per source and reason, with one example line",
        """
        SELECT source, reason, count(*) AS lines, min(ingested_at) AS first_seen,
               max(ingested_at) AS last_seen, any_value(line) AS example
        FROM rejects GROUP BY source, reason ORDER BY lines DESC
        """,
    ),
)


def _connect(database: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(str(database), read_only=True, config={"enable_external_access": False})
    try:
        _prepare(con, database)
    except BaseException:
        con.close()
        raise
    return con


def _prepare(con: duckdb.DuckDBPyConnection, database: Path) -> None:
    version = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_version'"
    ).fetchone()[0]
    if version:
        version = con.execute("SELECT max(version) FROM schema_version").fetchone()[0] or 0
    if version != SCHEMA_VERSION:
        raise StoreError(
            f"schema version {version} does not match this gatewatch ({SCHEMA_VERSION}); "
            "run any write command such as `gatewatch run --once` to migrate it",
            database,
        )
    con.execute("SET TimeZone = 'UTC'")
    for view in VIEWS:
        con.execute(f"CREATE TEMP VIEW {view.name} AS {view.sql}")
    # From here on no statement can change a setting, external access included.
    con.execute("SET lock_configuration = true")


@contextmanager
def read_only_connection(database: Path, wait: timedelta = DEFAULT_WAIT) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open ``database`` for reading only, waiting up to ``wait`` while a writer has it open.

    Raises DatabaseBusy when the wait runs out and StoreError when the file
    cannot be opened or has another schema version.
    """
    if not database.exists():
        raise StoreError("database not found; run `gatewatch run --once` first", database)

    def open_database() -> duckdb.DuckDBPyConnection:
        try:
            return _connect(database)
        except duckdb.Error as exc:
            raise StoreError(f"cannot open the database: {str(exc).splitlines()[0]}", database) from None

    con = open_with_wait(open_database, wait, what=str(database))
    try:
        yield con
    finally:
        con.close()


def busy_hint(wait: timedelta) -> str:
    """Return the advice that follows a DatabaseBusy message on the command line."""
    longer = max(60, int(wait.total_seconds() * 4))
    return f"run the query again, or pass --wait {longer} to wait longer"


def split_statements(sql: str) -> list[str]:
    """Split SQL text into its statements with DuckDB's parser, in order.

    Text that DuckDB cannot parse is returned whole, as one statement, so
    that running it reports DuckDB's syntax error. Text with only comments
    or whitespace has no statement.
    """
    try:
        return [statement.query for statement in duckdb.extract_statements(sql)]
    except duckdb.Error:
        return [sql]


def describe_failure(error: duckdb.Error) -> str:
    """Turn a DuckDB error of a query into one line, with a hint for the read-only rules."""
    message = str(error).splitlines()[0]
    if isinstance(error, duckdb.PermissionException) or "file system operations are disabled" in message:
        return (
            f"{message}; queries cannot read or write files or install extensions. "
            "To save a result, use `gatewatch query --output FILE`"
        )
    if "read-only mode" in message or "configuration has been locked" in message:
        return f"{message}; queries are read-only: use SELECT, and the views listed by `gatewatch query --views`"
    return message
