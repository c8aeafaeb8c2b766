"""Notifiers (Slack, terminal) and the outbox that delivers each alert once."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

from pydantic import Field
from rich.console import Console

from gatewatch.notify.alert import Alert, load_alert
from gatewatch.notify.base import DeliveryError, Notifier
from gatewatch.notify.outbox import DeliveryReport, deliver_pending
from gatewatch.notify.slack import SlackNotifier, SlackNotifierConfig, build_slack_notifier
from gatewatch.notify.terminal import TerminalNotifier, TerminalNotifierConfig

# The union the config module can use for one entry of `notifiers:`.
NotifierConfig = Annotated[TerminalNotifierConfig | SlackNotifierConfig, Field(discriminator="type")]


def build_notifier(
    config: TerminalNotifierConfig | SlackNotifierConfig,
    console: Console,
    environ: Mapping[str, str] | None = None,
) -> Notifier:
    """Build the notifier that ``config`` describes.

    Secrets are read from ``environ`` (default: the process environment) now,
    so a missing variable raises GatewatchError before any alert is sent.
    """
    if isinstance(config, TerminalNotifierConfig):
        return TerminalNotifier(console, name=config.name)
    if isinstance(config, SlackNotifierConfig):
        return build_slack_notifier(config, environ)
    raise TypeError(f"unknown notifier config type: {type(config).__name__}")


__all__ = [
    "Alert",
    "DeliveryError",
    "DeliveryReport",
    "Notifier",
    "NotifierConfig",
    "SlackNotifier",
    "SlackNotifierConfig",
    "TerminalNotifier",
    "TerminalNotifierConfig",
    "build_notifier",
    "deliver_pending",
    "load_alert",
]
