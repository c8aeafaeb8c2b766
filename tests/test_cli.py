"""The CLI as a user meets it: exit codes and one-line errors without tracebacks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

GOOD_RULE = """\
id: flood
title: Flood
severity: high
type: aggregate
window: 5m
having: count(*) >= 100
"""

LOG_LINE = '192.0.2.1 - - [03/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 5 "-" "curl/8.5.0"\n'


def gatewatch(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "GATEWATCH_CONFIG"}
    return subprocess.run(
        [sys.executable, "-m", "gatewatch.cli", *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=120
    )


def project(tmp_path: Path, rule: str = GOOD_RULE, source_path: str = "access.log") -> Path:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "rule.yaml").write_text(rule)
    (tmp_path / "access.log").write_text(LOG_LINE)
    (tmp_path / "gatewatch.yaml").write_text(
        "database: gw.duckdb\n"
        "sources:\n"
        f"  - name: edge\n    format: combined\n    path: {source_path}\n"
        "rules: [rules]\n"
    )
    return tmp_path


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_cli_malformed_config_yaml(tmp_path):
    (tmp_path / "gatewatch.yaml").write_text("sources:\n  - name: [edge\n")
    result = gatewatch("run", "--once", cwd=tmp_path)
    assert result.returncode == 1
    assert_one_line_error(result, "gatewatch.yaml:", "invalid YAML")


def test_cli_missing_config_names_init(tmp_path):
    result = gatewatch("run", "--once", cwd=tmp_path)
    assert result.returncode == 1
    assert_one_line_error(result, "config file not found", "gatewatch init")


def test_cli_unknown_column_in_rule(tmp_path):
    project(tmp_path, GOOD_RULE + "where: stauts = 404\n")
    result = gatewatch("rules", "validate", cwd=tmp_path)
    assert result.returncode == 1
    assert_one_line_error(result, "rule.yaml:7:", "did you mean 'status'?")


def test_cli_bad_duration_in_rule(tmp_path):
    project(tmp_path, GOOD_RULE.replace("window: 5m", "window: 5mins"))
    result = gatewatch("rules", "validate", cwd=tmp_path)
    assert result.returncode == 1
    assert_one_line_error(result, "rule.yaml:5:", "'5mins'")


def test_cli_missing_log_path_keeps_running(tmp_path):
    project(tmp_path, source_path="nowhere/access.log")
    result = gatewatch("run", "--once", cwd=tmp_path)
    assert result.returncode == 3
    assert "Traceback" not in result.stderr
    assert "gatewatch.yaml:5:" in result.stderr
    assert "no file matches" in result.stderr


def test_cli_run_once_then_query(tmp_path):
    project(tmp_path)
    assert gatewatch("run", "--once", cwd=tmp_path).returncode == 0
    result = gatewatch("query", "--format", "csv", "SELECT client_ip, status FROM events", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.splitlines() == ["client_ip,status", "192.0.2.1,200"]


def test_cli_query_json(tmp_path):
    project(tmp_path)
    gatewatch("run", "--once", cwd=tmp_path)
    result = gatewatch("query", "-f", "json", "SELECT path FROM events", cwd=tmp_path)
    assert result.stdout.strip().replace("\n", "").replace(" ", "") == '[{"path":"/"}]'


def test_cli_query_is_read_only(tmp_path):
    project(tmp_path)
    gatewatch("run", "--once", cwd=tmp_path)
    result = gatewatch("query", "DELETE FROM events", cwd=tmp_path)
    assert result.returncode == 1
    assert_one_line_error(result, "query failed")


def test_cli_query_bad_sql(tmp_path):
    project(tmp_path)
    gatewatch("run", "--once", cwd=tmp_path)
    result = gatewatch("query", "SELEC 1", cwd=tmp_path)
    assert result.returncode == 1
    assert_one_line_error(result, "query failed")


def test_cli_init_writes_loadable_config(tmp_path):
    result = gatewatch("init", cwd=tmp_path)
    assert result.returncode == 0
    from gatewatch.config import load_config

    config = load_config(tmp_path / "gatewatch.yaml")
    assert config.sources[0].format == "combined"


def test_cli_init_keeps_existing_file(tmp_path):
    (tmp_path / "gatewatch.yaml").write_text("database: x.duckdb\n")
    result = gatewatch("init", cwd=tmp_path)
    assert result.returncode == 1
    assert_one_line_error(result, "file exists", "--force")


@pytest.mark.parametrize("command", [["run"], ["ingest"], ["rules", "test"], ["query"], ["alerts", "list"], ["init"]])
def test_cli_help_describes_options(tmp_path, command):
    result = gatewatch(*command, "--help", cwd=tmp_path)
    assert result.returncode == 0
    assert "Usage" in result.stdout


def test_cli_builtin_rule_tests_pass(tmp_path):
    # No gatewatch.yaml in tmp_path, so the built-in pack is tested.
    result = gatewatch("rules", "test", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert " 0 failed" in result.stdout


def test_cli_query_table_escapes_content(tmp_path):
    project(tmp_path)
    with (tmp_path / "access.log").open("a") as handle:
        handle.write('192.0.2.2 - - [03/Nov/2026:10:00:01 +0000] "GET / HTTP/1.1" 200 5 "-" "\\x1b[2J[bold]x"\n')
    gatewatch("run", "--once", cwd=tmp_path)
    result = gatewatch("query", "SELECT user_agent FROM events WHERE client_ip = '192.0.2.2'", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "\\x1b[2J[bold]x" in result.stdout
    assert "\x1b" not in result.stdout


def test_cli_alerts_list_table(tmp_path):
    project(tmp_path, GOOD_RULE.replace("count(*) >= 100", "count(*) >= 1"))
    (tmp_path / "access.log").write_text(LOG_LINE + LOG_LINE.replace("10:00:00", "10:09:00"))
    gatewatch("run", "--once", cwd=tmp_path)
    result = gatewatch("alerts", "list", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "flood" in result.stdout
    assert "terminal:sent" in result.stdout


def test_cli_rules_missing_explicit_config(tmp_path):
    result = gatewatch("rules", "validate", "-c", "missing.yaml", cwd=tmp_path)
    assert result.returncode == 1
    assert_one_line_error(result, "missing.yaml: config file not found")


def test_cli_wrong_format_reported(tmp_path):
    project(tmp_path)
    (tmp_path / "gatewatch.yaml").write_text(
        (tmp_path / "gatewatch.yaml").read_text().replace("format: combined", "format: nginx_json")
    )
    result = gatewatch("run", "--once", cwd=tmp_path)
    assert result.returncode == 3
    assert "the 1 new line was rejected by the 'nginx_json' parser" in result.stderr


def test_cli_config_is_folder(tmp_path):
    (tmp_path / "conf").mkdir()
    result = gatewatch("run", "--once", "-c", "conf", cwd=tmp_path)
    assert result.returncode == 1
    assert_one_line_error(result, "is a folder, not a file")


def test_cli_rules_list_durations_readable(tmp_path):
    long_id = "flood-with-a-rather-long-identifier-name"
    root = project(tmp_path, rule=GOOD_RULE.replace("id: flood", f"id: {long_id}"))
    env_columns = {"COLUMNS": "60"}
    result = subprocess.run(
        [sys.executable, "-m", "gatewatch.cli", "rules", "list"],
        cwd=root, capture_output=True, text=True, timeout=120, env={**os.environ, **env_columns},
    )
    assert result.returncode == 0, result.stderr
    assert long_id in result.stdout
    assert " 5m " in result.stdout
    assert "0:05:00" not in result.stdout


def test_readme_rule_example_tests_pass(tmp_path):
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    example = readme.split("```yaml\nid: ", 1)[1].split("```", 1)[0]
    (tmp_path / "example.yaml").write_text("id: " + example)
    result = gatewatch("rules", "test", str(tmp_path / "example.yaml"), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed, 0 failed" in result.stdout


def sample_project(tmp_path: Path) -> Path:
    import shutil

    sample = Path(__file__).resolve().parents[1] / "sample_logs"
    for name in ("access.log.1",):
        shutil.copyfile(sample / name, tmp_path / name)
    (tmp_path / "gatewatch.yaml").write_text(
        "database: gw.duckdb\nsources:\n  - name: edge\n    format: combined\n    path: access.log.1\n"
        "rules: [builtin]\nnotifiers: []\n"
    )
    return tmp_path


def test_cli_backtest_writes_nothing(tmp_path):
    folder = sample_project(tmp_path)
    assert gatewatch("ingest", cwd=folder).returncode == 0
    before = (folder / "gw.duckdb").read_bytes()
    result = gatewatch("backtest", "--from", "2026-11-03T08:00", "--to", "2026-11-03T16:00", "-f", "csv", cwd=folder)
    assert result.returncode == 0, result.stderr
    rows = {line.split(",")[0]: line.split(",") for line in result.stdout.splitlines()[1:]}
    assert rows["scraping"][1] == "1"
    assert rows["scraping"][6] == "2001:db8:bad:1::17 x1"
    assert rows["credential-stuffing"][1] == "0"
    assert (folder / "gw.duckdb").read_bytes() == before


def test_cli_backtest_rejects_bad_time(tmp_path):
    folder = sample_project(tmp_path)
    result = gatewatch("backtest", "--from", "yesterday", "--to", "2026-11-04", cwd=folder)
    assert result.returncode == 1
    assert_one_line_error(result, "invalid --from 'yesterday'")


def test_cli_alerts_show_prints_rule_query(tmp_path):
    folder = sample_project(tmp_path)
    assert gatewatch("run", "--once", cwd=folder).returncode == 0
    listed = gatewatch("alerts", "list", "--rule", "scraping", "-f", "csv", cwd=folder)
    alert_id = listed.stdout.splitlines()[1].split(",")[0]
    show_result = gatewatch("alerts", "show", alert_id, cwd=folder)
    assert show_result.returncode == 0, show_result.stderr
    assert "2001:db8:bad:1::17" in show_result.stdout
    assert "query to reproduce" in show_result.stdout
    assert "rule query that raised it" in show_result.stdout
    assert "GROUP BY" in show_result.stdout


def test_cli_rules_test_wrong_expectation_fails(tmp_path):
    import shutil

    rules = tmp_path / "rules"
    rules.mkdir()
    source = Path(__file__).resolve().parents[1] / "rules" / "login-failures-then-success.yaml"
    text = source.read_text().replace('expect: [{"client_ip": "203.0.113.31"}]', 'expect: [{"client_ip": "203.0.113.39"}]')
    (rules / "rule.yaml").write_text(text)
    shutil.copyfile(source.parent / "lists.yaml", rules / "lists.yaml")
    shutil.copytree(source.parent.parent / "sample_logs", tmp_path / "sample_logs")
    result = gatewatch("rules", "test", "rules", cwd=tmp_path)
    assert result.returncode == 1
    fail = next(line for line in result.stdout.splitlines() if line.startswith("FAIL"))
    assert "fires on 12 failures then a success" in fail
    assert "expected an alert for client_ip=203.0.113.39, got none matching" in fail
    assert "alerts raised: [client_ip=203.0.113.31, failures=12, success=1" in fail
    assert "unexpected alert for client_ip=203.0.113.31" in fail
    assert "2 passed, 1 failed" in result.stdout


def test_cli_alerts_show_lists_digest_members(tmp_path):
    from datetime import datetime, timedelta

    import polars as pl

    from gatewatch.engine.evaluator import EvaluationSettings, evaluate_rule
    from gatewatch.engine.loader import load_rules
    from gatewatch.events import conform
    from gatewatch.ingest import add_lineage
    from gatewatch.store import Store

    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "rule.yaml").write_text(GOOD_RULE.replace("count(*) >= 100", "count(*) >= 3"))
    (tmp_path / "gatewatch.yaml").write_text("database: gw.duckdb\nrules: [rules]\n")
    start = datetime(2026, 11, 3, 1, 0)
    rows = [
        {"ts": start + timedelta(hours=hour, seconds=second), "client_ip": f"203.0.113.{hour}", "path": "/", "status": 200}
        for hour in range(4)
        for second in range(3)
    ]
    rows.append({"ts": datetime(2026, 11, 3, 12, 0), "client_ip": "192.0.2.1", "path": "/", "status": 200})
    frame = pl.DataFrame(rows).with_columns(pl.int_range(0, len(rows)).alias("offset"))
    events = add_lineage(conform(frame), "edge", "combined", "access.log")
    rule = load_rules([tmp_path / "rules"]).rules[0]
    settings = EvaluationSettings(lateness=timedelta(0), catch_up_after=timedelta(hours=1), catch_up_max_alerts=2)
    with Store(tmp_path / "gw.duckdb") as store:
        with store.transaction():
            store.insert_frame("events", events)
            store.update_source_state("edge", events["ts"].min(), events["ts"].max())
        report = evaluate_rule(store, rule, ["terminal"], settings)
    assert report.grouped == 4
    show_result = gatewatch("alerts", "show", report.digest_id, cwd=tmp_path)
    assert show_result.returncode == 0, show_result.stderr
    assert "Flood (catch-up digest)" in show_result.stdout
    assert "alerts in this catch-up digest (4):" in show_result.stdout
    for hour in range(4):
        assert f"client_ip=203.0.113.{hour}" in show_result.stdout


def _lagging_source_project(tmp_path: Path, lateness: str | None) -> Path:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "rule.yaml").write_text(
        "id: burst\ntitle: Burst\nseverity: high\ntype: aggregate\ngroup_by: [client_ip]\n"
        "window: 5m\nevery: 1m\nhaving: count(*) >= 3\n"
    )
    live = "".join(
        f'192.0.2.1 - - [03/Nov/2026:10:{minute:02d}:00 +0000] "GET / HTTP/1.1" 200 5 "-" "curl/8"\n'
        for minute in range(0, 21, 3)
    )
    (tmp_path / "live.log").write_text(live)
    (tmp_path / "batch.log").write_text("")
    batch_lateness = f"    allowed_lateness: {lateness}\n" if lateness else ""
    (tmp_path / "gatewatch.yaml").write_text(
        "database: gw.duckdb\nrules: [rules]\nnotifiers: []\nsources:\n"
        "  - name: live\n    format: combined\n    path: live.log\n"
        f"  - name: batch\n    format: combined\n    path: batch.log\n{batch_lateness}"
    )
    return tmp_path


def _deliver_batch(root: Path) -> None:
    """Write the batch source's lines for 10:05 and move the live source on to 10:45."""
    with (root / "live.log").open("a") as live:
        live.writelines(
            f'192.0.2.1 - - [03/Nov/2026:10:{minute:02d}:00 +0000] "GET / HTTP/1.1" 200 5 "-" "curl/8"\n'
            for minute in range(24, 46, 3)
        )
    (root / "batch.log").write_text(
        "".join(
            f'203.0.113.9 - - [03/Nov/2026:10:05:{second:02d} +0000] "GET / HTTP/1.1" 200 5 "-" "curl/8"\n'
            for second in (10, 20, 30)
        )
    )


def _alerted_clients(root: Path) -> list[str]:
    import duckdb

    with duckdb.connect(str(root / "gw.duckdb"), read_only=True) as con:
        return [row[0] for row in con.execute("SELECT group_key->>'client_ip' FROM alerts").fetchall()]


def test_cli_source_lateness_waits_for_batches(tmp_path):
    root = _lagging_source_project(tmp_path, "20m")
    assert gatewatch("run", "--once", cwd=root).returncode == 0
    _deliver_batch(root)
    result = gatewatch("run", "--once", cwd=root)
    assert result.returncode == 0, result.stderr
    assert _alerted_clients(root) == ["203.0.113.9"]


def test_cli_source_without_lateness_reports_late(tmp_path):
    root = _lagging_source_project(tmp_path, None)
    assert gatewatch("run", "--once", cwd=root).returncode == 0
    _deliver_batch(root)
    result = gatewatch("run", "--once", cwd=root)
    assert result.returncode == 3
    assert "source 'batch'" in result.stderr
    assert "set its `allowed_lateness`" in result.stderr
    assert _alerted_clients(root) == []


def test_cli_missing_group_value_shows_dash(tmp_path):
    rule = (
        "id: anon\ntitle: Anonymous burst\nseverity: low\ntype: aggregate\ngroup_by: [client_ip, user]\n"
        "window: 5m\nevery: 1m\nhaving: count(*) >= 1\nsummary: \"{user} from {client_ip}\"\n"
    )
    root = project(tmp_path, rule=rule)
    with (root / "access.log").open("a") as log:
        log.write('192.0.2.1 - - [03/Nov/2026:10:09:00 +0000] "GET / HTTP/1.1" 200 5 "-" "curl/8.5.0"\n')
    result = gatewatch("run", "--once", cwd=root)
    assert result.returncode == 0, result.stderr
    assert "- from 192.0.2.1" in result.stdout
    assert "None" not in result.stdout
    assert "user=-" in result.stdout


def test_cli_alerts_show_takes_id_start(tmp_path):
    folder = sample_project(tmp_path)
    assert gatewatch("run", "--once", cwd=folder).returncode == 0
    listed = gatewatch("alerts", "list", "--rule", "scraping", "-f", "csv", cwd=folder)
    alert_id = listed.stdout.splitlines()[1].split(",")[0]
    cut_short = alert_id[:12] + "…"
    result = gatewatch("alerts", "show", cut_short, cwd=folder)
    assert result.returncode == 0, result.stderr
    assert alert_id in result.stdout
    too_short = gatewatch("alerts", "show", alert_id[:2], cwd=folder)
    assert too_short.returncode == 1
    assert "not found" in too_short.stderr
