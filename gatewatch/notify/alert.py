"""The alert that notifiers send, as read from the ``alerts`` table."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import duckdb

from gatewatch.errors import GatewatchError

# Columns of the ``alerts`` table, in the order of the Alert fields.
ALERT_COLUMNS: tuple[str, ...] = (
    "alert_id",
    "rule_id",
    "title",
    "severity",
    "group_key",
    "window_start",
    "window_end",
    "measures",
    "summary",
    "evidence",
    "query",
    "created_at",
)


def _decode_json(value: Any, column: str, alert_id: str) -> Any:
    """Decode a JSON column, which DuckDB returns as a string."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError as error:
        raise GatewatchError(f"alert {alert_id!r}: column {column} contains invalid JSON ({error})") from error


@dataclass(frozen=True)
class Alert:
    """One alert raised by a rule.

    Times are naive datetimes in UTC, as stored. ``group_key``, ``summary``
    and ``evidence`` contain log content and must be escaped before display.
    """

    alert_id: str
    rule_id: str
    title: str
    severity: str
    group_key: dict[str, Any]
    window_start: datetime
    window_end: datetime
    measures: dict[str, Any]
    summary: str
    evidence: list[dict[str, Any]]
    query: str
    created_at: datetime

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Alert:
        """Build an alert from a row of the ``alerts`` table keyed by column name.

        JSON columns may be given as strings (as DuckDB returns them) or as
        decoded values.
        """
        alert_id = str(row["alert_id"])
        group_key = _decode_json(row["group_key"], "group_key", alert_id) or {}
        measures = _decode_json(row["measures"], "measures", alert_id) or {}
        evidence = _decode_json(row["evidence"], "evidence", alert_id) or []
        if not isinstance(group_key, dict):
            raise GatewatchError(f"alert {alert_id!r}: group_key must be a JSON object, got {group_key!r}")
        if not isinstance(measures, dict):
            raise GatewatchError(f"alert {alert_id!r}: measures must be a JSON object, got {measures!r}")
        if not isinstance(evidence, list):
            raise GatewatchError(f"alert {alert_id!r}: evidence must be a JSON list, got {evidence!r}")
        return cls(
            alert_id=alert_id,
            rule_id=row["rule_id"],
            title=row["title"],
            severity=row["severity"],
            group_key=group_key,
            window_start=row["window_start"],
            window_end=row["window_end"],
            measures=measures,
            summary=row["summary"],
            evidence=[event if isinstance(event, dict) else {"value": event} for event in evidence],
            query=row["query"],
            created_at=row["created_at"],
        )


def load_alert(con: duckdb.DuckDBPyConnection, alert_id: str) -> Alert:
    """Read one alert from the store; raise GatewatchError when it is not there."""
    columns = ", ".join(ALERT_COLUMNS)
    row = con.execute(f"SELECT {columns} FROM alerts WHERE alert_id = ?", [alert_id]).fetchone()
    if row is None:
        raise GatewatchError(f"alert {alert_id!r} not found in the alerts table")
    return Alert.from_row(dict(zip(ALERT_COLUMNS, row)))


def format_utc(moment: datetime) -> str:
    """Format a UTC datetime as ISO 8601 with a ``Z`` suffix.

    A naive datetime is taken to be in UTC, as the store keeps them.
    """
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return moment.isoformat(timespec="seconds") + "Z"


def alert_document(alert: Alert) -> dict[str, Any]:
    """Return the alert as a JSON-ready dict, the body the webhook and JSON-lines notifiers write.

    Times are ISO 8601 UTC strings with a ``Z`` suffix. Log content is left
    as it is: a JSON consumer must treat it as untrusted data.
    """
    return {
        "alert_id": alert.alert_id,
        "rule_id": alert.rule_id,
        "title": alert.title,
        "severity": alert.severity,
        "group_key": alert.group_key,
        "window_start": format_utc(alert.window_start),
        "window_end": format_utc(alert.window_end),
        "measures": alert.measures,
        "summary": alert.summary,
        "evidence": alert.evidence,
        "query": alert.query,
        "created_at": format_utc(alert.created_at),
        "details_command": f"gatewatch alerts show {alert.alert_id}",
    }
