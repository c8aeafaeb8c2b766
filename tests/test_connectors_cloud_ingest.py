"""Ingest the cloud-format sample logs into a real DuckDB store.

The samples under ``sample_logs/formats`` are invented lines with
documentation addresses; the last line of each is broken on purpose.
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pytest
import yaml

from gatewatch.connectors import get_connector
from gatewatch.ingest import ingest_source

FORMATS = Path(__file__).resolve().parents[1] / "sample_logs" / "formats"

# sample file, format name, events, rejects and the reason of the first reject
SAMPLES = [
    ("aws_alb.log", "aws_alb", 4, 1, "ALB entry has 6 fields, fewer than the 13 up to the request line; the line may be cut short"),
    ("aws_apigateway.jsonl", "aws_apigateway", 3, 1, "missing timestamp (requestTimeEpoch or requestTime)"),
    ("aws_waf.jsonl", "aws_waf", 3, 1, "invalid JSON: the object is cut short or malformed"),
    ("cloudflare.jsonl", "cloudflare", 3, 1, "missing timestamp (EdgeStartTimestamp or Datetime)"),
    ("gcp_lb.jsonl", "gcp_lb", 2, 1, "missing timestamp (timestamp)"),
    ("json_lines.jsonl", "json_lines", 2, 1, "missing timestamp (time)"),
]


def build(format_name: str):
    connector_class = get_connector(format_name)
    options = {}
    if format_name == "json_lines":
        options = yaml.safe_load((FORMATS / "json_lines.yaml").read_text())
    return connector_class(connector_class.options_model(**options), fingerprint_key=b"ingest test key")


@pytest.mark.parametrize(("sample", "format_name", "events", "rejects", "reason"), SAMPLES)
def test_cloud_ingest_sample(store, tmp_path, sample, format_name, events, rejects, reason):
    shutil.copy(FORMATS / sample, tmp_path / sample)
    report = ingest_source(store, "edge", format_name, build(format_name), [str(tmp_path / sample)])
    assert report.events == events
    assert report.rejects == rejects
    stored = store.con.execute("SELECT count(*), count(ts), min(format) FROM events").fetchone()
    assert stored == (events, events, format_name)
    [(stored_reason,)] = store.con.execute("SELECT reason FROM rejects").fetchall()
    assert stored_reason == reason


def test_cloud_ingest_alb_gzip_like_s3(store, tmp_path):
    # ALB delivers gzipped files to S3; a second run reads nothing new.
    with gzip.open(tmp_path / "alb.log.gz", "wb") as handle:
        handle.write((FORMATS / "aws_alb.log").read_bytes())
    connector = build("aws_alb")
    first = ingest_source(store, "alb", "aws_alb", connector, [str(tmp_path / "alb.log.gz")])
    second = ingest_source(store, "alb", "aws_alb", connector, [str(tmp_path / "alb.log.gz")])
    assert (first.events, first.rejects) == (4, 1)
    assert (second.events, second.rejects) == (0, 0)
    clients = [row[0] for row in store.con.execute("SELECT client_ip FROM events ORDER BY ts").fetchall()]
    assert clients == ["198.51.100.23", "203.0.113.50", "2001:db8::7", "192.0.2.44"]


@pytest.mark.parametrize("sample", ["aws_waf.jsonl", "json_lines.jsonl"])
def test_cloud_ingest_stores_no_credentials(store, tmp_path, sample):
    format_name = sample.split(".")[0]
    shutil.copy(FORMATS / sample, tmp_path / sample)
    ingest_source(store, "edge", format_name, build(format_name), [str(tmp_path / sample)])
    texts = store.con.execute("SELECT coalesce(extra, '') || coalesce(credential_id, '') FROM events").fetchall()
    joined = " ".join(text for (text,) in texts)
    assert "example-token-1" not in joined
    assert "example-key-2" not in joined
    with_credential = store.con.execute("SELECT count(credential_id) FROM events").fetchone()[0]
    assert with_credential >= 1
