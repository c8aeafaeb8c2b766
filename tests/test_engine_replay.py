"""Replay equals live: the sample day at once or in small increments gives the same alerts."""

from __future__ import annotations

import gzip
from datetime import timedelta

from helpers import REPO

from gatewatch.connectors import get_connector
from gatewatch.engine.evaluator import EvaluationSettings, evaluate_rule
from gatewatch.engine.loader import BUILTIN, load_rules
from gatewatch.ingest import add_lineage, split_lines
from gatewatch.store import Store

SAMPLE = REPO / "sample_logs"
SETTINGS = EvaluationSettings(lateness=timedelta(minutes=1), catch_up_after=None)


def sample_events():
    data = gzip.decompress((SAMPLE / "access.log.2.gz").read_bytes())
    data += (SAMPLE / "access.log.1").read_bytes() + (SAMPLE / "access.log").read_bytes()
    parsed = get_connector("combined")().parse(split_lines(data, 0))
    assert parsed.rejects.height == 0
    return add_lineage(parsed.events, "edge", "combined", "access.log").sort("ts")


def ingest(store: Store, frame) -> None:
    with store.transaction():
        store.insert_frame("events", frame)
        store.update_source_state("edge", frame["ts"].min(), frame["ts"].max())


def alerts(store: Store) -> list[tuple]:
    return store.con.execute(
        "SELECT rule_id, group_key::VARCHAR, window_end, severity, measures::VARCHAR FROM alerts ORDER BY ALL"
    ).fetchall()


def test_replay_increments_match_one_run(tmp_path):
    rules = load_rules([BUILTIN])
    assert rules.errors == []
    events = sample_events()
    with Store(tmp_path / "once.duckdb") as once, Store(tmp_path / "ticks.duckdb") as ticks:
        ingest(once, events)
        for rule in rules.rules:
            evaluate_rule(once, rule, [], SETTINGS)
        # 37 uneven increments, with every rule evaluated after each.
        size = events.height // 37 + 1
        for start in range(0, events.height, size):
            ingest(ticks, events.slice(start, size))
            for rule in rules.rules:
                evaluate_rule(ticks, rule, [], SETTINGS)
        expected = alerts(once)
        assert len(expected) >= 15
        assert alerts(ticks) == expected
        for table in ("baseline_history", "seen_values"):
            query = f"SELECT * FROM {table} ORDER BY ALL"
            assert ticks.con.execute(query).fetchall() == once.con.execute(query).fetchall()
