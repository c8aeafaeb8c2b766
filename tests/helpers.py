"""Small builders shared by test modules."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

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
