#!/usr/bin/env python3
"""Show where ingest time goes: per stage, per connector function and per expression.

    python bench/profile_ingest.py LOG [--format combined] [--chunks N]

Three views of the same work:

1. Stages over the first ``--chunks`` chunks of LOG, in the order
   gatewatch.ingest.ingest_file runs them: read, split into lines, parse,
   add lineage, convert to Arrow, insert into DuckDB, update checkpoint and
   source state, commit, and finally close the store (DuckDB checkpoint).
2. cProfile of the connector's ``parse`` on one chunk, by cumulative time,
   limited to gatewatch functions. polars runs each expression inside the
   Python call that collects it, so a function's cumulative time includes
   the expressions it runs.
3. For combined logs, the main expressions of the parser timed alone on
   one chunk, to separate regex matching, literal splits and time parsing.

The stages repeat the steps of ingest_file and Store.insert_frame with a
timer around each, so keep them in step when those functions change. They
run one after the other, so the overlap of parse and insert that
ingest_file gets from its parse-ahead thread does not show here.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import polars as pl

from gatewatch.connectors import get_connector
from gatewatch.ingest import CHUNK_BYTES, _save_checkpoint, add_lineage, read_chunks, read_head, split_lines
from gatewatch.store import Store


def time_stages(log: Path, format_name: str, chunks: int) -> tuple[dict[str, float], int, int]:
    """Ingest the first ``chunks`` chunks into a new store; return seconds per stage, lines and bytes."""
    connector = get_connector(format_name)()
    seconds: dict[str, float] = defaultdict(float)
    lines_total = 0
    bytes_total = 0
    with tempfile.TemporaryDirectory() as folder:
        began = time.perf_counter()
        store = Store(Path(folder) / "profile.duckdb")
        seconds["open store"] += time.perf_counter() - began
        head = read_head(log, False)
        stat = log.stat()
        checkpoint = None
        reader = read_chunks(log, 0, False, CHUNK_BYTES)
        for _ in range(chunks):
            began = time.perf_counter()
            item = next(reader, None)
            seconds["read file"] += time.perf_counter() - began
            if item is None:
                break
            chunk, offset = item.data, item.offset

            began = time.perf_counter()
            lines = split_lines(chunk, offset)
            seconds["split lines (numpy + polars)"] += time.perf_counter() - began

            began = time.perf_counter()
            result = connector.parse(lines)
            seconds["parse (connector)"] += time.perf_counter() - began

            began = time.perf_counter()
            events = add_lineage(result.events, "profile", format_name, str(log))
            rejects = add_lineage(result.rejects, "profile", format_name, str(log))
            seconds["add lineage"] += time.perf_counter() - began

            store.con.begin()
            for table, frame in (("events", events), ("rejects", rejects)):
                if frame.height == 0:
                    continue
                began = time.perf_counter()
                arrow = frame.to_arrow(compat_level=pl.CompatLevel.newest())
                seconds["convert to Arrow"] += time.perf_counter() - began
                began = time.perf_counter()
                store.con.register("_gatewatch_frame", arrow)
                store.con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _gatewatch_frame")
                store.con.unregister("_gatewatch_frame")
                seconds["DuckDB insert"] += time.perf_counter() - began

            began = time.perf_counter()
            if events.height:
                store.update_source_state("profile", events["ts"].min(), events["ts"].max())
            checkpoint = _save_checkpoint(
                store, "profile", head, log, stat, offset + len(chunk), checkpoint, commit=False
            )
            seconds["checkpoint and source state"] += time.perf_counter() - began

            began = time.perf_counter()
            store.con.commit()
            seconds["commit"] += time.perf_counter() - began
            lines_total += lines.height
            bytes_total += len(chunk)

        began = time.perf_counter()
        store.close()
        seconds["close store (DuckDB checkpoint)"] += time.perf_counter() - began
    return dict(seconds), lines_total, bytes_total


def profile_parse(log: Path, format_name: str, top: int) -> str:
    """Return the cProfile listing of one chunk's parse, gatewatch functions only."""
    connector = get_connector(format_name)()
    first = next(read_chunks(log, 0, False, CHUNK_BYTES))
    lines = split_lines(first.data, first.offset)
    profiler = cProfile.Profile()
    profiler.enable()
    connector.parse(lines)
    profiler.disable()
    output = io.StringIO()
    stats = pstats.Stats(profiler, stream=output)
    stats.sort_stats("cumulative").print_stats("gatewatch", top)
    return output.getvalue()


def time_expressions(log: Path) -> list[tuple[str, float]]:
    """Time the main expressions of the combined parser, each alone on one chunk."""
    from gatewatch.connectors import combined
    from gatewatch.connectors._http import with_request_line, with_target_parts
    from gatewatch.connectors._text import unescape_log_column
    from gatewatch.connectors._time import parse_clf_time

    first = next(read_chunks(log, 0, False, CHUNK_BYTES))
    lines = split_lines(first.data, first.offset).lazy()
    body = pl.col("line")
    fields = lines.with_columns(body.str.extract_groups(combined.PREFIX_RE).alias("_m")).unnest("_m").collect()
    tail = fields.select(_tail=pl.col("line").str.slice(pl.col("prefix").str.len_chars()))
    requests = fields.select("request").lazy()
    targets = with_request_line(requests, "request").collect()
    steps = {
        "syslog prefix regex (str.replace)": lambda: lines.select(body.str.replace(combined.SYSLOG_PREFIX_RE, "")).collect(),
        "PREFIX_RE capture groups (str.extract_groups)": lambda: lines.select(
            body.str.extract_groups(combined.PREFIX_RE)
        ).collect(),
        "referer and user agent (str.splitn on quotes)": lambda: tail.select(
            pl.col("_tail").str.splitn('"', 5)
        ),
        "backslash check on the tail (str.contains)": lambda: tail.select(
            pl.col("_tail").str.contains("\\", literal=True)
        ),
        "head split and simple-head regex": lambda: fields.select(
            pl.col("head").str.split(" ").alias("tokens"),
            pl.col("head").str.contains(combined._SIMPLE_HEAD_RE).alias("is_simple"),
        ),
        "timestamp (parse_clf_time)": lambda: fields.select(parse_clf_time(pl.col("time"), "UTC")),
        "request line split (with_request_line)": lambda: with_request_line(requests, "request").collect(),
        "target unescape (unescape_log_column)": lambda: unescape_log_column(targets["target"]),
        "path and query split (with_target_parts)": lambda: with_target_parts(
            targets.lazy(), "target", "method", "_t_"
        ).collect(),
    }
    timings = []
    for name, step in steps.items():
        began = time.perf_counter()
        step()
        timings.append((name, time.perf_counter() - began))
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("log", type=Path, help="log file to ingest (uncompressed)")
    parser.add_argument("--format", default="combined", help="connector name (default: %(default)s)")
    parser.add_argument("--chunks", type=int, default=8, help="32 MiB chunks to ingest (default: %(default)s)")
    parser.add_argument("--top", type=int, default=25, help="functions listed by cProfile (default: %(default)s)")
    args = parser.parse_args()

    seconds, lines, size = time_stages(args.log, args.format, args.chunks)
    total = sum(seconds.values())
    print(f"## Stages: {lines:,} lines, {size / 1e6:,.0f} MB, {total:.2f} s, {lines / total:,.0f} lines/s")
    print("| stage | seconds | share |")
    print("|---|---:|---:|")
    for name, value in sorted(seconds.items(), key=lambda item: -item[1]):
        print(f"| {name} | {value:.2f} | {value / total:.0%} |")

    print()
    print("## cProfile of one chunk's parse (gatewatch functions, cumulative)")
    print(profile_parse(args.log, args.format, args.top))

    if args.format == "combined":
        print("## Expressions alone on one chunk")
        print("| expression | seconds |")
        print("|---|---:|")
        for name, value in time_expressions(args.log):
            print(f"| {name} | {value:.3f} |")


if __name__ == "__main__":
    main()
