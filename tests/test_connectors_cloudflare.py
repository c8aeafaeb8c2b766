"""Tests of the cloudflare connector: Logpush http_requests and firewall_events."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from gatewatch.connectors import get_connector
from gatewatch.connectors.base import ParseResult
from gatewatch.connectors.cloudflare import CloudflareConnector, CloudflareOptions
from linefeed import event_rows, frame_from_lines


def parse(*lines: str, **options) -> ParseResult:
    return CloudflareConnector(CloudflareOptions(**options), fingerprint_key=b"test key").parse(
        frame_from_lines(*lines)
    )


def parse_one(line: str, **options) -> dict:
    result = parse(line, **options)
    assert result.rejects.height == 0, result.rejects.to_dicts()
    [row] = event_rows(result.events)
    return row


CASE_PREFIX = (
    '{"ClientIP":"198.51.100.12","ClientRequestMethod":"POST","ClientRequestURI":"/v1/login?next=%2Fhome",'
    '"EdgeResponseStatus":401,"EdgeStartTimestamp":'
)


@pytest.mark.parametrize(
    "timestamp",
    ['"2023-09-11T10:00:00Z"', "1694426400", "1694426400000000000", '"1694426400"', '"1694426400000000000"'],
)
def test_cloudflare_timestamp_encodings_case(timestamp):
    row = parse_one(CASE_PREFIX + timestamp + "}")
    assert row["ts"] == datetime(2023, 9, 11, 10, 0, 0)
    assert row["client_ip"] == "198.51.100.12"
    assert row["method"] == "POST"
    assert row["path"] == "/v1/login"
    assert row["query"] == "next=%2Fhome"
    assert row["status"] == 401


def test_cloudflare_timestamp_keeps_fraction():
    row = parse_one(CASE_PREFIX + "1694426400123456789}")
    assert row["ts"] == datetime(2023, 9, 11, 10, 0, 0, 123456)


def http_request(**changes) -> str:
    record = {
        "ClientIP": "2001:db8::45",
        "ClientSrcPort": 50344,
        "ClientRequestMethod": "GET",
        "ClientRequestScheme": "https",
        "ClientRequestHost": "api.example.com",
        "ClientRequestURI": "/v2/users?id=7",
        "ClientRequestPath": "/v2/users",
        "ClientRequestProtocol": "HTTP/2",
        "ClientRequestUserAgent": "okhttp/4.12.0",
        "ClientRequestReferer": "https://app.example.com/",
        "ClientRequestBytes": 820,
        "EdgeResponseBytes": 1532,
        "EdgeResponseStatus": 200,
        "EdgeStartTimestamp": "2024-02-01T08:30:00.5Z",
        "EdgeEndTimestamp": "2024-02-01T08:30:00.6Z",
        "RayID": "85f0a1b2c3d4e5f6",
        "ClientCountry": "de",
        "ClientASN": 64496,
        "SecurityAction": "managedChallenge",
        "SecurityRuleID": "a1b2c3",
        "SecurityRuleDescription": "Challenge scrapers",
        "WAFAttackScore": 12,
        "WAFSQLiAttackScore": 80,
        "WAFXSSAttackScore": 9,
        "WAFRCEAttackScore": 60,
        "BotScore": 2,
        "RequestHeaders": {"authorization": "Bearer tok-42", "x-client-version": "3.1"},
    }
    record.update(changes)
    return json.dumps(record)


def test_cloudflare_http_request_record():
    row = parse_one(http_request())
    assert row["ts"] == datetime(2024, 2, 1, 8, 30, 0, 500000)
    assert row["client_ip"] == "2001:db8::45"
    assert row["scheme"] == "https"
    assert row["host"] == "api.example.com"
    assert row["path"] == "/v2/users"
    assert row["query"] == "id=7"
    assert row["http_version"] == "HTTP/2"
    assert row["user_agent"] == "okhttp/4.12.0"
    assert row["referer"] == "https://app.example.com/"
    assert row["bytes_received"] == 820
    assert row["bytes_sent"] == 1532
    assert row["request_id"] == "85f0a1b2c3d4e5f6"
    assert row["country"] == "DE"
    assert row["asn"] == 64496
    assert row["waf_action"] == "managedchallenge"
    assert row["waf_rule_id"] == "a1b2c3"
    assert row["waf_message"] == "Challenge scrapers"
    assert row["attack_class"] == "xss"
    assert row["credential_id"] is not None
    extra = row["extra"]
    assert extra["ClientSrcPort"] == 50344
    assert extra["BotScore"] == 2
    assert extra["RequestHeaders"] == {"x-client-version": "3.1"}
    assert "tok-42" not in json.dumps(extra)


def test_cloudflare_unknown_waf_values_are_null():
    row = parse_one(http_request(SecurityAction="unknown", SecurityRuleID="", WAFXSSAttackScore=90))
    assert row["waf_action"] is None
    assert row["waf_rule_id"] is None
    assert row["attack_class"] is None


def test_cloudflare_firewall_event():
    line = json.dumps(
        {
            "Action": "block",
            "ClientIP": "203.0.113.50",
            "ClientRequestHost": "shop.example.com",
            "ClientRequestMethod": "GET",
            "ClientRequestPath": "/wp-login.php",
            "ClientRequestQuery": "?redirect_to=%2F",
            "ClientRequestProtocol": "HTTP/1.1",
            "ClientRequestScheme": "https",
            "ClientRequestUserAgent": "Mozilla/5.0",
            "ClientCountry": "us",
            "ClientASN": 64500,
            "Datetime": 1717243200,
            "Description": "Block login floods",
            "EdgeResponseStatus": 403,
            "Kind": "firewall",
            "RayID": "8a1b2c3d4e5f6a7b",
            "RuleID": "f00dbabe",
            "Source": "ratelimit",
        }
    )
    row = parse_one(line)
    assert row["ts"] == datetime(2024, 6, 1, 12, 0, 0)
    assert row["path"] == "/wp-login.php"
    assert row["query"] == "redirect_to=%2F"
    assert row["waf_action"] == "block"
    assert row["waf_rule_id"] == "f00dbabe"
    assert row["waf_message"] == "Block login floods"
    assert row["attack_class"] == "rate_limit"
    assert row["extra"] == {"Kind": "firewall", "Source": "ratelimit"}


def test_cloudflare_rejects_with_reasons():
    result = parse('{"ClientIP":"192.0.2.1"}', '{"ClientIP":"192.0.2.1","EdgeStartTimestamp":"soon"}', "plain text")
    assert result.events.height == 0
    assert result.rejects["reason"].to_list() == [
        "missing timestamp (EdgeStartTimestamp or Datetime)",
        "invalid timestamp soon in EdgeStartTimestamp or Datetime",
        "invalid JSON: the line is not a JSON object",
    ]


def test_cloudflare_registered_names():
    assert get_connector("cloudflare_logpush") is CloudflareConnector
    assert get_connector("cloudflare-firewall-events") is CloudflareConnector


def test_cloudflare_time_without_offset_uses_timezone():
    line = '{"ClientIP":"192.0.2.5","Datetime":"2022-05-10 06:36:57","EdgeResponseStatus":403}'
    assert parse_one(line)["ts"] == datetime(2022, 5, 10, 6, 36, 57)
    assert parse_one(line, timezone="Asia/Kolkata")["ts"] == datetime(2022, 5, 10, 1, 6, 57)
