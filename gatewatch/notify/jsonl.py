"""The JSON-lines notifier: each alert as one line appended to a file.

Each line is the alert document (see ``alert_document``), written with one
``write`` and flushed to disk before the send counts as done. After a crash
during a send, the outbox calls ``already_delivered``, which looks for the
alert id in the last ``SCAN_BYTES`` of the file.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import ConfigDict

from gatewatch.notify.alert import Alert, alert_document
from gatewatch.notify.base import DeliveryError
from gatewatch.notify.filters import NotifierFilter

# Tail of the file searched for an earlier delivery.
SCAN_BYTES = 16 * 1024 * 1024


class JsonlNotifierConfig(NotifierFilter):
    """Settings of the JSON-lines notifier; ``path`` is read from the config file's folder."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["jsonl"]
    name: str = "jsonl"
    path: str


class JsonlNotifier:
    """Append alerts to a JSON-lines file."""

    def __init__(self, name: str, path: Path):
        self.name = name
        self.path = path

    def __repr__(self) -> str:
        return f"JsonlNotifier(name={self.name!r}, path={str(self.path)!r})"

    @staticmethod
    def line_of(alert: Alert) -> bytes:
        return (json.dumps(alert_document(alert), ensure_ascii=False, sort_keys=True) + "\n").encode()

    def send(self, alert: Alert) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                os.write(descriptor, self.line_of(alert))
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
        except OSError as error:
            raise DeliveryError(f"cannot append to {self.path}: {error.strerror}") from None
        return None

    def already_delivered(self, alert: Alert, since: datetime) -> bool | None:
        """Search the end of the file for the alert id; None when the file is larger than the search."""
        needle = json.dumps({"alert_id": alert.alert_id})[1:-1].encode()
        try:
            with self.path.open("rb") as handle:
                size = handle.seek(0, os.SEEK_END)
                handle.seek(max(0, size - SCAN_BYTES))
                tail = handle.read()
        except FileNotFoundError:
            return False
        except OSError as error:
            raise DeliveryError(f"cannot read {self.path}: {error.strerror}") from None
        if needle in tail:
            return True
        return None if size > SCAN_BYTES else False
