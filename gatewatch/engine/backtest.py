"""Run rules over stored history without delivering or recording anything.

The store is attached read-only to an in-memory DuckDB database that has the
gatewatch schema, and ``events`` there is a view over the stored events.
Alerts, outbox rows and rule state are written only to the in-memory
database, so the store itself cannot change.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import duckdb

from gatewatch.engine.baseline import history_span
from gatewatch.engine.compiler import CompiledRule, literal_string
from gatewatch.engine.evaluator import EvaluationSettings, evaluate_rule, floor_to_grid
from gatewatch.errors import StoreError
from gatewatch.store import Store


@dataclass
class BacktestResult:
    rule_id: str
    alerts: int = 0
    groups: int = 0
    suppressed: int = 0
    first: datetime | None = None
    last: datetime | None = None
    # The groups that fired most, with their alert counts.
    top_groups: list[tuple[dict, int]] = field(default_factory=list)
    error: str | None = None


def warmup(rule: CompiledRule) -> timedelta:
    """Return how long before ``--from`` a rule needs to read to build its state.

    Baselines need their history and new_value rules their seen values;
    alerts inside the warm-up are not counted.
    """
    if rule.rule.baseline is not None:
        return history_span(rule.rule)
    if rule.rule.new_value is not None:
        return rule.rule.new_value.history
    return timedelta(0)


def backtest(
    database: str | Path, rules: list[CompiledRule], start: datetime, end: datetime, top: int = 3
) -> list[BacktestResult]:
    """Evaluate ``rules`` over the stored events from ``start`` to ``end``."""
    if end <= start:
        raise StoreError(f"--to ({end.isoformat()}) must be later than --from ({start.isoformat()})")
    results = []
    with _sandbox(database) as store:
        # Past the newest stored event, every group would look silent to a
        # flatline rule; a live run would not have evaluated that far.
        newest = store.con.execute("SELECT max(ts) FROM events").fetchone()[0]
        if newest is not None:
            end = min(end, newest)
        settings = EvaluationSettings(lateness=timedelta(0), evidence_rows=0, catch_up_after=None)
        for rule in rules:
            result = BacktestResult(rule.id)
            results.append(result)
            first_end = floor_to_grid(start - warmup(rule), rule.every_us)
            store.con.execute("INSERT INTO rule_state VALUES (?, ?, ?)", [rule.id, first_end, start])
            try:
                report = evaluate_rule(store, rule, [], settings, until=end)
            except duckdb.Error as exc:
                result.error = str(exc).splitlines()[0]
                continue
            rows = store.con.execute(
                "SELECT group_key::VARCHAR, window_end FROM alerts WHERE rule_id = ? AND window_end > ? "
                "ORDER BY window_end",
                [rule.id, start],
            ).fetchall()
            counts = Counter(key for key, _ in rows)
            result.alerts = len(rows)
            result.groups = len(counts)
            result.suppressed = report.suppressed
            if rows:
                result.first, result.last = rows[0][1], rows[-1][1]
            result.top_groups = [(json.loads(key), count) for key, count in counts.most_common(top)]
    return results


class _sandbox:
    """An in-memory store whose `events` is a read-only view of ``database``."""

    def __init__(self, database: str | Path):
        self.database = Path(database)

    def __enter__(self) -> Store:
        if not self.database.exists():
            raise StoreError("database not found; run `gatewatch run --once` first", self.database)
        self.store = Store(":memory:")
        try:
            self.store.con.execute(f"ATTACH {literal_string(str(self.database))} AS stored (READ_ONLY)")
        except duckdb.Error as exc:
            self.store.close()
            raise StoreError(f"cannot open the database read-only: {str(exc).splitlines()[0]}", self.database) from None
        self.store.con.execute("DROP TABLE events")
        self.store.con.execute("CREATE VIEW events AS SELECT * FROM stored.events")
        return self.store

    def __exit__(self, *exc_info: object) -> None:
        self.store.close()
