"""The terminal notifier: prints alerts with rich, without any network."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import ConfigDict
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from gatewatch.notify.alert import Alert, format_utc
from gatewatch.notify.escape import truncate_visible
from gatewatch.notify.filters import NotifierFilter
from gatewatch.text import counted

# Per-value cap, so that one huge user agent cannot flood the terminal.
MAX_VALUE_CHARS = 500

SEVERITY_STYLES = {
    "low": "cyan",
    "medium": "yellow",
    "high": "bold red",
    "critical": "bold white on red",
}


class TerminalNotifierConfig(NotifierFilter):
    """Settings of the terminal notifier."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["terminal"] = "terminal"
    name: str = "terminal"


def _plain(value: object) -> Text:
    """Wrap log content in a Text, never parsed as markup, with hidden characters shown."""
    return Text(truncate_visible(value, MAX_VALUE_CHARS))


def _pairs(values: dict[str, object]) -> Text:
    text = Text()
    for index, (key, value) in enumerate(values.items()):
        if index:
            text.append("  ")
        text.append(truncate_visible(key, MAX_VALUE_CHARS), style="dim")
        text.append("=")
        text.append(truncate_visible("-" if value is None else value, MAX_VALUE_CHARS))
    return text


def render_alert(alert: Alert) -> Group:
    """Build the rich renderable for one alert.

    Every value is a Text object, so ``[bold]`` in a user agent prints as is,
    and control characters such as ESC are shown as ``\\x1b``.
    """
    severity = alert.severity.lower()
    heading = Text()
    heading.append(f" {truncate_visible(alert.severity.upper(), 20)} ", style=SEVERITY_STYLES.get(severity, "bold"))
    heading.append(" ")
    heading.append(truncate_visible(alert.title, MAX_VALUE_CHARS), style="bold")

    details = Table.grid(padding=(0, 2))
    details.add_column(style="bold", no_wrap=True)
    details.add_column(overflow="fold")
    details.add_row("rule", _plain(alert.rule_id))
    details.add_row("alert", _plain(alert.alert_id))
    details.add_row("window", Text(f"{format_utc(alert.window_start)} → {format_utc(alert.window_end)}"))
    details.add_row("group", _pairs(alert.group_key))
    details.add_row("measures", _pairs(alert.measures))
    details.add_row("summary", _plain(alert.summary))
    details.add_row("details", Text(f"gatewatch alerts show {truncate_visible(alert.alert_id, MAX_VALUE_CHARS)}"))

    parts: list = [heading, details]
    if alert.evidence:
        # One line per event, like an access log, so narrow terminals and
        # cron mail keep each event on its own line.
        parts.append(Text(f"evidence ({counted(len(alert.evidence), 'event')})", style="bold"))
        for event in alert.evidence:
            parts.append(_evidence_line(event))
    return Group(*parts)


def _evidence_line(event: dict[str, object]) -> Text:
    def field(name: str) -> str:
        value = event.get(name)
        return "-" if value is None or value == "" else truncate_visible(value, MAX_VALUE_CHARS)

    target = field("path")
    if event.get("query"):
        target += "?" + field("query")
    words = [field("ts"), field("client_ip"), field("user"), field("method"), target, field("status")]
    return Text("  " + " ".join(words) + f' "{field("user_agent")}"')


class TerminalNotifier:
    """Print each alert to a rich console; this always succeeds."""

    def __init__(self, console: Console, name: str = "terminal"):
        self.name = name
        self.console = console

    def send(self, alert: Alert) -> None:
        self.console.print(render_alert(alert))
        self.console.print()
        return None

    def already_delivered(self, alert: Alert, since: datetime) -> bool | None:
        # A terminal keeps no record of what it printed.
        return None
