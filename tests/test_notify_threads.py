"""Slack threads for repeats, digests for bursts, and delivery under 429s, 500s and timeouts."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from slack_standin import SlackStandin

from gatewatch.notify import SlackNotifier, deliver_pending
from gatewatch.notify.filters import NotifierFilter
from gatewatch.store import Store, utc_now

CHANNEL = "C0ALERTS"
BASE = datetime(2026, 11, 3, 10, 0)
HOSTILE = "<!channel> <https://example.com|click> *bold* `tick` \x1b[2J\u202e"


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def slack():
    with SlackStandin(channels={CHANNEL}) as standin:
        yield standin


@pytest.fixture
def con(tmp_path: Path):
    path = tmp_path / "gatewatch.duckdb"
    Store(path).close()
    connection = duckdb.connect(str(path))
    yield connection
    connection.close()


class RecordingSleep:
    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def insert_alert(
    con, alert_id: str, minute: int, client_ip: str = "203.0.113.7", rule_id: str = "stuffing",
    severity: str = "high", user_agent: str = "curl/8.5.0",
) -> None:
    window_end = BASE + timedelta(minutes=minute)
    evidence = [{"ts": window_end.isoformat(), "client_ip": client_ip, "method": "POST", "path": "/login",
                 "status": 401, "user_agent": user_agent, "user": "alice"}]
    con.begin()
    con.execute(
        "INSERT INTO alerts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            alert_id, rule_id, "Credential stuffing", severity, json.dumps({"client_ip": client_ip}),
            window_end - timedelta(minutes=5), window_end, json.dumps({"attempts": 50 + minute}),
            f"{client_ip} failed 50 logins with {user_agent}", json.dumps(evidence), "SELECT 1",
            utc_now() + timedelta(microseconds=minute),
        ],
    )
    con.execute("INSERT INTO outbox (alert_id, notifier, state) VALUES (?, 'slack', 'pending')", [alert_id])
    con.commit()


def bot(slack: SlackStandin, digest_threshold: int | None = None, timeout: float = 5) -> SlackNotifier:
    return SlackNotifier(
        "slack", token=slack.token, channel=CHANNEL, base_url=slack.base_url, timeout_seconds=timeout,
        thread_window=timedelta(hours=24), digest_threshold=digest_threshold,
    )


def top_level(slack: SlackStandin) -> list[dict]:
    return [m for m in slack.messages if m.get("thread_ts", m["ts"]) == m["ts"]]


def alert_of(message: dict) -> str | None:
    return (message.get("metadata") or {}).get("event_payload", {}).get("alert_id")


def outbox(con) -> dict[str, tuple]:
    rows = con.execute("SELECT alert_id, state, message_ref, thread_ref, digest_id FROM outbox").fetchall()
    return {row[0]: row[1:] for row in rows}


# -- threads ----------------------------------------------------------------


def test_thread_repeats_reply_to_first(con, slack):
    for minute, alert_id in enumerate(["a-1", "a-2", "a-3"]):
        insert_alert(con, alert_id, minute * 10)

    report = deliver_pending(con, {"slack": bot(slack)})

    assert report.sent == 3
    parents = top_level(slack)
    assert [alert_of(m) for m in parents] == ["a-1"]
    parent_ts = parents[0]["ts"]
    replies = slack.thread_replies(parent_ts)
    assert [alert_of(m) for m in replies] == ["a-2", "a-3"]
    assert replies[1]["text"].startswith("Repeat 3: ")
    assert "Repeat 3: HIGH: Credential stuffing" in replies[1]["blocks"][0]["text"]["text"]
    assert parents[0]["edited"] is True
    assert "Seen 3 times" in json.dumps(parents[0]["blocks"])
    rows = outbox(con)
    assert rows["a-1"] == ("sent", parent_ts, None, None)
    assert rows["a-3"][2] == parent_ts


def test_thread_other_group_new_message(con, slack):
    insert_alert(con, "a-1", 0, client_ip="203.0.113.7")
    insert_alert(con, "b-1", 1, client_ip="198.51.100.1")
    insert_alert(con, "a-2", 2, client_ip="203.0.113.7")

    deliver_pending(con, {"slack": bot(slack)})

    assert [alert_of(m) for m in top_level(slack)] == ["a-1", "b-1"]
    assert [alert_of(m) for m in slack.thread_replies(top_level(slack)[0]["ts"])] == ["a-2"]


def test_thread_window_starts_new_thread(con, slack):
    insert_alert(con, "a-1", 0)
    insert_alert(con, "a-2", 60 * 25)

    deliver_pending(con, {"slack": bot(slack)})

    assert [alert_of(m) for m in top_level(slack)] == ["a-1", "a-2"]


def test_thread_across_runs(con, slack):
    insert_alert(con, "a-1", 0)
    deliver_pending(con, {"slack": bot(slack)})
    insert_alert(con, "a-2", 10)
    deliver_pending(con, {"slack": bot(slack)})

    parent = top_level(slack)
    assert [alert_of(m) for m in parent] == ["a-1"]
    assert [alert_of(m) for m in slack.thread_replies(parent[0]["ts"])] == ["a-2"]


def test_thread_reply_escapes_hostile_values(con, slack):
    insert_alert(con, "a-1", 0, user_agent=HOSTILE)
    insert_alert(con, "a-2", 10, user_agent=HOSTILE)

    deliver_pending(con, {"slack": bot(slack)})

    for request in slack.requests_to("chat.postMessage") + slack.requests_to("chat.update"):
        body = json.dumps(request.body, ensure_ascii=False)
        assert "<!channel>" not in body
        assert "<https://example.com|click>" not in body
        assert "\x1b" not in body
        assert "\u202e" not in body
        assert "&lt;!channel&gt;" in body


def test_thread_update_failure_keeps_reply(con, slack):
    insert_alert(con, "a-1", 0)
    insert_alert(con, "a-2", 10)
    slack.fail_next(count=5, status=500, path="/api/chat.update")

    report = deliver_pending(con, {"slack": bot(slack)})

    assert report.sent == 2
    assert report.failed == 0
    assert [alert_of(m) for m in slack.messages] == ["a-1", "a-2"]


# -- digests ----------------------------------------------------------------


def test_digest_replaces_many_messages(con, slack):
    for index in range(12):
        insert_alert(con, f"a-{index:02d}", index, client_ip=f"203.0.113.{index}", user_agent=HOSTILE)

    report = deliver_pending(con, {"slack": bot(slack, digest_threshold=10)})

    assert report.sent == 12
    assert len(slack.messages) == 1
    digest = slack.messages[0]
    assert digest["metadata"]["event_type"] == "gatewatch_digest"
    assert digest["blocks"][0]["text"]["text"] == "12 alerts: 12 high"
    body = json.dumps(digest["blocks"])
    for index in range(12):
        assert f"a-{index:02d}" in body
    assert "gatewatch alerts list" in body
    rows = outbox(con)
    digest_ids = {row[3] for row in rows.values()}
    assert len(digest_ids) == 1
    assert all(row[0] == "sent" and row[1] == digest["ts"] for row in rows.values())
    assert deliver_pending(con, {"slack": bot(slack, digest_threshold=10)}).sent == 0
    assert len(slack.messages) == 1


def test_digest_below_threshold_single_messages(con, slack):
    for index in range(3):
        insert_alert(con, f"a-{index}", index, client_ip=f"203.0.113.{index}")

    deliver_pending(con, {"slack": bot(slack, digest_threshold=10)})

    assert [alert_of(m) for m in slack.messages] == ["a-0", "a-1", "a-2"]


def test_digest_timeout_after_post_sent_once(con, slack):
    for index in range(10):
        insert_alert(con, f"a-{index}", index, client_ip=f"203.0.113.{index}")
    slack.fail_next(status=500, path="/api/chat.postMessage", process_first=True)

    first = deliver_pending(con, {"slack": bot(slack, digest_threshold=10)}, sleep=RecordingSleep())
    second = deliver_pending(con, {"slack": bot(slack, digest_threshold=10)}, sleep=RecordingSleep())

    assert first.sent == 0
    assert second.sent == 10
    assert second.recovered == 10
    assert len(slack.messages) == 1
    assert {row[0] for row in outbox(con).values()} == {"sent"}


def test_digest_long_list_truncated(con, slack):
    for index in range(50):
        insert_alert(con, f"alert-{index:03d}-" + "x" * 40, index, client_ip="2001:db8::" + "f" * 30 + str(index))

    deliver_pending(con, {"slack": bot(slack, digest_threshold=10)})

    digest = slack.messages[0]
    assert len(digest["blocks"]) <= 50
    for block in digest["blocks"]:
        if block["type"] == "section":
            assert len(block["text"]["text"]) <= 3000


# -- faults -----------------------------------------------------------------


def test_faults_every_alert_once_threads_kept(con, slack):
    """429 with Retry-After, 500s and a timeout after Slack stored the post, over several runs."""
    for minute, alert_id in enumerate(["a-1", "a-2", "a-3", "a-4"]):
        insert_alert(con, alert_id, minute * 10)
    insert_alert(con, "b-1", 5, client_ip="198.51.100.1")
    slack.rate_limit_next(retry_after=2, path="/api/chat.postMessage")
    slack.fail_next(count=2, status=500, path="/api/chat.postMessage")
    slack.time_out_next(2.0, path="/api/chat.postMessage")
    slack.fail_next(status=503, path="/api/conversations.replies")
    notifier = bot(slack, timeout=1)

    sleeps = RecordingSleep()
    for _ in range(6):
        deliver_pending(con, {"slack": notifier}, sleep=sleeps, max_consecutive_failures=2)

    assert 2.0 in sleeps.calls
    ids = [alert_of(m) for m in slack.messages]
    assert sorted(ids) == ["a-1", "a-2", "a-3", "a-4", "b-1"]
    parents = top_level(slack)
    assert sorted(alert_of(m) for m in parents) == ["a-1", "b-1"]
    a_parent = next(m for m in parents if alert_of(m) == "a-1")
    assert [alert_of(m) for m in slack.thread_replies(a_parent["ts"])] == ["a-2", "a-3", "a-4"]
    assert {row[0] for row in outbox(con).values()} == {"sent"}


def test_backoff_doubles_after_errors(con, slack):
    for index in range(3):
        insert_alert(con, f"a-{index}", index, client_ip=f"203.0.113.{index}")
    slack.fail_next(count=2, status=500, path="/api/chat.postMessage")
    sleeps = RecordingSleep()

    report = deliver_pending(con, {"slack": bot(slack)}, sleep=sleeps, max_consecutive_failures=3)

    assert sleeps.calls == [1.0, 2.0]
    assert report.sent == 1
    assert report.failed == 2


# -- filters ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "rule_id", "severity", "expected"),
    [
        ({}, "any", "low", True),
        ({"min_severity": "high"}, "any", "medium", False),
        ({"min_severity": "high"}, "any", "critical", True),
        ({"rules": ["credential-*"]}, "credential-stuffing", "low", True),
        ({"rules": ["credential-*"]}, "scraping", "high", False),
        ({"exclude_rules": ["scraping"]}, "scraping", "high", False),
        ({"rules": ["*"], "exclude_rules": ["url-*"]}, "url-injection", "high", False),
    ],
)
def test_filter_accepts(settings, rule_id, severity, expected):
    assert NotifierFilter(**settings).accepts(rule_id, severity) is expected


def test_long_retry_after_skips_later_runs(con, slack):
    insert_alert(con, "a-1", 0)
    slack.rate_limit_next(retry_after=120, path="/api/chat.postMessage")
    notifier = bot(slack)
    clock = [1000.0]

    first = deliver_pending(con, {"slack": notifier}, monotonic=lambda: clock[0])
    clock[0] += 60
    second = deliver_pending(con, {"slack": notifier}, monotonic=lambda: clock[0])
    requests_while_waiting = len(slack.requests_to("chat.postMessage"))
    clock[0] += 61
    third = deliver_pending(con, {"slack": notifier}, monotonic=lambda: clock[0])

    assert first.stopped == {"slack": "receiver requested a wait of 120 s"}
    assert second.stopped == {"slack": "waiting 60 s more, as the receiver requested"}
    assert second.failed == 0
    assert requests_while_waiting == 1
    assert third.sent == 1
    assert [alert_of(m) for m in slack.messages] == ["a-1"]
