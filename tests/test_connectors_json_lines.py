"""Tests of the json_lines connector: JSON logs read through a YAML field mapping."""

from __future__ import annotations

import json
from datetime import datetime

import pytest
import yaml
from pydantic import ValidationError

from gatewatch.connectors import get_connector
from gatewatch.connectors.base import ParseResult
from gatewatch.connectors.json_lines import JsonLinesConnector, JsonLinesOptions
from linefeed import event_rows, frame_from_lines

MAPPING_YAML = """
time_format: epoch_ms
fields:
  ts: time
  client_ip: [client.ip, remote_addr]
  request: request.line
  status: response.status
  duration_s: response.seconds
  authorization: request.headers.authorization
  user_agent: request.headers.user-agent
  waf_action: verdict
"""


def connector(options: dict) -> JsonLinesConnector:
    return JsonLinesConnector(JsonLinesOptions(**options), fingerprint_key=b"test key")


def parse(*lines: str, options: dict | None = None) -> ParseResult:
    return connector(options or yaml.safe_load(MAPPING_YAML)).parse(frame_from_lines(*lines))


LINE = json.dumps(
    {
        "time": 1717243200123,
        "client": {"ip": "[2001:db8::5]", "port": 4431},
        "request": {
            "line": "GET /a?b=1 HTTP/1.1",
            "headers": {"authorization": "Basic YWxpY2U6c2VjcmV0", "user-agent": "curl/8.5.0"},
        },
        "response": {"status": "404", "seconds": 0.25},
        "verdict": "BLOCK",
        "service": "search",
    }
)


def test_json_lines_mapping_from_yaml():
    [row] = event_rows(parse(LINE).events)
    assert row["ts"] == datetime(2024, 6, 1, 12, 0, 0, 123000)
    assert row["client_ip"] == "2001:db8::5"
    assert row["method"] == "GET"
    assert row["path"] == "/a"
    assert row["query"] == "b=1"
    assert row["status"] == 404
    assert row["duration_ms"] == 250.0
    assert row["user_agent"] == "curl/8.5.0"
    assert row["user"] == "alice"
    assert row["credential_id"] is not None
    assert row["waf_action"] == "block"
    assert row["extra"] == {"client_ip_raw": "[2001:db8::5]", "client": {"port": 4431}, "service": "search"}


def test_json_lines_fallback_path():
    line = '{"time": 1717243200000, "remote_addr": "192.0.2.1"}'
    [row] = event_rows(parse(line).events)
    assert row["client_ip"] == "192.0.2.1"


def test_json_lines_secret_never_in_extra():
    result = parse(LINE)
    assert "YWxpY2U6c2VjcmV0" not in result.events.write_json()


@pytest.mark.parametrize(
    ("time_format", "value", "expected"),
    [
        ("auto", '"2024-06-01T14:00:00+02:00"', datetime(2024, 6, 1, 12, 0)),
        ("epoch_s", "1717243200", datetime(2024, 6, 1, 12, 0)),
        ("epoch_us", '"1717243200000001"', datetime(2024, 6, 1, 12, 0, 0, 1)),
        ("epoch_ns", "1717243200000001000", datetime(2024, 6, 1, 12, 0, 0, 1)),
        ("%d.%m.%Y %H:%M", '"01.06.2024 14:00"', datetime(2024, 6, 1, 12, 0)),
    ],
)
def test_json_lines_time_formats(time_format, value, expected):
    options = {"time_format": time_format, "timezone": "Europe/Berlin", "fields": {"ts": "t"}}
    [row] = event_rows(parse('{"t": ' + value + "}", options=options).events)
    assert row["ts"] == expected


def test_json_lines_rejects_with_reasons():
    result = parse('{"client": {"ip": "192.0.2.1"}}', '{"time": "later"}', "{broken")
    assert result.rejects["reason"].to_list() == [
        "missing timestamp (time)",
        "invalid timestamp later in time",
        "invalid JSON: the object is cut short or malformed",
    ]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"fields": {"client_ip": "ip"}}, "map 'ts' to the JSON path"),
        ({"fields": {"ts": "t", "latency": "l"}}, "unknown column 'latency'"),
        ({"fields": {"ts": "a..b"}}, "invalid JSON path 'a..b'"),
        ({"fields": {"ts": 't"x'}}, "quote or a backslash"),
        ({"fields": {"ts": "t"}, "time_format": "epoch"}, "unknown time_format 'epoch'"),
    ],
)
def test_json_lines_options_errors(options, message):
    with pytest.raises(ValidationError, match=message):
        JsonLinesOptions(**options)


def test_json_lines_registered_names():
    assert get_connector("jsonl") is JsonLinesConnector


def test_json_lines_log_key_named_like_own_member():
    line = '{"t": 1717243200, "client_ip_raw": "from the log", "ip": "[2001:db8::1]"}'
    options = {"time_format": "epoch_s", "fields": {"ts": "t", "client_ip": "ip"}}
    [row] = event_rows(parse(line, options=options).events)
    assert row["extra"] == {"client_ip_raw": "[2001:db8::1]", "client_ip_raw_from_log": "from the log"}


def test_json_lines_without_mapping_is_invalid():
    with pytest.raises(ValidationError, match="map 'ts' to the JSON path"):
        JsonLinesOptions()
