#!/usr/bin/env python3
"""Measure gatewatch on generated traffic: ingest, evaluation, incremental tick, detection quality.

    python bench/run.py --lines 1000000 [--repeat 3] [--formats combined,nginx_json,apache_vhost]
                        [--workdir DIR] [--compare OTHER_RESULT.json]

Data sets are written by bench/generate.py into ``WORKDIR/data`` and reused
for the same line count, seed and rate. Every measured step runs in its own
process, repeated ``--repeat`` times, and the median is reported:

- ingest: bench/worker.py ingest into an empty store; lines/s and MB/s of
  the ingest call, peak RSS of the whole process
- evaluation: bench/worker.py evaluate, the whole built-in pack rule by
  rule over a copy of the ingested store, as the first ``gatewatch run
  --once`` after an ingest does
- tick: ``gatewatch run --once`` (the command line, wall time including
  start-up) over a copy of the evaluated store after 1% new lines with later
  timestamps were appended to the log

Detection quality compares the alerts with the generator's ground truth.
Tables go to stdout and every figure to a JSON file. ``--compare`` adds a
table that puts the figures of an earlier result (another line count) beside
these ones.

Peak RSS and CPU seconds come from bench/maxrss.py, which wraps every
measured process. The machine's load average is recorded before and after
each step, because wall times on a shared machine depend on it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import numpy
import polars

import generate

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
WORKER = BENCH_DIR / "worker.py"
MAXRSS = BENCH_DIR / "maxrss.py"
MB = 1_000_000

# Targets, set for 10M lines; the two ingest targets apply to nginx combined.
TARGET_LINES = 10_000_000
TARGET_INGEST_LINES_PER_SECOND = 300_000
TARGET_INGEST_PEAK_RSS_BYTES = 1.5 * 2**30
TARGET_EVALUATION_SECONDS = 60.0
TARGET_TICK_SECONDS = 5.0


# ------------------------------------------------------------ processes

@dataclass
class Measured:
    seconds: float
    peak_rss_bytes: int
    cpu_seconds: float
    load_before: float
    load_after: float
    returncode: int
    stdout: str
    stderr: str


def run_measured(command: list[str], log_dir: Path, name: str) -> Measured:
    """Run ``command`` to completion; return its wall time, peak RSS, CPU seconds and output.

    A child's ``ru_maxrss`` seen from this runner cannot be used: Linux
    starts it at the RSS of the process that forked it, so this runner's
    own memory would be reported. bench/maxrss.py is a small process, so its
    child starts near zero.
    """
    stdout_path = log_dir / f"{name}.stdout"
    stderr_path = log_dir / f"{name}.stderr"
    usage_path = log_dir / f"{name}.usage.json"
    timed = [sys.executable, str(MAXRSS), str(usage_path), *command]
    load_before = os.getloadavg()[0]
    with open(stdout_path, "w") as stdout, open(stderr_path, "w") as stderr:
        began = time.perf_counter()
        returncode = subprocess.run(timed, stdout=stdout, stderr=stderr, cwd=log_dir).returncode
        seconds = time.perf_counter() - began
    usage = json.loads(usage_path.read_text())
    return Measured(
        seconds=seconds,
        peak_rss_bytes=usage["peak_rss_bytes"],
        cpu_seconds=usage["user_seconds"] + usage["system_seconds"],
        load_before=load_before,
        load_after=os.getloadavg()[0],
        returncode=returncode,
        stdout=stdout_path.read_text(),
        stderr=stderr_path.read_text(),
    )


def run_checked(command: list[str], log_dir: Path, name: str) -> Measured:
    measured = run_measured(command, log_dir, name)
    if measured.returncode != 0:
        raise SystemExit(
            f"{' '.join(command)} failed with exit code {measured.returncode}:\n{measured.stderr[-2000:]}"
        )
    return measured


def gatewatch_command() -> list[str]:
    """Return the installed ``gatewatch`` console script, next to this Python if possible."""
    beside = Path(sys.executable).with_name("gatewatch")
    found = str(beside) if beside.exists() else shutil.which("gatewatch")
    if found is None:
        raise SystemExit("the gatewatch command is not installed; run `pip install -e .` in the repository")
    return [found]


# ----------------------------------------------------------------- data

def ensure_data(workdir: Path, lines: int, seed: int, lines_per_day: int) -> tuple[Path, dict, float | None]:
    """Return the data folder, its ground truth and the generation seconds (None when cached)."""
    folder = workdir / "data" / f"lines-{lines}-seed-{seed}-per-day-{lines_per_day}"
    truth_path = folder / generate.TRUTH_NAME
    files = [folder / name for name in (*generate.FILE_NAMES.values(), *generate.APPEND_NAMES.values())]
    if truth_path.exists() and all(path.exists() for path in files):
        truth = json.loads(truth_path.read_text())
        if truth.get("generator_version") == generate.GENERATOR_VERSION:
            return folder, truth, None
    if folder.exists():
        shutil.rmtree(folder)
    print(f"generating {lines:,} lines per format into {folder} ...", flush=True)
    result = generate.generate(lines, folder, seed=seed, lines_per_day=lines_per_day)
    return folder, json.loads(truth_path.read_text()), result.seconds


def write_config(folder: Path, format_name: str, log_path: Path, lookback_days: int) -> Path:
    """Write a gatewatch.yaml for one generated format; the store is ``events.duckdb`` beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "gatewatch.yaml"
    # No notifiers: the figures cover ingest and detection, not Slack. The
    # look-back covers the whole data set, so every stored event is evaluated
    # (the default of 7 days would skip the start of a 10-day data set).
    config.write_text(
        "database: events.duckdb\n"
        "sources:\n"
        "  - name: bench\n"
        f"    format: {generate.CONNECTORS[format_name]}\n"
        f"    path: {json.dumps(str(log_path))}\n"
        "rules: [builtin]\n"
        "notifiers: []\n"
        "engine:\n"
        f"  new_rule_lookback: {lookback_days}d\n"
    )
    return config


def used_store_bytes(store: Path) -> int:
    """Return the bytes of the store's used blocks; the file also keeps freed blocks for reuse."""
    con = duckdb.connect(str(store), read_only=True)
    try:
        block_size, used_blocks = con.execute("SELECT block_size, used_blocks FROM pragma_database_size()").fetchone()
    finally:
        con.close()
    return block_size * used_blocks


def copy_store(source: Path, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, folder / "events.duckdb")


# --------------------------------------------------------------- phases

def measure_ingest(run_dir: Path, format_name: str, log_path: Path, lookback_days: int, repeat: int) -> tuple[dict, Path]:
    """Ingest the log into an empty store ``repeat`` times; keep the last store."""
    runs = []
    folder = None
    for index in range(repeat):
        folder = run_dir / f"ingest-{index}"
        if folder.exists():
            shutil.rmtree(folder)
        config = write_config(folder, format_name, log_path, lookback_days)
        measured = run_checked([sys.executable, str(WORKER), "ingest", str(config)], folder, "ingest")
        result = json.loads(measured.stdout)
        source = result["sources"][0]
        size = (folder / "events.duckdb").stat().st_size
        used = used_store_bytes(folder / "events.duckdb")
        runs.append({
            "ingest_seconds": source["seconds"],
            "step_seconds": result["seconds"],
            "process_seconds": measured.seconds,
            "peak_rss_bytes": measured.peak_rss_bytes,
            "cpu_seconds": measured.cpu_seconds,
            "load_before": measured.load_before,
            "load_after": measured.load_after,
            "vm_hwm_bytes": result["vm_hwm_bytes"],
            "lines": source["lines"],
            "events": source["events"],
            "rejects": source["rejects"],
            "bytes": source["bytes"],
            "database_bytes": size,
            "database_used_bytes": used,
        })
        print(f"  ingest {format_name} run {index + 1}: {source['seconds']:.1f} s, "
              f"{source['lines'] / source['seconds']:,.0f} lines/s, peak RSS {measured.peak_rss_bytes / 2**20:,.0f} MiB, "
              f"CPU {measured.cpu_seconds:.1f} s, load {measured.load_before:.1f}-{measured.load_after:.1f}",
              flush=True)
        if index < repeat - 1:
            (folder / "events.duckdb").unlink()
    seconds = statistics.median(r["ingest_seconds"] for r in runs)
    last = runs[-1]
    summary = {
        "runs": runs,
        "median_seconds": seconds,
        "lines": last["lines"],
        "events": last["events"],
        "rejects": last["rejects"],
        "bytes": last["bytes"],
        "lines_per_second": last["lines"] / seconds,
        "mb_per_second": last["bytes"] / MB / seconds,
        "median_peak_rss_bytes": statistics.median(r["peak_rss_bytes"] for r in runs),
        "max_peak_rss_bytes": max(r["peak_rss_bytes"] for r in runs),
        "median_cpu_seconds": statistics.median(r["cpu_seconds"] for r in runs),
        "load": _load_range(runs),
        "database_bytes": last["database_bytes"],
        "database_bytes_per_million_events": last["database_bytes"] / max(1, last["events"]) * 1_000_000,
        "database_used_bytes": last["database_used_bytes"],
        "database_used_bytes_per_million_events": last["database_used_bytes"] / max(1, last["events"]) * 1_000_000,
    }
    return summary, folder / "events.duckdb"


def measure_evaluation(run_dir: Path, format_name: str, log_path: Path, lookback_days: int, base_store: Path,
                       repeat: int) -> tuple[dict, Path]:
    """Evaluate the built-in pack over copies of the ingested store; keep the last store."""
    runs = []
    folder = None
    for index in range(repeat):
        folder = run_dir / f"evaluate-{index}"
        if folder.exists():
            shutil.rmtree(folder)
        config = write_config(folder, format_name, log_path, lookback_days)
        copy_store(base_store, folder)
        measured = run_checked([sys.executable, str(WORKER), "evaluate", str(config)], folder, "evaluate")
        result = json.loads(measured.stdout)
        result["process_seconds"] = measured.seconds
        result["peak_rss_bytes"] = measured.peak_rss_bytes
        result["cpu_seconds"] = measured.cpu_seconds
        result["load_before"] = measured.load_before
        result["load_after"] = measured.load_after
        runs.append(result)
        print(f"  evaluate {format_name} run {index + 1}: {result['seconds']:.1f} s, "
              f"{sum(r['alerts'] for r in result['rules'])} alerts", flush=True)
        if index < repeat - 1:
            (folder / "events.duckdb").unlink()
    rule_ids = [r["rule"] for r in runs[0]["rules"]]
    per_rule = {
        rule_id: statistics.median(next(r["seconds"] for r in run["rules"] if r["rule"] == rule_id) for run in runs)
        for rule_id in rule_ids
    }
    summary = {
        "runs": runs,
        "median_seconds": statistics.median(r["seconds"] for r in runs),
        "median_rule_seconds": per_rule,
        "alerts": sum(r["alerts"] for r in runs[-1]["rules"]),
        "median_peak_rss_bytes": statistics.median(r["peak_rss_bytes"] for r in runs),
        "median_cpu_seconds": statistics.median(r["cpu_seconds"] for r in runs),
        "load": _load_range(runs),
    }
    return summary, folder / "events.duckdb"


TICK_SUMMARY_RE = re.compile(r"gatewatch: (\d+) lines read, (\d+) events, (\d+) rejected; (\d+) new alerts")


def measure_tick(run_dir: Path, format_name: str, log_path: Path, append_path: Path, lookback_days: int,
                 base_store: Path, repeat: int) -> tuple[dict, Path]:
    """Append the continuation to a copy of the log and time ``gatewatch run --once`` on it."""
    grown = run_dir / "tick-log" / log_path.name
    grown.parent.mkdir(parents=True, exist_ok=True)
    if not grown.exists() or grown.stat().st_size != log_path.stat().st_size + append_path.stat().st_size:
        shutil.copyfile(log_path, grown)
        with open(grown, "ab") as out, open(append_path, "rb") as extra:
            shutil.copyfileobj(extra, out)
    runs = []
    folder = None
    for index in range(repeat):
        folder = run_dir / f"tick-{index}"
        if folder.exists():
            shutil.rmtree(folder)
        config = write_config(folder, format_name, grown, lookback_days)
        copy_store(base_store, folder)
        measured = run_checked([*gatewatch_command(), "run", "--once", "--verbose", "-c", str(config)], folder, "tick")
        match = TICK_SUMMARY_RE.search(measured.stdout)
        if match is None:
            raise SystemExit(f"no tick summary in the output of gatewatch run --once:\n{measured.stdout[-2000:]}")
        lines, events, rejects, alerts = (int(g) for g in match.groups())
        runs.append({
            "seconds": measured.seconds,
            "peak_rss_bytes": measured.peak_rss_bytes,
            "cpu_seconds": measured.cpu_seconds,
            "load_before": measured.load_before,
            "load_after": measured.load_after,
            "lines": lines,
            "events": events,
            "rejects": rejects,
            "alerts": alerts,
        })
        print(f"  tick {format_name} run {index + 1}: {measured.seconds:.2f} s, {lines:,} new lines, {alerts} alerts",
              flush=True)
        if index < repeat - 1:
            (folder / "events.duckdb").unlink()
    summary = {
        "runs": runs,
        "median_seconds": statistics.median(r["seconds"] for r in runs),
        "lines": runs[-1]["lines"],
        "alerts": runs[-1]["alerts"],
        "median_peak_rss_bytes": statistics.median(r["peak_rss_bytes"] for r in runs),
        "median_cpu_seconds": statistics.median(r["cpu_seconds"] for r in runs),
        "load": _load_range(runs),
    }
    return summary, folder / "events.duckdb"


def _load_range(runs: list[dict]) -> list[float]:
    """Return the lowest and highest 1-minute load average seen around the runs."""
    loads = [r[key] for r in runs for key in ("load_before", "load_after")]
    return [min(loads), max(loads)]


def measure_startup(log_dir: Path, repeat: int) -> float:
    """Return the median seconds to start the command line and import gatewatch."""
    times = [
        run_checked([sys.executable, "-c", "import gatewatch.cli"], log_dir, "startup").seconds for _ in range(repeat)
    ]
    return statistics.median(times)


# -------------------------------------------------------------- quality

def detection_quality(store: Path, truth: dict) -> dict:
    """Compare the store's alerts with the ground truth."""
    con = duckdb.connect(str(store), read_only=True)
    try:
        alerts = con.execute(
            "SELECT rule_id, group_key->>'client_ip' AS client_ip, count(*) FROM alerts GROUP BY ALL ORDER BY ALL"
        ).fetchall()
    finally:
        con.close()
    fired = {(rule, ip) for rule, ip, _ in alerts}
    attacker_ips = {a["client_ip"] for a in truth["attackers"]}
    near_miss_ips = {n["client_ip"]: n for n in truth["near_misses"]}
    kinds: dict[str, dict] = {}
    missed = []
    for attacker in truth["attackers"]:
        row = kinds.setdefault(attacker["kind"], {
            "rule": attacker["rule"], "attackers": 0, "found": 0, "missed": 0, "other_rule_alerts": 0,
        })
        row["attackers"] += 1
        if (attacker["rule"], attacker["client_ip"]) in fired:
            row["found"] += 1
        else:
            row["missed"] += 1
            missed.append(attacker)
        row["other_rule_alerts"] += sum(
            count for rule, ip, count in alerts if ip == attacker["client_ip"] and rule != attacker["rule"]
        )
    # Alerts without a client (traffic-wide spikes and surges) name no one, so
    # they are listed on their own instead of as flagged benign clients.
    false_positives = [
        {"rule": rule, "client_ip": ip, "alerts": count, "near_miss": near_miss_ips.get(ip, {}).get("kind")}
        for rule, ip, count in alerts
        if ip is not None and ip not in attacker_ips
    ]
    traffic_wide = {rule: count for rule, ip, count in alerts if ip is None}
    return {
        "kinds": kinds,
        "missed": missed,
        "alerts": sum(count for _, _, count in alerts),
        "false_positive_alerts": sum(fp["alerts"] for fp in false_positives),
        "false_positive_clients": len({fp["client_ip"] for fp in false_positives}),
        "false_positives": false_positives,
        "traffic_wide_alerts": traffic_wide,
        "near_misses": len(truth["near_misses"]),
        "near_misses_alerting": len({fp["client_ip"] for fp in false_positives if fp["near_miss"]}),
    }


# -------------------------------------------------------------- targets

def check_targets(lines: int, formats: dict[str, dict]) -> list[dict]:
    """Compare the figures with the targets; the worst format counts where several apply."""
    at_scale = lines >= TARGET_LINES
    rows = []

    def add(name: str, target: str, value: float, unit: str, passed: bool) -> None:
        status = "PASS" if passed else "MISS"
        if not at_scale:
            status += f" (at {lines:,} lines; target is for {TARGET_LINES:,})"
        rows.append({"target": name, "threshold": target, "measured": value, "unit": unit, "status": status,
                     "passed": passed, "at_target_scale": at_scale})

    if "combined" in formats:
        ingest = formats["combined"]["ingest"]
        add("ingest nginx combined", ">= 300,000 lines/s", ingest["lines_per_second"], "lines/s",
            ingest["lines_per_second"] >= TARGET_INGEST_LINES_PER_SECOND)
        add("ingest nginx combined peak RSS", "< 1.5 GiB", ingest["max_peak_rss_bytes"] / 2**30, "GiB",
            ingest["max_peak_rss_bytes"] < TARGET_INGEST_PEAK_RSS_BYTES)
    evaluation = max(f["evaluation"]["median_seconds"] for f in formats.values())
    add("whole built-in pack", "< 60 s", evaluation, "s", evaluation < TARGET_EVALUATION_SECONDS)
    tick = max(f["tick"]["median_seconds"] for f in formats.values())
    add("incremental tick, 1% new lines", "< 5 s", tick, "s", tick < TARGET_TICK_SECONDS)
    missed_kinds = sorted({kind for f in formats.values() for kind, row in f["quality"]["kinds"].items() if row["missed"]})
    total_kinds = len({kind for f in formats.values() for kind in f["quality"]["kinds"]})
    add("every attacker kind found", "0 kinds missed", len(missed_kinds), f"of {total_kinds} kinds missed",
        not missed_kinds)
    flagged = max(f["quality"]["false_positive_clients"] for f in formats.values())
    add("no benign client flagged", "0 clients", flagged, "benign clients flagged", flagged == 0)
    return rows


# ------------------------------------------------------------- printing

def table(headers: list[str], rows: list[list[object]]) -> str:
    """Format a Markdown table, numbers right-aligned."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    numeric = [all(re.fullmatch(r"[\d,.\-]+", r[i] or "-") for r in cells) if cells else False for i in range(len(headers))]

    def line(values: list[str]) -> str:
        padded = [v.rjust(w) if n else v.ljust(w) for v, w, n in zip(values, widths, numeric)]
        return "| " + " | ".join(padded) + " |"

    separator = "|" + "|".join(("-" * (w + 1) + ":") if n else ("-" * (w + 2)) for w, n in zip(widths, numeric)) + "|"
    return "\n".join([line(headers), separator, *(line(r) for r in cells)])


def print_report(result: dict) -> None:
    data = result["data"]
    print()
    print(f"## Data: {data['lines']:,} lines per format, {data['start']} to {data['end']}")
    print(table(
        ["format", "file", "MB", "bytes/line"],
        [[name, Path(info["path"]).name, f"{info['bytes'] / MB:,.1f}", f"{info['bytes'] / data['lines']:.0f}"]
         for name, info in data["files"].items()],
    ))
    generated = data["generation_seconds"]
    print(f"generation: {'cached' if generated is None else f'{generated:.1f} s'}; "
          f"attackers {len(result['truth_summary']['attackers'])}, near misses {result['truth_summary']['near_misses']}")

    formats = result["formats"]
    print()
    print(f"## Ingest from an empty store (median of {result['repeat']})")
    print(table(
        ["format", "seconds", "lines/s", "MB/s", "CPU s", "load", "peak RSS MiB", "rejects", "DuckDB file MB",
         "used MB", "file MB per 1M events", "used MB per 1M events"],
        [[name, f"{f['ingest']['median_seconds']:.2f}", f"{f['ingest']['lines_per_second']:,.0f}",
          f"{f['ingest']['mb_per_second']:.1f}", f"{f['ingest']['median_cpu_seconds']:.1f}", _load(f["ingest"]),
          f"{f['ingest']['max_peak_rss_bytes'] / 2**20:,.0f}",
          f"{f['ingest']['rejects']:,}", f"{f['ingest']['database_bytes'] / MB:,.1f}",
          f"{f['ingest']['database_used_bytes'] / MB:,.1f}",
          f"{f['ingest']['database_bytes_per_million_events'] / MB:.1f}",
          f"{f['ingest']['database_used_bytes_per_million_events'] / MB:.1f}"]
         for name, f in formats.items()],
    ))
    print()
    print(f"## Whole built-in pack over the stored events (median of {result['repeat']}; seconds)")
    rule_ids = list(next(iter(formats.values()))["evaluation"]["median_rule_seconds"])
    print(table(
        ["format", "total", *rule_ids, "alerts", "peak RSS MiB", "load"],
        [[name, f"{f['evaluation']['median_seconds']:.2f}",
          *(f"{f['evaluation']['median_rule_seconds'][r]:.2f}" for r in rule_ids), f["evaluation"]["alerts"],
          f"{f['evaluation']['median_peak_rss_bytes'] / 2**20:,.0f}", _load(f["evaluation"])]
         for name, f in formats.items()],
    ))
    print()
    print(f"## Incremental tick: gatewatch run --once after appending 1% (median of {result['repeat']})")
    print(table(
        ["format", "new lines", "seconds (wall)", "CPU s", "new alerts", "peak RSS MiB", "load"],
        [[name, f"{f['tick']['lines']:,}", f"{f['tick']['median_seconds']:.2f}", f"{f['tick']['median_cpu_seconds']:.2f}",
          f["tick"]["alerts"], f"{f['tick']['median_peak_rss_bytes'] / 2**20:,.0f}", _load(f["tick"])]
         for name, f in formats.items()],
    ))
    print(f"process start-up and imports alone: {result['startup_seconds']:.2f} s")
    for name, f in formats.items():
        quality = f["quality"]
        print()
        print(f"## Detection quality, {name}")
        print(table(
            ["attacker kind", "expected rule", "attackers", "found", "missed", "alerts by other rules"],
            [[kind, row["rule"], row["attackers"], row["found"], row["missed"], row["other_rule_alerts"]]
             for kind, row in quality["kinds"].items()],
        ))
        print(f"false positives: {quality['false_positive_alerts']} alerts on {quality['false_positive_clients']} "
              f"clients outside the ground truth; near misses alerting: {quality['near_misses_alerting']} of "
              f"{quality['near_misses']}")
        if quality.get("traffic_wide_alerts"):
            listed = ", ".join(f"{rule} ({count})" for rule, count in quality["traffic_wide_alerts"].items())
            print(f"traffic-wide alerts, with no client: {listed}")
        for fp in quality["false_positives"][:20]:
            print(f"  {fp['rule']} on {fp['client_ip']} ({fp['alerts']} alerts)"
                  + (f", near miss: {fp['near_miss']}" if fp["near_miss"] else ""))
    print()
    print("## Targets")
    print(table(
        ["target", "threshold", "measured", "status"],
        [[t["target"], t["threshold"], _format_measured(t), t["status"]] for t in result["targets"]],
    ))


def _format_measured(target: dict) -> str:
    value = target["measured"]
    if target["unit"] == "lines/s":
        return f"{value:,.0f} lines/s"
    if isinstance(value, int):
        return f"{value} {target['unit']}"
    return f"{value:.2f} {target['unit']}"


def _load(summary: dict) -> str:
    low, high = summary["load"]
    return f"{low:.1f}-{high:.1f}"


def print_comparison(before: dict, after: dict) -> None:
    """Print the figures of two results (two line counts) side by side, per format."""
    print()
    sizes = f"{before['data']['lines']:,} vs {after['data']['lines']:,} lines"
    print(f"## Side by side: {sizes} (medians; load = 1-minute load average around the runs)")
    rows = []
    for name, current in after["formats"].items():
        earlier = before["formats"].get(name)
        if earlier is None:
            continue
        for label, pick in (
            ("ingest lines/s", lambda f: f"{f['ingest']['lines_per_second']:,.0f}"),
            ("ingest MB/s", lambda f: f"{f['ingest']['mb_per_second']:.1f}"),
            ("ingest peak RSS MiB", lambda f: f"{f['ingest']['max_peak_rss_bytes'] / 2**20:,.0f}"),
            ("ingest load", lambda f: _load(f["ingest"])),
            ("DuckDB file MB per 1M events", lambda f: f"{f['ingest']['database_bytes_per_million_events'] / MB:.1f}"),
            ("whole pack seconds", lambda f: f"{f['evaluation']['median_seconds']:.2f}"),
            ("whole pack peak RSS MiB", lambda f: f"{f['evaluation']['median_peak_rss_bytes'] / 2**20:,.0f}"),
            ("tick new lines", lambda f: f"{f['tick']['lines']:,}"),
            ("tick seconds", lambda f: f"{f['tick']['median_seconds']:.2f}"),
            ("tick peak RSS MiB", lambda f: f"{f['tick']['median_peak_rss_bytes'] / 2**20:,.0f}"),
            ("tick load", lambda f: _load(f["tick"])),
        ):
            rows.append([name, label, pick(earlier), pick(current)])
    print(table(["format", "figure", f"{before['data']['lines']:,} lines", f"{after['data']['lines']:,} lines"], rows))


# ---------------------------------------------------------------- main

def machine_info() -> dict:
    model = "unknown"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as meminfo:
        total_kb = int(next(line for line in meminfo if line.startswith("MemTotal")).split()[1])
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_DIR, capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = ""  # no git on this machine
    return {
        "cpu_model": model,
        "cores": os.cpu_count(),
        "memory_gib": round(total_kb / 2**20, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "duckdb": duckdb.__version__,
        "polars": polars.__version__,
        "numpy": numpy.__version__,
        "gatewatch_commit": commit,
        "load_average_at_start": list(os.getloadavg()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, required=True, help="lines per format in the generated log")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement; the median is reported")
    parser.add_argument("--formats", default=",".join(generate.FORMATS),
                        help=f"comma-separated, from {', '.join(generate.FORMATS)} (default: all)")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "gatewatch-bench",
                        help="folder for data sets, stores and logs (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=generate.DEFAULT_SEED, help="generator seed")
    parser.add_argument("--lines-per-day", type=int, default=generate.DEFAULT_LINES_PER_DAY,
                        help="lines per day of log time (default: %(default)s)")
    parser.add_argument("--output", type=Path, help="JSON result file (default: WORKDIR/results/lines-N.json)")
    parser.add_argument("--compare", type=Path,
                        help="an earlier JSON result (such as the 1M run) to print side by side with this one")
    args = parser.parse_args()
    formats = [name.strip() for name in args.formats.split(",") if name.strip()]
    unknown = set(formats) - set(generate.FORMATS)
    if unknown or not formats:
        parser.error(f"--formats must list some of {', '.join(generate.FORMATS)}, not {args.formats!r}")
    if args.repeat < 1 or args.lines < 1:
        parser.error("--lines and --repeat must be at least 1")

    if args.compare is not None and not args.compare.is_file():
        parser.error(f"--compare: no result file at {args.compare}; run bench/run.py with another --lines first")
    workdir = args.workdir.resolve()
    data_dir, truth, generation_seconds = ensure_data(workdir, args.lines, args.seed, args.lines_per_day)
    span_days = generate.span_seconds(args.lines, args.lines_per_day) / 86_400
    lookback_days = math.ceil(span_days) + 2
    runs_dir = workdir / "runs" / f"lines-{args.lines}"
    runs_dir.mkdir(parents=True, exist_ok=True)

    result: dict = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": machine_info(),
        "repeat": args.repeat,
        "data": {
            "lines": args.lines,
            "seed": args.seed,
            "lines_per_day": args.lines_per_day,
            "start": truth["start"],
            "end": truth["end"],
            "append_lines": truth["append_lines"],
            "generation_seconds": generation_seconds,
            "files": {
                name: {"path": str(data_dir / generate.FILE_NAMES[name]),
                       "bytes": (data_dir / generate.FILE_NAMES[name]).stat().st_size}
                for name in formats
            },
        },
        "truth_summary": {
            "attackers": [{k: a[k] for k in ("client_ip", "kind", "rule")} for a in truth["attackers"]],
            "near_misses": len(truth["near_misses"]),
        },
        "formats": {},
    }
    result["startup_seconds"] = measure_startup(runs_dir, args.repeat)
    for name in formats:
        log_path = data_dir / generate.FILE_NAMES[name]
        append_path = data_dir / generate.APPEND_NAMES[name]
        run_dir = runs_dir / name
        print(f"{name}:", flush=True)
        ingest, ingested = measure_ingest(run_dir, name, log_path, lookback_days, args.repeat)
        evaluation, evaluated = measure_evaluation(run_dir, name, log_path, lookback_days, ingested, args.repeat)
        tick, ticked = measure_tick(run_dir, name, log_path, append_path, lookback_days, evaluated, args.repeat)
        result["formats"][name] = {
            "ingest": ingest,
            "evaluation": evaluation,
            "tick": tick,
            # After the tick, so that alerts on the appended lines count too.
            "quality": detection_quality(ticked, truth),
        }
    result["targets"] = check_targets(args.lines, result["formats"])

    output = args.output or workdir / "results" / f"lines-{args.lines}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print_report(result)
    if args.compare is not None:
        print_comparison(json.loads(args.compare.read_text()), result)
    print(f"\nresults: {output}")


if __name__ == "__main__":
    main()
