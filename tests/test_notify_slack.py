"""Tests of the Slack notifier against the local Slack stand-in."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta

import duckdb
import pytest
from pydantic import TypeAdapter, ValidationError
from rich.console import Console
from slack_standin import SlackStandin

from gatewatch.errors import GatewatchError
from gatewatch.notify import (
    Alert,
    DeliveryError,
    NotifierConfig,
    SlackNotifier,
    SlackNotifierConfig,
    build_notifier,
    load_alert,
)
from gatewatch.notify.outbox import utc_now
from gatewatch.notify.slack_message import (
    HEADER_TEXT_LIMIT,
    MAX_BLOCKS,
    MESSAGE_TEXT_LIMIT,
    SECTION_FIELD_LIMIT,
    SECTION_TEXT_LIMIT,
    build_message,
)

CHANNEL = "C0ALERTS"
TOKEN_ENV = "GATEWATCH_TEST_SLACK_TOKEN"
WEBHOOK_ENV = "GATEWATCH_TEST_SLACK_WEBHOOK"

ALERTS_DDL = """
CREATE TABLE alerts (
  alert_id VARCHAR PRIMARY KEY, rule_id VARCHAR NOT NULL, title VARCHAR NOT NULL,
  severity VARCHAR NOT NULL,
  group_key JSON NOT NULL,
  window_start TIMESTAMP NOT NULL, window_end TIMESTAMP NOT NULL,
  measures JSON NOT NULL,
  summary VARCHAR NOT NULL,
  evidence JSON NOT NULL,
  query VARCHAR NOT NULL,
  created_at TIMESTAMP NOT NULL
)
"""

HOSTILE_USER_AGENTS = [
    "<!channel> urgent",
    "<!here|here>",
    "<@U024BE7LH>",
    "<https://example.com|click>",
    "*bold* _italic_ ~strike~",
    "Tom & Jerry",
    "```\n<!channel>\n```",
    "`inline`",
    "\x1b[2J\x1b[31mred\r\x07\x00\u202eevil",
]


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep slack-sdk from routing requests for 127.0.0.1 through a proxy from the environment."""
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def slack() -> SlackStandin:
    with SlackStandin(channels={CHANNEL}) as standin:
        yield standin


def make_alert(alert_id: str = "a-0001", user_agent: str = "curl/8.5.0", **changes) -> Alert:
    evidence = [
        {
            "ts": f"2024-05-01T12:00:{second:02d}",
            "client_ip": "203.0.113.7",
            "method": "POST",
            "path": "/login",
            "query": "next=/home",
            "status": 401,
            "user_agent": user_agent,
            "user": f"user{second}",
        }
        for second in range(5)
    ]
    fields = dict(
        alert_id=alert_id,
        rule_id="credential-stuffing-single-ip",
        title="Credential stuffing from one client",
        severity="high",
        group_key={"client_ip": "203.0.113.7"},
        window_start=datetime(2024, 5, 1, 12, 0),
        window_end=datetime(2024, 5, 1, 12, 5),
        measures={"attempts": 57, "accounts": 31},
        summary=f"203.0.113.7 tried 31 accounts in 5m with {user_agent}",
        evidence=evidence,
        query="SELECT 1",
        created_at=datetime(2024, 5, 1, 12, 6),
    )
    fields.update(changes)
    return Alert(**fields)


def bot_notifier(slack: SlackStandin, channel: str = CHANNEL) -> SlackNotifier:
    return SlackNotifier("slack", token=slack.token, channel=channel, base_url=slack.base_url, timeout_seconds=5)


def webhook_notifier(slack: SlackStandin) -> SlackNotifier:
    return SlackNotifier("slack", webhook_url=slack.webhook_url, timeout_seconds=5)


def all_message_text(payload: dict) -> str:
    """Collect every text string of a chat.postMessage payload: fallback and blocks."""
    texts = [payload["text"]]

    def walk(node) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("text"), str):
                texts.append(node["text"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(payload["blocks"])
    return "\n".join(texts)


def code_contents(mrkdwn: str) -> list[str]:
    """Split mrkdwn into the contents of code blocks and code spans."""
    contents = re.findall(r"```(.*?)```", mrkdwn, flags=re.S)
    rest = re.sub(r"```.*?```", "", mrkdwn, flags=re.S)
    contents += re.findall(r"`([^`]*)`", rest)
    return contents


# -- bot mode -------------------------------------------------------------


def test_bot_posts_expected_fields(slack: SlackStandin) -> None:
    alert = make_alert()
    bot_notifier(slack).send(alert)

    posts = slack.requests_to("chat.postMessage")
    assert len(posts) == 1
    request = posts[0]
    assert request.headers["Authorization"] == f"Bearer {slack.token}"
    payload = request.body
    assert payload["channel"] == CHANNEL
    assert payload["metadata"] == {"event_type": "gatewatch_alert", "event_payload": {"alert_id": "a-0001"}}
    assert payload["unfurl_links"] is False

    header = payload["blocks"][0]
    assert header["type"] == "header"
    assert header["text"]["type"] == "plain_text"
    assert "HIGH" in header["text"]["text"]
    assert "Credential stuffing from one client" in header["text"]["text"]

    text = all_message_text(payload)
    assert "`client_ip`: `203.0.113.7`" in text
    assert "`attempts`: `57`" in text
    assert "`accounts`: `31`" in text
    assert "2024-05-01T12:00:00Z to 2024-05-01T12:05:00Z" in text
    assert "203.0.113.7 tried 31 accounts in 5m" in text
    assert "gatewatch alerts show a-0001" in text
    assert "/login?next=/home" in text
    assert "Credential stuffing from one client" in payload["text"]

    assert slack.messages[0]["channel"] == CHANNEL
    assert slack.messages[0]["metadata"]["event_payload"]["alert_id"] == "a-0001"


def test_bot_sends_alert_loaded_from_store(slack: SlackStandin, tmp_path) -> None:
    con = duckdb.connect(str(tmp_path / "gatewatch.duckdb"))
    con.execute(ALERTS_DDL)
    alert = make_alert(alert_id="stored-1")
    con.execute(
        "INSERT INTO alerts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            alert.alert_id, alert.rule_id, alert.title, alert.severity, json.dumps(alert.group_key),
            alert.window_start, alert.window_end, json.dumps(alert.measures), alert.summary,
            json.dumps(alert.evidence), alert.query, alert.created_at,
        ],
    )

    loaded = load_alert(con, "stored-1")
    bot_notifier(slack).send(loaded)

    assert loaded == alert
    assert slack.messages[0]["metadata"]["event_payload"]["alert_id"] == "stored-1"


def test_load_alert_missing_raises(tmp_path) -> None:
    con = duckdb.connect(str(tmp_path / "gatewatch.duckdb"))
    con.execute(ALERTS_DDL)

    with pytest.raises(GatewatchError, match="'nope' not found"):
        load_alert(con, "nope")


def test_bot_channel_not_found_raises(slack: SlackStandin) -> None:
    with pytest.raises(DeliveryError, match="channel_not_found") as caught:
        bot_notifier(slack, channel="C0MISSING").send(make_alert())

    assert caught.value.retry_after is None
    assert slack.messages == []


def test_bot_http_500_raises(slack: SlackStandin) -> None:
    slack.fail_next(status=500)

    with pytest.raises(DeliveryError, match="HTTP 500"):
        bot_notifier(slack).send(make_alert())


def test_bot_rate_limit_carries_retry_after(slack: SlackStandin) -> None:
    slack.rate_limit_next(retry_after=7)

    with pytest.raises(DeliveryError, match="rate limited") as caught:
        bot_notifier(slack).send(make_alert())

    assert caught.value.retry_after == 7.0
    # No retry inside slack-sdk: the outbox decides when to try again.
    assert len(slack.requests_to("chat.postMessage")) == 1


def test_bot_unreachable_raises_delivery_error() -> None:
    with SlackStandin() as stopped:
        base_url = stopped.base_url
    notifier = SlackNotifier("slack", token="xoxb-x", channel=CHANNEL, base_url=base_url, timeout_seconds=2)

    with pytest.raises(DeliveryError, match="request failed"):
        notifier.send(make_alert())


def test_bot_error_message_hides_token(slack: SlackStandin) -> None:
    notifier = SlackNotifier(
        "slack", token="xoxb-secret-value", channel=CHANNEL, base_url=slack.base_url, timeout_seconds=5
    )

    with pytest.raises(DeliveryError) as caught:
        notifier.send(make_alert())

    assert "invalid_auth" in str(caught.value)
    assert "xoxb-secret-value" not in str(caught.value)
    assert "xoxb-secret-value" not in repr(notifier)


# -- already_delivered ----------------------------------------------------


def test_already_delivered_finds_posted_alert(slack: SlackStandin) -> None:
    notifier = bot_notifier(slack)
    since = utc_now() - timedelta(minutes=5)
    ts = notifier.send(make_alert(alert_id="a-1"))

    assert ts == slack.messages[0]["ts"]
    assert notifier.already_delivered(make_alert(alert_id="a-1"), since) == ts
    assert notifier.already_delivered(make_alert(alert_id="a-2"), since) is False

    history = slack.requests_to("conversations.history")
    assert history[0].params["channel"] == CHANNEL
    assert float(history[0].params["oldest"]) == pytest.approx(
        (since - datetime(1970, 1, 1)).total_seconds(), abs=1e-3
    )


def test_already_delivered_ignores_older_messages(slack: SlackStandin) -> None:
    notifier = bot_notifier(slack)
    notifier.send(make_alert(alert_id="a-1"))

    later = utc_now() + timedelta(minutes=1)

    assert notifier.already_delivered(make_alert(alert_id="a-1"), later) is False


def test_already_delivered_pages_through_history(slack: SlackStandin, monkeypatch) -> None:
    monkeypatch.setattr("gatewatch.notify.slack.HISTORY_PAGE_SIZE", 2)
    notifier = bot_notifier(slack)
    since = utc_now() - timedelta(minutes=5)
    for index in range(5):
        notifier.send(make_alert(alert_id=f"a-{index}"))

    assert notifier.already_delivered(make_alert(alert_id="a-0"), since) == slack.messages[0]["ts"]
    assert len(slack.requests_to("conversations.history")) == 3


def test_already_delivered_rate_limited_raises(slack: SlackStandin) -> None:
    slack.rate_limit_next(retry_after=3, path="/api/conversations.history")

    with pytest.raises(DeliveryError) as caught:
        bot_notifier(slack).already_delivered(make_alert(), utc_now())

    assert caught.value.retry_after == 3.0


def test_already_delivered_missing_scope_returns_none(slack: SlackStandin) -> None:
    slack.error_next("missing_scope", path="/api/conversations.history")

    assert bot_notifier(slack).already_delivered(make_alert(), utc_now()) is None


def test_webhook_already_delivered_returns_none(slack: SlackStandin) -> None:
    assert webhook_notifier(slack).already_delivered(make_alert(), utc_now()) is None
    assert slack.requests == []


# -- webhook mode ---------------------------------------------------------


def test_webhook_posts_expected_fields(slack: SlackStandin) -> None:
    webhook_notifier(slack).send(make_alert())

    posts = slack.requests_to(slack.webhook_path)
    assert len(posts) == 1
    payload = posts[0].body
    assert "Authorization" not in posts[0].headers
    assert "channel" not in payload
    assert "metadata" not in payload
    assert payload["blocks"][0]["type"] == "header"
    assert "gatewatch alerts show a-0001" in all_message_text(payload)
    assert len(slack.messages) == 1


def test_webhook_rate_limit_carries_retry_after(slack: SlackStandin) -> None:
    slack.rate_limit_next(retry_after=2)

    with pytest.raises(DeliveryError) as caught:
        webhook_notifier(slack).send(make_alert())

    assert caught.value.retry_after == 2.0


def test_webhook_error_hides_url(slack: SlackStandin) -> None:
    slack.fail_next(status=404, body="channel_not_found")

    with pytest.raises(DeliveryError, match="HTTP 404 channel_not_found") as caught:
        webhook_notifier(slack).send(make_alert())

    assert slack.webhook_path not in str(caught.value)


# -- escaping -------------------------------------------------------------


@pytest.mark.parametrize("user_agent", HOSTILE_USER_AGENTS)
def test_hostile_user_agent_is_escaped(slack: SlackStandin, user_agent: str) -> None:
    alert = make_alert(
        user_agent=user_agent,
        group_key={"user_agent": user_agent},
        measures={"sample": user_agent, "attempts": 3},
    )
    bot_notifier(slack).send(alert)

    payload = slack.requests_to("chat.postMessage")[0].body
    text = all_message_text(payload)

    # No Slack markup from the log survives: no mention, no link, no raw control character.
    assert "<" not in text.replace("&lt;", "")
    assert ">" not in text.replace("&gt;", "")
    assert "<!channel>" not in text
    assert "<https://" not in text
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f\u202e]", text)
    # Every & in the payload starts an entity this code wrote.
    assert not re.search(r"&(?!amp;|lt;|gt;)", text)


def test_hostile_values_stay_inside_code(slack: SlackStandin) -> None:
    user_agent = "*bold* `x` ```y``` <!channel>"
    alert = make_alert(user_agent=user_agent, group_key={"user_agent": user_agent})
    bot_notifier(slack).send(alert)

    payload = slack.requests_to("chat.postMessage")[0].body
    blocks_text = "\n".join(
        all_message_text({"text": "", "blocks": payload["blocks"][1:]}).splitlines()
    )
    escaped = "*bold* \\x60x\\x60 \\x60\\x60\\x60y\\x60\\x60\\x60 &lt;!channel&gt;"

    inside = code_contents(blocks_text)
    assert any(escaped in content for content in inside)
    outside = re.sub(r"```.*?```", "", blocks_text, flags=re.S)
    outside = re.sub(r"`[^`]*`", "", outside)
    assert "*bold*" not in outside
    assert "!channel" not in outside


def test_control_characters_shown_as_escapes(slack: SlackStandin) -> None:
    alert = make_alert(user_agent="a\x1b[2Jb\r\nc\x00d\u202ee")
    bot_notifier(slack).send(alert)

    text = all_message_text(slack.requests_to("chat.postMessage")[0].body)
    assert "a\\x1b[2Jb\\r\\nc\\x00d\\u202ee" in text


def test_ampersand_escaped_once(slack: SlackStandin) -> None:
    bot_notifier(slack).send(make_alert(user_agent="Tom &amp; Jerry & co"))

    text = all_message_text(slack.requests_to("chat.postMessage")[0].body)
    assert "Tom &amp;amp; Jerry &amp; co" in text


def test_long_values_truncated_within_limits(slack: SlackStandin) -> None:
    huge = "A" * 50_000
    alert = make_alert(
        title="T" * 500,
        user_agent=huge,
        group_key={f"key{index}": huge for index in range(30)},
        measures={f"m{index}": huge for index in range(30)},
        summary=huge,
    )
    bot_notifier(slack).send(alert)

    payload = slack.requests_to("chat.postMessage")[0].body
    blocks = payload["blocks"]
    assert len(blocks) <= MAX_BLOCKS
    assert len(payload["text"]) <= MESSAGE_TEXT_LIMIT
    assert len(blocks[0]["text"]["text"]) <= HEADER_TEXT_LIMIT
    for block in blocks:
        if block["type"] == "section" and "text" in block:
            assert len(block["text"]["text"]) <= SECTION_TEXT_LIMIT
        for item in block.get("fields", []):
            assert len(item["text"]) <= SECTION_FIELD_LIMIT
    text = all_message_text(payload)
    assert "more chars]" in text
    assert "gatewatch alerts show a-0001" in text


def test_truncation_never_splits_entity() -> None:
    message = build_message(make_alert(summary="&" * 5000))

    summary_block = message.blocks[2]["text"]["text"]
    body = summary_block.split("```")[1]
    assert "more chars]" in body
    assert re.fullmatch(r"(&amp;)+… \[\d+ more chars\]", body)


def test_astral_characters_counted_in_utf16() -> None:
    message = build_message(make_alert(title="😀" * 200))

    header = message.blocks[0]["text"]["text"]
    assert len(header.encode("utf-16-le")) // 2 <= HEADER_TEXT_LIMIT


def test_evidence_lines_in_code_block() -> None:
    message = build_message(make_alert())

    evidence = message.blocks[3]["text"]["text"]
    assert evidence.startswith("*Evidence (5 of 5 events)*\n```")
    lines = evidence.split("```")[1].splitlines()
    assert len(lines) == 5
    assert lines[0] == "2024-05-01T12:00:00 203.0.113.7 user0 POST /login?next=/home 401 curl/8.5.0"


def test_alert_without_evidence_has_no_evidence_block() -> None:
    message = build_message(make_alert(evidence=[]))

    assert not any("Evidence" in json.dumps(block) for block in message.blocks)


# -- config and build -----------------------------------------------------


def test_config_bot_mode_builds(monkeypatch, slack: SlackStandin) -> None:
    monkeypatch.setenv(TOKEN_ENV, slack.token)
    config = SlackNotifierConfig(
        type="slack", name="soc", token_env=TOKEN_ENV, channel=CHANNEL, base_url=slack.base_url
    )

    notifier = build_notifier(config, Console())
    notifier.send(make_alert())

    assert notifier.name == "soc"
    assert len(slack.messages) == 1


def test_config_webhook_mode_builds(monkeypatch, slack: SlackStandin) -> None:
    monkeypatch.setenv(WEBHOOK_ENV, slack.webhook_url)
    config = SlackNotifierConfig(type="slack", webhook_url_env=WEBHOOK_ENV)

    notifier = build_notifier(config, Console())
    notifier.send(make_alert())

    assert slack.messages[0]["channel"] == "webhook"


def test_missing_token_env_names_variable(monkeypatch) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    config = SlackNotifierConfig(type="slack", token_env=TOKEN_ENV, channel=CHANNEL, base_url="http://127.0.0.1:9/")

    with pytest.raises(GatewatchError) as caught:
        build_notifier(config, Console())

    message = str(caught.value)
    assert TOKEN_ENV in message
    assert "not set" in message
    assert f"export {TOKEN_ENV}=" in message


def test_missing_webhook_env_names_variable(monkeypatch) -> None:
    monkeypatch.delenv(WEBHOOK_ENV, raising=False)
    config = SlackNotifierConfig(type="slack", webhook_url_env=WEBHOOK_ENV)

    with pytest.raises(GatewatchError, match=WEBHOOK_ENV):
        build_notifier(config, Console())


def test_empty_token_env_is_missing() -> None:
    config = SlackNotifierConfig(type="slack", token_env=TOKEN_ENV, channel=CHANNEL)

    with pytest.raises(GatewatchError, match="not set"):
        build_notifier(config, Console(), environ={TOKEN_ENV: "  "})


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"token_env": TOKEN_ENV},
        {"channel": CHANNEL},
        {"token_env": TOKEN_ENV, "channel": CHANNEL, "webhook_url_env": WEBHOOK_ENV},
        {"webhook_url_env": WEBHOOK_ENV, "base_url": "http://127.0.0.1:9/api/"},
        {"token_env": TOKEN_ENV, "channel": CHANNEL, "base_url": "127.0.0.1/api"},
        {"token_env": TOKEN_ENV, "channel": CHANNEL, "timeout_seconds": 0},
        {"token_env": TOKEN_ENV, "channel": CHANNEL, "token": "xoxb-inline"},
    ],
)
def test_config_rejects_invalid_modes(fields: dict) -> None:
    with pytest.raises(ValidationError):
        SlackNotifierConfig(type="slack", **fields)


def test_notifier_config_union_dispatches_on_type() -> None:
    adapter = TypeAdapter(NotifierConfig)

    slack_config = adapter.validate_python({"type": "slack", "webhook_url_env": WEBHOOK_ENV})
    terminal_config = adapter.validate_python({"type": "terminal"})

    assert isinstance(slack_config, SlackNotifierConfig)
    assert terminal_config.name == "terminal"
