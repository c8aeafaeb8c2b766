"""Check a rule's SQL expressions with sqlglot before they reach DuckDB.

A rule expression may name event columns and call scalar or aggregate
functions. It may not be a statement, contain a subquery, name a table or
call a function that reads files, settings or the environment.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

# Functions that read outside the events table or reveal the host.
FORBIDDEN_FUNCTIONS = frozenset(
    {
        "glob", "query", "query_table", "getenv", "current_setting", "sniff_csv",
        "delta_scan", "iceberg_scan", "iceberg_metadata", "iceberg_snapshots",
        "json_execute_serialized_sql", "which_secret", "load_extension", "install_extension",
        "txid_current", "current_database", "current_schema", "current_schemas", "version",
        "pg_typeof", "system", "shell",
    }
)
# List generators can allocate without bound for each event.
GENERATOR_FUNCTIONS = frozenset({"range", "generate_series", "unnest"})
FORBIDDEN_PREFIXES = ("read_", "parquet_", "duckdb_", "pragma_", "sqlite_", "postgres_", "mysql_")
FORBIDDEN_NODES = (
    exp.Query, exp.Subquery, exp.Table, exp.Exists, exp.Placeholder, exp.Parameter,
    exp.Command, exp.Create, exp.Drop, exp.Insert, exp.Update, exp.Delete, exp.Copy,
    exp.Pragma, exp.Set, exp.Use, exp.Star,
)


class ExpressionError(ValueError):
    """A rule expression failed a check; ``column`` is 1-based within the text."""

    def __init__(self, message: str, column: int | None = None):
        super().__init__(message)
        self.column = column


def parse_expression(text: str) -> exp.Expression:
    """Parse one SQL expression in the DuckDB dialect."""
    try:
        statements = sqlglot.parse(text, read="duckdb")
    except (ParseError, TokenError) as exc:
        column = None
        errors = getattr(exc, "errors", None)
        if errors:
            column = errors[0].get("col")
            detail = errors[0].get("description") or str(exc)
        else:
            detail = str(exc)
        raise ExpressionError(f"invalid SQL expression: {detail}", column) from None
    statements = [s for s in statements if s is not None]
    if len(statements) != 1:
        raise ExpressionError("write one SQL expression, without `;` or a second statement")
    return statements[0]


def check_expression(
    text: str,
    columns: Iterable[str],
    allow_aggregates: bool,
    bare_columns: Iterable[str] | None = None,
) -> exp.Expression:
    """Parse ``text`` and check every column and function it uses.

    ``columns`` are the names allowed anywhere. With ``allow_aggregates``,
    columns outside an aggregate must be in ``bare_columns`` (the group-by
    columns and measure names).
    """
    tree = parse_expression(text)
    known = sorted(set(columns))
    bare = set(bare_columns) if bare_columns is not None else set(known)
    for node in tree.walk():
        _check_node(node, text)
    if isinstance(tree, (exp.Alias,)):
        raise ExpressionError("remove the alias (`AS name`): a rule expression has no name")
    for column in tree.find_all(exp.Column):
        _check_column(column, text, known, bare, allow_aggregates)
    if not allow_aggregates:
        aggregate = next(iter(tree.find_all(exp.AggFunc)), None)
        if aggregate is not None:
            raise ExpressionError(
                f"aggregate {aggregate.sql('duckdb')} is not allowed here; "
                "move it to `having:` in an aggregate rule",
                _column_of(text, aggregate.sql("duckdb").split("(")[0]),
            )
    return tree


def _check_node(node: exp.Expression, text: str) -> None:
    if isinstance(node, FORBIDDEN_NODES):
        if isinstance(node, exp.Star) and isinstance(node.parent, exp.Count):
            return
        kind = node.key.upper()
        raise ExpressionError(
            f"{kind} is not allowed in a rule expression: "
            "write a condition over event columns, without statements, subqueries or tables",
            _column_of(text, node.sql("duckdb")[:20]),
        )
    if isinstance(node, exp.Func):
        name = function_name(node)
        if name in GENERATOR_FUNCTIONS:
            raise ExpressionError(
                f"function {name}() is not allowed in a rule: it builds lists of unbounded size",
                _column_of(text, name),
            )
        if name in FORBIDDEN_FUNCTIONS or name.startswith(FORBIDDEN_PREFIXES):
            raise ExpressionError(
                f"function {name}() is not allowed in a rule: it reads outside the events table",
                _column_of(text, name),
            )


def function_name(node: exp.Func) -> str:
    if isinstance(node, exp.Anonymous):
        return str(node.name).lower()
    return node.sql_name().lower()


def _check_column(
    column: exp.Column, text: str, known: list[str], bare: set[str], allow_aggregates: bool
) -> None:
    name = column.name
    if column.table:
        raise ExpressionError(
            f"column {column.sql('duckdb')} names a table; use the bare column name {name!r}",
            _column_of(text, column.table),
        )
    if name not in known:
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else f"; known columns: {', '.join(known)}"
        raise ExpressionError(f"unknown column {name!r}{hint}", _column_of(text, name))
    if allow_aggregates and name not in bare and column.find_ancestor(exp.AggFunc) is None:
        raise ExpressionError(
            f"column {name!r} is used outside an aggregate; wrap it, such as count(distinct {name}), "
            "or add it to `group_by`",
            _column_of(text, name),
        )


def _column_of(text: str, fragment: str) -> int | None:
    index = text.find(fragment)
    if index < 0:
        index = text.lower().find(fragment.lower())
    return index + 1 if index >= 0 else None


# Statements and clauses a `sql` rule's query may not contain anywhere.
FORBIDDEN_QUERY_NODES = (
    exp.Placeholder, exp.Parameter, exp.Command, exp.Create, exp.Drop, exp.Insert, exp.Update,
    exp.Delete, exp.Copy, exp.Pragma, exp.Set, exp.Use, exp.Into,
)


def check_query(text: str) -> exp.Query:
    """Parse a `sql` rule's query and check what it reads.

    It must be one SELECT (WITH and UNION allowed). Every table it names
    must be `events` or one of its own CTEs; table functions, statements,
    parameters and the functions of ``FORBIDDEN_FUNCTIONS`` are rejected.
    Column names are checked later by DuckDB, which resolves the CTE columns.
    """
    tree = parse_expression(text)
    if not isinstance(tree, exp.Query):
        raise ExpressionError(f"write one SELECT query; found {tree.key.upper()}")
    cte_names = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
    for node in tree.walk():
        if isinstance(node, FORBIDDEN_QUERY_NODES):
            raise ExpressionError(
                f"{node.key.upper()} is not allowed in a rule query: write one SELECT over `events`",
                _column_of(text, node.sql("duckdb")[:20]),
            )
        if isinstance(node, exp.Table):
            _check_table(node, text, cte_names)
        elif isinstance(node, exp.Func):
            name = function_name(node)
            if name in GENERATOR_FUNCTIONS and isinstance(node.parent, (exp.Table, exp.From, exp.Join)):
                raise ExpressionError(f"table function {name}() is not allowed in a rule query", _column_of(text, name))
            if name in FORBIDDEN_FUNCTIONS or name.startswith(FORBIDDEN_PREFIXES):
                raise ExpressionError(
                    f"function {name}() is not allowed in a rule: it reads outside the events table",
                    _column_of(text, name),
                )
    return tree


def _check_table(node: exp.Table, text: str, cte_names: set[str]) -> None:
    if not isinstance(node.this, exp.Identifier):
        name = node.this.sql("duckdb") if node.this is not None else node.sql("duckdb")
        raise ExpressionError(
            f"table function {name.split('(')[0]}() is not allowed in a rule query: read only `events`",
            _column_of(text, name.split("(")[0]),
        )
    if node.args.get("db") or node.args.get("catalog"):
        raise ExpressionError(
            f"table {node.sql('duckdb')} names a schema or database; write plain `events`",
            _column_of(text, node.sql("duckdb")),
        )
    name = node.name.lower()
    if name != "events" and name not in cte_names:
        known = sorted({"events", *cte_names})
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else "; a rule query reads only `events` and its own CTEs"
        raise ExpressionError(f"unknown table {node.name!r}{hint}", _column_of(text, node.name))
