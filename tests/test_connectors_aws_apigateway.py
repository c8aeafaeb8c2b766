"""Tests of the aws_apigateway connector: API Gateway JSON access logs."""

from __future__ import annotations

import json
from datetime import datetime

import pytest
from pydantic import ValidationError

from gatewatch.connectors import get_connector
from gatewatch.connectors.aws_apigateway import AwsApiGatewayConnector, AwsApiGatewayOptions
from gatewatch.connectors.base import ParseResult
from linefeed import event_rows, frame_from_lines


def parse(*lines: str, **options) -> ParseResult:
    return AwsApiGatewayConnector(AwsApiGatewayOptions(**options), fingerprint_key=b"test key").parse(
        frame_from_lines(*lines)
    )


def parse_one(line: str, **options) -> dict:
    result = parse(line, **options)
    assert result.rejects.height == 0, result.rejects.to_dicts()
    [row] = event_rows(result.events)
    return row


# The console's JSON template for a REST API, filled in.
REST_LINE = (
    '{"requestId":"c6af9ac6-7b61-11e6-9a41-93e8deadbeef","ip":"198.51.100.7","caller":"-","user":"-",'
    '"requestTime":"05/Mar/2024:10:15:30 +0000","httpMethod":"POST","resourcePath":"/orders/{id}",'
    '"status":"429","protocol":"HTTP/1.1","responseLength":"58"}'
)

# An HTTP API template with the usual additions.
HTTP_API_LINE = json.dumps(
    {
        "requestId": "JxYvPjT0IAMEbCA=",
        "sourceIp": "2001:db8::44",
        "requestTimeEpoch": 1709633730123,
        "httpMethod": "GET",
        "routeKey": "GET /orders/{id}",
        "path": "/orders/17",
        "status": 200,
        "protocol": "HTTP/1.1",
        "responseLength": 812,
        "responseLatency": 37,
        "userAgent": "curl/8.5.0",
        "domainName": "api.example.com",
        "apiKey": "k-1234567890",
        "wafResponseCode": "WAF_BLOCK",
        "stage": "$default",
    }
)


def test_apigateway_rest_template():
    row = parse_one(REST_LINE)
    assert row["ts"] == datetime(2024, 3, 5, 10, 15, 30)
    assert row["client_ip"] == "198.51.100.7"
    assert row["method"] == "POST"
    assert row["status"] == 429
    assert row["bytes_sent"] == 58
    assert row["http_version"] == "HTTP/1.1"
    assert row["request_id"] == "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"
    assert row["user"] is None
    # resourcePath is a template, not the requested path.
    assert row["path"] is None
    assert row["extra"] == {"resourcePath": "/orders/{id}"}


def test_apigateway_http_api_template():
    row = parse_one(HTTP_API_LINE)
    assert row["ts"] == datetime(2024, 3, 5, 10, 15, 30, 123000)
    assert row["client_ip"] == "2001:db8::44"
    assert row["path"] == "/orders/17"
    assert row["duration_ms"] == 37.0
    assert row["user_agent"] == "curl/8.5.0"
    assert row["host"] == "api.example.com"
    assert row["waf_action"] == "block"
    assert row["credential_id"] is not None
    assert row["extra"] == {"routeKey": "GET /orders/{id}", "stage": "$default"}
    assert "k-1234567890" not in json.dumps(row, default=str)


def test_apigateway_fields_option_maps_custom_keys():
    line = '{"when":"2024-03-05T10:15:30.5Z","caller_ip":"203.0.113.4","line":"DELETE /v1/items/9?force=1 HTTP/1.1","code":"204","ua":"python-httpx/0.27","ip":"192.0.2.99"}'
    row = parse_one(
        line, fields={"when": "ts", "caller_ip": "client_ip", "line": "request", "code": "status", "ua": "user_agent"}
    )
    assert row["ts"] == datetime(2024, 3, 5, 10, 15, 30, 500000)
    # A mapped key comes before the default key of the same column.
    assert row["client_ip"] == "203.0.113.4"
    assert row["method"] == "DELETE"
    assert row["path"] == "/v1/items/9"
    assert row["query"] == "force=1"
    assert row["status"] == 204
    assert row["user_agent"] == "python-httpx/0.27"


def test_apigateway_fields_option_rejects_unknown_column():
    with pytest.raises(ValidationError, match="maps to unknown column 'latency'"):
        AwsApiGatewayOptions(fields={"lat": "latency"})


def test_apigateway_websocket_record():
    line = '{"requestId":"Iq9gwFDNoAMFo1A=","ip":"192.0.2.33","requestTime":"26/Jul/2023:12:20:46 +0000","eventType":"CONNECT","routeKey":"$connect","status":"500","connectionId":"Iq8gj1UmIAMCKpA="}'
    row = parse_one(line)
    assert row["status"] == 500
    assert row["method"] is None
    assert row["extra"]["eventType"] == "CONNECT"


def test_apigateway_rejects_with_reasons():
    result = parse('{"ip":"192.0.2.1","status":"200"}', REST_LINE.replace("05/Mar/2024", "35/Mar/2024"))
    assert result.rejects["reason"].to_list() == [
        "missing timestamp (requestTimeEpoch or requestTime)",
        "invalid timestamp 35/Mar/2024:10:15:30 +0000 in requestTimeEpoch or requestTime",
    ]


def test_apigateway_registered_name():
    assert get_connector("apigateway") is AwsApiGatewayConnector
