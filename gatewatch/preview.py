"""Parse the first lines of a log file with a format and measure the result.

``gatewatch sources test`` prints this, so a user can check a format (or
what `format: auto` would choose) before adding a source.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import zstandard
from pydantic import ValidationError
from rich.table import Table
from rich.text import Text

from gatewatch.detect import AUTO_FORMAT, SAMPLE_LINES, AutoFormat, Candidate, pick_format, rank_formats, read_sample
from gatewatch.errors import GatewatchError, SourceError
from gatewatch.events import PARSED_COLUMNS
from gatewatch.ingest import COMPRESSED_SUFFIXES, open_content
from gatewatch.notify.escape import make_visible

# Bytes read at most to collect the requested lines.
PREVIEW_MAX_BYTES = 64 * 1024 * 1024


@dataclass
class SourcePreview:
    """The outcome of parsing the first lines of one file."""

    path: str
    # The format the lines were parsed with; None when auto found none that fits.
    format: str | None
    lines: int
    events: pl.DataFrame
    rejects: pl.DataFrame
    # Share of events with a value, per normalized column, in table order.
    fill_rates: dict[str, float]
    # Every format scored on the first SAMPLE_LINES lines, best first, as `format: auto` ranks them.
    candidates: list[Candidate] = field(default_factory=list)
    # What `format: auto` would choose, or why it would choose nothing.
    auto_choice: str | None = None
    auto_error: str | None = None


def preview_source(
    path: Path,
    format_name: str | None = None,
    max_lines: int = 1000,
    options: dict[str, Any] | None = None,
    timezone: str = "UTC",
) -> SourcePreview:
    """Parse the first ``max_lines`` lines of ``path`` with a format, or the one auto picks.

    Raises SourceError when the file cannot be read or the format is
    unknown, and GatewatchError when the options are invalid for the format.
    Credential fingerprints use a throwaway key, so they differ from a store's.
    """
    chooser = AutoFormat(options or {}, timezone, fingerprint_key=b"gatewatch-sources-test")
    compressed = path.name.endswith(COMPRESSED_SUFFIXES)
    try:
        with open_content(path, compressed) as handle:
            lines, oversize = read_sample(handle, max_lines, PREVIEW_MAX_BYTES)
    except FileNotFoundError:
        raise SourceError("file not found; check the path", path) from None
    except (OSError, EOFError, zstandard.ZstdError) as exc:
        raise SourceError(f"cannot read the file: {exc}", path) from None

    candidates = rank_formats(lines.head(SAMPLE_LINES), chooser.build)
    auto_choice = auto_error = None
    try:
        auto_choice = pick_format(candidates, path).format
    except SourceError as exc:
        auto_error = exc.message
    preview = SourcePreview(
        path=str(path), format=None, lines=lines.height + oversize.height, events=pl.DataFrame(),
        rejects=oversize, fill_rates={}, candidates=candidates, auto_choice=auto_choice, auto_error=auto_error,
    )

    chosen = auto_choice if format_name is None or format_name.strip().lower() == AUTO_FORMAT else format_name
    if chosen is None:
        return preview
    try:
        connector = chooser.build(chosen)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise GatewatchError(f"invalid options for format {chosen!r}: {problems}") from None
    result = connector.parse(lines) if lines.height else None
    preview.format = chosen
    if result is not None:
        preview.events = result.events
        preview.rejects = pl.concat([oversize, result.rejects]).sort("offset")
    preview.fill_rates = fill_rates(preview.events)
    return preview


def fill_rates(events: pl.DataFrame) -> dict[str, float]:
    """Return the share of events with a non-null value, per normalized column."""
    if events.height == 0:
        return {column: 0.0 for column in PARSED_COLUMNS}
    shares = events.select([pl.col(column).is_not_null().mean() for column in PARSED_COLUMNS if column in events.columns])
    return {column: float(value) for column, value in shares.row(0, named=True).items()}


# Characters of a log line shown in a table cell; the rest is cut.
SHOWN_LINE_CHARS = 200


def render_preview(preview: SourcePreview, rows: int = 5) -> list[Any]:
    """Build the rich tables of a preview; every log value is escaped with ``make_visible``."""
    parts: list[Any] = []
    if preview.format is None:
        heading = f"{preview.path}: {preview.lines} lines read; no format parses them"
    else:
        if preview.format == preview.auto_choice:
            how = " (chosen by format auto)"
        elif preview.auto_choice is not None:
            how = f" (format auto would choose {preview.auto_choice!r})"
        else:
            how = ""
        heading = (
            f"{preview.path}: {preview.lines} lines read with format {preview.format!r}{how}: "
            f"{preview.events.height} events, {preview.rejects.height} rejects"
        )
    parts.append(Text(make_visible(heading), style="bold"))
    parts.append(_candidates_table(preview))
    if preview.auto_error:
        parts.append(Text(make_visible(f"format auto: {preview.auto_error}")))
    if preview.format is None:
        return parts
    if preview.events.height and rows:
        parts.append(_rows_table(preview, rows))
    if preview.rejects.height and rows:
        parts.append(_rejects_table(preview, rows))
    parts.append(_fill_table(preview))
    return parts


def _candidates_table(preview: SourcePreview) -> Table:
    table = Table(title="format auto ranking (first lines)", title_justify="left", box=None)
    for column in ("", "format", "events", "columns filled", "most frequent reject reason"):
        table.add_column(column)
    for candidate in preview.candidates:
        mark = "*" if candidate.format == preview.auto_choice else ""
        if candidate.error is not None:
            table.add_row(mark, candidate.format, "-", "-", Text(make_visible(candidate.error)))
            continue
        table.add_row(
            mark,
            candidate.format,
            f"{candidate.share:.0%} ({candidate.events}/{candidate.lines})",
            f"{candidate.filled_columns:.1f}",
            Text(make_visible(candidate.top_reason or "")),
        )
    return table


def _rows_table(preview: SourcePreview, rows: int) -> Table:
    """Show the first events one per column, with the filled normalized columns as rows."""
    shown = [column for column, rate in preview.fill_rates.items() if rate > 0]
    events = list(preview.events.head(rows).iter_rows(named=True))
    table = Table(title=f"parsed rows (first {len(events)})", title_justify="left", box=None)
    table.add_column("column", no_wrap=True)
    for event in events:
        table.add_column(f"offset {event.get('offset', '')}", overflow="fold")
    for column in shown:
        cells = [Text(make_visible("" if event[column] is None else _cut(event[column]))) for event in events]
        table.add_row(column, *cells)
    return table


def _rejects_table(preview: SourcePreview, rows: int) -> Table:
    table = Table(
        title=f"rejects (first {min(rows, preview.rejects.height)} of {preview.rejects.height})",
        title_justify="left",
        box=None,
    )
    table.add_column("offset", no_wrap=True)
    table.add_column("reason")
    table.add_column("line")
    for row in preview.rejects.head(rows).iter_rows(named=True):
        table.add_row(str(row["offset"]), Text(make_visible(row["reason"])), Text(make_visible(_cut(row["line"]))))
    return table


def _fill_table(preview: SourcePreview) -> Table:
    table = Table(title="column fill rates (share of events with a value)", title_justify="left", box=None)
    table.add_column("column")
    table.add_column("filled", justify="right")
    for column, rate in preview.fill_rates.items():
        table.add_row(column, f"{rate:.0%}", style=None if rate else "dim")
    return table


def _cut(value: object) -> str:
    text = str(value)
    if len(text) <= SHOWN_LINE_CHARS:
        return text
    return text[:SHOWN_LINE_CHARS] + f"… [{len(text) - SHOWN_LINE_CHARS} more chars]"
