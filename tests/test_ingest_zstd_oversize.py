"""Ingest of zstd rotations and of lines longer than the maximum line length."""

from __future__ import annotations

from pathlib import Path

import pytest
import zstandard

import gatewatch.ingest as ingest_module
from gatewatch.ingest import MAX_LINE_BYTES, ingest_source
from helpers import SimpleConnector, simple_line as line


def ingest(store, folder: Path, pattern: str = "access.log*", chunk_bytes: int = 1 << 20):
    return ingest_source(store, "web", "simple", SimpleConnector(), [str(folder / pattern)], chunk_bytes)


def seconds(store) -> list[int]:
    return [row[0].second for row in store.con.execute("SELECT ts FROM events ORDER BY ts").fetchall()]


def rejects(store) -> list[tuple]:
    return store.con.execute('SELECT "offset", length(line), reason FROM rejects ORDER BY "offset"').fetchall()


def write_zstd(path: Path, *frames: bytes) -> None:
    compressor = zstandard.ZstdCompressor()
    path.write_bytes(b"".join(compressor.compress(frame) for frame in frames))


@pytest.fixture
def read_calls(monkeypatch):
    """Count the files whose content ingest reads past the head."""
    calls: list[str] = []
    original = ingest_module.read_chunks

    def counting(path, *args, **kwargs):
        calls.append(Path(path).name)
        return original(path, *args, **kwargs)

    monkeypatch.setattr(ingest_module, "read_chunks", counting)
    return calls


def test_zstd_new_file_read_fully(store, tmp_path):
    write_zstd(tmp_path / "access.log.2.zst", (line(1) + line(2)).encode())
    (tmp_path / "access.log").write_text(line(3))
    assert ingest(store, tmp_path).events == 3
    assert seconds(store) == [1, 2, 3]


def test_zstd_multiple_frames_read_whole(store, tmp_path):
    write_zstd(tmp_path / "access.log.1.zst", line(1).encode(), line(2).encode(), line(3).encode())
    assert ingest(store, tmp_path).events == 3


def test_zstd_rotation_read_once(store, tmp_path, read_calls):
    log = tmp_path / "access.log"
    log.write_text(line(1) + line(2))
    ingest(store, tmp_path)
    with log.open("a") as handle:
        handle.write(line(3))  # written after the last read, before rotation
    write_zstd(tmp_path / "access.log.1.zst", log.read_bytes())
    log.unlink()
    (tmp_path / "access.log").write_text(line(4))

    ingest(store, tmp_path)
    assert seconds(store) == [1, 2, 3, 4]

    read_calls.clear()
    ingest(store, tmp_path)
    assert seconds(store) == [1, 2, 3, 4]
    assert "access.log.1.zst" not in read_calls


def test_zstd_fully_read_rotation_decompressed_once(store, tmp_path, read_calls):
    log = tmp_path / "access.log"
    log.write_text(line(1) + line(2))
    ingest(store, tmp_path)
    write_zstd(tmp_path / "access.log.1.zst", log.read_bytes())
    log.unlink()

    ingest(store, tmp_path)
    ingest(store, tmp_path)
    assert read_calls == ["access.log", "access.log.1.zst"]
    assert seconds(store) == [1, 2]


def test_zstd_replaced_file_read_again(store, tmp_path):
    rotated = tmp_path / "access.log.1.zst"
    write_zstd(rotated, line(1).encode())
    ingest(store, tmp_path)
    rotated.unlink()
    write_zstd(rotated, (line(1) + line(2)).encode())
    ingest(store, tmp_path)
    assert seconds(store) == [1, 2]


def test_zstd_last_line_without_newline(store, tmp_path):
    write_zstd(tmp_path / "access.log.1.zst", (line(1) + line(2)).rstrip("\n").encode())
    assert ingest(store, tmp_path).events == 2
    offset = store.con.execute('SELECT "offset" FROM checkpoints').fetchone()[0]
    assert offset == len(line(1) + line(2)) - 1


def test_zstd_damaged_file_reported(store, tmp_path):
    good = zstandard.ZstdCompressor().compress((line(1) * 2000).encode())
    (tmp_path / "access.log.1.zst").write_bytes(good[:-40] + b"\x00" * 40)
    (tmp_path / "access.log").write_text(line(3))
    report = ingest(store, tmp_path)
    assert len(report.errors) == 1
    assert "access.log.1.zst" in str(report.errors[0])
    assert seconds(store)[-1] == 3


def test_oversize_without_newline_not_reread(store, tmp_path):
    log = tmp_path / "access.log"
    size = 3 * MAX_LINE_BYTES + 5
    log.write_bytes(b"x" * size)
    report = ingest(store, tmp_path, chunk_bytes=MAX_LINE_BYTES)
    assert report.files[0].bytes_read == size
    assert report.events == 0
    rows = rejects(store)
    assert rows[0][0] == 0
    assert rows[0][1] == 1024
    assert "longer than the maximum of 1048576 bytes" in rows[0][2]
    checkpoint = store.con.execute('SELECT "offset" FROM checkpoints').fetchone()[0]
    assert checkpoint == size

    second = ingest(store, tmp_path, chunk_bytes=MAX_LINE_BYTES)
    assert second.files[0].bytes_read == 0
    assert len(rejects(store)) == len(rows)


def test_oversize_line_rest_skipped_next_run(store, tmp_path):
    log = tmp_path / "access.log"
    log.write_bytes(line(1).encode() + b"y" * (2 * MAX_LINE_BYTES))
    ingest(store, tmp_path, chunk_bytes=MAX_LINE_BYTES)
    with log.open("ab") as handle:
        handle.write(b" 2026-11-03T10:00:09 192.0.2.9 /looks-valid\n" + line(2).encode())
    ingest(store, tmp_path, chunk_bytes=MAX_LINE_BYTES)
    assert seconds(store) == [1, 2]
    reasons = [reason for _, _, reason in rejects(store)]
    assert reasons[-1].startswith("rest of a line longer than")


def test_oversize_complete_line_rejected_whatever_chunk(store, tmp_path):
    long_line = "2026-11-03T10:00:05 192.0.2.9 /" + "z" * (MAX_LINE_BYTES + 10) + "\n"
    (tmp_path / "access.log").write_text(line(1) + long_line + line(2))
    report = ingest(store, tmp_path, chunk_bytes=8 * MAX_LINE_BYTES)
    assert report.events == 2
    assert report.rejects == 1
    assert seconds(store) == [1, 2]
    offset, length, reason = rejects(store)[0]
    assert offset == len(line(1))
    assert length == 1024
    assert "longer than the maximum" in reason


def test_oversize_compressed_line_skipped(store, tmp_path):
    write_zstd(tmp_path / "access.log.1.zst", b"q" * (2 * MAX_LINE_BYTES) + b"\n" + line(4).encode())
    report = ingest(store, tmp_path, chunk_bytes=MAX_LINE_BYTES // 2)
    assert seconds(store) == [4]
    assert report.rejects >= 1


def test_zstd_crash_mid_file_resumes(store, tmp_path, monkeypatch):
    text = "".join(line(s, f"/p{s:02d}") for s in range(40))
    write_zstd(tmp_path / "access.log.1.zst", text.encode())
    original = ingest_module.iter_chunks

    def crash_after_two(*args, **kwargs):
        for index, chunk in enumerate(original(*args, **kwargs)):
            if index == 2:
                raise KeyboardInterrupt("simulated kill between chunks")
            yield chunk

    monkeypatch.setattr(ingest_module, "iter_chunks", crash_after_two)
    with pytest.raises(KeyboardInterrupt):
        ingest(store, tmp_path, chunk_bytes=200)
    committed = store.con.execute("SELECT count(*) FROM events").fetchone()[0]
    assert 0 < committed < 40

    monkeypatch.setattr(ingest_module, "iter_chunks", original)
    report = ingest(store, tmp_path, chunk_bytes=200)
    assert report.events == 40 - committed
    paths = [row[0] for row in store.con.execute("SELECT path FROM events ORDER BY path").fetchall()]
    assert paths == [f"/p{s:02d}" for s in range(40)]
