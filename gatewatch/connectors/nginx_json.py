"""nginx access logs written as one JSON object per line.

Covers ``log_format ... escape=json`` and the same template written with
nginx's default escaping, which is not valid JSON (``\\xHH`` escapes, bytes
that are not UTF-8). Keys are nginx variable names such as ``remote_addr``
and ``request``; the ``fields`` option maps other keys.
"""

from __future__ import annotations

import json
import logging
import re

import polars as pl
from pydantic import Field, field_validator

from gatewatch.connectors._frames import overwrite_rows
from gatewatch.connectors._credential import fingerprint_values, split_authorization
from gatewatch.connectors._http import (
    NGINX_FALLBACK_VARIABLES,
    NGINX_VARIABLE_COLUMNS,
    normalize_client_address,
    null_if_dash,
    pick_forwarded_client,
    pick_untrusted_client,
    with_request_line,
    with_target_parts,
)
from gatewatch.connectors._text import json_object, repair_json_text
from gatewatch.connectors._time import describe_time_failure, parse_any_time
from gatewatch.connectors.base import Connector, ConnectorOptions, ParseResult
from gatewatch.events import PARSED_COLUMNS

logger = logging.getLogger(__name__)

_JSON_STRING = r'"(?:[^"\\]|\\.)*"'
# A value in the canonical form that json_path_match("$") writes (polars
# 2.1): no spaces, and a repeated key kept once with its last value. In a
# flat object every value is a string or a scalar, and a key follows "{" or ",".
_FLAT_VALUE = r'(?:"(?:[^"\\]|\\.)*"|[^,}]*)'
# A member with a scalar value, anywhere in a line that is not valid JSON.
_LOOSE_MEMBER_RE = _JSON_STRING + r'\s*:\s*(?:' + _JSON_STRING + r'|-?\d[\d.eE+-]*|true|false|null)'
# An object or array value. In the canonical form it always follows '":'.
_NESTED_VALUE_RE = r'":\s*[\[{]'
_NEEDS_REPAIR_RE = r"\\x[0-9A-Fa-f]{2}|[\x00-\x1f]"

# Columns a key can fill, beyond the nginx variable names. Roles that are not
# columns: "request" (a request line), "request_uri" (a target with query)
# and "request_time" (seconds, stored as duration_ms).
_ROLES = frozenset(PARSED_COLUMNS) - {"extra", "malformed"} | {"request", "request_uri", "request_time"}

# Keys this connector writes into extra itself. A log key with one of these
# names is stored as "<name>_from_log" instead.
_RESERVED_EXTRA_KEYS = ("request_raw", "request_target", "client_ip_raw", "remote_addr", "invalid_json")

# Integer columns whose source text is cast; a value that does not convert
# is kept in extra as "<column>_invalid".
_INTEGER_COLUMNS = ("status", "bytes_sent", "bytes_received", "asn")


# The nginx variable of the Authorization header, and the role it fills.
AUTHORIZATION_KEY = "http_authorization"
AUTHORIZATION_ROLE = "_authorization"


class NginxJsonOptions(ConnectorOptions):
    """Options of the nginx_json connector."""

    # JSON key -> nginx variable name (request_time, remote_addr, ...) or
    # normalized column name (client_ip, duration_ms, ...). A mapped key takes
    # precedence over the built-in names for the same column.
    fields: dict[str, str] = Field(default_factory=dict)
    # Number of proxies in front of the server that append to
    # X-Forwarded-For. Above 0, client_ip is taken from the forwarded chain
    # and the connecting address moves to extra.remote_addr.
    trusted_proxy_count: int = Field(default=0, ge=0)


    @field_validator("fields")
    @classmethod
    def _check_fields(cls, fields: dict[str, str]) -> dict[str, str]:
        for key, target in fields.items():
            if not key:
                raise ValueError("fields: a JSON key must not be empty")
            role = NGINX_VARIABLE_COLUMNS.get(target, target)
            if role not in _ROLES:
                raise ValueError(
                    f"fields: {key!r} maps to unknown target {target!r}; use an nginx variable name "
                    f"({', '.join(sorted(NGINX_VARIABLE_COLUMNS))}) or a column name "
                    f"({', '.join(sorted(_ROLES - {'request', 'request_uri', 'request_time'}))})"
                )
        return fields


class NginxJsonConnector(Connector):
    """nginx JSON access logs, with or without ``escape=json``."""

    name = "nginx_json"
    aliases = ("nginx_escape_json",)
    options_model = NginxJsonOptions
    options: NginxJsonOptions

    def __init__(self, options: ConnectorOptions | None = None, fingerprint_key: bytes = b""):
        super().__init__(options, fingerprint_key=fingerprint_key)
        self._role_keys = self._build_role_keys()
        self._keys = sorted({key for keys in self._role_keys.values() for key in keys})
        # Keys whose value is fully represented by a column, so they leave
        # extra. When the fields option maps a key to a column, the built-in
        # keys for that column become fallbacks and stay in extra too.
        mapped_roles = {NGINX_VARIABLE_COLUMNS.get(target, target) for target in self.options.fields.values()}
        self._consumed_keys = sorted(
            key
            for key in self._keys
            if key in self.options.fields
            or (key not in NGINX_FALLBACK_VARIABLES and self._role_of(key) not in mapped_roles)
        )

    def _role_of(self, key: str) -> str:
        return NGINX_VARIABLE_COLUMNS.get(key, key)

    def _build_role_keys(self) -> dict[str, list[str]]:
        """Return, per role, the JSON keys that fill it, most preferred first."""
        role_keys: dict[str, list[str]] = {}
        for key, target in self.options.fields.items():
            role_keys.setdefault(NGINX_VARIABLE_COLUMNS.get(target, target), []).append(key)
        mapped = set(self.options.fields)
        for key, role in NGINX_VARIABLE_COLUMNS.items():
            if key not in mapped:
                role_keys.setdefault(role, []).append(key)
        for column in sorted(_ROLES):
            if column not in mapped and column not in NGINX_VARIABLE_COLUMNS:
                role_keys.setdefault(column, []).append(column)
        # $http_authorization is read only to fingerprint it; its raw value never reaches extra.
        if AUTHORIZATION_KEY not in mapped:
            role_keys.setdefault(AUTHORIZATION_ROLE, []).append(AUTHORIZATION_KEY)
        return role_keys

    def parse(self, lines: pl.DataFrame) -> ParseResult:
        frame = lines.select(pl.col("offset").cast(pl.Int64), pl.col("line").cast(pl.String)).with_row_index("_row")
        documents = _read_documents(frame)
        objects = documents.filter(pl.col("_json").is_not_null())
        not_objects = documents.filter(pl.col("_json").is_null())

        split = self._split_known_and_extra(objects)
        events = self._build_events(split)
        reasons = events.select(
            pl.when(pl.col("ts").is_null()).then(self._describe_time_failure()).alias("reason")
        ).to_series()
        rejects = pl.concat(
            [
                not_objects.select("_row", "offset", "line", reason=pl.col("_reason")),
                events.filter(reasons.is_not_null()).select(
                    "_row", "offset", "line", reason=reasons.filter(reasons.is_not_null())
                ),
            ]
        ).sort("_row")
        events = events.filter(reasons.is_null())
        return ParseResult.from_frames(events, rejects)

    def _split_known_and_extra(self, objects: pl.DataFrame) -> pl.DataFrame:
        """Add ``_known`` (the keys this connector reads, as strings) and ``_extra_log``.

        ``_extra_log`` is a JSON object text with the members that no column
        represents, or null.
        """
        split = objects.lazy().with_columns(
            _known_json=pl.col("_json"),
            _extra_log=_extra_members_text(pl.col("_json"), self._consumed_keys),
            _nested=pl.col("_json").str.contains(_NESTED_VALUE_RE).fill_null(False),
        ).collect()
        is_nested = split["_nested"]
        if is_nested.any():
            # NOTE: objects with nested values (rare in nginx log_format
            # templates) are split in Python, one line at a time.
            split = overwrite_rows(split, is_nested, self._split_in_python(split.filter(is_nested)))

        dtype = pl.Struct({key: pl.String for key in self._keys})
        decode = pl.col("_known_json").str.json_decode(dtype).alias("_known")
        try:
            return split.lazy().with_columns(decode).collect()
        except pl.exceptions.ComputeError as error:
            # The nested check above should make this impossible; stay correct anyway.
            logger.warning("bulk JSON decoding failed, decoding %d lines one by one: %s", split.height, error)
            split = split.with_columns(self._split_in_python(split).get_columns())
            return split.lazy().with_columns(decode).collect()

    def _split_in_python(self, objects: pl.DataFrame) -> pl.DataFrame:
        pairs = [_split_nested_object(text, self._keys, self._consumed_keys) for text in objects["_json"]]
        return pl.DataFrame(
            {
                "_known_json": pl.Series([known for known, _ in pairs], dtype=pl.String),
                "_extra_log": pl.Series([extra for _, extra in pairs], dtype=pl.String),
            }
        )

    def _role_value(self, role: str) -> pl.Expr:
        keys = self._role_keys.get(role, [])
        values = [pl.col("_known").struct.field(key) for key in keys]
        if not values:
            return pl.lit(None, dtype=pl.String)
        return pl.coalesce(values) if len(values) > 1 else values[0]

    def _build_events(self, split: pl.DataFrame) -> pl.DataFrame:
        timezone = self.options.timezone
        value = self._role_value
        request = value("request")
        staged = split.lazy().with_columns(_time_text=value("ts"), _request=request)
        staged = with_request_line(staged, "_request").rename(
            {"method": "_request_method", "target": "_request_target", "http_version": "_request_http_version"}
        )
        client_ip, client_ip_raw = normalize_client_address(null_if_dash(value("client_ip")))
        staged = staged.with_columns(
            ts=parse_any_time(pl.col("_time_text"), timezone),
            client_ip=client_ip,
            _client_ip_raw=client_ip_raw,
            method=pl.coalesce(pl.col("_request_method"), null_if_dash(value("method"))),
            _target=pl.coalesce(pl.col("_request_target"), null_if_dash(value("request_uri"))),
            http_version=pl.coalesce(pl.col("_request_http_version"), null_if_dash(value("http_version"))),
            malformed=pl.col("_request").is_not_null() & pl.col("_request_method").is_null(),
        )
        staged = with_target_parts(staged, "_target", "method", "_target_")
        columns, invalid = self._value_columns()
        staged = staged.with_columns(**columns)
        if self.options.trusted_proxy_count or self.trusted_networks:
            chain = pl.concat_str([pl.col("forwarded_for"), pl.col("client_ip")], separator=", ")
            if self.trusted_networks:
                staged = staged.collect()
                staged = staged.with_columns(
                    _picked=pick_untrusted_client(staged.select(chain).to_series(), self.trusted_networks)
                ).lazy()
            else:
                staged = staged.with_columns(_picked=pick_forwarded_client(chain, self.options.trusted_proxy_count))
            picked, picked_raw = normalize_client_address(null_if_dash(pl.col("_picked")))
            staged = staged.with_columns(
                client_ip=pl.coalesce(picked, pl.col("client_ip")),
                _client_ip_raw=pl.when(picked.is_not_null()).then(picked_raw).otherwise(pl.col("_client_ip_raw")),
                _remote_addr=pl.when(picked.is_not_null() & (picked != pl.col("client_ip"))).then(pl.col("client_ip")),
            )
        else:
            staged = staged.with_columns(_remote_addr=pl.lit(None, dtype=pl.String))

        own_extra = json_object(
            {
                "request_raw": pl.when(pl.col("malformed")).then(pl.col("_request")),
                "request_target": pl.when(pl.col("_target_is_absolute")).then(pl.col("_target")),
                "client_ip_raw": pl.col("_client_ip_raw"),
                "remote_addr": pl.col("_remote_addr"),
                **invalid,
                "invalid_json": pl.when(pl.col("_salvaged")).then(pl.lit(True)),
            }
        )
        staged = staged.with_columns(extra=_merge_json_objects(own_extra, pl.col("_extra_log"))).collect()
        fingerprints = fingerprint_values(staged["_auth_credential"], self.fingerprint_key)
        return staged.with_columns(credential_id=pl.coalesce(fingerprints, pl.col("credential_id")))

    def _value_columns(self) -> tuple[dict[str, pl.Expr], dict[str, pl.Expr]]:
        """Return the columns read from one key each, and the extra members for values that did not convert."""
        value = self._role_value
        columns: dict[str, pl.Expr] = {
            "scheme": pl.coalesce(null_if_dash(value("scheme")), pl.col("_target_scheme")),
            "host": pl.coalesce(null_if_dash(value("host")), pl.col("_target_host")),
            "path": pl.coalesce(pl.col("_target_path"), null_if_dash(value("path"))),
            "query": pl.coalesce(pl.col("_target_query"), null_if_dash(value("query"))),
        }
        for column in ("forwarded_for", "user_agent", "referer", "user", "request_id", "credential_id",
                       "country", "waf_action", "waf_rule_id", "waf_message", "attack_class"):
            columns[column] = null_if_dash(value(column))
        # The credential of an Authorization header, fingerprinted once the frame is collected.
        # NOTE: a key mapped to credential_id is stored as written, because rule lists match
        # those values. Map only identifiers (key ids, consumer names) to it, never secrets.
        authorization = split_authorization(null_if_dash(value(AUTHORIZATION_ROLE)))
        columns["_auth_credential"] = authorization["_auth_credential"]
        columns["user"] = pl.coalesce(columns["user"], authorization["_auth_user"])

        invalid: dict[str, pl.Expr] = {}
        for column in _INTEGER_COLUMNS:
            raw = null_if_dash(value(column))
            columns[column] = raw.cast(PARSED_COLUMNS[column], strict=False)
            invalid[f"{column}_invalid"] = pl.when(columns[column].is_null()).then(raw)
        duration_ms = null_if_dash(value("duration_ms"))
        request_time = null_if_dash(value("request_time"))
        columns["duration_ms"] = pl.coalesce(
            duration_ms.cast(pl.Float64, strict=False),
            request_time.cast(pl.Float64, strict=False) * 1000.0,
        )
        invalid["duration_ms_invalid"] = pl.when(columns["duration_ms"].is_null()).then(
            pl.coalesce(duration_ms, request_time)
        )
        return columns, invalid

    def _describe_time_failure(self) -> pl.Expr:
        keys = ", ".join(self._role_keys.get("ts", []))
        return (
            pl.when(pl.col("_time_text").is_null())
            .then(pl.lit(f"missing time field (one of {keys})"))
            .otherwise(describe_time_failure(pl.col("_time_text"), self.options.timezone, parse_any_time))
        )


def _read_documents(frame: pl.DataFrame) -> pl.DataFrame:
    """Add ``_json`` (canonical JSON object text or null), ``_salvaged`` and ``_reason``.

    Lines with nginx's ``\\xHH`` escapes or raw control characters are
    repaired first. A line that starts with "{" but is still not valid JSON
    (for example cut short) keeps the members that parse on their own, and
    ``_salvaged`` marks it.
    """
    text = frame["line"]
    needs_repair = frame.lazy().select(pl.col("line").str.contains(_NEEDS_REPAIR_RE).fill_null(False)).collect().to_series()
    positions = needs_repair.arg_true()
    if positions.len():
        # NOTE: Python runs once per line that contains \xHH or a control
        # character, which nginx writes only for unusual bytes.
        repaired = [repair_json_text(line) for line in text.gather(positions).to_list()]
        text = text.scatter(positions, pl.Series(repaired, dtype=pl.String))

    looks_like_object = pl.col("_text").str.starts_with("{")
    documents = (
        frame.lazy()
        .with_columns(_text=text.str.strip_chars())
        .with_columns(_json=pl.when(looks_like_object).then(pl.col("_text").str.json_path_match("$")))
        .with_columns(_json=pl.when(pl.col("_json").str.starts_with("{")).then(pl.col("_json")))
        .collect()
    )

    is_broken = documents.select((looks_like_object & pl.col("_json").is_null()).fill_null(False)).to_series()
    documents = documents.with_columns(_salvaged=is_broken)
    if is_broken.any():
        salvaged = documents.filter(is_broken).select(_json=_salvage_members(pl.col("_text")))
        documents = overwrite_rows(documents, is_broken, salvaged)

    return documents.with_columns(
        _reason=pl.when(pl.col("_json").is_null()).then(
            pl.when(pl.col("_text").str.starts_with("{"))
            .then(pl.lit("line starts with '{' but contains no readable JSON member"))
            .otherwise(pl.lit("line is not a JSON object"))
        ),
    )


def _salvage_members(text: pl.Expr) -> pl.Expr:
    """Rebuild a JSON object from the members of a line that each parse on their own."""
    members = text.str.extract_all(_LOOSE_MEMBER_RE)
    valid = members.list.eval(
        pl.element().filter(pl.concat_str([pl.lit("{"), pl.element(), pl.lit("}")]).str.json_path_match("$").is_not_null())
    )
    rebuilt = pl.concat_str([pl.lit("{"), valid.list.join(","), pl.lit("}")])
    canonical = pl.when(valid.list.len() > 0).then(rebuilt.str.json_path_match("$"))
    return pl.when(canonical.str.starts_with("{")).then(canonical)


def _extra_members_text(document: pl.Expr, consumed_keys: list[str]) -> pl.Expr:
    """Return a flat canonical JSON object text without the consumed members, or null when empty.

    Inside a JSON string every quote is escaped, so ',"key":' and '{"key":'
    can only start a member. Two replacements are faster than splitting
    each object into members.
    """
    names = "|".join(re.escape(key) for key in consumed_keys)
    later_members = rf',"(?:{names})":{_FLAT_VALUE}'
    first_member = rf'^\{{"(?:{names})":{_FLAT_VALUE},?'
    reserved = "|".join(_RESERVED_EXTRA_KEYS)
    remaining = (
        document.str.replace_all(later_members, "")
        .str.replace(first_member, "{")
        .str.replace_all(rf'([{{,])"({reserved})":', r'$1"${2}_from_log":')
    )
    return pl.when(remaining != "{}").then(remaining)


def _scalar_text(value: object) -> str | None:
    """Return a decoded JSON value as the text the bulk decoder would produce."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _split_nested_object(document: str, keys: list[str], consumed_keys: list[str]) -> tuple[str, str | None]:
    """Return the known keys as a flat JSON object of strings, and the extra members."""
    members = json.loads(document)
    known = {key: _scalar_text(members[key]) for key in keys if key in members}
    consumed = set(consumed_keys)
    extra = {}
    for key, member in members.items():
        if key in consumed:
            continue
        extra[f"{key}_from_log" if key in _RESERVED_EXTRA_KEYS else key] = member
    extra_text = json.dumps(extra, ensure_ascii=False, separators=(",", ":")) if extra else None
    return json.dumps(known, ensure_ascii=False, separators=(",", ":")), extra_text


def _merge_json_objects(first: pl.Expr, second: pl.Expr) -> pl.Expr:
    """Join two JSON object texts (either may be null) into one object text."""
    first_body = first.str.strip_prefix("{").str.strip_suffix("}")
    second_body = second.str.strip_prefix("{").str.strip_suffix("}")
    body = pl.concat_str([first_body, second_body], separator=",", ignore_nulls=True)
    return pl.when(body != "").then(pl.concat_str([pl.lit("{"), body, pl.lit("}")]))

