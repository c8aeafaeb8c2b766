"""`flatline` rules: a group that sent events and then went quiet.

For each event the query finds the group's next event. When none follows
within ``quiet``, the group alerts at the first window end on the grid at
least ``quiet`` after that event. Evaluation runs in event time, so the
silence of one source shows only while other sources keep moving the
watermark. When every source stops, the watermark stops too.
"""

from __future__ import annotations

from gatewatch.engine.compiler import (
    CompiledRule,
    check_group_by,
    check_summary,
    compile_where,
    grid_ceiling_sql,
    micros,
    quote,
)
from gatewatch.engine.rule import Rule

MEASURES = ("last_event", "quiet_minutes")


def compile_flatline(rule: Rule) -> CompiledRule:
    spec = rule.flatline
    assert spec is not None
    check_group_by(rule)
    check_summary(rule, dict.fromkeys(MEASURES, ""))
    where_sql = compile_where(rule)
    every_us = micros(rule.every)
    quiet_us = micros(spec.quiet)
    groups = ", ".join(quote(c) for c in rule.group_by)
    window_end = grid_ceiling_sql(f"make_timestamp(epoch_us(ts) + {quiet_us})", every_us)
    candidates_sql = f"""
WITH keyed AS (
    SELECT ts, {groups}, lead(ts) OVER (PARTITION BY {groups} ORDER BY ts) AS _next
    FROM events
    WHERE ts > $1 AND ts <= $3 AND ({where_sql})
), gaps AS (
    SELECT *, {window_end} AS _window_end FROM keyed
)
SELECT _window_end, {groups},
       strftime(ts, '%Y-%m-%dT%H:%M:%S') AS last_event,
       (epoch_us(_window_end) - epoch_us(ts)) // 60000000 AS quiet_minutes
FROM gaps
WHERE _window_end > $2 AND _window_end <= $3 AND (_next IS NULL OR _next > _window_end)
ORDER BY _window_end, {groups}
"""
    return CompiledRule(
        rule=rule,
        where_sql=where_sql,
        having_sql="TRUE",
        measures=dict.fromkeys(MEASURES, ""),
        every_us=every_us,
        window_us=micros(rule.window_length),
        candidates_sql=candidates_sql,
        evidence_where=where_sql,
    )
