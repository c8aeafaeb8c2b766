"""Evaluate compiled rules in event time, up to the watermark, exactly once.

For each rule, ``rule_state.evaluated_to`` is the last window end already
evaluated. A tick evaluates the window ends after it, up to the watermark,
in slices; each slice's alerts, their outbox rows, the rule type's state
(baseline history, seen values) and the new ``evaluated_to`` commit in one
transaction, so a crash repeats no slice and skips none.

Alerts for window ends older than ``catch_up_after`` before the watermark
are catch-up alerts. They are stored without outbox rows. When the run
ends, they are queued one by one if there are at most
``catch_up_max_alerts`` of them, or else as one digest alert.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from gatewatch.duration import format_duration
from gatewatch.engine.compiler import EVIDENCE_COLUMNS, CompiledRule
from gatewatch.engine.enrich import ensure_networks
from gatewatch.store import Store, utc_now

# Window ends evaluated per transaction during catch-up; bounds the memory
# and the work lost if a long catch-up is interrupted.
MAX_SLICE = timedelta(days=1)
EPOCH = datetime(1970, 1, 1)


SEVERITY_ORDER = ("low", "medium", "high", "critical")


@dataclass
class EvaluationSettings:
    lateness: timedelta = timedelta(minutes=1)
    new_rule_lookback: timedelta = timedelta(days=7)
    evidence_rows: int = 5
    # None turns catch-up grouping off (rule tests, backtests).
    catch_up_after: timedelta | None = timedelta(hours=1)
    catch_up_max_alerts: int = 5

    @classmethod
    def from_config(cls, engine: Any, lateness: timedelta | None = None) -> EvaluationSettings:
        """Build the settings from the config's `engine:` section; ``lateness`` overrides its allowed_lateness."""
        return cls(
            lateness=engine.allowed_lateness if lateness is None else lateness,
            new_rule_lookback=engine.new_rule_lookback,
            evidence_rows=engine.evidence_rows,
            catch_up_after=engine.catch_up_after,
            catch_up_max_alerts=engine.catch_up_max_alerts,
        )


@dataclass
class RuleReport:
    rule_id: str
    evaluated_from: datetime | None = None
    evaluated_to: datetime | None = None
    alert_ids: list[str] = field(default_factory=list)
    suppressed: int = 0
    # Catch-up alerts grouped into a digest, and the digest's id.
    grouped: int = 0
    digest_id: str | None = None


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
    if rule.rule.network_files:
        ensure_networks(store.con, [Path(name) for name in rule.rule.network_files])
    limit = until if until is not None else watermark(store, settings.lateness)
    if limit is None:
        return report
    last_end = floor_to_grid(limit, rule.every_us)
    start = _evaluated_to(store, rule, limit, settings)
    catch_up_before = None if settings.catch_up_after is None else limit - settings.catch_up_after
    if start is None or last_end <= start:
        if catch_up_before is not None:
            # A run that died before the end may have left catch-up alerts unqueued.
            with store.transaction():
                _deliver_catch_up(store, rule, notifiers, settings, report)
        return report
    report.evaluated_from = start
    slice_start = start
    while slice_start < last_end:
        if rule.before_slice is None and rule.after_slice is None:
            # Types with state must see every slice, so that history
            # pruning and expiry move on in step.
            slice_start = _skip_empty_span(store, rule, slice_start, last_end)
        slice_end = min(last_end, floor_to_grid(slice_start + MAX_SLICE, rule.every_us))
        if slice_end <= slice_start:
            slice_end = last_end
        with store.transaction():
            _evaluate_slice(store, rule, slice_start, slice_end, notifiers, settings, report, catch_up_before)
            _save_evaluated_to(store, rule.id, slice_end)
        slice_start = slice_end
    if catch_up_before is not None:
        with store.transaction():
            _deliver_catch_up(store, rule, notifiers, settings, report)
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
    catch_up_before: datetime | None = None,
) -> None:
    """Find, suppress and store the alerts for window ends in (first_end, last_end]."""
    window = timedelta(microseconds=rule.window_us)
    if rule.before_slice is not None:
        rule.before_slice(store.con, first_end, last_end)
    cursor = store.con.execute(rule.candidates_sql, rule.candidate_params(first_end, last_end))
    names = [d[0] for d in cursor.description]
    candidates = [dict(zip(names, row)) for row in cursor.fetchall()]
    if rule.after_slice is not None:
        rule.after_slice(store.con, first_end, last_end)
    if not candidates:
        return
    escalate = rule.rule.escalate
    history = _alert_history(store, rule.id, first_end - max(rule.rule.suppress, escalate.within))
    suppress = rule.rule.suppress
    for candidate in candidates:
        window_end = candidate["_window_end"]
        group = {c: _jsonable(candidate[c]) for c in rule.group_columns}
        key = _group_json(group)
        earlier = history.setdefault(key, [])
        if earlier and window_end < max(earlier) + suppress:
            report.suppressed += 1
            continue
        earlier.append(window_end)
        fired = sum(1 for end in earlier if end > window_end - escalate.within)
        measures = {name: _jsonable(candidate[name]) for name in rule.measures}
        alert = PendingAlert(group, window_end - window, window_end, measures, fired)
        catch_up = catch_up_before is not None and window_end < catch_up_before
        alert_id = _store_alert(store, rule, alert, [] if catch_up else notifiers, settings, catch_up)
        report.alert_ids.append(alert_id)


@dataclass
class PendingAlert:
    group: dict[str, Any]
    window_start: datetime
    window_end: datetime
    measures: dict[str, Any]
    # Alerts of this (rule, group) within `escalate.within`, this one included.
    fired: int


def _alert_history(store: Store, rule_id: str, since: datetime) -> dict[str, list[datetime]]:
    """Return the window ends of the rule's alerts after ``since``, per group key.

    Catch-up digests are left out: they stand for many groups.
    """
    rows = store.con.execute(
        "SELECT group_key::VARCHAR, list(window_end) FROM alerts "
        "WHERE rule_id = ? AND window_end > ? AND group_key->>'catch_up' IS NULL GROUP BY 1",
        [rule_id, since],
    ).fetchall()
    history: dict[str, list[datetime]] = {}
    for key, ends in rows:
        history[_group_json(json.loads(key))] = list(ends)
    return history


def escalated_severity(severity: str, fired: int, after: int) -> str:
    """Raise ``severity`` one level for every ``after`` alerts of the same group."""
    level = SEVERITY_ORDER.index(severity) + fired // after
    return SEVERITY_ORDER[min(level, len(SEVERITY_ORDER) - 1)]


ALERT_INSERT = (
    "INSERT INTO alerts (alert_id, rule_id, title, severity, group_key, window_start, window_end, measures, "
    "summary, evidence, query, created_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
)
DETAILS_INSERT = "INSERT INTO alert_details VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING"


def _store_alert(
    store: Store,
    rule: CompiledRule,
    alert: PendingAlert,
    notifiers: list[str],
    settings: EvaluationSettings,
    catch_up: bool = False,
) -> str:
    group_key = _group_json(alert.group)
    alert_id = alert_identifier(rule.id, group_key, alert.window_end)
    evidence = _evidence(store, rule, alert.group, alert.window_start, alert.window_end, settings.evidence_rows)
    summary = render_summary(rule, alert.group, alert.measures, alert.window_start, alert.window_end)
    severity = rule.rule.severity
    measures = dict(alert.measures)
    escalate = rule.rule.escalate
    if alert.fired >= escalate.after:
        severity = escalated_severity(severity, alert.fired, escalate.after)
        measures["times_fired"] = alert.fired
        summary += f" (repeat offender: alert {alert.fired} for this group within {format_duration(escalate.within)})"
    store.con.execute(
        ALERT_INSERT,
        [
            alert_id,
            rule.id,
            rule.rule.title,
            severity,
            group_key,
            alert.window_start,
            alert.window_end,
            json.dumps(measures),
            summary,
            json.dumps(evidence),
            rule.reproduce_sql(alert.window_start, alert.window_end, alert.group),
            utc_now(),
        ],
    )
    store.con.execute(DETAILS_INSERT, [alert_id, rule.producing_sql(alert.window_end), catch_up, None])
    _queue(store, alert_id, notifiers)
    return alert_id


def _queue(store: Store, alert_id: str, notifiers: list[str]) -> None:
    for notifier in notifiers:
        store.con.execute(
            "INSERT INTO outbox (alert_id, notifier, state, attempts) VALUES (?, ?, 'pending', 0) "
            "ON CONFLICT DO NOTHING",
            [alert_id, notifier],
        )


def _deliver_catch_up(
    store: Store, rule: CompiledRule, notifiers: list[str], settings: EvaluationSettings, report: RuleReport
) -> None:
    """Queue the rule's undelivered catch-up alerts, one by one or as one digest.

    Runs after the slices, and again on the next run if a crash came first:
    an alert is marked with ``digest_id`` once it is queued or grouped.
    """
    rows = store.con.execute(
        "SELECT alert_id, window_start, window_end, severity, group_key::VARCHAR, summary "
        "FROM alerts JOIN alert_details USING (alert_id) "
        "WHERE rule_id = ? AND catch_up AND digest_id IS NULL ORDER BY window_end, alert_id",
        [rule.id],
    ).fetchall()
    if not rows:
        return
    if len(rows) <= settings.catch_up_max_alerts:
        for alert_id, *_ in rows:
            _queue(store, alert_id, notifiers)
            store.con.execute("UPDATE alert_details SET digest_id = alert_id WHERE alert_id = ?", [alert_id])
        return
    member_ids = [row[0] for row in rows]
    digest_id = hashlib.sha256(("\x00".join([rule.id, "catch-up", *member_ids])).encode()).hexdigest()[:16]
    groups = {row[4] for row in rows}
    severity = max((row[3] for row in rows), key=SEVERITY_ORDER.index)
    first_end, last_end = rows[0][2], rows[-1][2]
    measures = {
        "alerts": len(rows),
        "groups": len(groups),
        "first_window_end": first_end.isoformat(),
        "last_window_end": last_end.isoformat(),
    }
    summary = (
        f"{len(rows)} alerts for {len(groups)} groups between {first_end.isoformat()} and {last_end.isoformat()}, "
        f"raised while catching up on missed evaluations; list them with "
        f"`gatewatch alerts list --rule {rule.id}`"
    )
    store.con.execute(
        ALERT_INSERT,
        [
            digest_id,
            rule.id,
            f"{rule.rule.title} (catch-up digest)",
            severity,
            json.dumps({"catch_up": f"{len(rows)} alerts"}),
            min(row[1] for row in rows),
            last_end,
            json.dumps(measures),
            summary,
            # The members are the evidence; `gatewatch alerts show` lists them.
            "[]",
            "SELECT alerts.* FROM alerts JOIN alert_details USING (alert_id) "
            f"WHERE digest_id = '{digest_id}' AND alert_id <> '{digest_id}' ORDER BY window_end",
            utc_now(),
        ],
    )
    store.con.execute(DETAILS_INSERT, [digest_id, None, False, digest_id])
    _queue(store, digest_id, notifiers)
    store.con.execute(
        "UPDATE alert_details SET digest_id = ? WHERE alert_id IN (SELECT unnest(?::VARCHAR[]))",
        [digest_id, member_ids],
    )
    report.grouped += len(rows)
    report.digest_id = digest_id
    report.alert_ids.append(digest_id)


def alert_identifier(rule_id: str, group_key: str, window_end: datetime) -> str:
    """Derive the alert id from what makes an alert unique, so a retry cannot double it."""
    digest = hashlib.sha256(f"{rule_id}\x00{group_key}\x00{window_end.isoformat()}".encode())
    return digest.hexdigest()[:16]


def _evidence(
    store: Store, rule: CompiledRule, group: dict[str, Any], start: datetime, end: datetime, limit: int
) -> list[dict[str, Any]]:
    if limit <= 0:
        return []
    params = [start, end] + [group[c] for c in rule.evidence_columns]
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
        **{name: _display(value) for name, value in group.items()},
    }
    if rule.rule.summary:
        return rule.rule.summary.format_map(values)
    parts = [f"{k}={_display(v)}" for k, v in group.items()]
    parts += [f"{k}={_display(v)}" for k, v in measures.items()]
    return f"{rule.rule.title}: " + ", ".join(parts)


def _display(value: Any) -> Any:
    # A missing value (a log field that was "-") reads as "-", as in the log, not as Python's None.
    if value is None:
        return "-"
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
