"""Tests of the aws_alb connector: AWS Application Load Balancer access logs."""

from __future__ import annotations

from datetime import datetime

import polars as pl
import pytest

from gatewatch.connectors import get_connector
from gatewatch.connectors.aws_alb import ALB_FIELDS, AwsAlbConnector, AwsAlbOptions
from gatewatch.connectors.base import ParseResult
from gatewatch.events import PARSED_COLUMNS
from linefeed import event_rows, frame_from_bytes, frame_from_lines


def parse(*lines: str, **options) -> ParseResult:
    return AwsAlbConnector(AwsAlbOptions(**options), fingerprint_key=b"test key").parse(frame_from_lines(*lines))


def parse_one(line: str, **options) -> dict:
    result = parse(line, **options)
    assert result.rejects.height == 0, result.rejects.to_dicts()
    [row] = event_rows(result.events)
    return row


def assert_fields(row: dict, expected: dict) -> None:
    for name, value in expected.items():
        assert row[name] == value, f"{name}: {row[name]!r} != {value!r}"


# An HTTPS request with every field of the 2024 layout (30 fields).
HTTPS_LINE = (
    'https 2024-03-05T10:15:30.123456Z app/api-lb/0123456789abcdef 198.51.100.23:51234 10.0.1.5:8443 '
    '0.001 0.250 0.002 401 401 512 98 "POST https://api.example.com:443/v1/login?next=%2Fhome HTTP/1.1" '
    '"python-requests/2.31.0" ECDHE-RSA-AES128-GCM-SHA256 TLSv1.2 '
    'arn:aws:elasticloadbalancing:eu-west-1:111122223333:targetgroup/api/0123456789abcdef '
    '"Root=1-65e6f0a2-0123456789abcdef01234567" "api.example.com" '
    '"arn:aws:acm:eu-west-1:111122223333:certificate/00000000-0000-0000-0000-000000000000" 10 '
    '2024-03-05T10:15:29.870000Z "forward" "-" "-" "10.0.1.5:8443" "401" "-" "-" TID_00112233445566778899aabbccddeeff'
)

# The line of the parsing case "new fields appended to the end of the line".
APPENDED_FIELDS_LINE = (
    'https 2024-05-22T03:48:29.047890Z app/my-lb/50dc6c495c0c9188 192.0.2.10:44444 - -1 -1 -1 400 - 38 370 '
    '"GET http://203.0.113.5:443/ HTTP/1.1" "-" - - - "-" "-" "-" - 2024-05-22T03:48:29.047000Z '
    '"-" "-" "-" "-" "-" "-" "-" TID_0123456789abcdef0123456789abcdef "-" "-" "-"'
)


def test_alb_https_line():
    row = parse_one(HTTPS_LINE)
    assert_fields(
        row,
        {
            "ts": datetime(2024, 3, 5, 10, 15, 30, 123456),
            "client_ip": "198.51.100.23",
            "method": "POST",
            "scheme": "https",
            "host": "api.example.com",
            "path": "/v1/login",
            "query": "next=%2Fhome",
            "http_version": "HTTP/1.1",
            "status": 401,
            "bytes_received": 512,
            "bytes_sent": 98,
            "user_agent": "python-requests/2.31.0",
            "request_id": "Root=1-65e6f0a2-0123456789abcdef01234567",
            "malformed": False,
        },
    )
    assert row["duration_ms"] == pytest.approx(253.0)

    extra = row["extra"]
    assert extra["client_port"] == 51234
    assert extra["target_port"] == "10.0.1.5:8443"
    assert extra["target_status_code"] == "401"
    assert extra["ssl_protocol"] == "TLSv1.2"
    assert extra["ssl_cipher"] == "ECDHE-RSA-AES128-GCM-SHA256"
    assert extra["domain_name"] == "api.example.com"
    assert extra["actions_executed"] == "forward"
    assert extra["matched_rule_priority"] == "10"
    assert extra["request_creation_time"] == "2024-03-05T10:15:29.870000Z"
    assert extra["conn_trace_id"] == "TID_00112233445566778899aabbccddeeff"
    assert extra["request_target"] == "https://api.example.com:443/v1/login?next=%2Fhome"
    assert extra["target_processing_time"] == pytest.approx(0.25)
    assert "extra_fields" not in extra


def test_alb_appended_fields_case():
    row = parse_one(APPENDED_FIELDS_LINE)
    assert_fields(
        row,
        {
            "ts": datetime(2024, 5, 22, 3, 48, 29, 47890),
            "client_ip": "192.0.2.10",
            "status": 400,
            "bytes_received": 38,
            "bytes_sent": 370,
            "method": "GET",
            "host": "203.0.113.5",
            "path": "/",
            "query": None,
            "http_version": "HTTP/1.1",
            "user_agent": None,
            "duration_ms": None,
            "request_id": None,
        },
    )

    extra = row["extra"]
    assert extra["client_port"] == 44444
    assert extra["request_target"] == "http://203.0.113.5:443/"
    assert extra["request_creation_time"] == "2024-05-22T03:48:29.047000Z"
    assert extra["conn_trace_id"] == "TID_0123456789abcdef0123456789abcdef"
    # -1 processing times and "-" fields (target, target status, TLS) are null.
    for name in ("target_port", "target_status_code", "request_processing_time", "ssl_cipher", "ssl_protocol"):
        assert name not in extra, name
    # The three fields after the transaction id are the 2025 rewrite fields,
    # all "-" here, so nothing is left over.
    assert "extra_fields" not in extra


def test_alb_unknown_trailing_fields_kept():
    without_rewrite_fields = APPENDED_FIELDS_LINE.removesuffix(' "-" "-" "-"')
    row = parse_one(without_rewrite_fields + ' "m.example.com" "/rewritten" "TransformSuccess" "new" 42')
    assert row["extra"]["transformed_host"] == "m.example.com"
    assert row["extra"]["request_transform_status"] == "TransformSuccess"
    assert row["extra"]["extra_fields"] == ["new", "42"]


def test_alb_older_layout_without_late_fields():
    # 2019 layout: the line ends after error_reason.
    line = (
        'http 2019-10-11T15:01:12.376735Z app/test-lb/c86a326e7dc14222 203.0.113.41:56398 10.0.0.192:80 '
        '-1 -1 -1 460 - 125 0 "GET http://lb.example.com:80/ HTTP/1.1" "curl/7.58.0" - - '
        'arn:aws:elasticloadbalancing:eu-central-1:111122223333:targetgroup/tg/8f04c4fe71f5f794 '
        '"Root=1-5da09932-2c342a443bfb96249aa50ed7" "-" "-" 0 2019-10-11T15:01:06.657000Z "forward" "-" "-"'
    )
    row = parse_one(line)
    assert row["status"] == 460
    assert row["extra"]["target_port"] == "10.0.0.192:80"
    assert "conn_trace_id" not in row["extra"]


def test_alb_ipv6_client_bare_and_bracketed():
    bare = HTTPS_LINE.replace("198.51.100.23:51234", "2001:db8::1:51234")
    bracketed = HTTPS_LINE.replace("198.51.100.23:51234", "[2001:db8::2]:51234")
    mapped = HTTPS_LINE.replace("198.51.100.23:51234", "::ffff:198.51.100.60:51234")
    rows = event_rows(parse(bare, bracketed, mapped).events)
    assert [row["client_ip"] for row in rows] == ["2001:db8::1", "2001:db8::2", "198.51.100.60"]
    assert [row["extra"]["client_port"] for row in rows] == [51234, 51234, 51234]
    assert rows[2]["extra"]["client_ip_raw"] == "::ffff:198.51.100.60"


def test_alb_escaped_quote_in_user_agent():
    line = HTTPS_LINE.replace('"python-requests/2.31.0"', r'"Mozilla/5.0 \"quoted\" (X11)"')
    row = parse_one(line)
    assert row["user_agent"] == 'Mozilla/5.0 "quoted" (X11)'
    assert row["extra"]["ssl_protocol"] == "TLSv1.2"


def test_alb_malformed_request_line():
    line = HTTPS_LINE.replace(
        '"POST https://api.example.com:443/v1/login?next=%2Fhome HTTP/1.1"', '"- http://lb.example.com:80- "'
    )
    row = parse_one(line)
    assert row["malformed"] is True
    assert row["method"] is None
    assert row["path"] is None
    assert row["extra"]["request_raw"] == "- http://lb.example.com:80- "


def test_alb_rejects_with_reasons():
    result = parse(
        "not an alb line",
        "https 2024-03-05T10:15:30.123456Z app/api-lb/0123 198.51.100.23:51234 - 0.001 0.250",
        HTTPS_LINE.replace("2024-03-05T10:15:30.123456Z", "2024-13-45T10:15:30.123456Z"),
    )
    assert result.events.height == 0
    reasons = result.rejects["reason"].to_list()
    assert reasons[0].startswith("line does not match the ALB access-log format")
    assert reasons[1].startswith("ALB entry has 7 fields, fewer than the 13")
    assert reasons[2] == "invalid timestamp 2024-13-45T10:15:30.123456Z in time"


def test_alb_every_line_accounted_for():
    lines = [HTTPS_LINE, "garbage", APPENDED_FIELDS_LINE, ""]
    data = "\n".join(lines).encode() + b"\n\xff\xfe binary\n"
    frame = frame_from_bytes(data)
    result = AwsAlbConnector().parse(frame)
    offsets = sorted(result.events["offset"].to_list() + result.rejects["offset"].to_list())
    assert offsets == frame["offset"].to_list()
    assert result.events.columns == [*PARSED_COLUMNS, "offset"]


def test_alb_trusted_proxies_keep_connecting_client():
    # An ALB log names no X-Forwarded-For, so a trusted range around the
    # client changes nothing but must not drop the event.
    row = parse_one(HTTPS_LINE, trusted_proxies=["198.51.100.0/24"])
    assert row["client_ip"] == "198.51.100.23"


def test_alb_registered_names():
    assert get_connector("aws_alb") is AwsAlbConnector
    assert get_connector("ALB") is AwsAlbConnector


def test_alb_field_list_ends_with_rewrite_fields():
    assert ALB_FIELDS[:3] == ("type", "time", "elb")
    assert ALB_FIELDS[-1] == "request_transform_status"


def test_alb_property_never_drops_lines():
    hypothesis = pytest.importorskip("hypothesis")
    strategies = pytest.importorskip("hypothesis.strategies")

    # Random field values, including quotes, backslashes, spaces, bytes that
    # are not UTF-8 and long values, spliced into a valid line.
    field_text = strategies.binary(max_size=300)

    @hypothesis.settings(max_examples=60, deadline=None)
    @hypothesis.given(user_agent=field_text, request=field_text, tail=field_text, long_value=strategies.booleans())
    def check(user_agent: bytes, request: bytes, tail: bytes, long_value: bool) -> None:
        prefix = HTTPS_LINE.split(' "POST', 1)[0].encode()
        middle = HTTPS_LINE.split('HTTP/1.1" "python-requests/2.31.0"', 1)[1].encode()
        if long_value:
            user_agent = user_agent * 200
        line = prefix + b' "' + request + b'" "' + user_agent + b'"' + middle + b" " + tail
        frame = frame_from_bytes(line + b"\n")
        result = AwsAlbConnector().parse(frame)
        offsets = sorted(result.events["offset"].to_list() + result.rejects["offset"].to_list())
        assert offsets == frame["offset"].to_list()
        assert result.rejects.filter(pl.col("reason").is_null()).height == 0

    check()
