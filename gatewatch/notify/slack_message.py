"""Build the Slack message (Block Kit blocks and fallback text) for an alert.

All log content goes into code spans or code blocks after escaping, so
Slack neither formats it (``*bold*``) nor turns it into mentions or links
(``<!channel>``, ``<https://x|click>``), and a reader can tell log content
from the message's own labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gatewatch.notify.alert import Alert, format_utc
from gatewatch.notify.escape import (
    escape_mrkdwn,
    escape_mrkdwn_code,
    join_lines_within,
    slack_length,
    truncate_visible,
)

# Slack Block Kit limits, from Slack's Block Kit reference.
HEADER_TEXT_LIMIT = 150
SECTION_TEXT_LIMIT = 3000
SECTION_FIELD_LIMIT = 2000
MAX_BLOCKS = 50  # build_message makes at most 6
MESSAGE_TEXT_LIMIT = 40000

# Our own caps per value, so that one long value leaves room for the others.
VALUE_LIMIT = 200
EVIDENCE_FIELD_LIMIT = 300
EVIDENCE_LINE_LIMIT = 580
SUMMARY_LIMIT = 2500
FALLBACK_TEXT_LIMIT = 3000
MAX_EVIDENCE_LINES = 5

METADATA_EVENT_TYPE = "gatewatch_alert"

SEVERITY_EMOJI = {
    "low": ":large_blue_circle:",
    "medium": ":large_yellow_circle:",
    "high": ":red_circle:",
    "critical": ":rotating_light:",
}


@dataclass(frozen=True)
class SlackMessage:
    """The parts of a Slack message: fallback text and Block Kit blocks."""

    text: str
    blocks: list[dict[str, Any]]


def alert_metadata(alert: Alert) -> dict[str, Any]:
    """Return the message metadata that identifies the alert in channel history."""
    return {"event_type": METADATA_EVENT_TYPE, "event_payload": {"alert_id": alert.alert_id}}


def _code(value: object, limit: int = VALUE_LIMIT) -> str:
    return f"`{escape_mrkdwn_code(value, limit)}`"


def _pair_lines(values: dict[str, Any]) -> list[str]:
    return [f"{_code(key)}: {_code(value)}" for key, value in values.items()]


def _field(label: str, lines: list[str]) -> dict[str, Any]:
    prefix = f"*{label}*\n"
    body = join_lines_within(lines or ["-"], SECTION_FIELD_LIMIT - slack_length(prefix))
    return {"type": "mrkdwn", "text": prefix + body, "verbatim": True}


def _code_block_section(label: str, lines: list[str]) -> dict[str, Any]:
    prefix = f"*{label}*\n```"
    suffix = "```"
    room = SECTION_TEXT_LIMIT - slack_length(prefix) - slack_length(suffix)
    body = join_lines_within(lines, room)
    return {"type": "section", "text": {"type": "mrkdwn", "text": prefix + body + suffix, "verbatim": True}}


def evidence_line(event: dict[str, Any]) -> str:
    """Format one evidence event as one escaped line for a code block."""

    def field(name: str) -> str:
        value = event.get(name)
        if value is None or value == "":
            return "-"
        return truncate_visible(value, EVIDENCE_FIELD_LIMIT)

    target = field("path")
    if event.get("query"):
        target += "?" + field("query")
    line = " ".join(
        [field("ts"), field("client_ip"), field("user"), field("method"), target, field("status"), field("user_agent")]
    )
    return escape_mrkdwn_code(line, EVIDENCE_LINE_LIMIT)


def header_text(alert: Alert) -> str:
    """Return the header line: severity and rule title."""
    text = f"{alert.severity.upper()}: {alert.title}"
    # NOTE: Slack's guidance is to escape &, < and > in all text; whether a
    # plain_text header shows "&amp;" literally has not been checked here.
    return escape_mrkdwn(text, HEADER_TEXT_LIMIT)


def fallback_text(alert: Alert) -> str:
    """Return the plain ``text`` field that notifications and old clients show."""
    group = ", ".join(f"{key}={value}" for key, value in alert.group_key.items())
    text = f"[{alert.severity.upper()}] {alert.title} ({group}): {alert.summary}"
    return escape_mrkdwn(text, min(FALLBACK_TEXT_LIMIT, MESSAGE_TEXT_LIMIT))


def build_message(alert: Alert) -> SlackMessage:
    """Build the Slack message for one alert."""
    emoji = SEVERITY_EMOJI.get(alert.severity.lower(), ":warning:")
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": header_text(alert), "emoji": True}},
        {
            "type": "section",
            "fields": [
                _field("Severity", [f"{emoji} {escape_mrkdwn(alert.severity, VALUE_LIMIT)}"]),
                _field("Rule", [_code(alert.rule_id)]),
                _field("Group", _pair_lines(alert.group_key)),
                _field("Measures", _pair_lines(alert.measures)),
                _field(
                    "Window (UTC)",
                    [f"{format_utc(alert.window_start)} to {format_utc(alert.window_end)}"],
                ),
            ],
        },
        _code_block_section("Summary", [escape_mrkdwn_code(alert.summary, SUMMARY_LIMIT)]),
    ]

    events = alert.evidence[:MAX_EVIDENCE_LINES]
    if events:
        label = f"Evidence ({len(events)} of {len(alert.evidence)} events)"
        blocks.append(_code_block_section(label, [evidence_line(event) for event in events]))

    command = f"gatewatch alerts show {alert.alert_id}"
    blocks.append(
        {
            "type": "context",
            "elements": [
                {"type": "mrkdwn", "text": f"Details: {_code(command, 300)}", "verbatim": True},
            ],
        }
    )
    return SlackMessage(text=fallback_text(alert), blocks=blocks)
