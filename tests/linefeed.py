"""Build connector input frames the way ingest does, for the connector tests.

Ingest splits a file on ``\\n``, strips one trailing ``\\r``, decodes with
``backslashreplace``, drops lines that are empty or only whitespace and
records the byte offset where each line starts.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"


def frame_from_bytes(data: bytes) -> pl.DataFrame:
    """Return a frame with ``offset`` (Int64) and ``line`` (String) columns."""
    offsets: list[int] = []
    lines: list[str] = []
    position = 0
    for raw in data.split(b"\n"):
        start = position
        position += len(raw) + 1
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        text = raw.decode("utf-8", "backslashreplace")
        if not text.strip():
            continue
        offsets.append(start)
        lines.append(text)
    return pl.DataFrame(
        {"offset": offsets, "line": lines},
        schema={"offset": pl.Int64, "line": pl.String},
    )


def frame_from_file(path: Path) -> pl.DataFrame:
    """Read ``path`` and return its lines as a connector input frame."""
    return frame_from_bytes(path.read_bytes())


def frame_from_lines(*lines: str) -> pl.DataFrame:
    """Return a frame for text lines, as if they were one UTF-8 file."""
    return frame_from_bytes("\n".join(lines).encode("utf-8") + b"\n")


def event_rows(events: pl.DataFrame) -> list[dict]:
    """Return the events as dicts, with ``extra`` decoded from JSON ({} when null)."""
    rows = events.to_dicts()
    for row in rows:
        row["extra"] = json.loads(row["extra"]) if row["extra"] is not None else {}
    return rows
