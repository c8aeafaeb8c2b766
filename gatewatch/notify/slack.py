"""The Slack notifier: bot mode (chat.postMessage) or incoming-webhook mode.

Secrets are read from environment variables named in the config when the
notifier is built, and never logged. Error messages have the token and the
webhook URL replaced by ``[redacted]``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.webhook import WebhookClient

from gatewatch.errors import GatewatchError
from gatewatch.notify.alert import Alert
from gatewatch.notify.base import DeliveryError
from gatewatch.notify.slack_message import METADATA_EVENT_TYPE, alert_metadata, build_message

logger = logging.getLogger(__name__)

# slack-sdk logs request URLs and bodies at DEBUG level, and a webhook URL
# is a secret. Its clients get this logger, which never passes DEBUG on.
_sdk_logger = logging.getLogger("gatewatch.notify.slack_sdk")
_sdk_logger.setLevel(logging.INFO)

# conversations.history pages read when checking for an earlier delivery:
# 20 pages of 200 messages. A busier channel makes the check return None.
HISTORY_PAGE_SIZE = 200
MAX_HISTORY_PAGES = 20

# Wait used when Slack returns HTTP 429 without a Retry-After header.
DEFAULT_RETRY_AFTER = 60.0

_T = TypeVar("_T")


class SlackNotifierConfig(BaseModel):
    """Settings of the Slack notifier.

    Bot mode needs ``token_env`` and ``channel``; webhook mode needs
    ``webhook_url_env``. Exactly one mode must be set.
    """

    model_config = ConfigDict(extra="forbid")

    type: Literal["slack"] = "slack"
    name: str = "slack"
    token_env: str | None = None
    channel: str | None = None
    webhook_url_env: str | None = None
    base_url: str | None = None
    timeout_seconds: float = Field(default=10, gt=0)

    @model_validator(mode="after")
    def _check_mode(self) -> SlackNotifierConfig:
        bot_fields = self.token_env is not None or self.channel is not None
        if bot_fields and self.webhook_url_env is not None:
            raise ValueError(
                "set either token_env and channel (bot mode) or webhook_url_env (webhook mode), not both"
            )
        if self.webhook_url_env is None:
            if self.token_env is None or self.channel is None:
                raise ValueError(
                    "bot mode needs both token_env and channel; "
                    "for webhook mode set webhook_url_env instead"
                )
        elif self.base_url is not None:
            raise ValueError("base_url applies to bot mode only; in webhook mode the URL comes from webhook_url_env")
        if self.base_url is not None and not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {self.base_url!r}")
        return self

    @property
    def mode(self) -> Literal["bot", "webhook"]:
        return "webhook" if self.webhook_url_env is not None else "bot"


def read_secret(variable: str, description: str, example: str, environ: Mapping[str, str] | None = None) -> str:
    """Read a secret from the environment variable ``variable``, or raise GatewatchError."""
    environ = os.environ if environ is None else environ
    value = environ.get(variable, "").strip()
    if not value:
        raise GatewatchError(
            f"environment variable {variable} is not set; it must contain the {description}. "
            f"Set it before running gatewatch, for example: export {variable}='{example}'"
        )
    return value


def _retry_after(headers: Mapping[str, Any] | None) -> float:
    """Read a Retry-After header in seconds; fall back to DEFAULT_RETRY_AFTER."""
    for key, value in (headers or {}).items():
        if key.lower() != "retry-after":
            continue
        if isinstance(value, list):
            value = value[0] if value else ""
        try:
            return max(0.0, float(value))
        except (TypeError, ValueError):
            return DEFAULT_RETRY_AFTER
    return DEFAULT_RETRY_AFTER


class SlackNotifier:
    """Post alerts to Slack through the Web API (bot mode) or an incoming webhook."""

    def __init__(
        self,
        name: str,
        *,
        token: str | None = None,
        channel: str | None = None,
        webhook_url: str | None = None,
        base_url: str | None = None,
        timeout_seconds: float = 10,
    ):
        if (token is None) == (webhook_url is None):
            raise ValueError("give either token (bot mode) or webhook_url (webhook mode)")
        if token is not None and channel is None:
            raise ValueError("bot mode needs a channel")
        self.name = name
        self.channel = channel
        self._secrets = [secret for secret in (token, webhook_url) if secret]
        # No retry handlers: the outbox decides when to send again, and a
        # silent resend after a connection reset could post a message twice.
        self._web: WebClient | None = None
        self._webhook: WebhookClient | None = None
        if token is not None:
            client_args: dict[str, Any] = {}
            if base_url is not None:
                client_args["base_url"] = base_url if base_url.endswith("/") else base_url + "/"
            self._web = WebClient(
                token=token,
                timeout=timeout_seconds,
                logger=_sdk_logger,
                retry_handlers=[],
                **client_args,
            )
        else:
            self._webhook = WebhookClient(
                webhook_url,
                timeout=timeout_seconds,
                logger=_sdk_logger,
                retry_handlers=[],
            )

    @property
    def mode(self) -> Literal["bot", "webhook"]:
        return "bot" if self._web is not None else "webhook"

    def __repr__(self) -> str:
        return f"SlackNotifier(name={self.name!r}, mode={self.mode!r}, channel={self.channel!r})"

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "[redacted]")
        return text

    def _delivery_error(self, method: str, error: Exception) -> DeliveryError:
        """Turn a slack-sdk or network failure of ``method`` into a DeliveryError."""
        if not isinstance(error, SlackApiError):
            return DeliveryError(self._redact(f"Slack {method} request failed: {error}"))
        response = error.response
        if response.status_code == 429:
            retry_after = _retry_after(response.headers)
            return DeliveryError(
                f"Slack {method} rate limited (HTTP 429); retry after {retry_after:g} s",
                retry_after=retry_after,
            )
        if response.status_code != 200:
            return DeliveryError(f"Slack {method} failed: HTTP {response.status_code}")
        return DeliveryError(self._redact(f"Slack {method} failed: {_api_error_code(error)}"))

    def _call(self, method: str, call: Callable[[], _T]) -> _T:
        """Run one Web API call and raise DeliveryError when it fails."""
        try:
            return call()
        except (SlackClientError, OSError) as error:
            raise self._delivery_error(method, error) from None

    def send(self, alert: Alert) -> None:
        message = build_message(alert)
        if self._web is not None:
            web = self._web
            self._call(
                "chat.postMessage",
                lambda: web.chat_postMessage(
                    channel=self.channel,
                    text=message.text,
                    blocks=message.blocks,
                    metadata=alert_metadata(alert),
                    unfurl_links=False,
                    unfurl_media=False,
                ),
            )
            return
        self._send_webhook(message.text, message.blocks)

    def _send_webhook(self, text: str, blocks: list[dict[str, Any]]) -> None:
        assert self._webhook is not None
        try:
            response = self._webhook.send(text=text, blocks=blocks, unfurl_links=False, unfurl_media=False)
        except (SlackClientError, OSError) as error:
            raise DeliveryError(self._redact(f"Slack webhook request failed: {error}")) from None
        if response.status_code == 200:
            return
        if response.status_code == 429:
            retry_after = _retry_after(response.headers)
            raise DeliveryError(
                f"Slack webhook rate limited (HTTP 429); retry after {retry_after:g} s",
                retry_after=retry_after,
            )
        body = (response.body or "").strip()[:200]
        raise DeliveryError(self._redact(f"Slack webhook failed: HTTP {response.status_code} {body}".rstrip()))

    def already_delivered(self, alert: Alert, since: datetime) -> bool | None:
        """Look for the alert's message in the channel history since ``since`` (naive UTC).

        Webhook mode returns None, because an incoming webhook cannot read
        history: a webhook notifier that dies during a send posts again on
        the next run. Bot mode also returns None when the token lacks the
        history scope or the channel has more than MAX_HISTORY_PAGES pages
        of messages since ``since``.
        """
        if self._web is None:
            return None
        web = self._web
        if since.tzinfo is None:
            since = since.replace(tzinfo=timezone.utc)
        oldest = f"{since.timestamp():.6f}"
        cursor: str | None = None
        for _ in range(MAX_HISTORY_PAGES):
            try:
                response = web.conversations_history(
                    channel=self.channel,
                    oldest=oldest,
                    include_all_metadata=True,
                    limit=HISTORY_PAGE_SIZE,
                    cursor=cursor,
                )
            except SlackApiError as error:
                if _api_error_code(error) == "missing_scope":
                    logger.warning(
                        "notifier %s cannot read channel history (missing_scope), so it cannot tell "
                        "whether alert %s was already posted; add the channels:history scope "
                        "(groups:history for a private channel) to avoid a duplicate",
                        self.name,
                        alert.alert_id,
                    )
                    return None
                raise self._delivery_error("conversations.history", error) from None
            except (SlackClientError, OSError) as error:
                raise self._delivery_error("conversations.history", error) from None
            for message in response.get("messages") or []:
                if _carries_alert(message, alert.alert_id):
                    return True
            cursor = (response.get("response_metadata") or {}).get("next_cursor")
            if not response.get("has_more") or not cursor:
                return False
        logger.warning(
            "notifier %s: more than %d messages in channel history since %s; "
            "cannot tell whether alert %s was already posted",
            self.name,
            MAX_HISTORY_PAGES * HISTORY_PAGE_SIZE,
            oldest,
            alert.alert_id,
        )
        return None


def _api_error_code(error: SlackApiError) -> str:
    """Return the ``error`` field of a Slack API response, such as ``channel_not_found``."""
    data = error.response.data
    if isinstance(data, dict):
        return str(data.get("error") or "unknown error")
    return "unknown error"


def _carries_alert(message: Mapping[str, Any], alert_id: str) -> bool:
    metadata = message.get("metadata") or {}
    if metadata.get("event_type") != METADATA_EVENT_TYPE:
        return False
    payload = metadata.get("event_payload") or {}
    return payload.get("alert_id") == alert_id


def build_slack_notifier(config: SlackNotifierConfig, environ: Mapping[str, str] | None = None) -> SlackNotifier:
    """Build a Slack notifier, reading its secret from the environment now."""
    if config.mode == "bot":
        assert config.token_env is not None
        token = read_secret(config.token_env, "Slack bot token", "xoxb-...", environ)
        return SlackNotifier(
            config.name,
            token=token,
            channel=config.channel,
            base_url=config.base_url,
            timeout_seconds=config.timeout_seconds,
        )
    assert config.webhook_url_env is not None
    webhook_url = read_secret(
        config.webhook_url_env, "Slack incoming webhook URL", "https://hooks.slack.com/services/...", environ
    )
    if not webhook_url.startswith(("http://", "https://")):
        raise GatewatchError(
            f"environment variable {config.webhook_url_env} must contain an http:// or https:// URL "
            "(the Slack incoming webhook URL)"
        )
    return SlackNotifier(config.name, webhook_url=webhook_url, timeout_seconds=config.timeout_seconds)
