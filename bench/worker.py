#!/usr/bin/env python3
"""Run one measured benchmark step in its own process and print its timings as JSON.

bench/run.py starts this script once per measurement under GNU time, so
that each step starts cold and its peak RSS is the step's own. The output
also carries the process's VmHWM from /proc as a cross-check.

    python bench/worker.py ingest CONFIG     # every source of CONFIG, cold store
    python bench/worker.py evaluate CONFIG   # every enabled rule of CONFIG, rule by rule

Both steps call the library as ``gatewatch run --once`` does, without the
command-line layer, and time only the step itself (not the imports).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from gatewatch.config import load_config
from gatewatch.engine.evaluator import EvaluationSettings, evaluate_rule
from gatewatch.engine.loader import load_rules
from gatewatch.ingest import ingest_source
from gatewatch.runner import build_connector, run_lock
from gatewatch.store import Store


def ingest(config_path: Path) -> dict:
    """Ingest every source of the config; return lines, events, bytes and seconds."""
    config = load_config(config_path)
    database = config.resolve(config.database)
    sources = []
    began = time.perf_counter()
    with run_lock(database), Store(database) as store:
        for index, source in enumerate(config.sources):
            connector = build_connector(config, index)
            patterns = [str(config.resolve(p)) for p in source.paths]
            source_began = time.perf_counter()
            report = ingest_source(store, source.name, source.format, connector, patterns)
            sources.append({
                "source": source.name,
                "format": source.format,
                "lines": report.lines,
                "events": report.events,
                "rejects": report.rejects,
                "bytes": sum(f.bytes_read for f in report.files),
                "seconds": time.perf_counter() - source_began,
            })
    # Closing the store checkpoints DuckDB's write-ahead log into the file,
    # which is part of the cost of an ingest run.
    return {"seconds": time.perf_counter() - began, "sources": sources}


def evaluate(config_path: Path) -> dict:
    """Evaluate every enabled rule up to the watermark; return seconds and alerts per rule."""
    config = load_config(config_path)
    database = config.resolve(config.database)
    locations = [loc if loc == "builtin" else str(config.resolve(loc)) for loc in config.rules]
    settings = EvaluationSettings(
        lateness=config.engine.allowed_lateness,
        new_rule_lookback=config.engine.new_rule_lookback,
        evidence_rows=config.engine.evidence_rows,
    )
    notifiers = [n.name for n in config.notifiers]

    began = time.perf_counter()
    rule_set = load_rules(locations)
    if rule_set.errors:
        failures = "; ".join(str(error) for error in rule_set.errors)
        raise SystemExit(f"the rules failed to load: {failures}; check them with `gatewatch rules validate`")
    load_seconds = time.perf_counter() - began

    rules = []
    with run_lock(database), Store(database) as store:
        for rule in rule_set.rules:
            if not rule.rule.enabled:
                continue
            rule_began = time.perf_counter()
            report = evaluate_rule(store, rule, notifiers, settings)
            rules.append({
                "rule": rule.id,
                "seconds": time.perf_counter() - rule_began,
                "alerts": len(report.alert_ids),
                "suppressed": report.suppressed,
                "evaluated_from": report.evaluated_from.isoformat() if report.evaluated_from else None,
                "evaluated_to": report.evaluated_to.isoformat() if report.evaluated_to else None,
            })
    return {"seconds": time.perf_counter() - began, "load_seconds": load_seconds, "rules": rules}


STEPS = {"ingest": ingest, "evaluate": evaluate}


def peak_rss_bytes() -> int:
    """Return this process's peak RSS from /proc (VmHWM, counted from exec)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("VmHWM not found in /proc/self/status")


def main() -> None:
    if len(sys.argv) != 3 or sys.argv[1] not in STEPS:
        raise SystemExit(f"usage: {Path(sys.argv[0]).name} {{{','.join(STEPS)}}} CONFIG")
    result = STEPS[sys.argv[1]](Path(sys.argv[2]))
    result["vm_hwm_bytes"] = peak_rss_bytes()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
