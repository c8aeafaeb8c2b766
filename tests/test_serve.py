"""`gatewatch serve` as a real process: logs appended, alerts posted to a Slack stand-in, SIGTERM, restart.

Every wait polls for a condition with a generous deadline, so a slow machine
makes the test slower, not red.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest
import yaml
from slack_standin import SlackStandin

CHANNEL = "C0ALERTS"
TOKEN_ENV = "GATEWATCH_TEST_SLACK_TOKEN"
DEADLINE = 120.0

RULE = """\
id: admin-probe
title: Request for the admin panel
severity: high
type: match
where: path = '/admin'
group_by: [client_ip]
every: 1s
suppress: 1s
summary: "{client_ip} asked for /admin"
"""


def log_line(ip: str, second: int, path: str = "/") -> str:
    minute, sec = divmod(second, 60)
    return f'{ip} - - [03/Nov/2026:10:{minute:02d}:{sec:02d} +0000] "GET {path} HTTP/1.1" 200 5 "-" "curl/8.5.0"\n'


def append(path: Path, *lines: str) -> None:
    with path.open("a") as handle:
        handle.write("".join(lines))


def write_project(tmp_path: Path, slack: SlackStandin) -> Path:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "admin.yaml").write_text(RULE)
    (tmp_path / "access.log").write_text("")
    config = {
        "database": "gw.duckdb",
        "sources": [{"name": "edge", "format": "combined", "path": "access.log"}],
        "rules": ["rules"],
        "notifiers": [
            {"type": "slack", "token_env": TOKEN_ENV, "channel": CHANNEL, "base_url": slack.base_url},
        ],
        "engine": {"allowed_lateness": "1s"},
        "schedule": {"every": "1s", "deliver_every": "1s"},
    }
    path = tmp_path / "gatewatch.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def environment(slack: SlackStandin) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower() and k != "GATEWATCH_CONFIG"}
    env[TOKEN_ENV] = slack.token
    return env


def gatewatch(config: Path, slack: SlackStandin, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gatewatch.cli", *args, "-c", str(config)],
        capture_output=True, text=True, env=environment(slack), timeout=DEADLINE,
    )


class Served:
    """A `gatewatch serve` process whose stderr goes to a file."""

    def __init__(self, config: Path, slack: SlackStandin, log: Path):
        self.log = log
        self.handle = log.open("a")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gatewatch.cli", "serve", "-c", str(config)],
            stdout=subprocess.DEVNULL, stderr=self.handle, env=environment(slack),
        )

    def stop(self, signum: int = signal.SIGTERM) -> int:
        self.process.send_signal(signum)
        code = self.process.wait(DEADLINE)
        self.handle.close()
        return code

    def wait(self) -> int:
        code = self.process.wait(DEADLINE)
        self.handle.close()
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(DEADLINE)
        self.handle.close()

    def text(self) -> str:
        return self.log.read_text()


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


def posted_ids(slack: SlackStandin) -> list[str]:
    return [m["metadata"]["event_payload"]["alert_id"] for m in slack.messages if "metadata" in m]


def posted_clients(slack: SlackStandin) -> list[str]:
    clients = []
    for message in slack.messages:
        text = str(message.get("blocks"))
        clients += [ip for ip in ("203.0.113.1", "203.0.113.2", "203.0.113.3") if ip in text]
    return clients


def stored(tmp_path: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(tmp_path / "gw.duckdb"), read_only=True) as con:
        return con.execute(sql).fetchall()


def all_sent(tmp_path: Path, alerts: int) -> bool:
    """Tell whether the store has ``alerts`` alerts and no unsent outbox row; False while the daemon has it open."""
    try:
        counts = stored(tmp_path, "SELECT (SELECT count(*) FROM alerts), count(*) FILTER (WHERE state <> 'sent') FROM outbox")
    except duckdb.IOException:
        return False
    return counts == [(alerts, 0)]


@pytest.fixture
def slack():
    with SlackStandin(channels={CHANNEL}) as standin:
        yield standin


def test_serve_restart_no_duplicates_no_gaps(tmp_path, slack):
    config = write_project(tmp_path, slack)
    access = tmp_path / "access.log"
    append(access, log_line("192.0.2.9", 0), log_line("203.0.113.1", 5, "/admin"), log_line("192.0.2.9", 10))

    first = Served(config, slack, tmp_path / "serve.log")
    try:
        wait_for(lambda: len(slack.messages) == 1, "the first alert in Slack")
        append(access, log_line("203.0.113.2", 20, "/admin"), log_line("192.0.2.9", 30))
        wait_for(lambda: len(slack.messages) == 2, "the alert on appended lines")
        assert first.stop() == 0
    finally:
        first.kill()
    log = first.text()
    assert "started pid=" in log
    assert "stopping: signal 15" in log
    assert "stopped pid=" in log
    assert "ingest source=edge lines=3" in log
    assert "evaluate rule=admin-probe" in log
    assert "Traceback" not in log

    # Lines written while the daemon is down are read after the restart.
    append(access, log_line("203.0.113.3", 40, "/admin"), log_line("192.0.2.9", 50))
    second = Served(config, slack, tmp_path / "serve2.log")
    try:
        wait_for(lambda: len(slack.messages) == 3, "the alert on lines written while stopped")
        assert second.stop() == 0
    finally:
        second.kill()

    assert sorted(posted_clients(slack)) == ["203.0.113.1", "203.0.113.2", "203.0.113.3"]
    ids = posted_ids(slack)
    assert len(ids) == len(set(ids))
    assert sorted(ids) == sorted(row[0] for row in stored(tmp_path, "SELECT alert_id FROM alerts"))
    assert stored(tmp_path, "SELECT count(*) FROM events") == [(7,)]
    assert stored(tmp_path, "SELECT count(*) FROM outbox WHERE state <> 'sent'") == [(0,)]


def test_serve_query_while_running(tmp_path, slack):
    config = write_project(tmp_path, slack)
    append(tmp_path / "access.log", log_line("203.0.113.1", 5, "/admin"), log_line("192.0.2.9", 10))
    served = Served(config, slack, tmp_path / "serve.log")
    try:
        wait_for(lambda: len(slack.messages) == 1, "the alert in Slack")
        # Several queries, so some of them meet a step that has the file open.
        for _ in range(5):
            result = gatewatch(config, slack, "query", "--format", "csv", "SELECT count(*) AS n FROM events")
            assert result.returncode == 0, result.stderr
            assert result.stdout == "n\n2\n"
        assert served.stop() == 0
    finally:
        served.kill()


def test_serve_cron_run_exits_while_serving(tmp_path, slack):
    config = write_project(tmp_path, slack)
    served = Served(config, slack, tmp_path / "serve.log")
    try:
        wait_for(lambda: "started pid=" in served.text(), "the daemon to start")
        result = gatewatch(config, slack, "run", "--once")
        assert result.returncode == 0
        assert f"another gatewatch run (pid {served.process.pid}) is using this database" in result.stderr
        assert served.stop() == 0
    finally:
        served.kill()


class HoldingStandin(SlackStandin):
    """A stand-in that holds the first chat.postMessage until released."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.arrived = threading.Event()
        self.release = threading.Event()
        self._held = False

    def handle(self, request):
        if request.path.endswith("chat.postMessage") and not self._held:
            self._held = True
            self.arrived.set()
            self.release.wait(DEADLINE)
        return super().handle(request)


def test_serve_sigterm_finishes_current_send(tmp_path):
    """SIGTERM during a send: that alert is marked sent, the others wait for the restart."""
    with HoldingStandin(channels={CHANNEL}) as slack:
        config = write_project(tmp_path, slack)
        access = tmp_path / "access.log"
        append(access, *[log_line(f"203.0.113.{n}", 5, "/admin") for n in (1, 2, 3)], log_line("192.0.2.9", 10))
        served = Served(config, slack, tmp_path / "serve.log")
        try:
            assert slack.arrived.wait(DEADLINE), "the daemon never reached delivery"
            served.process.send_signal(signal.SIGTERM)
            wait_for(lambda: "stopping: signal 15" in served.text(), "the daemon to log the signal")
            slack.release.set()
            assert served.wait() == 0
        finally:
            slack.release.set()
            served.kill()
        assert len(slack.messages) == 1
        assert stored(tmp_path, "SELECT state, count(*) FROM outbox GROUP BY 1 ORDER BY 1") == [
            ("pending", 2),
            ("sent", 1),
        ]

        again = Served(config, slack, tmp_path / "serve2.log")
        try:
            wait_for(lambda: len(slack.messages) == 3, "the other alerts after restart")
            assert again.stop() == 0
        finally:
            again.kill()
        assert sorted(posted_clients(slack)) == ["203.0.113.1", "203.0.113.2", "203.0.113.3"]


def test_run_once_overlap_exits_cleanly(tmp_path):
    with HoldingStandin(channels={CHANNEL}) as slack:
        config = write_project(tmp_path, slack)
        append(tmp_path / "access.log", log_line("203.0.113.1", 5, "/admin"), log_line("192.0.2.9", 10))
        first = subprocess.Popen(
            [sys.executable, "-m", "gatewatch.cli", "run", "--once", "-c", str(config)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment(slack),
        )
        try:
            assert slack.arrived.wait(DEADLINE), "the first run never reached delivery"
            second = gatewatch(config, slack, "run", "--once")
        finally:
            slack.release.set()
        stdout, stderr = first.communicate(timeout=DEADLINE)
    assert second.returncode == 0
    assert second.stdout == ""
    assert f"another gatewatch run (pid {first.pid}) is using this database; this run did nothing" in second.stderr
    assert first.returncode == 0, stderr
    assert len(slack.messages) == 1


def test_run_once_quiet_unless_verbose(tmp_path, slack):
    config = write_project(tmp_path, slack)
    append(tmp_path / "access.log", log_line("192.0.2.9", 0), log_line("192.0.2.9", 10))
    quiet = gatewatch(config, slack, "run", "--once")
    assert quiet.returncode == 0
    assert quiet.stdout == ""
    assert quiet.stderr == ""
    append(tmp_path / "access.log", log_line("192.0.2.9", 20))
    verbose = gatewatch(config, slack, "run", "--once", "-v")
    assert verbose.returncode == 0
    assert verbose.stdout.splitlines() == [
        "gatewatch: 1 lines read, 1 events, 0 rejected; 0 new alerts; 0 deliveries sent, 0 pending; 0 errors"
    ]


def test_serve_slack_faults_threads_once(tmp_path, slack):
    """429 with Retry-After, 500s and a timeout after Slack stored the post, under the daemon."""
    config = write_project(tmp_path, slack)
    settings = yaml.safe_load(config.read_text())
    settings["notifiers"][0]["timeout_seconds"] = 1
    config.write_text(yaml.safe_dump(settings))
    hostile = '<!channel> <https://example.com|click> *bold*'
    lines = [
        log_line("203.0.113.1", 5, "/admin").replace("curl/8.5.0", hostile),
        log_line("203.0.113.2", 6, "/admin"),
        log_line("203.0.113.1", 7, "/admin"),
        log_line("203.0.113.1", 9, "/admin"),
        log_line("192.0.2.9", 20),
    ]
    append(tmp_path / "access.log", *lines)
    slack.rate_limit_next(retry_after=1, path="/api/chat.postMessage")
    slack.fail_next(count=2, status=500, path="/api/chat.postMessage")
    slack.time_out_next(2.0, path="/api/chat.postMessage")

    served = Served(config, slack, tmp_path / "serve.log")
    try:
        wait_for(lambda: all_sent(tmp_path, 4), "every alert to be sent")
        assert served.stop() == 0
    finally:
        served.kill()

    ids = posted_ids(slack)
    assert len(ids) == 4
    assert sorted(ids) == sorted(row[0] for row in stored(tmp_path, "SELECT alert_id FROM alerts"))
    parents = [m for m in slack.messages if m.get("thread_ts", m["ts"]) == m["ts"]]
    assert len(parents) == 2
    first = next(m for m in parents if "203.0.113.1" in str(m["blocks"]))
    assert len(slack.thread_replies(first["ts"])) == 2
    assert "Seen 3 times" in str(first["blocks"])
    for request in slack.requests_to("chat.postMessage"):
        assert "<!channel>" not in str(request.body)
        assert "<https://example.com|click>" not in str(request.body)
    log = served.text()
    assert "waiting 1 s as the receiver requested" in log
    assert "already delivered to notifier slack by an earlier run" in log


def test_serve_second_signal_exits_now(tmp_path):
    """A second SIGTERM during a send exits at once; the restart finds the post and sends the rest once."""
    with HoldingStandin(channels={CHANNEL}) as slack:
        config = write_project(tmp_path, slack)
        append(tmp_path / "access.log", *[log_line(f"203.0.113.{n}", 5, "/admin") for n in (1, 2, 3)],
               log_line("192.0.2.9", 10))
        served = Served(config, slack, tmp_path / "serve.log")
        try:
            assert slack.arrived.wait(DEADLINE), "the daemon never reached delivery"
            served.process.send_signal(signal.SIGTERM)
            wait_for(lambda: "stopping: signal 15" in served.text(), "the daemon to log the signal")
            assert served.stop() == 1
        finally:
            slack.release.set()
            served.kill()
        assert "signal 15 again: exiting now" in served.text()
        wait_for(lambda: len(slack.messages) == 1, "Slack to store the post it was holding")

        again = Served(config, slack, tmp_path / "serve2.log")
        try:
            wait_for(lambda: all_sent(tmp_path, 3), "every alert to be sent after restart")
            assert again.stop(signal.SIGINT) == 0
        finally:
            again.kill()
        assert sorted(posted_clients(slack)) == ["203.0.113.1", "203.0.113.2", "203.0.113.3"]
        assert "stopping: signal 2" in again.text()


def test_serve_waits_for_reader(tmp_path, slack):
    """A reader that keeps the database open makes steps wait, and they go on once it closes."""
    config = write_project(tmp_path, slack)
    append(tmp_path / "access.log", log_line("192.0.2.9", 0))
    served = Served(config, slack, tmp_path / "serve.log")
    try:
        wait_for(lambda: "ingest source=edge lines=1" in served.text(), "the first ingest")
        reader = None
        while reader is None:
            try:
                reader = duckdb.connect(str(tmp_path / "gw.duckdb"), read_only=True)
            except duckdb.IOException:
                time.sleep(0.05)
        try:
            append(tmp_path / "access.log", log_line("203.0.113.1", 5, "/admin"), log_line("192.0.2.9", 10))
            wait_for(lambda: "waiting: a reader has the database open" in served.text(), "a step to wait")
            assert slack.messages == []
        finally:
            reader.close()
        wait_for(lambda: len(slack.messages) == 1, "the alert after the reader closed")
        assert served.stop() == 0
    finally:
        served.kill()
    assert "skipped until its next run" not in served.text()
