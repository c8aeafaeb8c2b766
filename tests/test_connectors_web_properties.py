"""Property tests: hostile field values never crash the nginx and Apache connectors or lose a line.

Lines of the combined format (with and without a virtual host and trailing
fields) and nginx JSON lines are built from random field values: quotes,
backslashes, spaces, bytes that are not UTF-8 and very long runs. Every line
must come out as an event or as a reject with a reason.
"""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from gatewatch.connectors.combined import CombinedConnector, CombinedOptions
from gatewatch.connectors.nginx_json import NginxJsonConnector
from test_connectors_proxy_properties import FIELD, SETTINGS, assert_lines_accounted


@SETTINGS
@given(client=FIELD, user=FIELD, request=FIELD, referer=FIELD, user_agent=FIELD, trailing=FIELD)
def test_combined_random_fields(client, user, request, referer, user_agent, trailing):
    user = user.replace(" ", "") or "-"
    lines = [
        f'{client or "-"} - {user} [10/Oct/2024:13:55:36 +0000] "{request}" 200 2326 "{referer}" "{user_agent}"',
        f'www.example.com:443 192.0.2.1 - - [10/Oct/2024:13:55:36 +0200] "{request}" 404 - "-" "{user_agent}" {trailing}',
        f'192.0.2.1 - - [10/Oct/2024:13:55:36 +0000] "{request}" 200 5 "-" "{user_agent}" "{trailing}" 0.005',
        f"{request}",
    ]
    assert_lines_accounted(CombinedConnector(), lines)
    named = CombinedConnector(CombinedOptions(trailing_fields=["http_x_forwarded_for", "request_time"]))
    assert_lines_accounted(named, lines)


@SETTINGS
@given(request=FIELD, user_agent=FIELD, address=FIELD, status=st.sampled_from(["200", "-", "x", ""]))
def test_nginx_json_random_fields(request, user_agent, address, status):
    valid = json.dumps(
        {"time_iso8601": "2024-10-10T13:55:36+00:00", "remote_addr": address, "request": request,
         "status": status, "http_user_agent": user_agent}
    )
    lines = [
        valid,
        # nginx without escape=json writes \xHH and raw quotes: not valid JSON.
        f'{{"time_iso8601":"2024-10-10T13:55:36+00:00","remote_addr":"{address}","request":"{request}",'
        f'"status":"{status}","http_user_agent":"{user_agent}"}}',
        f"{{{request}",
    ]
    assert_lines_accounted(NginxJsonConnector(), lines)
