"""Incremental ingest: offsets, rotation, compression, rejects, chunking."""

from __future__ import annotations

import gzip
import io
import os
from pathlib import Path

import polars as pl
import pytest

from gatewatch.connectors.base import ParseResult
from gatewatch.errors import SourceError
from gatewatch.ingest import ingest_source, iter_chunks, split_lines
from helpers import SimpleConnector, simple_line


line = simple_line


def ingest(store, folder: Path, pattern: str = "access.log*", chunk_bytes: int = 1 << 20):
    return ingest_source(store, "web", "simple", SimpleConnector(), [str(folder / pattern)], chunk_bytes)


def stored(store) -> list[tuple]:
    return store.con.execute("SELECT ts, path, \"offset\" FROM events ORDER BY ts, path, \"offset\"").fetchall()


def count(store, table: str = "events") -> int:
    return store.con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def test_ingest_reads_only_new_bytes(store, tmp_path):
    log = tmp_path / "access.log"
    log.write_text(line(1) + line(2))
    assert ingest(store, tmp_path).events == 2
    with log.open("a") as handle:
        handle.write(line(3))
    report = ingest(store, tmp_path)
    assert report.events == 1
    assert count(store) == 3


def test_ingest_offsets_are_byte_positions(store, tmp_path):
    log = tmp_path / "access.log"
    log.write_bytes(line(1).encode() + b"garbage \xff\xfe\n" + line(2).encode())
    ingest(store, tmp_path)
    offsets = [row[0] for row in store.con.execute("SELECT \"offset\" FROM events ORDER BY 1").fetchall()]
    first = len(line(1))
    assert offsets == [0, first + len(b"garbage \xff\xfe\n")]


def test_ingest_reject_keeps_line_and_reason(store, tmp_path):
    (tmp_path / "access.log").write_bytes(line(1).encode() + b"bad \xff line here\n")
    report = ingest(store, tmp_path)
    assert report.rejects == 1
    offset, text, reason = store.con.execute('SELECT "offset", line, reason FROM rejects').fetchone()
    assert offset == len(line(1))
    assert text == "bad \\xff line here"
    assert reason == "not '<time> <ip> <path>'"


def test_ingest_holds_back_partial_line(store, tmp_path):
    log = tmp_path / "access.log"
    log.write_text(line(1) + "2026-11-03T10:00:02 192.0.2.9 /par")
    assert ingest(store, tmp_path).events == 1
    with log.open("a") as handle:
        handle.write("tial\n")
    ingest(store, tmp_path)
    assert [row[1] for row in stored(store)] == ["/a", "/partial"]


def test_ingest_rename_rotation_loses_nothing(store, tmp_path):
    log = tmp_path / "access.log"
    log.write_text(line(1) + line(2))
    ingest(store, tmp_path)
    with log.open("a") as handle:
        handle.write(line(3))  # written after the last read, before rotation
    log.rename(tmp_path / "access.log.1")
    (tmp_path / "access.log").write_text(line(4))
    ingest(store, tmp_path)
    assert [row[0].second for row in stored(store)] == [1, 2, 3, 4]


def test_ingest_copytruncate_reads_each_line_once(store, tmp_path):
    # Two identical lines are real traffic (a brute-force burst): both count.
    log = tmp_path / "access.log"
    log.write_text(line(0) + line(0))
    ingest(store, tmp_path)
    (tmp_path / "access.log.1").write_bytes(log.read_bytes())
    with log.open("r+") as handle:
        handle.truncate(0)
    log.write_text(line(1))
    ingest(store, tmp_path)
    assert [row[0].second for row in stored(store)] == [0, 0, 1]


def test_ingest_copytruncate_catches_lines_written_before_copy(store, tmp_path):
    log = tmp_path / "access.log"
    log.write_text(line(0))
    ingest(store, tmp_path)
    with log.open("a") as handle:
        handle.write(line(5))
    (tmp_path / "access.log.1").write_bytes(log.read_bytes())
    log.write_text(line(9))
    ingest(store, tmp_path)
    assert [row[0].second for row in stored(store)] == [0, 5, 9]


def test_ingest_gzip_rotation_read_once(store, tmp_path):
    log = tmp_path / "access.log"
    log.write_text(line(1) + line(2))
    ingest(store, tmp_path)
    with gzip.open(tmp_path / "access.log.1.gz", "wb") as handle:
        handle.write(log.read_bytes())
    log.unlink()
    (tmp_path / "access.log").write_text(line(3))
    ingest(store, tmp_path)
    ingest(store, tmp_path)
    assert [row[0].second for row in stored(store)] == [1, 2, 3]


def test_ingest_new_gzip_file_read_fully(store, tmp_path):
    with gzip.open(tmp_path / "access.log.2.gz", "wb") as handle:
        handle.write((line(1) + line(2)).encode())
    (tmp_path / "access.log").write_text(line(3))
    assert ingest(store, tmp_path).events == 3


def test_ingest_small_chunks_give_same_events(store, tmp_path):
    text = "".join(line(s, f"/p{s}") for s in range(60))
    (tmp_path / "access.log").write_text(text)
    report = ingest(store, tmp_path, chunk_bytes=100)
    assert report.events == 60
    assert len({row[2] for row in stored(store)}) == 60


@pytest.mark.parametrize("chunk_bytes", [7, 30, 1000])
def test_iter_chunks_line_limit(chunk_bytes):
    text = b"".join(b"line %d\n" % i for i in range(25)) + b"partial"
    chunks = list(iter_chunks(io.BytesIO(text), 0, chunk_bytes, finished=False, chunk_lines=4))
    assert b"".join(chunk.data for chunk in chunks) == text[: text.rindex(b"\n") + 1]
    assert all(chunk.data.count(b"\n") <= 4 for chunk in chunks)
    assert all(chunk.data.endswith(b"\n") for chunk in chunks)
    assert [chunk.offset for chunk in chunks] == [text.index(chunk.data) for chunk in chunks]
    if chunk_bytes == 1000:
        assert [chunk.data.count(b"\n") for chunk in chunks] == [4, 4, 4, 4, 4, 4, 1]


def test_iter_chunks_finished_last_line():
    text = b"a\nb\nc\nno newline"
    chunks = list(iter_chunks(io.BytesIO(text), 10, 1000, finished=True, chunk_lines=2))
    assert [chunk.data for chunk in chunks] == [b"a\nb\n", b"c\nno newline"]
    assert [chunk.offset for chunk in chunks] == [10, 14]


def test_ingest_missing_path_raises_clear_error(store, tmp_path):
    with pytest.raises(SourceError, match="no file matches"):
        ingest(store, tmp_path / "missing")


def test_ingest_inode_reuse_with_new_content(store, tmp_path):
    log = tmp_path / "access.log"
    log.write_text(line(1))
    ingest(store, tmp_path)
    os.unlink(log)
    log.write_text(line(7, "/other-content"))
    ingest(store, tmp_path)
    assert count(store) == 2


def test_split_lines_crlf_and_blank(tmp_path):
    frame = split_lines(b"a\r\n\nb\n", 100)
    assert frame["line"].to_list() == ["a", "b"]
    assert frame["offset"].to_list() == [100, 104]


@pytest.mark.parametrize(
    ("chunk", "lines", "offsets"),
    [
        ("caf\u00e9 \u00fc\n  \nx\r\n".encode(), ["caf\u00e9 \u00fc", "x"], [0, 12]),
        (b"bad \xff\xfe byte\nok\n", ["bad \\xff\\xfe byte", "ok"], [0, 12]),
        (b"no newline at end", ["no newline at end"], [0]),
        (b"\n\n", [], []),
    ],
)
def test_split_lines_encodings(chunk, lines, offsets):
    frame = split_lines(chunk, 0)
    assert frame["line"].to_list() == lines
    assert frame["offset"].to_list() == offsets


class FailingConnector(SimpleConnector):
    """SimpleConnector that raises on a chunk containing the path /boom."""

    def parse(self, lines: pl.DataFrame) -> ParseResult:
        if lines["line"].str.contains("/boom", literal=True).any():
            raise ValueError("parser failure on /boom")
        return super().parse(lines)


def test_ingest_parse_failure_keeps_earlier_chunks(store, tmp_path):
    log = tmp_path / "access.log"
    log.write_text("".join(line(s, f"/p{s}") for s in range(10)) + line(10, "/boom") + line(11, "/after"))
    with pytest.raises(ValueError, match="/boom"):
        ingest_source(store, "web", "simple", FailingConnector(), [str(log)], 100)
    committed = count(store)
    assert 0 < committed < 12
    report = ingest(store, tmp_path, chunk_bytes=100)
    assert report.events == 12 - committed
    assert count(store) == 12
    assert len({row[2] for row in stored(store)}) == 12


def test_ingest_damaged_gzip_keeps_other_files(store, tmp_path):
    (tmp_path / "access.log.2.gz").write_bytes(gzip.compress((line(1) + line(2)).encode())[:-12] + b"garbage!")
    (tmp_path / "access.log").write_text(line(3))
    report = ingest(store, tmp_path)
    assert len(report.errors) == 1
    assert "access.log.2.gz" in str(report.errors[0])
    assert [row[0].second for row in stored(store)][-1] == 3


def test_ingest_unreadable_file_reported(store, tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root can read files without read permission")
    log = tmp_path / "access.log"
    log.write_text(line(1))
    log.chmod(0)
    report = ingest(store, tmp_path)
    assert "cannot read the file" in str(report.errors[0])
