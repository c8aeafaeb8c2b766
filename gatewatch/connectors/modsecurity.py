"""ModSecurity audit logs: v3 JSON, v2 JSON and the native multi-part format.

- v3 (libmodsecurity) JSON: one ``{"transaction": {...}}`` object per line,
  with ``request``, ``response`` and ``messages`` inside ``transaction``.
  Repeated headers appear as repeated JSON keys; the last one is kept.
- v2 JSON (``SecAuditLogFormat JSON``): ``transaction``, ``request``,
  ``response`` and ``audit_data`` at the top level.
- native (serial) format: one record over many lines, in parts that each
  start with a boundary line ``--<id>-<part>--``: A (time and addresses),
  B (request line and headers), F (response status line and headers),
  H (rule messages and the action), Z (end of the record), and others that
  are kept out of the event (C and E: bodies).

Each record becomes one event with the WAF columns: ``waf_action`` (block
when ModSecurity intercepted the request, else detect, or allow when no
rule matched), ``waf_rule_id`` (every matched rule id, the blocking one
first), ``waf_message`` and ``attack_class`` (from the CRS ``attack-*``
tags). Authorization and API-key headers are stored only as a fingerprint.
"""

from __future__ import annotations

import polars as pl
from pydantic import field_validator

from gatewatch.connectors._gateway import (
    canonical_json,
    decode_json,
    json_members,
    string_struct,
    with_client_address,
    with_credentials,
    with_trusted_client,
)
from gatewatch.connectors._http import null_if_dash, with_request_line, with_target_parts
from gatewatch.connectors._time import local_to_utc, parse_clf_time, validate_timezone
from gatewatch.connectors.base import Connector, ConnectorOptions, ParseResult

BOUNDARY_RE = r"^--(?P<id>[0-9A-Za-z]+)-(?P<part>[A-Z])--\s*$"
# Part A: [time] unique-id client-address client-port server-address server-port
_PART_A_RE = (
    r"^\[(?P<time>[^\]]+)\] (?P<unique_id>\S+) (?P<client>\S+) (?P<client_port>\d+)"
    r" (?P<server>\S+) (?P<server_port>\d+)"
)
# CRS blocks a request through its anomaly-score rule.
ANOMALY_BLOCKING_RULE = "949110"

# CRS "attack-*" tag suffix -> attack_class, where the two differ.
_ATTACK_CLASSES = {
    "injection-php": "php",
    "injection-java": "java",
    "injection-generic": "injection",
    "reputation-scanner": "scanner",
    "fixation": "session-fixation",
}

# Headers whose values are credentials or session secrets: redacted in the
# text of rejected records.
_SECRET_HEADERS = "authorization|proxy-authorization|cookie|x-api-key|apikey"

_MESSAGE_TYPE = pl.Struct({"id": pl.String, "msg": pl.String, "tags": pl.List(pl.String), "denied": pl.Boolean})

_JSON_TYPE = string_struct(
    {
        "transaction": {
            # v3
            "client_ip": None,
            "time_stamp": None,
            "client_port": None,
            "host_ip": None,
            "host_port": None,
            "unique_id": None,
            "server_id": None,
            "request": {"method": None, "http_version": None, "uri": None},
            "response": {"http_code": None},
            "producer": {"modsecurity": None, "connector": None, "secrules_engine": None},
            # v2
            "time": None,
            "transaction_id": None,
            "remote_address": None,
            "remote_port": None,
            "local_address": None,
            "local_port": None,
        },
        "request": {"request_line": None},
        "response": {"protocol": None, "status": None},
        "audit_data": {"action": {"intercepted": None, "phase": None}, "server": None, "engine_mode": None},
    }
)
# The raw fields of one record, whatever its format.
_RECORD_SCHEMA: dict[str, pl.DataType] = {
    "_row": pl.UInt32(),
    "offset": pl.Int64(),
    "_text": pl.String(),
    "_reason": pl.String(),
    **{
        name: pl.String()
        for name in (
            "_format", "_time", "_time_kind", "_unique_id", "_client", "_source_port", "_server", "_server_port",
            "_request", "_method", "_target", "_protocol", "_status", "_host", "_user_agent", "_referer",
            "_forwarded_for", "_authorization", "_api_key", "_producer", "_server_software", "_engine_mode",
            "_server_id",
        )
    },
    "_messages": pl.List(_MESSAGE_TYPE),
    "_intercepted": pl.Boolean(),
}

_V3_MESSAGES_TYPE = pl.List(
    pl.Struct({"message": pl.String, "details": pl.Struct({"ruleId": pl.String, "tags": pl.List(pl.String)})})
)


class ModsecurityOptions(ConnectorOptions):
    """Options of the modsecurity connector."""

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        return validate_timezone(value)


class ModsecurityConnector(Connector):
    """ModSecurity audit logs (v3 JSON, v2 JSON, native multi-part)."""

    name = "modsecurity"
    aliases = ("modsec", "modsecurity_audit")
    options_model = ModsecurityOptions
    options: ModsecurityOptions
    # A native record runs from its A boundary to its Z boundary. JSON
    # records are single lines and need no marker: a line after a Z
    # boundary is complete.
    record_start = r"^--[0-9A-Za-z]+-A--\s*$"
    record_end = r"^--[0-9A-Za-z]+-Z--\s*$"

    def parse(self, lines: pl.DataFrame) -> ParseResult:
        frame = lines.select(pl.col("offset").cast(pl.Int64), pl.col("line").cast(pl.String)).with_row_index("_row")
        boundary = pl.col("line").str.extract_groups(BOUNDARY_RE)
        is_end = pl.col("_part") == "Z"
        frame = (
            frame.lazy()
            .with_columns(_part=boundary.struct.field("part"))
            .with_columns(_record=(pl.col("_part") == "A").fill_null(False).cum_sum())
            # Z boundaries before this line, within its record.
            .with_columns(_ended=(is_end.fill_null(False).cast(pl.Int32).cum_sum() - is_end.fill_null(False).cast(pl.Int32)).over("_record"))
            .with_columns(_native=(pl.col("_record") > 0) & (pl.col("_ended") == 0))
            .collect()
        )
        native = self._read_native(frame.filter(pl.col("_native")))
        single = self._read_single_lines(frame.filter(~pl.col("_native")))
        records = pl.concat([_conform_record(native), _conform_record(single)])

        readable = records.filter(pl.col("_reason").is_null())
        events = self._build_events(readable)
        failed = events.filter(pl.col("ts").is_null())
        rejects = pl.concat(
            [
                records.filter(pl.col("_reason").is_not_null()).select("_row", "offset", line="_text", reason="_reason"),
                failed.select("_row", "offset", line="_text", reason=pl.format("invalid timestamp {}", pl.col("_time"))),
            ]
        ).sort("_row")
        rejects = rejects.with_columns(line=_redact_secrets(pl.col("line")))
        return ParseResult.from_frames(events.filter(pl.col("ts").is_not_null()).sort("_row"), rejects)

    def _read_native(self, lines: pl.DataFrame) -> pl.DataFrame:
        """Group the lines of native records into one row per record with the raw fields."""
        if lines.height == 0:
            return pl.DataFrame(schema=_RECORD_SCHEMA)
        part = pl.col("_part")
        index = pl.col("_index")
        line = pl.col("line")
        grouped = (
            lines.lazy()
            .with_columns(_part=pl.col("_part").forward_fill().over("_record"))
            .with_columns(_index=pl.int_range(pl.len()).over(["_record", "_part"]))
            .group_by("_record", maintain_order=True)
            .agg(
                _row=pl.col("_row").first(),
                offset=pl.col("offset").first(),
                _text=line.str.join("\n"),
                _a=line.filter((part == "A") & (index == 1)).first(),
                _request=line.filter((part == "B") & (index == 1)).first(),
                _request_headers=line.filter((part == "B") & (index >= 2)),
                _status_line=line.filter((part == "F") & (index == 1)).first(),
                _h=line.filter((part == "H") & (index >= 1)),
                _complete=(part == "Z").any(),
            )
        )
        a = pl.col("_a").str.extract_groups(_PART_A_RE)
        h = pl.col("_h")

        def trailer(name: str) -> pl.Expr:
            prefix = f"{name}: "
            return h.list.eval(pl.element().filter(pl.element().str.starts_with(prefix))).list.first().str.strip_prefix(prefix)

        def header(name: str) -> pl.Expr:
            return _header_from_lines(pl.col("_request_headers"), name)

        messages = h.list.eval(
            pl.element().filter(pl.element().str.starts_with("Message: ")).str.strip_prefix("Message: ")
        )
        return (
            grouped.with_columns(
                _format=pl.lit("native"),
                _time=a.struct.field("time"),
                _time_kind=pl.lit("clf"),
                _unique_id=a.struct.field("unique_id"),
                _client=a.struct.field("client"),
                _source_port=a.struct.field("client_port"),
                _server=a.struct.field("server"),
                _server_port=a.struct.field("server_port"),
                _method=pl.lit(None, dtype=pl.String),
                _target=pl.lit(None, dtype=pl.String),
                _protocol=pl.lit(None, dtype=pl.String),
                _status=pl.col("_status_line").str.extract(r"^\S+ (\d{3})\b"),
                _host=header("host"),
                _user_agent=header("user-agent"),
                _referer=header("referer"),
                _forwarded_for=header("x-forwarded-for"),
                _authorization=header("authorization"),
                _api_key=pl.coalesce(header("x-api-key"), header("apikey")),
                _messages=_messages_from_text(messages),
                _intercepted=trailer("Action").str.starts_with("Intercepted").fill_null(False),
                _producer=trailer("Producer"),
                _server_software=trailer("Server"),
                _engine_mode=trailer("Engine-Mode").str.strip_chars('"'),
                _reason=pl.when(~pl.col("_complete"))
                .then(pl.lit("ModSecurity audit record incomplete: no -Z- boundary before the next record"))
                .when(pl.col("_a").is_null())
                .then(pl.lit("ModSecurity audit record without its A part (time and addresses)"))
                .when(a.struct.field("time").is_null())
                .then(pl.lit("ModSecurity audit record: the A part is not '[time] id client port server port'")),
            )
            .drop("_a", "_h", "_request_headers", "_status_line", "_complete")
            .collect()
        )

    def _read_single_lines(self, lines: pl.DataFrame) -> pl.DataFrame:
        """Read JSON audit records; every other line outside a native record is rejected."""
        if lines.height == 0:
            return pl.DataFrame(schema=_RECORD_SCHEMA)
        frame = lines.select("_row", "offset", _text=pl.col("line"))
        frame = frame.with_columns(_json=canonical_json(frame, "_text"))
        is_json = frame["_json"].is_not_null()
        others = frame.filter(~is_json).select("_row", "offset", "_text", _reason=_describe_other_line(pl.col("_text")))
        objects = frame.filter(is_json)
        if objects.height == 0:
            return others
        objects = objects.with_columns(_doc=decode_json(objects["_json"], _JSON_TYPE))
        return pl.concat([others, self._read_json(objects)], how="diagonal_relaxed")

    def _read_json(self, objects: pl.DataFrame) -> pl.DataFrame:
        doc = pl.col("_doc")
        transaction = doc.struct.field("transaction")
        v3_request = transaction.struct.field("request")
        audit = doc.struct.field("audit_data")
        is_v3 = transaction.struct.field("time_stamp").is_not_null() | v3_request.struct.field("uri").is_not_null()
        is_v2 = transaction.struct.field("time").is_not_null() | doc.struct.field("request").struct.field("request_line").is_not_null()
        # Headers are objects whose key case varies, so they are read as JSON text.
        headers = pl.coalesce(
            pl.col("_json").str.json_path_match("$.transaction.request.headers"),
            pl.col("_json").str.json_path_match("$.request.headers"),
        )
        v3_messages = pl.col("_json").str.json_path_match("$.transaction.messages").str.json_decode(_V3_MESSAGES_TYPE)
        v2_messages = pl.col("_json").str.json_path_match("$.audit_data.messages").str.json_decode(pl.List(pl.String))
        staged = objects.lazy().with_columns(_headers=headers)

        def header(name: str) -> pl.Expr:
            return _header_from_json(pl.col("_headers"), name)

        protocol = pl.coalesce(
            pl.concat_str([pl.lit("HTTP/"), v3_request.struct.field("http_version")]),
            doc.struct.field("response").struct.field("protocol"),
        )
        return (
            staged.with_columns(
                _format=pl.when(is_v3).then(pl.lit("v3_json")).when(is_v2).then(pl.lit("v2_json")),
                _time=pl.coalesce(transaction.struct.field("time_stamp"), transaction.struct.field("time")),
                _time_kind=pl.when(transaction.struct.field("time_stamp").is_not_null()).then(pl.lit("ctime")).otherwise(pl.lit("clf")),
                _unique_id=pl.coalesce(transaction.struct.field("unique_id"), transaction.struct.field("transaction_id")),
                _client=pl.coalesce(transaction.struct.field("client_ip"), transaction.struct.field("remote_address")),
                _source_port=pl.coalesce(transaction.struct.field("client_port"), transaction.struct.field("remote_port")),
                _server=pl.coalesce(transaction.struct.field("host_ip"), transaction.struct.field("local_address")),
                _server_port=pl.coalesce(transaction.struct.field("host_port"), transaction.struct.field("local_port")),
                _request=doc.struct.field("request").struct.field("request_line"),
                _method=v3_request.struct.field("method"),
                _target=v3_request.struct.field("uri"),
                _protocol=pl.when(is_v3).then(protocol),
                _status=pl.coalesce(
                    transaction.struct.field("response").struct.field("http_code"),
                    doc.struct.field("response").struct.field("status"),
                ),
                _host=header("host"),
                _user_agent=header("user-agent"),
                _referer=header("referer"),
                _forwarded_for=header("x-forwarded-for"),
                _authorization=header("authorization"),
                _api_key=pl.coalesce(header("x-api-key"), header("apikey")),
                _messages=pl.when(is_v3)
                .then(
                    v3_messages.list.eval(
                        pl.struct(
                            id=pl.element().struct.field("details").struct.field("ruleId"),
                            msg=pl.element().struct.field("message"),
                            tags=pl.element().struct.field("details").struct.field("tags"),
                            denied=pl.lit(False),
                        )
                    )
                )
                .otherwise(_messages_from_text(v2_messages)),
                _intercepted=(audit.struct.field("action").struct.field("intercepted") == "true").fill_null(False),
                _producer=pl.coalesce(
                    transaction.struct.field("producer").struct.field("modsecurity"),
                    pl.col("_json").str.json_path_match("$.audit_data.producer").str.json_decode(pl.List(pl.String)).list.join("; "),
                ),
                _server_software=audit.struct.field("server"),
                _engine_mode=pl.coalesce(
                    transaction.struct.field("producer").struct.field("secrules_engine"), audit.struct.field("engine_mode")
                ),
                _server_id=transaction.struct.field("server_id"),
            )
            .with_columns(
                _reason=pl.when(pl.col("_format").is_null() & pl.col("_json").str.contains('"logger":"http.handlers.waf"'))
                .then(pl.lit("Coraza message in a Caddy log, not an audit-log record; read Coraza's audit log instead"))
                .when(pl.col("_format").is_null())
                .then(pl.lit("JSON object is not a ModSecurity audit record (no transaction with request data)"))
                .when(pl.col("_time").is_null())
                .then(pl.lit("ModSecurity audit record without a time (transaction.time_stamp or transaction.time)"))
            )
            .drop("_doc", "_json", "_headers")
            .collect()
        )

    def _build_events(self, records: pl.DataFrame) -> pl.DataFrame:
        timezone = self.options.timezone
        # ModSecurity 2 writes a negative UTC offset with two minus signs ("--0400").
        clf_time = parse_clf_time(pl.col("_time").str.replace(r" --(\d{4})$", " -$1"), timezone)
        ctime = local_to_utc(
            pl.col("_time").str.replace_all(r"\s+", " ").str.to_datetime("%a %b %d %H:%M:%S %Y", strict=False, time_unit="us"),
            timezone,
        )
        staged = records.lazy().with_columns(
            ts=pl.when(pl.col("_time_kind") == "ctime").then(ctime).otherwise(clf_time),
        )
        staged = with_request_line(staged, "_request")
        staged = staged.with_columns(
            method=pl.coalesce(pl.col("_method"), pl.col("method")),
            _target=pl.coalesce(pl.col("_target"), pl.col("target")),
            http_version=pl.coalesce(pl.col("_protocol"), pl.col("http_version")),
            status=pl.col("_status").cast(pl.Int32, strict=False),
            user_agent=pl.col("_user_agent"),
            referer=pl.col("_referer"),
            forwarded_for=pl.col("_forwarded_for"),
            request_id=pl.col("_unique_id"),
        )
        staged = staged.with_columns(malformed=pl.col("method").is_null() | pl.col("_target").is_null())

        staged = with_target_parts(staged, "_target", "method", "_target_")
        staged = with_client_address(staged, null_if_dash(pl.col("_client")))
        staged = staged.with_columns(
            scheme=pl.col("_target_scheme"),
            host=pl.coalesce(pl.col("_target_host"), pl.col("_host")),
            path=pl.col("_target_path"),
            query=pl.col("_target_query"),
        ).collect()

        staged = with_credentials(staged, self.fingerprint_key, "_authorization", "_api_key")
        staged = staged.with_columns(user=pl.col("_auth_user"))
        staged = with_trusted_client(staged, self.trusted_networks)

        staged = _with_waf_columns(staged)
        return staged.with_columns(
            extra=json_members(
                {
                    "audit_format": pl.col("_format"),
                    "request_raw": pl.when(pl.col("malformed")).then(pl.coalesce(pl.col("_request"), pl.col("_target"))),
                    "request_target": pl.when(pl.col("_target_is_absolute")).then(pl.col("_target")),
                    "client_ip_raw": pl.col("_client_ip_raw"),
                    "client_port": pl.coalesce(pl.col("_source_port").cast(pl.Int32, strict=False), pl.col("_client_port")),
                    "remote_addr": pl.col("_remote_addr"),
                    "server_ip": pl.col("_server"),
                    "server_port": pl.col("_server_port").cast(pl.Int32, strict=False),
                    "attack_classes": pl.when(pl.col("_classes").list.len() > 1).then(pl.col("_classes")),
                    "producer": pl.col("_producer"),
                    "server": pl.col("_server_software"),
                    "engine_mode": pl.col("_engine_mode"),
                    "server_id": pl.col("_server_id"),
                }
            )
        )


def _conform_record(frame: pl.DataFrame) -> pl.DataFrame:
    """Select the columns of ``_RECORD_SCHEMA``, adding the missing ones as nulls."""
    return frame.select(
        [
            pl.col(name).cast(dtype) if name in frame.columns else pl.lit(None, dtype=dtype).alias(name)
            for name, dtype in _RECORD_SCHEMA.items()
        ]
    )


def _with_waf_columns(staged: pl.DataFrame) -> pl.DataFrame:
    """Add waf_action, waf_rule_id, waf_message, attack_class and ``_classes`` from ``_messages``.

    The blocking rule is the one whose message starts with "Access denied",
    or the CRS anomaly rule when ModSecurity intercepted the request (or the
    response status is 403) and that rule matched. Rule ids and messages
    list it first, then the others in log order.
    """
    messages = (
        staged.select("_row", "_messages")
        .explode("_messages")
        .unnest("_messages")
        .filter(pl.col("id").is_not_null() | pl.col("msg").is_not_null())
        .with_columns(_position=pl.int_range(pl.len()).over("_row"))
    )
    matched = messages.group_by("_row").agg(
        _matched_ids=pl.col("id").drop_nulls().n_unique(),
        _denied_id=pl.col("id").filter(pl.col("denied")).first(),
        _has_anomaly_rule=(pl.col("id") == ANOMALY_BLOCKING_RULE).any(),
    )
    staged = staged.join(matched, on="_row", how="left")
    has_anomaly_rule = pl.col("_has_anomaly_rule").fill_null(False)
    is_block = (
        pl.col("_intercepted")
        | pl.col("_denied_id").is_not_null()
        | ((pl.col("status") == 403).fill_null(False) & has_anomaly_rule)
    )
    staged = staged.with_columns(
        waf_action=pl.when(is_block)
        .then(pl.lit("block"))
        .when(pl.col("_matched_ids").fill_null(0) > 0)
        .then(pl.lit("detect"))
        .otherwise(pl.lit("allow")),
        _blocking_id=pl.coalesce(
            pl.col("_denied_id"), pl.when(is_block & has_anomaly_rule).then(pl.lit(ANOMALY_BLOCKING_RULE))
        ),
    )

    ordered = (
        messages.join(staged.select("_row", "_blocking_id"), on="_row", how="left")
        .with_columns(_is_blocking=(pl.col("id") == pl.col("_blocking_id")).fill_null(False))
        .sort(["_row", "_is_blocking", "_position"], descending=[False, True, False])
    )
    per_record = ordered.group_by("_row").agg(
        waf_rule_id=pl.col("id").drop_nulls().unique(maintain_order=True).str.join(","),
        waf_message=pl.col("msg").drop_nulls().unique(maintain_order=True).str.join(" | "),
    )
    classes = (
        ordered.with_columns(_order=pl.int_range(pl.len()).over("_row"))
        .select("_row", "_order", "tags")
        .explode("tags")
        .filter(pl.col("tags").str.starts_with("attack-") & (pl.col("tags") != "attack-generic"))
        .with_columns(_class=pl.col("tags").str.strip_prefix("attack-").replace(_ATTACK_CLASSES))
        .group_by("_row")
        # Protocol anomalies (a numeric Host header, a missing Accept) come
        # with most attacks, so a more specific class goes first.
        .agg(_classes=pl.col("_class").sort_by([pl.col("_class") == "protocol", "_order"]).unique(maintain_order=True))
    )
    staged = staged.join(per_record, on="_row", how="left").join(classes, on="_row", how="left")
    return staged.with_columns(
        waf_rule_id=pl.when(pl.col("waf_rule_id") != "").then(pl.col("waf_rule_id")),
        waf_message=pl.when(pl.col("waf_message") != "").then(pl.col("waf_message")),
        attack_class=pl.col("_classes").list.first(),
    )


def _messages_from_text(messages: pl.Expr) -> pl.Expr:
    """Turn ModSecurity 2 message texts into structs of id, msg, tags and denied."""
    return messages.list.eval(
        pl.struct(
            id=pl.element().str.extract(r'\[id "(\d+)"\]'),
            msg=pl.element().str.extract(r'\[msg "((?:[^"\\]|\\.)*)"\]'),
            tags=pl.element().str.extract_all(r'\[tag "[^"]*"\]').list.eval(
                pl.element().str.strip_prefix('[tag "').str.strip_suffix('"]')
            ),
            denied=pl.element().str.starts_with("Access denied"),
        )
    )


def _header_from_lines(headers: pl.Expr, name: str) -> pl.Expr:
    """Return the value of the first ``Name: value`` line for ``name`` (case-insensitive)."""
    prefix = f"{name}:"
    return headers.list.eval(
        pl.element().filter(pl.element().str.to_lowercase().str.starts_with(prefix)).str.replace(r"^[^:]*:\s*", "")
    ).list.first()


def _header_from_json(headers: pl.Expr, name: str) -> pl.Expr:
    """Return the value of header ``name`` (case-insensitive) from a JSON object text, unescaped."""
    quoted = headers.str.extract(rf'(?i)[{{,]"{name}":("(?:[^"\\]|\\.)*")', 1)
    return quoted.str.json_path_match("$")


def _redact_secrets(text: pl.Expr) -> pl.Expr:
    """Replace the values of credential headers in a record's text."""
    return text.str.replace_all(rf"(?im)^((?:{_SECRET_HEADERS}):).*$", "$1 [redacted]").str.replace_all(
        rf'(?i)("(?:{_SECRET_HEADERS})":)"(?:[^"\\]|\\.)*"', '$1"[redacted]"'
    )


def _describe_other_line(line: pl.Expr) -> pl.Expr:
    """Return why a line outside a native record is not a JSON audit record."""
    return (
        pl.when(line.str.starts_with("#"))
        .then(pl.lit("comment line"))
        .when(line.str.contains(r"^\[[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d [\d:.]+ \d{4}\] \[[^\]]*\]"))
        .then(pl.lit("Apache error-log entry (ModSecurity message), not an audit-log record; read the audit log instead"))
        .when(line.str.contains(r"^\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2} \[[a-z]+\] "))
        .then(pl.lit("nginx error-log entry (ModSecurity message), not an audit-log record; read the audit log instead"))
        .when(line.str.contains(BOUNDARY_RE))
        .then(pl.lit("audit-log part boundary outside a record (no A part before it)"))
        .when(line.str.strip_chars().str.starts_with("{"))
        .then(pl.lit("line starts with '{' but is not a readable JSON object"))
        .otherwise(pl.lit("line is neither a JSON audit record nor inside a native audit-log record"))
    )
