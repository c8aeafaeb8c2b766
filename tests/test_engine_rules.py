"""Rule loading and SQL checks: each fault names the file, the line and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import write_rule

from gatewatch.engine.loader import builtin_rules_dir, load_rules

VALID = """\
id: stuffing
title: Stuffing
severity: high
type: aggregate
where: method = 'POST' and status in (401, 403)
window: 5m
having: count(*) >= 20 and count(distinct "user") >= 10
"""


def only_error(tmp_path: Path, text: str) -> str:
    path = write_rule(tmp_path, "rule.yaml", text)
    rule_set = load_rules([path])
    assert rule_set.rules == []
    assert len(rule_set.errors) == 1
    return str(rule_set.errors[0])


def test_rule_valid_loads(tmp_path):
    rule_set = load_rules([write_rule(tmp_path, "rule.yaml", VALID)])
    assert rule_set.errors == []
    assert rule_set.rules[0].id == "stuffing"


def test_rule_unknown_column_suggests_name(tmp_path):
    message = only_error(tmp_path, VALID.replace("method = 'POST'", "methd = 'POST'"))
    assert message.startswith(f"{tmp_path / 'rule.yaml'}:5:")
    assert "unknown column 'methd'; did you mean 'method'?" in message


def test_rule_unknown_column_in_having(tmp_path):
    message = only_error(tmp_path, VALID.replace('distinct "user"', "distinct usr"))
    assert ":7:" in message
    assert "did you mean 'user'?" in message


def test_rule_statement_rejected(tmp_path):
    message = only_error(tmp_path, VALID.replace("status in (401, 403)", "status = 401; DROP TABLE events"))
    assert "one SQL expression" in message


def test_rule_subquery_rejected(tmp_path):
    message = only_error(tmp_path, VALID.replace("status in (401, 403)", "status in (SELECT status FROM alerts)"))
    assert "not allowed" in message


def test_rule_table_function_rejected(tmp_path):
    text = VALID.replace("status in (401, 403)", "path in (read_csv('/etc/passwd'))")
    message = only_error(tmp_path, text)
    assert "read_csv() is not allowed" in message


def test_rule_aggregate_in_where_rejected(tmp_path):
    message = only_error(tmp_path, VALID.replace("status in (401, 403)", "count(*) > 3"))
    assert "move it to `having:`" in message


def test_rule_bad_duration_names_value(tmp_path):
    message = only_error(tmp_path, VALID.replace("window: 5m", "window: 5 minutes"))
    assert ":6:" in message
    assert "'5 minutes'" in message
    assert "such as 30s, 5m, 1h or 7d" in message


def test_rule_unknown_key_suggests_name(tmp_path):
    message = only_error(tmp_path, VALID + "suppres: 1h\n")
    assert ":8:" in message
    assert "did you mean 'suppress'?" in message


def test_rule_malformed_yaml_has_line(tmp_path):
    message = only_error(tmp_path, VALID + "tests: [unclosed\n")
    assert "invalid YAML" in message
    assert f"{tmp_path / 'rule.yaml'}:" in message


def test_rule_unknown_function_caught_at_load(tmp_path):
    message = only_error(tmp_path, VALID.replace("status in (401, 403)", "no_such_function(path)"))
    assert "DuckDB rejects the rule's SQL" in message


def test_rule_summary_unknown_placeholder(tmp_path):
    message = only_error(tmp_path, VALID + 'summary: "{client_ip} tried {accounts}"\n')
    assert "unknown placeholder {accounts}" in message


def test_rule_broken_one_does_not_stop_others(tmp_path):
    write_rule(tmp_path, "a.yaml", VALID)
    write_rule(tmp_path, "b.yaml", VALID.replace("id: stuffing", "id: broken").replace("window: 5m", "window: x"))
    rule_set = load_rules([tmp_path])
    assert [r.id for r in rule_set.rules] == ["stuffing"]
    assert len(rule_set.errors) == 1


def test_rule_duplicate_id_reported(tmp_path):
    write_rule(tmp_path, "a.yaml", VALID)
    write_rule(tmp_path, "b.yaml", VALID)
    rule_set = load_rules([tmp_path])
    assert len(rule_set.rules) == 1
    assert "duplicate rule id 'stuffing'" in str(rule_set.errors[0])


@pytest.mark.skipif(not any(builtin_rules_dir().glob("*.yaml")), reason="no built-in rules yet")
def test_rule_builtin_pack_valid():
    rule_set = load_rules(["builtin"])
    assert [str(e) for e in rule_set.errors] == []
    assert len(rule_set.rules) >= 6


def test_rule_missing_folder_keeps_other_rules(tmp_path):
    write_rule(tmp_path, "a.yaml", VALID)
    rule_set = load_rules([tmp_path / "missing", tmp_path])
    assert [r.id for r in rule_set.rules] == ["stuffing"]
    assert "rule file or folder not found" in str(rule_set.errors[0])


@pytest.mark.parametrize(
    "where",
    ["status = 'abc'", "status // 0 = 1", "cast(path as integer) = 1", "regexp_matches(path, '(')"],
)
def test_rule_runtime_fault_caught_at_load(tmp_path, where):
    message = only_error(tmp_path, VALID.replace("method = 'POST' and status in (401, 403)", where))
    assert ":5:" in message
    assert "DuckDB rejects the rule's SQL" in message


def test_rule_window_shorter_than_every(tmp_path):
    message = only_error(tmp_path, VALID + "every: 10m\n")
    assert "shorter than `every`" in message


def test_rule_list_generator_rejected(tmp_path):
    message = only_error(tmp_path, VALID.replace("status in (401, 403)", "len(range(0, 2000000000)) > 0"))
    assert "builds lists of unbounded size" in message


def test_rule_error_column_plain_value(tmp_path):
    message = only_error(tmp_path, VALID.replace("method = 'POST'", "methd = 'POST'"))
    # `where: ` is 7 characters, so the column name starts in column 8.
    assert message.startswith(f"{tmp_path / 'rule.yaml'}:5:8: ")


def test_rule_error_column_block_value(tmp_path):
    text = VALID.replace(
        "where: method = 'POST' and status in (401, 403)\n",
        "where: |\n  method = 'POST'\n    and statuss in (401, 403)\n",
    )
    message = only_error(tmp_path, text)
    assert message.startswith(f"{tmp_path / 'rule.yaml'}:7:9: ")
    assert "did you mean 'status'?" in message


def test_rule_error_column_in_sequence_step(tmp_path):
    text = """\
id: seq
title: Seq
severity: low
type: sequence
sequence:
  within: 5m
  steps:
    - name: fail
      where: status = 401
    - name: ok
      where: statsu = 200
"""
    message = only_error(tmp_path, text)
    assert message.startswith(f"{tmp_path / 'rule.yaml'}:11:14: ")
    assert "did you mean 'status'?" in message
