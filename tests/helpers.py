"""Small builders shared by test modules."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from gatewatch.connectors.base import REJECT_SCHEMA, Connector, ParseResult
from gatewatch.events import conform
from gatewatch.ingest import add_lineage
from gatewatch.store import Store

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def insert_events(store: Store, rows: list[dict[str, Any]], source: str = "test") -> None:
    """Insert events given as dicts of normalized columns (``ts`` as datetime)."""
    frame = pl.DataFrame(rows)
    frame = frame.with_columns(pl.int_range(0, frame.height).alias("offset"))
    events = add_lineage(conform(frame), source, "combined", "test.log")
    with store.transaction():
        store.insert_frame("events", events)
        store.update_source_state(source, events["ts"].min(), events["ts"].max())


def at(text: str) -> datetime:
    """Parse ``HH:MM:SS`` on a fixed test day into a datetime."""
    return datetime.fromisoformat(f"2026-11-03T{text}")


def write_rule(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


class SimpleConnector(Connector):
    """Test format: ``<ISO time> <client ip> <path>``; anything else is rejected."""

    name = "simple_test"

    def parse(self, lines: pl.DataFrame) -> ParseResult:
        parts = lines.with_columns(pl.col("line").str.extract_groups(r"^(\S+) (\S+) (\S+)$").alias("m"))
        parts = parts.unnest("m")
        good = parts.filter(pl.col("1").is_not_null())
        events = good.select(
            pl.col("1").str.to_datetime("%Y-%m-%dT%H:%M:%S", strict=False).alias("ts"),
            pl.col("2").alias("client_ip"),
            pl.col("3").alias("path"),
            pl.col("offset"),
        )
        rejects = parts.filter(pl.col("1").is_null()).select(
            pl.col("offset"), pl.col("line"), pl.lit("not '<time> <ip> <path>'").alias("reason")
        )
        return ParseResult(conform(events), rejects.cast(REJECT_SCHEMA))


def simple_line(second: int, path: str = "/a") -> str:
    """Return one line of the SimpleConnector format at 10:00:<second>."""
    return f"2026-11-03T10:00:{second:02d} 192.0.2.9 {path}\n"
