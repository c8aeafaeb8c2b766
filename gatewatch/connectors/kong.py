"""Kong Gateway logs written by the file-log, http-log, tcp-log and udp-log plugins.

Each line is one JSON object with nested ``request``, ``response``,
``latencies``, ``route``, ``service`` and ``consumer`` objects, the
``client_ip`` and ``started_at`` in milliseconds since the epoch.
"""

from __future__ import annotations

import re

import polars as pl
from pydantic import Field, field_validator

from gatewatch.connectors._gateway import (
    canonical_json,
    decode_json,
    json_members,
    string_struct,
    with_client_address,
    with_credentials,
    with_trusted_client,
)
from gatewatch.connectors._http import null_if_dash, with_target_parts
from gatewatch.connectors._time import describe_time_failure, parse_any_time, validate_timezone
from gatewatch.connectors.base import Connector, ConnectorOptions, ParseResult

_HEADER_NAME_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


class KongOptions(ConnectorOptions):
    """Options of the kong connector."""

    # Header and query parameter names that carry an API key, as configured
    # in Kong's key-auth plugin (``key_names``, default ``apikey``).
    key_names: list[str] = Field(default_factory=lambda: ["apikey"])

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        return validate_timezone(value)

    @field_validator("key_names")
    @classmethod
    def _check_key_names(cls, names: list[str]) -> list[str]:
        for name in names:
            if not _HEADER_NAME_RE.match(name):
                raise ValueError(f"key_names: {name!r} is not a valid header name; use letters, digits and '-'")
        return [name.lower() for name in names]


class KongConnector(Connector):
    """Kong file-log / http-log JSON records."""

    name = "kong"
    aliases = ("kong_file_log", "kong_http_log")
    options_model = KongOptions
    options: KongOptions

    def _document_type(self) -> pl.Struct:
        headers = {
            "host": None,
            "user-agent": None,
            "referer": None,
            "x-forwarded-for": None,
            "x-request-id": None,
            "authorization": None,
            **{name: None for name in self.options.key_names},
        }
        return string_struct(
            {
                "started_at": None,
                "client_ip": None,
                "upstream_uri": None,
                "workspace": None,
                "workspace_name": None,
                "request": {"id": None, "method": None, "uri": None, "url": None, "size": None, "headers": headers},
                "response": {"status": None, "size": None, "headers": {"x-kong-request-id": None}},
                "latencies": {"request": None, "kong": None, "proxy": None},
                "route": {"id": None, "name": None},
                "service": {"id": None, "name": None, "host": None},
                "consumer": {"id": None, "username": None, "custom_id": None},
                "authenticated_entity": {"id": None},
            }
        )

    def parse(self, lines: pl.DataFrame) -> ParseResult:
        frame = lines.select(pl.col("offset").cast(pl.Int64), pl.col("line").cast(pl.String)).with_row_index("_row")
        frame = frame.with_columns(_json=canonical_json(frame, "line"))
        objects = frame.filter(pl.col("_json").is_not_null())
        not_objects = frame.filter(pl.col("_json").is_null()).select(
            "_row", "offset", "line", reason=pl.lit("line is not a JSON object")
        )
        objects = objects.with_columns(_doc=decode_json(objects["_json"], self._document_type()))
        events = self._build_events(objects)
        reasons = events.select(self._describe_reject()).to_series()
        rejects = pl.concat(
            [not_objects, events.filter(reasons.is_not_null()).select("_row", "offset", "line", reason=reasons.drop_nulls())]
        ).sort("_row")
        return ParseResult.from_frames(events.filter(reasons.is_null()), rejects)

    def _build_events(self, objects: pl.DataFrame) -> pl.DataFrame:
        doc = pl.col("_doc")
        request = doc.struct.field("request")
        headers = request.struct.field("headers")
        response = doc.struct.field("response")
        consumer = doc.struct.field("consumer")
        started_at = doc.struct.field("started_at")
        millis = started_at.cast(pl.Int64, strict=False)

        staged = objects.lazy().with_columns(
            _time_text=started_at,
            ts=pl.coalesce(
                pl.from_epoch(millis * 1000, time_unit="us"), parse_any_time(started_at, self.options.timezone)
            ),
            method=null_if_dash(request.struct.field("method")),
            _uri=null_if_dash(request.struct.field("uri")),
            _url=null_if_dash(request.struct.field("url")),
            status=response.struct.field("status").cast(pl.Int32, strict=False),
            bytes_sent=response.struct.field("size").cast(pl.Int64, strict=False),
            bytes_received=request.struct.field("size").cast(pl.Int64, strict=False),
            duration_ms=doc.struct.field("latencies").struct.field("request").cast(pl.Float64, strict=False),
            user_agent=null_if_dash(headers.struct.field("user-agent")),
            referer=null_if_dash(headers.struct.field("referer")),
            forwarded_for=null_if_dash(headers.struct.field("x-forwarded-for")),
            request_id=pl.coalesce(
                request.struct.field("id"),
                response.struct.field("headers").struct.field("x-kong-request-id"),
                headers.struct.field("x-request-id"),
            ),
            _authorization=headers.struct.field("authorization"),
            _api_key=pl.coalesce([headers.struct.field(name) for name in self.options.key_names]),
            _consumer_user=pl.coalesce(consumer.struct.field("username"), consumer.struct.field("custom_id")),
            malformed=pl.lit(False),
        )
        staged = with_client_address(staged, null_if_dash(doc.struct.field("client_ip")))
        staged = with_target_parts(staged, "_uri", "method", "_uri_")
        staged = with_target_parts(staged, "_url", "method", "_url_")
        staged = self._with_query_key(staged)
        staged = staged.with_columns(
            scheme=pl.coalesce(pl.col("_url_scheme"), pl.col("_uri_scheme")),
            host=pl.coalesce(pl.col("_url_host"), null_if_dash(headers.struct.field("host")), pl.col("_uri_host")),
            path=pl.coalesce(pl.col("_uri_path"), pl.col("_url_path")),
        ).collect()

        staged = with_credentials(staged, self.fingerprint_key, "_authorization", "_api_key")
        staged = staged.with_columns(user=pl.coalesce(pl.col("_consumer_user"), pl.col("_auth_user")))
        staged = with_trusted_client(staged, self.trusted_networks)
        return staged.with_columns(extra=json_members(self._extra_members()))

    def _with_query_key(self, staged: pl.LazyFrame) -> pl.LazyFrame:
        """Take an API key sent as a query parameter as the credential, and mask it in ``query``."""
        query = pl.coalesce(pl.col("_uri_query"), pl.col("_url_query"))
        names = "|".join(re.escape(name) for name in self.options.key_names)
        parameter = rf"(?i)(?:^|&)(?:{names})=([^&]*)"
        return staged.with_columns(
            _api_key=pl.coalesce(pl.col("_api_key"), null_if_dash(query.str.extract(parameter, 1))),
            query=query.str.replace_all(rf"(?i)((?:^|&)(?:{names}))=[^&]*", "${1}=REDACTED"),
        )

    def _extra_members(self) -> dict[str, pl.Expr]:
        doc = pl.col("_doc")
        route = doc.struct.field("route")
        service = doc.struct.field("service")
        latencies = doc.struct.field("latencies")
        return {
            "client_ip_raw": pl.col("_client_ip_raw"),
            "client_port": pl.col("_client_port"),
            "remote_addr": pl.col("_remote_addr"),
            "route_id": route.struct.field("id"),
            "route_name": route.struct.field("name"),
            "service_id": service.struct.field("id"),
            "service_name": service.struct.field("name"),
            "service_host": service.struct.field("host"),
            "consumer_id": doc.struct.field("consumer").struct.field("id"),
            "authenticated_entity_id": doc.struct.field("authenticated_entity").struct.field("id"),
            "upstream_uri": doc.struct.field("upstream_uri"),
            "latency_kong_ms": latencies.struct.field("kong").cast(pl.Float64, strict=False),
            "latency_proxy_ms": latencies.struct.field("proxy").cast(pl.Float64, strict=False),
            "workspace": doc.struct.field("workspace"),
            "workspace_name": doc.struct.field("workspace_name"),
        }

    def _describe_reject(self) -> pl.Expr:
        return (
            pl.when(pl.col("ts").is_null())
            .then(
                pl.when(pl.col("_time_text").is_null())
                .then(pl.lit("missing started_at"))
                .otherwise(describe_time_failure(pl.col("_time_text"), self.options.timezone, parse_any_time))
            )
            .alias("reason")
        )
