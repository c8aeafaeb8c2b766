"""`baseline` rules: a window's measure against the same group's own history.

Each evaluated window end stores its per-group measure in
``baseline_history``, in the same transaction as the alerts. A window end
``t`` is compared with the stored values at ``t - k * window`` (``compare:
previous``) or ``t - k days`` (``compare: same_hour``) for k = 1..periods.
Windows in which the group had no matching event store no row; they are
left out of the history, or count as 0 with ``missing: zero``. So a tick reads the new events, the rule's window and a
few stored rows per group, never the whole history.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import duckdb
from sqlglot import exp

from gatewatch.engine.compiler import (
    CompiledRule,
    check_group_by,
    check_summary,
    checked_expression,
    compile_where,
    group_key_sql,
    literal_string,
    micros,
    quote,
    window_aggregate_sql,
)
from gatewatch.engine.rule import Rule
from gatewatch.errors import RuleError

DAY_US = 86_400_000_000
MEASURES = ("value", "baseline_mean", "baseline_stddev", "history_windows", "zscore", "ratio")


def compile_baseline(rule: Rule) -> CompiledRule:
    spec = rule.baseline
    assert spec is not None
    check_group_by(rule)
    where_sql = compile_where(rule)
    tree = checked_expression(
        rule, ("baseline", "measure"), spec.measure, allow_aggregates=True, bare=set(rule.group_by)
    )
    if next(iter(tree.find_all(exp.AggFunc)), None) is None:
        raise RuleError(
            f"`baseline.measure` {spec.measure!r} has no aggregate; use one such as count(*) or sum(bytes_sent)",
            rule.path,
            rule.line_of("baseline", "measure"),
        )
    measure_sql = tree.sql("duckdb")
    every_us = micros(rule.every)
    window_us = micros(rule.window_length)
    step_us = window_us if spec.compare == "previous" else DAY_US
    span_us = step_us * spec.periods
    per_window = window_aggregate_sql(where_sql, rule.group_by, {"value": measure_sql}, "TRUE", every_us, window_us)
    rule_literal = literal_string(rule.id)
    key_sql = group_key_sql(rule.group_by, "cur")

    check_summary(rule, dict.fromkeys(MEASURES, ""))
    compiled = CompiledRule(
        rule=rule,
        where_sql=where_sql,
        having_sql="TRUE",
        measures=dict.fromkeys(MEASURES, ""),
        every_us=every_us,
        window_us=window_us,
        evidence_where=where_sql,
    )
    compiled.candidates_sql = _candidates_sql(rule, per_window, key_sql, rule_literal, step_us, span_us)
    insert_sql = (
        f"INSERT INTO baseline_history SELECT {rule_literal}, {key_sql}, cur._window_end, cur.value "
        f"FROM ({per_window}) AS cur"
    )
    # Window ends after the slice read rows newer than last_end - span;
    # older rows are never read again. Pruning after the candidates query
    # leaves the same rows whatever the slicing, so replays match.
    prune_sql = (
        f"DELETE FROM baseline_history WHERE rule_id = {rule_literal} "
        f"AND epoch_us(window_end) <= epoch_us($1::TIMESTAMP) - {span_us}"
    )

    def store_history(con: duckdb.DuckDBPyConnection, first_end: datetime, last_end: datetime) -> None:
        con.execute(insert_sql, compiled.candidate_params(first_end, last_end))

    def prune_history(con: duckdb.DuckDBPyConnection, first_end: datetime, last_end: datetime) -> None:
        con.execute(prune_sql, [last_end])

    compiled.before_slice = store_history
    compiled.after_slice = prune_history
    return compiled


def _candidates_sql(rule: Rule, per_window: str, key_sql: str, rule_literal: str, step_us: int, span_us: int) -> str:
    spec = rule.baseline
    assert spec is not None
    groups = "".join(f", cur.{quote(c)}" for c in rule.group_by)
    stddev = f"greatest(coalesce(hist.stddev, 0), {float(spec.min_stddev)!r})"
    conditions = [f"hist.windows >= {int(spec.min_history)}"]
    if spec.direction == "up":
        conditions.append(f"cur.value >= {float(spec.min_value)!r}")
        if spec.zscore is not None:
            conditions.append(f"(cur.value - hist.mean) / {stddev} >= {float(spec.zscore)!r}")
        if spec.ratio is not None:
            conditions.append(f"cur.value >= {float(spec.ratio)!r} * hist.mean")
    else:
        conditions.append(f"hist.mean >= {float(spec.min_value)!r}")
        if spec.zscore is not None:
            conditions.append(f"(hist.mean - cur.value) / {stddev} >= {float(spec.zscore)!r}")
        if spec.ratio is not None:
            conditions.append(f"cur.value * {float(spec.ratio)!r} <= hist.mean")
    if spec.missing == "skip":
        statistics = "avg(h.value) AS mean, stddev_pop(h.value) AS stddev"
    else:
        # Windows without a row count as 0: divide by all the periods.
        periods = int(spec.periods)
        mean = f"coalesce(sum(h.value), 0) / {periods}"
        statistics = (
            f"{mean} AS mean, "
            f"sqrt(greatest(coalesce(sum(h.value * h.value), 0) / {periods} - ({mean}) * ({mean}), 0)) AS stddev"
        )
    return f"""
WITH cur AS ({per_window}),
hist AS (
    SELECT cur._window_end, {key_sql} AS _key, count(h.value) AS windows, {statistics}
    FROM cur
    LEFT JOIN baseline_history AS h
      ON h.rule_id = {rule_literal}
     AND h.group_key = {key_sql}
     AND h.window_end < cur._window_end
     AND epoch_us(h.window_end) >= epoch_us(cur._window_end) - {span_us}
     AND (epoch_us(cur._window_end) - epoch_us(h.window_end)) % {step_us} = 0
    GROUP BY ALL
)
SELECT cur._window_end{groups},
       cur.value AS value,
       hist.mean AS baseline_mean,
       hist.stddev AS baseline_stddev,
       hist.windows AS history_windows,
       (cur.value - hist.mean) / {stddev} AS zscore,
       cur.value / nullif(hist.mean, 0) AS ratio
FROM cur
JOIN hist ON hist._window_end = cur._window_end AND hist._key = {key_sql}
WHERE {' AND '.join(conditions)}
ORDER BY cur._window_end{groups}
"""


def history_span(rule: Rule) -> timedelta:
    """Return how far back a window end reads stored history."""
    spec = rule.baseline
    assert spec is not None
    step = rule.window_length if spec.compare == "previous" else timedelta(days=1)
    return step * spec.periods
