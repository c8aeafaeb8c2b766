"""Compile a checked rule into the DuckDB queries the evaluator runs.

Window ends lie on a grid of ``every`` (aligned to the Unix epoch), and the
window ending at ``t`` holds the events with ``t - window < ts <= t``. An
aggregate rule becomes one sliding-window aggregate; a match rule is the same
query with the window equal to ``every`` and ``count(*) >= 1`` as its
condition. The other rule types live in their own modules and return the
same CompiledRule.

Every candidates query takes three numbered parameters: ``$1`` the start of
the event scan (exclusive), ``$2`` the last window end already evaluated and
``$3`` the last window end to evaluate. It returns one row per alert
candidate with ``_window_end``, the group columns and the measures.
"""

from __future__ import annotations

import difflib
import math
import string
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import duckdb
import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from gatewatch.engine.enrich import LOOKUP_FUNCTIONS, lookup_sql
from gatewatch.engine.position import value_position
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
    # How far before the last evaluated window end the event scan ($1)
    # starts; the window length unless the type sets it.
    scan_us: int | None = None
    # Columns of a candidate row that make up the alert's group key;
    # `rule.group_by` unless the type adds its own (new_value adds `fields`).
    group_columns: list[str] = field(default_factory=list)
    # Which events count as evidence; the group columns that are event
    # columns filter them further.
    evidence_where: str = "TRUE"
    # Statements run in the slice's transaction around the candidates
    # query, for types that keep state (baseline history, seen values).
    # Each is called with the connection, the last evaluated window end and
    # the last window end of the slice.
    before_slice: Callable[[duckdb.DuckDBPyConnection, datetime, datetime], None] | None = None
    after_slice: Callable[[duckdb.DuckDBPyConnection, datetime, datetime], None] | None = None

    def __post_init__(self) -> None:
        if not self.group_columns:
            self.group_columns = list(self.rule.group_by)

    @property
    def id(self) -> str:
        return self.rule.id

    @property
    def steps(self) -> int:
        """How many window ends on the grid can contain one event."""
        return math.ceil(self.window_us / self.every_us)

    @property
    def evidence_columns(self) -> list[str]:
        """Group columns that are event columns, so they can filter evidence rows."""
        return [c for c in self.group_columns if c in RULE_COLUMNS]

    def candidate_params(self, first_end: datetime, last_end: datetime) -> list[datetime]:
        """Return the $1-$3 parameters of ``candidates_sql`` for one slice."""
        scan = self.window_us if self.scan_us is None else self.scan_us
        return [first_end - timedelta(microseconds=scan), first_end, last_end]

    def evidence_sql(self, limit: int) -> str:
        """Return the query for the events of one group in one window (2+n parameters)."""
        columns = ", ".join(quote(c) for c in EVIDENCE_COLUMNS)
        conditions = ["ts > ?", "ts <= ?", f"({self.evidence_where})"]
        conditions += [f"{quote(c)} IS NOT DISTINCT FROM ?" for c in self.evidence_columns]
        return (
            f"SELECT {columns} FROM events WHERE {' AND '.join(conditions)} "
            f"ORDER BY ts, file, \"offset\" LIMIT {int(limit)}"
        )

    def producing_sql(self, window_end: datetime) -> str:
        """Return the candidates query for the one window end, with its parameters as literals.

        Run as is, it returns the candidate rows of that window end. A rule
        type with state reads its state tables, which change as time moves on.
        """
        start = window_end - timedelta(microseconds=self.every_us)
        params = self.candidate_params(start, window_end)
        try:
            tree = sqlglot.parse_one(self.candidates_sql, read="duckdb")

            def bind(node: exp.Expression) -> exp.Expression:
                if isinstance(node, exp.Placeholder) and str(node.this).isdigit():
                    return sqlglot.parse_one(literal_timestamp(params[int(node.this) - 1]), read="duckdb")
                return node

            return tree.transform(bind).sql("duckdb", pretty=True)
        except (SqlglotError, IndexError):
            # Fall back to textual substitution; the rule's own strings cannot
            # contain a placeholder, because sqlcheck rejects parameters.
            return re.sub(
                r"\$([1-3])\b", lambda m: literal_timestamp(params[int(m.group(1)) - 1]), self.candidates_sql
            )

    def reproduce_sql(self, window_start: datetime, window_end: datetime, group: dict[str, object]) -> str:
        """Return a self-contained query that lists the events behind one alert."""
        conditions = [
            f"ts > {literal_timestamp(window_start)}",
            f"ts <= {literal_timestamp(window_end)}",
            f"({self.evidence_where})",
        ]
        for column in self.evidence_columns:
            value = group.get(column)
            literal = "NULL" if value is None else exp.convert(value).sql("duckdb")
            conditions.append(f"{quote(column)} IS NOT DISTINCT FROM {literal}")
        return "SELECT * FROM events WHERE " + " AND ".join(conditions) + " ORDER BY ts"


def compile_rule(rule: Rule) -> CompiledRule:
    """Check the rule's expressions and build its queries; raise RuleError on a fault."""
    if rule.type not in ("match", "aggregate"):
        from gatewatch.engine import types

        return types.compile_typed(rule)
    check_group_by(rule)
    where_sql = compile_where(rule)
    measures = _compile_measures(rule)
    having_sql = _compile_having(rule, measures)
    check_summary(rule, measures)
    compiled = CompiledRule(
        rule=rule,
        where_sql=where_sql,
        having_sql=having_sql,
        measures=measures,
        every_us=micros(rule.every),
        window_us=micros(rule.window_length),
        evidence_where=where_sql,
    )
    compiled.candidates_sql = _candidates_sql(compiled)
    return compiled


def check_group_by(rule: Rule) -> None:
    for index, column in enumerate(rule.group_by):
        if column not in RULE_COLUMNS:
            close = difflib.get_close_matches(column, sorted(RULE_COLUMNS), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise RuleError(f"unknown group_by column {column!r}{hint}", rule.path, rule.line_of("group_by", index))


def compile_where(rule: Rule) -> str:
    """Check `where` and return it, joined with the rule's allowlist exclusion."""
    where = "TRUE"
    if rule.where is not None:
        where = checked_expression(rule, ("where",), rule.where, allow_aggregates=False).sql("duckdb")
    if rule.exclusion_sql == "TRUE":
        return where
    return f"({where}) AND {rule.exclusion_sql}"


def _compile_measures(rule: Rule) -> dict[str, str]:
    measures: dict[str, str] = {}
    for name, text in rule.measures.items():
        if not name.isidentifier():
            raise RuleError(
                f"invalid measure name {name!r}: use letters, digits and '_'",
                rule.path,
                rule.line_of("measures", name),
            )
        tree = checked_expression(rule, ("measures", name), str(text), allow_aggregates=True)
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
    tree = checked_expression(rule, ("having",), rule.having, allow_aggregates=True, bare=bare, extra=rule.measures)

    def expand(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Column) and node.name in rule.measures:
            return exp.Paren(this=parse_expression(measures[node.name]))
        return node

    return tree.transform(expand).sql("duckdb")


def checked_expression(
    rule: Rule,
    location: tuple[str | int, ...],
    text: str,
    allow_aggregates: bool,
    bare: set[str] | tuple = (),
    extra: dict[str, str] | None = None,
) -> exp.Expression:
    """Check one expression of the rule; a fault names the key, line and column."""
    columns = set(RULE_COLUMNS) | set(extra or {})
    try:
        tree = check_expression(text, columns, allow_aggregates, bare_columns=bare if allow_aggregates else None)
        return expand_list_functions(tree, text, rule.list_conditions)
    except ExpressionError as exc:
        raise expression_error(rule, location, exc) from None


def expand_list_functions(tree: exp.Expression, text: str, conditions: dict[str, str]) -> exp.Expression:
    """Replace `in_list('name')` with the list's match condition, and `ip_country(x)` and
    the other network lookups with a query of the `networks` table."""

    def replace(node: exp.Expression) -> exp.Expression:
        if not isinstance(node, exp.Anonymous):
            return node
        function = str(node.name).lower()
        if function in LOOKUP_FUNCTIONS:
            if len(node.expressions) != 1:
                raise ExpressionError(f"{function} takes one address, such as {function}(client_ip)", text.lower().find(function) + 1)
            return sqlglot.parse_one(lookup_sql(function, node.expressions[0].sql("duckdb")), read="duckdb")
        if function != "in_list":
            return node
        arguments = node.expressions
        if len(arguments) != 1 or not isinstance(arguments[0], exp.Literal) or not arguments[0].is_string:
            raise ExpressionError(
                "in_list takes one list name in quotes, such as in_list('bad-user-agents')",
                text.lower().find("in_list") + 1,
            )
        name = arguments[0].this
        if name not in conditions:
            close = difflib.get_close_matches(name, sorted(conditions), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else "; define it under `lists:` in a YAML file among the rule files"
            raise ExpressionError(f"unknown list {name!r}{hint}", text.find(name) + 1)
        return exp.Paren(this=sqlglot.parse_one(conditions[name], read="duckdb"))

    return tree.transform(replace)


def expression_error(rule: Rule, location: tuple[str | int, ...], exc: ExpressionError) -> RuleError:
    """Build the RuleError for a fault in one expression, with the file line and column when known."""
    key = ".".join(str(part) for part in location)
    position = value_position(rule.path, location, exc.column - 1) if exc.column and rule.path else None
    if position is None:
        column = f", column {exc.column}" if exc.column else ""
        return RuleError(f"in `{key}`{column}: {exc}", rule.path, rule.line_of(*location))
    return RuleError(f"in `{key}`: {exc}", rule.path, position[0], position[1])


def check_summary(rule: Rule, measures: dict[str, str]) -> None:
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
    return window_aggregate_sql(
        compiled.where_sql, rule.group_by, compiled.measures, compiled.having_sql, compiled.every_us, compiled.window_us
    )


def window_aggregate_sql(
    where_sql: str, group_by: list[str], measures: dict[str, str], having_sql: str, every_us: int, window_us: int
) -> str:
    """Build a sliding-window aggregate over the events, one row per (window end, group)."""
    every = every_us
    steps = math.ceil(window_us / every_us)
    groups = "".join(f", {quote(c)}" for c in group_by)
    selected = ", ".join(f"{sql} AS {quote(name)}" for name, sql in measures.items())
    return f"""
WITH matched AS (
    SELECT * FROM events
    WHERE ts > $1 AND ts <= $3 AND ({where_sql})
), positioned AS (
    SELECT matched.*,
           make_timestamp(((epoch_us(ts) + {every} - 1) // {every} + step) * {every}) AS _window_end
    FROM matched, range(0, {steps}) AS steps(step)
)
SELECT _window_end{groups}, {selected}
FROM positioned
WHERE _window_end > $2 AND _window_end <= $3
  AND epoch_us(ts) > epoch_us(_window_end) - {window_us}
GROUP BY _window_end{groups}
HAVING {having_sql}
ORDER BY _window_end{groups}
"""


def quote(name: str) -> str:
    return exp.to_identifier(name, quoted=True).sql("duckdb")


def literal_timestamp(value: datetime) -> str:
    return f"TIMESTAMP '{value.isoformat(sep=' ')}'"


def micros(delta: timedelta) -> int:
    return int(delta.total_seconds() * 1_000_000)


def group_key_sql(columns: list[str], alias: str = "") -> str:
    """Build a SQL expression that encodes the group columns as one JSON array string.

    State tables key their rows by it; NULL stays distinct from the text 'null'.
    """
    if not columns:
        return "'[]'"
    prefix = f"{alias}." if alias else ""
    values = ", ".join(f"{prefix}{quote(c)}::VARCHAR" for c in columns)
    return f"to_json(list_value({values}))::VARCHAR"


def grid_ceiling_sql(ts_sql: str, every_us: int) -> str:
    """Build the expression for the first window end on the grid at or after ``ts_sql``."""
    return f"make_timestamp(((epoch_us({ts_sql}) + {every_us} - 1) // {every_us}) * {every_us})"


def literal_string(value: str) -> str:
    return exp.convert(value).sql("duckdb")
