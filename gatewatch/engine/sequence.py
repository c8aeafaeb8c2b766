"""`sequence` rules: ordered steps by the same group within a time limit.

Every event of the last step in the evaluated span is an anchor. Walking the
steps in order, step k is complete at the time of its ``min_count``-th event
after step k-1 completed (step 1 counts from ``anchor - within``). The
sequence holds when every step before the last completes before the anchor
and the last step has ``min_count`` events between the previous completion
and the anchor. The alert's window end is the grid point at or after the
anchor, so each evaluation reads the new events plus ``within`` before them.
"""

from __future__ import annotations

from gatewatch.engine.compiler import (
    CompiledRule,
    check_group_by,
    check_summary,
    checked_expression,
    compile_where,
    grid_ceiling_sql,
    group_key_sql,
    micros,
    quote,
)
from gatewatch.engine.rule import Rule
from gatewatch.errors import RuleError
from gatewatch.events import RULE_COLUMNS


def compile_sequence(rule: Rule) -> CompiledRule:
    spec = rule.sequence
    assert spec is not None
    check_group_by(rule)
    where_sql = compile_where(rule)

    names: list[str] = []
    step_sql: list[str] = []
    for index, step in enumerate(spec.steps):
        if not step.name.isidentifier() or step.name in names or step.name in RULE_COLUMNS:
            raise RuleError(
                f"invalid step name {step.name!r}: use a unique identifier that is not an event column, such as failures",
                rule.path,
                rule.line_of("sequence", "steps", index, "name"),
            )
        names.append(step.name)
        tree = checked_expression(rule, ("sequence", "steps", index, "where"), step.where, allow_aggregates=False)
        step_sql.append(tree.sql("duckdb"))

    measures = [*names, "first_event", "completed_at"]
    check_summary(rule, dict.fromkeys(measures, ""))
    every_us = micros(rule.every)
    within_us = micros(spec.within)
    compiled = CompiledRule(
        rule=rule,
        where_sql=where_sql,
        having_sql="TRUE",
        measures=dict.fromkeys(measures, ""),
        every_us=every_us,
        window_us=micros(rule.window_length),
        evidence_where=f"({where_sql}) AND (" + " OR ".join(f"({s})" for s in step_sql) + ")",
    )
    compiled.candidates_sql = _candidates_sql(rule, where_sql, step_sql, names, every_us, within_us)
    return compiled


def _candidates_sql(
    rule: Rule, where_sql: str, step_sql: list[str], names: list[str], every_us: int, within_us: int
) -> str:
    spec = rule.sequence
    assert spec is not None
    last = len(step_sql)
    groups = ", ".join(quote(c) for c in rule.group_by)
    flags = ", ".join(f"({sql}) AS _s{i}" for i, sql in enumerate(step_sql, start=1))
    any_step = " OR ".join(f"({sql})" for sql in step_sql)
    ctes = [
        f"""stepped AS (
    SELECT ts, {groups}, {group_key_sql(rule.group_by)} AS _key, {flags}
    FROM events
    WHERE ts > $1 AND ts <= $3 AND ({where_sql}) AND ({any_step})
)""",
        f"""anchors AS (
    SELECT DISTINCT _key, {groups}, ts AS _anchor FROM stepped
    WHERE _s{last} AND ts > $2 AND ts <= $3
)""",
    ]
    # c0 carries the anchors; ck adds the completion time _ck of step k.
    ctes.append(
        f"""c0 AS (
    SELECT *, make_timestamp(epoch_us(_anchor) - {within_us}) AS _c0 FROM anchors
)"""
    )
    carried = ["_key", "_anchor", *(quote(c) for c in rule.group_by), "_c0"]
    for k, step in enumerate(spec.steps, start=1):
        upper = "<=" if k == last else "<"
        carried_sql = ", ".join(f"p.{c}" for c in carried)
        ctes.append(
            f"""c{k} AS (
    SELECT {carried_sql},
           list_sort(list(s.ts))[{int(step.min_count)}] AS _c{k},
           count(*) AS _n{k}
    FROM c{k - 1} AS p
    JOIN stepped AS s ON s._key = p._key AND s._s{k} AND s.ts > p._c{k - 1} AND s.ts {upper} p._anchor
    GROUP BY ALL
    HAVING count(*) >= {int(step.min_count)}
)"""
        )
        carried += [f"_c{k}", f"_n{k}"]
    counts = ", ".join(f"arg_min(_n{k}, done._anchor) AS {quote(name)}" for k, name in enumerate(names, start=1))
    first_step = "strftime(min(s.first), '%Y-%m-%dT%H:%M:%S')"
    window_end = grid_ceiling_sql("_anchor", every_us)
    return (
        "WITH "
        + ",\n".join(ctes)
        + f""",
done AS (
    SELECT c{last}.*, {window_end} AS _window_end FROM c{last}
), first_events AS (
    -- When the earliest counted event of step 1 happened, per anchor.
    SELECT p._key, p._anchor, min(s.ts) AS first
    FROM done AS p JOIN stepped AS s ON s._key = p._key AND s._s1 AND s.ts > p._c0 AND s.ts < p._anchor
    GROUP BY ALL
)
SELECT _window_end, {", ".join(f"done.{quote(c)}" for c in rule.group_by)}, {counts},
       {first_step} AS first_event,
       strftime(min(done._anchor), '%Y-%m-%dT%H:%M:%S') AS completed_at
FROM done JOIN first_events AS s ON s._key = done._key AND s._anchor = done._anchor
GROUP BY _window_end, {", ".join(f"done.{quote(c)}" for c in rule.group_by)}
ORDER BY _window_end, {", ".join(f"done.{quote(c)}" for c in rule.group_by)}
"""
    )
