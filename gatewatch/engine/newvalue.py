"""`new_value` rules: the first time a value or combination appears for a group.

The values each group has shown are kept in ``seen_values`` with the first
and last time they were seen. The rows of a slice are added in the same
transaction as its alerts, so a restart or a replay reports nothing twice.
A value counts as new when the group never showed it, or not within
``history``. The group itself must have been seen at least ``learning``
before, so a brand-new group does not alert on its first values.
"""

from __future__ import annotations

import difflib
from datetime import datetime

import duckdb

from gatewatch.engine.compiler import (
    CompiledRule,
    check_group_by,
    check_summary,
    checked_expression,
    compile_where,
    grid_ceiling_sql,
    group_key_sql,
    literal_string,
    micros,
    quote,
)
from gatewatch.engine.rule import Rule
from gatewatch.errors import RuleError
from gatewatch.events import RULE_COLUMNS

MEASURES = ("events", "first_seen", "known_values")


def compile_new_value(rule: Rule) -> CompiledRule:
    spec = rule.new_value
    assert spec is not None
    check_group_by(rule)
    fields = _field_expressions(rule)
    names = list(fields)
    check_summary(rule, dict.fromkeys(MEASURES + tuple(names), ""))
    where_sql = compile_where(rule)
    not_null = " AND ".join(f"{quote(c)} IS NOT NULL" for c in names)
    computed = "".join(f", {sql} AS {quote(name)}" for name, sql in fields.items() if sql != quote(name))

    def source(end: str) -> str:
        # Computed fields get their names here, so the queries below read
        # every field as a column.
        return f"(SELECT *{computed} FROM events WHERE ts > $1 AND ts <= {end} AND ({where_sql})) AS e"

    matched = not_null
    key_sql = group_key_sql(rule.group_by)
    value_sql = group_key_sql(names)
    rule_literal = literal_string(rule.id)
    history_us = micros(spec.history)
    learning_us = micros(spec.learning)
    every_us = micros(rule.every)
    columns = ", ".join(quote(c) for c in [*rule.group_by, *names])
    current_columns = ", ".join(f"cur.{quote(c)}" for c in [*rule.group_by, *names])

    candidates_sql = f"""
WITH cur AS (
    SELECT {columns}, {key_sql} AS _key, {value_sql} AS _value,
           min(ts) AS first_ts, max(ts) AS last_ts, count(*) AS events
    FROM {source("$3")}
    WHERE {matched}
    GROUP BY ALL
), known AS (
    SELECT group_key AS _key, value_key AS _value, first_seen, last_seen
    FROM seen_values WHERE rule_id = {rule_literal}
    UNION ALL
    SELECT _key, _value, first_ts, last_ts FROM cur
), previous AS (
    -- For each current value: how many other values of its group were
    -- seen before it within the history, and since when the group is known.
    SELECT cur._key, cur._value,
           count(DISTINCT known._value) FILTER (
               WHERE known._value <> cur._value AND known.first_seen < cur.first_ts
           ) AS known_values,
           min(known.first_seen) AS group_since
    FROM cur JOIN known
      ON known._key = cur._key AND epoch_us(known.last_seen) > epoch_us(cur.first_ts) - {history_us}
    GROUP BY ALL
)
SELECT {grid_ceiling_sql("cur.first_ts", every_us)} AS _window_end, {current_columns},
       cur.events AS events, strftime(cur.first_ts, '%Y-%m-%dT%H:%M:%S') AS first_seen,
       previous.known_values AS known_values
FROM cur
JOIN previous ON previous._key = cur._key AND previous._value = cur._value
LEFT JOIN seen_values AS seen
  ON seen.rule_id = {rule_literal} AND seen.group_key = cur._key AND seen.value_key = cur._value
WHERE _window_end > $2
  AND (seen.value_key IS NULL OR epoch_us(seen.last_seen) <= epoch_us(cur.first_ts) - {history_us})
  AND epoch_us(previous.group_since) <= epoch_us(cur.first_ts) - {learning_us}
ORDER BY _window_end, {current_columns}
"""
    upsert_sql = f"""
INSERT INTO seen_values
SELECT {rule_literal}, {key_sql}, {value_sql}, min(ts), max(ts)
FROM {source("$2")}
WHERE {matched}
GROUP BY ALL
ON CONFLICT DO UPDATE SET
    first_seen = CASE WHEN epoch_us(excluded.first_seen) - epoch_us(seen_values.last_seen) >= {history_us}
                      THEN excluded.first_seen ELSE least(seen_values.first_seen, excluded.first_seen) END,
    last_seen = greatest(seen_values.last_seen, excluded.last_seen)
"""
    prune_sql = (
        f"DELETE FROM seen_values WHERE rule_id = {rule_literal} "
        f"AND epoch_us(last_seen) <= epoch_us($1::TIMESTAMP) - {history_us}"
    )

    def remember(con: duckdb.DuckDBPyConnection, first_end: datetime, last_end: datetime) -> None:
        con.execute(upsert_sql, [first_end, last_end])
        con.execute(prune_sql, [last_end])

    return CompiledRule(
        rule=rule,
        where_sql=where_sql,
        having_sql="TRUE",
        measures=dict.fromkeys(MEASURES, ""),
        every_us=every_us,
        window_us=every_us,
        scan_us=0,
        candidates_sql=candidates_sql,
        group_columns=[*rule.group_by, *names],
        evidence_where=where_sql,
        after_slice=remember,
    )


def _field_expressions(rule: Rule) -> dict[str, str]:
    """Return the tracked fields by name: an event column, or a named SQL expression."""
    spec = rule.new_value
    assert spec is not None
    if isinstance(spec.fields, list):
        fields = {}
        for index, column in enumerate(spec.fields):
            if column not in RULE_COLUMNS:
                close = difflib.get_close_matches(column, sorted(RULE_COLUMNS), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise RuleError(
                    f"unknown column {column!r} in `new_value.fields`{hint}",
                    rule.path,
                    rule.line_of("new_value", "fields", index),
                )
            _check_not_grouped(rule, column, ("new_value", "fields", index))
            fields[column] = quote(column)
        return fields
    fields = {}
    for name, text in spec.fields.items():
        location = ("new_value", "fields", name)
        if not name.isidentifier() or name in RULE_COLUMNS:
            raise RuleError(
                f"invalid field name {name!r}: use an identifier that is not an event column, such as endpoint",
                rule.path,
                rule.line_of(*location),
            )
        _check_not_grouped(rule, name, location)
        fields[name] = checked_expression(rule, location, str(text), allow_aggregates=False).sql("duckdb")
    return fields


def _check_not_grouped(rule: Rule, name: str, location: tuple[str | int, ...]) -> None:
    if name in rule.group_by:
        raise RuleError(
            f"column {name!r} is in both `group_by` and `new_value.fields`; a group cannot have a new value of itself",
            rule.path,
            rule.line_of(*location),
        )
