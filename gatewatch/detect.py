"""Pick a file's log format from its first lines, for sources with `format: auto`.

Every registered connector parses the same sample of lines. The one that
turns the largest share of them into events wins, and a tie goes to the one
that fills more normalized columns per event. Nothing here names a
connector, so connectors added later (built in or through the entry-point
group) take part without any change.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import zstandard
from pydantic import ValidationError

from gatewatch.connectors import connector_names, get_connector
from gatewatch.connectors.base import REJECT_SCHEMA, Connector
from gatewatch.errors import SourceError
from gatewatch.events import PARSED_COLUMNS
from gatewatch.ingest import COMPRESSED_SUFFIXES, iter_chunks, open_content, parse_chunk_lines

AUTO_FORMAT = "auto"
# The sample: the first SAMPLE_LINES lines, read from at most SAMPLE_BYTES bytes.
SAMPLE_LINES = 200
SAMPLE_BYTES = 1024 * 1024
# A format must turn at least this share of the sample into events to be chosen.
MIN_EVENT_SHARE = 0.5
# Columns left out of the fill score: every connector may fill them whatever the line.
_UNSCORED_COLUMNS = frozenset({"extra", "malformed"})

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Candidate:
    """The parse rate of one format on the sample."""

    format: str
    lines: int
    events: int
    # Mean number of normalized columns (other than `extra` and `malformed`)
    # that are not null per event.
    filled_columns: float = 0.0
    # The most frequent reject reason, to tell a user why a format failed.
    top_reason: str | None = None
    # Why the connector could not run at all, such as options it rejects.
    error: str | None = None

    @property
    def share(self) -> float:
        return self.events / self.lines if self.lines else 0.0

    def rate(self) -> str:
        """Return the parse rate as text, such as ``98% (196/200 lines, 9.1 columns filled)``."""
        return f"{self.share:.0%} ({self.events}/{self.lines} lines, {self.filled_columns:.1f} columns filled)"

    def describe(self) -> str:
        """Return the format name with its parse rate and its most frequent reject reason."""
        if self.error is not None:
            return f"{self.format} not tried: {self.error}"
        text = f"{self.format} {self.rate()}"
        if self.top_reason and self.events < self.lines:
            text += f", most rejects: {self.top_reason}"
        return text


def read_first_lines(path: Path, max_lines: int, max_bytes: int = SAMPLE_BYTES) -> pl.DataFrame:
    """Return the first ``max_lines`` lines of a file's content as ``line`` and ``offset``.

    Compressed files are decompressed. A last line without a newline is
    included, and lines over the maximum line length are left out.
    """
    compressed = path.name.endswith(COMPRESSED_SUFFIXES)
    with open_content(path, compressed) as handle:
        return read_first_lines_from(handle, max_lines, max_bytes)


def read_first_lines_from(handle: Any, max_lines: int, max_bytes: int = SAMPLE_BYTES) -> pl.DataFrame:
    """Return the first ``max_lines`` lines of a binary stream, as ``read_first_lines`` does."""
    lines, _ = read_sample(handle, max_lines, max_bytes)
    return lines


def read_sample(handle: Any, max_lines: int, max_bytes: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Return the first ``max_lines`` lines of a binary stream and the rejects of over-long lines among them."""
    frames: list[pl.DataFrame] = []
    oversize: list[pl.DataFrame] = []
    count = 0
    bounded = _BoundedReader(handle, max_bytes)
    for chunk in iter_chunks(bounded, 0, min(max_bytes, 1024 * 1024), finished=True):
        lines, rejects = parse_chunk_lines(chunk)
        frames.append(lines)
        oversize.append(rejects)
        count += lines.height + rejects.height
        if count >= max_lines:
            break
    if not frames:
        return pl.DataFrame(schema={"line": pl.String(), "offset": pl.Int64()}), pl.DataFrame(schema=REJECT_SCHEMA)
    return pl.concat(frames).head(max_lines), pl.concat(oversize)


class _BoundedReader:
    """A reader that stops after ``limit`` bytes of the wrapped stream."""

    def __init__(self, handle: Any, limit: int):
        self.handle = handle
        self.left = limit

    def read(self, size: int) -> bytes:
        if self.left <= 0:
            return b""
        data = self.handle.read(min(size, self.left))
        self.left -= len(data)
        return data


def score_format(name: str, connector: Connector, lines: pl.DataFrame) -> Candidate:
    """Parse the sample with one connector and measure the result."""
    try:
        result = connector.parse(lines)
    except Exception as exc:  # a connector that crashes on foreign input only loses the contest
        logger.warning("connector %r failed on the format sample: %s: %s", name, type(exc).__name__, exc)
        return Candidate(name, lines.height, 0, error=f"parser failed: {type(exc).__name__}: {exc}")
    events = result.events
    filled = 0.0
    if events.height:
        scored = [column for column in PARSED_COLUMNS if column not in _UNSCORED_COLUMNS and column in events.columns]
        per_event = events.select(pl.sum_horizontal([pl.col(column).is_not_null() for column in scored]))
        filled = float(per_event.to_series().mean())
    top_reason = None
    if result.rejects.height:
        top_reason = result.rejects["reason"].value_counts(sort=True)["reason"][0]
    return Candidate(name, lines.height, events.height, filled, top_reason)


def rank_formats(lines: pl.DataFrame, build: Callable[[str], Connector]) -> list[Candidate]:
    """Score every registered format on ``lines``, best first.

    ``build`` makes the connector of a format name and raises ValidationError
    or SourceError when the source's options do not suit it.
    """
    candidates = []
    for name in connector_names():
        if name == AUTO_FORMAT:
            continue
        try:
            connector = build(name)
        except ValidationError as exc:
            fields = ", ".join(sorted({".".join(str(p) for p in error["loc"]) for error in exc.errors()}))
            candidates.append(Candidate(name, lines.height, 0, error=f"invalid options for this format: {fields}"))
            continue
        except SourceError as exc:
            candidates.append(Candidate(name, lines.height, 0, error=exc.message))
            continue
        candidates.append(score_format(name, connector, lines))
    return sorted(candidates, key=lambda c: (c.error is None, c.share, c.filled_columns), reverse=True)


def pick_format(candidates: list[Candidate], path: Path | str) -> Candidate:
    """Return the best candidate, or raise SourceError listing the best ones when none fits."""
    if not candidates:
        raise SourceError("format auto found no registered connector; set `format:` to a format name", path)
    best = candidates[0]
    if best.lines == 0:
        raise SourceError("format auto found no line to choose a format from; it tries again on the next run", path)
    if best.error is None and best.events and best.share >= MIN_EVENT_SHARE:
        return best
    tried = [candidate for candidate in candidates if candidate.error is None]
    skipped = [candidate for candidate in candidates if candidate.error is not None]
    listed = "; ".join(candidate.describe() for candidate in tried[:3]) or "none"
    message = (
        f"format auto found no format that parses at least {MIN_EVENT_SHARE:.0%} of the first lines. "
        f"Best candidates: {listed}."
    )
    if skipped:
        message += " Not tried: " + "; ".join(candidate.describe() for candidate in skipped) + "."
    raise SourceError(
        f"{message} Set `format:` to the right name, or inspect the file with `gatewatch sources test {path}`",
        path,
    )


def explain_choice(chosen: Candidate, candidates: list[Candidate]) -> str:
    """Return why ``chosen`` won, naming the runner-up."""
    others = [c for c in candidates if c.format != chosen.format and c.error is None]
    text = f"format auto chose {chosen.format!r}: it parsed {chosen.rate()}"
    if others:
        text += f"; next best {others[0].describe()}"
    return text


class AutoFormat:
    """The connector chooser of a `format: auto` source.

    A file's choice is stored in its checkpoint and reused, so a file keeps
    its format across runs and rotations even if a later sample would score
    differently.
    """

    def __init__(self, options: Mapping[str, Any], timezone: str = "UTC", fingerprint_key: bytes = b""):
        self.options = dict(options)
        self.timezone = timezone
        self.fingerprint_key = fingerprint_key

    def build(self, name: str) -> Connector:
        """Create the connector of ``name`` with the source's options; raise ValidationError if it rejects them."""
        connector_class = get_connector(name)
        options = connector_class.options_model(**{"timezone": self.timezone, **self.options})
        return connector_class(options, fingerprint_key=self.fingerprint_key)

    def choose(self, path: Path, remembered: str | None) -> tuple[str, Connector, str | None]:
        """Return the format of ``path``, its connector and why it was chosen.

        The remembered format is reused when it still builds, and then the
        note is None. Otherwise the best format on a sample of the first lines wins.
        """
        connector = self.remembered_connector(str(path), remembered)
        if connector is not None:
            return remembered, connector, None
        try:
            lines = read_first_lines(path, SAMPLE_LINES)
        except (OSError, EOFError, zstandard.ZstdError) as exc:
            raise SourceError(f"cannot read the file to choose its format: {exc}", path) from None
        return self.choose_from_sample(str(path), lines)

    def remembered_connector(self, location: str, remembered: str | None) -> Connector | None:
        """Return the connector of a format chosen on an earlier run, or None to choose again."""
        if remembered is None:
            return None
        try:
            return self.build(remembered)
        except (SourceError, ValidationError) as exc:
            logger.warning("%s: remembered format %r is no longer usable (%s); choosing again", location, remembered, exc)
            return None

    def choose_from_sample(self, location: str, lines: pl.DataFrame) -> tuple[str, Connector, str]:
        """Return the best format for the sample ``lines``, its connector and why it won."""
        candidates = rank_formats(lines, self.build)
        chosen = pick_format(candidates, location)
        note = explain_choice(chosen, candidates)
        logger.info("%s: %s", location, note)
        return chosen.format, self.build(chosen.format), note
