"""The haproxy connector on hand-written HAProxy HTTP log lines."""

from __future__ import annotations

from datetime import datetime

import pytest

from gatewatch.connectors import get_connector
from gatewatch.connectors.haproxy import HaproxyConnector, HaproxyOptions
from linefeed import event_rows, frame_from_lines

PREFIX = "Nov 14 22:45:11 lb1 haproxy[760]: "


def parse(*lines: str, **options):
    return HaproxyConnector(HaproxyOptions(**options), fingerprint_key=b"test-key").parse(frame_from_lines(*lines))


def one_event(line: str, **options) -> dict:
    result = parse(line, **options)
    assert result.rejects.height == 0, result.rejects.to_dicts()
    [row] = event_rows(result.events)
    return row


def test_haproxy_registered():
    assert get_connector("haproxy") is HaproxyConnector
    assert get_connector("haproxy_http") is HaproxyConnector


def test_ipv6_client_without_brackets():
    # The port follows the last colon: the client is 2001:db8::1, not 2001:db8::1:5834.
    row = one_event(
        PREFIX + '2001:db8::1:58340 [14/Nov/2015:22:45:11.608] main main/<NOSRV> -1/-1/-1/-1/0 401 248 - - PR-- '
        '0/0/0/0/0 0/0 "GET /admin HTTP/1.1"'
    )
    assert row["ts"] == datetime(2015, 11, 14, 22, 45, 11, 608000)
    assert row["client_ip"] == "2001:db8::1"
    assert row["extra"]["client_port"] == 58340
    assert row["extra"]["frontend"] == "main"
    assert row["extra"]["backend"] == "main"
    assert "server" not in row["extra"]
    assert row["extra"]["server_raw"] == "<NOSRV>"
    assert row["method"] == "GET"
    assert row["path"] == "/admin"
    assert row["status"] == 401
    assert row["bytes_sent"] == 248
    assert row["extra"]["termination_state"] == "PR--"
    assert row["extra"]["syslog_host"] == "lb1"


def test_mapped_ipv4_client_and_tls_frontend():
    row = one_event(
        "Nov 14 22:45:12 lb1 haproxy[760]: ::ffff:198.51.100.60:54241 [14/Nov/2015:22:45:12.001] https~ web/srv1 "
        '0/0/1/7/227 206 1601821 - - ---- 33/15/1/0/0 0/0 "GET /files/a.jpg HTTP/1.1"'
    )
    assert row["client_ip"] == "198.51.100.60"
    assert row["extra"]["client_ip_raw"] == "::ffff:198.51.100.60"
    assert row["extra"]["client_port"] == 54241
    assert row["status"] == 206
    assert row["bytes_sent"] == 1601821
    assert row["extra"]["frontend"] == "https"
    assert row["extra"]["tls"] is True
    assert row["extra"]["server"] == "srv1"
    assert row["duration_ms"] == 227.0


def test_accept_date_in_source_timezone():
    # HAProxy dates carry no offset; 22:45 in Chicago (CST, UTC-6) is 04:45 UTC the next day.
    row = one_event(
        PREFIX + '192.0.2.10:4000 [14/Nov/2015:22:45:11.608] main app/s1 0/0/1/2/3 200 10 - - ---- 1/1/1/1/0 0/0 '
        '"GET / HTTP/1.1"',
        timezone="America/Chicago",
    )
    assert row["ts"] == datetime(2015, 11, 15, 4, 45, 11, 608000)


def test_unix_socket_and_hidden_clients():
    unix, hidden = event_rows(
        parse(
            PREFIX + 'unix:1 [14/Nov/2015:22:45:11.608] local~ app/s1 0/0/0/1/1 200 5 - - ---- 1/1/0/0/0 0/0 "GET /u HTTP/1.1"',
            PREFIX + '-:22222 [14/Nov/2015:22:45:11.608] www app/s1 0/0/0/1/1 200 5 - - ---- 1/1/0/0/0 0/0 "GET /h HTTP/1.1"',
        ).events
    )
    assert unix["client_ip"] is None
    assert unix["extra"]["client_socket"] == "unix:1"
    assert unix["path"] == "/u"
    assert hidden["client_ip"] is None
    assert hidden["extra"]["client_port"] == 22222
    assert hidden["path"] == "/h"


def test_badreq_is_malformed_event():
    row = one_event(
        PREFIX + '203.0.113.5:33317 [29/Sep/2025:08:33:00.277] f_foobar~ f_foobar/<NOSRV> -1/-1/-1/-1/0 400 0 - - '
        'CR-- 8/1/0/0/0 0/0 "<BADREQ>"'
    )
    assert row["malformed"] is True
    assert row["method"] is None
    assert row["path"] is None
    assert row["extra"]["request_raw"] == "<BADREQ>"
    assert row["status"] == 400
    assert row["extra"]["timers"] == "-1/-1/-1/-1/0"


def test_aborted_status_minus_one():
    row = one_event(
        PREFIX + '192.0.2.3:1000 [14/Nov/2015:22:45:11.608] main app/s1 5/0/-1/-1/5 -1 0 - - CC-- 1/1/0/0/0 0/0 '
        '"GET /slow HTTP/1.1"'
    )
    assert row["status"] is None
    assert row["extra"]["status_raw"] == "-1"
    assert row["duration_ms"] == 5.0


def test_captured_headers_named_by_options():
    row = one_event(
        PREFIX + '192.0.2.7:5000 [14/Nov/2015:22:45:11.608] main app/s1 0/0/0/1/1 200 5 - - ---- 1/1/0/0/0 0/0 '
        '{api.example.com|curl/8.5.0|Bearer abc123|198.51.100.1} {text/plain} "GET /v1/items?id=3 HTTP/1.1"',
        request_headers=["Host", "User-Agent", "Authorization", "X-Forwarded-For"],
        response_headers=["Content-Type"],
    )
    assert row["host"] == "api.example.com"
    assert row["user_agent"] == "curl/8.5.0"
    assert row["forwarded_for"] == "198.51.100.1"
    assert row["credential_id"] is not None
    assert len(row["credential_id"]) == 24
    assert "abc123" not in str(row)
    assert row["extra"]["response_headers_content-type"] == "text/plain"
    assert row["query"] == "id=3"


def test_unnamed_captured_headers_in_extra():
    row = one_event(
        PREFIX + '192.0.2.7:5000 [14/Nov/2015:22:45:11.608] main app/s1 0/0/0/1/1 200 5 - - ---- 1/1/0/0/0 0/0 '
        '{docs.example.com||} {|||} "GET / HTTP/1.1"'
    )
    assert row["extra"]["captured_request_headers"] == ["docs.example.com", "", ""]
    assert row["host"] is None


def test_trusted_proxies_pick_client_from_header():
    row = one_event(
        PREFIX + '10.0.0.5:5000 [14/Nov/2015:22:45:11.608] main app/s1 0/0/0/1/1 200 5 - - ---- 1/1/0/0/0 0/0 '
        '{203.0.113.9, 10.0.0.4} "GET / HTTP/1.1"',
        request_headers=["X-Forwarded-For"],
        trusted_proxies=["10.0.0.0/8"],
    )
    assert row["client_ip"] == "203.0.113.9"
    assert row["extra"]["remote_addr"] == "10.0.0.5"


def test_rejects_name_the_reason():
    result = parse(
        "# a comment",
        "192.0.2.4:50033 [28/Feb/2025:02:43:10.123] frontend/backend: SSL handshake failure",
        PREFIX + "192.0.2.4:50033 [28/Feb/2025:02:43:10.123] fe be/srv 0/0/5 0 -- 1/1/0/0/0 0/0",
        "something else entirely",
        PREFIX + '192.0.2.4:50033 [31/Feb/2025:02:43:10.123] main app/s1 0/0/0/1/1 200 5 - - ---- 1/1/0/0/0 0/0 "GET / HTTP/1.1"',
    )
    assert result.events.height == 0
    assert result.rejects["reason"].to_list() == [
        "comment line",
        "HAProxy connection message (such as an SSL handshake failure), not an HTTP request",
        "HAProxy TCP log line (option tcplog), not an HTTP log line",
        "line does not match the HAProxy HTTP log format: missing [dd/Mon/yyyy:HH:MM:SS.mmm] accept date",
        "invalid timestamp 31/Feb/2025:02:43:10.123",
    ]


def test_invalid_header_name_option():
    with pytest.raises(ValueError, match="not a valid header name"):
        HaproxyOptions(request_headers=["Host Name"])
