"""HAProxy HTTP logs (``option httplog``), usually behind a syslog header.

A line looks like::

    Nov 14 22:45:12 lb1 haproxy[760]: 198.51.100.60:54241 [14/Nov/2015:22:45:12.001]
    https~ web/srv1 0/0/1/7/227 206 1601821 - - ---- 33/15/1/0/0 0/0
    {captured request headers} {captured response headers} "GET /files/a.jpg HTTP/1.1"

(one line in the log). The client address is written without brackets, so
an IPv6 client is ``2001:db8::1:58340`` and the port follows the last colon.
A UNIX-socket client is ``unix:<listener id>`` and a hidden client ``-``.
The accept date has no UTC offset and is read in the source's time zone.
"""

from __future__ import annotations

import re

import polars as pl
from pydantic import Field, field_validator

from gatewatch.connectors._gateway import json_members, with_client_address, with_credentials, with_trusted_client
from gatewatch.connectors._http import null_if_dash, with_request_line, with_target_parts
from gatewatch.connectors._time import describe_time_failure, parse_clf_time
from gatewatch.connectors.base import Connector, ConnectorOptions, ParseResult
from gatewatch.connectors.combined import SYSLOG_PREFIX_RE

_ACCEPT_DATE = r"\d{2}/[A-Za-z]{3}/\d{4}:\d{2}:\d{2}:\d{2}(?:\.\d+)?"

LINE_RE = (
    rf"^(?P<client>\S+) \[(?P<time>{_ACCEPT_DATE})\] (?P<frontend>\S+) (?P<backend>[^\s/]+)/(?P<server>\S+)"
    # Some log-format lines add a field (often the Host header) after the server.
    r"(?: (?P<added>[^\s/]+))?"
    r" (?P<timers>[+-]?\d+(?:/[+-]?\d+){3,4}) (?P<status>-?\d+) (?P<bytes>\+?\d+)"
    r" (?P<request_cookie>\S+) (?P<response_cookie>\S+) (?P<termination>\S{2,4})"
    r" (?P<connections>\d+/\d+/\d+/\d+/\+?\d+) (?P<queues>\d+/\d+)"
    r"(?: \{(?P<request_headers>[^}]*)\})?(?: \{(?P<response_headers>[^}]*)\})?"
    r' "(?P<request>.*)"$'
)

# Kinds of HAProxy lines that LINE_RE does not match, named in their reject reasons.
_CONNECTION_MESSAGE_RE = rf"^\S+ \[{_ACCEPT_DATE}\] \S+: "
_TCP_LOG_RE = rf"^\S+ \[{_ACCEPT_DATE}\] \S+ \S+/\S+ -?\d+/-?\d+/[+-]?\d+ \+?\d+ \S+ \d+/"

# Captured header name -> the column it fills.
_HEADER_COLUMNS = {
    "host": "host",
    "user-agent": "user_agent",
    "referer": "referer",
    "x-forwarded-for": "forwarded_for",
    "x-request-id": "request_id",
    "authorization": "_authorization",
}
_HEADER_NAME_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


class HaproxyOptions(ConnectorOptions):
    """Options of the haproxy connector."""

    # Names of the headers in the first {...} block, in the order of the
    # "capture request header" lines (or %hr) of the HAProxy configuration.
    # host, user-agent, referer, x-forwarded-for, x-request-id and
    # authorization fill columns (authorization only as a fingerprint);
    # others go into extra.
    request_headers: list[str] = Field(default_factory=list)
    # Names of the headers in the second {...} block ("capture response header").
    response_headers: list[str] = Field(default_factory=list)


    @field_validator("request_headers", "response_headers")
    @classmethod
    def _check_headers(cls, names: list[str]) -> list[str]:
        for name in names:
            if not _HEADER_NAME_RE.match(name):
                raise ValueError(f"{name!r} is not a valid header name; use letters, digits and '-'")
        return [name.lower() for name in names]


class HaproxyConnector(Connector):
    """HAProxy HTTP logs, with or without a syslog header."""

    name = "haproxy"
    aliases = ("haproxy_http",)
    options_model = HaproxyOptions
    options: HaproxyOptions

    def parse(self, lines: pl.DataFrame) -> ParseResult:
        frame = lines.select(pl.col("offset").cast(pl.Int64), pl.col("line").cast(pl.String)).with_row_index("_row")
        syslog = pl.col("line").str.extract_groups(SYSLOG_PREFIX_RE)
        fields = (
            frame.lazy()
            .with_columns(
                _body=pl.col("line").str.replace(SYSLOG_PREFIX_RE, ""),
                _syslog_host=syslog.struct.field("syslog_host"),
                _syslog_program=syslog.struct.field("syslog_program"),
            )
            .with_columns(_m=pl.col("_body").str.extract_groups(LINE_RE))
            .unnest("_m")
            .collect()
        )
        matched = fields.filter(pl.col("time").is_not_null())
        unmatched = fields.filter(pl.col("time").is_null()).select(
            "_row", "offset", "line", reason=_describe_unmatched(pl.col("_body"))
        )
        events = self._build_events(matched)
        reasons = events.select(
            pl.when(pl.col("ts").is_null()).then(
                describe_time_failure(pl.col("time"), self.options.timezone, parse_clf_time)
            )
        ).to_series()
        rejects = pl.concat(
            [unmatched, events.filter(reasons.is_not_null()).select("_row", "offset", "line", reason=reasons.drop_nulls())]
        ).sort("_row")
        return ParseResult.from_frames(events.filter(reasons.is_null()), rejects)

    def _build_events(self, matched: pl.DataFrame) -> pl.DataFrame:
        timers = pl.col("timers").str.split("/")
        total = timers.list.last().cast(pl.Float64, strict=False)
        status = pl.col("status").cast(pl.Int32, strict=False)
        staged = matched.lazy().with_columns(
            ts=parse_clf_time(pl.col("time"), self.options.timezone),
            _status_text=pl.col("status"),
            status=pl.when(status >= 0).then(status),
            bytes_sent=pl.col("bytes").str.strip_prefix("+").cast(pl.Int64, strict=False),
            # The last timer is the total time in ms (Ta, or Tt before 1.9); -1 means not reached.
            duration_ms=pl.when(total >= 0).then(total),
            _frontend=pl.col("frontend").str.strip_suffix("~"),
            _tls=pl.col("frontend").str.ends_with("~"),
            _server=pl.when(~pl.col("server").str.starts_with("<")).then(pl.col("server")),
            _request_headers=pl.col("request_headers").str.split("|"),
            _response_headers=pl.col("response_headers").str.split("|"),
        )
        staged = staged.with_columns(**self._header_columns())

        staged = with_request_line(staged, "request")
        staged = with_target_parts(staged, "target", "method", "_target_")
        is_unix = pl.col("client").str.starts_with("unix:")
        staged = with_client_address(staged, pl.when(~is_unix).then(pl.col("client")), bare_ipv6_has_port=True)
        staged = staged.with_columns(
            malformed=pl.col("method").is_null(),
            scheme=pl.col("_target_scheme"),
            host=pl.coalesce(pl.col("_target_host"), null_if_dash(pl.col("_header_host"))),
            path=pl.col("_target_path"),
            query=pl.col("_target_query"),
            user_agent=null_if_dash(pl.col("_header_user_agent")),
            referer=null_if_dash(pl.col("_header_referer")),
            forwarded_for=null_if_dash(pl.col("_header_forwarded_for")),
            request_id=null_if_dash(pl.col("_header_request_id")),
            _unix_client=pl.when(is_unix).then(pl.col("client")),
        ).collect()

        staged = with_credentials(staged, self.fingerprint_key, "_header__authorization")
        staged = staged.with_columns(user=pl.col("_auth_user"))
        staged = with_trusted_client(staged, self.trusted_networks)
        return staged.with_columns(extra=json_members(self._extra_members()))

    def _header_columns(self) -> dict[str, pl.Expr]:
        """Return the columns that the named captured headers fill, as ``_header_<column>``."""
        columns: dict[str, pl.Expr] = {}
        for position, name in enumerate(self.options.request_headers):
            column = _HEADER_COLUMNS.get(name)
            if column is not None and f"_header_{column}" not in columns:
                columns[f"_header_{column}"] = pl.col("_request_headers").list.get(position, null_on_oob=True)
        for column in _HEADER_COLUMNS.values():
            columns.setdefault(f"_header_{column}", pl.lit(None, dtype=pl.String))
        return columns

    def _extra_members(self) -> dict[str, pl.Expr]:
        def named(block: str, names: list[str], skip: set[str]) -> dict[str, pl.Expr]:
            return {
                f"{block}_{name}": null_if_dash(pl.col(f"_{block}").list.get(position, null_on_oob=True))
                for position, name in enumerate(names)
                if name not in skip
            }

        request_named = len(self.options.request_headers)
        response_named = len(self.options.response_headers)
        return {
            "request_raw": pl.when(pl.col("malformed")).then(pl.col("request")),
            "request_target": pl.when(pl.col("_target_is_absolute")).then(pl.col("target")),
            "client_ip_raw": pl.col("_client_ip_raw"),
            "client_port": pl.col("_client_port"),
            "client_socket": pl.col("_unix_client"),
            "remote_addr": pl.col("_remote_addr"),
            "frontend": pl.col("_frontend"),
            "tls": pl.when(pl.col("_tls")).then(pl.lit(True)),
            "backend": pl.col("backend"),
            "server": pl.col("_server"),
            "server_raw": pl.when(pl.col("_server").is_null()).then(pl.col("server")),
            "added_field": pl.col("added"),
            "timers": pl.col("timers"),
            "status_raw": pl.when(pl.col("status").is_null()).then(pl.col("_status_text")),
            "termination_state": pl.col("termination"),
            "connections": pl.col("connections"),
            "queues": pl.col("queues"),
            "request_cookie": null_if_dash(pl.col("request_cookie")),
            "response_cookie": null_if_dash(pl.col("response_cookie")),
            **named("request_headers", self.options.request_headers, set(_HEADER_COLUMNS)),
            **named("response_headers", self.options.response_headers, set()),
            "captured_request_headers": pl.when(pl.col("_request_headers").list.len() > request_named).then(
                pl.col("_request_headers").list.slice(request_named)
            ),
            "captured_response_headers": pl.when(pl.col("_response_headers").list.len() > response_named).then(
                pl.col("_response_headers").list.slice(response_named)
            ),
            "syslog_host": pl.col("_syslog_host"),
            "syslog_program": pl.col("_syslog_program"),
        }


def _describe_unmatched(body: pl.Expr) -> pl.Expr:
    """Return why a line is not an HAProxy HTTP log line."""
    return (
        pl.when(body.str.starts_with("#"))
        .then(pl.lit("comment line"))
        .when(body.str.contains(_CONNECTION_MESSAGE_RE))
        .then(pl.lit("HAProxy connection message (such as an SSL handshake failure), not an HTTP request"))
        .when(body.str.contains(_TCP_LOG_RE))
        .then(pl.lit("HAProxy TCP log line (option tcplog), not an HTTP log line"))
        .when(~body.str.contains(rf"\[{_ACCEPT_DATE}\]"))
        .then(pl.lit("line does not match the HAProxy HTTP log format: missing [dd/Mon/yyyy:HH:MM:SS.mmm] accept date"))
        .when(~body.str.contains(r'"[^"]*"?$'))
        .then(pl.lit("line does not match the HAProxy HTTP log format: missing quoted request at the end"))
        .otherwise(pl.lit("line does not match the HAProxy HTTP log format (option httplog)"))
    )
