"""The kong connector on hand-written Kong file-log records."""

from __future__ import annotations

import base64
import json
from datetime import datetime

from gatewatch.connectors import get_connector
from gatewatch.connectors._credential import fingerprint_values
from gatewatch.connectors.kong import KongConnector, KongOptions
from linefeed import event_rows, frame_from_lines

import polars as pl

KEY = b"test-key"


def record(**changes) -> dict:
    base = {
        "request": {
            "method": "POST",
            "uri": "/v1/orders?limit=5",
            "url": "https://api.example.com:8443/v1/orders?limit=5",
            "size": 310,
            "querystring": {"limit": "5"},
            "headers": {
                "host": "api.example.com:8443",
                "user-agent": "okhttp/4.12.0",
                "x-forwarded-for": "198.51.100.23",
                "authorization": "Bearer tok-123",
            },
        },
        "response": {"status": 201, "size": 934, "headers": {"x-kong-request-id": "req-77"}},
        "latencies": {"request": 48, "kong": 3, "proxy": 45},
        "route": {"id": "route-1", "name": "orders"},
        "service": {"id": "svc-1", "name": "orders-svc", "host": "orders.internal"},
        "consumer": {"id": "cons-1", "username": "acme-mobile"},
        "client_ip": "203.0.113.50",
        "started_at": 1709287200123,
        "upstream_uri": "/orders?limit=5",
    }
    base.update(changes)
    return base


def parse(*records: dict | str, **options):
    lines = [item if isinstance(item, str) else json.dumps(item) for item in records]
    return KongConnector(KongOptions(**options), fingerprint_key=KEY).parse(frame_from_lines(*lines))


def one_event(item: dict | str, **options) -> dict:
    result = parse(item, **options)
    assert result.rejects.height == 0, result.rejects.to_dicts()
    [row] = event_rows(result.events)
    return row


def fingerprint(value: str) -> str:
    return fingerprint_values(pl.Series([value]), KEY)[0]


def test_kong_registered():
    assert get_connector("kong") is KongConnector


def test_kong_record_columns():
    row = one_event(record())
    assert row["ts"] == datetime(2024, 3, 1, 10, 0, 0, 123000)
    assert row["client_ip"] == "203.0.113.50"
    assert row["method"] == "POST"
    assert row["scheme"] == "https"
    assert row["host"] == "api.example.com"
    assert row["path"] == "/v1/orders"
    assert row["query"] == "limit=5"
    assert row["status"] == 201
    assert row["bytes_sent"] == 934
    assert row["bytes_received"] == 310
    assert row["duration_ms"] == 48.0
    assert row["user_agent"] == "okhttp/4.12.0"
    assert row["forwarded_for"] == "198.51.100.23"
    assert row["user"] == "acme-mobile"
    assert row["request_id"] == "req-77"
    assert row["credential_id"] == fingerprint("tok-123")
    assert row["extra"]["route_name"] == "orders"
    assert row["extra"]["service_name"] == "orders-svc"
    assert row["extra"]["consumer_id"] == "cons-1"
    assert row["extra"]["latency_kong_ms"] == 3.0
    assert row["extra"]["upstream_uri"] == "/orders?limit=5"


def test_raw_credentials_never_stored():
    row = one_event(record())
    assert "tok-123" not in json.dumps(row, default=str)


def test_apikey_header_and_query_parameter():
    with_header = record()
    with_header["request"]["headers"] = {"apikey": "key-abc"}
    in_query = record()
    in_query["request"]["headers"] = {}
    in_query["request"]["uri"] = "/v1/orders?apikey=key-abc&limit=5"
    in_query["request"]["url"] = "http://api.example.com/v1/orders?apikey=key-abc&limit=5"
    header_row, query_row = event_rows(parse(with_header, in_query).events)
    assert header_row["credential_id"] == fingerprint("key-abc")
    assert query_row["credential_id"] == fingerprint("key-abc")
    assert query_row["query"] == "apikey=REDACTED&limit=5"
    assert "key-abc" not in json.dumps(query_row, default=str)


def test_basic_auth_user_without_consumer():
    item = record(consumer=None)
    token = base64.b64encode(b"alice:s3cret").decode()
    item["request"]["headers"]["authorization"] = f"Basic {token}"
    row = one_event(item)
    assert row["user"] == "alice"
    assert row["credential_id"] == fingerprint(token)


def test_custom_key_names():
    item = record()
    item["request"]["headers"] = {"x-api-key": "k-9"}
    row = one_event(item, key_names=["X-API-Key"])
    assert row["credential_id"] == fingerprint("k-9")


def test_repeated_header_as_array():
    # Kong logs a repeated header as a JSON array.
    item = record()
    item["request"]["headers"]["user-agent"] = ["a/1", "b/2"]
    row = one_event(item)
    assert row["user_agent"] == '["a/1","b/2"]'
    assert row["status"] == 201


def test_ipv6_client():
    row = one_event(record(client_ip="2001:db8::17"))
    assert row["client_ip"] == "2001:db8::17"


def test_trusted_proxies_pick_forwarded_client():
    row = one_event(record(client_ip="10.1.2.3"), trusted_proxies=["10.0.0.0/8"])
    assert row["client_ip"] == "198.51.100.23"
    assert row["extra"]["remote_addr"] == "10.1.2.3"


def test_rejects_name_the_reason():
    result = parse("plain text", record(started_at=None), record(started_at="not a time"))
    assert result.events.height == 0
    assert result.rejects["reason"].to_list() == [
        "line is not a JSON object",
        "missing started_at",
        "invalid timestamp not a time",
    ]
