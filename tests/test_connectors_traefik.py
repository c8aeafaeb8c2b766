"""The traefik connector on hand-written Traefik access-log lines."""

from __future__ import annotations

import json
from datetime import datetime

from gatewatch.connectors import get_connector
from gatewatch.connectors.traefik import TraefikConnector, TraefikOptions
from linefeed import event_rows, frame_from_lines

CLF = (
    '192.0.2.10 - alice [08/Dec/2021:09:16:05 +0100] "GET /api/items?page=2 HTTP/1.1" 200 414 '
    '"https://app.example.com/" "curl/8.5.0" 500 "api@docker" "http://10.0.0.3:80" 42ms'
)


def document(**changes) -> dict:
    base = {
        "ClientAddr": "[2001:db8::9]:39490",
        "ClientHost": "2001:db8::9",
        "ClientPort": "39490",
        "ClientUsername": "-",
        "DownstreamContentSize": 356,
        "DownstreamStatus": 404,
        "Duration": 215563,
        "OriginStatus": 404,
        "RequestContentSize": 12,
        "RequestCount": 113,
        "RequestHost": "shop.example.com",
        "RequestMethod": "POST",
        "RequestPath": "/cart?item=9",
        "RequestProtocol": "HTTP/2.0",
        "RequestScheme": "https",
        "RouterName": "shop@docker",
        "ServiceURL": {"Scheme": "http", "Host": "10.0.0.3:80"},
        "StartUTC": "2021-12-08T14:02:43.464763557Z",
        "entryPointName": "websecure",
        "request_User-Agent": "Nikto",
        "request_Authorization": "Bearer abc.def",
        "request_Cookie": "session=s3cr3t",
        "request_X-Request-Id": "rid-1",
        "time": "2021-12-08T14:02:43Z",
    }
    base.update(changes)
    return base


def parse(*lines: str, **options):
    return TraefikConnector(TraefikOptions(**options), fingerprint_key=b"test-key").parse(frame_from_lines(*lines))


def one_event(line: str, **options) -> dict:
    result = parse(line, **options)
    assert result.rejects.height == 0, result.rejects.to_dicts()
    [row] = event_rows(result.events)
    return row


def test_traefik_registered():
    assert get_connector("traefik") is TraefikConnector


def test_common_format_with_traefik_fields():
    row = one_event(CLF)
    assert row["ts"] == datetime(2021, 12, 8, 8, 16, 5)
    assert row["client_ip"] == "192.0.2.10"
    assert row["user"] == "alice"
    assert row["method"] == "GET"
    assert row["path"] == "/api/items"
    assert row["query"] == "page=2"
    assert row["status"] == 200
    assert row["bytes_sent"] == 414
    assert row["referer"] == "https://app.example.com/"
    assert row["user_agent"] == "curl/8.5.0"
    assert row["duration_ms"] == 42.0
    assert row["extra"]["request_count"] == 500
    assert row["extra"]["router_name"] == "api@docker"
    assert row["extra"]["backend_url"] == "http://10.0.0.3:80"


def test_common_format_dash_status_and_router_chain():
    row = one_event(
        '192.0.2.11 - - [28/Sep/2022:13:38:04 +0000] "GET /x HTTP/3.0" - - "-" "Nikto" 45640 '
        '"root@docker -> leaf@docker" "-" 0ms'
    )
    # HTTP/3.0 is read as written; a "-" status is null.
    assert row["http_version"] == "HTTP/3.0"
    assert row["status"] is None
    assert row["bytes_sent"] is None
    assert row["extra"]["router_name"] == "root@docker -> leaf@docker"
    assert "backend_url" not in row["extra"]


def test_escaped_quote_in_user_agent():
    row = one_event(CLF.replace('"curl/8.5.0"', '"Tab 10\\" Build"'))
    assert row["user_agent"] == 'Tab 10" Build'


def test_json_access_log():
    row = one_event(json.dumps(document()))
    assert row["ts"] == datetime(2021, 12, 8, 14, 2, 43, 464763)
    assert row["client_ip"] == "2001:db8::9"
    assert row["method"] == "POST"
    assert row["scheme"] == "https"
    assert row["host"] == "shop.example.com"
    assert row["path"] == "/cart"
    assert row["query"] == "item=9"
    assert row["http_version"] == "HTTP/2.0"
    assert row["status"] == 404
    assert row["bytes_sent"] == 356
    assert row["bytes_received"] == 12
    assert abs(row["duration_ms"] - 0.215563) < 1e-9
    assert row["user_agent"] == "Nikto"
    assert row["request_id"] == "rid-1"
    assert row["user"] is None
    assert row["extra"]["RouterName"] == "shop@docker"
    assert row["extra"]["RequestCount"] == 113
    assert row["extra"]["ServiceURL"] == {"Scheme": "http", "Host": "10.0.0.3:80"}


def test_json_credentials_never_stored():
    row = one_event(json.dumps(document()))
    assert row["credential_id"] is not None
    text = json.dumps(row, default=str)
    assert "abc.def" not in text
    assert "s3cr3t" not in text


def test_json_with_spaces_and_local_start():
    line = json.dumps(document(StartUTC=None, StartLocal="2021-12-08T15:02:43.5+01:00"), indent=None, separators=(", ", ": "))
    row = one_event(line)
    assert row["ts"] == datetime(2021, 12, 8, 14, 2, 43, 500000)


def test_traefik1_request_line():
    row = one_event(json.dumps(document(RequestMethod=None, RequestPath=None, RequestLine="GET /old HTTP/1.1")))
    assert row["method"] == "GET"
    assert row["path"] == "/old"


def test_rejects_name_the_reason():
    result = parse(
        "# comment",
        "DEBUG: some plugin message",
        '192.0.2.10 - - [08/Dec/2021:09:16:05 +0100] "GET / HTTP/1.1" 200 414 "-" "-"',
        json.dumps(document(StartUTC=None, time=None)),
    )
    assert result.events.height == 0
    assert result.rejects["reason"].to_list() == [
        "comment line",
        "Traefik application log line, not an access-log line",
        "line does not match the Traefik common log format: missing request count, router name, backend URL "
        "or duration (ms) after the user agent",
        "missing time (StartUTC, StartLocal or time)",
    ]
