#!/usr/bin/env python3
"""Replay one generated nginx log through CrowdSec and gatewatch; compare speed and catches.

    python bench/crowdsec_compare.py --lines 200000 [--sample 20] [--workdir DIR]

Needs the ``crowdsec`` and ``cscli`` binaries (Debian: ``apt-get install
crowdsec``), root (for ``unshare -n``) and ``ip``. CI does not run it.

The log is the nginx combined file of bench/generate.py, reused from
bench/run.py's work folder when it exists. Both tools read the same file on
the same machine, one after the other, in one run:

- CrowdSec 1.4 in time-machine mode, ``crowdsec -dsn file://LOG -type
  nginx``, with the parsers and scenarios that the Debian package enables
  on install (the nginx, base-http-scenarios and http-cve collections). It
  runs inside ``unshare -n``, a network namespace whose only interface is
  the loopback, so neither CrowdSec nor its hub can reach the internet. Its
  Local API listens on that namespace's 127.0.0.1; the Central API is off.
  Every file it writes goes under ``WORKDIR/crowdsec``: a copy of
  /etc/crowdsec with its paths rewritten, the data files and a new SQLite
  database. The system configuration is only read.
- gatewatch: ``gatewatch run --once`` on an empty store (ingest plus the
  whole built-in pack, start-up included).

``--sample N`` replays a smaller file instead: every line of the labelled
attackers and near misses, and every N-th line of the other clients. Both
tools then read that file. It exists because CrowdSec 1.4.6's time-machine
replay ran at about 70 lines/s on the benchmark machine (its buckets log
"stuck ... sending event"), too slow for the whole file. The benign
clients' request rates drop N-fold in the sample, which favours both tools
alike on false positives.

Each tool's lines/s is the file's lines over the wall time of its whole
process, start-up included. Caught means at least one alert (CrowdSec) or
alert from any rule (gatewatch) on the attacker's address. A benign client
is any address outside the ground truth.

Offline install, as done on the benchmark machine: with the package
downloaded (``apt-get install --download-only crowdsec``), write a
non-empty /etc/crowdsec/online_api_credentials.yaml first (the package's
postinst then skips the Central API registration), and install inside a
namespace without network: ``unshare -n apt-get install --no-download -y
crowdsec``. The Debian package ships a snapshot of the hub under
/usr/share/crowdsec/hub and links the enabled items from there, so no hub
download is needed. NOTE: the packaged http-path-traversal-probing scenario
reads ``http_path_traversal.txt``, which the package ships as
``path_traversal.txt``; this script copies it under the expected name.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import duckdb
import polars as pl

import generate
import run

CROWDSEC_ETC = Path("/etc/crowdsec")
CROWDSEC_DATA = Path("/usr/share/crowdsec/data")
CROWDSEC_HUB = Path("/var/lib/crowdsec/hub")
# Data files that the packaged scenarios name differently from the files shipped.
RENAMED_DATA_FILES = {"http_path_traversal.txt": "path_traversal.txt"}


def require_tools() -> None:
    missing = [tool for tool in ("crowdsec", "cscli", "unshare", "ip") if shutil.which(tool) is None]
    if missing:
        raise SystemExit(
            f"{', '.join(missing)} not found; install CrowdSec offline as this script's docstring shows "
            "(`python bench/crowdsec_compare.py --help`)"
        )
    if os.geteuid() != 0:
        raise SystemExit("run as root: `unshare -n` needs it to create the network namespace")


def write_crowdsec_config(folder: Path) -> Path:
    """Copy the packaged configuration under ``folder`` with every written path inside it."""
    if folder.exists():
        shutil.rmtree(folder)
    etc = folder / "etc"
    data = folder / "data"
    # symlinks=True keeps the links into the hub, which stays read-only.
    shutil.copytree(CROWDSEC_ETC, etc, symlinks=True)
    for name in ("config.yaml.local", "online_api_credentials.yaml", "local_api_credentials.yaml"):
        (etc / name).unlink(missing_ok=True)
    (etc / "acquis.yaml").write_text("")
    data.mkdir()
    for item in CROWDSEC_DATA.iterdir():
        shutil.copy(item, data / item.name)
    for expected, shipped in RENAMED_DATA_FILES.items():
        if not (data / expected).exists() and (data / shipped).exists():
            shutil.copy(data / shipped, data / expected)
    config = etc / "config.yaml"
    config.write_text(f"""\
common:
  daemonize: false
  log_media: file
  log_level: warning
  log_dir: {folder}/
  working_dir: .
config_paths:
  config_dir: {etc}/
  data_dir: {data}/
  simulation_path: {etc}/simulation.yaml
  hub_dir: {CROWDSEC_HUB}/
  index_path: {CROWDSEC_HUB}/.index.json
  notification_dir: {etc}/notifications/
  plugin_dir: /usr/lib/crowdsec/plugins/
crowdsec_service:
  acquisition_path: {etc}/acquis.yaml
  parser_routines: 1
cscli:
  output: human
db_config:
  log_level: warning
  type: sqlite
  db_path: {folder}/crowdsec.db
  use_wal: true
api:
  client:
    insecure_skip_verify: false
    credentials_path: {folder}/local_api_credentials.yaml
  server:
    log_level: warning
    listen_uri: 127.0.0.1:8080
    profiles_path: {etc}/profiles.yaml
    trusted_ips:
      - 127.0.0.1
prometheus:
  enabled: false
""")
    subprocess.run(
        ["unshare", "-n", "cscli", "-c", str(config), "--error", "machines", "add", "gatewatch-bench",
         "--password", secrets.token_hex(16), "-f", str(folder / "local_api_credentials.yaml"), "--force"],
        check=True,
    )
    return config


def replay_crowdsec(folder: Path, log: Path) -> dict:
    """Run CrowdSec over ``log`` offline; return seconds, peak RSS and alerts per address."""
    config = write_crowdsec_config(folder)
    script = f"ip link set lo up && exec crowdsec -c {config} -dsn file://{log} -type nginx -no-capi"
    measured = run.run_measured(["unshare", "-n", "sh", "-c", script], folder, "crowdsec")
    if measured.returncode != 0:
        raise SystemExit(f"crowdsec failed with exit code {measured.returncode}:\n{measured.stderr[-2000:]}")
    con = sqlite3.connect(folder / "crowdsec.db")
    try:
        rows = con.execute(
            "SELECT source_ip, scenario, count(*) FROM alerts WHERE source_ip IS NOT NULL "
            "GROUP BY source_ip, scenario ORDER BY source_ip, scenario"
        ).fetchall()
    finally:
        con.close()
    return {"measured": measured, "alerts": rows}


def replay_gatewatch(folder: Path, log: Path, lookback_days: int) -> dict:
    """Run ``gatewatch run --once`` over ``log`` into an empty store; return seconds, peak RSS and alerts."""
    if folder.exists():
        shutil.rmtree(folder)
    config = run.write_config(folder, "combined", log, lookback_days)
    measured = run.run_checked([*run.gatewatch_command(), "run", "--once", "-c", str(config)], folder, "gatewatch")
    con = duckdb.connect(str(folder / "events.duckdb"), read_only=True)
    try:
        rows = con.execute(
            "SELECT group_key->>'client_ip', rule_id, count(*) FROM alerts GROUP BY ALL ORDER BY ALL"
        ).fetchall()
    finally:
        con.close()
    return {"measured": measured, "alerts": rows}


def write_sample(log: Path, truth: dict, every: int, output: Path) -> int:
    """Write the labelled clients' lines and every ``every``-th other line of ``log``; return the line count."""
    kept_clients = {a["client_ip"] for a in truth["attackers"]} | {n["client_ip"] for n in truth["near_misses"]}
    lines = pl.read_csv(log, has_header=False, separator="\x1f", quote_char=None, new_columns=["line"],
                        schema_overrides={"line": pl.String})
    sample = lines.with_row_index("index").filter(
        pl.col("line").str.extract(r"^(\S+)").is_in(list(kept_clients)) | (pl.col("index") % every == 0)
    )
    sample.select("line").write_csv(output, include_header=False, quote_style="never")
    return sample.height


def caught_by(alerts: list[tuple], address: str) -> list[str]:
    return sorted({name for ip, name, _ in alerts if ip == address})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, required=True, help="lines of the generated nginx combined log")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "gatewatch-bench",
                        help="folder shared with bench/run.py (default: %(default)s)")
    parser.add_argument("--sample", type=int, default=1,
                        help="keep every N-th line of unlabelled clients and all labelled ones (default: 1, all)")
    parser.add_argument("--seed", type=int, default=generate.DEFAULT_SEED, help="generator seed")
    parser.add_argument("--lines-per-day", type=int, default=generate.DEFAULT_LINES_PER_DAY,
                        help="lines per day of log time (default: %(default)s)")
    args = parser.parse_args()
    require_tools()

    workdir = args.workdir.resolve()
    data_dir, truth, _ = run.ensure_data(workdir, args.lines, args.seed, args.lines_per_day)
    log = data_dir / generate.FILE_NAMES["combined"]
    out_dir = workdir / "crowdsec" / f"lines-{args.lines}-sample-{args.sample}"
    out_dir.mkdir(parents=True, exist_ok=True)
    line_count = args.lines
    if args.sample > 1:
        sampled = out_dir / "access.sample.log"
        line_count = write_sample(log, truth, args.sample, sampled)
        log = sampled
    lookback_days = int(generate.span_seconds(args.lines, args.lines_per_day) // 86_400) + 3
    version = subprocess.run(["crowdsec", "-version"], capture_output=True, text=True)
    version_line = (version.stdout + version.stderr).splitlines()[0].split("version: ")[-1]

    print(f"CrowdSec {version_line} on {log} ({line_count:,} lines) ...", flush=True)
    crowdsec = replay_crowdsec(out_dir / "crowdsec", log)
    print("gatewatch run --once on the same file ...", flush=True)
    gatewatch = replay_gatewatch(out_dir / "gatewatch", log, lookback_days)

    attackers = {a["client_ip"] for a in truth["attackers"]}
    rows = []
    for attacker in truth["attackers"]:
        ip = attacker["client_ip"]
        rows.append([
            attacker["kind"], ip,
            ", ".join(caught_by(gatewatch["alerts"], ip)) or "missed",
            ", ".join(name.removeprefix("crowdsecurity/") for name in caught_by(crowdsec["alerts"], ip)) or "missed",
        ])
    speed_rows = []
    for name, result in (("CrowdSec", crowdsec), ("gatewatch", gatewatch)):
        measured = result["measured"]
        benign = sorted({ip for ip, _, _ in result["alerts"] if ip not in attackers})
        caught = len({ip for ip, _, _ in result["alerts"] if ip in attackers})
        speed_rows.append([
            name, f"{measured.seconds:.1f}", f"{line_count / measured.seconds:,.0f}", f"{measured.cpu_seconds:.1f}",
            f"{measured.peak_rss_bytes / 2**20:,.0f}", f"{measured.load_before:.1f}-{measured.load_after:.1f}",
            f"{caught} of {len(attackers)}", len(benign),
        ])
    print()
    print(f"## Same file, same machine: {line_count:,} lines of nginx combined ({log.name})")
    print(run.table(
        ["tool", "seconds (wall)", "lines/s", "CPU s", "peak RSS MiB", "load", "attackers caught", "benign flagged"],
        speed_rows,
    ))
    print()
    print("## Labelled attackers: the rules (gatewatch) and scenarios (CrowdSec) that alerted")
    print(run.table(["kind", "address", "gatewatch", "CrowdSec"], rows))
    benign_crowdsec = sorted({(ip, name) for ip, name, _ in crowdsec["alerts"] if ip not in attackers})
    if benign_crowdsec:
        print("\nCrowdSec alerts on addresses outside the ground truth:")
        for ip, name in benign_crowdsec[:20]:
            print(f"  {ip}: {name}")

    result = {
        "lines": line_count,
        "generated_lines": args.lines,
        "sample_every": args.sample,
        "log": str(log),
        "crowdsec_version": version_line,
        "machine": run.machine_info(),
        "crowdsec": {**vars(crowdsec["measured"]), "stdout": None, "stderr": None, "alerts": crowdsec["alerts"]},
        "gatewatch": {**vars(gatewatch["measured"]), "stdout": None, "stderr": None, "alerts": gatewatch["alerts"]},
        "attackers": rows,
    }
    output = workdir / "results" / f"crowdsec-lines-{args.lines}-sample-{args.sample}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"\nresults: {output}")


if __name__ == "__main__":
    main()
