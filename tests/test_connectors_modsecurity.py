"""The modsecurity connector on hand-written audit-log records of all three formats."""

from __future__ import annotations

import base64
import json
from datetime import datetime

import polars as pl

from gatewatch.connectors import get_connector
from gatewatch.connectors._credential import fingerprint_values
from gatewatch.connectors.modsecurity import ModsecurityConnector, ModsecurityOptions
from gatewatch.ingest import ingest_source
from linefeed import event_rows, frame_from_bytes, frame_from_lines

KEY = b"test-key"

# A v3 record with repeated request and response headers, as libmodsecurity writes them.
V3_DUPLICATE_KEYS = (
    '{"transaction":{"client_ip":"203.0.113.77","time_stamp":"Tue May 10 04:52:04 2022","client_port":41836,'
    '"host_ip":"192.0.2.175","host_port":443,"unique_id":"165215832450.639870","request":{"method":"GET",'
    '"http_version":1.1,"uri":"/login.php?user=admin%27--","headers":{"Host":"shop.example.com","Cookie":"a=1",'
    '"Cookie":"b=2"}},"response":{"http_code":403,"headers":{"Server":"","Server":"","Set-Cookie":"x=1",'
    '"Set-Cookie":"y=2"}},"producer":{"modsecurity":"ModSecurity v3.0.4 (Linux)"},"messages":[{"message":'
    '"SQL Injection Attack Detected via libinjection","details":{"ruleId":"942100","data":'
    '"Matched Data: s&c found within ARGS:user","severity":"2"}}]}}'
)

SQLI_MESSAGE = (
    'Warning. detected SQLi using libinjection. [file "/crs/REQUEST-942-APPLICATION-ATTACK-SQLI.conf"] '
    '[line "65"] [id "942100"] [msg "SQL Injection Attack Detected via libinjection"] [severity "CRITICAL"] '
    '[tag "application-multi"] [tag "attack-sqli"] [tag "paranoia-level/1"]'
)
PROTOCOL_MESSAGE = (
    'Warning. Pattern match "^[\\\\d.:]+$" at REQUEST_HEADERS:Host. [id "920350"] '
    '[msg "Host header is a numeric IP address"] [severity "WARNING"] [tag "attack-protocol"]'
)
BLOCK_MESSAGE = (
    "Access denied with code 403 (phase 2). Operator GE matched 5 at TX:anomaly_score. "
    '[file "/crs/REQUEST-949-BLOCKING-EVALUATION.conf"] [id "949110"] '
    '[msg "Inbound Anomaly Score Exceeded (Total Score: 5)"] [tag "attack-generic"]'
)


def native_record(boundary: str, client: str = "198.51.100.30", blocked: bool = True, authorization: str = "") -> str:
    auth_line = f"Authorization: {authorization}\n" if authorization else ""
    messages = [PROTOCOL_MESSAGE, SQLI_MESSAGE] + ([BLOCK_MESSAGE] if blocked else [])
    trailer = "".join(f"Message: {message}\n" for message in messages)
    action = "Action: Intercepted (phase 2)\n" if blocked else ""
    status = "403 Forbidden" if blocked else "200 OK"
    return (
        f"--{boundary}-A--\n"
        f"[10/Dec/2020:19:45:43 --0600] X9LPRyNq0dIo78hhAV4ugQAAAAE {client} 41630 192.0.2.80 80\n"
        f"--{boundary}-B--\n"
        "GET /dvwa/sqli/?id=%27+or+1%3D1 HTTP/1.1\n"
        "Host: 192.0.2.80\n"
        "User-Agent: sqlmap/1.7\n"
        f"{auth_line}"
        "Referer: http://192.0.2.80/dvwa/\n"
        "\n"
        f"--{boundary}-F--\n"
        f"HTTP/1.1 {status}\n"
        "Content-Type: text/html\n"
        "\n"
        f"--{boundary}-E--\n"
        "<html>{\"json-looking\": \"body line\"}</html>\n"
        "\n"
        f"--{boundary}-H--\n"
        f"{trailer}"
        "Apache-Error: [file \"apache2_util.c\"] duplicate of the messages above\n"
        f"{action}"
        "Producer: ModSecurity for Apache/2.9.3 (http://www.modsecurity.org/); OWASP_CRS/3.3.0.\n"
        "Server: Apache/2.4.46 (Debian)\n"
        'Engine-Mode: "ENABLED"\n'
        "\n"
        f"--{boundary}-Z--\n"
        "\n"
    )


def v2_record(**changes) -> dict:
    base = {
        "transaction": {
            "time": "13/May/2017:08:39:31 --0400",
            "transaction_id": "WRb@g38AAQEAAAkVV38AAAAA",
            "remote_address": "192.0.2.130",
            "remote_port": 46150,
            "local_address": "192.0.2.136",
            "local_port": 80,
        },
        "request": {
            "request_line": "GET /dvwa/xss_r/?name=%3Cscript%3E HTTP/1.1",
            "headers": {"Host": "app.example.com", "User-Agent": "Mozilla/5.0", "authorization": "Bearer v2-secret"},
        },
        "response": {"protocol": "HTTP/1.1", "status": 403, "headers": {}},
        "audit_data": {
            "messages": [
                PROTOCOL_MESSAGE,
                'Warning. detected XSS using libinjection. [id "941100"] [msg "XSS Attack Detected via libinjection"] '
                '[tag "attack-xss"]',
                "Warning. Operator GE matched 5 at TX:anomaly_score. [id \"949110\"] "
                '[msg "Inbound Anomaly Score Exceeded (Total Score: 10)"] [tag "attack-generic"]',
            ],
            "action": {"intercepted": True, "phase": 2, "message": "Operator GE matched 5 at TX:anomaly_score."},
            "producer": ["ModSecurity for Apache/2.9.1 (http://www.modsecurity.org/)", "OWASP_CRS/3.0.0"],
            "server": "Apache/2.4.18 (Ubuntu)",
            "engine_mode": "ENABLED",
        },
    }
    base.update(changes)
    return base


def parse_text(text: str, **options):
    connector = ModsecurityConnector(ModsecurityOptions(**options), fingerprint_key=KEY)
    return connector.parse(frame_from_bytes(text.encode()))


def one_event(text: str, **options) -> dict:
    result = parse_text(text, **options)
    assert result.rejects.height == 0, result.rejects.to_dicts()
    [row] = event_rows(result.events)
    return row


def fingerprint(value: str) -> str:
    return fingerprint_values(pl.Series([value]), KEY)[0]


def test_modsecurity_registered():
    assert get_connector("modsecurity") is ModsecurityConnector
    assert get_connector("modsec") is ModsecurityConnector


def test_v3_duplicate_keys():
    row = one_event(V3_DUPLICATE_KEYS + "\n")
    assert row["ts"] == datetime(2022, 5, 10, 4, 52, 4)
    assert row["client_ip"] == "203.0.113.77"
    assert row["extra"]["client_port"] == 41836
    assert row["method"] == "GET"
    assert row["path"] == "/login.php"
    assert row["query"] == "user=admin%27--"
    assert row["host"] == "shop.example.com"
    assert row["http_version"] == "HTTP/1.1"
    assert row["status"] == 403
    assert row["waf_rule_id"] == "942100"
    assert row["waf_message"] == "SQL Injection Attack Detected via libinjection"
    assert row["waf_action"] == "detect"
    assert row["request_id"] == "165215832450.639870"
    assert row["extra"]["audit_format"] == "v3_json"


def test_v3_ctime_in_source_timezone():
    # ctime pads a one-digit day with a space; the time is server-local.
    line = V3_DUPLICATE_KEYS.replace("Tue May 10 04:52:04 2022", "Mon May  9 09:41:59 2022")
    row = one_event(line + "\n", timezone="America/Chicago")
    assert row["ts"] == datetime(2022, 5, 9, 14, 41, 59)


def test_v3_anomaly_block_with_tags():
    document = json.loads(V3_DUPLICATE_KEYS.replace('"Cookie":"a=1",', "").replace('"Server":"",', ""))
    document["transaction"]["messages"] = [
        {"message": "SQL Injection Attack Detected via libinjection",
         "details": {"ruleId": "942100", "tags": ["application-multi", "attack-sqli"]}},
        {"message": "Inbound Anomaly Score Exceeded (Total Score: 5)",
         "details": {"ruleId": "949110", "tags": ["attack-generic"]}},
    ]
    row = one_event(json.dumps(document) + "\n")
    assert row["waf_action"] == "block"
    assert row["waf_rule_id"] == "949110,942100"
    assert row["waf_message"] == "Inbound Anomaly Score Exceeded (Total Score: 5) | SQL Injection Attack Detected via libinjection"
    assert row["attack_class"] == "sqli"


def test_v2_json_record():
    row = one_event(json.dumps(v2_record()) + "\n")
    assert row["ts"] == datetime(2017, 5, 13, 12, 39, 31)
    assert row["client_ip"] == "192.0.2.130"
    assert row["extra"]["client_port"] == 46150
    assert row["method"] == "GET"
    assert row["path"] == "/dvwa/xss_r/"
    assert row["query"] == "name=%3Cscript%3E"
    assert row["host"] == "app.example.com"
    assert row["status"] == 403
    assert row["waf_action"] == "block"
    assert row["waf_rule_id"] == "949110,920350,941100"
    # The protocol anomaly comes with most attacks, so the XSS class wins.
    assert row["attack_class"] == "xss"
    assert row["extra"]["attack_classes"] == ["xss", "protocol"]
    assert row["extra"]["audit_format"] == "v2_json"
    assert row["credential_id"] == fingerprint("v2-secret")
    assert "v2-secret" not in json.dumps(row, default=str)


def test_v2_detection_only():
    record = v2_record(response={"protocol": "HTTP/1.1", "status": 200})
    del record["audit_data"]["action"]
    row = one_event(json.dumps(record) + "\n")
    assert row["waf_action"] == "detect"
    assert row["waf_rule_id"] == "920350,941100,949110"


def test_native_blocked_record():
    token = base64.b64encode(b"admin:hunter2").decode()
    row = one_event(native_record("1b61cc27", authorization=f"Basic {token}"))
    assert row["ts"] == datetime(2020, 12, 11, 1, 45, 43)
    assert row["client_ip"] == "198.51.100.30"
    assert row["extra"]["client_port"] == 41630
    assert row["extra"]["server_ip"] == "192.0.2.80"
    assert row["method"] == "GET"
    assert row["path"] == "/dvwa/sqli/"
    assert row["query"] == "id=%27+or+1%3D1"
    assert row["host"] == "192.0.2.80"
    assert row["user_agent"] == "sqlmap/1.7"
    assert row["referer"] == "http://192.0.2.80/dvwa/"
    assert row["status"] == 403
    assert row["waf_action"] == "block"
    assert row["waf_rule_id"] == "949110,920350,942100"
    assert row["attack_class"] == "sqli"
    assert row["user"] == "admin"
    assert row["credential_id"] == fingerprint(token)
    assert row["request_id"] == "X9LPRyNq0dIo78hhAV4ugQAAAAE"
    assert row["extra"]["engine_mode"] == "ENABLED"
    assert row["offset"] == 0
    assert token not in json.dumps(row, default=str)


def test_native_ipv6_client_detect_only():
    row = one_event(native_record("ab12cd34", client="::1", blocked=False))
    assert row["client_ip"] == "::1"
    assert row["status"] == 200
    assert row["waf_action"] == "detect"
    assert row["waf_rule_id"] == "920350,942100"


def test_native_records_and_json_lines_mixed():
    text = native_record("aaaa0001") + V3_DUPLICATE_KEYS + "\n" + native_record("aaaa0002", blocked=False)
    result = parse_text(text)
    assert result.rejects.height == 0
    rows = event_rows(result.events)
    second_offset = len(native_record("aaaa0001"))
    third_offset = second_offset + len(V3_DUPLICATE_KEYS) + 1
    assert [row["offset"] for row in rows] == [0, second_offset, third_offset]
    assert [row["extra"]["audit_format"] for row in rows] == ["native", "v3_json", "native"]


def test_incomplete_native_record_rejected_without_secrets():
    cut = native_record("bbbb0001", authorization="Bearer cut-secret").split("--bbbb0001-H--")[0]
    result = parse_text(cut + native_record("bbbb0002"))
    assert result.events.height == 1
    [reject] = result.rejects.to_dicts()
    assert reject["offset"] == 0
    assert reject["reason"] == "ModSecurity audit record incomplete: no -Z- boundary before the next record"
    assert "Authorization: [redacted]" in reject["line"]
    assert "cut-secret" not in reject["line"]


def test_other_lines_rejected_with_reason():
    result = parse_text(
        "# comment\n"
        "[Mon Dec 23 13:12:31 2013] [error] [client 192.0.2.1] ModSecurity: Access denied [id \"960015\"]\n"
        "2021/11/18 08:34:27 [info] 86596#86596: *1083 ModSecurity: Warning. [id \"930110\"]\n"
        '{"level":"warn","logger":"http.handlers.waf","msg":"Coraza: Warning"}\n'
        '{"eventName":"Web Request"}\n'
        "--cccc0001-H--\n"
        '{"transaction":{"time_stamp":"not a time","request":{"uri":"/"}}}\n'
    )
    assert result.events.height == 0
    assert result.rejects["reason"].to_list() == [
        "comment line",
        "Apache error-log entry (ModSecurity message), not an audit-log record; read the audit log instead",
        "nginx error-log entry (ModSecurity message), not an audit-log record; read the audit log instead",
        "Coraza message in a Caddy log, not an audit-log record; read Coraza's audit log instead",
        "JSON object is not a ModSecurity audit record (no transaction with request data)",
        "audit-log part boundary outside a record (no A part before it)",
        "invalid timestamp not a time",
    ]


def test_trusted_proxies_in_audit_log():
    record = native_record("dddd0001", client="10.0.0.7").replace(
        "User-Agent: sqlmap/1.7\n", "User-Agent: sqlmap/1.7\nX-Forwarded-For: 203.0.113.99\n"
    )
    row = one_event(record, trusted_proxies=["10.0.0.0/8"])
    assert row["client_ip"] == "203.0.113.99"
    assert row["forwarded_for"] == "203.0.113.99"


def test_native_record_split_by_ingest(store, tmp_path):
    records = [native_record(f"eeee000{index}", blocked=index % 2 == 0) for index in range(4)]
    (tmp_path / "modsec_audit.log").write_text("".join(records))
    connector = ModsecurityConnector(fingerprint_key=KEY)
    # 200-byte reads split every record across several chunks.
    ingest_source(store, "waf", "modsecurity", connector, [str(tmp_path / "modsec_audit.log")], 200)
    rows = store.con.execute('SELECT "offset", waf_action FROM events ORDER BY "offset"').fetchall()
    offsets = [sum(len(record) for record in records[:index]) for index in range(4)]
    assert rows == list(zip(offsets, ["block", "detect", "block", "detect"]))
    assert store.con.execute("SELECT count(*) FROM rejects").fetchone()[0] == 0


def test_frame_lines_one_record_per_parse():
    # parse() works on lines as ingest gives them: blank lines dropped.
    frame = frame_from_lines(*native_record("ffff0001").splitlines())
    result = ModsecurityConnector().parse(frame)
    assert result.events.height == 1
    assert result.rejects.height == 0
