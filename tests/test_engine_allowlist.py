"""Allowlists defined once in a lists file and used by rules."""

from __future__ import annotations

import json
from datetime import timedelta

from helpers import at, insert_events, write_rule

from gatewatch.engine.evaluator import EvaluationSettings, evaluate_rule
from gatewatch.engine.loader import load_rules

LISTS = """\
lists:
  office:
    kind: cidr
    values: [192.0.2.0/24, "2001:db8:1000::/36"]
  partners:
    kind: user_agent
    values: ["AcmeERP-Sync/*"]
  qa:
    kind: user
    file: qa-users.txt
  health:
    kind: path
    values: [/healthz, "/status/*"]
"""

FLOOD = """\
id: flood
title: Flood
severity: high
type: aggregate
allowlist: [office, partners, qa, health]
group_by: [client_ip]
window: 5m
every: 1m
having: count(*) >= 5
"""

SETTINGS = EvaluationSettings(lateness=timedelta(0), catch_up_after=None)


def load(tmp_path, rule=FLOOD, lists=LISTS):
    write_rule(tmp_path, "lists.yaml", lists)
    write_rule(tmp_path, "qa-users.txt", "# test accounts\nqa-*@example.com\n")
    write_rule(tmp_path, "flood.yaml", rule)
    return load_rules([tmp_path])


def burst(ip: str, **columns) -> list[dict]:
    return [
        {"ts": at("10:00:00") + timedelta(seconds=i), "client_ip": ip, "path": "/", "status": 200, **columns}
        for i in range(6)
    ]


def test_allowlist_excludes_each_kind(store, tmp_path):
    rule_set = load(tmp_path)
    assert [str(e) for e in rule_set.errors] == []
    rows = (
        burst("192.0.2.7")
        + burst("2001:db8:1abc::5")
        + burst("198.51.100.1", user_agent="AcmeERP-Sync/3.4.2 Go-http-client/1.1")
        + burst("198.51.100.2", user="qa-17@example.com")
        + burst("198.51.100.3", path="/status/db")
        + burst("198.51.100.4")
        + burst("2001:db8:2000::1")
    )
    insert_events(store, rows)
    evaluate_rule(store, rule_set.rules[0], [], SETTINGS, until=at("10:10:00"))
    groups = [json.loads(r[0]) for r in store.con.execute("SELECT group_key::VARCHAR FROM alerts ORDER BY 1").fetchall()]
    assert groups == [{"client_ip": "198.51.100.4"}, {"client_ip": "2001:db8:2000::1"}]


def test_allowlist_unknown_name_suggests(tmp_path):
    rule_set = load(tmp_path, FLOOD.replace("[office, partners, qa, health]", "[ofice]"))
    assert len(rule_set.errors) == 1
    message = str(rule_set.errors[0])
    assert "flood.yaml:5:" in message
    assert "unknown list 'ofice' in `allowlist`; did you mean 'office'?" in message


def test_allowlist_invalid_network_has_line(tmp_path):
    rule_set = load(tmp_path, lists=LISTS.replace("192.0.2.0/24", "192.0.2.0/33"))
    message = str(rule_set.errors[0])
    assert "lists.yaml:4:" in message
    assert "invalid network '192.0.2.0/33'" in message


def test_allowlist_in_sql_rule(store, tmp_path):
    rule = """\
id: many
title: Many
severity: low
type: sql
allowlist: [office]
group_by: [client_ip]
window: 5m
every: 1m
query: |
  SELECT window_end, client_ip, count(*) AS n FROM events GROUP BY ALL HAVING count(*) >= 5
"""
    rule_set = load(tmp_path, rule)
    assert [str(e) for e in rule_set.errors] == []
    insert_events(store, burst("192.0.2.7") + burst("198.51.100.4"))
    evaluate_rule(store, rule_set.rules[0], [], SETTINGS, until=at("10:10:00"))
    groups = [r[0] for r in store.con.execute("SELECT group_key->>'client_ip' FROM alerts").fetchall()]
    assert groups == ["198.51.100.4"]


def test_in_list_matches_bad_agents(store, tmp_path):
    lists = LISTS + "  bad-agents:\n    kind: user_agent\n    values: ['*masscan*', 'Go-http-client/1.1']\n"
    rule = """\
id: bad-agent
title: Bad agent
severity: low
type: match
where: in_list('bad-agents') and status < 500
group_by: [client_ip]
"""
    rule_set = load(tmp_path, rule, lists)
    assert [str(e) for e in rule_set.errors] == []
    rows = burst("198.51.100.1", user_agent="masscan/1.3") + burst("198.51.100.2", user_agent="curl/8.5.0")
    insert_events(store, rows)
    evaluate_rule(store, rule_set.rules[0], [], SETTINGS, until=at("10:10:00"))
    groups = [r[0] for r in store.con.execute("SELECT group_key->>'client_ip' FROM alerts").fetchall()]
    assert groups == ["198.51.100.1"]


def test_in_list_unknown_name_has_column(tmp_path):
    rule = "id: x\ntitle: X\nseverity: low\ntype: match\nwhere: in_list('bad-agent') and status < 500\n"
    rule_set = load(tmp_path, rule, LISTS + "  bad-agents:\n    kind: user_agent\n    values: []\n")
    message = str(rule_set.errors[0])
    assert "flood.yaml:5:17: " in message
    assert "unknown list 'bad-agent'; did you mean 'bad-agents'?" in message
