"""Tests of the aws_waf connector: AWS WAF web ACL logs."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime

import pytest

from gatewatch.connectors import get_connector
from gatewatch.connectors.aws_waf import AwsWafConnector, AwsWafOptions
from gatewatch.connectors.base import ParseResult
from linefeed import event_rows, frame_from_bytes, frame_from_lines

KEY = b"test key"


def parse(*lines: str, **options) -> ParseResult:
    return AwsWafConnector(AwsWafOptions(**options), fingerprint_key=KEY).parse(frame_from_lines(*lines))


def parse_one(line: str, **options) -> dict:
    result = parse(line, **options)
    assert result.rejects.height == 0, result.rejects.to_dicts()
    [row] = event_rows(result.events)
    return row


def fingerprint(value: str) -> str:
    return hmac.new(KEY, value.encode(), hashlib.sha256).hexdigest()[:24]


def waf_record(**changes) -> str:
    record = {
        "timestamp": 1709633730123,
        "formatVersion": 1,
        "webaclId": "arn:aws:wafv2:eu-west-1:111122223333:regional/webacl/api-acl/0000",
        "terminatingRuleId": "AWS-AWSManagedRulesSQLiRuleSet",
        "terminatingRuleType": "MANAGED_RULE_GROUP",
        "action": "BLOCK",
        "terminatingRuleMatchDetails": [
            {"conditionType": "SQL_INJECTION", "location": "QUERY_STRING", "matchedData": ["1", "OR", "1"]}
        ],
        "httpSourceName": "ALB",
        "httpSourceId": "111122223333-app/api-lb/0123",
        "ruleGroupList": [
            {
                "ruleGroupId": "AWS#AWSManagedRulesSQLiRuleSet",
                "terminatingRule": {"ruleId": "SQLi_QUERYARGUMENTS", "action": "BLOCK"},
                "nonTerminatingMatchingRules": [],
            }
        ],
        "rateBasedRuleList": [],
        "nonTerminatingMatchingRules": [],
        "responseCodeSent": 403,
        "httpRequest": {
            "clientIp": "203.0.113.77",
            "country": "nl",
            "headers": [
                {"name": "Host", "value": "api.example.com"},
                {"name": "User-Agent", "value": "sqlmap/1.8"},
                {"name": "Authorization", "value": "Bearer s3cr3t-token"},
                {"name": "X-Api-Key", "value": "key-123"},
                {"name": "Cookie", "value": "session=abc"},
                {"name": "X-Forwarded-For", "value": "192.0.2.200, 198.51.100.9"},
                {"name": "Accept", "value": "*/*"},
            ],
            "uri": "/v1/items",
            "args": "id=1%20OR%201=1",
            "httpVersion": "HTTP/1.1",
            "httpMethod": "GET",
            "requestId": "1-65e6f0a2-0123456789abcdef",
            "ja3Fingerprint": "0123456789abcdef0123456789abcdef",
        },
        "labels": [{"name": "awswaf:managed:aws:sql-database:SQLi_QueryArguments"}],
    }
    record.update(changes)
    return json.dumps(record)


def test_waf_blocked_sqli_record():
    row = parse_one(waf_record())
    assert row["ts"] == datetime(2024, 3, 5, 10, 15, 30, 123000)
    assert row["client_ip"] == "203.0.113.77"
    assert row["country"] == "NL"
    assert row["method"] == "GET"
    assert row["host"] == "api.example.com"
    assert row["path"] == "/v1/items"
    assert row["query"] == "id=1%20OR%201=1"
    assert row["http_version"] == "HTTP/1.1"
    assert row["user_agent"] == "sqlmap/1.8"
    assert row["forwarded_for"] == "192.0.2.200, 198.51.100.9"
    assert row["request_id"] == "1-65e6f0a2-0123456789abcdef"
    assert row["status"] == 403
    assert row["waf_action"] == "block"
    assert row["waf_rule_id"] == "AWS-AWSManagedRulesSQLiRuleSet"
    assert row["waf_message"] == "SQL_INJECTION in QUERY_STRING"
    assert row["attack_class"] == "sqli"


def test_waf_credentials_fingerprinted_not_stored():
    result = parse(waf_record())
    [row] = event_rows(result.events)
    assert row["credential_id"] == fingerprint("s3cr3t-token")
    stored = result.events.write_json()
    for secret in ("s3cr3t-token", "key-123", "session=abc"):
        assert secret not in stored, secret


def test_waf_api_key_when_no_authorization():
    record = json.loads(waf_record())
    record["httpRequest"]["headers"] = [{"name": "x-api-key", "value": "key-123"}]
    row = parse_one(json.dumps(record))
    assert row["credential_id"] == fingerprint("key-123")


def test_waf_extra_keeps_unmapped_members():
    extra = parse_one(waf_record())["extra"]
    assert extra["headers"] == [{"name": "Accept", "value": "*/*"}]
    assert extra["httpRequest"] == {"ja3Fingerprint": "0123456789abcdef0123456789abcdef"}
    assert extra["ruleGroupList"][0]["terminatingRule"]["ruleId"] == "SQLi_QUERYARGUMENTS"
    assert extra["webaclId"].endswith("webacl/api-acl/0000")
    assert extra["labels"] == [{"name": "awswaf:managed:aws:sql-database:SQLi_QueryArguments"}]
    assert "timestamp" not in extra
    assert "action" not in extra


def test_waf_allowed_with_count_match():
    record = waf_record(
        action="ALLOW",
        terminatingRuleId="Default_Action",
        terminatingRuleType="REGULAR",
        terminatingRuleMatchDetails=[],
        ruleGroupList=[],
        responseCodeSent=None,
        nonTerminatingMatchingRules=[
            {"ruleId": "xss-watch", "action": "COUNT", "ruleMatchDetails": [{"conditionType": "XSS", "location": "BODY"}]}
        ],
        labels=[],
    )
    row = parse_one(record)
    assert row["waf_action"] == "allow"
    assert row["waf_rule_id"] == "Default_Action"
    assert row["status"] is None
    assert row["attack_class"] == "xss"
    assert row["waf_message"] is None


def test_waf_terminating_rule_decides_attack_class():
    record = json.loads(waf_record())
    record["terminatingRuleMatchDetails"] = [{"conditionType": "XSS", "location": "HEADER"}]
    record["nonTerminatingMatchingRules"] = [{"ruleId": "SQLi_BODY", "action": "COUNT"}]
    assert parse_one(json.dumps(record))["attack_class"] == "xss"


def test_waf_iso_timestamp_and_partial_record():
    line = '{"timestamp":"2024-03-20T10:30:00.250Z","action":"BLOCK","terminatingRuleId":"AWS-AWSManagedRulesBotControlRuleSet","httpRequest":{"clientIp":"2001:db8::9"}}'
    row = parse_one(line)
    assert row["ts"] == datetime(2024, 3, 20, 10, 30, 0, 250000)
    assert row["client_ip"] == "2001:db8::9"
    assert row["attack_class"] == "bot"
    assert row["path"] is None


def test_waf_literal_null_request_id_and_empty_args():
    record = json.loads(waf_record())
    record["httpRequest"]["requestId"] = "null"
    record["httpRequest"]["args"] = ""
    row = parse_one(json.dumps(record))
    assert row["request_id"] is None
    assert row["query"] is None


def test_waf_trusted_proxies_pick_forwarded_client():
    row = parse_one(waf_record(), trusted_proxies=["203.0.113.0/24", "198.51.100.0/24"])
    assert row["client_ip"] == "192.0.2.200"
    assert row["extra"]["remote_addr"] == "203.0.113.77"


def test_waf_rejects_with_reasons():
    result = parse('{"timestamp": 1709633730123, "action": "BLOCK"', "[1, 2]", '{"action":"BLOCK"}', waf_record())
    assert result.events.height == 1
    assert result.rejects["reason"].to_list() == [
        "invalid JSON: the object is cut short or malformed",
        "line is a JSON array, not an object",
        "missing timestamp (timestamp)",
    ]


def test_waf_registered_name():
    assert get_connector("aws-waf") is AwsWafConnector


def test_waf_property_never_drops_lines():
    hypothesis = pytest.importorskip("hypothesis")
    strategies = pytest.importorskip("hypothesis.strategies")

    # Any JSON value in the members the connector reads, and raw bytes lines.
    scalars = strategies.none() | strategies.booleans() | strategies.integers() | strategies.text(max_size=40)
    values = strategies.recursive(
        scalars, lambda children: strategies.lists(children, max_size=4) | strategies.dictionaries(
            strategies.text(max_size=8), children, max_size=4
        ), max_leaves=12
    )
    members = ("timestamp", "action", "terminatingRuleId", "labels", "ruleGroupList", "terminatingRuleMatchDetails")

    @hypothesis.settings(max_examples=60, deadline=None)
    @hypothesis.given(
        record=strategies.fixed_dictionaries({}, optional={name: values for name in members}),
        request=values,
        raw=strategies.binary(max_size=200),
    )
    def check(record: dict, request, raw: bytes) -> None:
        record["httpRequest"] = request
        data = json.dumps(record).encode() + b"\n" + raw.replace(b"\n", b" ") + b"\n"
        frame = frame_from_bytes(data)
        result = AwsWafConnector().parse(frame)
        offsets = sorted(result.events["offset"].to_list() + result.rejects["offset"].to_list())
        assert offsets == frame["offset"].to_list()
        assert result.rejects["reason"].null_count() == 0

    check()


def test_waf_lone_surrogate_escape_kept():
    # json.dumps writes "\ud800" for a lone surrogate, which strict JSON
    # readers reject; the record must still be an event.
    record = json.loads(waf_record())
    record["httpRequest"]["headers"].append({"name": "X-Probe", "value": "a\ud800b"})
    line = json.dumps(record)
    assert "\\ud800" in line
    row = parse_one(line)
    assert row["client_ip"] == "203.0.113.77"
    assert {"name": "X-Probe", "value": "a\ufffdb"} in row["extra"]["headers"]
