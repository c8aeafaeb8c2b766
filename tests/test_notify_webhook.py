"""The webhook and JSON-lines notifiers against a real HTTP receiver on 127.0.0.1 and real files."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys
import threading
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import duckdb
import pytest
import yaml

from gatewatch.notify import JsonlNotifier, WebhookNotifier, deliver_pending
from gatewatch.notify.alert import Alert
from gatewatch.store import Store, utc_now

SECRET = "test-signing-secret"


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)


class Receiver:
    """An HTTP server on 127.0.0.1 that records POSTs and responds with programmed statuses."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.statuses: list[tuple[int, dict[str, str]]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.requests.append((dict(self.headers.items()), body))
                status, headers = receiver.statuses.pop(0) if receiver.statuses else (200, {})
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    with Receiver() as running:
        yield running


def make_alert(alert_id: str = "a-1", severity: str = "high") -> Alert:
    return Alert(
        alert_id=alert_id, rule_id="stuffing", title="Credential stuffing", severity=severity,
        group_key={"client_ip": "203.0.113.7"}, window_start=datetime(2026, 11, 3, 10, 0),
        window_end=datetime(2026, 11, 3, 10, 5), measures={"attempts": 57}, summary="<!channel> tried 57",
        evidence=[{"client_ip": "203.0.113.7", "user_agent": "<!channel>\x1b[2J"}], query="SELECT 1",
        created_at=datetime(2026, 11, 3, 10, 6),
    )


@pytest.fixture
def con(tmp_path: Path):
    path = tmp_path / "gatewatch.duckdb"
    Store(path).close()
    connection = duckdb.connect(str(path))
    yield connection
    connection.close()


def insert_alert(con, alert: Alert, notifier: str) -> None:
    con.execute(
        "INSERT INTO alerts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [alert.alert_id, alert.rule_id, alert.title, alert.severity, json.dumps(alert.group_key),
         alert.window_start, alert.window_end, json.dumps(alert.measures), alert.summary,
         json.dumps(alert.evidence), alert.query, utc_now()],
    )
    con.execute("INSERT INTO outbox (alert_id, notifier, state) VALUES (?, ?, 'pending')", [alert.alert_id, notifier])


def test_webhook_signed_json_body(receiver):
    WebhookNotifier("hook", receiver.url, secret=SECRET, headers={"X-Team": "sec"}).send(make_alert())

    headers, body = receiver.requests[0]
    document = json.loads(body)
    assert document["type"] == "gatewatch.alert"
    assert document["alert_id"] == "a-1"
    assert document["window_end"] == "2026-11-03T10:05:00Z"
    assert document["evidence"][0]["user_agent"] == "<!channel>\x1b[2J"
    assert headers["Content-Type"] == "application/json; charset=utf-8"
    assert headers["X-Gatewatch-Alert-Id"] == "a-1"
    assert headers["X-Team"] == "sec"
    timestamp = headers["X-Gatewatch-Timestamp"]
    expected = hmac.new(SECRET.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    assert headers["X-Gatewatch-Signature"] == f"sha256={expected}"


def test_webhook_unsigned_without_secret(receiver):
    WebhookNotifier("hook", receiver.url).send(make_alert())

    headers, _body = receiver.requests[0]
    assert "X-Gatewatch-Signature" not in headers


def test_webhook_retry_after_and_500(con, receiver):
    insert_alert(con, make_alert("a-1"), "hook")
    insert_alert(con, make_alert("a-2"), "hook")
    receiver.statuses = [(429, {"Retry-After": "3"}), (500, {})]
    sleeps: list[float] = []

    report = deliver_pending(con, {"hook": WebhookNotifier("hook", receiver.url)}, sleep=sleeps.append)
    again = deliver_pending(con, {"hook": WebhookNotifier("hook", receiver.url)}, sleep=sleeps.append)

    assert sleeps[0] == 3.0
    assert report.failed == 2
    assert report.sent + again.sent == 2
    delivered = [json.loads(body)["alert_id"] for headers, body in receiver.requests[2:]]
    assert sorted(delivered) == ["a-1", "a-2"]


def test_jsonl_appends_and_finds(tmp_path):
    path = tmp_path / "out" / "alerts.jsonl"
    notifier = JsonlNotifier("file", path)
    since = utc_now() - timedelta(minutes=5)

    assert notifier.already_delivered(make_alert("a-1"), since) is False
    notifier.send(make_alert("a-1"))
    notifier.send(make_alert("a-2"))

    lines = path.read_text().splitlines()
    assert [json.loads(line)["alert_id"] for line in lines] == ["a-1", "a-2"]
    assert json.loads(lines[0])["summary"] == "<!channel> tried 57"
    assert notifier.already_delivered(make_alert("a-2"), since) is True
    assert notifier.already_delivered(make_alert("a-3"), since) is False


def test_jsonl_crash_not_written_twice(con, tmp_path):
    path = tmp_path / "alerts.jsonl"
    insert_alert(con, make_alert("a-1"), "file")
    notifier = JsonlNotifier("file", path)
    notifier.send(make_alert("a-1"))
    # The run died after the write and before the outbox marked the row sent.
    con.execute("UPDATE outbox SET state = 'sending', attempts = 1, last_attempt_at = ?", [utc_now()])

    report = deliver_pending(con, {"file": notifier})

    assert report.recovered == 1
    assert len(path.read_text().splitlines()) == 1


def test_notifier_filters_end_to_end(tmp_path, receiver):
    """Per notifier severity and rule filters decide which notifiers get each alert."""
    (tmp_path / "rules").mkdir()
    for rule_id, severity in (("admin-probe", "high"), ("health-check", "low")):
        (tmp_path / "rules" / f"{rule_id}.yaml").write_text(
            f"id: {rule_id}\ntitle: {rule_id}\nseverity: {severity}\ntype: match\n"
            f"where: path = '/{rule_id}'\nevery: 1m\n"
        )
    (tmp_path / "access.log").write_text(
        '203.0.113.1 - - [03/Nov/2026:10:00:05 +0000] "GET /admin-probe HTTP/1.1" 404 5 "-" "x"\n'
        '203.0.113.2 - - [03/Nov/2026:10:00:06 +0000] "GET /health-check HTTP/1.1" 200 5 "-" "x"\n'
        '192.0.2.9 - - [03/Nov/2026:10:03:10 +0000] "GET / HTTP/1.1" 200 5 "-" "x"\n'
    )
    config = {
        "database": "gw.duckdb",
        "sources": [{"name": "edge", "format": "combined", "path": "access.log"}],
        "rules": ["rules"],
        "notifiers": [
            {"type": "webhook", "name": "hook", "url": receiver.url, "secret_env": "GW_TEST_HOOK_SECRET",
             "min_severity": "high"},
            {"type": "jsonl", "name": "file", "path": "alerts.jsonl", "exclude_rules": ["admin-*"]},
        ],
    }
    (tmp_path / "gatewatch.yaml").write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower() and k != "GATEWATCH_CONFIG"}
    env["GW_TEST_HOOK_SECRET"] = SECRET

    result = subprocess.run(
        [sys.executable, "-m", "gatewatch.cli", "run", "--once"], cwd=tmp_path, capture_output=True, text=True,
        env=env, timeout=120,
    )

    assert result.returncode == 0, result.stderr
    assert [json.loads(body)["rule_id"] for _headers, body in receiver.requests] == ["admin-probe"]
    lines = (tmp_path / "alerts.jsonl").read_text().splitlines()
    assert [json.loads(line)["rule_id"] for line in lines] == ["health-check"]


def test_webhook_missing_secret_env(tmp_path):
    (tmp_path / "gatewatch.yaml").write_text(
        "database: gw.duckdb\nnotifiers:\n  - type: webhook\n    url: http://127.0.0.1:9/hook\n"
        "    secret_env: GW_TEST_UNSET_SECRET\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("GATEWATCH_CONFIG", "GW_TEST_UNSET_SECRET")}
    result = subprocess.run(
        [sys.executable, "-m", "gatewatch.cli", "run", "--once"], cwd=tmp_path, capture_output=True, text=True,
        env=env, timeout=120,
    )
    assert result.returncode == 3
    assert "environment variable GW_TEST_UNSET_SECRET is not set" in result.stderr
