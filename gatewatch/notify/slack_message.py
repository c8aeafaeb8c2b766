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
from gatewatch.text import counted

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
DIGEST_EVENT_TYPE = "gatewatch_digest"
# Sections of alert lines in one digest; Slack allows 50 blocks per message.
MAX_DIGEST_SECTIONS = 10

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


def digest_metadata(digest_id: str) -> dict[str, Any]:
    """Return the message metadata that identifies a digest in channel history."""
    return {"event_type": DIGEST_EVENT_TYPE, "event_payload": {"digest_id": digest_id}}


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
    group = ", ".join(f"{key}={'-' if value is None else value}" for key, value in alert.group_key.items())
    text = f"[{alert.severity.upper()}] {alert.title} ({group}): {alert.summary}"
    return escape_mrkdwn(text, min(FALLBACK_TEXT_LIMIT, MESSAGE_TEXT_LIMIT))


def build_message(alert: Alert, repeat: int | None = None) -> SlackMessage:
    """Build the Slack message for one alert; ``repeat`` numbers a reply in the alert's thread."""
    emoji = SEVERITY_EMOJI.get(alert.severity.lower(), ":warning:")
    header = header_text(alert) if repeat is None else _repeat_header(alert, repeat)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": header, "emoji": True}},
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
        label = f"Evidence ({len(events)} of {counted(len(alert.evidence), 'event')})"
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
    text = fallback_text(alert)
    if repeat is not None:
        text = escape_mrkdwn(f"Repeat {repeat}: ", None) + text
    return SlackMessage(text=text, blocks=blocks)


def _repeat_header(alert: Alert, repeat: int) -> str:
    return escape_mrkdwn(f"Repeat {repeat}: {alert.severity.upper()}: {alert.title}", HEADER_TEXT_LIMIT)


def build_parent_update(parent: Alert, repeat: int, latest: Alert) -> SlackMessage:
    """Build the first alert's message again, with a line that counts the repeats in its thread."""
    message = build_message(parent)
    note = (
        f":repeat: *Seen {repeat} times*; latest window ends {format_utc(latest.window_end)}, "
        f"{_code(f'gatewatch alerts show {latest.alert_id}', 300)}. Repeats are in the thread."
    )
    blocks = [*message.blocks, {"type": "context", "elements": [{"type": "mrkdwn", "text": note, "verbatim": True}]}]
    return SlackMessage(text=message.text, blocks=blocks)


def digest_line(alert: Alert) -> str:
    """Format one alert as one escaped line of a digest's code block."""
    group = " ".join(f"{key}={'-' if value is None else value}" for key, value in alert.group_key.items())
    line = f"{alert.severity.upper():8} {alert.rule_id} {group} {format_utc(alert.window_end)} {alert.alert_id}"
    return escape_mrkdwn_code(line, EVIDENCE_LINE_LIMIT)


def build_digest(alerts: list[Alert]) -> SlackMessage:
    """Build one message that lists many alerts, for a run that raised too many to post one by one."""
    counts: dict[str, int] = {}
    for alert in alerts:
        counts[alert.severity.lower()] = counts.get(alert.severity.lower(), 0) + 1
    order = ["critical", "high", "medium", "low"]
    by_severity = ", ".join(
        f"{counts[level]} {level}" for level in sorted(counts, key=lambda s: order.index(s) if s in order else 9)
    )
    title = escape_mrkdwn(f"{len(alerts)} alerts: {by_severity}", HEADER_TEXT_LIMIT)
    blocks: list[dict[str, Any]] = [{"type": "header", "text": {"type": "plain_text", "text": title, "emoji": True}}]

    lines = [digest_line(alert) for alert in alerts]
    prefix, suffix = "```", "```"
    room = SECTION_TEXT_LIMIT - slack_length(prefix) - slack_length(suffix)
    index = 0
    while index < len(lines) and len(blocks) <= MAX_DIGEST_SECTIONS:
        used, chunk = 0, []
        while index < len(lines) and used + slack_length(lines[index]) + 1 <= room:
            chunk.append(lines[index])
            used += slack_length(lines[index]) + 1
            index += 1
        if not chunk:
            # A line longer than a section; EVIDENCE_LINE_LIMIT keeps lines far shorter.
            break
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": prefix + "\n".join(chunk) + suffix, "verbatim": True}})
    if index < len(lines):
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"… {len(lines) - index} more alerts", "verbatim": True}})
    blocks.append({
        "type": "context",
        "elements": [{
            "type": "mrkdwn",
            "text": f"Sent as one digest because one run raised {len(alerts)} alerts. Details: "
            + _code("gatewatch alerts list", 300) + " and " + _code("gatewatch alerts show ID", 300),
            "verbatim": True,
        }],
    })
    text = escape_mrkdwn(f"gatewatch: {len(alerts)} alerts ({by_severity})", FALLBACK_TEXT_LIMIT)
    return SlackMessage(text=text, blocks=blocks)
