"""Notifiers (Slack, webhook, JSON lines, terminal) and the outbox that delivers each alert once."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated

from pydantic import Field
from rich.console import Console

from gatewatch.notify.alert import Alert, load_alert
from gatewatch.notify.base import DeliveryError, Notifier, ThreadContext
from gatewatch.notify.jsonl import JsonlNotifier, JsonlNotifierConfig
from gatewatch.notify.outbox import DeliveryReport, deliver_pending
from gatewatch.notify.slack import SlackNotifier, SlackNotifierConfig, build_slack_notifier
from gatewatch.notify.terminal import TerminalNotifier, TerminalNotifierConfig
from gatewatch.notify.webhook import WebhookNotifier, WebhookNotifierConfig, build_webhook_notifier

# The union the config module can use for one entry of `notifiers:`.
AnyNotifierConfig = TerminalNotifierConfig | SlackNotifierConfig | WebhookNotifierConfig | JsonlNotifierConfig
NotifierConfig = Annotated[AnyNotifierConfig, Field(discriminator="type")]


def build_notifier(
    config: AnyNotifierConfig,
    console: Console,
    environ: Mapping[str, str] | None = None,
    resolve: Callable[[str], Path] = Path,
) -> Notifier:
    """Build the notifier that ``config`` describes.

    Secrets are read from ``environ`` (default: the process environment) now,
    so a missing variable raises GatewatchError before any alert is sent.
    ``resolve`` turns a path from the config into a file path.
    """
    if isinstance(config, TerminalNotifierConfig):
        return TerminalNotifier(console, name=config.name)
    if isinstance(config, SlackNotifierConfig):
        return build_slack_notifier(config, environ)
    if isinstance(config, WebhookNotifierConfig):
        return build_webhook_notifier(config, environ)
    if isinstance(config, JsonlNotifierConfig):
        return JsonlNotifier(config.name, resolve(config.path))
    raise TypeError(f"unknown notifier config type: {type(config).__name__}")


__all__ = [
    "Alert",
    "DeliveryError",
    "DeliveryReport",
    "JsonlNotifier",
    "JsonlNotifierConfig",
    "Notifier",
    "NotifierConfig",
    "SlackNotifier",
    "SlackNotifierConfig",
    "TerminalNotifier",
    "TerminalNotifierConfig",
    "ThreadContext",
    "WebhookNotifier",
    "WebhookNotifierConfig",
    "build_notifier",
    "deliver_pending",
    "load_alert",
]
