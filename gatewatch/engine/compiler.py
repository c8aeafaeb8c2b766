"""Compile a checked rule into the DuckDB queries the evaluator runs.

Every rule becomes one sliding-window aggregate: window ends lie on a grid of
``every`` (aligned to the Unix epoch), and the window ending at ``t`` holds
the events with ``t - window < ts <= t``. A match rule is the same query with
the window equal to ``every`` and ``count(*) >= 1`` as its condition.
"""

from __future__ import annotations

import difflib
import math
import string
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlglot import exp

from gatewatch.engine.rule import Rule
from gatewatch.engine.sqlcheck import ExpressionError, check_expression, parse_expression
from gatewatch.errors import RuleError
from gatewatch.events import RULE_COLUMNS

EVIDENCE_COLUMNS = ("ts", "client_ip", "method", "path", "query", "status", "user_agent", "user")
# Placeholders every summary template may use besides group and measures.
SUMMARY_FIELDS = ("window", "window_start", "window_end", "rule", "title", "severity")


@dataclass
class CompiledRule:
    """A rule with its SQL checked and compiled, ready to evaluate."""

    rule: Rule
    where_sql: str
    having_sql: str
    measures: dict[str, str]
    every_us: int
    window_us: int
    candidates_sql: str = field(default="")

    @property
    def id(self) -> str:
        return self.rule.id

    @property
    def steps(self) -> int:
        """How many window ends on the grid can contain one event."""
        return math.ceil(self.window_us / self.every_us)

    def evidence_sql(self, limit: int) -> str:
        """Return the query for the events of one group in one window (4+n parameters)."""
        columns = ", ".join(_quote(c) for c in EVIDENCE_COLUMNS)
        group_filter = " AND ".join(f"{_quote(c)} IS NOT DISTINCT FROM ?" for c in self.rule.group_by)
        return (
            f"SELECT {columns} FROM events WHERE ts > ? AND ts <= ? AND ({self.where_sql}) "
            f"AND {group_filter} ORDER BY ts, file, \"offset\" LIMIT {int(limit)}"
        )

    def reproduce_sql(self, window_start: datetime, window_end: datetime, group: dict[str, object]) -> str:
        """Return a self-contained query that lists the events behind one alert."""
        conditions = [
            f"ts > {_literal_timestamp(window_start)}",
            f"ts <= {_literal_timestamp(window_end)}",
            f"({self.where_sql})",
        ]
        for column in self.rule.group_by:
            value = group.get(column)
            literal = "NULL" if value is None else exp.convert(value).sql("duckdb")
            conditions.append(f"{_quote(column)} IS NOT DISTINCT FROM {literal}")
        return "SELECT * FROM events WHERE " + " AND ".join(conditions) + " ORDER BY ts"


def compile_rule(rule: Rule) -> CompiledRule:
    """Check the rule's expressions and build its queries; raise RuleError on a fault."""
    _check_group_by(rule)
    where_sql = _compile_where(rule)
    measures = _compile_measures(rule)
    having_sql = _compile_having(rule, measures)
    _check_summary(rule, measures)
    compiled = CompiledRule(
        rule=rule,
        where_sql=where_sql,
        having_sql=having_sql,
        measures=measures,
        every_us=_micros(rule.every),
        window_us=_micros(rule.window_length),
    )
    compiled.candidates_sql = _candidates_sql(compiled)
    return compiled


def _check_group_by(rule: Rule) -> None:
    for index, column in enumerate(rule.group_by):
        if column not in RULE_COLUMNS:
            close = difflib.get_close_matches(column, sorted(RULE_COLUMNS), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise RuleError(f"unknown group_by column {column!r}{hint}", rule.path, rule.line_of("group_by", index))


def _compile_where(rule: Rule) -> str:
    if rule.where is None:
        return "TRUE"
    tree = _checked(rule, ("where",), rule.where, allow_aggregates=False)
    return tree.sql("duckdb")


def _compile_measures(rule: Rule) -> dict[str, str]:
    measures: dict[str, str] = {}
    for name, text in rule.measures.items():
        if not name.isidentifier():
            raise RuleError(
                f"invalid measure name {name!r}: use letters, digits and '_'",
                rule.path,
                rule.line_of("measures", name),
            )
        tree = _checked(rule, ("measures", name), str(text), allow_aggregates=True)
        measures[name] = tree.sql("duckdb")
    if rule.having is not None and not rule.measures:
        # Without named measures, show each aggregate the condition tests.
        tree = parse_expression(rule.having)
        for aggregate in tree.find_all(exp.AggFunc):
            sql = aggregate.sql("duckdb")
            measures.setdefault(sql, sql)
    measures.setdefault("events", "COUNT(*)")
    return measures


def _compile_having(rule: Rule, measures: dict[str, str]) -> str:
    if rule.having is None:
        return "COUNT(*) >= 1"
    bare = set(rule.group_by) | set(rule.measures)
    tree = _checked(rule, ("having",), rule.having, allow_aggregates=True, bare=bare, extra=rule.measures)

    def expand(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Column) and node.name in rule.measures:
            return exp.Paren(this=parse_expression(measures[node.name]))
        return node

    return tree.transform(expand).sql("duckdb")


def _checked(
    rule: Rule,
    location: tuple[str, ...],
    text: str,
    allow_aggregates: bool,
    bare: set[str] | tuple = (),
    extra: dict[str, str] | None = None,
) -> exp.Expression:
    """Check one expression of the rule; a fault names the key, line and column."""
    columns = set(RULE_COLUMNS) | set(extra or {})
    try:
        return check_expression(text, columns, allow_aggregates, bare_columns=bare if allow_aggregates else None)
    except ExpressionError as exc:
        column = f", column {exc.column}" if exc.column else ""
        raise RuleError(f"in `{'.'.join(location)}`{column}: {exc}", rule.path, rule.line_of(*location)) from None


def _check_summary(rule: Rule, measures: dict[str, str]) -> None:
    if rule.summary is None:
        return
    allowed = set(rule.group_by) | set(measures) | set(SUMMARY_FIELDS)
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(rule.summary) if name is not None]
    except ValueError as exc:
        raise RuleError(f"invalid `summary` template: {exc}; write placeholders as {{name}}", rule.path, rule.line_of("summary")) from None
    for name in fields:
        if name not in allowed:
            raise RuleError(
                f"unknown placeholder {{{name}}} in `summary`; use one of {', '.join(sorted(allowed))}",
                rule.path,
                rule.line_of("summary"),
            )


def _candidates_sql(compiled: CompiledRule) -> str:
    """Build the query that lists (window end, group) rows meeting the condition.

    Parameters: scan start, scan end (event times), first and last window end.
    """
    rule = compiled.rule
    every = compiled.every_us
    groups = ", ".join(_quote(c) for c in rule.group_by)
    measures = ", ".join(f"{sql} AS {_quote(name)}" for name, sql in compiled.measures.items())
    return f"""
WITH matched AS (
    SELECT * FROM events
    WHERE ts > ? AND ts <= ? AND ({compiled.where_sql})
), positioned AS (
    SELECT matched.*,
           make_timestamp(((epoch_us(ts) + {every} - 1) // {every} + step) * {every}) AS _window_end
    FROM matched, range(0, {compiled.steps}) AS steps(step)
)
SELECT _window_end, {groups}, {measures}
FROM positioned
WHERE _window_end > ? AND _window_end <= ?
  AND epoch_us(ts) > epoch_us(_window_end) - {compiled.window_us}
GROUP BY _window_end, {groups}
HAVING {compiled.having_sql}
ORDER BY _window_end, {groups}
"""


def _quote(name: str) -> str:
    return exp.to_identifier(name, quoted=True).sql("duckdb")


def _literal_timestamp(value: datetime) -> str:
    return f"TIMESTAMP '{value.isoformat(sep=' ')}'"


def _micros(delta: timedelta) -> int:
    return int(delta.total_seconds() * 1_000_000)
