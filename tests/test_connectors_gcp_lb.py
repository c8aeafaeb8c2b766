"""Tests of the gcp_lb connector: Google Cloud HTTP(S) Load Balancer request logs."""

from __future__ import annotations

import json
from datetime import datetime

from gatewatch.connectors import get_connector
from gatewatch.connectors.base import ParseResult
from gatewatch.connectors.gcp_lb import GcpLbConnector, GcpLbOptions
from linefeed import event_rows, frame_from_lines


def parse(*lines: str, **options) -> ParseResult:
    return GcpLbConnector(GcpLbOptions(**options)).parse(frame_from_lines(*lines))


def parse_one(line: str, **options) -> dict:
    result = parse(line, **options)
    assert result.rejects.height == 0, result.rejects.to_dicts()
    [row] = event_rows(result.events)
    return row


def log_entry(**changes) -> str:
    entry = {
        "insertId": "1q2w3e4r",
        "jsonPayload": {
            "@type": "type.googleapis.com/google.cloud.loadbalancing.type.LoadBalancerLogEntry",
            "statusDetails": "denied_by_security_policy",
            "enforcedSecurityPolicy": {
                "name": "edge-policy",
                "priority": 1000,
                "configuredAction": "DENY",
                "outcome": "DENY",
                "preconfiguredExprIds": ["owasp-crs-v030301-id942110-sqli"],
            },
        },
        "httpRequest": {
            "requestMethod": "GET",
            "requestUrl": "https://api.example.com/v1/items?id=1%27%20OR%201=1",
            "requestSize": "312",
            "status": 403,
            "responseSize": "210",
            "userAgent": "sqlmap/1.8",
            "remoteIp": "203.0.113.9:50412",
            "serverIp": "10.1.2.3",
            "latency": "0.002134s",
            "protocol": "HTTP/1.1",
        },
        "resource": {"type": "http_load_balancer", "labels": {"project_id": "demo"}},
        "timestamp": "2024-06-01T12:00:00.123456789Z",
        "severity": "WARNING",
        "logName": "projects/demo/logs/requests",
        "trace": "projects/demo/traces/0af7651916cd43dd8448eb211c80319c",
    }
    entry.update(changes)
    return json.dumps(entry)


def test_gcp_lb_denied_request():
    row = parse_one(log_entry())
    assert row["ts"] == datetime(2024, 6, 1, 12, 0, 0, 123456)
    assert row["client_ip"] == "203.0.113.9"
    assert row["method"] == "GET"
    assert row["scheme"] == "https"
    assert row["host"] == "api.example.com"
    assert row["path"] == "/v1/items"
    assert row["query"] == "id=1%27%20OR%201=1"
    assert row["status"] == 403
    assert row["bytes_received"] == 312
    assert row["bytes_sent"] == 210
    assert row["duration_ms"] == 2.134
    assert row["http_version"] == "HTTP/1.1"
    assert row["request_id"] == "projects/demo/traces/0af7651916cd43dd8448eb211c80319c"
    assert row["waf_action"] == "block"
    assert row["waf_rule_id"] == "owasp-crs-v030301-id942110-sqli"
    assert row["waf_message"] == "Cloud Armor policy edge-policy rule priority 1000: denied_by_security_policy"
    assert row["attack_class"] == "sqli"
    extra = row["extra"]
    assert extra["httpRequest"] == {"serverIp": "10.1.2.3"}
    assert extra["jsonPayload"]["enforcedSecurityPolicy"]["name"] == "edge-policy"
    assert extra["insertId"] == "1q2w3e4r"
    assert "timestamp" not in extra


def test_gcp_lb_request_without_policy():
    entry = json.loads(log_entry())
    entry["jsonPayload"] = {"statusDetails": "response_sent_by_backend"}
    entry["httpRequest"]["remoteIp"] = "2001:db8::77"
    entry["httpRequest"]["status"] = 200
    del entry["trace"]
    row = parse_one(json.dumps(entry))
    assert row["client_ip"] == "2001:db8::77"
    assert row["waf_action"] is None
    assert row["waf_rule_id"] is None
    assert row["attack_class"] is None
    assert row["request_id"] == "1q2w3e4r"


def test_gcp_lb_bracketed_ipv6_with_port():
    entry = json.loads(log_entry())
    entry["httpRequest"]["remoteIp"] = "[2001:db8::5]:443"
    assert parse_one(json.dumps(entry))["client_ip"] == "2001:db8::5"


def test_gcp_lb_rejects_missing_timestamp():
    entry = json.loads(log_entry())
    del entry["timestamp"]
    result = parse(json.dumps(entry))
    assert result.rejects["reason"].to_list() == ["missing timestamp (timestamp)"]


def test_gcp_lb_registered_name():
    assert get_connector("gcp_http_lb") is GcpLbConnector
