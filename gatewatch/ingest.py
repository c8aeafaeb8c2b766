"""Read new bytes of log files, parse them in bulk and store the events.

Each file is known by a fingerprint of its first bytes, so a renamed or
copied rotation finds the offset already read, and a truncated file (the
copytruncate scheme) starts over as new content. Each chunk's events,
rejects and the file's new offset commit in one transaction: after a crash
the next run resumes at the last committed offset, with nothing lost and
nothing read twice.
"""

from __future__ import annotations

import glob
import gzip
import hashlib
import os
import struct
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from gatewatch.connectors.base import Connector
from gatewatch.errors import SourceError
from gatewatch.store import Store, utc_now

# Bytes hashed to recognise a file whatever its name. A file shorter than
# this is hashed whole and recognised by prefix while it grows.
HEAD_BYTES = 1024
# Bytes of one chunk at most (unless a single line is longer); with
# CHUNK_LINES it bounds the memory of ingest whatever the file size.
CHUNK_BYTES = 64 * 1024 * 1024
# Bytes read from the file at a time while a chunk fills.
READ_BYTES = 4 * 1024 * 1024
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
COMPRESSED_SUFFIXES = (".gz",)


@dataclass
class FileReport:
    path: str
    lines: int = 0
    events: int = 0
    rejects: int = 0
    bytes_read: int = 0
    # Events dated more than MAX_CLOCK_SKEW ahead of the clock.
    future: int = 0


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
    connector: Connector,
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
    connector: Connector,
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
    if compressed and checkpoint is not None and gzip_size_hint(path) == start:
        _save_checkpoint(store, source, head, path, stat, start, checkpoint, commit=True)
        return report

    file = _OpenFile(store, source, format_name, connector, path, stat, head)
    try:
        for parsed in _parse_ahead(file, read_chunks(path, start, compressed, chunk_bytes)):
            checkpoint = _store_chunk(file, parsed, checkpoint, report)
    except (OSError, EOFError) as exc:
        # Chunks before the fault are committed; the next run retries from there.
        raise SourceError(f"reading stopped at a damaged or unreadable part: {exc}", path) from None
    return report


@dataclass
class _OpenFile:
    """What every chunk of one file needs to be stored and checkpointed."""

    store: Store
    source: str
    format_name: str
    connector: Connector
    path: Path
    stat: os.stat_result
    head: bytes


@dataclass
class _ParsedChunk:
    """One chunk's events and rejects, ready to be stored."""

    offset: int
    size: int
    lines: int
    events: pl.DataFrame
    rejects: pl.DataFrame


def _parse_chunk(file: _OpenFile, chunk: bytes, chunk_offset: int) -> _ParsedChunk:
    lines = split_lines(chunk, chunk_offset)
    result = file.connector.parse(lines)
    return _ParsedChunk(
        offset=chunk_offset,
        size=len(chunk),
        lines=lines.height,
        events=add_lineage(result.events, file.source, file.format_name, str(file.path)),
        rejects=add_lineage(result.rejects, file.source, file.format_name, str(file.path)),
    )


def _parse_ahead(file: _OpenFile, chunks: Iterator[tuple[bytes, int]]) -> Iterator[_ParsedChunk]:
    """Yield the parsed chunks in file order, parsing the next one while the caller stores this one.

    polars and DuckDB release the GIL, so a worker thread parsing chunk N+1
    runs beside the insert and commit of chunk N. Commits still happen one
    chunk at a time, in order, in the caller's thread; at most two parsed
    chunks are held in memory.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="gatewatch-parse") as pool:
        pending: Future[_ParsedChunk] | None = None
        for chunk, chunk_offset in chunks:
            upcoming = pool.submit(_parse_chunk, file, chunk, chunk_offset)
            if pending is not None:
                yield pending.result()
            pending = upcoming
        if pending is not None:
            yield pending.result()


def _store_chunk(file: _OpenFile, parsed: _ParsedChunk, previous: Checkpoint | None, report: FileReport) -> Checkpoint:
    """Commit one chunk's events, rejects and the file's new offset together."""
    events = parsed.events
    end_offset = parsed.offset + parsed.size
    clock_limit = utc_now() + MAX_CLOCK_SKEW
    dated = events.filter(pl.col("ts") <= clock_limit)
    store = file.store
    with store.transaction():
        store.insert_frame("events", events)
        store.insert_frame("rejects", parsed.rejects)
        if dated.height:
            store.update_source_state(file.source, dated["ts"].min(), dated["ts"].max())
        checkpoint = _save_checkpoint(
            store, file.source, file.head, file.path, file.stat, end_offset, previous, commit=False
        )
    report.lines += parsed.lines
    report.events += events.height
    report.rejects += parsed.rejects.height
    report.bytes_read += parsed.size
    report.future += events.height - dated.height
    return checkpoint


def read_head(path: Path, compressed: bool) -> bytes:
    """Return the first HEAD_BYTES bytes of the file's content (decompressed)."""
    try:
        if compressed:
            with gzip.open(path, "rb") as handle:
                return handle.read(HEAD_BYTES)
        with open(path, "rb") as handle:
            return handle.read(HEAD_BYTES)
    except (OSError, EOFError) as exc:
        raise SourceError(f"cannot read the file: {exc}", path) from None


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
            "SELECT fingerprint, head_len, \"offset\" FROM checkpoints "
            "WHERE source = ? AND head_len = ? AND fingerprint = ? "
            "ORDER BY (device = ? AND inode = ?) DESC LIMIT 1",
            [source, length, fingerprint(head[:length]), device, inode],
        ).fetchone()
        if row is not None:
            return Checkpoint(fingerprint=row[0], head_len=row[1], offset=row[2])
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
) -> Checkpoint:
    """Write the file's offset under the fingerprint of its current head."""
    current = Checkpoint(fingerprint=fingerprint(head), head_len=len(head), offset=offset)

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
            "INSERT INTO checkpoints VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [source, current.fingerprint, current.head_len, str(path), stat.st_dev, stat.st_ino, offset, utc_now()],
        )

    if commit:
        with store.transaction():
            write()
    else:
        write()
    return current


def read_chunks(
    path: Path, start: int, compressed: bool, chunk_bytes: int, chunk_lines: int = CHUNK_LINES
) -> Iterator[tuple[bytes, int]]:
    """Yield (bytes, offset) chunks of whole lines from ``start`` on.

    A chunk contains ``chunk_lines`` lines, or fewer when they would take more
    than ``chunk_bytes`` (only a single longer line makes a larger chunk)
    or the file ends. A last line without a newline is held back until it
    is complete, except in compressed files, which are finished rotations.
    """
    opener = gzip.open if compressed else open
    with opener(path, "rb") as handle:
        handle.seek(start)
        offset = start
        data = bytearray()
        newlines = 0
        at_end = False
        while True:
            wants_more = newlines < chunk_lines and len(data) < chunk_bytes
            if not at_end and (wants_more or newlines == 0):
                # Past chunk_bytes without a newline: one long line, read on to its end.
                size = min(READ_BYTES, chunk_bytes - len(data)) if wants_more else READ_BYTES
                block = handle.read(size)
                at_end = not block
                newlines += block.count(b"\n")
                data += block
                continue
            if newlines == 0:
                break
            lines = min(newlines, chunk_lines)
            cut = _end_of_lines(data, lines, newlines)
            yield bytes(memoryview(data)[:cut]), offset
            del data[:cut]
            offset += cut
            newlines -= lines
        if data and compressed:
            yield bytes(data) + b"\n", offset


def _end_of_lines(data: bytearray, lines: int, newlines: int) -> int:
    """Return the position after the ``lines``-th newline of ``data``, which has ``newlines`` of them."""
    if lines == newlines:
        return data.rfind(b"\n") + 1
    # The cut is near the end (in the last block read), so only the tail is scanned.
    skipped = newlines - lines
    start = max(0, len(data) - READ_BYTES)
    while start > 0 and data.count(b"\n", start) <= skipped:
        start = max(0, start - READ_BYTES)
    positions = np.flatnonzero(np.frombuffer(memoryview(data)[start:], dtype=np.uint8) == 10)
    return start + int(positions[len(positions) - skipped - 1]) + 1


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
