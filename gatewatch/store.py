"""The DuckDB file that holds events, rejects, checkpoints, rule state and alerts.

Every table lives in one file so that a checkpoint, a rule watermark or an
outbox row commits in the same transaction as the data it describes.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import polars as pl

from gatewatch.errors import StoreError

# Each migration moves the schema from version N-1 to N. Append, never edit:
# a store written by an older release replays only the statements it lacks.
MIGRATIONS: list[list[str]] = [
    [
        # No index on events.ts: DuckDB's per-row-group min/max (zonemaps)
        # already skip old data in the time-range scans rules run, and an
        # ART index would keep growing in memory with the table.
        """
        CREATE TABLE events (
            ts TIMESTAMP NOT NULL,
            client_ip VARCHAR,
            forwarded_for VARCHAR,
            method VARCHAR,
            scheme VARCHAR,
            host VARCHAR,
            path VARCHAR,
            query VARCHAR,
            http_version VARCHAR,
            status INTEGER,
            bytes_sent BIGINT,
            bytes_received BIGINT,
            duration_ms DOUBLE,
            user_agent VARCHAR,
            referer VARCHAR,
            "user" VARCHAR,
            credential_id VARCHAR,
            request_id VARCHAR,
            country VARCHAR,
            asn BIGINT,
            waf_action VARCHAR,
            waf_rule_id VARCHAR,
            waf_message VARCHAR,
            attack_class VARCHAR,
            malformed BOOLEAN,
            extra JSON,
            source VARCHAR NOT NULL,
            format VARCHAR NOT NULL,
            file VARCHAR NOT NULL,
            "offset" BIGINT NOT NULL,
            ingested_at TIMESTAMP NOT NULL
        )
        """,
        """
        CREATE TABLE rejects (
            source VARCHAR NOT NULL,
            format VARCHAR NOT NULL,
            file VARCHAR NOT NULL,
            "offset" BIGINT NOT NULL,
            line VARCHAR NOT NULL,
            reason VARCHAR NOT NULL,
            ingested_at TIMESTAMP NOT NULL
        )
        """,
        # One row per distinct file content seen, keyed by a hash of its
        # first bytes, so a renamed or copied rotation finds its offset.
        """
        CREATE TABLE checkpoints (
            source VARCHAR NOT NULL,
            fingerprint VARCHAR NOT NULL,
            head_len INTEGER NOT NULL,
            path VARCHAR NOT NULL,
            device BIGINT NOT NULL,
            inode BIGINT NOT NULL,
            "offset" BIGINT NOT NULL,
            updated_at TIMESTAMP NOT NULL
        )
        """,
        """
        CREATE TABLE source_state (
            source VARCHAR NOT NULL,
            min_ts TIMESTAMP,
            max_ts TIMESTAMP,
            updated_at TIMESTAMP NOT NULL
        )
        """,
        """
        CREATE TABLE rule_state (
            rule_id VARCHAR NOT NULL,
            evaluated_to TIMESTAMP NOT NULL,
            updated_at TIMESTAMP NOT NULL
        )
        """,
        """
        CREATE TABLE alerts (
            alert_id VARCHAR PRIMARY KEY,
            rule_id VARCHAR NOT NULL,
            title VARCHAR NOT NULL,
            severity VARCHAR NOT NULL,
            group_key JSON NOT NULL,
            window_start TIMESTAMP NOT NULL,
            window_end TIMESTAMP NOT NULL,
            measures JSON NOT NULL,
            summary VARCHAR NOT NULL,
            evidence JSON NOT NULL,
            query VARCHAR NOT NULL,
            created_at TIMESTAMP NOT NULL
        )
        """,
        """
        CREATE TABLE outbox (
            alert_id VARCHAR NOT NULL,
            notifier VARCHAR NOT NULL,
            state VARCHAR NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            last_error VARCHAR,
            last_attempt_at TIMESTAMP,
            sent_at TIMESTAMP,
            PRIMARY KEY (alert_id, notifier)
        )
        """,
    ],
    # 2: per-store settings, first the key of credential fingerprints.
    [
        """
        CREATE TABLE settings (
            name VARCHAR PRIMARY KEY,
            value VARCHAR NOT NULL
        )
        """,
    ],
    # 3: the format `format: auto` chose for a file, whether a compressed
    # file was read to its end, and S3 object checkpoints.
    [
        "ALTER TABLE checkpoints ADD COLUMN format VARCHAR",
        "ALTER TABLE checkpoints ADD COLUMN complete BOOLEAN NOT NULL DEFAULT false",
        # One row per S3 object seen: the ETag and size identify the object
        # version, "offset" counts the (decompressed) bytes committed so far.
        """
        CREATE TABLE s3_objects (
            source VARCHAR NOT NULL,
            bucket VARCHAR NOT NULL,
            key VARCHAR NOT NULL,
            etag VARCHAR NOT NULL,
            size BIGINT NOT NULL,
            last_modified TIMESTAMP,
            "offset" BIGINT NOT NULL,
            complete BOOLEAN NOT NULL,
            format VARCHAR,
            updated_at TIMESTAMP NOT NULL
        )
        """,
        # Leaf folders of an S3 source that are no longer listed (`s3.settled_after`).
        """
        CREATE TABLE s3_settled_prefixes (
            source VARCHAR NOT NULL,
            bucket VARCHAR NOT NULL,
            prefix VARCHAR NOT NULL,
            newest TIMESTAMP NOT NULL,
            settled_at TIMESTAMP NOT NULL
        )
        """,
    ],
    # 4: last run of each step for `gatewatch status`, Slack message and
    # thread references in the outbox, and retention runs.
    [
        # The last run of each step per source, rule or notifier, for
        # `gatewatch status`. One row per (step, name), replaced each run, so
        # the table stays as small as the config.
        """
        CREATE TABLE step_state (
            step VARCHAR NOT NULL,
            name VARCHAR NOT NULL,
            started_at TIMESTAMP NOT NULL,
            finished_at TIMESTAMP NOT NULL,
            duration_ms DOUBLE NOT NULL,
            lines BIGINT NOT NULL DEFAULT 0,
            events BIGINT NOT NULL DEFAULT 0,
            rejects BIGINT NOT NULL DEFAULT 0,
            alerts BIGINT NOT NULL DEFAULT 0,
            sent BIGINT NOT NULL DEFAULT 0,
            failed BIGINT NOT NULL DEFAULT 0,
            error VARCHAR,
            last_success_at TIMESTAMP,
            PRIMARY KEY (step, name)
        )
        """,
        # The receiver's id of the message that carried the alert (a Slack
        # message ts), the thread it was posted in, and the digest message
        # that carried it when one tick raised many alerts.
        "ALTER TABLE outbox ADD COLUMN message_ref VARCHAR",
        "ALTER TABLE outbox ADD COLUMN thread_ref VARCHAR",
        "ALTER TABLE outbox ADD COLUMN digest_id VARCHAR",
        # One row per retention run that exported events to Parquet. The row
        # commits with the DELETE, so a run that died between that commit and
        # moving its staged files into place is finished by the next run.
        """
        CREATE TABLE retention_runs (
            run_id VARCHAR PRIMARY KEY,
            cutoff TIMESTAMP NOT NULL,
            rows BIGINT NOT NULL,
            export_dir VARCHAR,
            state VARCHAR NOT NULL,
            finished_at TIMESTAMP NOT NULL
        )
        """,
    ],
    # 5: engine state of the stateful rule types, alert details and
    # enrichment networks.
    [
        # Per-window measures of `baseline` rules: the history each new
        # window is compared with. Pruned past the rule's history span.
        """
        CREATE TABLE baseline_history (
            rule_id VARCHAR NOT NULL,
            group_key VARCHAR NOT NULL,
            window_end TIMESTAMP NOT NULL,
            value DOUBLE
        )
        """,
        # Values a `new_value` rule has seen per group, so a restart or a
        # replay does not report them as new again.
        """
        CREATE TABLE seen_values (
            rule_id VARCHAR NOT NULL,
            group_key VARCHAR NOT NULL,
            value_key VARCHAR NOT NULL,
            first_seen TIMESTAMP NOT NULL,
            last_seen TIMESTAMP NOT NULL,
            PRIMARY KEY (rule_id, group_key, value_key)
        )
        """,
        # Engine details of an alert beyond the columns notifiers read: the
        # rule's query for the alert's window end with its parameters bound,
        # and whether it was raised while catching up on missed evaluation
        # points. A catch-up alert gets no outbox row until the run ends.
        # Then `digest_id` is set to its own id (queued alone) or to the id
        # of the digest alert that groups it.
        # Network ranges from the enrichment files a lists file names, as
        # 128-bit numbers (IPv4 in the IPv4-mapped range). Replaced whole
        # when a file changes; `enrichment_state` holds the fingerprint of
        # the loaded files.
        """
        CREATE TABLE networks (
            low UHUGEINT NOT NULL,
            high UHUGEINT NOT NULL,
            asn BIGINT,
            organization VARCHAR,
            country VARCHAR
        )
        """,
        "CREATE TABLE enrichment_state (fingerprint VARCHAR NOT NULL, loaded_at TIMESTAMP NOT NULL)",
        """
        CREATE TABLE alert_details (
            alert_id VARCHAR PRIMARY KEY,
            rule_sql VARCHAR,
            catch_up BOOLEAN NOT NULL DEFAULT FALSE,
            digest_id VARCHAR
        )
        """,
    ],
]

SCHEMA_VERSION = len(MIGRATIONS)


def utc_now() -> datetime:
    """Return the current UTC time as a naive datetime, the store's convention."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Store:
    """An open gatewatch DuckDB file, migrated to the current schema."""

    def __init__(self, path: str | Path, read_only: bool = False):
        self.path = str(path)
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self.con = duckdb.connect(self.path, read_only=read_only)
        except duckdb.Error as exc:
            raise StoreError(f"cannot open the database: {exc}", self.path) from None
        self.con.execute("SET TimeZone = 'UTC'")
        if not read_only:
            self._migrate()
        else:
            self._check_version()

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """Run a block in one transaction; roll back if it raises."""
        self.con.begin()
        try:
            yield self.con
        except BaseException:
            self.con.rollback()
            raise
        self.con.commit()

    def schema_version(self) -> int:
        exists = self.con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_version'"
        ).fetchone()[0]
        if not exists:
            return 0
        row = self.con.execute("SELECT max(version) FROM schema_version").fetchone()
        return row[0] or 0

    def _check_version(self) -> None:
        version = self.schema_version()
        if version > SCHEMA_VERSION:
            raise self._newer_schema_error(version)
        if version != SCHEMA_VERSION:
            raise StoreError(
                f"schema version {version} does not match this gatewatch ({SCHEMA_VERSION}); "
                "run any write command such as `gatewatch run --once` to migrate it",
                self.path,
            )

    def _newer_schema_error(self, version: int) -> StoreError:
        return StoreError(
            f"the database has schema version {version}, newer than this gatewatch "
            f"supports ({SCHEMA_VERSION}); upgrade gatewatch",
            self.path,
        )

    def _migrate(self) -> None:
        version = self.schema_version()
        if version > SCHEMA_VERSION:
            raise self._newer_schema_error(version)
        with self.transaction() as con:
            con.execute(
                "CREATE TABLE IF NOT EXISTS schema_version "
                "(version INTEGER NOT NULL, applied_at TIMESTAMP NOT NULL)"
            )
            for number in range(version + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[number - 1]:
                    con.execute(statement)
                con.execute("INSERT INTO schema_version VALUES (?, ?)", [number, utc_now()])

    def fingerprint_key(self) -> bytes:
        """Return this store's HMAC key for credential fingerprints, creating it on first use.

        The key is 32 random bytes kept in the ``settings`` table, so the
        same credential gets the same ``credential_id`` in every run against
        this database and a different one in any other database.
        """
        row = self.con.execute("SELECT value FROM settings WHERE name = 'fingerprint_key'").fetchone()
        if row is not None:
            return bytes.fromhex(row[0])
        key = secrets.token_bytes(32)
        self.con.execute(
            "INSERT INTO settings VALUES ('fingerprint_key', ?) ON CONFLICT DO NOTHING", [key.hex()]
        )
        row = self.con.execute("SELECT value FROM settings WHERE name = 'fingerprint_key'").fetchone()
        return bytes.fromhex(row[0])

    def insert_frame(self, table: str, frame: pl.DataFrame) -> None:
        """Append a polars frame to ``table``, matching columns by name."""
        if frame.height == 0:
            return
        # The newest Arrow level keeps polars' string views as they are;
        # the default converts every string column to a copy.
        self.con.register("_gatewatch_frame", frame.to_arrow(compat_level=pl.CompatLevel.newest()))
        try:
            self.con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _gatewatch_frame")
        finally:
            self.con.unregister("_gatewatch_frame")

    def watermark_source_max(self) -> datetime | None:
        """Return the newest event time over all sources, or None when empty."""
        return self.con.execute("SELECT max(max_ts) FROM source_state").fetchone()[0]

    def earliest_event(self) -> datetime | None:
        return self.con.execute("SELECT min(min_ts) FROM source_state").fetchone()[0]

    def update_source_state(self, source: str, min_ts: datetime | None, max_ts: datetime | None) -> None:
        """Widen the source's known event-time range; call inside a transaction."""
        if min_ts is None or max_ts is None:
            return
        row = self.con.execute(
            "SELECT min_ts, max_ts FROM source_state WHERE source = ?", [source]
        ).fetchone()
        if row is None:
            self.con.execute(
                "INSERT INTO source_state VALUES (?, ?, ?, ?)", [source, min_ts, max_ts, utc_now()]
            )
            return
        self.con.execute(
            "UPDATE source_state SET min_ts = least(min_ts, ?), max_ts = greatest(max_ts, ?), "
            "updated_at = ? WHERE source = ?",
            [min_ts, max_ts, utc_now(), source],
        )
