"""Property tests: hostile field values never crash the proxy connectors or lose a line.

Each test builds lines of one text format from random field values
(quotes, backslashes, spaces, bytes that are not UTF-8, very long values)
and checks that every line, or every record, comes out as an event or a
reject with a reason.
"""

from __future__ import annotations

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gatewatch.connectors.envoy import EnvoyConnector
from gatewatch.connectors.haproxy import HaproxyConnector
from gatewatch.connectors.modsecurity import ModsecurityConnector
from gatewatch.connectors.traefik import TraefikConnector
from linefeed import frame_from_bytes

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Field text: printable characters, quotes, backslashes, braces, a few raw
# bytes that are not UTF-8, and now and then a very long run.
_PIECES = st.one_of(
    st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r"), max_size=12),
    st.sampled_from(['"', "\\", '\\"', "{", "}", "[", "]", "|", " ", "-", ":", "::ffff:", "%00"]),
    st.binary(min_size=1, max_size=4).map(lambda data: data.decode("latin-1")),
    st.just("A" * 5000),
)
FIELD = st.lists(_PIECES, max_size=6).map("".join)


def encode(text: str) -> bytes:
    # A line made only of characters below 256 is written as Latin-1, so the
    # random bytes reach the file as they are and the line may not be UTF-8.
    if all(ord(character) < 256 for character in text):
        return text.encode("latin-1")
    return text.encode("utf-8", "surrogatepass")


def assert_lines_accounted(connector, lines: list[str]) -> None:
    data = b"".join(encode(line) + b"\n" for line in lines)
    frame = frame_from_bytes(data)
    result = connector.parse(frame)
    seen = result.events["offset"].to_list() + result.rejects["offset"].to_list()
    assert sorted(seen) == frame["offset"].to_list()
    assert result.rejects["reason"].null_count() == 0


@SETTINGS
@given(client=FIELD, frontend=FIELD, request=FIELD, headers=FIELD, status=st.sampled_from(["200", "-1", "x", ""]))
def test_haproxy_random_fields(client, frontend, request, headers, status):
    lines = [
        f"Nov 14 22:45:11 lb1 haproxy[760]: {client}:1234 [14/Nov/2015:22:45:11.608] {frontend} be/srv "
        f'0/0/1/2/3 {status} 10 - - ---- 1/1/1/1/0 0/0 {{{headers}}} "{request}"',
        f"{client} [14/Nov/2015:22:45:11.608] {request}",
    ]
    assert_lines_accounted(HaproxyConnector(), lines)


@SETTINGS
@given(request=FIELD, user_agent=FIELD, authority=FIELD, trailing=FIELD, flags=FIELD)
def test_envoy_random_fields(request, user_agent, authority, trailing, flags):
    lines = [
        f'[2024-03-01T10:00:00.123Z] "{request}" 200 {flags or "-"} 0 512 12 10 "-" "{user_agent}" "id" '
        f'"{authority}" "-" {trailing}',
        f'{{"start_time":"2024-03-01T10:00:00Z","method":"{request}","path":{user_agent!r}}}',
    ]
    assert_lines_accounted(EnvoyConnector(), lines)


@SETTINGS
@given(request=FIELD, user_agent=FIELD, router=FIELD, user=FIELD)
def test_traefik_random_fields(request, user_agent, router, user):
    user = user.replace(" ", "") or "-"
    lines = [
        f'192.0.2.1 - {user} [08/Dec/2021:09:16:05 +0000] "{request}" 200 10 "-" "{user_agent}" 5 "{router}" "-" 3ms',
        f'{{"StartUTC":"2021-12-08T14:02:43Z","RequestPath":"{request}","request_User-Agent":"{user_agent}"}}',
    ]
    assert_lines_accounted(TraefikConnector(), lines)


@SETTINGS
@given(request=FIELD, header=FIELD, message=FIELD, body=FIELD, cut=st.booleans())
def test_modsecurity_random_records(request, header, message, body, cut):
    record = [
        "--abcd1234-A--",
        "[10/Dec/2020:19:45:43 --0600] uid 192.0.2.1 41630 192.0.2.2 80",
        "--abcd1234-B--",
        request,
        f"Host: {header}",
        f"Authorization: {header}",
        "--abcd1234-E--",
        body,
        "--abcd1234-H--",
        f"Message: {message}",
    ]
    if not cut:
        record.append("--abcd1234-Z--")
    lines = record + ["--ef567890-A--", "[10/Dec/2020:19:45:44 --0600] uid2 ::1 1 ::1 80", "--ef567890-Z--"]
    data = b"".join(encode(line) + b"\n" for line in lines)
    frame = frame_from_bytes(data)
    result = ModsecurityConnector().parse(frame)
    starts = frame.filter(pl.col("line").str.contains(r"^--[0-9A-Za-z]+-A--\s*$"))["offset"].to_list()
    seen = sorted(result.events["offset"].to_list() + result.rejects["offset"].to_list())
    # A random line may itself look like a boundary or a JSON record; every
    # record start is still accounted for exactly once.
    assert set(starts) <= set(seen)
    assert len(seen) == len(set(seen))
    assert result.rejects["reason"].null_count() == 0
