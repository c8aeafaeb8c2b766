"""The notifier protocol and its delivery error."""

from __future__ import annotations

from dataclasses import dataclass
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


@dataclass(frozen=True)
class ThreadContext:
    """The thread a repeated alert goes into: that of the first alert of its rule and group.

    ``parent_ref`` is the receiver's id of the first alert's message (a
    Slack message ts). ``repeat`` counts the alerts of the series up to
    this one, so the first repeat is 2.
    """

    parent_ref: str
    parent: Alert
    repeat: int


class Notifier(Protocol):
    """A destination for alerts.

    ``name`` matches the ``notifier`` column of the outbox. ``send`` raises
    DeliveryError when the alert was not delivered or its delivery is in
    doubt (a timeout, for example), and may return the receiver's id of the
    message, which the outbox stores as ``message_ref``.

    Optional capabilities, read with ``getattr``: ``supports_threads``
    (True: ``send`` and ``already_delivered`` take a ``thread`` argument),
    and ``digest_threshold`` (an int: from this many new alerts in one run,
    the outbox calls ``send_digest`` and ``digest_delivered`` instead).
    The outbox sets ``retry_not_before`` (a ``time.monotonic()`` value) on
    a notifier whose receiver requested a long wait.
    """

    name: str

    def send(self, alert: Alert) -> str | None:
        """Deliver one alert, or raise DeliveryError."""
        ...

    def already_delivered(self, alert: Alert, since: datetime) -> bool | str | None:
        """Check whether ``alert`` was delivered at or after ``since`` (naive UTC).

        Returns True, or the message id as a string, when it was; False when
        it was not; None when the notifier cannot tell. On None the outbox
        sends again, so such a notifier may deliver an alert twice after a
        crash. Raises DeliveryError when the check itself fails.
        """
        ...
