"""The stateful rule types on small event sets with exact expected alerts."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from helpers import at, insert_events, write_rule

from gatewatch.engine.evaluator import EvaluationSettings, evaluate_rule
from gatewatch.engine.loader import load_rules
from gatewatch.store import Store

SETTINGS = EvaluationSettings(lateness=timedelta(0), catch_up_after=None)


def compiled(tmp_path: Path, text: str):
    rule_set = load_rules([write_rule(tmp_path, "rule.yaml", text)])
    assert [str(e) for e in rule_set.errors] == []
    return rule_set.rules[0]


def load_error(tmp_path: Path, text: str) -> str:
    rule_set = load_rules([write_rule(tmp_path, "rule.yaml", text)])
    assert rule_set.rules == []
    return str(rule_set.errors[0])


def alerts(store: Store) -> list[dict]:
    rows = store.con.execute(
        "SELECT group_key::VARCHAR, window_end, measures::VARCHAR, severity, summary FROM alerts "
        "ORDER BY window_end, group_key::VARCHAR"
    ).fetchall()
    return [
        {"group": json.loads(g), "window_end": end, "measures": json.loads(m), "severity": sev, "summary": s}
        for g, end, m, sev, s in rows
    ]


def event(ts: str, ip: str = "192.0.2.1", **columns) -> dict:
    return {"ts": at(ts), "client_ip": ip, "method": "GET", "path": "/", "status": 200, **columns}


def spaced(start: str, count: int, seconds: float, **columns) -> list[dict]:
    first = at(start)
    rows = []
    for i in range(count):
        row = event("00:00:00", **columns)
        row["ts"] = first + timedelta(seconds=i * seconds)
        rows.append(row)
    return rows


# --- baseline ---------------------------------------------------------------

GLOBAL_SPIKE = """\
id: spike
title: Traffic spike
severity: medium
type: baseline
group_by: []
window: 10m
every: 10m
baseline:
  measure: count(*)
  compare: previous
  periods: 6
  min_history: 3
  zscore: 3
  ratio: 3
  min_value: 20
summary: "{value} requests in {window}, baseline {baseline_mean}"
"""


def test_baseline_global_spike_fires(store, tmp_path):
    # 10 requests per 10 minutes for an hour, then 100 in 10 minutes.
    rows = spaced("10:00:30", 60, 60) + spaced("11:00:03", 100, 6)
    insert_events(store, rows)
    evaluate_rule(store, compiled(tmp_path, GLOBAL_SPIKE), [], SETTINGS, until=at("11:30:00"))
    found = alerts(store)
    assert [a["window_end"] for a in found] == [at("11:10:00")]
    assert found[0]["group"] == {}
    assert found[0]["measures"]["value"] == 100
    assert found[0]["measures"]["history_windows"] == 6
    assert found[0]["measures"]["baseline_mean"] == 10


def test_baseline_quiet_on_steady_traffic(store, tmp_path):
    insert_events(store, spaced("10:00:00", 120, 60))
    evaluate_rule(store, compiled(tmp_path, GLOBAL_SPIKE), [], SETTINGS, until=at("12:30:00"))
    assert alerts(store) == []


def test_baseline_needs_min_history(store, tmp_path):
    # Only two earlier windows exist: below min_history 3, so no alert.
    rows = spaced("10:00:30", 20, 60) + spaced("10:20:03", 100, 6)
    insert_events(store, rows)
    evaluate_rule(store, compiled(tmp_path, GLOBAL_SPIKE), [], SETTINGS, until=at("11:00:00"))
    assert alerts(store) == []


def test_baseline_near_miss_below_ratio(store, tmp_path):
    # 25 after a steady 10: z-score is high, but the ratio stays below 3.
    rows = spaced("10:00:30", 60, 60) + spaced("11:00:03", 25, 24)
    insert_events(store, rows)
    evaluate_rule(store, compiled(tmp_path, GLOBAL_SPIKE), [], SETTINGS, until=at("11:30:00"))
    assert alerts(store) == []


def test_baseline_same_with_many_ticks(tmp_path):
    rows = spaced("10:00:30", 60, 60) + spaced("11:00:03", 100, 6)
    once = Store(tmp_path / "once.duckdb")
    ticks = Store(tmp_path / "ticks.duckdb")
    rule = compiled(tmp_path, GLOBAL_SPIKE)
    insert_events(once, rows)
    evaluate_rule(once, rule, [], SETTINGS, until=at("11:30:00"))
    for start in range(0, len(rows), 17):
        insert_events(ticks, rows[start:start + 17])
        evaluate_rule(ticks, rule, [], SETTINGS, until=rows[min(start + 16, len(rows) - 1)]["ts"])
    evaluate_rule(ticks, rule, [], SETTINGS, until=at("11:30:00"))
    assert alerts(once) == alerts(ticks)
    once.close()
    ticks.close()


PER_USER_SAME_HOUR = """\
id: user-bytes
title: User reads far more than usual
severity: medium
type: baseline
group_by: [user]
window: 1h
every: 1h
baseline:
  measure: sum(bytes_sent)
  compare: same_hour
  periods: 7
  min_history: 3
  zscore: 4
"""


def test_baseline_same_hour_per_user(store, tmp_path):
    rows = []
    for day in range(5):
        for user, size in (("alice", 1000), ("bob", 1000)):
            row = event("09:30:00", user=user, bytes_sent=size + day)
            row["ts"] = row["ts"] - timedelta(days=5 - day)
            rows.append(row)
    rows.append(event("09:30:00", user="alice", bytes_sent=50_000))
    rows.append(event("09:30:00", user="bob", bytes_sent=1003))
    insert_events(store, rows)
    rule = compiled(tmp_path, PER_USER_SAME_HOUR)
    settings = EvaluationSettings(lateness=timedelta(0), catch_up_after=None, new_rule_lookback=timedelta(days=30))
    evaluate_rule(store, rule, [], settings, until=at("11:00:00"))
    found = alerts(store)
    assert [a["group"] for a in found] == [{"user": "alice"}]
    assert found[0]["measures"]["history_windows"] == 5


def test_baseline_rejects_missing_test(tmp_path):
    text = GLOBAL_SPIKE.replace("  zscore: 3\n  ratio: 3\n", "")
    assert "needs `zscore:` or `ratio:`" in load_error(tmp_path, text)


def test_baseline_rejects_window_off_grid(tmp_path):
    text = GLOBAL_SPIKE.replace("every: 10m", "every: 3m")
    assert "whole multiple of `every`" in load_error(tmp_path, text)


# --- new_value --------------------------------------------------------------

NEW_COUNTRY = """\
id: token-new-country
title: Token used from a new country
severity: high
type: new_value
where: credential_id IS NOT NULL
group_by: [credential_id]
every: 1m
new_value:
  fields: [country]
  history: 30d
  learning: 1h
summary: "{credential_id} used from {country}"
"""


def test_new_value_fires_on_new_country(store, tmp_path):
    rows = [
        event("08:00:00", credential_id="tok1", country="DE"),
        event("09:30:00", credential_id="tok1", country="DE"),
        event("09:31:10", credential_id="tok1", country="BR"),
        event("09:32:00", credential_id="tok1", country="BR"),
    ]
    insert_events(store, rows)
    evaluate_rule(store, compiled(tmp_path, NEW_COUNTRY), [], SETTINGS, until=at("10:00:00"))
    found = alerts(store)
    assert [a["group"] for a in found] == [{"credential_id": "tok1", "country": "BR"}]
    assert found[0]["window_end"] == at("09:32:00")
    assert found[0]["measures"]["known_values"] == 1


def test_new_value_quiet_while_learning(store, tmp_path):
    # A new token seen in two countries within its first hour: still learning.
    rows = [
        event("09:00:00", credential_id="tok2", country="DE"),
        event("09:20:00", credential_id="tok2", country="FR"),
    ]
    insert_events(store, rows)
    evaluate_rule(store, compiled(tmp_path, NEW_COUNTRY), [], SETTINGS, until=at("10:00:00"))
    assert alerts(store) == []


def test_new_value_restart_does_not_repeat(tmp_path):
    path = tmp_path / "store.duckdb"
    rule = compiled(tmp_path, NEW_COUNTRY)
    with Store(path) as store:
        insert_events(store, [event("08:00:00", credential_id="tok1", country="DE")])
        evaluate_rule(store, rule, [], SETTINGS, until=at("08:30:00"))
    with Store(path) as store:
        # DE again after a restart is known; FR is new.
        insert_events(store, [event("10:00:00", credential_id="tok1", country="DE"), event("10:05:00", credential_id="tok1", country="FR")])
        evaluate_rule(store, rule, [], SETTINGS, until=at("10:30:00"))
        assert [a["group"]["country"] for a in alerts(store)] == ["FR"]
        seen = store.con.execute("SELECT value_key FROM seen_values ORDER BY 1").fetchall()
        assert seen == [('["DE"]',), ('["FR"]',)]


def test_new_value_expires_after_history(store, tmp_path):
    text = NEW_COUNTRY.replace("history: 30d", "history: 1d")
    # FR two days ago, DE yesterday and today, FR again today: FR is new
    # again because it was not seen within the one-day history.
    rows = [
        event("08:00:00", credential_id="tok1", country="FR"),
        event("08:00:00", credential_id="tok1", country="DE"),
        event("08:00:00", credential_id="tok1", country="DE"),
        event("09:00:00", credential_id="tok1", country="FR"),
    ]
    rows[0]["ts"] -= timedelta(days=2)
    rows[1]["ts"] -= timedelta(days=1)
    insert_events(store, rows)
    evaluate_rule(store, compiled(tmp_path, text), [], SETTINGS, until=at("10:00:00"))
    assert [(a["group"]["country"], a["window_end"]) for a in alerts(store)] == [("FR", at("09:00:00"))]


def test_new_value_rejects_field_in_group(tmp_path):
    text = NEW_COUNTRY.replace("fields: [country]", "fields: [credential_id]")
    assert "in both `group_by` and `new_value.fields`" in load_error(tmp_path, text)


# --- sequence ---------------------------------------------------------------

FAIL_THEN_SUCCESS = """\
id: fail-then-success
title: Failed logins then a success
severity: high
type: sequence
where: path = '/login'
group_by: [client_ip]
every: 1m
sequence:
  within: 10m
  steps:
    - name: failures
      where: status = 401
      min_count: 5
    - name: success
      where: status = 200
summary: "{client_ip}: {failures} failures then a success"
"""


def test_sequence_fires_after_failures(store, tmp_path):
    rows = spaced("10:00:00", 6, 10, path="/login", status=401)
    rows.append(event("10:01:30", path="/login", status=200))
    insert_events(store, rows)
    evaluate_rule(store, compiled(tmp_path, FAIL_THEN_SUCCESS), [], SETTINGS, until=at("10:30:00"))
    found = alerts(store)
    assert [(a["group"], a["window_end"]) for a in found] == [({"client_ip": "192.0.2.1"}, at("10:02:00"))]
    assert found[0]["measures"]["failures"] == 6
    assert found[0]["measures"]["success"] == 1
    assert found[0]["measures"]["first_event"] == "2026-11-03T10:00:00"


def test_sequence_needs_order(store, tmp_path):
    # The success comes first: no sequence.
    rows = [event("10:00:00", path="/login", status=200)] + spaced("10:00:10", 6, 10, path="/login", status=401)
    insert_events(store, rows)
    evaluate_rule(store, compiled(tmp_path, FAIL_THEN_SUCCESS), [], SETTINGS, until=at("10:30:00"))
    assert alerts(store) == []


def test_sequence_near_miss_outside_within(store, tmp_path):
    # Five failures, but the first is more than 10 minutes before the success.
    rows = spaced("10:00:00", 5, 150, path="/login", status=401)
    rows.append(event("10:10:30", path="/login", status=200))
    insert_events(store, rows)
    evaluate_rule(store, compiled(tmp_path, FAIL_THEN_SUCCESS), [], SETTINGS, until=at("10:30:00"))
    assert alerts(store) == []


def test_sequence_three_steps(store, tmp_path):
    text = FAIL_THEN_SUCCESS.replace(
        "      where: status = 200\n",
        "      where: status = 200\n    - name: export\n      where: status = 202\n",
    ).replace("where: path = '/login'", "where: path in ('/login', '/export')")
    rows = spaced("10:00:00", 5, 5, path="/login", status=401)
    rows.append(event("10:01:00", path="/login", status=200))
    rows.append(event("10:02:00", path="/export", status=202))
    insert_events(store, rows)
    evaluate_rule(store, compiled(tmp_path, text), [], SETTINGS, until=at("10:30:00"))
    assert [a["window_end"] for a in alerts(store)] == [at("10:02:00")]


# --- flatline ---------------------------------------------------------------

SOURCE_SILENT = """\
id: source-silent
title: Log source silent
severity: high
type: flatline
group_by: [source]
every: 5m
flatline:
  quiet: 30m
"""


def test_flatline_fires_when_source_stops(store, tmp_path):
    insert_events(store, spaced("10:00:00", 13, 300), source="waf")
    insert_events(store, spaced("10:00:00", 30, 300), source="edge")
    evaluate_rule(store, compiled(tmp_path, SOURCE_SILENT), [], SETTINGS, until=at("12:25:00"))
    found = alerts(store)
    assert [(a["group"], a["window_end"]) for a in found] == [({"source": "waf"}, at("11:30:00"))]
    assert found[0]["measures"]["last_event"] == "2026-11-03T11:00:00"


def test_flatline_quiet_on_short_gap(store, tmp_path):
    rows = spaced("10:00:00", 6, 300) + spaced("10:54:00", 10, 300)
    insert_events(store, rows, source="waf")
    evaluate_rule(store, compiled(tmp_path, SOURCE_SILENT), [], SETTINGS, until=at("11:40:00"))
    assert alerts(store) == []


def test_flatline_same_with_many_ticks(tmp_path):
    rule = compiled(tmp_path, SOURCE_SILENT)
    results = []
    for name, step in (("once", 100), ("ticks", 7)):
        with Store(tmp_path / f"{name}.duckdb") as store:
            waf = spaced("10:00:00", 13, 300)
            edge = spaced("10:00:00", 30, 300)
            for start in range(0, 30, step):
                insert_events(store, waf[start:start + step], source="waf") if waf[start:start + step] else None
                insert_events(store, edge[start:start + step], source="edge")
                evaluate_rule(store, rule, [], SETTINGS, until=edge[min(start + step, 29)]["ts"])
            results.append(alerts(store))
    assert results[0] == results[1]
    assert len(results[0]) == 1


# --- sql --------------------------------------------------------------------

SQL_RULE = """\
id: many-statuses
title: One client sees many distinct error statuses
severity: low
type: sql
window: 10m
every: 5m
group_by: [client_ip]
query: |
  SELECT window_end, client_ip, count(DISTINCT status) AS statuses
  FROM events
  WHERE status >= 400
  GROUP BY window_end, client_ip
  HAVING count(DISTINCT status) >= 3
"""


def test_sql_rule_fires(store, tmp_path):
    rows = [event("10:01:00", status=s) for s in (401, 403, 404)]
    rows += [event("10:01:00", ip="192.0.2.2", status=s) for s in (404, 404, 500)]
    insert_events(store, rows)
    evaluate_rule(store, compiled(tmp_path, SQL_RULE), [], SETTINGS, until=at("10:30:00"))
    found = alerts(store)
    assert [(a["group"], a["window_end"]) for a in found] == [({"client_ip": "192.0.2.1"}, at("10:05:00"))]
    assert found[0]["measures"] == {"statuses": 3}


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("SELECT window_end, client_ip, 1 AS n FROM event GROUP BY ALL", "unknown table 'event'; did you mean 'events'?"),
        ("SELECT window_end, client_ip, 1 AS n FROM read_csv('/etc/passwd')", "not allowed in a rule query"),
        ("SELECT window_end, client_ip, 1 AS n FROM main.events", "names a schema or database"),
        ("SELECT window_end, client_ip, getenv('HOME') AS n FROM events", "getenv() is not allowed"),
        ("SELECT window_end, client_ip, 1 AS n FROM events, range(10) r", "not allowed in a rule query"),
        ("SELECT window_end, 1 AS n FROM events", "does not return client_ip"),
        ("SELECT * FROM events", "instead of `*`"),
        ("DELETE FROM events", "write one SELECT query"),
        ("SELECT window_end, client_ip, count(*) AS n FROM events GROUP BY ALL; DROP TABLE events", "one SQL expression"),
    ],
)
def test_sql_rule_rejects_query(tmp_path, query, message):
    text = SQL_RULE.split("query: |")[0] + "query: " + json.dumps(query) + "\n"
    assert message in load_error(tmp_path, text)


def test_sql_rule_unknown_column_from_duckdb(tmp_path):
    text = SQL_RULE.replace("count(DISTINCT status) AS statuses", "count(DISTINCT statuss) AS statuses")
    error = load_error(tmp_path, text)
    assert "rule.yaml:8:" in error
    assert "statuss" in error


def test_baseline_missing_zero_fires_from_nothing(store, tmp_path):
    text = GLOBAL_SPIKE.replace("  min_history: 3\n", "  min_history: 0\n  missing: zero\n")
    rule = compiled(tmp_path, text)
    # One request in the first window, then 30 in the seventh: with the
    # empty windows counted as 0 the mean is 1/6.
    rows = spaced("10:00:30", 1, 60) + spaced("11:00:03", 30, 6)
    insert_events(store, rows)
    evaluate_rule(store, rule, [], SETTINGS, until=at("11:30:00"))
    found = alerts(store)
    assert [a["window_end"] for a in found] == [at("11:10:00")]
    assert round(found[0]["measures"]["baseline_mean"], 3) == round(1 / 6, 3)


def test_baseline_missing_skip_needs_history(store, tmp_path):
    rows = spaced("10:00:30", 1, 60) + spaced("11:00:03", 30, 6)
    insert_events(store, rows)
    evaluate_rule(store, compiled(tmp_path, GLOBAL_SPIKE), [], SETTINGS, until=at("11:30:00"))
    assert alerts(store) == []


NEW_ENDPOINT = """\
id: key-new-endpoint
title: Key calls a new endpoint
severity: medium
type: new_value
where: credential_id is not null
group_by: [credential_id]
every: 1m
new_value:
  fields:
    endpoint: method || ' ' || regexp_replace(path, '/[0-9]+', '/{id}', 'g')
  learning: 1h
"""


def test_new_value_expression_field(store, tmp_path):
    rows = [
        event("08:00:00", credential_id="k1", path="/api/v1/orders/17"),
        event("09:30:00", credential_id="k1", path="/api/v1/orders/18"),
        event("09:31:00", credential_id="k1", path="/api/v1/admin/users/4"),
    ]
    insert_events(store, rows)
    evaluate_rule(store, compiled(tmp_path, NEW_ENDPOINT), [], SETTINGS, until=at("10:00:00"))
    found = alerts(store)
    assert [a["group"] for a in found] == [{"credential_id": "k1", "endpoint": "GET /api/v1/admin/users/{id}"}]


def test_new_value_field_name_is_column(tmp_path):
    text = NEW_ENDPOINT.replace("    endpoint: method", "    path: method")
    assert "invalid field name 'path'" in load_error(tmp_path, text)
