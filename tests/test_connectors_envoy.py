"""The envoy connector on hand-written Envoy and Istio access-log lines."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from gatewatch.connectors import get_connector
from gatewatch.connectors.envoy import EnvoyConnector, EnvoyOptions
from linefeed import event_rows, frame_from_lines

ENVOY_DEFAULT = (
    '[2024-03-01T10:00:00.123Z] "GET /v1/users?id=7 HTTP/1.1" 200 - 0 512 12 10 "198.51.100.7" '
    '"curl/8.5.0" "c0ffee00-0000-4000-8000-000000000001" "api.example.com" "10.0.0.9:8080"'
)
ISTIO_DEFAULT = (
    '[2024-03-01T10:00:01.500Z] "POST /login HTTP/2" 401 - via_upstream - "-" 57 19 3 2 "-" "python-requests/2.31" '
    '"c0ffee00-0000-4000-8000-000000000002" "shop.example.com" "10.0.0.8:9080" outbound|9080||shop.default.svc '
    "10.0.0.2:40000 10.0.0.3:9080 [2001:db8::42]:51000 shop.example.com default"
)


def parse(*lines: str, **options):
    return EnvoyConnector(EnvoyOptions(**options), fingerprint_key=b"test-key").parse(frame_from_lines(*lines))


def one_event(line: str, **options) -> dict:
    result = parse(line, **options)
    assert result.rejects.height == 0, result.rejects.to_dicts()
    [row] = event_rows(result.events)
    return row


def test_envoy_registered():
    assert get_connector("envoy") is EnvoyConnector
    assert get_connector("istio") is EnvoyConnector


def test_envoy_default_text_format():
    row = one_event(ENVOY_DEFAULT)
    assert row["ts"] == datetime(2024, 3, 1, 10, 0, 0, 123000)
    assert row["method"] == "GET"
    assert row["path"] == "/v1/users"
    assert row["query"] == "id=7"
    assert row["http_version"] == "HTTP/1.1"
    assert row["status"] == 200
    assert row["bytes_received"] == 0
    assert row["bytes_sent"] == 512
    assert row["duration_ms"] == 12.0
    assert row["forwarded_for"] == "198.51.100.7"
    assert row["user_agent"] == "curl/8.5.0"
    assert row["request_id"] == "c0ffee00-0000-4000-8000-000000000001"
    assert row["host"] == "api.example.com"
    assert row["extra"]["upstream_host"] == "10.0.0.9:8080"
    assert row["extra"]["upstream_service_time"] == "10"
    # Envoy's default format has no downstream address.
    assert row["client_ip"] is None
    assert row["malformed"] is False


def test_istio_text_format():
    row = one_event(ISTIO_DEFAULT)
    assert row["client_ip"] == "2001:db8::42"
    assert row["extra"]["client_port"] == 51000
    assert row["http_version"] == "HTTP/2"
    assert row["status"] == 401
    assert row["bytes_received"] == 57
    assert row["extra"]["response_code_details"] == "via_upstream"
    assert row["extra"]["upstream_cluster"] == "outbound|9080||shop.default.svc"
    assert row["extra"]["route_name"] == "default"
    assert row["extra"]["requested_server_name"] == "shop.example.com"
    assert "response_flags" not in row["extra"]


def test_protocol_dash_is_not_malformed():
    row = one_event(
        '[2022-06-22T10:17:14.118Z] "GET /status/418 -" 503 UH no_healthy_upstream - "-" 0 19 1 - "-" "curl/8.5.0" '
        '"id-1" "httpbin:8000" "-" outbound|8000||httpbin - 10.0.0.1:8000 192.0.2.6:44690 - default'
    )
    assert row["method"] == "GET"
    assert row["path"] == "/status/418"
    assert row["http_version"] is None
    assert row["malformed"] is False
    assert row["extra"]["response_flags"] == "UH"
    assert row["client_ip"] == "192.0.2.6"


def test_text_codec_error_is_malformed_event():
    row = one_event(
        '[2022-09-01T09:36:33.553Z] "- - HTTP/1.1" 400 DPE http1.codec_error - "-" 0 11 0 - "-" "-" "-" "-" "-" '
        "- - 10.0.0.1:8080 203.0.113.60:51643 - -"
    )
    assert row["malformed"] is True
    assert row["method"] is None
    assert row["path"] is None
    assert row["status"] == 400
    assert row["client_ip"] == "203.0.113.60"
    assert row["extra"]["request_raw"] == "- - HTTP/1.1"
    assert row["extra"]["response_flags"] == "DPE"


def test_quote_in_user_agent():
    line = ENVOY_DEFAULT.replace('"curl/8.5.0"', '"Mozilla "quoted" agent"')
    row = one_event(line)
    assert row["user_agent"] == 'Mozilla "quoted" agent'
    assert row["request_id"] == "c0ffee00-0000-4000-8000-000000000001"


def test_istio_json_codec_error():
    line = json.dumps(
        {
            "authority": "-",
            "bytes_received": 0,
            "bytes_sent": 11,
            "downstream_remote_address": "192.0.2.60:51643",
            "duration": 46,
            "method": "-",
            "path": "-",
            "protocol": "HTTP/1.1",
            "request_id": "-",
            "response_code": 400,
            "response_code_details": "http1.codec_error",
            "response_flags": "DPE",
            "start_time": "2022-09-01T09:36:33.553Z",
            "upstream_cluster": None,
            "user_agent": "-",
        }
    )

    row = one_event(line)

    assert row["malformed"] is True
    assert row["method"] is None
    assert row["path"] is None
    assert row["host"] is None
    assert row["status"] == 400
    assert row["client_ip"] == "192.0.2.60"
    assert row["extra"]["response_code_details"] == "http1.codec_error"
    assert row["extra"]["response_flags"] == "DPE"
    # Null members and the members that a column contains are left out.
    assert "upstream_cluster" not in row["extra"]
    assert "method" not in row["extra"]


def test_envoy_gateway_json_in_cri_wrapper():
    document = {
        ":authority": "www.example.com",
        "bytes_sent": 120,
        "downstream_remote_address": "[2001:db8::5]:59292",
        "method": "GET",
        "protocol": "HTTP/2",
        "response_code": 200,
        "start_time": "2025-12-31T16:37:40.479Z",
        "user-agent": "Mozilla/5.0",
        "x-envoy-origin-path": "/assets/a.webp?v=2",
        "x-forwarded-for": "2001:db8::5",
        "x-request-id": "r-1",
        "route_name": "httproute/app",
    }
    row = one_event("2025-12-31T17:37:40.493035218+01:00 stdout F " + json.dumps(document))
    assert row["ts"] == datetime(2025, 12, 31, 16, 37, 40, 479000)
    assert row["client_ip"] == "2001:db8::5"
    assert row["host"] == "www.example.com"
    assert row["path"] == "/assets/a.webp"
    assert row["query"] == "v=2"
    assert row["user_agent"] == "Mozilla/5.0"
    assert row["request_id"] == "r-1"
    assert row["extra"]["cri"] is True
    assert row["extra"]["route_name"] == "httproute/app"


def test_json_authorization_fingerprinted():
    document = {
        "start_time": "2024-03-01T10:00:00Z",
        "method": "GET",
        "path": "/",
        "response_code": 200,
        "authorization": "Bearer secret-token-1",
        "downstream_remote_address": "192.0.2.1:1000",
    }
    row = one_event(json.dumps(document))
    assert row["credential_id"] is not None
    assert "secret-token-1" not in json.dumps(row, default=str)


def test_fields_option_maps_other_keys():
    document = {"ts": "2024-03-01T10:00:00Z", "verb": "PUT", "path": "/x", "response_code": 204}
    row = one_event(json.dumps(document), fields={"time": "ts", "method": "verb"})
    assert row["method"] == "PUT"
    assert row["ts"] == datetime(2024, 3, 1, 10, 0, 0)


def test_trusted_proxies_use_forwarded_for():
    line = ISTIO_DEFAULT.replace('"-" "python-requests/2.31"', '"203.0.113.77, 2001:db8::42" "python-requests/2.31"')
    row = one_event(line, trusted_proxies=["2001:db8::/32"])
    assert row["client_ip"] == "203.0.113.77"
    assert row["extra"]["remote_addr"] == "2001:db8::42"


def test_rejects_name_the_reason():
    result = parse(
        "not an access log line",
        '{"method":"GET","path":"/"}',
        ENVOY_DEFAULT.replace("2024-03-01T10:00:00.123Z", "yesterday"),
    )
    assert result.events.height == 0
    assert result.rejects["reason"].to_list() == [
        "line does not match the Envoy/Istio text access-log format and is not a JSON object",
        "missing start time",
        "invalid timestamp yesterday",
    ]


def test_unknown_fields_role_rejected():
    with pytest.raises(ValueError, match="unknown role"):
        EnvoyOptions(fields={"nonsense": "x"})
