"""Sample logs → `gatewatch run --once` → alerts stored and posted to a Slack stand-in.

Each run is a real `gatewatch` process over real files and a real DuckDB
file; Slack is a real HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import json
import re
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import pytest
import yaml
from helpers import REPO
from slack_standin import SlackStandin

SAMPLE = REPO / "sample_logs"
CHANNEL = "C0ALERTS"
TOKEN_ENV = "GATEWATCH_TEST_SLACK_TOKEN"


def attackers() -> list[dict]:
    return yaml.safe_load((SAMPLE / "attackers.yaml").read_text())["attackers"]


def expected_pairs() -> set[tuple[str, str | None]]:
    pairs: set[tuple[str, str | None]] = set()
    for attacker in attackers():
        for rule in [attacker["rule"], *attacker.get("also", [])]:
            pairs.add((rule, attacker["client_ip"]))
    # Rules over all traffic name no client in their alerts.
    labels = yaml.safe_load((SAMPLE / "attackers.yaml").read_text())
    for item in labels.get("traffic_alerts", []):
        pairs.add((item["rule"], None))
    return pairs


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    logs = tmp_path / "logs"
    logs.mkdir()
    # Keep the rotation order of the sample: oldest file has the oldest mtime.
    for age, name in enumerate(["access.log", "access.log.1", "access.log.2.gz"]):
        target = logs / name
        shutil.copyfile(SAMPLE / name, target)
        stamp = time.time() - 3600 * (age + 1)
        os.utime(target, (stamp, stamp))
    return tmp_path


def write_config(workdir: Path, slack: SlackStandin, **slack_options: object) -> Path:
    config = {
        "database": "gatewatch.duckdb",
        "sources": [{"name": "edge", "format": "combined", "path": "logs/access.log*"}],
        "rules": ["builtin"],
        "notifiers": [
            {"type": "terminal"},
            {"type": "slack", "token_env": TOKEN_ENV, "channel": CHANNEL, "base_url": slack.base_url, **slack_options},
        ],
    }
    path = workdir / "gatewatch.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def gatewatch_env(slack: SlackStandin) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env[TOKEN_ENV] = slack.token
    env["COLUMNS"] = "200"
    return env


def run_once(config: Path, slack: SlackStandin, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gatewatch.cli", "run", "--once", "-c", str(config), *extra],
        capture_output=True,
        text=True,
        env=gatewatch_env(slack),
        timeout=300,
    )


def stored_alerts(workdir: Path) -> list[tuple[str, str, str]]:
    with duckdb.connect(str(workdir / "gatewatch.duckdb"), read_only=True) as con:
        rows = con.execute(
            "SELECT alert_id, rule_id, group_key->>'client_ip' FROM alerts ORDER BY alert_id"
        ).fetchall()
    return rows


def posted_alert_ids(slack: SlackStandin) -> list[str]:
    """Return the alert id of each alert message, and the ids a digest message lists."""
    ids = []
    for message in slack.messages:
        payload = (message.get("metadata") or {}).get("event_payload", {})
        if "digest_id" in payload:
            ids.extend(re.findall(r"\b[0-9a-f]{16}\b", json.dumps(message["blocks"])))
        else:
            ids.append(payload.get("alert_id"))
    return ids


def count_events(workdir: Path) -> int:
    with duckdb.connect(str(workdir / "gatewatch.duckdb"), read_only=True) as con:
        return con.execute("SELECT count(*) FROM events").fetchone()[0] + con.execute(
            "SELECT count(*) FROM rejects"
        ).fetchone()[0]


def sample_line_count() -> int:
    import gzip

    total = 0
    for name in ["access.log", "access.log.1"]:
        total += sum(1 for line in (SAMPLE / name).read_bytes().splitlines() if line.strip())
    total += sum(1 for line in gzip.open(SAMPLE / "access.log.2.gz").read().splitlines() if line.strip())
    return total


@pytest.fixture
def slack():
    with SlackStandin(channels={CHANNEL}) as standin:
        yield standin


def test_end_to_end_alerts_only_attackers(workdir, slack):
    config = write_config(workdir, slack)
    result = run_once(config, slack)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    pairs = {(rule, ip) for _, rule, ip in stored_alerts(workdir)}
    assert expected_pairs() <= pairs
    assert pairs <= expected_pairs()


def test_end_to_end_slack_payload(workdir, slack):
    # Alert by alert, so each message can be checked: no digest.
    config = write_config(workdir, slack, digest_threshold=1000)
    run_once(config, slack)
    alerts = stored_alerts(workdir)
    assert sorted(posted_alert_ids(slack)) == sorted(a[0] for a in alerts)
    stuffing = next(a for a in alerts if a[1] == "credential-stuffing")
    message = next(m for m in slack.messages if m["metadata"]["event_payload"]["alert_id"] == stuffing[0])
    body = json.dumps(message["blocks"])
    assert "Credential stuffing" in body
    assert stuffing[2] in body
    assert f"gatewatch alerts show {stuffing[0]}" in body


def test_end_to_end_terminal_prints_attackers(workdir, slack):
    config = write_config(workdir, slack)
    result = run_once(config, slack)
    for attacker in attackers():
        assert attacker["client_ip"] in result.stdout


def test_end_to_end_every_line_accounted_for(workdir, slack):
    config = write_config(workdir, slack)
    run_once(config, slack)
    assert count_events(workdir) == sample_line_count()


def test_end_to_end_second_run_is_silent(workdir, slack):
    config = write_config(workdir, slack)
    run_once(config, slack)
    posted = len(slack.messages)
    again = run_once(config, slack)
    assert again.returncode == 0
    assert again.stdout == ""
    assert len(slack.messages) == posted


def test_end_to_end_appended_lines_alert_once(workdir, slack):
    config = write_config(workdir, slack)
    run_once(config, slack)
    before = {a[0] for a in stored_alerts(workdir)}
    attacker = "198.51.100.250"
    lines = [
        f'{attacker} - user{i:03d} [04/Nov/2026:00:10:{i % 60:02d} +0000] "POST /api/v1/auth/token HTTP/1.1" 401 0 "-" "python-requests/2.31.0"'
        for i in range(40)
    ]
    # Later traffic moves the watermark past the attack's windows.
    lines.append('192.0.2.10 - - [04/Nov/2026:00:20:00 +0000] "GET /healthz HTTP/1.1" 200 2 "-" "kube-probe/1.29"')
    with (workdir / "logs" / "access.log").open("a") as handle:
        handle.write("\n".join(lines) + "\n")
    run_once(config, slack)
    new = [a for a in stored_alerts(workdir) if a[0] not in before]
    # 40 accounts in 40 seconds trip both the fast and the hourly rule.
    assert sorted((rule, ip) for _, rule, ip in new) == [
        ("credential-stuffing", attacker),
        ("credential-stuffing-slow", attacker),
    ]
    for alert_id, _, _ in new:
        assert posted_alert_ids(slack).count(alert_id) == 1


class HoldingStandin(SlackStandin):
    """A stand-in that holds the first chat.postMessage until released."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.arrived = threading.Event()
        self.release = threading.Event()
        self._holding_done = False

    def handle(self, request):
        if request.path.endswith("chat.postMessage") and not self._holding_done:
            self._holding_done = True
            self.arrived.set()
            self.release.wait(60)
        return super().handle(request)


def test_end_to_end_kill_during_delivery_sends_once(workdir):
    """kill -9 while Slack is receiving the first alert; Slack still stores it.

    The rerun must deliver every other alert and must not post the first
    one again, and no line may be lost or doubled.
    """
    with HoldingStandin(channels={CHANNEL}) as slack:
        config = write_config(workdir, slack)
        process = subprocess.Popen(
            [sys.executable, "-m", "gatewatch.cli", "run", "--once", "-c", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=gatewatch_env(slack),
        )
        assert slack.arrived.wait(120), "gatewatch never reached delivery"
        process.send_signal(signal.SIGKILL)
        process.wait(30)
        slack.release.set()
        time.sleep(0.2)
        result = run_once(config, slack)
        assert result.returncode == 0, result.stderr
        ids = posted_alert_ids(slack)
        alerts = stored_alerts(workdir)
        assert sorted(ids) == sorted(a[0] for a in alerts)
        assert count_events(workdir) == sample_line_count()


def test_end_to_end_random_kills_lose_nothing(tmp_path, slack):
    """Kill runs at spread-out moments; the final state equals one clean run."""
    clean = tmp_path / "clean"
    killed = tmp_path / "killed"
    for folder in (clean, killed):
        (folder / "logs").mkdir(parents=True)
        for name in ["access.log.2.gz", "access.log.1", "access.log"]:
            shutil.copyfile(SAMPLE / name, folder / "logs" / name)
    clean_config = write_config(clean, slack)
    killed_config = write_config(killed, slack)
    run_once(clean_config, slack)
    for delay in (0.8, 1.2, 1.6, 2.0, 2.5, 3.0):
        process = subprocess.Popen(
            [sys.executable, "-m", "gatewatch.cli", "run", "--once", "-c", str(killed_config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=gatewatch_env(slack),
        )
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.wait(30)
    result = run_once(killed_config, slack)
    assert result.returncode == 0, result.stderr
    assert count_events(killed) == count_events(clean)
    assert [a[1:] for a in stored_alerts(killed)] == [a[1:] for a in stored_alerts(clean)]


def test_end_to_end_slack_outage_exits_3_then_delivers(workdir, slack):
    config = write_config(workdir, slack)
    # The first tick raises enough alerts for one digest message: one failure is an outage.
    slack.fail_next(count=1, status=500, path="/api/chat.postMessage")
    failed = run_once(config, slack)
    assert failed.returncode == 3
    assert "notifier 'slack': delivery failed" in failed.stderr
    assert "retried next run" in failed.stderr
    assert slack.messages == []
    recovered = run_once(config, slack)
    assert recovered.returncode == 0, recovered.stderr
    assert sorted(posted_alert_ids(slack)) == sorted(a[0] for a in stored_alerts(workdir))


def test_end_to_end_future_line_keeps_watermark(workdir, slack):
    """One line dated in 2100 must not close the windows of the real traffic."""
    config = write_config(workdir, slack)
    future = '192.0.2.10 - - [01/Jan/2100:00:00:00 +0000] "GET /healthz HTTP/1.1" 200 2 "-" "kube-probe/1.29"\n'
    (workdir / "logs" / "access.log.9").write_text(future)
    os.utime(workdir / "logs" / "access.log.9", (1, 1))
    result = run_once(config, slack)
    assert result.returncode == 3
    assert "1 events are dated more than 15m ahead" in result.stderr
    pairs = {(rule, ip) for _, rule, ip in stored_alerts(workdir)}
    assert expected_pairs() <= pairs


def test_end_to_end_lagging_source_reported(workdir, slack):
    """Events older than the rules' last evaluation are reported, not silently skipped."""
    config = write_config(workdir, slack)
    gz = workdir / "logs" / "access.log.2.gz"
    held_back = workdir / "held.gz"
    gz.rename(held_back)
    run_once(config, slack)
    held_back.rename(gz)
    result = run_once(config, slack)
    assert result.returncode == 3
    assert "arrived after rules had evaluated up to" in result.stderr
