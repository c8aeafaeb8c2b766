"""Tests of the nginx_json connector: escape=json logs and the invalid JSON nginx writes without it."""

from __future__ import annotations

import base64
import json

from datetime import datetime

import polars as pl
import pytest
from pydantic import ValidationError

from gatewatch.connectors import get_connector
from gatewatch.connectors.base import REJECT_SCHEMA, ParseResult
from gatewatch.connectors.nginx_json import NginxJsonConnector, NginxJsonOptions
from gatewatch.events import PARSED_COLUMNS
from linefeed import event_rows, frame_from_file, frame_from_lines


def parse(*lines: str, **options) -> ParseResult:
    return NginxJsonConnector(NginxJsonOptions(**options)).parse(frame_from_lines(*lines))


def parse_one(line: str, **options) -> dict:
    result = parse(line, **options)
    assert result.rejects.height == 0, result.rejects.to_dicts()
    [row] = event_rows(result.events)
    return row


def assert_fields(row: dict, expected: dict) -> None:
    for name, value in expected.items():
        assert row[name] == value, f"{name}: {row[name]!r} != {value!r}"


FULL_LINE = (
    '{"time_iso8601":"2024-05-01T10:00:00+02:00","remote_addr":"192.0.2.10","remote_user":"alice",'
    '"request":"POST /v1/login?next=%2Fhome HTTP/1.1","status":"401","body_bytes_sent":"12",'
    '"request_length":"345","request_time":"0.125","http_referer":"https://app.example.com/",'
    '"http_user_agent":"python-requests/2.31","http_x_forwarded_for":"198.51.100.4, 192.0.2.1",'
    '"host":"api.example.com","scheme":"https","request_id":"7f3a","upstream_addr":"10.0.0.5:8080",'
    '"upstream_status":"401"}'
)


def test_nginx_json_escape_json_line():
    row = parse_one(FULL_LINE)
    assert_fields(
        row,
        {
            "ts": datetime(2024, 5, 1, 8, 0, 0),
            "client_ip": "192.0.2.10",
            "user": "alice",
            "method": "POST",
            "path": "/v1/login",
            "query": "next=%2Fhome",
            "http_version": "HTTP/1.1",
            "status": 401,
            "bytes_sent": 12,
            "bytes_received": 345,
            "duration_ms": 125.0,
            "referer": "https://app.example.com/",
            "user_agent": "python-requests/2.31",
            "forwarded_for": "198.51.100.4, 192.0.2.1",
            "host": "api.example.com",
            "scheme": "https",
            "request_id": "7f3a",
            "malformed": False,
        },
    )
    assert row["extra"] == {"upstream_addr": "10.0.0.5:8080", "upstream_status": "401"}


# nginx "JSON" with \xHH escapes: invalid JSON, bytes that may not be UTF-8.


def test_nginx_json_hex_escapes_decode_as_utf8():
    row = parse_one(
        r'{"time":"2017-07-25T11:01:06+08:00","remote_addr":"198.51.100.80","request":"POST /c/ads HTTP/1.1","status":"200","body_bytes_sent":"7513","http_user_agent":"Dalvik/2.1.0 (Linux; U; Android 5.1.1; \xC3\xA3 Build/LMY47V)","http_referer":"-"}'
    )
    assert_fields(
        row,
        {
            "ts": datetime(2017, 7, 25, 3, 1, 6),
            "client_ip": "198.51.100.80",
            "method": "POST",
            "path": "/c/ads",
            "http_version": "HTTP/1.1",
            "status": 200,
            "bytes_sent": 7513,
            "referer": None,
            "user_agent": "Dalvik/2.1.0 (Linux; U; Android 5.1.1; ã Build/LMY47V)",
        },
    )


def test_nginx_json_invalid_utf8_escapes_stay_text():
    row = parse_one(r'{"time":"2017-07-25T11:01:06Z","remote_addr":"198.51.100.81","http_user_agent":"a\xFF\x22b"}')
    assert row["user_agent"] == 'a\\xFF"b'


def test_nginx_json_escaped_backslash_before_x():
    row = parse_one(r'{"time":"2017-07-25T11:01:06Z","remote_addr":"198.51.100.81","http_user_agent":"a\\x41"}')
    assert row["user_agent"] == r"a\x41"


def test_nginx_json_unicode_escapes_decode():
    row = parse_one('{"time":"2017-07-25T11:01:06Z","remote_addr":"198.51.100.81","http_user_agent":"caf\\u00e9\\t"}')
    assert row["user_agent"] == "café\t"


# escape=json leaves bytes 0x80-0xFF raw, so a TLS handshake sent to the
# HTTP port gives a line that is not valid UTF-8.

TLS_LINE = (
    b'{"time":"2026-03-02T08:15:00+00:00","remote_addr":"203.0.113.77","request":"'
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"
    b'","status":"400","body_bytes_sent":"157","http_user_agent":"-"}\n'
)


def test_nginx_json_raw_binary_request(tmp_path):
    path = tmp_path / "access.json.log"
    path.write_bytes(TLS_LINE)
    result = NginxJsonConnector().parse(frame_from_file(path))
    [row] = event_rows(result.events)
    assert_fields(
        row,
        {
            "ts": datetime(2026, 3, 2, 8, 15, 0),
            "client_ip": "203.0.113.77",
            "status": 400,
            "bytes_sent": 157,
            "method": None,
            "path": None,
            "user_agent": None,
            "malformed": True,
        },
    )
    assert row["extra"]["request_raw"] == "\x16\x03\x01\x02\x00\x01\x00\x01\\xfc\x03\x03"


def test_nginx_json_binary_line_does_not_spoil_chunk(tmp_path):
    path = tmp_path / "access.json.log"
    good = b'{"time":"2026-03-02T08:15:01+00:00","remote_addr":"203.0.113.78","request":"GET / HTTP/1.1","status":"200"}\n'
    path.write_bytes(good + TLS_LINE + good)
    result = NginxJsonConnector().parse(frame_from_file(path))
    assert result.rejects.height == 0
    assert result.events["client_ip"].to_list() == ["203.0.113.78", "203.0.113.77", "203.0.113.78"]
    assert result.events["path"].to_list() == ["/", None, "/"]


# Other key sets and value types.


def test_nginx_json_numbers_not_strings():
    row = parse_one('{"msec":1500951666.123,"remote_addr":"192.0.2.1","status":404,"body_bytes_sent":0,"request_time":0.002}')
    assert row["ts"] == datetime(2017, 7, 25, 3, 1, 6, 123000)
    assert row["status"] == 404
    assert row["bytes_sent"] == 0
    assert row["duration_ms"] == 2.0


def test_nginx_json_request_parts_without_request():
    row = parse_one(
        '{"time_local":"02/Mar/2026:08:15:00 +0100","remote_addr":"192.0.2.1","request_method":"GET",'
        '"request_uri":"/a/b?c=1","server_protocol":"HTTP/2.0","status":"200"}'
    )
    assert_fields(
        row,
        {
            "ts": datetime(2026, 3, 2, 7, 15, 0),
            "method": "GET",
            "path": "/a/b",
            "query": "c=1",
            "http_version": "HTTP/2.0",
        },
    )
    assert row["extra"] == {}


def test_nginx_json_uri_and_args_fallback():
    row = parse_one('{"@timestamp":"2026-03-02T08:15:00Z","remote_addr":"192.0.2.1","uri":"/x","args":"a=1"}')
    assert row["path"] == "/x"
    assert row["query"] == "a=1"
    assert row["extra"] == {"uri": "/x"}


def test_nginx_json_body_bytes_preferred():
    row = parse_one('{"time":"2026-03-02T08:15:00Z","remote_addr":"192.0.2.1","bytes_sent":"500","body_bytes_sent":"300"}')
    assert row["bytes_sent"] == 300
    assert row["extra"] == {"bytes_sent": "500"}


def test_nginx_json_bytes_sent_fallback():
    row = parse_one('{"time":"2026-03-02T08:15:00Z","remote_addr":"192.0.2.1","bytes_sent":"500"}')
    assert row["bytes_sent"] == 500


def test_nginx_json_http_host_fallback():
    row = parse_one('{"time":"2026-03-02T08:15:00Z","remote_addr":"192.0.2.1","http_host":"api.example.com:8443"}')
    assert row["host"] == "api.example.com:8443"


def test_nginx_json_local_time_uses_source_timezone():
    row = parse_one('{"time":"2019-03-05T17:03:11","remote_addr":"192.0.2.1"}', timezone="America/Chicago")
    assert row["ts"] == datetime(2019, 3, 5, 23, 3, 11)


def test_nginx_json_v4_mapped_client_unwrapped():
    row = parse_one('{"time":"2026-03-02T08:15:00Z","remote_addr":"::ffff:198.51.100.60"}')
    assert row["client_ip"] == "198.51.100.60"
    assert row["extra"]["client_ip_raw"] == "::ffff:198.51.100.60"


def test_nginx_json_ipv6_client_kept_whole():
    row = parse_one('{"time":"2026-03-02T08:15:00Z","remote_addr":"2001:db8:85a3::8a2e:370:7334"}')
    assert row["client_ip"] == "2001:db8:85a3::8a2e:370:7334"


def test_nginx_json_duplicate_key_last_wins():
    row = parse_one('{"time":"2026-03-02T08:15:00Z","remote_addr":"192.0.2.1","remote_addr":"192.0.2.2"}')
    assert row["client_ip"] == "192.0.2.2"


def test_nginx_json_unknown_keys_keep_json_types():
    row = parse_one(
        '{"time":"2026-03-02T08:15:00Z","remote_addr":"192.0.2.1","upstream":{"addr":"10.0.0.1","tries":[1,2]},'
        '"cache":null,"gzip_ratio":2.5,"ssl":true}'
    )
    assert row["extra"] == {"upstream": {"addr": "10.0.0.1", "tries": [1, 2]}, "cache": None, "gzip_ratio": 2.5, "ssl": True}


def test_nginx_json_reserved_key_renamed():
    row = parse_one('{"time":"2026-03-02T08:15:00Z","remote_addr":"192.0.2.1","request":"\\u0016","request_raw":"x"}')
    assert row["extra"]["request_raw"] == "\x16"
    assert row["extra"]["request_raw_from_log"] == "x"


def test_nginx_json_dash_status_is_null():
    row = parse_one('{"time":"2026-03-02T08:15:00Z","remote_addr":"192.0.2.1","status":"-"}')
    assert row["status"] is None
    assert row["extra"] == {}


def test_nginx_json_bad_status_kept_in_extra():
    row = parse_one('{"time":"2026-03-02T08:15:00Z","remote_addr":"192.0.2.1","status":"2xx"}')
    assert row["status"] is None
    assert row["extra"]["status_invalid"] == "2xx"


def test_nginx_json_absolute_target():
    row = parse_one('{"time":"2026-03-02T08:15:00Z","remote_addr":"192.0.2.1","request":"GET http://example.com/p?q HTTP/1.1"}')
    assert_fields(row, {"scheme": "http", "host": "example.com", "path": "/p", "query": "q"})
    assert row["extra"]["request_target"] == "http://example.com/p?q"


# The fields option.


def test_nginx_json_fields_option_maps_keys():
    row = parse_one(
        '{"when":"2026-03-02T08:15:00Z","client":"192.0.2.5","req":"GET /x HTTP/1.1","code":"503","rt":"1.5","ua":"curl","remote_addr":"10.0.0.1"}',
        fields={"when": "ts", "client": "client_ip", "req": "request", "code": "status", "rt": "request_time", "ua": "user_agent"},
    )
    assert_fields(
        row,
        {
            "ts": datetime(2026, 3, 2, 8, 15, 0),
            "client_ip": "192.0.2.5",
            "path": "/x",
            "status": 503,
            "duration_ms": 1500.0,
            "user_agent": "curl",
        },
    )
    assert row["extra"] == {"remote_addr_from_log": "10.0.0.1"}


def test_nginx_json_fields_option_duration_in_ms():
    row = parse_one('{"time":"2026-03-02T08:15:00Z","remote_addr":"192.0.2.1","latency":"42"}', fields={"latency": "duration_ms"})
    assert row["duration_ms"] == 42.0


XFF_LINE = '{"time":"2026-03-02T08:15:00Z","remote_addr":"10.0.0.1","http_x_forwarded_for":"198.51.100.1, 203.0.113.2"}'


def test_nginx_json_client_from_trusted_proxy():
    row = parse_one(XFF_LINE, trusted_proxy_count=1)
    assert row["client_ip"] == "203.0.113.2"
    assert row["forwarded_for"] == "198.51.100.1, 203.0.113.2"
    assert row["extra"]["remote_addr"] == "10.0.0.1"


def test_nginx_json_client_behind_two_proxies():
    row = parse_one(XFF_LINE, trusted_proxy_count=2)
    assert row["client_ip"] == "198.51.100.1"


def test_nginx_json_client_from_trusted_networks():
    line = '{"time":"2026-03-02T08:15:00Z","remote_addr":"10.0.0.1","http_x_forwarded_for":"192.0.2.9, 198.51.100.1, 10.3.3.3"}'
    row = parse_one(line, trusted_proxies=["10.0.0.0/8"])
    assert row["client_ip"] == "198.51.100.1"
    assert row["extra"]["remote_addr"] == "10.0.0.1"


def test_nginx_json_client_without_forwarded_for():
    row = parse_one('{"time":"2026-03-02T08:15:00Z","remote_addr":"10.0.0.1"}', trusted_proxy_count=1)
    assert row["client_ip"] == "10.0.0.1"
    assert row["extra"] == {}


def test_nginx_json_fields_option_rejects_unknown_target():
    with pytest.raises(ValidationError, match="maps to unknown target 'latency_ms'"):
        NginxJsonOptions(fields={"latency": "latency_ms"})


def test_nginx_json_options_reject_unknown_timezone():
    with pytest.raises(ValidationError, match="unknown time zone"):
        NginxJsonOptions(timezone="Europe/Atlantis")


# Broken lines and rejects.


def test_nginx_json_truncated_line_keeps_members():
    row = parse_one('{"time":"2026-03-02T08:15:00+00:00","remote_addr":"203.0.113.78","request":"GET /t HTTP/1.1","status":"200","http_user_agent":"cu')
    assert_fields(row, {"client_ip": "203.0.113.78", "path": "/t", "status": 200, "user_agent": None})
    assert row["extra"]["invalid_json"] is True


def test_nginx_json_bad_escape_drops_one_member():
    row = parse_one('{"time":"2026-03-02T08:15:00Z","remote_addr":"192.0.2.1","http_user_agent":"a\\qb","status":"200"}')
    assert row["client_ip"] == "192.0.2.1"
    assert row["status"] == 200
    assert row["user_agent"] is None
    assert row["extra"]["invalid_json"] is True


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ('192.0.2.1 - - [01/Jan/2025:00:00:00 +0000] "GET / HTTP/1.1" 200 1', "line is not a JSON object"),
        ('["time","remote_addr"]', "line is not a JSON object"),
        ("{garbage", "line starts with '{' but contains no readable JSON member"),
        (
            '{"remote_addr":"192.0.2.1"}',
            "missing time field (one of time_iso8601, time_local, @timestamp, timestamp, time, msec, ts)",
        ),
        ('{"time":"yesterday","remote_addr":"192.0.2.1"}', "invalid timestamp yesterday"),
    ],
)
def test_nginx_json_reject_reasons(line, reason):
    result = parse(line)
    assert result.events.height == 0
    assert result.rejects["reason"].to_list() == [reason]
    assert result.rejects["line"].to_list() == [line]


def test_nginx_json_every_offset_accounted_once():
    lines = [
        FULL_LINE,
        "not json",
        r'{"time":"2017-07-25T11:01:06Z","remote_addr":"198.51.100.81","http_user_agent":"a\xC3\xA3"}',
        '{"time":"2017-07-25T11:01:06Z","remote_addr":"198.51.100.82","upstream":{"a":1}}',
        '{"time":"2017-07-25T11:01:06Z","remote_addr":"198.51.100.83","request":"GET',
        '{"remote_addr":"198.51.100.84"}',
    ]
    frame = frame_from_lines(*lines)
    result = NginxJsonConnector().parse(frame)
    seen = result.events["offset"].to_list() + result.rejects["offset"].to_list()
    assert sorted(seen) == frame["offset"].to_list()
    assert len(set(seen)) == len(seen)
    assert result.events["client_ip"].to_list() == ["192.0.2.10", "198.51.100.81", "198.51.100.82", "198.51.100.83"]


def test_nginx_json_events_have_parsed_schema():
    result = parse(FULL_LINE)
    assert result.events.schema == pl.Schema({**PARSED_COLUMNS, "offset": pl.Int64()})
    assert result.rejects.schema == pl.Schema(REJECT_SCHEMA)


def test_nginx_json_empty_chunk():
    result = NginxJsonConnector().parse(pl.DataFrame(schema={"line": pl.String, "offset": pl.Int64}))
    assert result.events.height == 0
    assert result.rejects.height == 0


def test_nginx_json_registry_alias():
    assert get_connector("nginx_escape_json") is NginxJsonConnector


def test_nginx_json_authorization_fingerprinted():
    basic = base64.b64encode(b"alice:hunter2").decode()
    lines = [
        '{"time":"2026-03-02T08:15:00Z","remote_addr":"192.0.2.1","http_authorization":"Bearer sk_live_0123456789"}',
        '{"time":"2026-03-02T08:15:01Z","remote_addr":"192.0.2.9","http_authorization":"Bearer sk_live_0123456789"}',
        f'{{"time":"2026-03-02T08:15:02Z","remote_addr":"192.0.2.2","http_authorization":"Basic {basic}"}}',
    ]
    result = NginxJsonConnector(fingerprint_key=b"test-key").parse(frame_from_lines(*lines))
    rows = event_rows(result.events)
    assert rows[0]["credential_id"] == rows[1]["credential_id"]
    assert len(rows[0]["credential_id"]) == 24
    assert rows[2]["user"] == "alice"
    stored = json.dumps(rows, default=str)
    assert "sk_live_0123456789" not in stored
    assert basic not in stored


def test_nginx_json_mapped_credential_kept_as_identifier():
    line = '{"time":"2026-03-02T08:15:00Z","remote_addr":"192.0.2.1","api_key_id":"key-7f3a"}'
    options = NginxJsonOptions(fields={"api_key_id": "credential_id"})
    [row] = event_rows(NginxJsonConnector(options).parse(frame_from_lines(line)).events)
    assert row["credential_id"] == "key-7f3a"
