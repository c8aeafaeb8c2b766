"""`gatewatch query` and `gatewatch shell`: read-only, formats, views and the database lock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from gatewatch.query import VIEWS

RULE = """\
id: admin-probe
title: Request for the admin panel
severity: high
type: match
where: path = '/admin'
group_by: [client_ip]
every: 1m
"""

LINES = [
    '203.0.113.1 - - [03/Nov/2026:10:00:05 +0000] "GET /admin HTTP/1.1" 404 5 "-" "<!channel> *bold*"\n',
    '192.0.2.9 - - [03/Nov/2026:10:00:10 +0000] "GET / HTTP/1.1" 200 5 "-" "curl/8.5.0"\n',
    '192.0.2.9 - - [03/Nov/2026:10:03:10 +0000] "GET /health HTTP/1.1" 200 5 "-" "curl/8.5.0"\n',
    "not a log line\n",
]


def gatewatch(project: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "GATEWATCH_CONFIG"}
    return subprocess.run(
        [sys.executable, "-m", "gatewatch.cli", *args],
        cwd=project, capture_output=True, text=True, env=env, timeout=120, input=stdin,
    )


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("query")
    (folder / "rules").mkdir()
    (folder / "rules" / "admin.yaml").write_text(RULE)
    (folder / "access.log").write_text("".join(LINES))
    (folder / "gatewatch.yaml").write_text(
        "database: gw.duckdb\n"
        "sources:\n  - name: edge\n    format: combined\n    path: access.log\n"
        "rules: [rules]\n"
        "notifiers: []\n"
    )
    result = gatewatch(folder, "run", "--once")
    assert result.returncode == 0, result.stderr
    return folder


def one_error_line(result: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize(
    "sql",
    [
        "COPY events TO 'copied.csv'",
        "COPY (SELECT 1) TO 'copied.parquet' (FORMAT parquet)",
        "SELECT * FROM read_csv('access.log')",
        "SELECT * FROM read_text('gatewatch.yaml')",
        "INSTALL httpfs",
        "LOAD httpfs",
        "ATTACH 'other.duckdb'",
        "SET enable_external_access = true",
        "RESET enable_external_access",
        "SET lock_configuration = false",
        "CREATE TABLE copied AS SELECT * FROM events",
        "DELETE FROM events",
        "EXPORT DATABASE 'exported'",
    ],
)
def test_query_rejects_writes_and_files(project, sql):
    result = gatewatch(project, "query", sql)
    assert result.returncode == 1
    line = one_error_line(result)
    assert line.startswith("error: query failed: ")
    for name in ("copied.csv", "copied.parquet", "other.duckdb", "exported"):
        assert not (project / name).exists()
    assert gatewatch(project, "query", "-f", "csv", "SELECT count(*) AS n FROM events").stdout == "n\n3\n"


def test_query_file_access_hint(project):
    result = gatewatch(project, "query", "SELECT * FROM read_csv('access.log')")
    line = one_error_line(result)
    assert "file system operations are disabled" in line
    assert "queries cannot read or write files or install extensions" in line


def test_query_csv_and_json(project):
    sql = "SELECT client_ip, status, user_agent FROM events ORDER BY ts"
    csv_result = gatewatch(project, "query", "-f", "csv", sql)
    assert csv_result.returncode == 0, csv_result.stderr
    assert csv_result.stdout.splitlines()[:2] == ["client_ip,status,user_agent", "203.0.113.1,404,<!channel> *bold*"]
    json_result = gatewatch(project, "query", "-f", "json", sql)
    records = json.loads(json_result.stdout)
    assert records[0] == {"client_ip": "203.0.113.1", "status": 404, "user_agent": "<!channel> *bold*"}
    assert len(records) == 3


def test_query_parquet_output(project, tmp_path):
    target = tmp_path / "events.parquet"
    result = gatewatch(project, "query", "-f", "parquet", "-o", str(target), "SELECT ts, client_ip, path FROM events")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert f"wrote 3 rows to {target}" in result.stderr
    table = pq.read_table(target)
    assert table.num_rows == 3
    assert table.column_names == ["ts", "client_ip", "path"]
    assert sorted(table.column("path").to_pylist()) == ["/", "/admin", "/health"]
    assert not target.with_name("events.parquet.partial").exists()


def test_query_csv_to_file(project, tmp_path):
    target = tmp_path / "rows.csv"
    result = gatewatch(project, "query", "-f", "csv", "-o", str(target), "SELECT 1 AS x")
    assert result.returncode == 0, result.stderr
    assert target.read_text() == "x\n1\n"


def test_query_parquet_needs_output(project):
    result = gatewatch(project, "query", "-f", "parquet", "SELECT 1")
    assert result.returncode == 1
    assert "pass --output FILE.parquet" in one_error_line(result)


def test_query_views_listed(project):
    result = gatewatch(project, "query", "--views")
    assert result.returncode == 0
    for view in VIEWS:
        assert view.name in result.stdout


@pytest.mark.parametrize("view", [view.name for view in VIEWS])
def test_query_view_runs(project, view):
    result = gatewatch(project, "query", "-f", "json", f"SELECT * FROM {view}")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout), f"view {view} returned no rows"


def test_query_view_contents(project):
    clients = json.loads(gatewatch(project, "query", "-f", "json", "SELECT * FROM requests_per_client").stdout)
    assert clients[0]["client_ip"] == "192.0.2.9"
    assert clients[0]["requests"] == 2
    evidence = json.loads(
        gatewatch(project, "query", "-f", "json", "SELECT rule_id, client_ip, path, status FROM alerts_with_evidence").stdout
    )
    assert evidence == [{"rule_id": "admin-probe", "client_ip": "203.0.113.1", "path": "/admin", "status": 404}]
    rejects = json.loads(gatewatch(project, "query", "-f", "json", "SELECT lines, example FROM rejects_by_reason").stdout)
    assert rejects == [{"lines": 1, "example": "not a log line"}]


def test_query_waits_for_writer(project):
    """A writer that closes within the wait: the query returns rows."""
    writer = duckdb.connect(str(project / "gw.duckdb"))
    started = threading.Event()

    def close_soon() -> None:
        started.wait(60)
        time.sleep(0.5)
        writer.close()

    closer = threading.Thread(target=close_soon)
    closer.start()
    started.set()
    try:
        result = gatewatch(project, "query", "--wait", "60", "-f", "csv", "SELECT count(*) AS n FROM events")
    finally:
        closer.join()
    assert result.returncode == 0, result.stderr
    assert result.stdout == "n\n3\n"


def test_query_busy_one_line(project):
    writer = duckdb.connect(str(project / "gw.duckdb"))
    try:
        result = gatewatch(project, "query", "--wait", "0.2", "SELECT 1")
    finally:
        writer.close()
    assert result.returncode == 1
    line = one_error_line(result)
    assert "the database is locked by another gatewatch process" in line
    assert "pass --wait 60 to wait longer" in line
    assert "IO Error" not in line


def test_alerts_list_busy_one_line(project):
    writer = duckdb.connect(str(project / "gw.duckdb"))
    try:
        result = gatewatch(project, "alerts", "list")
    finally:
        writer.close()
    assert result.returncode == 1
    assert "the database is locked by another gatewatch process" in one_error_line(result)


def test_shell_runs_statements(project):
    script = ".format csv\nSELECT count(*)\n  AS n FROM events;\nCOPY events TO 'shell.csv';\n.bogus\nSELECT 2 AS y;\n"
    result = gatewatch(project, "shell", stdin=script)
    assert result.returncode == 1
    assert result.stdout == "n\n3\ny\n2\n"
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 2
    assert "file system operations are disabled" in errors[0]
    assert "unknown command '.bogus'" in errors[1]
    assert not (project / "shell.csv").exists()


def test_query_many_statements_rejected(project):
    result = gatewatch(project, "query", "select 1; select 2")
    assert result.returncode == 1
    line = one_error_line(result)
    assert "contains 2 statements" in line
    assert "run one statement per call" in line
    assert result.stdout == ""


def test_query_trailing_semicolon_runs(project):
    result = gatewatch(project, "query", "-f", "csv", "select 1 as a; -- one statement;")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "a\n1\n"


def test_shell_prints_every_statement(project):
    result = gatewatch(project, "shell", stdin=".format csv\nselect 1 as a; select ';' as b;\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "a\n1\nb\n;\n"
    assert result.stderr == ""


def test_shell_failed_statement_exits_1(project):
    result = gatewatch(project, "shell", stdin="select * from nope;\n")
    assert result.returncode == 1
    assert "nope" in one_error_line(result)


def test_shell_failure_mid_line_continues(project):
    result = gatewatch(project, "shell", stdin=".format csv\nselect 1 as a; select * from nope; select 2 as b;\n")
    assert result.returncode == 1
    assert result.stdout == "a\n1\nb\n2\n"
    assert "nope" in one_error_line(result)


def test_shell_keeps_history_on_terminal(project, tmp_path):
    """On a terminal the shell prompts, and keeps the statements in its history file."""
    import pty
    import select

    controller, terminal = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k != "GATEWATCH_CONFIG"}
    env["XDG_STATE_HOME"] = str(tmp_path / "state")
    env["TERM"] = "dumb"
    process = subprocess.Popen(
        [sys.executable, "-m", "gatewatch.cli", "shell"], cwd=project, env=env,
        stdin=terminal, stdout=terminal, stderr=terminal, close_fds=True,
    )
    os.close(terminal)
    output = b""

    def read_until(marker: bytes) -> None:
        nonlocal output
        deadline = time.monotonic() + 60
        while marker not in output:
            assert time.monotonic() < deadline, f"no {marker!r} in {output!r}"
            ready, _, _ = select.select([controller], [], [], 1)
            if ready:
                try:
                    output += os.read(controller, 4096)
                except OSError:
                    break

    try:
        read_until(b"gatewatch> ")
        os.write(controller, b"SELECT 40 + 2 AS answer;\n")
        read_until(b"42")
        os.write(controller, b".quit\n")
        assert process.wait(60) == 0
    finally:
        if process.poll() is None:
            process.kill()
        os.close(controller)
    history = (tmp_path / "state" / "gatewatch" / "history").read_text()
    assert "SELECT 40 + 2 AS answer;" in history


def test_run_once_busy_one_line(project):
    """A run that meets a long query waits `schedule.database_wait`, then fails in one line."""
    config = (project / "gatewatch.yaml").read_text() + "schedule:\n  database_wait: 1s\n"
    (project / "busy.yaml").write_text(config)
    reader = duckdb.connect(str(project / "gw.duckdb"), read_only=True)
    try:
        result = gatewatch(project, "run", "--once", "-c", "busy.yaml")
    finally:
        reader.close()
    assert result.returncode == 1
    line = one_error_line(result)
    assert "the database is locked by another gatewatch process" in line
    assert "this run did nothing, the next run tries again" in line


@pytest.mark.parametrize("name", ["gw.duckdb", "gatewatch.yaml"])
def test_query_output_never_overwrites_store_or_config(project, name):
    before = (project / name).read_bytes()
    result = gatewatch(project, "query", "-f", "csv", "-o", name, "--force", "SELECT 1")
    assert result.returncode == 1
    assert "choose another file name" in one_error_line(result)
    assert (project / name).read_bytes() == before


def test_query_output_existing_file_needs_force(project, tmp_path):
    target = tmp_path / "kept.csv"
    target.write_text("keep me\n")
    refused = gatewatch(project, "query", "-f", "csv", "-o", str(target), "SELECT 1 AS x")
    assert refused.returncode == 1
    assert "pass --force to overwrite it" in one_error_line(refused)
    assert target.read_text() == "keep me\n"
    forced = gatewatch(project, "query", "-f", "csv", "-o", str(target), "--force", "SELECT 1 AS x")
    assert forced.returncode == 0, forced.stderr
    assert target.read_text() == "x\n1\n"
