"""Catch-up after downtime, digests, and escalation of repeat offenders."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from helpers import at, insert_events, write_rule

from gatewatch.engine.evaluator import EvaluationSettings, evaluate_rule
from gatewatch.engine.loader import load_rules

FLOOD_RULE = """\
id: flood
title: Flood
severity: medium
type: aggregate
group_by: [client_ip]
window: 5m
every: 1m
having: count(*) >= 10
suppress: 10m
escalate:
  after: 3
  within: 1h
"""

CATCH_UP = EvaluationSettings(lateness=timedelta(0), catch_up_after=timedelta(hours=1), catch_up_max_alerts=3)


def compiled(tmp_path: Path):
    rule_set = load_rules([write_rule(tmp_path, "rule.yaml", FLOOD_RULE)])
    assert rule_set.errors == []
    return rule_set.rules[0]


def burst(ip: str, start: str, count: int = 12) -> list[dict]:
    first = at(start)
    return [{"ts": first + timedelta(seconds=i), "client_ip": ip, "path": "/", "status": 200} for i in range(count)]


def outbox_alerts(store) -> list[str]:
    return [r[0] for r in store.con.execute("SELECT alert_id FROM outbox ORDER BY alert_id").fetchall()]


def test_catch_up_groups_many_alerts(store, tmp_path):
    rows = []
    for i in range(6):
        rows += burst(f"203.0.113.{i}", f"0{i}:00:00")
    rows += burst("192.0.2.1", "12:00:00", 1)
    insert_events(store, rows)
    report = evaluate_rule(store, compiled(tmp_path), ["slack"], CATCH_UP)
    assert report.grouped == 6
    digest = store.con.execute(
        "SELECT alert_id, title, measures::VARCHAR, evidence::VARCHAR FROM alerts WHERE group_key->>'catch_up' IS NOT NULL"
    ).fetchall()
    assert len(digest) == 1
    assert outbox_alerts(store) == [digest[0][0]]
    assert digest[0][1] == "Flood (catch-up digest)"
    assert json.loads(digest[0][2])["alerts"] == 6
    assert json.loads(digest[0][3]) == []
    members = store.con.execute("SELECT count(*) FROM alert_details WHERE digest_id = ? AND alert_id <> ?", [digest[0][0]] * 2).fetchone()
    assert members == (6,)


def test_catch_up_few_alerts_sent_alone(store, tmp_path):
    rows = burst("203.0.113.1", "01:00:00") + burst("203.0.113.2", "02:00:00") + burst("192.0.2.1", "12:00:00", 1)
    insert_events(store, rows)
    report = evaluate_rule(store, compiled(tmp_path), ["slack"], CATCH_UP)
    assert report.grouped == 0
    stored = [r[0] for r in store.con.execute("SELECT alert_id FROM alerts ORDER BY alert_id").fetchall()]
    assert len(stored) == 2
    assert outbox_alerts(store) == stored


def test_catch_up_recent_alerts_not_grouped(store, tmp_path):
    rows = []
    for i in range(6):
        rows += burst(f"203.0.113.{i}", f"11:{i * 5 + 10:02d}:00")
    rows += burst("192.0.2.1", "12:00:00", 1)
    insert_events(store, rows)
    report = evaluate_rule(store, compiled(tmp_path), ["slack"], CATCH_UP)
    assert report.grouped == 0
    assert len(outbox_alerts(store)) == 6


def test_catch_up_resumes_after_crash(store, tmp_path):
    # Catch-up alerts stored without outbox rows by a run that died before
    # the end are queued by the next run.
    rows = []
    for i in range(4):
        rows += burst(f"203.0.113.{i}", f"0{i}:00:00")
    rows += burst("192.0.2.1", "12:00:00", 1)
    insert_events(store, rows)
    rule = compiled(tmp_path)
    settings = EvaluationSettings(lateness=timedelta(0), catch_up_after=timedelta(hours=1), catch_up_max_alerts=3)
    evaluate_rule(store, rule, ["slack"], settings)
    store.con.execute("DELETE FROM outbox")
    store.con.execute("DELETE FROM alerts WHERE group_key->>'catch_up' IS NOT NULL")
    store.con.execute("UPDATE alert_details SET digest_id = NULL")
    store.con.execute("DELETE FROM alert_details WHERE rule_sql IS NULL")
    report = evaluate_rule(store, rule, ["slack"], settings)
    assert report.grouped == 4
    assert len(outbox_alerts(store)) == 1


def test_escalation_raises_severity(store, tmp_path):
    rows = burst("203.0.113.9", "10:00:00") + burst("203.0.113.9", "10:20:00") + burst("203.0.113.9", "10:40:00")
    insert_events(store, rows)
    evaluate_rule(store, compiled(tmp_path), [], EvaluationSettings(lateness=timedelta(0), catch_up_after=None), until=at("11:00:00"))
    found = store.con.execute("SELECT severity, summary, measures::VARCHAR FROM alerts ORDER BY window_end").fetchall()
    assert [f[0] for f in found] == ["medium", "medium", "high"]
    assert "repeat offender: alert 3 for this group within 1h" in found[2][1]
    assert json.loads(found[2][2])["times_fired"] == 3
    assert "times_fired" not in json.loads(found[1][2])


def test_escalation_forgets_old_alerts(store, tmp_path):
    rows = burst("203.0.113.9", "08:00:00") + burst("203.0.113.9", "09:30:00") + burst("203.0.113.9", "10:40:00")
    insert_events(store, rows)
    evaluate_rule(store, compiled(tmp_path), [], EvaluationSettings(lateness=timedelta(0), catch_up_after=None), until=at("11:00:00"))
    found = [r[0] for r in store.con.execute("SELECT severity FROM alerts ORDER BY window_end").fetchall()]
    assert found == ["medium", "medium", "medium"]
