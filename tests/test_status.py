"""`gatewatch status` over a real store after real runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from slack_standin import SlackStandin

from gatewatch.runner import run_lock

CHANNEL = "C0ALERTS"
TOKEN_ENV = "GATEWATCH_TEST_SLACK_TOKEN"

RULE = """\
id: admin-probe
title: Request for the admin panel
severity: high
type: match
where: path = '/admin'
every: 1m
"""

LINES = [
    '203.0.113.1 - - [03/Nov/2026:10:00:05 +0000] "GET /admin HTTP/1.1" 404 5 "-" "curl/8.5.0"\n',
    '192.0.2.9 - - [03/Nov/2026:10:03:10 +0000] "GET /health HTTP/1.1" 200 5 "-" "curl/8.5.0"\n',
    "garbage line\n",
]


@pytest.fixture
def slack():
    with SlackStandin(channels={CHANNEL}) as standin:
        yield standin


def project(folder: Path, slack: SlackStandin) -> Path:
    (folder / "rules").mkdir()
    (folder / "rules" / "admin.yaml").write_text(RULE)
    (folder / "access.log").write_text("".join(LINES))
    config = {
        "database": "gw.duckdb",
        "sources": [{"name": "edge", "format": "combined", "path": "access.log"}],
        "rules": ["rules"],
        "notifiers": [{"type": "slack", "token_env": TOKEN_ENV, "channel": CHANNEL, "base_url": slack.base_url}],
    }
    (folder / "gatewatch.yaml").write_text(yaml.safe_dump(config))
    return folder


def gatewatch(folder: Path, slack: SlackStandin, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower() and k != "GATEWATCH_CONFIG"}
    env[TOKEN_ENV] = slack.token
    return subprocess.run(
        [sys.executable, "-m", "gatewatch.cli", *args], cwd=folder, capture_output=True, text=True, env=env, timeout=120
    )


def test_status_after_clean_run(tmp_path, slack):
    folder = project(tmp_path, slack)
    assert gatewatch(folder, slack, "run", "--once").returncode == 0
    result = gatewatch(folder, slack, "status", "-f", "json")
    assert result.returncode == 0, result.stderr
    state = json.loads(result.stdout)
    source = state["sources"][0]
    assert source["source"] == "edge"
    assert source["lines"] == 3
    assert source["events"] == 2
    assert source["rejects_last_run"] == 1
    assert source["rejects_24h"] == 1
    assert source["newest_event"] == "2026-11-03T10:03:10"
    assert source["lag"] > 0
    assert state["rules"][0]["rule_id"] == "admin-probe"
    assert state["rules"][0]["alerts_last_run"] == 1
    assert state["outbox"] == [
        {"notifier": "slack", "backlog": 0, "sent": 1, "oldest_unsent": None, "last_error": None}
    ]
    assert state["failing"] == []
    assert state["running_pid"] is None


def test_status_backlog_exits_3(tmp_path, slack):
    folder = project(tmp_path, slack)
    slack.fail_next(count=10, status=500, path="/api/chat.postMessage")
    assert gatewatch(folder, slack, "run", "--once").returncode == 3
    result = gatewatch(folder, slack, "status")
    assert result.returncode == 3
    assert "source edge: last run" in result.stdout
    assert "1 rejected (1 rejected in 24h)" in result.stdout
    assert "admin-probe" in result.stdout
    assert "delivery: last run" in result.stdout
    assert "notifier slack last error: Slack chat.postMessage failed: HTTP 500" in result.stdout
    state = json.loads(gatewatch(folder, slack, "status", "-f", "json").stdout)
    assert state["outbox"][0]["backlog"] == 1
    assert state["failing"] == ["deliver"]


def test_status_shows_running_pid(tmp_path, slack):
    folder = project(tmp_path, slack)
    assert gatewatch(folder, slack, "run", "--once").returncode == 0
    with run_lock(folder / "gw.duckdb"):
        result = gatewatch(folder, slack, "status")
    assert f"is running (pid {os.getpid()})" in result.stdout


def test_status_before_first_run(tmp_path, slack):
    folder = project(tmp_path, slack)
    result = gatewatch(folder, slack, "status")
    assert result.returncode == 1
    assert "database not found; run `gatewatch run --once` first" in result.stderr


def test_status_invalid_rule_exits_3(tmp_path, slack):
    folder = project(tmp_path, slack)
    assert gatewatch(folder, slack, "run", "--once").returncode == 0
    (folder / "rules" / "broken.yaml").write_text(RULE.replace("admin-probe", "broken").replace("where:", "wher:"))
    table = gatewatch(folder, slack, "status")
    assert table.returncode == 3
    assert "broken.yaml" in table.stderr
    state = json.loads(gatewatch(folder, slack, "status", "-f", "json").stdout)
    assert len(state["invalid_rules"]) == 1
    assert state["invalid_rules"][0]["path"].endswith("broken.yaml")
