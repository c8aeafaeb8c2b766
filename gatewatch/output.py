"""Query results as a table, CSV, JSON or Parquet.

Table cells, and CSV written to a terminal, show control characters as
escapes, because log content must not move the cursor or recolour the
screen. CSV and JSON written to a pipe or a file keep values byte for byte.
"""

from __future__ import annotations

import csv
import io
import json
import math
from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any, TextIO

import duckdb
from rich.console import Console
from rich.table import Table
from rich.text import Text

from gatewatch.notify.escape import make_visible

# Rows fetched from DuckDB per Arrow batch while writing Parquet.
PARQUET_BATCH_ROWS = 100_000


class OutputFormat(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"


class QueryFormat(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"
    parquet = "parquet"


def write_rows(
    columns: list[str], rows: list[tuple], output: OutputFormat | QueryFormat, stream: TextIO, console: Console
) -> None:
    """Write rows as a table (to ``console``), CSV or JSON (to ``stream``)."""
    if output.value == "json":
        records = [dict(zip(columns, row)) for row in rows]
        records = [{k: _finite(v) for k, v in record.items()} for record in records]
        stream.write(json.dumps(records, default=json_default, ensure_ascii=False, indent=1) + "\n")
        return
    if output.value == "csv":
        # On a terminal, log content must not move the cursor or recolour
        # the screen; piped CSV keeps the values byte for byte.
        clean = make_visible if stream.isatty() else _as_cell
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow([clean(c) for c in columns])
        writer.writerows([[clean(v) for v in row] for row in rows])
        stream.write(buffer.getvalue())
        return
    # Every column but the last keeps its values on one line; the last
    # (often a summary or a long path) wraps in the remaining width.
    table = Table(box=None)
    for index, column in enumerate(columns):
        table.add_column(make_visible(column), no_wrap=index < len(columns) - 1)
    for row in rows:
        table.add_row(*[Text("" if v is None else make_visible(v)) for v in row])
    console.print(table)


def write_parquet(relation: duckdb.DuckDBPyRelation, path: Path) -> int:
    """Stream the rows of ``relation`` into a Parquet file at ``path``; return the row count.

    The file is written by pyarrow in this process, because the query
    connection itself may not write files. The rows go to ``<path>.partial``
    first and replace ``path`` when complete.
    """
    import pyarrow.parquet as pq

    reader = relation.to_arrow_reader(PARQUET_BATCH_ROWS)
    rows = 0
    partial = path.with_name(path.name + ".partial")
    try:
        with pq.ParquetWriter(partial, reader.schema) as writer:
            for batch in reader:
                writer.write_batch(batch)
                rows += batch.num_rows
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(path)
    return rows


def _as_cell(value: Any) -> Any:
    return "" if value is None else value


def _finite(value: Any) -> Any:
    """Return None for NaN and infinities, which JSON cannot represent."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def json_default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    if isinstance(value, Decimal):
        return float(value)
    return str(value)
