"""AWS Application Load Balancer access logs.

Each entry is one line of space-separated fields, some of them quoted. AWS
appends new fields at the end from time to time, so a line may have fewer
fields than ``ALB_FIELDS`` (an older load balancer) or more (a newer one).
Fields beyond the known list are kept in ``extra.extra_fields``, without
their quotes.
"""

from __future__ import annotations

import polars as pl
from pydantic import field_validator

from gatewatch.connectors._json import EventSettings, build_events, finish
from gatewatch.connectors._text import unescape_log_column
from gatewatch.connectors._time import validate_timezone
from gatewatch.connectors.base import Connector, ConnectorOptions, ParseResult

# The fields of an ALB access-log entry, in order, as AWS names them. The
# list ends with the fields added in 2025 for host and URL rewrites.
ALB_FIELDS: tuple[str, ...] = (
    "type",
    "time",
    "elb",
    "client:port",
    "target:port",
    "request_processing_time",
    "target_processing_time",
    "response_processing_time",
    "elb_status_code",
    "target_status_code",
    "received_bytes",
    "sent_bytes",
    "request",
    "user_agent",
    "ssl_cipher",
    "ssl_protocol",
    "target_group_arn",
    "trace_id",
    "domain_name",
    "chosen_cert_arn",
    "matched_rule_priority",
    "request_creation_time",
    "actions_executed",
    "redirect_url",
    "error_reason",
    "target:port_list",
    "target_status_code_list",
    "classification",
    "classification_reason",
    "conn_trace_id",
    "transformed_host",
    "transformed_uri",
    "request_transform_status",
)

# Fields up to and including the request line. A line with fewer is rejected.
MINIMUM_FIELDS = ALB_FIELDS.index("request") + 1

# A quoted field (with backslash escapes) or a run of non-space characters.
_FIELD_RE = r'"(?:[^"\\]|\\.)*"|[^ ]+'
# The start every entry has: type, an ISO 8601 time, the load balancer and the client.
_SHAPE_RE = r"^[a-z][a-z0-9]* \d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?Z \S+ \S+"
# address:port, where an IPv6 address may be bracketed or bare (split at the last colon).
_ADDRESS_PORT_RE = r"^(?:\[(?P<bracketed>[^\]]*)\]|(?P<address>.+)):(?P<port>\d+)$"

# Fields that fill a column; every other known field goes into extra under
# its AWS name (":" becomes "_").
_COLUMN_FIELDS = frozenset(
    {"time", "client:port", "elb_status_code", "received_bytes", "sent_bytes", "request", "user_agent", "trace_id"}
)
_PROCESSING_TIMES = ("request_processing_time", "target_processing_time", "response_processing_time")


class AwsAlbOptions(ConnectorOptions):
    """Options of the aws_alb connector; ALB times are always UTC."""

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        return validate_timezone(value)


class AwsAlbConnector(Connector):
    """AWS Application Load Balancer access logs."""

    name = "aws_alb"
    aliases = ("alb",)
    options_model = AwsAlbOptions
    options: AwsAlbOptions

    def parse(self, lines: pl.DataFrame) -> ParseResult:
        frame = lines.select(pl.col("offset").cast(pl.Int64), pl.col("line").cast(pl.String)).with_row_index("_row")
        fields = frame.with_columns(
            _fields=pl.col("line").str.extract_all(_FIELD_RE),
            _shaped=pl.col("line").str.contains(_SHAPE_RE).fill_null(False),
        )
        is_entry = fields.select(
            pl.col("_shaped") & (pl.col("_fields").list.len().fill_null(0) >= MINIMUM_FIELDS)
        ).to_series()
        line_rejects = fields.filter(~is_entry).select(
            "_row",
            "offset",
            "line",
            reason=pl.when(~pl.col("_shaped"))
            .then(
                pl.lit(
                    "line does not match the ALB access-log format: expected type, ISO 8601 time, "
                    "load balancer and client:port first"
                )
            )
            .otherwise(
                pl.format(
                    "ALB entry has {} fields, fewer than the {} up to the request line; the line may be cut short",
                    pl.col("_fields").list.len(),
                    pl.lit(MINIMUM_FIELDS),
                )
            ),
        )
        entries = _named_fields(fields.filter(is_entry))
        events, event_rejects = build_events(
            entries,
            _roles(),
            EventSettings(
                timezone="UTC",
                time_format="iso8601",
                time_field="time",
                trusted_networks=self.trusted_networks,
                fingerprint_key=self.fingerprint_key,
            ),
            _extra_members(),
        )
        events, rejects = finish(events, event_rejects, line_rejects)
        return ParseResult.from_frames(events, rejects)


def _column_name(field: str) -> str:
    return "_alb_" + field.replace(":", "_")


def _named_fields(entries: pl.DataFrame) -> pl.DataFrame:
    """Add one column per known field (unquoted, escapes decoded) and ``_alb_extra_fields``."""
    tokens = pl.col("_fields")
    named = entries.with_columns(
        [
            _unquote(tokens.list.get(position, null_on_oob=True)).alias(_column_name(field))
            for position, field in enumerate(ALB_FIELDS)
        ],
        _alb_extra_fields=pl.when(tokens.list.len() > len(ALB_FIELDS)).then(
            tokens.list.slice(len(ALB_FIELDS)).list.eval(_unquote(pl.element()))
        ),
        _extra_log=pl.lit(None, dtype=pl.String),
    )
    for field in ("request", "user_agent", "redirect_url", "error_reason", "classification_reason"):
        column = _column_name(field)
        named = named.with_columns(unescape_log_column(named[column]))
    return named


def _unquote(token: pl.Expr) -> pl.Expr:
    """Remove the quotes around a quoted field; a slice is several times faster than a regex."""
    is_quoted = token.str.starts_with('"') & token.str.ends_with('"') & (token.str.len_bytes() >= 2)
    return pl.when(is_quoted).then(token.str.slice(1, token.str.len_chars() - 2)).otherwise(token)


def _roles() -> dict[str, pl.Expr]:
    client = pl.col("_alb_client_port").str.extract_groups(_ADDRESS_PORT_RE)
    times = [pl.col(_column_name(name)).cast(pl.Float64, strict=False) for name in _PROCESSING_TIMES]
    # -1 means the time does not apply (no target responded), so the sum is null.
    all_known = pl.all_horizontal([time >= 0 for time in times])
    return {
        "ts": pl.col("_alb_time"),
        "client_ip": pl.coalesce(client.struct.field("bracketed"), client.struct.field("address")),
        "request": pl.col("_alb_request"),
        "status": pl.col("_alb_elb_status_code"),
        "bytes_received": pl.col("_alb_received_bytes"),
        "bytes_sent": pl.col("_alb_sent_bytes"),
        "user_agent": pl.col("_alb_user_agent"),
        "request_id": pl.col("_alb_trace_id"),
        "duration_s": pl.when(all_known).then(pl.sum_horizontal(times).cast(pl.String)),
    }


def _extra_members() -> dict[str, pl.Expr]:
    client = pl.col("_alb_client_port").str.extract_groups(_ADDRESS_PORT_RE)
    members: dict[str, pl.Expr] = {"client_port": client.struct.field("port").cast(pl.Int32, strict=False)}
    for field in ALB_FIELDS:
        if field in _COLUMN_FIELDS:
            continue
        value = pl.col(_column_name(field))
        if field in _PROCESSING_TIMES:
            seconds = value.cast(pl.Float64, strict=False)
            members[field] = pl.when(seconds >= 0).then(seconds)
        else:
            members[field.replace(":", "_")] = pl.when((value != "-") & (value != "")).then(value)
    members["extra_fields"] = pl.col("_alb_extra_fields")
    return members
