"""`format: auto`: choosing a connector per file from its first lines."""

from __future__ import annotations

import re

import gzip
import json
from pathlib import Path

import polars as pl
import pytest

import gatewatch.connectors as registry
import gatewatch.detect as detect
from gatewatch.connectors import register_connector
from gatewatch.connectors.base import REJECT_SCHEMA, Connector, ParseResult
from gatewatch.detect import AutoFormat, rank_formats
from gatewatch.errors import SourceError
from gatewatch.events import conform
from gatewatch.ingest import ingest_source

COMBINED = '192.0.2.7 - - [10/Oct/2024:13:55:{s:02d} +0000] "GET /api/items HTTP/1.1" 200 2326 "-" "curl/8.5.0"\n'


def combined_lines(count: int, start: int = 0) -> str:
    return "".join(COMBINED.format(s=(start + i) % 60) for i in range(count))


def json_lines(count: int) -> str:
    rows = [
        {"time_iso8601": f"2024-10-10T13:55:{i:02d}+00:00", "remote_addr": "192.0.2.8", "request": "GET /x HTTP/1.1",
         "status": "404", "body_bytes_sent": "10"}
        for i in range(count)
    ]
    return "".join(json.dumps(row) + "\n" for row in rows)


def ingest(store, folder: Path, chooser: AutoFormat | None = None):
    chooser = chooser or AutoFormat({})
    return ingest_source(store, "edge", "auto", chooser, [str(folder / "access.log*")])


def formats(store) -> list[tuple]:
    return store.con.execute("SELECT format, count(*) FROM events GROUP BY 1 ORDER BY 1").fetchall()


class _PipeConnector(Connector):
    """Test format ``PIPE|<ISO time>|<ip>|<path>``; subclasses fill more or fewer columns."""

    with_path = False

    def parse(self, lines: pl.DataFrame) -> ParseResult:
        parts = lines.with_columns(pl.col("line").str.extract_groups(r"^PIPE\|([^|]+)\|([^|]+)\|([^|]+)$").alias("m"))
        parts = parts.unnest("m")
        good = parts.filter(pl.col("1").is_not_null())
        columns = [
            pl.col("1").str.to_datetime("%Y-%m-%dT%H:%M:%S", strict=False).alias("ts"),
            pl.col("2").alias("client_ip"),
            pl.col("offset"),
        ]
        if self.with_path:
            columns.append(pl.col("3").alias("path"))
        rejects = parts.filter(pl.col("1").is_null()).select(
            pl.col("offset"), pl.col("line"), pl.lit("not a PIPE line").alias("reason")
        )
        return ParseResult(conform(good.select(columns)), rejects.cast(REJECT_SCHEMA))


class PipeShort(_PipeConnector):
    name = "pipe_short_test"


class PipeFull(_PipeConnector):
    name = "pipe_full_test"
    with_path = True


@pytest.fixture
def pipe_connectors():
    """Register two test connectors for the length of one test."""
    registry.connector_names()
    register_connector(PipeShort)
    register_connector(PipeFull)
    yield
    for connector in (PipeShort, PipeFull):
        registry._connectors.pop(connector.name, None)
        registry._names.pop(connector.name, None)


def test_auto_picks_combined(store, tmp_path):
    (tmp_path / "access.log").write_text(combined_lines(20))
    report = ingest(store, tmp_path)
    assert formats(store) == [("combined", 20)]
    note = report.files[0].format_note
    assert note.startswith("format auto chose 'combined': it parsed 100% (20/20 lines")
    assert re.search(r"next best \w+ 0% \(0/20 lines", note), note


def test_auto_picks_json_per_file(store, tmp_path):
    (tmp_path / "access.log").write_text(combined_lines(5))
    (tmp_path / "access.log.json").write_text(json_lines(7))
    ingest(store, tmp_path)
    assert formats(store) == [("combined", 5), ("nginx_json", 7)]


def test_auto_choice_kept_in_checkpoint(store, tmp_path, monkeypatch):
    log = tmp_path / "access.log"
    log.write_text(combined_lines(3))
    ingest(store, tmp_path)
    assert store.con.execute("SELECT format FROM checkpoints").fetchall() == [("combined",)]

    def no_sampling(*args, **kwargs):
        raise AssertionError("the format was sampled again")

    monkeypatch.setattr(detect, "read_first_lines", no_sampling)
    with log.open("a") as handle:
        handle.write(json_lines(2) + combined_lines(2, 30))
    report = ingest(store, tmp_path)
    assert report.files[0].chosen_format == "combined"
    assert report.files[0].format_note is None
    assert formats(store) == [("combined", 5)]
    assert report.rejects == 2


def test_auto_choice_survives_gzip_rotation(store, tmp_path):
    log = tmp_path / "access.log"
    log.write_text(combined_lines(3))
    ingest(store, tmp_path)
    with log.open("a") as handle:
        handle.write(combined_lines(2, 10))
    with gzip.open(tmp_path / "access.log.1.gz", "wb") as handle:
        handle.write(log.read_bytes())
    log.unlink()
    report = ingest(store, tmp_path)
    assert report.files[0].format_note is None
    assert formats(store) == [("combined", 5)]


def test_auto_nothing_fits_lists_candidates(store, tmp_path):
    (tmp_path / "access.log").write_text("hello world\n" * 10 + combined_lines(2))
    report = ingest(store, tmp_path)
    assert report.events == 0
    message = str(report.errors[0])
    assert "found no format that parses at least 50% of the first lines" in message
    assert "combined 17% (2/12 lines" in message
    assert re.search(r"\w+ 0% \(0/12 lines", message), message
    assert "gatewatch sources test" in message
    assert store.con.execute("SELECT count(*) FROM checkpoints").fetchone()[0] == 0


def test_auto_takes_new_connectors(store, tmp_path, pipe_connectors):
    (tmp_path / "access.log").write_text("PIPE|2026-11-03T10:00:01|192.0.2.1|/a\n" * 4)
    report = ingest(store, tmp_path)
    assert formats(store) == [("pipe_full_test", 4)]
    assert "next best pipe_short_test 100%" in report.files[0].format_note


def test_rank_tie_broken_by_filled_columns(pipe_connectors):
    lines = pl.DataFrame({"line": ["PIPE|2026-11-03T10:00:01|192.0.2.1|/a"] * 3, "offset": [0, 40, 80]})
    ranked = rank_formats(lines, AutoFormat({}).build)
    assert [c.format for c in ranked[:2]] == ["pipe_full_test", "pipe_short_test"]
    assert ranked[0].share == ranked[1].share == 1.0
    assert ranked[0].filled_columns == 3.0
    assert ranked[1].filled_columns == 2.0


def test_auto_options_limit_candidates(store, tmp_path):
    (tmp_path / "access.log").write_text(combined_lines(4))
    chooser = AutoFormat({"fields": {"client": "remote_addr"}})
    report = ingest(store, tmp_path, chooser)
    message = str(report.errors[0])
    assert "combined not tried: invalid options for this format: fields" in message


def test_auto_source_in_config(tmp_path):
    from gatewatch.config import load_config
    from gatewatch.runner import ingest_all
    from gatewatch.store import Store

    (tmp_path / "access.log").write_text(combined_lines(3))
    (tmp_path / "gatewatch.yaml").write_text(
        "sources:\n  - name: edge\n    format: auto\n    path: access.log\n", encoding="utf-8"
    )
    config = load_config(tmp_path / "gatewatch.yaml")
    with Store(tmp_path / "gw.duckdb") as store:
        reports, errors = ingest_all(config, store)
        assert errors == []
        assert reports[0].files[0].chosen_format == "combined"
        assert formats(store) == [("combined", 3)]


def test_auto_empty_sample_raises(tmp_path):
    lines = pl.DataFrame(schema={"line": pl.String(), "offset": pl.Int64()})
    with pytest.raises(SourceError, match="no line to choose a format from"):
        detect.pick_format(rank_formats(lines, AutoFormat({}).build), tmp_path / "x.log")
