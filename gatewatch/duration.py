"""Durations written as ``30s``, ``5m``, ``1h``, ``7d`` in config and rules."""

from __future__ import annotations

import re
from datetime import timedelta

_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d)\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_SECONDS = 36500 * 86400


def parse_duration(text: object) -> timedelta:
    """Parse ``<integer><unit>`` with unit s, m, h or d; raise ValueError otherwise."""
    if isinstance(text, timedelta):
        return text
    match = _DURATION.match(str(text))
    if match is None:
        raise ValueError(
            f"invalid duration {text!r}: write a whole number and a unit, "
            "s, m, h or d, such as 30s, 5m, 1h or 7d"
        )
    seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds == 0:
        raise ValueError(f"invalid duration {text!r}: it must be longer than zero")
    if seconds > MAX_SECONDS:
        raise ValueError(f"invalid duration {text!r}: the maximum is 36500d (100 years)")
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """Write a duration in the largest unit that divides it: 300 s → ``5m``."""
    seconds = int(value.total_seconds())
    for unit in ("d", "h", "m"):
        if seconds % _UNIT_SECONDS[unit] == 0:
            return f"{seconds // _UNIT_SECONDS[unit]}{unit}"
    return f"{seconds}s"
