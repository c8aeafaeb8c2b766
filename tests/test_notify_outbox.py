"""Tests of outbox delivery: retries, rate limits and exactly-once after a crash."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from rich.console import Console
from slack_standin import SlackStandin

from gatewatch.notify import (
    Alert,
    DeliveryError,
    SlackNotifier,
    TerminalNotifier,
    deliver_pending,
    load_alert,
)
from gatewatch.notify.outbox import utc_now
from gatewatch.store import Store

CHANNEL = "C0ALERTS"
REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep slack-sdk from routing requests for 127.0.0.1 through a proxy from the environment."""
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def slack() -> SlackStandin:
    with SlackStandin(channels={CHANNEL}) as standin:
        yield standin


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    path = tmp_path / "gatewatch.duckdb"
    # The real store creates the alerts and outbox tables.
    Store(path).close()
    return path


@pytest.fixture
def con(db_path: Path):
    connection = duckdb.connect(str(db_path))
    yield connection
    connection.close()


def insert_alert(con, alert_id: str, created_at: datetime | None = None, notifiers=("slack",)) -> None:
    """Insert an alert and its pending outbox rows in one transaction, as the engine does."""
    created_at = created_at or utc_now()
    evidence = [{"ts": "2024-05-01T12:00:00", "client_ip": "203.0.113.7", "method": "POST", "path": "/login",
                 "query": "", "status": 401, "user_agent": "<!channel>", "user": "alice"}]
    con.begin()
    con.execute(
        "INSERT INTO alerts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            alert_id, "credential-stuffing-single-ip", "Credential stuffing from one client", "high",
            json.dumps({"client_ip": "203.0.113.7"}), datetime(2024, 5, 1, 12, 0), datetime(2024, 5, 1, 12, 5),
            json.dumps({"attempts": 57}), "203.0.113.7 tried 31 accounts", json.dumps(evidence), "SELECT 1",
            created_at,
        ],
    )
    for name in notifiers:
        con.execute("INSERT INTO outbox (alert_id, notifier, state) VALUES (?, ?, 'pending')", [alert_id, name])
    con.commit()


def outbox_row(con, alert_id: str, notifier: str = "slack") -> dict:
    cursor = con.execute("SELECT * FROM outbox WHERE alert_id = ? AND notifier = ?", [alert_id, notifier])
    columns = [column[0] for column in cursor.description]
    return dict(zip(columns, cursor.fetchone()))


def posted_alert_ids(slack: SlackStandin) -> list[str]:
    return [request.body["metadata"]["event_payload"]["alert_id"] for request in slack.requests_to("chat.postMessage")]


def bot(slack: SlackStandin, name: str = "slack") -> SlackNotifier:
    return SlackNotifier(name, token=slack.token, channel=CHANNEL, base_url=slack.base_url, timeout_seconds=5)


def webhook(slack: SlackStandin, name: str = "slack") -> SlackNotifier:
    return SlackNotifier(name, webhook_url=slack.webhook_url, timeout_seconds=5)


class RecordingSleep:
    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


class BrokenNotifier:
    """A notifier with a bug: ``send`` raises an exception that is not DeliveryError."""

    def __init__(self, name: str) -> None:
        self.name = name

    def send(self, alert: Alert) -> None:
        raise KeyError("missing field")

    def already_delivered(self, alert: Alert, since: datetime) -> bool | None:
        return None


# -- normal delivery ------------------------------------------------------


def test_outbox_sends_each_alert_once(con, slack: SlackStandin) -> None:
    insert_alert(con, "a-1")
    insert_alert(con, "a-2")

    first = deliver_pending(con, {"slack": bot(slack)})
    second = deliver_pending(con, {"slack": bot(slack)})

    assert (first.sent, first.failed, first.pending_left) == (2, 0, 0)
    assert (second.sent, second.failed, second.pending_left) == (0, 0, 0)
    assert sorted(posted_alert_ids(slack)) == ["a-1", "a-2"]
    row = outbox_row(con, "a-1")
    assert row["state"] == "sent"
    assert row["attempts"] == 1
    assert row["sent_at"] is not None
    assert row["last_error"] is None
    # A row never tried before is posted without a history check.
    assert slack.requests_to("conversations.history") == []


def test_outbox_sends_oldest_alert_first(con, slack: SlackStandin) -> None:
    base = datetime(2024, 5, 1, 12, 0)
    insert_alert(con, "late", created_at=base + timedelta(minutes=2))
    insert_alert(con, "early", created_at=base)
    insert_alert(con, "middle", created_at=base + timedelta(minutes=1))

    deliver_pending(con, {"slack": bot(slack)})

    assert posted_alert_ids(slack) == ["early", "middle", "late"]


def test_outbox_escapes_log_content_end_to_end(con, slack: SlackStandin) -> None:
    insert_alert(con, "a-1")

    deliver_pending(con, {"slack": bot(slack)})

    body = json.dumps(slack.requests_to("chat.postMessage")[0].body)
    assert "<!channel>" not in body
    assert "&lt;!channel&gt;" in body


def test_outbox_delivers_to_each_notifier(con, slack: SlackStandin) -> None:
    insert_alert(con, "a-1", notifiers=("slack", "terminal"))
    output = io.StringIO()
    notifiers = {"slack": bot(slack), "terminal": TerminalNotifier(Console(file=output, width=200))}

    report = deliver_pending(con, notifiers)

    assert report.sent == 2
    assert outbox_row(con, "a-1", "terminal")["state"] == "sent"
    assert "Credential stuffing from one client" in output.getvalue()


# -- failures and retries -------------------------------------------------


def test_outbox_500_leaves_row_pending(con, slack: SlackStandin) -> None:
    insert_alert(con, "a-1")
    slack.fail_next(status=500, path="/api/chat.postMessage")

    report = deliver_pending(con, {"slack": bot(slack)})

    assert (report.sent, report.failed, report.pending_left) == (0, 1, 1)
    row = outbox_row(con, "a-1")
    assert row["state"] == "pending"
    assert row["attempts"] == 1
    assert "HTTP 500" in row["last_error"]
    assert row["last_attempt_at"] is not None
    assert slack.messages == []


def test_outbox_next_run_sends_failed_row_once(con, slack: SlackStandin) -> None:
    insert_alert(con, "a-1")
    slack.fail_next(status=500, path="/api/chat.postMessage")
    deliver_pending(con, {"slack": bot(slack)})

    report = deliver_pending(con, {"slack": bot(slack)})

    assert (report.sent, report.failed, report.pending_left, report.recovered) == (1, 0, 0, 0)
    assert len(slack.messages) == 1
    assert len(slack.requests_to("conversations.history")) == 1
    row = outbox_row(con, "a-1")
    assert row["state"] == "sent"
    assert row["attempts"] == 2
    assert row["last_error"] is None


def test_outbox_500_after_post_not_posted_twice(con, slack: SlackStandin) -> None:
    # Slack stored the message but the client saw an error, as after a timeout.
    insert_alert(con, "a-1")
    slack.fail_next(status=500, path="/api/chat.postMessage", process_first=True)
    first = deliver_pending(con, {"slack": bot(slack)})

    second = deliver_pending(con, {"slack": bot(slack)})

    assert first.failed == 1
    assert (second.sent, second.recovered) == (1, 1)
    assert len(slack.messages) == 1
    assert len(slack.requests_to("chat.postMessage")) == 1
    assert outbox_row(con, "a-1")["state"] == "sent"


def test_outbox_failure_moves_on_to_next_row(con, slack: SlackStandin) -> None:
    insert_alert(con, "a-1", created_at=datetime(2024, 5, 1, 12, 0))
    insert_alert(con, "a-2", created_at=datetime(2024, 5, 1, 12, 1))
    slack.fail_next(status=500, path="/api/chat.postMessage")

    report = deliver_pending(con, {"slack": bot(slack)})

    assert (report.sent, report.failed, report.pending_left) == (1, 1, 1)
    assert outbox_row(con, "a-1")["state"] == "pending"
    assert outbox_row(con, "a-2")["state"] == "sent"


def test_outbox_stops_notifier_after_repeated_failures(con, slack: SlackStandin) -> None:
    for index in range(5):
        insert_alert(con, f"a-{index}", created_at=datetime(2024, 5, 1, 12, index))
    slack.error_next("channel_not_found", count=10, path="/api/chat.postMessage")

    report = deliver_pending(con, {"slack": bot(slack)}, max_consecutive_failures=3)

    assert report.failed == 3
    assert report.pending_left == 5
    assert "3 failures in a row" in report.stopped["slack"]
    assert "channel_not_found" in report.stopped["slack"]
    assert len(slack.requests_to("chat.postMessage")) == 3
    assert "channel_not_found" in outbox_row(con, "a-0")["last_error"]
    assert outbox_row(con, "a-4")["attempts"] == 0


def test_outbox_failing_notifier_does_not_block_others(con, slack: SlackStandin) -> None:
    insert_alert(con, "a-1", notifiers=("broken", "slack"))
    insert_alert(con, "a-2", notifiers=("broken", "slack"))

    report = deliver_pending(con, {"broken": BrokenNotifier("broken"), "slack": bot(slack)})

    assert report.sent == 2
    assert report.failed == 2
    assert sorted(posted_alert_ids(slack)) == ["a-1", "a-2"]
    row = outbox_row(con, "a-1", "broken")
    assert row["state"] == "pending"
    assert row["last_error"].startswith("KeyError")


def test_outbox_max_attempts_per_run(con, slack: SlackStandin) -> None:
    for index in range(5):
        insert_alert(con, f"a-{index}", created_at=datetime(2024, 5, 1, 12, index))

    report = deliver_pending(con, {"slack": bot(slack)}, max_attempts_per_run=2)

    assert (report.sent, report.pending_left) == (2, 3)
    assert "sent 2 alerts, the limit per run" in report.stopped["slack"]
    assert posted_alert_ids(slack) == ["a-0", "a-1"]


# -- rate limits ----------------------------------------------------------


def test_outbox_short_retry_after_sleeps_then_sends(con, slack: SlackStandin) -> None:
    insert_alert(con, "a-1")
    slack.rate_limit_next(retry_after=2, path="/api/chat.postMessage")
    sleep = RecordingSleep()

    report = deliver_pending(con, {"slack": bot(slack)}, sleep=sleep)

    assert sleep.calls == [2.0]
    assert (report.sent, report.failed, report.pending_left) == (1, 1, 0)
    assert len(slack.messages) == 1
    assert outbox_row(con, "a-1")["attempts"] == 2


def test_outbox_long_retry_after_stops_notifier(con, slack: SlackStandin) -> None:
    insert_alert(con, "a-1", created_at=datetime(2024, 5, 1, 12, 0))
    insert_alert(con, "a-2", created_at=datetime(2024, 5, 1, 12, 1))
    slack.rate_limit_next(retry_after=120, path="/api/chat.postMessage")
    sleep = RecordingSleep()

    report = deliver_pending(con, {"slack": bot(slack)}, sleep=sleep, max_retry_sleep=30)

    assert sleep.calls == []
    assert (report.sent, report.failed, report.pending_left) == (0, 1, 2)
    assert "a wait of 120 s" in report.stopped["slack"]
    assert len(slack.requests_to("chat.postMessage")) == 1
    assert "rate limited" in outbox_row(con, "a-1")["last_error"]
    assert outbox_row(con, "a-2")["attempts"] == 0


def test_outbox_rate_limit_on_webhook_honoured(con, slack: SlackStandin) -> None:
    insert_alert(con, "a-1")
    slack.rate_limit_next(retry_after=1)
    sleep = RecordingSleep()

    report = deliver_pending(con, {"slack": webhook(slack)}, sleep=sleep)

    assert sleep.calls == [1.0]
    assert report.sent == 1
    assert len(slack.messages) == 1


# -- exactly once after a crash -------------------------------------------


def mark_sending(con, alert_id: str, attempt_at: datetime, notifier: str = "slack") -> None:
    """Put a row in the state a run leaves when it dies during the send."""
    con.execute(
        "UPDATE outbox SET state = 'sending', attempts = 1, last_attempt_at = ? WHERE alert_id = ? AND notifier = ?",
        [attempt_at, alert_id, notifier],
    )


def test_outbox_sending_row_already_posted_not_resent(con, slack: SlackStandin) -> None:
    insert_alert(con, "a-1")
    attempt_at = utc_now()
    bot(slack).send(load_alert(con, "a-1"))
    mark_sending(con, "a-1", attempt_at)

    report = deliver_pending(con, {"slack": bot(slack)})

    assert (report.sent, report.recovered, report.failed) == (1, 1, 0)
    assert len(slack.requests_to("chat.postMessage")) == 1
    history = slack.requests_to("conversations.history")
    assert len(history) == 1
    oldest = float(history[0].params["oldest"])
    assert oldest == pytest.approx((attempt_at - timedelta(minutes=5) - datetime(1970, 1, 1)).total_seconds())
    row = outbox_row(con, "a-1")
    assert row["state"] == "sent"
    assert row["attempts"] == 1


def test_outbox_sending_row_not_posted_is_sent(con, slack: SlackStandin) -> None:
    insert_alert(con, "a-1")
    mark_sending(con, "a-1", utc_now())

    report = deliver_pending(con, {"slack": bot(slack)})

    assert (report.sent, report.recovered) == (1, 0)
    assert posted_alert_ids(slack) == ["a-1"]
    assert outbox_row(con, "a-1")["attempts"] == 2


def test_outbox_sending_row_history_error_keeps_state(con, slack: SlackStandin) -> None:
    insert_alert(con, "a-1")
    mark_sending(con, "a-1", utc_now())
    slack.rate_limit_next(retry_after=300, path="/api/conversations.history")

    report = deliver_pending(con, {"slack": bot(slack)})

    assert (report.sent, report.failed) == (0, 1)
    assert slack.requests_to("chat.postMessage") == []
    row = outbox_row(con, "a-1")
    assert row["state"] == "sending"
    assert "conversations.history rate limited" in row["last_error"]


def test_outbox_webhook_sending_row_resent(con, slack: SlackStandin) -> None:
    # Webhook mode cannot read history: the documented at-least-once case.
    insert_alert(con, "a-1")
    webhook(slack).send(load_alert(con, "a-1"))
    mark_sending(con, "a-1", utc_now())

    report = deliver_pending(con, {"slack": webhook(slack)})

    assert (report.sent, report.recovered) == (1, 0)
    assert len(slack.messages) == 2


CRASHING_RUN = textwrap.dedent(
    """
    import os, signal, sys
    import duckdb
    from gatewatch.notify import SlackNotifier, deliver_pending

    db_path, base_url, token, channel = sys.argv[1:5]

    class DiesAfterPost(SlackNotifier):
        def send(self, alert):
            super().send(alert)
            os.kill(os.getpid(), signal.SIGKILL)

    notifier = DiesAfterPost("slack", token=token, channel=channel, base_url=base_url, timeout_seconds=5)
    deliver_pending(duckdb.connect(db_path), {"slack": notifier})
    """
)


def test_outbox_kill_after_post_delivers_once(db_path: Path, slack: SlackStandin) -> None:
    with duckdb.connect(str(db_path)) as setup:
        insert_alert(setup, "a-1")
    environment = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    environment["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), environment.get("PYTHONPATH", "")])

    crashed = subprocess.run(
        [sys.executable, "-c", CRASHING_RUN, str(db_path), slack.base_url, slack.token, CHANNEL],
        env=environment,
        capture_output=True,
        timeout=60,
    )

    assert crashed.returncode == -9, crashed.stderr.decode()
    assert len(slack.messages) == 1
    with duckdb.connect(str(db_path)) as after:
        assert outbox_row(after, "a-1")["state"] == "sending"
        report = deliver_pending(after, {"slack": bot(slack)})
        assert outbox_row(after, "a-1")["state"] == "sent"
    assert (report.sent, report.recovered) == (1, 1)
    assert len(slack.messages) == 1
    assert len(slack.requests_to("chat.postMessage")) == 1


# -- rows that cannot be delivered ---------------------------------------


def test_outbox_unconfigured_notifier_reported(con, slack: SlackStandin) -> None:
    insert_alert(con, "a-1", notifiers=("slack", "pagerduty"))
    insert_alert(con, "a-2", notifiers=("pagerduty",))

    report = deliver_pending(con, {"slack": bot(slack)})

    assert report.sent == 1
    assert report.pending_left == 2
    assert report.unconfigured == {"pagerduty": 2}
    row = outbox_row(con, "a-1", "pagerduty")
    assert row["state"] == "pending"
    assert row["attempts"] == 0


def test_outbox_row_without_alert_stays_pending(con, slack: SlackStandin) -> None:
    con.execute("INSERT INTO outbox (alert_id, notifier, state) VALUES ('ghost', 'slack', 'pending')")
    insert_alert(con, "a-1")

    report = deliver_pending(con, {"slack": bot(slack)})

    assert (report.sent, report.pending_left) == (1, 1)
    assert outbox_row(con, "ghost")["state"] == "pending"


def test_delivery_error_carries_retry_after() -> None:
    error = DeliveryError("rate limited", retry_after=5.0)

    assert error.retry_after == 5.0
    assert str(error) == "rate limited"
