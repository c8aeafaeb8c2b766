#!/usr/bin/env python3
"""Time each cloud connector's ``parse`` on one large chunk built from the sample lines.

    python bench/parse_cloud_formats.py [--lines 100000] [--repeat 3]

The valid lines of ``sample_logs/formats/<format>`` are repeated, with the
client address varied per line, until the chunk has ``--lines`` lines. The
median parse time of ``--repeat`` runs is reported as lines/s and MB/s. The
parse runs in this process, without ingest or the store.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import polars as pl
import yaml

from gatewatch.connectors import get_connector

FORMATS = Path(__file__).resolve().parents[1] / "sample_logs" / "formats"
SAMPLES = {
    "aws_alb": "aws_alb.log",
    "aws_apigateway": "aws_apigateway.jsonl",
    "aws_waf": "aws_waf.jsonl",
    "cloudflare": "cloudflare.jsonl",
    "gcp_lb": "gcp_lb.jsonl",
    "json_lines": "json_lines.jsonl",
}


def chunk(format_name: str, count: int) -> pl.DataFrame:
    """Return ``count`` lines of the format's sample, each with its own client address."""
    connector = build(format_name)
    sample = [line for line in (FORMATS / SAMPLES[format_name]).read_text().splitlines() if line.strip()]
    frame = pl.DataFrame({"offset": range(len(sample)), "line": sample}, schema={"offset": pl.Int64, "line": pl.String})
    valid = connector.parse(frame).events["offset"].to_list()
    lines = [sample[offset] for offset in valid]
    varied = [
        lines[index % len(lines)].replace("198.51.100.23", f"198.51.{index % 250}.{index // 250 % 250}")
        for index in range(count)
    ]
    offsets = [0]
    for line in varied[:-1]:
        offsets.append(offsets[-1] + len(line.encode()) + 1)
    return pl.DataFrame({"offset": offsets, "line": varied}, schema={"offset": pl.Int64, "line": pl.String})


def build(format_name: str):
    connector_class = get_connector(format_name)
    options = yaml.safe_load((FORMATS / "json_lines.yaml").read_text()) if format_name == "json_lines" else {}
    return connector_class(connector_class.options_model(**options), fingerprint_key=b"bench key")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=100_000, help="lines per chunk")
    parser.add_argument("--repeat", type=int, default=3, help="runs per format; the median is reported")
    arguments = parser.parse_args()

    print(f"{'format':<16}{'lines':>10}{'MB':>8}{'seconds':>10}{'lines/s':>12}{'MB/s':>8}")
    for format_name in SAMPLES:
        frame = chunk(format_name, arguments.lines)
        size = frame["line"].str.len_bytes().sum() / 1e6
        connector = build(format_name)
        times = []
        for _ in range(arguments.repeat):
            start = time.perf_counter()
            result = connector.parse(frame)
            times.append(time.perf_counter() - start)
        if result.events.height != frame.height:
            raise SystemExit(f"{format_name}: {frame.height - result.events.height} lines were rejected")
        seconds = statistics.median(times)
        print(
            f"{format_name:<16}{frame.height:>10}{size:>8.1f}{seconds:>10.2f}"
            f"{frame.height / seconds:>12,.0f}{size / seconds:>8.1f}"
        )


if __name__ == "__main__":
    main()
