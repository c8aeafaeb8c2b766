"""The notifier protocol and its delivery error."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from gatewatch.errors import GatewatchError
from gatewatch.notify.alert import Alert


class DeliveryError(GatewatchError):
    """A notifier could not deliver an alert; the outbox tries again later.

    ``retry_after`` is the wait in seconds that the receiver requested (for
    example from an HTTP 429 ``Retry-After`` header), or None when it gave none.
    """

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class Notifier(Protocol):
    """A destination for alerts.

    ``name`` matches the ``notifier`` column of the outbox. ``send`` raises
    DeliveryError when the alert was not delivered or its delivery is in
    doubt (a timeout, for example).
    """

    name: str

    def send(self, alert: Alert) -> None:
        """Deliver one alert, or raise DeliveryError."""
        ...

    def already_delivered(self, alert: Alert, since: datetime) -> bool | None:
        """Check whether ``alert`` was delivered at or after ``since`` (naive UTC).

        Returns None when the notifier cannot tell; the outbox then sends
        again, so such a notifier may deliver an alert twice after a crash.
        Raises DeliveryError when the check itself fails.
        """
        ...
