"""Tests of the combined (NCSA common/combined) connector and the connector registry.

The input lines use documentation addresses (192.0.2.0/24, 198.51.100.0/24,
203.0.113.0/24, 2001:db8::/32). They reproduce lines that broke other log
parsers: binary request lines, escaped quotes, address lists and IPv6
clients, unusual HTTP versions and undeclared trailing fields.
"""

from __future__ import annotations

from datetime import datetime
from types import SimpleNamespace

import polars as pl
import pytest
from pydantic import ValidationError

import gatewatch.connectors as registry
from gatewatch.connectors import connector_names, get_connector
from gatewatch.connectors.base import REJECT_SCHEMA, Connector, ConnectorOptions, ParseResult
from gatewatch.connectors.combined import CombinedConnector, CombinedOptions
from gatewatch.errors import SourceError
from gatewatch.events import PARSED_COLUMNS
from linefeed import event_rows, frame_from_bytes, frame_from_file, frame_from_lines

INGRESS_FIELDS = [
    "request_length",
    "request_time",
    "proxy_upstream_name",
    "proxy_alternative_upstream_name",
    "upstream_addr",
    "upstream_response_length",
    "upstream_response_time",
    "upstream_status",
    "req_id",
]


def parse(*lines: str, **options) -> ParseResult:
    connector = CombinedConnector(CombinedOptions(**options))
    return connector.parse(frame_from_lines(*lines))


def parse_one(line: str, **options) -> dict:
    result = parse(line, **options)
    assert result.rejects.height == 0, result.rejects.to_dicts()
    [row] = event_rows(result.events)
    return row


def assert_fields(row: dict, expected: dict) -> None:
    for name, value in expected.items():
        assert row[name] == value, f"{name}: {row[name]!r} != {value!r}"


# Binary bytes as the request line (TLS ClientHello, RDP probe).


def test_combined_tls_handshake_request_is_malformed():
    row = parse_one(
        r'198.51.100.23 - - [04/Oct/2022:03:07:27 +0200] "\x16\x03\x01\x00\xEE\x01\x00\x00\xEA\x03\x03" 400 150 "-" "-"'
    )
    assert_fields(
        row,
        {
            "ts": datetime(2022, 10, 4, 1, 7, 27),
            "client_ip": "198.51.100.23",
            "method": None,
            "path": None,
            "query": None,
            "http_version": None,
            "status": 400,
            "bytes_sent": 150,
            "referer": None,
            "user_agent": None,
            "malformed": True,
        },
    )
    assert row["extra"]["request_raw"] == r"\x16\x03\x01\x00\xEE\x01\x00\x00\xEA\x03\x03"


def test_combined_rdp_probe_request_is_malformed():
    row = parse_one(
        r'198.51.100.24 - - [04/Oct/2022:04:34:49 +0200] "\x03\x00\x00/*\xE0\x00\x00\x00\x00\x00Cookie: mstshash=Administr" 400 150 "-" "-"'
    )
    assert_fields(
        row,
        {
            "ts": datetime(2022, 10, 4, 2, 34, 49),
            "client_ip": "198.51.100.24",
            "status": 400,
            "bytes_sent": 150,
            "malformed": True,
            "method": None,
        },
    )
    assert row["extra"]["request_raw"] == r"\x03\x00\x00/*\xE0\x00\x00\x00\x00\x00Cookie: mstshash=Administr"


# Empty request "" and an undeclared trailing field.


def test_combined_empty_request_with_trailing_field():
    row = parse_one('203.0.113.40 - - [01/Mar/2021:03:25:25 +0800] "" 400 0 "-" "-" "-"')
    assert_fields(
        row,
        {
            "ts": datetime(2021, 2, 28, 19, 25, 25),
            "client_ip": "203.0.113.40",
            "method": None,
            "path": None,
            "http_version": None,
            "status": 400,
            "bytes_sent": 0,
            "referer": None,
            "user_agent": None,
            "malformed": True,
        },
    )
    assert row["extra"]["extra_fields"] == ["-"]
    assert row["extra"]["request_raw"] == ""


def test_combined_dash_request_is_malformed():
    row = parse_one('::1 - - [26/Dec/2016:16:16:48 +0200] "-" 408 -')
    assert row["malformed"] is True
    assert row["bytes_sent"] is None
    assert row["extra"]["request_raw"] == "-"


# A double quote inside the user agent, escaped as \" (Apache) or \x22 (nginx).


def test_combined_backslash_quote_in_user_agent():
    row = parse_one(
        r'192.0.2.44 - - [25/Feb/2020:18:55:34 +0000] "GET / HTTP/1.1" 302 5080 "-" "\"Mozilla/5.0 (iPhone; CPU iPhone OS 11_0 like Mac OS X)\""'
    )
    assert_fields(
        row,
        {
            "ts": datetime(2020, 2, 25, 18, 55, 34),
            "client_ip": "192.0.2.44",
            "method": "GET",
            "path": "/",
            "http_version": "HTTP/1.1",
            "status": 302,
            "bytes_sent": 5080,
            "user_agent": '"Mozilla/5.0 (iPhone; CPU iPhone OS 11_0 like Mac OS X)"',
        },
    )


def test_combined_hex_quote_in_user_agent():
    row = parse_one(
        r'192.0.2.45 - - [25/Feb/2020:18:55:34 +0000] "GET /a HTTP/1.1" 200 12 "-" "Dalvik/2.1.0 (Linux; U; Android 5.1; Tab 10\x22 Build/LMY47I)"'
    )
    assert_fields(
        row,
        {
            "user_agent": 'Dalvik/2.1.0 (Linux; U; Android 5.1; Tab 10" Build/LMY47I)',
            "path": "/a",
            "status": 200,
            "bytes_sent": 12,
        },
    )


def test_combined_hex_escapes_decode_as_utf8():
    row = parse_one(r'192.0.2.46 - - [25/Feb/2020:18:55:34 +0000] "GET /caf\xC3\xA9 HTTP/1.1" 200 1 "-" "ua \xC3\xA3"')
    assert row["path"] == "/café"
    assert row["user_agent"] == "ua ã"


def test_combined_invalid_utf8_escapes_stay_text():
    row = parse_one(r'192.0.2.47 - - [19/May/2015:11:05:10 +0000] "GET / HTTP/1.0" 200 1 "http://\xe4\xe5-\xf0.\xf4/" "ua"')
    assert row["referer"] == r"http://\xe4\xe5-\xf0.\xf4/"


def test_combined_escaped_backslash_before_x():
    row = parse_one(r'192.0.2.48 - - [25/Feb/2020:18:55:34 +0000] "GET / HTTP/1.1" 200 1 "-" "a\\x41"')
    assert row["user_agent"] == r"a\x41"


def test_combined_raw_backslash_before_closing_quote():
    row = parse_one('192.0.2.49 - - [25/Feb/2020:18:55:34 +0000] "GET /a\\" 200 1 "-" "agent\\"')
    assert row["path"] is None
    assert row["status"] == 200
    assert row["user_agent"] == "agent\\"


def test_combined_hex_escape_in_path_decodes_backslash():
    row = parse_one(
        r'192.0.2.50 - - [10/Dec/2024:17:18:30 +0700] "GET /index.php?s=/index/\x5Cthink\x5Capp/invoke HTTP/1.1" 404 153 "-" "x"'
    )
    assert row["path"] == "/index.php"
    assert row["query"] == "s=/index/\\think\\app/invoke"


# An X-Forwarded-For list written where $remote_addr is expected.


def test_combined_forwarded_list_as_client():
    row = parse_one(
        '198.51.100.7, 203.0.113.54, 127.0.0.1 - - [15/May/2017:12:16:27 +0200] "GET /v1/jobs/24237 HTTP/1.1" 301 5 "-" "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"'
    )
    assert_fields(
        row,
        {
            "ts": datetime(2017, 5, 15, 10, 16, 27),
            "client_ip": "198.51.100.7",
            "forwarded_for": "198.51.100.7, 203.0.113.54, 127.0.0.1",
            "method": "GET",
            "path": "/v1/jobs/24237",
            "status": 301,
            "bytes_sent": 5,
        },
    )
    assert row["extra"]["peer_ip"] == "127.0.0.1"


def test_combined_quoted_forwarded_list_before_client():
    row = parse_one(
        '"198.51.100.2, 203.0.113.9" 192.0.2.185 - - [22/Jan/2016:13:18:29 +0000] "GET /assets?q=100 HTTP/1.1" 200 25507 "-" "Amazon CloudFront"'
    )
    assert row["client_ip"] == "198.51.100.2"
    assert row["forwarded_for"] == "198.51.100.2, 203.0.113.9"
    assert row["extra"]["peer_ip"] == "192.0.2.185"


def test_combined_dash_forwarded_list_uses_peer():
    row = parse_one('"-" 192.0.2.185 - - [22/Jan/2016:13:18:29 +0000] "GET / HTTP/1.1" 200 1 "-" "x"')
    assert row["client_ip"] == "192.0.2.185"
    assert row["forwarded_for"] is None


# IPv6 clients.


def test_combined_ipv6_client_kept_whole():
    row = parse_one(
        '2001:db8:85a3::8a2e:370:7334 - - [20/Apr/2024:23:30:00 -0700] "GET /api/v2/users?id=7 HTTP/1.1" 200 512 "-" "curl/8.5.0"'
    )
    assert_fields(
        row,
        {
            "ts": datetime(2024, 4, 21, 6, 30, 0),
            "client_ip": "2001:db8:85a3::8a2e:370:7334",
            "method": "GET",
            "path": "/api/v2/users",
            "query": "id=7",
            "http_version": "HTTP/1.1",
            "status": 200,
            "bytes_sent": 512,
            "user_agent": "curl/8.5.0",
        },
    )


def test_combined_v4_mapped_client_unwrapped():
    row = parse_one('::ffff:198.51.100.60 - - [14/Nov/2015:22:45:12 +0000] "GET / HTTP/1.1" 200 1 "-" "x"')
    assert row["client_ip"] == "198.51.100.60"
    assert row["extra"]["client_ip_raw"] == "::ffff:198.51.100.60"


# nginx-ingress: bracketed IPv6 upstreams and comma-separated upstream lists.

INGRESS_LINE = (
    '2001:db8::4e36 - - [24/Aug/2022:18:05:41 +0000] "GET /favicon.ico HTTP/2.0" 502 552 '
    '"https://app.example.com/" "Mozilla/5.0" 27 0.000 [default-web-8080] [] '
    "[2001:db8::7]:5000, [2001:db8::8]:5000 0, 0 0.000, 0.000 502, 502 3db73c6c673c4256ade033a6ce08c2ab"
)


def test_combined_ingress_named_trailing_fields():
    row = parse_one(INGRESS_LINE, trailing_fields=INGRESS_FIELDS)
    assert_fields(
        row,
        {
            "ts": datetime(2022, 8, 24, 18, 5, 41),
            "client_ip": "2001:db8::4e36",
            "method": "GET",
            "path": "/favicon.ico",
            "http_version": "HTTP/2.0",
            "status": 502,
            "bytes_sent": 552,
            "referer": "https://app.example.com/",
            "user_agent": "Mozilla/5.0",
            "bytes_received": 27,
            "duration_ms": 0.0,
            "request_id": "3db73c6c673c4256ade033a6ce08c2ab",
        },
    )
    assert row["extra"]["proxy_upstream_name"] == "default-web-8080"
    assert row["extra"]["upstream_addr"] == "[2001:db8::7]:5000, [2001:db8::8]:5000"
    assert row["extra"]["upstream_response_length"] == "0, 0"
    assert row["extra"]["upstream_response_time"] == "0.000, 0.000"
    assert row["extra"]["upstream_status"] == "502, 502"
    assert "proxy_alternative_upstream_name" not in row["extra"]


def test_combined_ingress_without_options_keeps_fields():
    row = parse_one(INGRESS_LINE)
    assert row["duration_ms"] is None
    assert row["request_id"] is None
    assert row["extra"]["extra_fields"] == [
        "27",
        "0.000",
        "[default-web-8080]",
        "[]",
        "[2001:db8::7]:5000, [2001:db8::8]:5000",
        "0, 0",
        "0.000, 0.000",
        "502, 502",
        "3db73c6c673c4256ade033a6ce08c2ab",
    ]


def test_combined_fewer_names_than_fields():
    row = parse_one(INGRESS_LINE, trailing_fields=["request_length", "request_time"])
    assert row["bytes_received"] == 27
    assert row["extra"]["extra_fields"][0] == "[default-web-8080]"
    assert len(row["extra"]["extra_fields"]) == 7


def test_combined_request_time_in_milliseconds():
    row = parse_one(
        '192.0.2.9 - - [01/Jan/2025:00:00:00 +0000] "GET / HTTP/1.1" 200 1 "-" "x" 0.250',
        trailing_fields=["request_time"],
    )
    assert row["duration_ms"] == 250.0


def test_combined_bad_request_time_in_extra():
    row = parse_one(
        '192.0.2.9 - - [01/Jan/2025:00:00:00 +0000] "GET / HTTP/1.1" 200 1 "-" "x" 0.1,0.2',
        trailing_fields=["request_time"],
    )
    assert row["duration_ms"] is None
    assert row["extra"]["request_time"] == "0.1,0.2"


def test_combined_trailing_forwarded_for_and_host():
    row = parse_one(
        '192.0.2.9 - - [01/Jan/2025:00:00:00 +0000] "GET / HTTP/1.1" 200 1 "-" "x" "198.51.100.1, 192.0.2.1" api.example.com',
        trailing_fields=["http_x_forwarded_for", "host"],
    )
    assert row["client_ip"] == "192.0.2.9"
    assert row["forwarded_for"] == "198.51.100.1, 192.0.2.1"
    assert row["host"] == "api.example.com"


def test_combined_trailing_status_goes_to_extra():
    row = parse_one(
        '192.0.2.9 - - [01/Jan/2025:00:00:00 +0000] "GET / HTTP/1.1" 200 1 "-" "x" 500',
        trailing_fields=["status"],
    )
    assert row["status"] == 200
    assert row["extra"]["status"] == "500"


# Taking the client from the proxy chain.

XFF_TRAILING_LINE = (
    '10.0.0.1 - - [01/Jan/2025:00:00:00 +0000] "GET / HTTP/1.1" 200 1 "-" "x" "198.51.100.1, ::ffff:203.0.113.2"'
)


def test_combined_client_from_trusted_proxy():
    row = parse_one(XFF_TRAILING_LINE, trailing_fields=["http_x_forwarded_for"], trusted_proxy_count=1)
    assert row["client_ip"] == "203.0.113.2"
    assert row["extra"]["client_ip_raw"] == "::ffff:203.0.113.2"
    assert row["extra"]["remote_addr"] == "10.0.0.1"


def test_combined_client_behind_two_proxies():
    row = parse_one(XFF_TRAILING_LINE, trailing_fields=["http_x_forwarded_for"], trusted_proxy_count=2)
    assert row["client_ip"] == "198.51.100.1"


def test_combined_short_chain_gives_leftmost():
    row = parse_one(XFF_TRAILING_LINE, trailing_fields=["http_x_forwarded_for"], trusted_proxy_count=5)
    assert row["client_ip"] == "198.51.100.1"


def test_combined_trusted_proxy_with_address_list():
    row = parse_one(
        '198.51.100.7, 203.0.113.54, 127.0.0.1 - - [15/May/2017:12:16:27 +0200] "GET / HTTP/1.1" 301 5 "-" "x"',
        trusted_proxy_count=1,
    )
    assert row["client_ip"] == "203.0.113.54"
    assert row["extra"]["peer_ip"] == "127.0.0.1"
    assert "remote_addr" not in row["extra"]


def test_combined_trusted_networks_skip_own_proxies():
    line = (
        '10.0.0.1 - - [01/Jan/2025:00:00:00 +0000] "GET / HTTP/1.1" 200 1 "-" "x" '
        '"192.0.2.66, 198.51.100.1, 10.20.0.4"'
    )
    row = parse_one(line, trailing_fields=["http_x_forwarded_for"], trusted_proxies=["10.0.0.0/8"])
    assert row["client_ip"] == "198.51.100.1"
    assert row["extra"]["remote_addr"] == "10.0.0.1"


def test_combined_trusted_networks_forged_entry_ignored():
    # The client wrote 10.9.9.9 itself, left of its own address. It is not trusted
    # because an untrusted address is right of it.
    line = (
        '10.0.0.1 - - [01/Jan/2025:00:00:00 +0000] "GET / HTTP/1.1" 200 1 "-" "x" '
        '"10.9.9.9, 203.0.113.7"'
    )
    row = parse_one(line, trailing_fields=["http_x_forwarded_for"], trusted_proxies=["10.0.0.0/8"])
    assert row["client_ip"] == "203.0.113.7"


def test_combined_trusted_networks_all_trusted_gives_leftmost():
    line = '10.0.0.1 - - [01/Jan/2025:00:00:00 +0000] "GET / HTTP/1.1" 200 1 "-" "x" "10.1.1.1, 10.2.2.2"'
    row = parse_one(line, trailing_fields=["http_x_forwarded_for"], trusted_proxies=["10.0.0.0/8"])
    assert row["client_ip"] == "10.1.1.1"


def test_combined_trusted_networks_ipv6_and_mapped():
    line = (
        '[2001:db8::1] - - [01/Jan/2025:00:00:00 +0000] "GET / HTTP/1.1" 200 1 "-" "x" '
        '"::ffff:203.0.113.9, 2001:db8::5"'
    )
    row = parse_one(line, trailing_fields=["http_x_forwarded_for"], trusted_proxies=["2001:db8::/32"])
    assert row["client_ip"] == "203.0.113.9"


def test_combined_trusted_networks_invalid_cidr():
    with pytest.raises(ValidationError, match="invalid network '10.0.0.0/33'"):
        CombinedOptions(trusted_proxies=["10.0.0.0/33"])


def test_combined_without_trust_keeps_connecting_address():
    row = parse_one(XFF_TRAILING_LINE, trailing_fields=["http_x_forwarded_for"])
    assert row["client_ip"] == "10.0.0.1"
    assert row["forwarded_for"] == "198.51.100.1, ::ffff:203.0.113.2"


def test_combined_trusted_proxy_without_chain():
    row = parse_one('192.0.2.10 - - [01/Jan/2025:00:00:00 +0000] "GET / HTTP/1.1" 200 1 "-" "x"', trusted_proxy_count=1)
    assert row["client_ip"] == "192.0.2.10"
    assert row["extra"] == {}


# HTTP versions.


def test_combined_http2_without_minor_version():
    row = parse_one(
        '192.0.2.5 - - [30/Aug/2015:17:59:34 +1000] "GET /favicon.ico HTTP/2" 200 34066 "-" "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.10; rv:43.0) Gecko/20100101 Firefox/43.0"'
    )
    assert_fields(
        row,
        {
            "ts": datetime(2015, 8, 30, 7, 59, 34),
            "client_ip": "192.0.2.5",
            "method": "GET",
            "path": "/favicon.ico",
            "http_version": "HTTP/2",
            "status": 200,
            "bytes_sent": 34066,
            "malformed": False,
        },
    )


@pytest.mark.parametrize("version", ["HTTP/0.9", "HTTP/1.2", "HTTP/2.1", "HTTP/3.0"])
def test_combined_unusual_http_versions_kept(version):
    row = parse_one(f'192.0.2.5 - - [10/Oct/2023:10:22:50 +0200] "GET / {version}" 400 0 "-" "x"')
    assert row["http_version"] == version
    assert row["path"] == "/"


def test_combined_request_without_version_is_malformed():
    row = parse_one('192.0.2.5 - - [10/Oct/2023:10:22:50 +0200] "GET /etc/passwd" 400 0 "-" "x"')
    assert row["malformed"] is True
    assert row["extra"]["request_raw"] == "GET /etc/passwd"


# Request targets.


def test_combined_absolute_target_fills_scheme_and_host():
    row = parse_one('192.0.2.2 - - [08/Aug/2022:21:18:26 +0000] "GET http://www.example.com:80/ip4.php?a=1 HTTP/1.0" 400 255 "-" "-"')
    assert_fields(row, {"scheme": "http", "host": "www.example.com", "path": "/ip4.php", "query": "a=1"})
    assert row["extra"]["request_target"] == "http://www.example.com:80/ip4.php?a=1"


def test_combined_absolute_target_without_path():
    row = parse_one('192.0.2.2 - - [08/Aug/2022:21:18:26 +0000] "GET http://[2001:db8::1]:8080 HTTP/1.1" 400 0 "-" "-"')
    assert row["host"] == "2001:db8::1"
    assert row["path"] == "/"


def test_combined_connect_target_fills_host():
    row = parse_one('192.0.2.3 - - [24/Sep/2021:06:20:32 +0000] "CONNECT mail.example.com:25 HTTP/1.1" 400 166 "-" "-"')
    assert row["method"] == "CONNECT"
    assert row["host"] == "mail.example.com"
    assert row["path"] is None


def test_combined_target_with_space_splits():
    row = parse_one('192.0.2.3 - - [24/Sep/2021:06:20:32 +0000] "GET /a b?c=d e HTTP/1.1" 400 1 "-" "-"')
    assert row["path"] == "/a b"
    assert row["query"] == "c=d e"


def test_combined_empty_query_kept():
    row = parse_one('192.0.2.3 - - [24/Sep/2021:06:20:32 +0000] "GET /a? HTTP/1.1" 200 1 "-" "-"')
    assert row["path"] == "/a"
    assert row["query"] == ""


# Line variants.


def test_combined_common_format_has_no_referer():
    row = parse_one('172.17.0.1 - - [29/Sep/2021:12:37:05 +0000] "GET /start.php?lang=x HTTP/1.1" 404 196')
    assert row["referer"] is None
    assert row["user_agent"] is None
    assert row["status"] == 404
    assert row["extra"] == {}


def test_combined_remote_user_kept():
    row = parse_one('192.0.2.12 - user1 [27/Jun/2013:11:55:44 +0000] "GET /knocking/ HTTP/1.1" 200 266 "-" "x"')
    assert row["user"] == "user1"


def test_combined_vhost_with_port():
    row = parse_one('www.example.com:443 192.0.2.7 - - [25/Oct/2021:11:05:52 +0200] "GET / HTTP/1.1" 403 6963 "-" "x"')
    assert row["host"] == "www.example.com"
    assert row["client_ip"] == "192.0.2.7"
    assert row["extra"]["server_port"] == 443


def test_combined_vhost_before_ipv6_client():
    row = parse_one('www.example.com 2001:db8::9 - - [25/Oct/2021:11:05:52 +0200] "GET / HTTP/1.1" 403 1 "-" "x"')
    assert row["host"] == "www.example.com"
    assert row["client_ip"] == "2001:db8::9"


def test_combined_hostname_client_without_vhost():
    row = parse_one('monitoring-server - - [29/May/2017:19:02:48 +0000] "GET /status HTTP/1.1" 200 612 "-" "x"')
    assert row["client_ip"] == "monitoring-server"
    assert row["host"] is None


def test_combined_server_name_after_time():
    row = parse_one('192.0.2.66 - - - [31/Jan/2015:14:29:44 ] www.example.org "GET / HTTP/1.1" 200 814 "-" "x" + 293 1149 546')
    assert row["host"] == "www.example.org"
    assert row["ts"] == datetime(2015, 1, 31, 14, 29, 44)
    assert row["extra"]["extra_fields"] == ["+", "293", "1149", "546"]


def test_combined_request_id_before_user():
    row = parse_one('www.example.com 192.0.2.10 - 95386da81aa1 - [22/Oct/2025:14:31:58 +0000] "GET /health HTTP/1.1" 200 43 "-" "x"')
    assert row["client_ip"] == "192.0.2.10"
    assert row["host"] == "www.example.com"
    assert row["extra"]["ident"] == "- 95386da81aa1"


def test_combined_syslog_prefix():
    row = parse_one(
        'Sep 15 16:13:46 web-1.example.com nginx[2869]: 198.51.100.30 - - [15/Sep/2021:16:13:46 +0000] "POST /wp-login.php HTTP/1.1" 200 5364 "-" "x"'
    )
    assert row["client_ip"] == "198.51.100.30"
    assert row["method"] == "POST"
    assert row["extra"]["syslog_host"] == "web-1.example.com"
    assert row["extra"]["syslog_program"] == "nginx"


def test_combined_syslog_prefix_single_digit_day():
    row = parse_one('Mar  5 17:03:11 host nginx: 198.51.100.31 - - [05/Mar/2019:17:03:11 +0000] "GET / HTTP/1.1" 200 1 "-" "x"')
    assert row["client_ip"] == "198.51.100.31"


# Time zones.


def test_combined_local_time_uses_source_timezone():
    row = parse_one(
        '192.0.2.77 - - [05/Mar/2019:17:03:11] "POST /v1/login HTTP/1.1" 401 12 "-" "x"', timezone="America/Chicago"
    )
    assert row["ts"] == datetime(2019, 3, 5, 23, 3, 11)


def test_combined_local_time_uses_daylight_saving():
    row = parse_one(
        '192.0.2.77 - - [05/Jul/2019:17:03:11] "POST /v1/login HTTP/1.1" 401 12 "-" "x"', timezone="America/Chicago"
    )
    assert row["ts"] == datetime(2019, 7, 5, 22, 3, 11)


def test_combined_offset_wins_over_source_timezone():
    row = parse_one('192.0.2.77 - - [05/Mar/2019:17:03:11 +0100] "GET / HTTP/1.1" 200 1 "-" "x"', timezone="America/Chicago")
    assert row["ts"] == datetime(2019, 3, 5, 16, 3, 11)


def test_combined_fractional_seconds_kept():
    row = parse_one('192.0.2.77 - - [05/Mar/2019:17:03:11.250 +0000] "GET / HTTP/1.1" 200 1 "-" "x"')
    assert row["ts"] == datetime(2019, 3, 5, 17, 3, 11, 250000)


def test_combined_skipped_local_time_is_rejected():
    result = parse('192.0.2.77 - - [10/Mar/2019:02:30:00] "GET / HTTP/1.1" 200 1 "-" "x"', timezone="America/Chicago")
    assert result.events.height == 0
    assert result.rejects["reason"][0] == "local time 10/Mar/2019:02:30:00 does not exist in time zone America/Chicago"


def test_combined_invalid_date_is_rejected():
    result = parse('192.0.2.77 - - [31/Feb/2019:02:30:00 +0000] "GET / HTTP/1.1" 200 1 "-" "x"')
    assert result.events.height == 0
    assert result.rejects["reason"][0] == "invalid timestamp 31/Feb/2019:02:30:00 +0000"


# Rejects and bookkeeping.


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("# failJSON: { }", "comment line"),
        (
            '2021/09/30 09:23:53 [error] 1925#1925: *17 user "foo" was not found, client: 192.0.2.1, server: _',
            "nginx error-log entry, not an access-log line",
        ),
        (
            "[Thu Jun 27 11:55:44.569531 2013] [core:info] [pid 4101] [client 192.0.2.12:46652] AH00128: File does not exist",
            "Apache error-log entry, not an access-log line",
        ),
        (
            '192.0.2.1 - - "GET / HTTP/1.1" 200 1',
            "line does not match the combined format: missing [dd/Mon/yyyy:HH:MM:SS zone] timestamp",
        ),
        (
            "192.0.2.1 - - [01/Jan/2025:00:00:00 +0000] GET / 200 1",
            "line does not match the combined format: missing quoted request line after the timestamp",
        ),
        (
            '192.0.2.1 - - [01/Jan/2025:00:00:00 +0000] "GET / HTTP/1.1" - 1',
            "line does not match the combined format: missing status after the request line",
        ),
        (
            '192.0.2.1 - - [01/Jan/2025:00:00:00 +0000] "GET / HTTP/1.1" 200 x',
            "line does not match the combined format: missing response size after the status",
        ),
        (
            '[01/Jan/2025:00:00:00 +0000] "GET / HTTP/1.1" 200 1',
            "line does not match the combined format: missing client address before the timestamp",
        ),
    ],
)
def test_combined_reject_reasons(line, reason):
    result = parse(line)
    assert result.events.height == 0
    assert result.rejects["reason"].to_list() == [reason]
    assert result.rejects["line"].to_list() == [line]


def test_combined_every_offset_accounted_once():
    lines = [
        '192.0.2.1 - - [01/Jan/2025:00:00:00 +0000] "GET / HTTP/1.1" 200 1 "-" "x"',
        "not a log line",
        'Sep 15 16:13:46 host nginx[1]: 192.0.2.2 - - [01/Jan/2025:00:00:01 +0000] "GET / HTTP/1.1" 200 1 "-" "x"',
        r'192.0.2.3 - - [01/Jan/2025:00:00:02 +0000] "\x16\x03" 400 0 "-" "a\x22b"',
        "",
        '192.0.2.4 - - [31/Feb/2025:00:00:03 +0000] "GET / HTTP/1.1" 200 1 "-" "x"',
    ]
    frame = frame_from_lines(*lines)
    result = CombinedConnector().parse(frame)
    seen = result.events["offset"].to_list() + result.rejects["offset"].to_list()
    assert sorted(seen) == frame["offset"].to_list()
    assert len(set(seen)) == len(seen)
    assert result.events.height == 3
    assert result.rejects.height == 2


def test_combined_events_keep_input_order():
    lines = [
        'Sep 15 16:13:46 host nginx[1]: 192.0.2.2 - - [01/Jan/2025:00:00:01 +0000] "GET / HTTP/1.1" 200 1 "-" "x"',
        '192.0.2.1 - - [01/Jan/2025:00:00:00 +0000] "GET / HTTP/1.1" 200 1 "-" "x"',
        '"198.51.100.1, 192.0.2.5" 192.0.2.6 - - [01/Jan/2025:00:00:00 +0000] "GET / HTTP/1.1" 200 1 "-" "x\\"y"',
        '192.0.2.3 - - [01/Jan/2025:00:00:00 +0000] "GET / HTTP/1.1" 200 1 "-" "x"',
    ]
    result = parse(*lines)
    offsets = result.events["offset"].to_list()
    assert offsets == sorted(offsets)
    assert result.events["client_ip"].to_list() == ["192.0.2.2", "192.0.2.1", "198.51.100.1", "192.0.2.3"]


def test_combined_events_have_parsed_schema():
    result = parse('192.0.2.1 - - [01/Jan/2025:00:00:00 +0000] "GET / HTTP/1.1" 200 1 "-" "x"')
    assert result.events.schema == pl.Schema({**PARSED_COLUMNS, "offset": pl.Int64()})
    assert result.rejects.schema == pl.Schema(REJECT_SCHEMA)


def test_combined_empty_chunk():
    frame = pl.DataFrame(schema={"line": pl.String, "offset": pl.Int64})
    result = CombinedConnector().parse(frame)
    assert result.events.height == 0
    assert result.rejects.height == 0
    assert result.events.schema == pl.Schema({**PARSED_COLUMNS, "offset": pl.Int64()})


def test_combined_reads_crlf_file(tmp_path):
    path = tmp_path / "access.log"
    path.write_bytes(b'192.0.2.1 - - [01/Jan/2025:00:00:00 +0000] "GET / HTTP/1.1" 200 1 "-" "x"\r\n\r\n')
    row = event_rows(CombinedConnector().parse(frame_from_file(path)).events)[0]
    assert row["user_agent"] == "x"
    assert row["offset"] == 0


def test_combined_raw_invalid_bytes_in_file(tmp_path):
    path = tmp_path / "access.log"
    path.write_bytes(b'192.0.2.1 - - [01/Jan/2025:00:00:00 +0000] "GET /\xff HTTP/1.1" 200 1 "-" "x"\n')
    row = event_rows(CombinedConnector().parse(frame_from_bytes(path.read_bytes())).events)[0]
    assert row["path"] == r"/\xff"


# Options.


def test_combined_options_reject_unknown_timezone():
    with pytest.raises(ValidationError, match="unknown time zone 'Mars/Base'"):
        CombinedOptions(timezone="Mars/Base")


def test_combined_options_reject_reserved_name():
    with pytest.raises(ValidationError, match="reserved"):
        CombinedOptions(trailing_fields=["extra_fields"])


def test_combined_options_reject_duplicate_name():
    with pytest.raises(ValidationError, match="appears twice"):
        CombinedOptions(trailing_fields=["request_time", "request_time"])


def test_combined_options_reject_negative_proxy_count():
    with pytest.raises(ValidationError):
        CombinedOptions(trusted_proxy_count=-1)


def test_combined_options_reject_unknown_key():
    with pytest.raises(ValidationError):
        CombinedOptions(trailing_field=["request_time"])


# Registry.


@pytest.mark.parametrize(
    "name", ["combined", "nginx", "apache", "nginx_combined", "apache_combined", "common", "NGINX", "nginx-combined"]
)
def test_registry_combined_aliases(name):
    assert get_connector(name) is CombinedConnector


def test_registry_lists_builtins():
    names = connector_names()
    assert "combined" in names
    assert "nginx_json" in names
    assert "nginx" not in names


def test_registry_unknown_name_suggests():
    with pytest.raises(SourceError) as error:
        get_connector("ngnix")
    assert "unknown connector 'ngnix'" in error.value.message
    assert "did you mean 'nginx'?" in error.value.message
    assert "combined" in error.value.message


class PluginOptions(ConnectorOptions):
    marker: str = "x"


class PluginConnector(Connector):
    name = "plugin_format"
    aliases = ("plugin_alias",)
    options_model = PluginOptions

    def parse(self, lines: pl.DataFrame) -> ParseResult:
        raise NotImplementedError


class BrokenEntryPoint:
    name = "broken_format"
    value = "missing_package:Connector"

    def load(self):
        raise ImportError("No module named 'missing_package'")


@pytest.fixture
def fresh_registry(monkeypatch):
    monkeypatch.setattr(registry, "_loaded", False)
    monkeypatch.setattr(registry, "_connectors", {})
    monkeypatch.setattr(registry, "_names", {})
    monkeypatch.setattr(registry, "_plugin_errors", {})
    return monkeypatch


def test_registry_loads_entry_points(fresh_registry):
    plugin = SimpleNamespace(name="plugin-ep", value="tests:PluginConnector", load=lambda: PluginConnector)
    calls = []

    def fake_entry_points(group):
        calls.append(group)
        return [plugin]

    fresh_registry.setattr(registry, "entry_points", fake_entry_points)
    assert get_connector("plugin_format") is PluginConnector
    assert get_connector("plugin_alias") is PluginConnector
    assert get_connector("plugin-ep") is PluginConnector
    assert get_connector("combined") is CombinedConnector
    assert calls == ["gatewatch.connectors"]


def test_registry_reports_broken_plugin(fresh_registry):
    fresh_registry.setattr(registry, "entry_points", lambda group: [BrokenEntryPoint()])
    with pytest.raises(SourceError, match="failed to load: ImportError"):
        get_connector("broken_format")
    assert get_connector("apache") is CombinedConnector


def test_registry_rejects_name_clash(fresh_registry):
    fresh_registry.setattr(registry, "entry_points", lambda group: [])

    class Clash(PluginConnector):
        name = "nginx"

    connector_names()
    with pytest.raises(ValueError, match="already used by CombinedConnector"):
        registry.register_connector(Clash)


def test_combined_escaped_trailing_field_beside_plain_lines():
    # One line's trailing field contains a backslash escape, and the others do not.
    lines = [
        '192.0.2.1 - - [10/Oct/2024:13:55:36 +0000] "GET / HTTP/1.1" 200 5 "-" "curl/8" "\\x80\\x41" 0.005',
        '192.0.2.2 - - [10/Oct/2024:13:55:37 +0000] "GET / HTTP/1.1" 200 5 "-" "curl/8" "198.51.100.9" 0.010',
    ]
    result = parse(*lines, trailing_fields=["http_x_forwarded_for", "request_time"])
    assert result.rejects.height == 0
    rows = event_rows(result.events)
    assert rows[0]["forwarded_for"] == "\\x80A"
    assert rows[1]["forwarded_for"] == "198.51.100.9"
    assert rows[1]["duration_ms"] == 10.0
