"""Event-time evaluation: windows, watermark, suppression, exactly once."""

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
severity: high
type: aggregate
group_by: [client_ip]
window: 5m
every: 1m
having: count(*) >= 10
measures:
  requests: count(*)
suppress: 1h
summary: "{client_ip} sent {requests} requests in {window}"
"""

SETTINGS = EvaluationSettings(lateness=timedelta(0))


def compiled(tmp_path: Path, text: str = FLOOD_RULE):
    rule_set = load_rules([write_rule(tmp_path, "rule.yaml", text)])
    assert rule_set.errors == []
    return rule_set.rules[0]


def burst(ip: str, start: str, count: int, step_seconds: int = 1) -> list[dict]:
    first = at(start)
    return [
        {"ts": first + timedelta(seconds=i * step_seconds), "client_ip": ip, "method": "GET", "path": f"/p/{i}", "status": 200}
        for i in range(count)
    ]


def alerts(store) -> list[dict]:
    rows = store.con.execute(
        "SELECT group_key::VARCHAR, window_end, measures::VARCHAR, summary FROM alerts ORDER BY window_end"
    ).fetchall()
    return [
        {"group": json.loads(g), "window_end": end, "measures": json.loads(m), "summary": s} for g, end, m, s in rows
    ]


def test_evaluator_fires_on_burst(store, tmp_path):
    insert_events(store, burst("203.0.113.7", "10:00:00", 12) + burst("192.0.2.1", "10:00:00", 3))
    evaluate_rule(store, compiled(tmp_path), ["terminal"], SETTINGS, until=at("10:10:00"))
    found = alerts(store)
    assert [a["group"] for a in found] == [{"client_ip": "203.0.113.7"}]
    assert found[0]["measures"]["requests"] == 12
    assert found[0]["summary"] == "203.0.113.7 sent 12 requests in 5m"


def test_evaluator_sliding_window_spans_buckets(store, tmp_path):
    # 6 events before 10:01 and 6 after: no one-minute bucket contains 10,
    # but the 5-minute window ending 10:02 contains all 12.
    insert_events(store, burst("203.0.113.7", "10:00:50", 12, step_seconds=2))
    evaluate_rule(store, compiled(tmp_path), [], SETTINGS, until=at("10:10:00"))
    assert len(alerts(store)) == 1


def test_evaluator_stops_at_watermark(store, tmp_path):
    insert_events(store, burst("203.0.113.7", "10:00:00", 12))
    rule = compiled(tmp_path)
    evaluate_rule(store, rule, [], SETTINGS, until=at("09:59:00"))
    assert alerts(store) == []
    report = evaluate_rule(store, rule, [], SETTINGS, until=at("10:03:00"))
    assert len(report.alert_ids) == 1


def test_evaluator_second_pass_adds_nothing(store, tmp_path):
    insert_events(store, burst("203.0.113.7", "10:00:00", 12))
    rule = compiled(tmp_path)
    evaluate_rule(store, rule, ["slack"], SETTINGS, until=at("10:10:00"))
    again = evaluate_rule(store, rule, ["slack"], SETTINGS, until=at("10:10:00"))
    assert again.alert_ids == []
    assert store.con.execute("SELECT count(*) FROM outbox").fetchone()[0] == 1


def test_evaluator_suppresses_repeats_within_span(store, tmp_path):
    # Active for 20 minutes: one alert, the later windows suppressed.
    insert_events(store, burst("203.0.113.7", "10:00:00", 240, step_seconds=5))
    report = evaluate_rule(store, compiled(tmp_path), [], SETTINGS, until=at("10:30:00"))
    assert len(report.alert_ids) == 1
    assert report.suppressed > 0


def test_evaluator_alerts_again_after_suppress_span(store, tmp_path):
    insert_events(store, burst("203.0.113.7", "10:00:00", 12) + burst("203.0.113.7", "11:30:00", 12))
    evaluate_rule(store, compiled(tmp_path), [], SETTINGS, until=at("12:00:00"))
    assert len(alerts(store)) == 2


def test_evaluator_replay_matches_incremental(tmp_path):
    """Event time: evaluating in many small ticks gives the alerts of one big pass."""
    from gatewatch.store import Store

    events = burst("203.0.113.7", "10:00:00", 30, 7) + burst("198.51.100.9", "10:20:00", 15, 3)
    with Store(tmp_path / "one.duckdb") as whole, Store(tmp_path / "many.duckdb") as ticked:
        insert_events(whole, events)
        insert_events(ticked, events)
        rule = compiled(tmp_path)
        evaluate_rule(whole, rule, [], SETTINGS, until=at("11:00:00"))
        for minute in range(0, 61, 3):
            evaluate_rule(ticked, rule, [], SETTINGS, until=at("10:00:00") + timedelta(minutes=minute))
        assert alerts(whole) == alerts(ticked)


def test_evaluator_match_rule_groups_events(store, tmp_path):
    rule = compiled(
        tmp_path,
        """\
id: env-probe
title: Env probe
severity: medium
type: match
where: path = '/.env'
every: 5m
""",
    )
    rows = burst("192.0.2.1", "10:00:10", 3)
    for row in rows:
        row["path"] = "/.env"
    insert_events(store, rows + burst("192.0.2.2", "10:00:00", 3))
    evaluate_rule(store, rule, [], SETTINGS, until=at("10:10:00"))
    found = alerts(store)
    assert [a["group"] for a in found] == [{"client_ip": "192.0.2.1"}]
    assert found[0]["measures"]["events"] == 3


def test_evaluator_stores_evidence_and_query(store, tmp_path):
    insert_events(store, burst("203.0.113.7", "10:00:00", 12))
    evaluate_rule(store, compiled(tmp_path), [], SETTINGS, until=at("10:10:00"))
    evidence, query = store.con.execute("SELECT evidence::VARCHAR, query FROM alerts").fetchone()
    assert len(json.loads(evidence)) == 5
    assert store.con.execute(query).fetchall().__len__() == 12


def test_evaluator_outbox_row_per_notifier(store, tmp_path):
    insert_events(store, burst("203.0.113.7", "10:00:00", 12))
    evaluate_rule(store, compiled(tmp_path), ["terminal", "slack"], SETTINGS, until=at("10:10:00"))
    rows = store.con.execute("SELECT notifier, state FROM outbox ORDER BY notifier").fetchall()
    assert rows == [("slack", "pending"), ("terminal", "pending")]


def test_evaluator_jumps_gap_between_bursts(store, tmp_path):
    later = [dict(row, ts=row["ts"] + timedelta(days=365)) for row in burst("198.51.100.9", "10:00:00", 12)]
    insert_events(store, burst("203.0.113.7", "10:00:00", 12) + later)
    settings = EvaluationSettings(lateness=timedelta(0), new_rule_lookback=timedelta(days=800))
    report = evaluate_rule(store, compiled(tmp_path), [], settings, until=at("11:00:00") + timedelta(days=365))
    assert len(report.alert_ids) == 2
    assert report.evaluated_to == at("11:00:00") + timedelta(days=365)


def test_evaluator_new_rule_starts_at_lookback(store, tmp_path):
    old = burst("203.0.113.7", "10:00:00", 12)
    recent = [dict(row, ts=row["ts"] + timedelta(days=30)) for row in burst("198.51.100.9", "10:00:00", 12)]
    insert_events(store, old + recent)
    report = evaluate_rule(store, compiled(tmp_path), [], SETTINGS, until=at("11:00:00") + timedelta(days=30))
    assert [a["group"] for a in alerts(store)] == [{"client_ip": "198.51.100.9"}]
    assert report.evaluated_from == at("10:59:00") + timedelta(days=23)
