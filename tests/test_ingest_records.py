"""Ingest of multi-line records: whole records per parse, carried across chunks."""

from __future__ import annotations

import gzip
from pathlib import Path

import polars as pl
import pytest

from gatewatch.connectors.base import REJECT_SCHEMA, Connector, ParseResult
from gatewatch.events import conform
from gatewatch.ingest import ingest_source


class RecordConnector(Connector):
    """Test format: ``BEGIN <ISO time> <ip>``, ``path <path>`` lines, then ``END``.

    A record without its END line is rejected, so a record that was cut in
    two would show up as a reject.
    """

    name = "records"
    record_start = r"^BEGIN "
    record_end = r"^END$"

    def __init__(self) -> None:
        super().__init__()
        self.parsed_chunks: list[int] = []

    def parse(self, lines: pl.DataFrame) -> ParseResult:
        self.parsed_chunks.append(lines.height)
        grouped = (
            lines.with_columns(_record=pl.col("line").str.contains(self.record_start).cum_sum())
            .group_by("_record", maintain_order=True)
            .agg(
                offset=pl.col("offset").first(),
                first=pl.col("line").first(),
                paths=pl.col("line").filter(pl.col("line").str.starts_with("path ")).str.strip_prefix("path "),
                ended=(pl.col("line") == "END").any(),
                text=pl.col("line").str.join("\n"),
            )
            .with_columns(head=pl.col("first").str.extract_groups(r"^BEGIN (\S+) (\S+)$"))
        )
        good = grouped.filter(pl.col("ended") & pl.col("head").struct.field("1").is_not_null())
        events = good.select(
            ts=pl.col("head").struct.field("1").str.to_datetime("%Y-%m-%dT%H:%M:%S"),
            client_ip=pl.col("head").struct.field("2"),
            path=pl.col("paths").list.join(","),
            offset=pl.col("offset"),
        )
        rejects = grouped.filter(~(pl.col("ended") & pl.col("head").struct.field("1").is_not_null())).select(
            "offset", line=pl.col("text"), reason=pl.lit("incomplete record")
        )
        return ParseResult(conform(events), rejects.cast(REJECT_SCHEMA))


def record(second: int, *paths: str) -> str:
    body = "".join(f"path {path}\n" for path in paths)
    return f"BEGIN 2026-11-03T10:00:{second:02d} 192.0.2.9\n{body}END\n"


def ingest(store, folder: Path, connector: Connector, chunk_bytes: int = 1 << 20):
    return ingest_source(store, "waf", "records", connector, [str(folder / "audit.log*")], chunk_bytes)


def stored(store) -> list[tuple]:
    return store.con.execute('SELECT path, "offset" FROM events ORDER BY "offset"').fetchall()


def rejected(store) -> list[tuple]:
    return store.con.execute('SELECT "offset", reason FROM rejects ORDER BY "offset"').fetchall()


def test_record_split_across_chunks(store, tmp_path):
    text = record(1, "/a", "/b") + record(2, "/c", "/d", "/e") + record(3, "/f")
    (tmp_path / "audit.log").write_text(text)
    connector = RecordConnector()
    # 20 bytes per read: every record spans several chunks.
    report = ingest(store, tmp_path, connector, chunk_bytes=20)
    second = len(record(1, "/a", "/b"))
    third = second + len(record(2, "/c", "/d", "/e"))
    assert stored(store) == [("/a,/b", 0), ("/c,/d,/e", second), ("/f", third)]
    assert rejected(store) == []
    assert report.events == 3
    assert report.files[0].bytes_read == len(text)


def test_incomplete_record_waits_for_rest(store, tmp_path):
    log = tmp_path / "audit.log"
    first = record(1, "/a")
    log.write_text(first + "BEGIN 2026-11-03T10:00:02 192.0.2.9\npath /b\n")
    assert ingest(store, tmp_path, RecordConnector()).events == 1
    assert stored(store) == [("/a", 0)]
    checkpoint = store.con.execute('SELECT "offset" FROM checkpoints').fetchone()[0]
    assert checkpoint == len(first)

    with log.open("a") as handle:
        handle.write("path /c\nEND\n")
    assert ingest(store, tmp_path, RecordConnector()).events == 1
    assert stored(store) == [("/a", 0), ("/b,/c", len(first))]
    assert rejected(store) == []


def test_next_start_completes_record(store, tmp_path):
    # A record cut short by its writer ends where the next record starts.
    cut = "BEGIN 2026-11-03T10:00:01 192.0.2.9\npath /a\n"
    (tmp_path / "audit.log").write_text(cut + record(2, "/b"))
    ingest(store, tmp_path, RecordConnector(), chunk_bytes=16)
    assert stored(store) == [("/b", len(cut))]
    assert rejected(store) == [(0, "incomplete record")]


def test_crash_between_chunks_loses_nothing(store, tmp_path):
    records = [record(1, "/a", "/b"), record(2, "/c", "/d"), record(3, "/e", "/f")]
    (tmp_path / "audit.log").write_text("".join(records))

    class CrashingConnector(RecordConnector):
        def parse(self, lines):
            if len(self.parsed_chunks) == 1:
                raise RuntimeError("killed between chunks")
            return super().parse(lines)

    with pytest.raises(RuntimeError):
        ingest(store, tmp_path, CrashingConnector(), chunk_bytes=40)
    assert [path for path, _ in stored(store)] == ["/a,/b"]

    ingest(store, tmp_path, RecordConnector(), chunk_bytes=40)
    assert [path for path, _ in stored(store)] == ["/a,/b", "/c,/d", "/e,/f"]
    assert rejected(store) == []


def test_gzip_last_record_flushed(store, tmp_path):
    text = record(1, "/a") + "BEGIN 2026-11-03T10:00:02 192.0.2.9\npath /b\n"
    with gzip.open(tmp_path / "audit.log.1.gz", "wt") as handle:
        handle.write(text)
    ingest(store, tmp_path, RecordConnector())
    assert stored(store) == [("/a", 0)]
    assert rejected(store) == [(len(record(1, "/a")), "incomplete record")]


def test_one_line_format_unchanged(store, tmp_path):
    # Without record_start, every line is complete and nothing is held.
    class LineConnector(RecordConnector):
        record_start = None
        record_end = None

    (tmp_path / "audit.log").write_text("BEGIN 2026-11-03T10:00:01 192.0.2.9\n")
    connector = LineConnector()
    report = ingest(store, tmp_path, connector)
    assert report.files[0].bytes_read == len("BEGIN 2026-11-03T10:00:01 192.0.2.9\n")
    assert connector.parsed_chunks == [1]
