"""Tests of the terminal notifier and of the shared escaping helpers."""

from __future__ import annotations

import io
import re
from datetime import datetime

import pytest
from rich.console import Console

from gatewatch.notify import Alert, TerminalNotifier, TerminalNotifierConfig, build_notifier
from gatewatch.notify.escape import make_visible, truncate_visible

# Rich's own styling, which force_terminal turns on: SGR sequences only.
SGR = re.compile(r"\x1b\[[0-9;]*m")


def make_alert(user_agent: str = "curl/8.5.0", **changes) -> Alert:
    fields = dict(
        alert_id="a-0001",
        rule_id="scanner-user-agent",
        title="Scanner user agent",
        severity="medium",
        group_key={"client_ip": "198.51.100.9"},
        window_start=datetime(2024, 5, 1, 12, 0),
        window_end=datetime(2024, 5, 1, 12, 5),
        measures={"requests": 12},
        summary=f"198.51.100.9 sent 12 requests as {user_agent}",
        evidence=[
            {
                "ts": "2024-05-01T12:00:01",
                "client_ip": "198.51.100.9",
                "method": "GET",
                "path": "/admin",
                "query": "",
                "status": 404,
                "user_agent": user_agent,
                "user": None,
            }
        ],
        query="SELECT 1",
        created_at=datetime(2024, 5, 1, 12, 6),
    )
    fields.update(changes)
    return Alert(**fields)


def render(alert: Alert) -> str:
    """Print ``alert`` on a forced-colour console 300 columns wide and return the raw output."""
    output = io.StringIO()
    console = Console(file=output, force_terminal=True, width=300, color_system="truecolor")
    TerminalNotifier(console).send(alert)
    return output.getvalue()


def test_terminal_prints_alert_fields() -> None:
    plain = SGR.sub("", render(make_alert()))

    assert "MEDIUM" in plain
    assert "Scanner user agent" in plain
    assert "scanner-user-agent" in plain
    assert "client_ip=198.51.100.9" in plain
    assert "requests=12" in plain
    assert "2024-05-01T12:00:00Z → 2024-05-01T12:05:00Z" in plain
    assert "198.51.100.9 sent 12 requests as curl/8.5.0" in plain
    assert "/admin" in plain
    assert "gatewatch alerts show a-0001" in plain


def test_terminal_escape_sequences_printed_literally() -> None:
    hostile = "\x1b[2J\x1b[31mred\x1b]0;title\x07\rover\x08\x00\u202eevil"
    alert = make_alert(user_agent=hostile, group_key={"user_agent": hostile})

    raw = render(alert)
    plain = SGR.sub("", raw)

    assert "\x1b" not in plain
    assert "\r" not in raw
    assert "\x07" not in raw
    assert "\x08" not in raw
    assert "\x00" not in raw
    assert "\u202e" not in raw
    assert "\\x1b[2J\\x1b[31mred\\x1b]0;title\\x07\\rover\\x08\\x00\\u202eevil" in plain


def test_terminal_markup_printed_literally() -> None:
    hostile = "[bold red]x[/] [link=https://example.com]y[/link] :skull:"
    alert = make_alert(user_agent=hostile, title="[blink]title[/blink]")

    raw = render(alert)
    plain = SGR.sub("", raw)

    assert hostile in plain
    assert "[blink]title[/blink]" in plain
    assert "\x1b]8;" not in raw  # no hyperlink was made
    assert "💀" not in raw  # no emoji code was replaced


def test_terminal_newline_in_value_stays_on_one_line() -> None:
    plain = SGR.sub("", render(make_alert(summary="first\nFAKE ALERT: all clear")))

    assert "first\\nFAKE ALERT: all clear" in plain


def test_terminal_long_value_truncated() -> None:
    plain = SGR.sub("", render(make_alert(summary="S" * 10_000)))

    assert "more chars]" in plain
    assert "S" * 10_000 not in plain


def test_terminal_already_delivered_cannot_tell() -> None:
    notifier = TerminalNotifier(Console(file=io.StringIO()))

    assert notifier.already_delivered(make_alert(), datetime(2024, 5, 1)) is None


def test_build_terminal_notifier_uses_console() -> None:
    output = io.StringIO()
    config = TerminalNotifierConfig(type="terminal", name="screen")

    notifier = build_notifier(config, Console(file=output, width=200))
    notifier.send(make_alert())

    assert notifier.name == "screen"
    assert "Scanner user agent" in output.getvalue()


def test_terminal_config_defaults() -> None:
    config = TerminalNotifierConfig()

    assert config.type == "terminal"
    assert config.name == "terminal"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("plain text", "plain text"),
        ("tab\tnew\nline\rcr", "tab\\tnew\\nline\\rcr"),
        ("\x1b[0m", "\\x1b[0m"),
        ("\x00\x7f\x85", "\\x00\\x7f\\x85"),
        ("a\u200bb\u202ec\ufeff", "a\\u200bb\\u202ec\\ufeff"),
        ("line\u2028sep", "line\\u2028sep"),
        ("tag\U000e0041", "tag\\U000e0041"),
        ("surrogate\udcff", "surrogate\\udcff"),
        ("café ☕ 😀", "café ☕ 😀"),
        (None, ""),
        (401, "401"),
    ],
)
def test_make_visible_cases(value, expected: str) -> None:
    assert make_visible(value) == expected


def test_truncate_visible_marks_cut() -> None:
    cut = truncate_visible("x" * 100, 40)

    assert len(cut) <= 40
    assert cut.endswith("more chars]")
    assert cut.startswith("x")


def test_truncate_visible_keeps_escape_whole() -> None:
    cut = truncate_visible("\x1b" * 100, 30)

    assert re.fullmatch(r"(\\x1b)+… \[\d+ more chars\]", cut)
