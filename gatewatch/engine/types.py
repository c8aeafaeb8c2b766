"""Compile the rule types beyond `match` and `aggregate`."""

from __future__ import annotations

from gatewatch.engine.baseline import compile_baseline
from gatewatch.engine.compiler import CompiledRule
from gatewatch.engine.flatline import compile_flatline
from gatewatch.engine.newvalue import compile_new_value
from gatewatch.engine.rule import Rule
from gatewatch.engine.sequence import compile_sequence
from gatewatch.engine.sqlrule import compile_sql

COMPILERS = {
    "baseline": compile_baseline,
    "new_value": compile_new_value,
    "sequence": compile_sequence,
    "flatline": compile_flatline,
    "sql": compile_sql,
}


def compile_typed(rule: Rule) -> CompiledRule:
    return COMPILERS[rule.type](rule)
