"""The Slack notifier: bot mode (chat.postMessage) or incoming-webhook mode.

Secrets are read from environment variables named in the config when the
notifier is built, and never logged. Error messages have the token and the
webhook URL replaced by ``[redacted]``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BeforeValidator, ConfigDict, Field, model_validator
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.webhook import WebhookClient

from gatewatch.duration import parse_duration
from gatewatch.errors import GatewatchError
from gatewatch.notify.alert import Alert
from gatewatch.notify.base import DeliveryError, ThreadContext
from gatewatch.notify.filters import NotifierFilter
from gatewatch.notify.slack_message import (
    DIGEST_EVENT_TYPE,
    METADATA_EVENT_TYPE,
    alert_metadata,
    build_digest,
    build_message,
    build_parent_update,
    digest_metadata,
)

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


class SlackNotifierConfig(NotifierFilter):
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
    # Bot mode: a repeat of a (rule, group key) goes into the thread of the
    # first alert when that alert's window ended at most this long before,
    # in event time. A later repeat starts a new thread.
    thread_window: Annotated[timedelta, BeforeValidator(parse_duration)] = timedelta(hours=24)
    threads: bool = True
    # From this many new alerts in one delivery run, post digests instead;
    # 0 turns digests off.
    digest_threshold: int = Field(default=10, ge=0)

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
        thread_window: timedelta | None = None,
        digest_threshold: int | None = None,
    ):
        if (token is None) == (webhook_url is None):
            raise ValueError("give either token (bot mode) or webhook_url (webhook mode)")
        if token is not None and channel is None:
            raise ValueError("bot mode needs a channel")
        self.name = name
        self.channel = channel
        # Read by the outbox: threads need a bot token, because an incoming
        # webhook returns no message ts to reply to.
        self.thread_window = thread_window if token is not None else None
        self.digest_threshold = digest_threshold or None
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

    def send(self, alert: Alert, thread: ThreadContext | None = None) -> str | None:
        """Post one alert; a repeat goes into ``thread``. Return the message ts (bot mode)."""
        message = build_message(alert, repeat=thread.repeat if thread else None)
        if self._web is None:
            self._send_webhook(message.text, message.blocks)
            return None
        ts = self._post(message.text, message.blocks, alert_metadata(alert), thread.parent_ref if thread else None)
        if thread is not None:
            self._update_parent(thread, alert)
        return ts

    def send_digest(self, alerts: list[Alert], digest_id: str) -> str | None:
        """Post one message that lists ``alerts``. Return the message ts (bot mode)."""
        message = build_digest(alerts)
        if self._web is None:
            self._send_webhook(message.text, message.blocks)
            return None
        return self._post(message.text, message.blocks, digest_metadata(digest_id), None)

    def _post(self, text: str, blocks: list[dict[str, Any]], metadata: dict[str, Any], thread_ts: str | None) -> str | None:
        assert self._web is not None
        web = self._web
        response = self._call(
            "chat.postMessage",
            lambda: web.chat_postMessage(
                channel=self.channel,
                text=text,
                blocks=blocks,
                metadata=metadata,
                thread_ts=thread_ts,
                unfurl_links=False,
                unfurl_media=False,
            ),
        )
        ts = response.get("ts")
        return str(ts) if ts else None

    def _update_parent(self, thread: ThreadContext, latest: Alert) -> None:
        """Rewrite the first alert's message with the repeat count; a failure here is only logged.

        The reply is already delivered, so raising would make the outbox
        send it again.
        """
        assert self._web is not None
        web = self._web
        message = build_parent_update(thread.parent, thread.repeat, latest)
        try:
            self._call(
                "chat.update",
                lambda: web.chat_update(
                    channel=self.channel, ts=thread.parent_ref, text=message.text, blocks=message.blocks
                ),
            )
        except DeliveryError as error:
            logger.warning(
                "notifier %s: could not update the repeat count on message %s of alert %s: %s",
                self.name, thread.parent_ref, thread.parent.alert_id, error,
            )

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

    def already_delivered(self, alert: Alert, since: datetime, thread: ThreadContext | None = None) -> bool | str | None:
        """Look for the alert's message in the channel history since ``since`` (naive UTC).

        Returns the message ts when found. A repeat is looked for among the
        replies of its ``thread``. Webhook mode returns None, because an
        incoming webhook cannot read history: a webhook notifier that dies
        during a send posts again on the next run. Bot mode also returns None
        when the token lacks the history scope or the channel has more than
        MAX_HISTORY_PAGES pages of messages since ``since``.
        """
        return self._find_message(
            METADATA_EVENT_TYPE, "alert_id", alert.alert_id, since, thread.parent_ref if thread else None
        )

    def digest_delivered(self, digest_id: str, since: datetime) -> bool | str | None:
        """Look for a digest's message in the channel history, as already_delivered does for an alert."""
        return self._find_message(DIGEST_EVENT_TYPE, "digest_id", digest_id, since, None)

    def _find_message(
        self, event_type: str, key: str, value: str, since: datetime, thread_ts: str | None
    ) -> bool | str | None:
        if self._web is None:
            return None
        web = self._web
        if since.tzinfo is None:
            since = since.replace(tzinfo=timezone.utc)
        oldest = f"{since.timestamp():.6f}"
        cursor: str | None = None
        method = "conversations.replies" if thread_ts else "conversations.history"
        for _ in range(MAX_HISTORY_PAGES):
            try:
                if thread_ts:
                    response = web.conversations_replies(
                        channel=self.channel,
                        ts=thread_ts,
                        oldest=oldest,
                        include_all_metadata=True,
                        limit=HISTORY_PAGE_SIZE,
                        cursor=cursor,
                    )
                else:
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
                        "whether %s %s was already posted; add the channels:history scope "
                        "(groups:history for a private channel) to avoid a duplicate",
                        self.name,
                        key,
                        value,
                    )
                    return None
                raise self._delivery_error(method, error) from None
            except (SlackClientError, OSError) as error:
                raise self._delivery_error(method, error) from None
            for message in response.get("messages") or []:
                if _carries(message, event_type, key, value):
                    return str(message.get("ts") or "") or True
            cursor = (response.get("response_metadata") or {}).get("next_cursor")
            if not response.get("has_more") or not cursor:
                return False
        logger.warning(
            "notifier %s: more than %d messages in channel history since %s; "
            "cannot tell whether %s %s was already posted",
            self.name,
            MAX_HISTORY_PAGES * HISTORY_PAGE_SIZE,
            oldest,
            key,
            value,
        )
        return None


def _api_error_code(error: SlackApiError) -> str:
    """Return the ``error`` field of a Slack API response, such as ``channel_not_found``."""
    data = error.response.data
    if isinstance(data, dict):
        return str(data.get("error") or "unknown error")
    return "unknown error"


def _carries(message: Mapping[str, Any], event_type: str, key: str, value: str) -> bool:
    metadata = message.get("metadata") or {}
    if metadata.get("event_type") != event_type:
        return False
    payload = metadata.get("event_payload") or {}
    return payload.get(key) == value


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
            thread_window=config.thread_window if config.threads else None,
            digest_threshold=config.digest_threshold,
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
    return SlackNotifier(
        config.name,
        webhook_url=webhook_url,
        timeout_seconds=config.timeout_seconds,
        digest_threshold=config.digest_threshold,
    )
