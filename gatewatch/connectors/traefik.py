"""Traefik access logs, JSON or the common log format with Traefik's fields.

The common format is NCSA combined followed by the number of requests
since Traefik started, the router name (the frontend name in Traefik 1),
the backend URL and the duration with an ``ms`` suffix::

    192.0.2.4 - - [08/Dec/2021:09:16:05 +0000] "GET /a HTTP/1.1" 200 414 "-" "curl/8.5.0" 500 "api@docker" "http://10.0.0.3:80" 3ms

JSON lines carry Traefik's field names (``ClientHost``, ``RequestMethod``,
``DownstreamStatus``, ``Duration`` in nanoseconds, ``request_<Header>``
for kept headers and so on). Lines written by a container runtime keep
working: the CRI prefix is removed first.
"""

from __future__ import annotations

import polars as pl

from gatewatch.connectors._gateway import (
    decode_json,
    json_members,
    finish_parse,
    merge_json_objects,
    read_text_or_json,
    remove_members,
    string_struct,
    with_client_address,
    with_credentials,
    with_trusted_client,
)
from gatewatch.connectors._http import null_if_dash, with_request_line, with_target_parts
from gatewatch.connectors._text import unescape_log_column
from gatewatch.connectors._time import parse_any_time
from gatewatch.connectors.base import Connector, ConnectorOptions, ParseResult

_QUOTED = r'(?:[^"\\]|\\.)*'
CLF_RE = (
    rf'^(?P<client>\S+) (?P<ident>\S+) (?P<user>\S+) \[(?P<time>[^\]]+)\] "(?P<request>{_QUOTED})"'
    r" (?P<status>\d{1,3}|-) (?P<bytes>\d+|-)"
    rf' "(?P<referer>{_QUOTED})" "(?P<user_agent>{_QUOTED})"'
    r' (?P<request_count>\d+|-) "(?P<router>[^"]*)" "(?P<backend_url>[^"]*)" (?P<duration>\d+)ms\s*$'
)

# JSON keys read into columns. Header fields are "request_<Header-Name>" as
# Traefik writes the header name.
_JSON_FIELDS = (
    "StartUTC", "StartLocal", "time", "ClientHost", "ClientAddr", "ClientPort", "ClientUsername",
    "RequestMethod", "RequestPath", "RequestProtocol", "RequestScheme", "RequestHost", "RequestLine",
    "DownstreamStatus", "DownstreamContentSize", "RequestContentSize", "Duration",
    "request_User-Agent", "request_Referer", "request_X-Forwarded-For", "request_X-Request-Id",
    "request_X-Real-Ip", "request_Authorization", "request_X-Api-Key",
)
# Keys that never go into extra: the ones above that a column contains,
# and credentials.
_CONSUMED_KEYS = [
    key for key in _JSON_FIELDS if key not in ("StartLocal", "time", "ClientAddr", "ClientPort", "request_X-Real-Ip")
] + ["request_Cookie", "request_Proxy-Authorization", "downstream_Set-Cookie", "origin_Set-Cookie", "ClientPort"]


class TraefikOptions(ConnectorOptions):
    """Options of the traefik connector."""


class TraefikConnector(Connector):
    """Traefik access logs (JSON or common format)."""

    name = "traefik"
    aliases = ("traefik_json", "traefik_clf")
    options_model = TraefikOptions
    options: TraefikOptions

    def parse(self, lines: pl.DataFrame) -> ParseResult:
        fields = read_text_or_json(lines, self._read_clf, self._read_json)

        matched = fields.filter(pl.col("_matched"))
        unmatched = fields.filter(~pl.col("_matched")).select(
            "_row", "offset", "line", reason=_describe_unmatched(pl.col("line"))
        )
        events = self._build_events(matched)
        return finish_parse(events, unmatched, "missing time (StartUTC, StartLocal or time)", self.options.timezone)

    def _read_clf(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Return the raw fields of the common format, one row per row of ``frame``."""
        parts = pl.col("_m")
        fields = (
            frame.lazy()
            .with_columns(_m=pl.col("_body").str.extract_groups(CLF_RE))
            .select(
                _matched=parts.struct.field("time").is_not_null(),
                _time=parts.struct.field("time"),
                _client=parts.struct.field("client"),
                _user=parts.struct.field("user"),
                _request=parts.struct.field("request"),
                _method=pl.lit(None, dtype=pl.String),
                _target=pl.lit(None, dtype=pl.String),
                _protocol=pl.lit(None, dtype=pl.String),
                _scheme=pl.lit(None, dtype=pl.String),
                _host=pl.lit(None, dtype=pl.String),
                _status=parts.struct.field("status"),
                _bytes_sent=parts.struct.field("bytes"),
                _bytes_received=pl.lit(None, dtype=pl.String),
                _duration_ms=parts.struct.field("duration").cast(pl.Float64, strict=False),
                _referer=parts.struct.field("referer"),
                _user_agent=parts.struct.field("user_agent"),
                _forwarded_for=pl.lit(None, dtype=pl.String),
                _request_id=pl.lit(None, dtype=pl.String),
                _authorization=pl.lit(None, dtype=pl.String),
                _api_key=pl.lit(None, dtype=pl.String),
                _extra_source=json_members(
                    {
                        "request_count": parts.struct.field("request_count").cast(pl.Int64, strict=False),
                        "router_name": null_if_dash(parts.struct.field("router")),
                        "backend_url": null_if_dash(parts.struct.field("backend_url")),
                        "ident": null_if_dash(parts.struct.field("ident")),
                        "cri": pl.when(pl.col("_cri")).then(pl.lit(True)),
                    }
                ),
            )
            .collect()
        )
        # Escaped quotes and backslashes in the quoted fields.
        return fields.with_columns(
            unescape_log_column(fields["_referer"]), unescape_log_column(fields["_user_agent"])
        )

    def _read_json(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Return the same raw fields as ``_read_clf`` for JSON lines."""
        doc = decode_json(frame["_json"], string_struct(dict.fromkeys(_JSON_FIELDS)))
        field = pl.col("_doc").struct.field
        return (
            frame.with_columns(_doc=doc)
            .lazy()
            .select(
                _matched=pl.lit(True),
                _time=pl.coalesce(field("StartUTC"), field("StartLocal"), field("time")),
                # ClientHost may come from forwarded headers; ClientAddr, the
                # connection's address, stays in extra.
                _client=pl.coalesce(null_if_dash(field("ClientHost")), null_if_dash(field("ClientAddr"))),
                _user=field("ClientUsername"),
                # Traefik 1 also writes the whole request line.
                _request=pl.when(field("RequestMethod").is_null()).then(field("RequestLine")),
                _method=field("RequestMethod"),
                _target=field("RequestPath"),
                _protocol=field("RequestProtocol"),
                _scheme=field("RequestScheme"),
                _host=field("RequestHost"),
                _status=field("DownstreamStatus"),
                _bytes_sent=field("DownstreamContentSize"),
                _bytes_received=field("RequestContentSize"),
                # Duration is in nanoseconds.
                _duration_ms=field("Duration").cast(pl.Float64, strict=False) / 1_000_000,
                _referer=field("request_Referer"),
                _user_agent=field("request_User-Agent"),
                _forwarded_for=field("request_X-Forwarded-For"),
                _request_id=field("request_X-Request-Id"),
                _authorization=field("request_Authorization"),
                _api_key=field("request_X-Api-Key"),
                _extra_source=merge_json_objects(
                    json_members({"cri": pl.when(pl.col("_cri")).then(pl.lit(True))}),
                    remove_members(pl.col("_json"), _CONSUMED_KEYS),
                ),
            )
            .collect()
        )

    def _build_events(self, matched: pl.DataFrame) -> pl.DataFrame:
        staged = with_request_line(matched.lazy(), "_request")
        staged = staged.with_columns(
            ts=parse_any_time(pl.col("_time"), self.options.timezone),
            method=pl.coalesce(null_if_dash(pl.col("_method")), pl.col("method")),
            _target=pl.coalesce(null_if_dash(pl.col("_target")), pl.col("target")),
            http_version=pl.coalesce(null_if_dash(pl.col("_protocol")), pl.col("http_version")),
            status=pl.col("_status").cast(pl.Int32, strict=False),
            bytes_sent=pl.col("_bytes_sent").cast(pl.Int64, strict=False),
            bytes_received=pl.col("_bytes_received").cast(pl.Int64, strict=False),
            duration_ms=pl.col("_duration_ms"),
            referer=null_if_dash(pl.col("_referer")),
            user_agent=null_if_dash(pl.col("_user_agent")),
            forwarded_for=null_if_dash(pl.col("_forwarded_for")),
            request_id=null_if_dash(pl.col("_request_id")),
        )
        staged = staged.with_columns(malformed=pl.col("method").is_null() | pl.col("_target").is_null())

        staged = with_target_parts(staged, "_target", "method", "_target_")
        staged = with_client_address(staged, null_if_dash(pl.col("_client")))
        staged = staged.with_columns(
            scheme=pl.coalesce(null_if_dash(pl.col("_scheme")), pl.col("_target_scheme")),
            host=pl.coalesce(pl.col("_target_host"), null_if_dash(pl.col("_host"))),
            path=pl.col("_target_path"),
            query=pl.col("_target_query"),
        ).collect()

        staged = with_credentials(staged, self.fingerprint_key, "_authorization", "_api_key")
        staged = staged.with_columns(user=pl.coalesce(null_if_dash(pl.col("_user")), pl.col("_auth_user")))
        staged = with_trusted_client(staged, self.trusted_networks)

        own = json_members(
            {
                "request_raw": pl.when(pl.col("malformed")).then(pl.col("_request")),
                "request_target": pl.when(pl.col("_target_is_absolute")).then(pl.col("_target")),
                "client_ip_raw": pl.col("_client_ip_raw"),
                "client_port": pl.col("_client_port"),
                "remote_addr": pl.col("_remote_addr"),
            }
        )
        return staged.with_columns(extra=merge_json_objects(own, pl.col("_extra_source")))


def _describe_unmatched(line: pl.Expr) -> pl.Expr:
    prefix = "line does not match the Traefik common log format: "
    return (
        pl.when(line.str.starts_with("#"))
        .then(pl.lit("comment line"))
        .when(line.str.contains(r"^(?:time=\"|level=|(?:DEBUG|INFO|WARN|WARNING|ERROR)\b)"))
        .then(pl.lit("Traefik application log line, not an access-log line"))
        .when(line.str.strip_chars().str.starts_with("{"))
        .then(pl.lit("line starts with '{' but is not a readable JSON object"))
        .when(~line.str.contains(r"\[[^\]]+\] \""))
        .then(pl.lit(prefix + "missing [time] and quoted request"))
        .when(~line.str.contains(r'" (?:\d+|-) "[^"]*" "[^"]*" \d+ms\s*$'))
        .then(pl.lit(prefix + "missing request count, router name, backend URL or duration (ms) after the user agent"))
        .otherwise(pl.lit(prefix + "unexpected field layout"))
    )
