"""`sql` rules: one SELECT over the windowed events, for what the other types cannot express.

In the query, `events` holds each event once per window end whose window
contains it, with that window end in an extra column `window_end`. So
`GROUP BY window_end, client_ip` is a sliding-window aggregate, as in an
`aggregate` rule. The query must return `window_end` and every `group_by`
column; its other columns become the alert's measures. A `group_by` column
may be computed by the query (a network prefix, say); only group columns
that are event columns filter the evidence rows.
"""

from __future__ import annotations

import math

from sqlglot import exp

from gatewatch.engine.compiler import CompiledRule, check_summary, expression_error, micros, quote
from gatewatch.engine.rule import Rule
from gatewatch.engine.sqlcheck import ExpressionError, check_query
from gatewatch.errors import RuleError


def compile_sql(rule: Rule) -> CompiledRule:
    if rule.query is None:
        raise RuleError("a sql rule needs `query:`, one SELECT over `events`", rule.path, rule.line_of("type"))
    try:
        tree = check_query(rule.query)
    except ExpressionError as exc:
        raise expression_error(rule, ("query",), exc) from None
    outputs = _output_columns(rule, tree)
    measures = [c for c in outputs if c != "window_end" and c not in rule.group_by]
    check_summary(rule, dict.fromkeys(measures, ""))
    every_us = micros(rule.every)
    window_us = micros(rule.window_length)
    steps = math.ceil(window_us / every_us)
    selected = ", ".join(f"_q.{quote(c)}" for c in [*rule.group_by, *measures])
    candidates_sql = f"""
WITH events AS (
    SELECT * FROM (
        SELECT _e.*, make_timestamp(((epoch_us(_e.ts) + {every_us} - 1) // {every_us} + _step) * {every_us}) AS window_end
        FROM main.events AS _e, range(0, {steps}) AS _steps(_step)
        WHERE _e.ts > $1 AND _e.ts <= $3 AND {rule.exclusion_sql}
    )
    WHERE window_end > $2 AND window_end <= $3 AND epoch_us(ts) > epoch_us(window_end) - {window_us}
)
SELECT _q.window_end AS _window_end, {selected}
FROM ({tree.sql("duckdb")}) AS _q
WHERE _q.window_end > $2 AND _q.window_end <= $3
ORDER BY 1
"""
    return CompiledRule(
        rule=rule,
        where_sql="TRUE",
        having_sql="TRUE",
        measures=dict.fromkeys(measures, ""),
        every_us=every_us,
        window_us=window_us,
        candidates_sql=candidates_sql,
    )


def _output_columns(rule: Rule, tree: exp.Query) -> list[str]:
    if any(isinstance(s, exp.Star) for s in tree.selects):
        raise RuleError(
            "list the query's output columns instead of `*`: window_end, the group_by columns and the measures",
            rule.path,
            rule.line_of("query"),
        )
    outputs = list(tree.named_selects)
    required = ["window_end", *rule.group_by]
    missing = [c for c in required if c not in outputs]
    if missing:
        raise RuleError(
            f"the query does not return {', '.join(missing)}; it must return window_end and every group_by column "
            f"(it returns {', '.join(outputs) or 'nothing'})",
            rule.path,
            rule.line_of("query"),
        )
    return outputs
