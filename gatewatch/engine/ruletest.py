"""Run a rule's inline tests: parse the test lines, evaluate, compare alerts."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from gatewatch.connectors import get_connector
from gatewatch.engine.compiler import CompiledRule
from gatewatch.engine.evaluator import EvaluationSettings, evaluate_rule
from gatewatch.engine.rule import RuleTest
from gatewatch.errors import GatewatchError
from gatewatch.ingest import add_lineage, split_lines
from gatewatch.store import Store


@dataclass
class TestOutcome:
    rule_id: str
    name: str
    passed: bool
    message: str
    path: str
    line: int | None


def run_rule_tests(rule: CompiledRule) -> list[TestOutcome]:
    """Run every inline test of ``rule``; a test that cannot run fails with the reason."""
    outcomes = []
    for index, test in enumerate(rule.rule.tests):
        line = rule.rule.line_of("tests", index)
        try:
            message = _run_test(rule, test)
        except GatewatchError as exc:
            message = str(exc)
        outcomes.append(
            TestOutcome(rule.id, test.name, message == "", message or "ok", rule.rule.path, line)
        )
    return outcomes


def _run_test(rule: CompiledRule, test: RuleTest) -> str:
    """Return "" when the test passes, else what differed."""
    data = _test_input(rule, test)
    connector = get_connector(test.format)()
    parsed = connector.parse(split_lines(data, 0))
    if parsed.rejects.height:
        reason = parsed.rejects["reason"][0]
        return f"{parsed.rejects.height} test line(s) rejected by the {test.format} parser: {reason}"
    with Store(":memory:") as store:
        events = add_lineage(parsed.events, "test", test.format, "<test>")
        with store.transaction():
            store.insert_frame("events", events)
            store.update_source_state("test", events["ts"].min(), events["ts"].max())
        # Close every window that the test events fall into. A flatline
        # rule stops at the last event instead: past it, the test data
        # would look like a silent source.
        last = events["ts"].max()
        if rule.rule.type != "flatline":
            last += timedelta(microseconds=rule.window_us + rule.every_us)
        settings = EvaluationSettings(new_rule_lookback=timedelta(days=36500), catch_up_after=None)
        evaluate_rule(store, rule, [], settings, until=last)
        rows = store.con.execute("SELECT group_key::VARCHAR, measures::VARCHAR FROM alerts").fetchall()
    group_columns = rule.group_columns
    alerts = [{**json.loads(group), **json.loads(measures)} for group, measures in rows]
    return _compare(alerts, test.expect, group_columns)


def _test_input(rule: CompiledRule, test: RuleTest) -> bytes:
    if test.lines is not None:
        text = test.lines
    else:
        path = rule.rule.base_dir / test.file
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise GatewatchError(f"cannot read test file {test.file!r}: {exc.strerror}", rule.rule.path)
    return (text if text.endswith("\n") else text + "\n").encode("utf-8")


def _compare(alerts: list[dict[str, Any]], expected: list[dict[str, Any]], group_by: list[str]) -> str:
    problems = []
    raised = "; ".join(f"[{_show(alert)}]" for alert in alerts) or "none"
    for item in expected:
        if not any(_matches(alert, item) for alert in alerts):
            problems.append(f"expected an alert for {_show(item)}, got none matching (alerts raised: {raised})")
    for alert in alerts:
        if not any(_matches(alert, item) for item in expected):
            group = {c: alert.get(c) for c in group_by}
            problems.append(f"unexpected alert for {_show(group)}")
    unique = list(dict.fromkeys(problems))
    return "; ".join(unique)


def _matches(alert: dict[str, Any], expected: dict[str, Any]) -> bool:
    return all(str(alert.get(key)) == str(value) for key, value in expected.items())


def _show(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items())
