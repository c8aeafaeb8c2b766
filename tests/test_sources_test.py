"""`gatewatch sources test` and the preview library function behind it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import zstandard

from gatewatch.errors import SourceError
from gatewatch.ingest import MAX_LINE_BYTES
from gatewatch.preview import preview_source

NGINX = '192.0.2.7 - bob [10/Oct/2024:13:55:{s:02d} +0000] "GET /a?x={s} HTTP/1.1" 200 5 "-" "curl/8"\n'
HOSTILE = 'hello \x1b[31mred\x07 [/link]\n'


def nginx_lines(count: int) -> str:
    return "".join(NGINX.format(s=s % 60) for s in range(count))


def gatewatch(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "GATEWATCH_CONFIG"}
    env["COLUMNS"] = "160"
    return subprocess.run(
        [sys.executable, "-m", "gatewatch.cli", *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=120
    )


def test_preview_auto_rows_rejects_rates(tmp_path):
    log = tmp_path / "access.log"
    log.write_text(nginx_lines(3) + HOSTILE)
    preview = preview_source(log)
    assert preview.format == "combined"
    assert preview.auto_choice == "combined"
    assert preview.lines == 4
    assert preview.events.height == 3
    assert preview.rejects["offset"].to_list() == [len(nginx_lines(3))]
    assert preview.fill_rates["client_ip"] == 1.0
    assert preview.fill_rates["user"] == 1.0
    assert preview.fill_rates["referer"] == 0.0
    assert [c.format for c in preview.candidates][:1] == ["combined"]


def test_preview_given_format(tmp_path):
    log = tmp_path / "access.log"
    log.write_text(nginx_lines(3))
    preview = preview_source(log, "nginx_json")
    assert preview.format == "nginx_json"
    assert preview.events.height == 0
    assert preview.rejects.height == 3
    assert preview.auto_choice == "combined"


def test_preview_line_limit(tmp_path):
    log = tmp_path / "access.log"
    log.write_text(nginx_lines(50))
    preview = preview_source(log, max_lines=10)
    assert preview.lines == 10
    assert preview.events.height == 10


def test_preview_zstd_and_oversize(tmp_path):
    log = tmp_path / "access.log.1.zst"
    content = nginx_lines(2) + "x" * (MAX_LINE_BYTES + 1) + "\n"
    log.write_bytes(zstandard.ZstdCompressor().compress(content.encode()))
    preview = preview_source(log)
    assert preview.events.height == 2
    assert preview.rejects.height == 1
    assert "longer than the maximum" in preview.rejects["reason"][0]


def test_preview_nothing_fits(tmp_path):
    log = tmp_path / "notes.txt"
    log.write_text("just some text\n" * 5)
    preview = preview_source(log)
    assert preview.format is None
    assert preview.auto_choice is None
    assert "no format that parses" in preview.auto_error


def test_preview_missing_file(tmp_path):
    with pytest.raises(SourceError, match="file not found"):
        preview_source(tmp_path / "missing.log")


def test_sources_test_cli_output(tmp_path):
    (tmp_path / "access.log").write_text(nginx_lines(3) + HOSTILE)
    result = gatewatch("sources", "test", "access.log", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "with format 'combined' (chosen by format auto): 3 events, 1 rejects" in out
    assert "nginx_json" in out
    assert "client_ip" in out
    assert "192.0.2.7" in out
    assert "hello \\x1b[31mred\\x07 [/link]" in out
    assert "\x1b[31m" not in out
    assert "\x07" not in out
    assert "100%" in out


def test_sources_test_cli_given_format(tmp_path):
    (tmp_path / "access.log").write_text(nginx_lines(2))
    result = gatewatch("sources", "test", "access.log", "--format", "nginx_json", "--lines", "1", cwd=tmp_path)
    assert result.returncode == 1
    assert "1 lines read with format 'nginx_json' (format auto would choose 'combined'): 0 events" in result.stdout
    assert "line is not a JSON object" in result.stdout


def test_sources_test_cli_unknown_format(tmp_path):
    (tmp_path / "access.log").write_text(nginx_lines(1))
    result = gatewatch("sources", "test", "access.log", "-f", "ngnx", cwd=tmp_path)
    assert result.returncode == 1
    assert "did you mean 'nginx'?" in result.stderr


def test_ingest_cli_prints_auto_choice(tmp_path):
    (tmp_path / "access.log").write_text(nginx_lines(3))
    (tmp_path / "gatewatch.yaml").write_text(
        "database: gw.duckdb\nsources:\n  - name: edge\n    format: auto\n    path: access.log\n", encoding="utf-8"
    )
    first = gatewatch("ingest", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "edge: 3 lines, 3 events, 0 rejected" in first.stdout
    assert "access.log: format auto chose 'combined': it parsed 100% (3/3 lines" in first.stderr

    with (tmp_path / "access.log").open("a") as handle:
        handle.write(nginx_lines(1))
    second = gatewatch("ingest", cwd=tmp_path)
    assert "edge: 1 lines, 1 events, 0 rejected" in second.stdout
    assert "format auto" not in second.stderr


def test_sources_test_cli_source_options(tmp_path):
    line = '192.0.2.7 - - [10/Oct/2024:13:55:36] "GET / HTTP/1.1" 200 5 "-" "curl/8" 0.250\n'
    (tmp_path / "access.log").write_text(line)
    (tmp_path / "gatewatch.yaml").write_text(
        "sources:\n  - name: edge\n    format: combined\n    path: access.log\n    timezone: Europe/Berlin\n"
        "    options:\n      trailing_fields: [request_time]\n",
        encoding="utf-8",
    )
    result = gatewatch("sources", "test", "access.log", "--source", "edge", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "250.0" in result.stdout
    assert "2024-10-10 11:55:36" in result.stdout

    missing = gatewatch("sources", "test", "access.log", "--source", "other", cwd=tmp_path)
    assert missing.returncode == 1
    assert "no source named 'other'; sources in the file: 'edge'" in missing.stderr


def test_preview_source_options(tmp_path):
    log = tmp_path / "access.log"
    log.write_text('192.0.2.7 - - [10/Oct/2024:13:55:36 +0000] "GET / HTTP/1.1" 200 5 "-" "curl/8" 0.250\n')
    preview = preview_source(log, "combined", options={"trailing_fields": ["request_time"]})
    assert preview.events["duration_ms"].to_list() == [250.0]
