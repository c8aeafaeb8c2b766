"""Evaluate compiled rules in event time, up to the watermark, exactly once.

For each rule, ``rule_state.evaluated_to`` is the last window end already
evaluated. A tick evaluates the window ends after it, up to the watermark,
in slices; each slice's alerts, their outbox rows and the new
``evaluated_to`` commit in one transaction, so a crash repeats no slice and
skips none.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from gatewatch.duration import format_duration
from gatewatch.engine.compiler import EVIDENCE_COLUMNS, CompiledRule
from gatewatch.store import Store, utc_now

# Window ends evaluated per transaction during catch-up; bounds the memory
# and the work lost if a long catch-up is interrupted.
MAX_SLICE = timedelta(days=1)
EPOCH = datetime(1970, 1, 1)


@dataclass
class EvaluationSettings:
    lateness: timedelta = timedelta(minutes=1)
    new_rule_lookback: timedelta = timedelta(days=7)
    evidence_rows: int = 5


@dataclass
class RuleReport:
    rule_id: str
    evaluated_from: datetime | None = None
    evaluated_to: datetime | None = None
    alert_ids: list[str] = field(default_factory=list)
    suppressed: int = 0


def watermark(store: Store, lateness: timedelta) -> datetime | None:
    """Return the newest event time minus the allowed lateness."""
    newest = store.watermark_source_max()
    return None if newest is None else newest - lateness


def floor_to_grid(value: datetime, step_us: int) -> datetime:
    micros = (value - EPOCH) // timedelta(microseconds=1)
    return EPOCH + timedelta(microseconds=(micros // step_us) * step_us)


def evaluate_rule(
    store: Store,
    rule: CompiledRule,
    notifiers: list[str],
    settings: EvaluationSettings,
    until: datetime | None = None,
) -> RuleReport:
    """Evaluate every window end of ``rule`` not yet evaluated, up to ``until``.

    ``until`` defaults to the store's watermark. New alerts get one pending
    outbox row per name in ``notifiers``.
    """
    report = RuleReport(rule_id=rule.id)
    limit = until if until is not None else watermark(store, settings.lateness)
    if limit is None:
        return report
    last_end = floor_to_grid(limit, rule.every_us)
    start = _evaluated_to(store, rule, limit, settings)
    if start is None or last_end <= start:
        return report
    report.evaluated_from = start
    slice_start = start
    while slice_start < last_end:
        slice_start = _skip_empty_span(store, rule, slice_start, last_end)
        slice_end = min(last_end, floor_to_grid(slice_start + MAX_SLICE, rule.every_us))
        if slice_end <= slice_start:
            slice_end = last_end
        with store.transaction():
            _evaluate_slice(store, rule, slice_start, slice_end, notifiers, settings, report)
            _save_evaluated_to(store, rule.id, slice_end)
        slice_start = slice_end
    report.evaluated_to = last_end
    return report


def _skip_empty_span(store: Store, rule: CompiledRule, start: datetime, last_end: datetime) -> datetime:
    """Move ``start`` past window ends whose windows hold no event at all.

    After a gap in the logs (days without traffic, or an old file followed
    by a new one), this jumps to the next event instead of evaluating every
    empty window in between.
    """
    window = timedelta(microseconds=rule.window_us)
    step = timedelta(microseconds=rule.every_us)
    next_event = store.con.execute(
        "SELECT min(ts) FROM events WHERE ts > ? AND ts <= ?", [start - window, last_end]
    ).fetchone()[0]
    if next_event is None:
        return last_end
    # Window ends up to one step before the next event's grid point cover
    # only the empty span (start - window, next_event).
    return max(start, floor_to_grid(next_event, rule.every_us) - step)


def _evaluated_to(store: Store, rule: CompiledRule, limit: datetime, settings: EvaluationSettings) -> datetime | None:
    row = store.con.execute("SELECT evaluated_to FROM rule_state WHERE rule_id = ?", [rule.id]).fetchone()
    if row is not None:
        return row[0]
    earliest = store.earliest_event()
    if earliest is None:
        return None
    first = max(earliest, limit - settings.new_rule_lookback)
    # Start one step before the first event so its own window end is evaluated.
    return floor_to_grid(first, rule.every_us) - timedelta(microseconds=rule.every_us)


def _save_evaluated_to(store: Store, rule_id: str, value: datetime) -> None:
    store.con.execute("DELETE FROM rule_state WHERE rule_id = ?", [rule_id])
    store.con.execute("INSERT INTO rule_state VALUES (?, ?, ?)", [rule_id, value, utc_now()])


def _evaluate_slice(
    store: Store,
    rule: CompiledRule,
    first_end: datetime,
    last_end: datetime,
    notifiers: list[str],
    settings: EvaluationSettings,
    report: RuleReport,
) -> None:
    """Find, suppress and store the alerts for window ends in (first_end, last_end]."""
    window = timedelta(microseconds=rule.window_us)
    cursor = store.con.execute(
        rule.candidates_sql, [first_end - window, last_end, first_end, last_end]
    )
    names = [d[0] for d in cursor.description]
    candidates = [dict(zip(names, row)) for row in cursor.fetchall()]
    if not candidates:
        return
    group_columns = rule.rule.group_by
    last_alert = _last_alert_ends(store, rule.id)
    suppress = rule.rule.suppress
    for candidate in candidates:
        window_end = candidate["_window_end"]
        group = {c: _jsonable(candidate[c]) for c in group_columns}
        key = _group_json(group)
        previous = last_alert.get(key)
        if previous is not None and window_end < previous + suppress:
            report.suppressed += 1
            continue
        last_alert[key] = window_end
        measures = {name: _jsonable(candidate[name]) for name in rule.measures}
        alert_id = _store_alert(store, rule, group, window_end - window, window_end, measures, notifiers, settings)
        report.alert_ids.append(alert_id)


def _last_alert_ends(store: Store, rule_id: str) -> dict[str, datetime]:
    rows = store.con.execute(
        "SELECT group_key::VARCHAR, max(window_end) FROM alerts WHERE rule_id = ? GROUP BY 1", [rule_id]
    ).fetchall()
    return {_group_json(json.loads(key)): end for key, end in rows}


def _store_alert(
    store: Store,
    rule: CompiledRule,
    group: dict[str, Any],
    window_start: datetime,
    window_end: datetime,
    measures: dict[str, Any],
    notifiers: list[str],
    settings: EvaluationSettings,
) -> str:
    group_key = _group_json(group)
    alert_id = alert_identifier(rule.id, group_key, window_end)
    evidence = _evidence(store, rule, group, window_start, window_end, settings.evidence_rows)
    summary = render_summary(rule, group, measures, window_start, window_end)
    store.con.execute(
        "INSERT INTO alerts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        [
            alert_id,
            rule.id,
            rule.rule.title,
            rule.rule.severity,
            group_key,
            window_start,
            window_end,
            json.dumps(measures),
            summary,
            json.dumps(evidence),
            rule.reproduce_sql(window_start, window_end, group),
            utc_now(),
        ],
    )
    for notifier in notifiers:
        store.con.execute(
            "INSERT INTO outbox (alert_id, notifier, state, attempts) VALUES (?, ?, 'pending', 0) "
            "ON CONFLICT DO NOTHING",
            [alert_id, notifier],
        )
    return alert_id


def alert_identifier(rule_id: str, group_key: str, window_end: datetime) -> str:
    """Derive the alert id from what makes an alert unique, so a retry cannot double it."""
    digest = hashlib.sha256(f"{rule_id}\x00{group_key}\x00{window_end.isoformat()}".encode())
    return digest.hexdigest()[:16]


def _evidence(
    store: Store, rule: CompiledRule, group: dict[str, Any], start: datetime, end: datetime, limit: int
) -> list[dict[str, Any]]:
    if limit <= 0:
        return []
    params = [start, end] + [group[c] for c in rule.rule.group_by]
    rows = store.con.execute(rule.evidence_sql(limit), params).fetchall()
    return [{c: _jsonable(v) for c, v in zip(EVIDENCE_COLUMNS, row)} for row in rows]


def render_summary(
    rule: CompiledRule, group: dict[str, Any], measures: dict[str, Any], start: datetime, end: datetime
) -> str:
    """Fill the rule's summary template; without one, list the group and measures."""
    values: dict[str, Any] = {
        "window": format_duration(end - start),
        "window_start": start.isoformat(),
        "window_end": end.isoformat(),
        "rule": rule.id,
        "title": rule.rule.title,
        "severity": rule.rule.severity,
        **{name: _display(value) for name, value in measures.items()},
        **group,
    }
    if rule.rule.summary:
        return rule.rule.summary.format_map(values)
    parts = [f"{k}={v}" for k, v in group.items()]
    parts += [f"{k}={_display(v)}" for k, v in measures.items()]
    return f"{rule.rule.title}: " + ", ".join(parts)


def _display(value: Any) -> Any:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return value


def _group_json(group: dict[str, Any]) -> str:
    return json.dumps(group, sort_keys=True)


def _jsonable(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return value
