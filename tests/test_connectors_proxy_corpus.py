"""Run the proxy and WAF connectors over third-party logs.

The logs live outside the repository, in ``shared/corpus`` next to the
checkout (real captures and the test fixtures of other log parsers). The
module is skipped when that directory is absent. Every line, or every
record of a multi-line format, must come out as an event or as a reject
with a reason.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import polars as pl
import pytest

from gatewatch.connectors.envoy import EnvoyConnector
from gatewatch.connectors.haproxy import HaproxyConnector
from gatewatch.connectors.kong import KongConnector
from gatewatch.connectors.modsecurity import ModsecurityConnector
from gatewatch.connectors.traefik import TraefikConnector
from linefeed import CORPUS as DEFAULT_CORPUS
from linefeed import event_rows, frame_from_file


def _find_corpus() -> Path:
    # A git worktree sits one level deeper than the main checkout.
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "shared" / "corpus"
        if candidate.is_dir():
            return candidate
    return DEFAULT_CORPUS


CORPUS = _find_corpus()

pytestmark = [
    pytest.mark.corpus,
    pytest.mark.skipif(not CORPUS.is_dir(), reason=f"corpus directory {CORPUS} not found"),
]

# Which connector reads each folder.
CONNECTORS = {
    "kong": KongConnector,
    "envoy_istio": EnvoyConnector,
    "traefik": TraefikConnector,
    "haproxy": HaproxyConnector,
    "modsecurity": ModsecurityConnector,
}

# Files that hold no access-log or audit-log record at all: every line is a
# reject with this reason.
NOT_ACCESS_LOGS = {
    "modsecurity/crowdsec_hub__caddy-coraza.log": "Coraza message in a Caddy log",
    "modsecurity/crowdsec_hub__caddy-crs-anomaly-score.log": "Coraza message in a Caddy log",
    "modsecurity/crowdsec_hub__modsecurity-logs-nginx.log": "nginx error-log entry (ModSecurity message)",
    "modsecurity/crowdsec_hub__modsecurity-nginx.log": "nginx error-log entry (ModSecurity message)",
    "modsecurity/crowdsec_hub__modsecurity-logs.log": "Apache error-log entry (ModSecurity message)",
    "modsecurity/crowdsec_hub__modsecurity.log": "Apache error-log entry (ModSecurity message)",
    "modsecurity/crowdsec_hub__openappsec.log": "JSON object is not a ModSecurity audit record",
}

# Rejected lines in the other files, with the reasons. Every other file has none.
EXPECTED_REJECTS = {
    "haproxy/crowdsec_hub__haproxy-logs.log": {
        "HAProxy connection message (such as an SSL handshake failure), not an HTTP request": 3
    },
    "haproxy/fail2ban__haproxy-http-auth.log": {"comment line": 4},
    "traefik/crowdsec_hub__traefik_json.log": {"Traefik application log line, not an access-log line": 1},
    "traefik/fail2ban__traefik-auth.log": {"comment line": 10},
    # Apache error-log lines, each after a "# failJSON" comment.
    "modsecurity/fail2ban__apache-modsecurity.log": {
        "comment line": 4,
        "Apache error-log entry (ModSecurity message), not an audit-log record; read the audit log instead": 4,
    },
}

# Records in the native multi-part files: one per A boundary.
NATIVE_RECORDS = {
    "modsecurity/modsecparser__modsec_audit_native.log": 295,
    "modsecurity/wafattack__modsec_audit_native.log": 4,
}


def corpus_files() -> list[str]:
    if not CORPUS.is_dir():
        return []
    return [
        f"{folder}/{path.name}"
        for folder in CONNECTORS
        if (CORPUS / folder).is_dir()
        for path in sorted((CORPUS / folder).iterdir())
        if not path.name.endswith(".labels.jsonl")
    ]


def parse_file(name: str):
    frame = frame_from_file(CORPUS / name)
    connector = CONNECTORS[name.split("/")[0]](fingerprint_key=b"corpus-test")
    return frame, connector.parse(frame)


def rows_by_offset(name: str) -> dict[int, dict]:
    _, result = parse_file(name)
    return {row["offset"]: row for row in event_rows(result.events)}


@pytest.mark.parametrize("name", corpus_files())
def test_every_record_accounted(name):
    frame, result = parse_file(name)
    seen = result.events["offset"].to_list() + result.rejects["offset"].to_list()
    assert len(seen) == len(set(seen)), "an offset appears twice"
    if name in NATIVE_RECORDS:
        assert len(seen) == NATIVE_RECORDS[name]
        starts = frame.filter(pl.col("line").str.contains(r"^--[0-9A-Za-z]+-A--\s*$"))["offset"].to_list()
        assert sorted(seen) == starts
    else:
        assert sorted(seen) == frame["offset"].to_list()
    assert result.rejects["reason"].null_count() == 0
    assert result.events["ts"].null_count() == 0


@pytest.mark.parametrize("name", corpus_files())
def test_expected_rejects(name):
    frame, result = parse_file(name)
    reasons = result.rejects["reason"].value_counts().rows()
    if name in NOT_ACCESS_LOGS:
        assert result.events.height == 0
        assert result.rejects.height == frame.height
        assert all(reason.startswith(NOT_ACCESS_LOGS[name]) for reason, _ in reasons), reasons
    else:
        assert dict(reasons) == EXPECTED_REJECTS.get(name, {})


def test_kong_doc_records():
    rows = list(rows_by_offset("kong/kong_docs__log-format_examples.jsonl").values())
    assert len(rows) == 2
    for row in rows:
        assert row["ts"] == datetime(2021, 2, 25, 5, 57, 48, 342000)
        assert row["client_ip"] == "192.168.144.1"
        assert row["method"] == "GET"
        assert row["path"] == "/log"
        assert row["status"] == 200
        assert row["bytes_sent"] == 827
        assert row["duration_ms"] == 515.0
        assert row["user"] == "foo"
        assert row["extra"]["upstream_uri"] == "/anything"
    assert rows[1]["extra"]["workspace_name"] == "default"


def test_istio_real_ingress_lines():
    # Real Istio ingress lines (the MANIFEST marks them as a real capture).
    rows = rows_by_offset("envoy_istio/kubefrog__istio_readme_examples.log")
    reset, denied, not_found = rows[0], rows[414], rows[780]
    assert reset["ts"] == datetime(2024, 6, 2, 13, 24, 57, 930000)
    assert reset["status"] == 0
    assert reset["extra"]["response_code_details"] == "http2.remote_reset"
    assert reset["client_ip"] == "192.168.0.24"
    assert reset["extra"]["client_port"] == 8459
    assert reset["http_version"] == "HTTP/2"
    assert denied["status"] == 302
    assert denied["extra"]["response_flags"] == "UAEX"
    assert denied["host"] == "kubeflow.kubefrog.fr"
    assert not_found["status"] == 404
    assert not_found["extra"]["response_flags"] == "NR"
    assert not_found["path"] == "/realms/kubeflow/protocol/openid-connect/auth"
    assert not_found["query"].startswith("approval_prompt=force&client_id=")


def test_istio_json_codec_error_line():
    rows = list(rows_by_offset("envoy_istio/elastic_integrations__istio_access-json-logs.log").values())
    assert rows[1]["client_ip"] == "2a02:cf40::4e36"
    assert rows[2]["malformed"] is True
    assert rows[2]["status"] == 400
    assert rows[2]["extra"]["response_code_details"] == "http1.codec_error"


def test_haproxy_ipv6_and_mapped_clients():
    rows = list(rows_by_offset("haproxy/fail2ban__haproxy-http-auth.log").values())
    assert [row["client_ip"] for row in rows] == ["192.168.33.1", "192.168.33.1", "2001:db8::1234", "192.168.33.1"]
    assert rows[3]["extra"]["client_ip_raw"] == "::ffff:192.168.33.1"
    assert rows[2]["extra"]["client_port"] == 58430


def test_traefik_clf_fields():
    rows = list(rows_by_offset("traefik/crowdsec_hub__traefik_clf.log").values())
    assert rows[5]["http_version"] == "HTTP/2"
    assert rows[5]["duration_ms"] == 42.0
    assert rows[6]["extra"]["router_name"] == "root@docker -> intermediate1@docker -> intermediate2@docker -> leaf@docker"
    assert rows[4]["status"] is None


def test_modsecurity_v2_json_capture():
    # ModSecurity 2.9 JSON audit records from DVWA attacks (a lab capture).
    _, result = parse_file("modsecurity/eyesofargus__modsec_audit_v2json.log")
    events = result.events
    assert events.height == 209
    assert events.filter(pl.col("waf_action") == "block").height == 38
    first = event_rows(events.head(1))[0]
    assert first["ts"] == datetime(2017, 5, 13, 12, 39, 31)
    assert first["client_ip"] == "192.168.75.130"
    assert first["path"] == "/dvwa/vulnerabilities/xss_r/"
    assert first["waf_action"] == "detect"
    assert first["waf_rule_id"] == "920350"
    assert first["attack_class"] == "protocol"
    [blocked] = event_rows(events.filter(pl.col("offset") == 5552))
    assert blocked["status"] == 403
    assert blocked["waf_action"] == "block"
    assert blocked["waf_rule_id"] == "949110,920350,941100,941110,941160,980130"
    assert blocked["attack_class"] == "xss"


def test_modsecurity_native_capture():
    rows = rows_by_offset("modsecurity/modsecparser__modsec_audit_native.log")
    first = rows[0]
    assert first["ts"] == datetime(2023, 6, 7, 21, 45, 31)
    assert first["client_ip"] == "192.168.45.191"
    assert first["host"] == "192.168.210.12"
    assert first["status"] == 200
    assert first["waf_action"] == "detect"
    assert first["extra"]["engine_mode"] == "DETECTION_ONLY"
    sqlmap = rows[317401]
    assert sqlmap["method"] == "POST"
    assert sqlmap["path"] == "/wp-admin/admin-ajax.php"
    assert sqlmap["user_agent"] == "sqlmap/1.5.10#stable (https://sqlmap.org)"
    assert sqlmap["waf_rule_id"].startswith("913100,920350,930100")
    assert "942100" in sqlmap["waf_rule_id"].split(",")
    assert sqlmap["attack_class"] == "scanner"


def test_modsecurity_native_blocks():
    rows = list(rows_by_offset("modsecurity/wafattack__modsec_audit_native.log").values())
    assert [row["waf_action"] for row in rows] == ["detect", "detect", "block", "block"]
    assert rows[2]["waf_rule_id"] == "949110,942100,980130"
    assert rows[2]["attack_class"] == "sqli"
    assert rows[0]["client_ip"] == "::1"
    assert rows[0]["ts"] == datetime(2020, 12, 11, 1, 45, 43)


def test_modsecurity_v3_duplicate_keys_file():
    rows = list(rows_by_offset("modsecurity/elastic_integrations__modsecurity_test-audit.log").values())
    assert [row["ts"] for row in rows] == [datetime(2022, 5, 10, 4, 52, 4), datetime(2022, 5, 9, 9, 41, 59)]
    assert rows[0]["status"] == 400
    assert rows[0]["waf_action"] == "allow"
    assert rows[1]["path"] == "/admin/controller/extension/extension/alfacgiapi"
