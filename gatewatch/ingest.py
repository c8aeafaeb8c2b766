"""Read new bytes of log files, parse them in bulk and store the events.

Each file is known by a fingerprint of its first bytes, so a renamed or
copied rotation finds the offset already read, and a truncated file (the
copytruncate scheme) starts over as new content. Each chunk's events,
rejects and the file's new offset commit in one transaction: after a crash
the next run resumes at the last committed offset, with nothing lost and
nothing read twice.

Compressed files (``.gz``, ``.zst``) are finished rotations: they are read
once, to their end, under the same checkpoints. A line longer than
MAX_LINE_BYTES is not parsed: its bytes go to the rejects table and the
checkpoint moves past them, so a file without newlines cannot stall ingest.
"""

from __future__ import annotations

import glob
import gzip
import hashlib
import os
import struct
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import BinaryIO, Protocol, TypeVar

import numpy as np
import polars as pl
import pyarrow as pa
import zstandard

from gatewatch.connectors.base import REJECT_SCHEMA, Connector, ParseResult
from gatewatch.errors import SourceError
from gatewatch.store import Store, utc_now

T = TypeVar("T")

# Bytes hashed to recognise a file whatever its name. A file shorter than
# this is hashed whole and recognised by prefix while it grows.
HEAD_BYTES = 1024
# Bytes read at a time; a chunk is at most twice this (unless one line is
# longer), so with CHUNK_LINES it bounds memory whatever the file size.
CHUNK_BYTES = 32 * 1024 * 1024
# Lines parsed and committed per transaction at most: DuckDB's row group size
# (122,880 rows). A chunk that leaves a partly filled row group behind in
# every transaction makes DuckDB's next checkpoint merge all of those row
# groups at once (its vacuum step). That merge held the whole
# un-checkpointed table in memory, 3.7 GB for 10M lines (DuckDB 2.0.1).
# Whole row groups need no merge.
CHUNK_LINES = 122_880
# Events dated further ahead of this machine's clock are stored but do not
# move the watermark: one bad timestamp in 2100 must not close every window
# up to 2100 and leave the real events behind it unevaluated.
MAX_CLOCK_SKEW = timedelta(minutes=15)
COMPRESSED_SUFFIXES = (".gz", ".zst")
# Maximum length of one line in bytes. A longer line is rejected unparsed:
# without a cap, a file with no newline would be carried and re-read whole
# on every run.
MAX_LINE_BYTES = 1024 * 1024
# Bytes of an over-long line kept in its reject row.
OVERSIZE_SHOWN_BYTES = 1024
# Largest multi-line record carried from one chunk to the next. ModSecurity's
# default request body limit is 12.5 MiB, so a whole audit record fits. A
# record that grows past this is parsed as it is, and the connector rejects
# it as incomplete.
MAX_RECORD_BYTES = 16 * 1024 * 1024


@dataclass
class FileReport:
    path: str
    lines: int = 0
    events: int = 0
    rejects: int = 0
    bytes_read: int = 0
    # Events dated more than MAX_CLOCK_SKEW ahead of the clock.
    future: int = 0
    # The format `format: auto` parsed the file with, and why it was chosen
    # (None when an earlier run chose it).
    chosen_format: str | None = None
    format_note: str | None = None


@dataclass
class SourceReport:
    source: str
    files: list[FileReport] = field(default_factory=list)
    # Files that could not be read; the source's other files were read.
    errors: list[SourceError] = field(default_factory=list)

    @property
    def lines(self) -> int:
        return sum(f.lines for f in self.files)

    @property
    def events(self) -> int:
        return sum(f.events for f in self.files)

    @property
    def rejects(self) -> int:
        return sum(f.rejects for f in self.files)

    @property
    def future(self) -> int:
        return sum(f.future for f in self.files)


@dataclass
class Checkpoint:
    fingerprint: str
    head_len: int
    offset: int
    # The format `format: auto` chose for this content; None for a fixed format.
    format: str | None = None


class FormatChooser(Protocol):
    """Picks the connector of each file; `format: auto` sources pass one instead of a connector."""

    def choose(self, path: Path, remembered: str | None) -> tuple[str, Connector, str | None]:
        """Return the format name, its connector and why it was chosen (None when remembered)."""
        ...

    def remembered_connector(self, location: str, remembered: str | None) -> Connector | None:
        """Return the connector of a format chosen on an earlier run, or None to choose again."""
        ...

    def choose_from_sample(self, location: str, lines: pl.DataFrame) -> tuple[str, Connector, str]:
        """Return the best format for a sample of lines, its connector and why it won."""
        ...


def expand_paths(patterns: list[str]) -> list[Path]:
    """List the files a source names, oldest first; raise if none exist.

    A pattern may be a file, a directory (its files) or a glob.
    """
    found: dict[str, Path] = {}
    for pattern in patterns:
        matches = [Path(p) for p in glob.glob(pattern)] if glob.has_magic(pattern) else [Path(pattern)]
        for match in matches:
            if match.is_dir():
                for child in match.iterdir():
                    if child.is_file():
                        found[str(child)] = child
            elif match.is_file():
                found[str(match)] = match
    return sorted(found.values(), key=_age_key)


def _age_key(path: Path) -> tuple[float, str]:
    # Rotated files are older: read them before the live file so that
    # events arrive roughly in time order. A file rotated away since the
    # listing sorts first and is reported when it is read.
    try:
        return (path.stat().st_mtime, str(path))
    except OSError:
        return (0.0, str(path))


def ingest_source(
    store: Store,
    source: str,
    format_name: str,
    connector: Connector | FormatChooser,
    patterns: list[str],
    chunk_bytes: int = CHUNK_BYTES,
) -> SourceReport:
    """Ingest every new line of the source's files into the store."""
    files = expand_paths(patterns)
    if not files:
        raise SourceError(
            f"source {source!r}: no file matches {', '.join(patterns)}; "
            "check the path, or wait until the log exists"
        )
    report = SourceReport(source=source)
    for path in files:
        try:
            report.files.append(ingest_file(store, source, format_name, connector, path, chunk_bytes))
        except FileNotFoundError:
            # Rotated away since the listing; its content is read under its
            # new name, which the checkpoint recognises.
            continue
        except SourceError as exc:
            report.errors.append(exc)
    return report


def ingest_file(
    store: Store,
    source: str,
    format_name: str,
    connector: Connector | FormatChooser,
    path: Path,
    chunk_bytes: int = CHUNK_BYTES,
) -> FileReport:
    """Ingest the bytes of one file past its checkpoint, one chunk per transaction."""
    report = FileReport(path=str(path))
    compressed = path.name.endswith(COMPRESSED_SUFFIXES)
    head = read_head(path, compressed)
    if not head:
        return report
    stat = path.stat()
    checkpoint = find_checkpoint(store, source, head, stat.st_dev, stat.st_ino)
    start = checkpoint.offset if checkpoint is not None else 0
    if not compressed and stat.st_size < start:
        # Same first bytes but shorter than what was read: the file was
        # truncated and refilled with identical lines. Read it as new.
        start = 0
    if compressed and checkpoint is not None:
        if is_finished_rotation(store, source, checkpoint, path, stat):
            return report
        if path.name.endswith(".gz") and gzip_size_hint(path) == start:
            _save_checkpoint(store, source, head, path, stat, start, checkpoint, commit=True)
            return report

    remember_format = not isinstance(connector, Connector)
    if remember_format:
        remembered = checkpoint.format if checkpoint is not None else None
        format_name, connector, report.format_note = connector.choose(path, remembered)
        report.chosen_format = format_name
    file = _OpenFile(store, source, format_name, connector, path, stat, head, remember_format)
    try:
        parts = _record_parts(file.connector, read_chunks(path, start, compressed, chunk_bytes), compressed)
        for parsed in _parse_ahead(parts, file.connector, source, format_name, str(path)):
            checkpoint = _ingest_chunk(file, parsed, checkpoint, report)
        if compressed and checkpoint is not None:
            # Read to its end: record that under this file's inode so the
            # next run skips it without decompressing.
            _save_checkpoint(
                store, source, head, path, stat, checkpoint.offset, checkpoint, commit=True,
                detected_format=format_name if remember_format else None, complete=True,
            )
    except (OSError, EOFError, zstandard.ZstdError) as exc:
        # Chunks before the fault are committed; the next run retries from there.
        raise SourceError(f"reading stopped at a damaged or unreadable part: {exc}", path) from None
    return report


@dataclass
class _OpenFile:
    """The state shared by every chunk of one file: where to store it and how to checkpoint it."""

    store: Store
    source: str
    format_name: str
    connector: Connector
    path: Path
    stat: os.stat_result
    head: bytes
    # True when `format: auto` chose format_name: the checkpoint keeps it.
    remember_format: bool = False


def _record_parts(connector: Connector, chunks: Iterable[Chunk], compressed: bool) -> Iterator[Chunk]:
    """Yield the chunks of complete records to commit, in file order."""
    # An incomplete multi-line record at the end of the last chunk, parsed
    # with the next chunk; always None for one-line formats.
    held: Chunk | None = None
    for chunk in chunks:
        ready, held = complete_records(connector, held, chunk)
        yield from ready
    if held is not None and compressed:
        # A compressed file is a finished rotation: its last record stays as written.
        yield held


def _ingest_chunk(file: _OpenFile, parsed: ParsedChunk, previous: Checkpoint | None, report: FileReport) -> Checkpoint:
    """Commit one parsed chunk's events, rejects and the file's new offset together."""

    def save(end_offset: int) -> Checkpoint:
        return _save_checkpoint(
            file.store, file.source, file.head, file.path, file.stat, end_offset, previous, commit=False,
            detected_format=file.format_name if file.remember_format else None,
        )

    return store_chunk(file.store, file.source, parsed, report, save)


@dataclass
class ParsedChunk:
    """One chunk's events and rejects, ready to be stored."""

    chunk: Chunk
    lines: int
    events: pl.DataFrame
    rejects: pl.DataFrame


def parse_chunk(connector: Connector, source: str, format_name: str, location: str, chunk: Chunk) -> ParsedChunk:
    """Parse one chunk into events and rejects with lineage columns."""
    lines, oversize = parse_chunk_lines(chunk)
    result = connector.parse(lines) if lines.height else _empty_result()
    return ParsedChunk(
        chunk=chunk,
        lines=lines.height + oversize.height,
        events=add_lineage(result.events, source, format_name, location),
        rejects=add_lineage(pl.concat([oversize, result.rejects]), source, format_name, location),
    )


def _parse_ahead(
    chunks: Iterable[Chunk], connector: Connector, source: str, format_name: str, location: str
) -> Iterator[ParsedChunk]:
    """Yield the parsed chunks in order, parsing the next one while the caller stores this one.

    polars and DuckDB release the GIL, so a worker thread parsing chunk N+1
    runs beside the insert and commit of chunk N. Commits still happen one
    chunk at a time, in order, in the caller's thread; at most two parsed
    chunks are held in memory.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="gatewatch-parse") as pool:
        pending: Future[ParsedChunk] | None = None
        for chunk in chunks:
            upcoming = pool.submit(parse_chunk, connector, source, format_name, location, chunk)
            if pending is not None:
                yield pending.result()
            pending = upcoming
        if pending is not None:
            yield pending.result()


def commit_chunk(
    store: Store,
    source: str,
    format_name: str,
    connector: Connector,
    location: str,
    chunk: Chunk,
    report: FileReport,
    save_position: Callable[[int], T],
) -> T:
    """Parse one chunk and commit its events, rejects and new read position in one transaction.

    ``save_position`` writes the position after the chunk (a file checkpoint
    or an S3 object's offset) inside that transaction, and its result is returned.
    """
    parsed = parse_chunk(connector, source, format_name, location, chunk)
    return store_chunk(store, source, parsed, report, save_position)


def store_chunk(
    store: Store, source: str, parsed: ParsedChunk, report: FileReport, save_position: Callable[[int], T]
) -> T:
    """Commit a parsed chunk's events, rejects and new read position in one transaction."""
    chunk = parsed.chunk
    events = parsed.events
    rejects = parsed.rejects
    clock_limit = utc_now() + MAX_CLOCK_SKEW
    dated = events.filter(pl.col("ts") <= clock_limit)
    with store.transaction():
        store.insert_frame("events", events)
        store.insert_frame("rejects", rejects)
        if dated.height:
            store.update_source_state(source, dated["ts"].min(), dated["ts"].max())
        position = save_position(chunk.end)
    report.lines += parsed.lines
    report.events += events.height
    report.rejects += rejects.height
    report.bytes_read += chunk.end - chunk.offset
    report.future += events.height - dated.height
    return position


def complete_records(connector: Connector, held: Chunk | None, chunk: Chunk) -> tuple[list[Chunk], Chunk | None]:
    """Return the chunks of complete records in ``held`` + ``chunk``, and the incomplete rest.

    For a one-line format that is ``chunk`` itself. For a connector with
    ``record_start``, the last record is held back unless a line of it
    matches ``record_end``, so the checkpoint stops at its first byte and
    the record is parsed once, whole, with the next chunk. A held record
    past MAX_RECORD_BYTES, or one interrupted by an over-long line, is
    passed on as it is.
    """
    if connector.record_start is None:
        return [chunk], None
    if chunk.skipped is not None:
        return [part for part in (held, chunk) if part is not None], None
    offset = held.offset if held is not None else chunk.offset
    data = held.data + chunk.data if held is not None else chunk.data
    if held is not None and len(held.data) > MAX_RECORD_BYTES:
        return [Chunk(offset, data)], None
    end = complete_records_end(split_lines(data, offset), connector, offset + len(data))
    ready = [Chunk(offset, data[: end - offset])] if end > offset else []
    rest = Chunk(end, data[end - offset :]) if end < offset + len(data) else None
    return ready, rest


def complete_records_end(lines: pl.DataFrame, connector: Connector, end_offset: int) -> int:
    """Return the byte offset where the complete records of ``lines`` end.

    For a one-line format every line is complete and this is ``end_offset``.
    For a connector with ``record_start``, the last record of the chunk is
    incomplete unless a line at or after its first line matches
    ``record_end``; the offset of that first line is returned then.
    """
    if connector.record_start is None or lines.height == 0:
        return end_offset
    starts = lines.filter(pl.col("line").str.contains(connector.record_start))
    if starts.height == 0:
        return end_offset
    last_start = starts["offset"].max()
    if connector.record_end is not None:
        last_record = lines.filter(pl.col("offset") >= last_start)
        if last_record["line"].str.contains(connector.record_end).any():
            return end_offset
    return last_start


def _empty_result() -> ParseResult:
    return ParseResult.from_frames(pl.DataFrame(schema={"offset": pl.Int64()}), pl.DataFrame(schema=REJECT_SCHEMA))


def read_head(path: Path, compressed: bool) -> bytes:
    """Return the first HEAD_BYTES bytes of the file's content (decompressed)."""
    try:
        with open_content(path, compressed) as handle:
            return handle.read(HEAD_BYTES)
    except (OSError, EOFError, zstandard.ZstdError) as exc:
        raise SourceError(f"cannot read the file: {exc}", path) from None


def open_content(path: Path, compressed: bool) -> BinaryIO:
    """Open a file for reading its content, decompressing ``.gz`` and ``.zst``."""
    if not compressed:
        return open(path, "rb")
    if path.name.endswith(".zst"):
        return open_zstd(open(path, "rb"))
    return gzip.open(path, "rb")


def open_zstd(raw: BinaryIO) -> BinaryIO:
    """Wrap a binary stream of zstd data in a reader of its content.

    The reader reads every frame, so files made by concatenating zstd
    files (or by multi-frame compressors) are read whole. It only seeks forward.
    """
    return zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True, closefd=True)


def is_finished_rotation(
    store: Store, source: str, checkpoint: Checkpoint, path: Path, stat: os.stat_result
) -> bool:
    """Tell whether this compressed file was read to its end by an earlier run.

    The checkpoint must mark the content as read to its end, and must have
    been written for this very file (same path, device and inode) after its
    last modification. Compressed files are not appended to, so nothing can
    have been added since.
    """
    row = store.con.execute(
        "SELECT path, device, inode, updated_at, complete FROM checkpoints "
        "WHERE source = ? AND fingerprint = ? AND head_len = ?",
        [source, checkpoint.fingerprint, checkpoint.head_len],
    ).fetchone()
    if row is None:
        return False
    saved_path, device, inode, updated_at, complete = row
    modified = datetime.fromtimestamp(stat.st_mtime, timezone.utc).replace(tzinfo=None)
    same_file = (saved_path, device, inode) == (str(path), stat.st_dev, stat.st_ino)
    return complete and same_file and modified <= updated_at


def gzip_size_hint(path: Path) -> int | None:
    """Return the uncompressed size from the gzip trailer (modulo 4 GiB)."""
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        if handle.tell() < 4:
            return None
        handle.seek(-4, os.SEEK_END)
        return struct.unpack("<I", handle.read(4))[0]


def fingerprint(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def find_checkpoint(store: Store, source: str, head: bytes, device: int, inode: int) -> Checkpoint | None:
    """Find the checkpoint of the content that starts with ``head``.

    A checkpoint hashed over fewer bytes than ``head`` matches when its hash
    equals the hash of the same-length prefix: the file has grown since.
    The longest match wins, and the same inode breaks a tie.
    """
    lengths = [
        row[0]
        for row in store.con.execute(
            "SELECT DISTINCT head_len FROM checkpoints WHERE source = ? AND head_len <= ? "
            "ORDER BY head_len DESC",
            [source, len(head)],
        ).fetchall()
    ]
    for length in lengths:
        row = store.con.execute(
            "SELECT fingerprint, head_len, \"offset\", format FROM checkpoints "
            "WHERE source = ? AND head_len = ? AND fingerprint = ? "
            "ORDER BY (device = ? AND inode = ?) DESC LIMIT 1",
            [source, length, fingerprint(head[:length]), device, inode],
        ).fetchone()
        if row is not None:
            return Checkpoint(fingerprint=row[0], head_len=row[1], offset=row[2], format=row[3])
    return None


def _save_checkpoint(
    store: Store,
    source: str,
    head: bytes,
    path: Path,
    stat: os.stat_result,
    offset: int,
    previous: Checkpoint | None,
    commit: bool,
    detected_format: str | None = None,
    complete: bool = False,
) -> Checkpoint:
    """Write the file's offset under the fingerprint of its current head.

    ``complete`` marks a compressed file as read to its end.
    """
    current = Checkpoint(fingerprint=fingerprint(head), head_len=len(head), offset=offset, format=detected_format)

    def write() -> None:
        if previous is not None:
            store.con.execute(
                "DELETE FROM checkpoints WHERE source = ? AND fingerprint = ? AND head_len = ?",
                [source, previous.fingerprint, previous.head_len],
            )
        store.con.execute(
            "DELETE FROM checkpoints WHERE source = ? AND fingerprint = ? AND head_len = ?",
            [source, current.fingerprint, current.head_len],
        )
        store.con.execute(
            "INSERT INTO checkpoints (source, fingerprint, head_len, path, device, inode, \"offset\", "
            "updated_at, format, complete) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                source, current.fingerprint, current.head_len, str(path), stat.st_dev, stat.st_ino, offset,
                utc_now(), detected_format, complete,
            ],
        )

    if commit:
        with store.transaction():
            write()
    else:
        write()
    return current


@dataclass(frozen=True)
class SkippedBytes:
    """Bytes of a line longer than MAX_LINE_BYTES, stored as a reject instead of parsed."""

    offset: int
    length: int
    # The first OVERSIZE_SHOWN_BYTES of the piece, for the reject row.
    head: bytes
    # True when the line started in an earlier piece (an earlier chunk or run).
    continued: bool


@dataclass(frozen=True)
class Chunk:
    """One step of reading: whole lines from ``offset`` on, or one skipped piece of an over-long line."""

    offset: int
    data: bytes = b""
    skipped: SkippedBytes | None = None

    @property
    def end(self) -> int:
        """Return the content position after this chunk: the checkpoint once it commits."""
        if self.skipped is not None:
            return self.skipped.offset + self.skipped.length
        return self.offset + len(self.data)


def read_chunks(path: Path, start: int, compressed: bool, chunk_bytes: int) -> Iterator[Chunk]:
    """Yield chunks of whole lines of the file's content from ``start`` on.

    A last line without a newline is held back until it is complete, except
    in compressed files, which are finished rotations.
    """
    with open_content(path, compressed) as handle:
        mid_line = False
        if start > 0:
            # A checkpoint lands after a newline unless it moved past the
            # first part of an over-long line: then the rest is skipped too.
            handle.seek(start - 1)
            mid_line = handle.read(1) != b"\n"
        else:
            handle.seek(0)
        yield from iter_chunks(handle, start, chunk_bytes, finished=compressed, mid_line=mid_line)


def iter_chunks(
    handle: BinaryIO,
    offset: int,
    chunk_bytes: int,
    finished: bool,
    mid_line: bool = False,
    max_line_bytes: int = MAX_LINE_BYTES,
    chunk_lines: int = CHUNK_LINES,
) -> Iterator[Chunk]:
    """Yield chunks of at most ``chunk_lines`` whole lines read from ``handle``, whose next byte is at ``offset``.

    A read of more than ``chunk_lines`` lines is cut into chunks of exactly
    ``chunk_lines`` lines, and its rest is joined to the next read, so that
    each chunk fills whole DuckDB row groups. The rest goes out alone when
    it passes twice ``chunk_bytes``, the content ends or a skipped piece
    follows. A smaller read goes out as it is. Otherwise as _read_chunks.
    """
    pending = b""
    pending_offset = offset
    for chunk in _read_chunks(handle, offset, chunk_bytes, finished, mid_line, max_line_bytes):
        if chunk.skipped is not None:
            if pending:
                yield Chunk(pending_offset, pending)
                pending = b""
            yield chunk
            continue
        joined = bool(pending)
        if not joined:
            pending_offset = chunk.offset
        pending += chunk.data
        cut_any = False
        while pending.count(b"\n") >= chunk_lines:
            cut = _end_of_lines(pending, chunk_lines)
            yield Chunk(pending_offset, pending[:cut])
            pending_offset += cut
            pending = pending[cut:]
            cut_any = True
        keep = (joined or cut_any) and pending.endswith(b"\n") and len(pending) < 2 * chunk_bytes
        if pending and not keep:
            yield Chunk(pending_offset, pending)
            pending = b""
    if pending:
        yield Chunk(pending_offset, pending)


def _end_of_lines(data: bytes, lines: int) -> int:
    """Return the position after the ``lines``-th newline of ``data``."""
    positions = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10)
    return int(positions[lines - 1]) + 1


def _read_chunks(
    handle: BinaryIO,
    offset: int,
    chunk_bytes: int,
    finished: bool,
    mid_line: bool,
    max_line_bytes: int,
) -> Iterator[Chunk]:
    """Yield chunks of whole lines read from ``handle``, whose next byte is at ``offset``.

    ``finished`` content (a compressed rotation, an S3 object) yields its last
    line even without a newline. A line that grows past ``max_line_bytes``
    without a newline is yielded as skipped pieces up to and including its
    newline, so memory stays bounded by ``chunk_bytes + max_line_bytes``.
    ``mid_line`` means ``offset`` lies inside such a line.
    """
    carry = b""
    skipping = mid_line
    while True:
        block = handle.read(chunk_bytes)
        if not block:
            break
        data = carry + block
        carry = b""
        if skipping:
            newline = data.find(b"\n")
            piece = data if newline < 0 else data[: newline + 1]
            yield Chunk(offset, skipped=SkippedBytes(offset, len(piece), piece[:OVERSIZE_SHOWN_BYTES], True))
            offset += len(piece)
            data = data[len(piece) :]
            skipping = newline < 0
        cut = data.rfind(b"\n")
        if cut >= 0:
            yield Chunk(offset, data[: cut + 1])
            offset += cut + 1
        carry = data[cut + 1 :]
        if len(carry) > max_line_bytes:
            yield Chunk(offset, skipped=SkippedBytes(offset, len(carry), carry[:OVERSIZE_SHOWN_BYTES], False))
            offset += len(carry)
            carry = b""
            skipping = True
    if carry and finished:
        yield Chunk(offset, carry)


def parse_chunk_lines(chunk: Chunk) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split a chunk into the lines to parse and the rejects of over-long lines.

    A complete line whose decoded text is longer than MAX_LINE_BYTES is
    rejected like one cut off while being read, so the outcome of a line does
    not depend on where chunk boundaries fall.
    """
    if chunk.skipped is not None:
        return split_lines(b"", chunk.offset), oversize_reject(chunk.skipped)
    lines = split_lines(chunk.data, chunk.offset)
    too_long = pl.col("line").str.len_bytes() > MAX_LINE_BYTES
    if not lines.select(too_long.any()).item():
        return lines, pl.DataFrame(schema=REJECT_SCHEMA)
    rejects = lines.filter(too_long).select(
        pl.col("offset"),
        pl.col("line").str.slice(0, OVERSIZE_SHOWN_BYTES),
        pl.format(
            "line longer than the maximum of {} bytes: {} bytes not parsed, its start kept here",
            pl.lit(MAX_LINE_BYTES), pl.col("line").str.len_bytes(),
        ).alias("reason"),
    )
    return lines.filter(~too_long), rejects.cast(REJECT_SCHEMA)


def oversize_reject(skipped: SkippedBytes) -> pl.DataFrame:
    """Return the reject row of one skipped piece of an over-long line."""
    if skipped.continued:
        reason = f"rest of a line longer than the maximum of {MAX_LINE_BYTES} bytes: {skipped.length} bytes not parsed"
    else:
        reason = (
            f"line longer than the maximum of {MAX_LINE_BYTES} bytes: {skipped.length} bytes not parsed "
            "so far, its start kept here"
        )
    text = skipped.head.decode("utf-8", "backslashreplace")
    return pl.DataFrame({"offset": [skipped.offset], "line": [text], "reason": [reason]}, schema=REJECT_SCHEMA)


def split_lines(chunk: bytes, base_offset: int) -> pl.DataFrame:
    """Split a chunk of whole lines into a frame of ``line`` and ``offset``.

    Offsets are byte positions in the file; they come from the raw bytes, so
    they stay exact when invalid UTF-8 is decoded as ``\\xHH`` text. Blank
    lines are dropped.
    """
    raw = np.frombuffer(chunk, dtype=np.uint8)
    newlines = np.flatnonzero(raw == 10)
    if not chunk.endswith(b"\n"):
        newlines = np.append(newlines, len(chunk))
    starts = np.concatenate(([0], newlines[:-1] + 1)).astype(np.int64) + base_offset
    if _is_utf8(chunk):
        # The chunk is already the text: Arrow reads it in place, with one
        # string per line ending in its newline.
        bounds = np.concatenate(([0], newlines + 1)).astype(np.int64)
        bounds[-1] = min(bounds[-1], len(chunk))
        array = pa.LargeStringArray.from_buffers(len(newlines), pa.py_buffer(bounds), pa.py_buffer(chunk))
        lines = pl.Series("line", pl.from_arrow(array)).str.strip_suffix("\n")
    else:
        text = chunk.decode("utf-8", "backslashreplace")
        if text.endswith("\n"):
            text = text[:-1]
        lines = pl.Series("line", [text]).str.split("\n").explode()
    frame = pl.DataFrame({"line": lines, "offset": pl.Series("offset", starts)})
    frame = frame.with_columns(pl.col("line").str.strip_suffix("\r"))
    return frame.filter(pl.col("line").str.strip_chars() != "")


def _is_utf8(chunk: bytes) -> bool:
    if chunk.isascii():
        return True
    try:
        chunk.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def add_lineage(frame: pl.DataFrame, source: str, format_name: str, path: str) -> pl.DataFrame:
    """Add the source, format, file and ingest time columns."""
    return frame.with_columns(
        pl.lit(source).alias("source"),
        pl.lit(format_name).alias("format"),
        pl.lit(path).alias("file"),
        pl.lit(utc_now()).cast(pl.Datetime("us")).alias("ingested_at"),
    )
