"""The generic webhook notifier: each alert as a signed JSON POST.

The body is the alert document (see ``alert_document``) with ``"type":
"gatewatch.alert"``. When ``secret_env`` names an environment variable,
each request carries ``X-Gatewatch-Timestamp`` (Unix seconds) and
``X-Gatewatch-Signature: sha256=<hex>``, the HMAC-SHA256 of
``<timestamp>.<body>`` keyed with that secret. A receiver recomputes it
over the raw body, compares in constant time and rejects old timestamps.
``X-Gatewatch-Alert-Id`` lets a receiver drop the duplicate that a crash
during a send can cause, because a webhook offers no way to check for an
earlier delivery.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from datetime import datetime
from typing import Literal

from pydantic import ConfigDict, Field, field_validator

from gatewatch.notify.alert import Alert, alert_document
from gatewatch.notify.base import DeliveryError
from gatewatch.notify.filters import NotifierFilter
from gatewatch.notify.slack import DEFAULT_RETRY_AFTER, read_secret

SIGNATURE_HEADER = "X-Gatewatch-Signature"
TIMESTAMP_HEADER = "X-Gatewatch-Timestamp"
ALERT_ID_HEADER = "X-Gatewatch-Alert-Id"
USER_AGENT = "gatewatch-webhook"
# Bytes of an error response quoted in the error message.
ERROR_BODY_CHARS = 200


class WebhookNotifierConfig(NotifierFilter):
    """Settings of the webhook notifier."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["webhook"]
    name: str = "webhook"
    url: str
    # Environment variable that contains the HMAC key. Without it, requests are unsigned.
    secret_env: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    timeout_seconds: float = Field(default=10, gt=0)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"url must start with http:// or https://, got {value!r}")
        return value


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """Return the signature header value for ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


class WebhookNotifier:
    """POST each alert as JSON to one URL."""

    def __init__(
        self,
        name: str,
        url: str,
        *,
        secret: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout_seconds: float = 10,
    ):
        self.name = name
        self.url = url
        self._secret = secret.encode() if secret else None
        self.headers = dict(headers or {})
        self.timeout_seconds = timeout_seconds

    def __repr__(self) -> str:
        return f"WebhookNotifier(name={self.name!r}, signed={self._secret is not None})"

    def send(self, alert: Alert) -> None:
        body = json.dumps({"type": "gatewatch.alert", **alert_document(alert)}, ensure_ascii=False).encode()
        headers = {
            **self.headers,
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": USER_AGENT,
            ALERT_ID_HEADER: alert.alert_id,
        }
        if self._secret is not None:
            timestamp = str(int(time.time()))
            headers[TIMESTAMP_HEADER] = timestamp
            headers[SIGNATURE_HEADER] = sign(self._secret, timestamp, body)
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_seconds) as response:
                response.read()
        except urllib.error.HTTPError as error:
            detail = error.read(ERROR_BODY_CHARS).decode("utf-8", "replace").strip()
            if error.code == 429:
                retry_after = _retry_after(error.headers.get("Retry-After"))
                raise DeliveryError(
                    f"webhook rate limited (HTTP 429); retry after {retry_after:g} s", retry_after=retry_after
                ) from None
            raise DeliveryError(f"webhook failed: HTTP {error.code} {detail}".rstrip()) from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise DeliveryError(f"webhook request failed: {reason}") from None
        return None

    def already_delivered(self, alert: Alert, since: datetime) -> bool | None:
        # A plain webhook keeps nothing the notifier could read back.
        return None


def _retry_after(value: str | None) -> float:
    try:
        return max(0.0, float(value)) if value is not None else DEFAULT_RETRY_AFTER
    except ValueError:
        return DEFAULT_RETRY_AFTER


def build_webhook_notifier(config: WebhookNotifierConfig, environ: Mapping[str, str] | None = None) -> WebhookNotifier:
    """Build a webhook notifier, reading its HMAC key from the environment now."""
    secret = None
    if config.secret_env is not None:
        secret = read_secret(config.secret_env, "webhook signing secret", "a-long-random-string", environ)
    return WebhookNotifier(
        config.name, config.url, secret=secret, headers=config.headers, timeout_seconds=config.timeout_seconds
    )
