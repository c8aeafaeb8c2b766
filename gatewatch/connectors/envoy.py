"""Envoy and Istio access logs, in the default text formats and as JSON.

Envoy's default text format is::

    [%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%"
    %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION%
    %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%"
    "%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%"

Istio's adds %RESPONSE_CODE_DETAILS%, %CONNECTION_TERMINATION_DETAILS% and
"%UPSTREAM_TRANSPORT_FAILURE_REASON%" after the flags, and the upstream
cluster, upstream local, downstream local and downstream remote addresses,
the requested server name and the route name at the end. JSON lines use the
key names of Istio's and Envoy Gateway's JSON encodings. Lines written by a
container runtime keep working: the CRI prefix is removed first.
"""

from __future__ import annotations

import polars as pl
from pydantic import Field, field_validator

from gatewatch.connectors._frames import overwrite_rows
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
from gatewatch.connectors._http import null_if_dash, with_target_parts
from gatewatch.connectors._time import parse_any_time
from gatewatch.connectors.base import Connector, ConnectorOptions, ParseResult

_TEXT_RE = (
    r"^\[(?P<time>[^\]]+)\] \"(?P<request>.*?)\" (?P<status>\d+|-) (?P<flags>\S+)"
    r"(?: (?P<details>\S+) (?P<termination>\S+) \"(?P<failure>[^\"]*)\")?"
    r" (?P<bytes_received>\d+|-) (?P<bytes_sent>\d+|-) (?P<duration>\d+|-) (?P<upstream_time>\S+)"
    # The user agent is written unescaped and may contain quotes; the fields
    # after it never do.
    r" \"(?P<forwarded_for>[^\"]*)\" \"(?P<user_agent>.*)\" \"(?P<request_id>[^\"]*)\""
    r" \"(?P<authority>[^\"]*)\" \"(?P<upstream_host>[^\"]*)\"(?P<rest>.*)$"
)

# The text formats without quotes inside quoted fields, the usual case,
# which literal splits on '"' can read.
_PLAIN_TEXT_RE = (
    r'^\[[^\]]+\] "[^"]*" (?:\d+|-) \S+(?: \S+ \S+ "[^"]*")? (?:\d+|-) (?:\d+|-) (?:\d+|-) \S+'
    r' "[^"]*" "[^"]*" "[^"]*" "[^"]*" "[^"]*"'
)

# The fields after "%UPSTREAM_HOST%" in Istio's format, in order.
_ISTIO_TRAILING = (
    "upstream_cluster",
    "upstream_local_address",
    "downstream_local_address",
    "downstream_remote_address",
    "requested_server_name",
    "route_name",
)

# Normalized role -> JSON keys that fill it, most preferred first.
_JSON_KEYS: dict[str, tuple[str, ...]] = {
    "time": ("start_time", "@timestamp", "timestamp"),
    "method": ("method", ":method", "request_method"),
    "path": ("x-envoy-origin-path", "x-envoy-original-path", "path", ":path"),
    "protocol": ("protocol",),
    "status": ("response_code", "status"),
    "flags": ("response_flags",),
    "bytes_received": ("bytes_received",),
    "bytes_sent": ("bytes_sent",),
    "duration": ("duration",),
    "upstream_time": ("upstream_service_time", "x-envoy-upstream-service-time"),
    "forwarded_for": ("x_forwarded_for", "x-forwarded-for"),
    "user_agent": ("user_agent", "user-agent"),
    "request_id": ("request_id", "x-request-id"),
    "authority": ("authority", ":authority", "host"),
    "client": ("downstream_remote_address", "downstream_direct_remote_address"),
    "referer": ("referer", "referrer"),
    "authorization": ("authorization",),
    "scheme": ("scheme", ":scheme", "x-forwarded-proto"),
}

# Roles kept under these names in extra when the format has them.
_EXTRA_ROLES = ("flags", "upstream_time")


class EnvoyOptions(ConnectorOptions):
    """Options of the envoy connector."""

    # Extra JSON keys for a role, for JSON formats with other key names:
    # role -> key. Roles: the keys of the built-in table, such as "client",
    # "path" or "time".
    fields: dict[str, str] = Field(default_factory=dict)


    @field_validator("fields")
    @classmethod
    def _check_fields(cls, fields: dict[str, str]) -> dict[str, str]:
        for role, key in fields.items():
            if role not in _JSON_KEYS:
                raise ValueError(f"fields: unknown role {role!r}; use one of {', '.join(sorted(_JSON_KEYS))}")
            if not key:
                raise ValueError(f"fields: the JSON key for {role!r} must not be empty")
        return fields


class EnvoyConnector(Connector):
    """Envoy and Istio access logs (default text format or JSON)."""

    name = "envoy"
    aliases = ("istio", "envoy_json", "istio_json")
    options_model = EnvoyOptions
    options: EnvoyOptions

    def __init__(self, options: ConnectorOptions | None = None, fingerprint_key: bytes = b""):
        super().__init__(options, fingerprint_key)
        self._keys = {role: (*([self.options.fields[role]] if role in self.options.fields else []), *keys)
                      for role, keys in _JSON_KEYS.items()}

    def parse(self, lines: pl.DataFrame) -> ParseResult:
        fields = read_text_or_json(lines, self._read_text, self._read_json)

        matched = fields.filter(pl.col("_matched"))
        unmatched = fields.filter(~pl.col("_matched")).select(
            "_row", "offset", "line",
            reason=pl.lit("line does not match the Envoy/Istio text access-log format and is not a JSON object"),
        )
        events = self._build_events(matched)
        return finish_parse(events, unmatched, "missing start time", self.options.timezone)

    def _read_text(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Return the raw fields of the text formats, one row per row of ``frame``."""
        parts = pl.col("_m")
        trailing = pl.col("_trailing")
        columns = {
            "_matched": parts.struct.field("time").is_not_null(),
            "_time": parts.struct.field("time"),
            "_request": parts.struct.field("request"),
            "_status": parts.struct.field("status"),
            "_bytes_received": parts.struct.field("bytes_received"),
            "_bytes_sent": parts.struct.field("bytes_sent"),
            "_duration": parts.struct.field("duration"),
            "_forwarded_for": parts.struct.field("forwarded_for"),
            "_user_agent": parts.struct.field("user_agent"),
            "_request_id": parts.struct.field("request_id"),
            "_authority": parts.struct.field("authority"),
            "_client": trailing.list.get(3, null_on_oob=True),
            "_referer": pl.lit(None, dtype=pl.String),
            "_authorization": pl.lit(None, dtype=pl.String),
            "_scheme": pl.lit(None, dtype=pl.String),
            "_method": pl.lit(None, dtype=pl.String),
            "_path": pl.lit(None, dtype=pl.String),
            "_protocol": pl.lit(None, dtype=pl.String),
            "_extra_source": json_members(
                {
                    "response_flags": null_if_dash(parts.struct.field("flags")),
                    "response_code_details": null_if_dash(parts.struct.field("details")),
                    "connection_termination_details": null_if_dash(parts.struct.field("termination")),
                    "upstream_transport_failure_reason": null_if_dash(parts.struct.field("failure")),
                    "upstream_service_time": null_if_dash(parts.struct.field("upstream_time")),
                    "upstream_host": null_if_dash(parts.struct.field("upstream_host")),
                    **{
                        name: null_if_dash(trailing.list.get(position, null_on_oob=True))
                        for position, name in enumerate(_ISTIO_TRAILING)
                        if name != "downstream_remote_address"
                    },
                    "extra_fields": pl.when(trailing.list.len() > len(_ISTIO_TRAILING)).then(
                        trailing.list.slice(len(_ISTIO_TRAILING))
                    ),
                    "cri": pl.when(pl.col("_cri")).then(pl.lit(True)),
                }
            ),
        }
        return (
            frame.with_columns(_m=_split_text_lines(frame["_body"]))
            .lazy()
            .with_columns(_trailing=pl.col("_m").struct.field("rest").str.strip_chars().str.split(" "))
            .with_columns(_trailing=pl.when(pl.col("_trailing").list.first() != "").then(pl.col("_trailing")))
            .select(**columns)
            .collect()
        )

    def _read_json(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Return the same raw fields as ``_read_text`` for JSON lines."""
        keys = sorted({key for role_keys in self._keys.values() for key in role_keys})
        doc = decode_json(frame["_json"], string_struct(dict.fromkeys(keys)))

        def value(role: str) -> pl.Expr:
            return pl.coalesce([null_if_dash(pl.col("_doc").struct.field(key)) for key in self._keys[role]])

        consumed = [key for role, role_keys in self._keys.items() if role not in _EXTRA_ROLES for key in role_keys]
        time = pl.coalesce([pl.col("_doc").struct.field(key) for key in self._keys["time"]])

        own = json_members(
            {
                "response_flags": value("flags"),
                "upstream_service_time": value("upstream_time"),
                "cri": pl.when(pl.col("_cri")).then(pl.lit(True)),
            }
        )
        staged = frame.with_columns(_doc=doc).lazy().select(
            _matched=pl.lit(True),
            _time=time,
            _request=pl.lit(None, dtype=pl.String),
            _status=value("status"),
            _bytes_received=value("bytes_received"),
            _bytes_sent=value("bytes_sent"),
            _duration=value("duration"),
            _forwarded_for=value("forwarded_for"),
            _user_agent=value("user_agent"),
            _request_id=value("request_id"),
            _authority=value("authority"),
            _client=value("client"),
            _referer=value("referer"),
            _authorization=value("authorization"),
            _scheme=value("scheme"),
            # "-" is kept so that a codec error ("-" method and path) can be
            # distinguished from a format that has no method field.
            _method=pl.coalesce([pl.col("_doc").struct.field(key) for key in self._keys["method"]]),
            _path=pl.coalesce([pl.col("_doc").struct.field(key) for key in self._keys["path"]]),
            _protocol=value("protocol"),
            _extra_source=merge_json_objects(
                own,
                remove_members(pl.col("_json"), consumed + ["response_flags", "upstream_service_time", "x-envoy-upstream-service-time"]),
            ),
        )
        return staged.collect()

    def _build_events(self, matched: pl.DataFrame) -> pl.DataFrame:
        # The request line "%METHOD% %PATH% %PROTOCOL%": the path may contain
        # spaces, and each part is "-" when Envoy did not read it.
        request = pl.col("_request").str.extract_groups(r"^(?P<method>\S+) (?P<path>.*) (?P<protocol>\S+)$")
        staged = matched.lazy().with_columns(
            _method=pl.coalesce(pl.col("_method"), request.struct.field("method")),
            _path=pl.coalesce(pl.col("_path"), request.struct.field("path")),
            _protocol=pl.coalesce(pl.col("_protocol"), null_if_dash(request.struct.field("protocol"))),
        )
        staged = staged.with_columns(
            ts=parse_any_time(pl.col("_time"), self.options.timezone),
            method=null_if_dash(pl.col("_method")),
            _target=null_if_dash(pl.col("_path")),
            http_version=pl.col("_protocol"),
            status=pl.col("_status").cast(pl.Int32, strict=False),
            bytes_received=pl.col("_bytes_received").cast(pl.Int64, strict=False),
            bytes_sent=pl.col("_bytes_sent").cast(pl.Int64, strict=False),
            duration_ms=pl.col("_duration").cast(pl.Float64, strict=False),
            forwarded_for=null_if_dash(pl.col("_forwarded_for")),
            user_agent=null_if_dash(pl.col("_user_agent")),
            request_id=null_if_dash(pl.col("_request_id")),
            referer=null_if_dash(pl.col("_referer")),
        )
        staged = staged.with_columns(
            # A codec error (a request Envoy could not parse) has "-" for both.
            malformed=pl.col("method").is_null() | pl.col("_target").is_null(),
        )

        staged = with_target_parts(staged, "_target", "method", "_target_")
        staged = with_client_address(staged, null_if_dash(pl.col("_client")))
        staged = staged.with_columns(
            scheme=pl.coalesce(null_if_dash(pl.col("_scheme")), pl.col("_target_scheme")),
            host=pl.coalesce(pl.col("_target_host"), null_if_dash(pl.col("_authority"))),
            path=pl.col("_target_path"),
            query=pl.col("_target_query"),
        ).collect()

        staged = with_credentials(staged, self.fingerprint_key, "_authorization")
        staged = staged.with_columns(user=pl.col("_auth_user"))
        staged = with_trusted_client(staged, self.trusted_networks)

        own = json_members(
            {
                "request_raw": pl.when(pl.col("malformed") & pl.col("_request").is_not_null()).then(pl.col("_request")),
                "client_ip_raw": pl.col("_client_ip_raw"),
                "client_port": pl.col("_client_port"),
                "remote_addr": pl.col("_remote_addr"),
                "request_target": pl.when(pl.col("_target_is_absolute")).then(pl.col("_target")),
            }
        )
        return staged.with_columns(extra=merge_json_objects(own, pl.col("_extra_source")))


def _split_text_lines(body: pl.Series) -> pl.Series:
    """Return the fields of the text formats as a struct with the group names of ``_TEXT_RE``.

    Lines without quotes inside quoted fields are split on '"' and spaces,
    because a regex with this many captures is several times slower. The
    others, and lines of neither format, go through ``_TEXT_RE``.
    """
    frame = pl.DataFrame({"body": body})
    is_plain = frame.select(pl.col("body").str.contains(_PLAIN_TEXT_RE).fill_null(False)).to_series()
    pieces = pl.col("_pieces")
    head = pl.col("_head")
    is_istio = head.list.len() == 4
    # Envoy: status flags received sent duration upstream-time, then the
    # quoted fields from piece 3. Istio: status flags details termination,
    # the quoted failure reason, the four numbers, then the quoted fields
    # from piece 5.
    numbers = pl.when(is_istio).then(pieces.list.get(4, null_on_oob=True).str.strip_chars().str.split(" ")).otherwise(head.list.slice(2))
    base = pl.when(is_istio).then(5).otherwise(3)
    fields = (
        frame.lazy()
        .with_columns(_pieces=pl.col("body").str.split('"'))
        .with_columns(_head=pieces.list.get(2, null_on_oob=True).str.strip_chars().str.split(" "))
        .with_columns(_numbers=numbers, _base=base)
        .select(
            pl.struct(
                time=pieces.list.get(0, null_on_oob=True).str.strip_chars_end(" ").str.strip_prefix("[").str.strip_suffix("]"),
                request=pieces.list.get(1, null_on_oob=True),
                status=head.list.get(0, null_on_oob=True),
                flags=head.list.get(1, null_on_oob=True),
                details=pl.when(is_istio).then(head.list.get(2, null_on_oob=True)),
                termination=pl.when(is_istio).then(head.list.get(3, null_on_oob=True)),
                failure=pl.when(is_istio).then(pieces.list.get(3, null_on_oob=True)),
                bytes_received=pl.col("_numbers").list.get(0, null_on_oob=True),
                bytes_sent=pl.col("_numbers").list.get(1, null_on_oob=True),
                duration=pl.col("_numbers").list.get(2, null_on_oob=True),
                upstream_time=pl.col("_numbers").list.get(3, null_on_oob=True),
                forwarded_for=pieces.list.get(pl.col("_base"), null_on_oob=True),
                user_agent=pieces.list.get(pl.col("_base") + 2, null_on_oob=True),
                request_id=pieces.list.get(pl.col("_base") + 4, null_on_oob=True),
                authority=pieces.list.get(pl.col("_base") + 6, null_on_oob=True),
                upstream_host=pieces.list.get(pl.col("_base") + 8, null_on_oob=True),
                rest=pieces.list.slice(pl.col("_base") + 9).list.join('"'),
            ).alias("fields")
        )
        .unnest("fields")
        .collect()
    )
    if not is_plain.all():
        others = frame.filter(~is_plain).select(pl.col("body").str.extract_groups(_TEXT_RE).alias("fields")).unnest("fields")
        fields = overwrite_rows(fields, ~is_plain, others.select(fields.columns))
    return fields.select(pl.struct(pl.all()).alias("fields")).to_series()
