"""JSON-lines reading and event building shared by the JSON log connectors.

A chunk of lines is decoded once by DuckDB's JSON functions: each connector
requests a set of values by JSON path (or by a DuckDB expression over the
document) and gets them back as text columns. The members of the top-level
object that no column represents are kept, as JSON, for ``extra``.

The connector then names the role of each value (``ts``, ``client_ip``,
``request``, ``status``, ...) and ``build_events`` turns the roles into the
normalized event columns with polars expressions.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import duckdb
import polars as pl

from gatewatch.connectors._credential import fingerprint_values, split_authorization
from gatewatch.connectors._http import (
    normalize_client_address,
    null_if_dash,
    pick_untrusted_client,
    with_request_line,
    with_target_parts,
)
from gatewatch.connectors._text import repair_json_text
from gatewatch.connectors._time import local_to_utc, parse_any_time
from gatewatch.events import PARSED_COLUMNS

# Headers whose values are credentials or session tokens. Their values are
# fingerprinted into credential_id (Authorization, X-Api-Key) or dropped,
# and never copied into extra.
SENSITIVE_HEADERS: tuple[str, ...] = (
    "authorization",
    "proxy-authorization",
    "x-api-key",
    "cookie",
    "set-cookie",
)

# Roles a value can take, beyond the normalized columns: a whole request
# line, a request target (path with query, or an absolute URL), a duration
# in seconds, an Authorization header value and a bare API key.
EXTRA_ROLES: frozenset[str] = frozenset({"request", "target", "duration_s", "authorization", "api_key"})
VALUE_ROLES: frozenset[str] = (
    frozenset(PARSED_COLUMNS) - {"extra", "malformed", "credential_id"}
) | EXTRA_ROLES

# Time formats a value may be declared in. "auto" reads ISO 8601 / RFC 3339,
# CLF and Unix epochs, and takes the epoch unit from the number of digits.
TIME_FORMATS: tuple[str, ...] = ("auto", "iso8601", "clf", "epoch_s", "epoch_ms", "epoch_us", "epoch_ns")

_NEEDS_REPAIR_RE = r"\\x[0-9A-Fa-f]{2}|[\x00-\x1f]"
# A \uD800-\uDFFF escape. Python's json.dumps writes one for a lone surrogate,
# which DuckDB rejects as invalid JSON.
_SURROGATE_ESCAPE_RE = r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}"
_LONE_SURROGATE_RE = re.compile(
    r"(?<!\\)((?:\\\\)*)(\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})"
    r"|(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2})"
)
_PATH_KEY_RE = re.compile(r"^(?P<key>[^.\[\]]+)(?P<indexes>(?:\[\d+\])*)$")


def sql_string(text: str) -> str:
    """Quote ``text`` as a SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def json_path(keys: Sequence[str | int]) -> str:
    """Return the DuckDB JSON path of a member, such as ``$."httpRequest"."clientIp"``.

    Raises ValueError for a key that contains a double quote or a backslash,
    which a DuckDB path cannot express.
    """
    parts = ["$"]
    for key in keys:
        if isinstance(key, int):
            parts.append(f"[{key}]")
            continue
        if '"' in key or "\\" in key:
            raise ValueError(f"JSON key {key!r} contains a quote or a backslash, which a path cannot name")
        parts.append(f'."{key}"')
    return "".join(parts)


def parse_dotted_path(text: str) -> list[str | int]:
    """Split a path written as ``httpRequest.clientIp``, ``$.a.b`` or ``headers[0].value``.

    Raises ValueError naming the path when it is empty or malformed.
    """
    body = text.strip()
    if body.startswith("$."):
        body = body[2:]
    if not body:
        raise ValueError(f"invalid JSON path {text!r}; write keys separated by dots, such as httpRequest.clientIp")
    keys: list[str | int] = []
    for part in body.split("."):
        match = _PATH_KEY_RE.match(part)
        if match is None:
            raise ValueError(
                f"invalid JSON path {text!r}; write keys separated by dots and list indexes as [0], "
                "such as headers[0].value"
            )
        keys.append(match["key"])
        keys.extend(int(index) for index in re.findall(r"\[(\d+)\]", match["indexes"]))
    json_path(keys)
    return keys


class PathText(str):
    """The SQL expression for the member at a JSON path, as text (JSON text for objects and lists).

    It is a plain SQL string, so it can be written into larger expressions.
    Given directly as a value to ``read_json_objects``, it is read together
    with the other paths in one pass over the document.
    """

    path: str

    def __new__(cls, path: str) -> PathText:
        text = super().__new__(cls, f"json_extract_string(doc, {sql_string(path)})")
        text.path = path
        return text


def text_at(*keys: str | int) -> PathText:
    """Return the SQL expression for the member at ``keys`` as text (JSON text for objects and lists)."""
    return PathText(json_path(keys))


def header_value(headers_sql: str, name: str) -> str:
    """Return the SQL expression for one header of a ``[{"name":..,"value":..}]`` list.

    Header names compare case-insensitively; the first match wins.
    """
    return (
        f"list_filter({headers_sql}, lambda h: lower(h.name) = {sql_string(name.lower())})[1].value"
    )


def header_list(json_sql: str) -> str:
    """Return the SQL expression that reads a ``[{"name":..,"value":..}]`` JSON value as a list of structs.

    ``json_sql`` is a JSON expression, such as ``json_extract(doc, '$.headers')``.
    A value of another shape gives null (``json_transform`` does not raise).
    """
    return f"""try(json_transform({json_sql}, '[{{"name":"VARCHAR","value":"VARCHAR"}}]'))"""


def safe_headers_json(headers_sql: str, also_drop: Sequence[str] = ()) -> str:
    """Return the header list as JSON text without the credential and cookie headers, or null when empty.

    ``also_drop`` names more headers to leave out, such as the ones a column
    already contains.
    """
    names = ", ".join(sql_string(name.lower()) for name in (*SENSITIVE_HEADERS, *also_drop))
    return f"nullif(to_json(list_filter({headers_sql}, lambda h: lower(h.name) NOT IN ({names}))), '[]')"


def header_map_value(path_sql: str, name: str) -> str:
    """Return one header of an object member ``{"Name": "value", ...}``, matching names case-insensitively."""
    return (
        f"list_filter(map_entries(try(json_transform(json_extract(doc, {path_sql}), '\"MAP(VARCHAR, VARCHAR)\"'))), "
        f"lambda e: lower(e.key) = {sql_string(name.lower())})[1].value"
    )


def safe_header_map_json(path_sql: str) -> str:
    """Return an object member of headers as JSON text without the credential and cookie headers."""
    names = ", ".join(sql_string(name) for name in SENSITIVE_HEADERS)
    return (
        "to_json(map_from_entries(list_filter(map_entries(try(json_transform(json_extract(doc, "
        f"{path_sql}), '\"MAP(VARCHAR, JSON)\"'))), lambda e: lower(e.key) NOT IN ({names}))))"
    )


@dataclass
class JsonChunk:
    """The decoded objects of a chunk, and the lines that are not JSON objects.

    ``objects`` has ``_row``, ``offset``, ``line``, one String column per
    requested value and ``_extra_log`` (the unconsumed members as a JSON
    object text, or null). ``rejects`` has ``_row``, ``offset``, ``line`` and
    ``reason``.
    """

    objects: pl.DataFrame
    rejects: pl.DataFrame


def read_json_objects(
    lines: pl.DataFrame,
    values: dict[str, str],
    consumed_keys: Iterable[str | Sequence[str]],
    prepared: dict[str, str] | None = None,
) -> JsonChunk:
    """Decode each line as a JSON object and read ``values`` from it.

    ``values`` maps an output column name to a DuckDB expression over the
    column ``doc`` (see ``text_at``) and the ``prepared`` columns, which are
    computed once per row first (such as a decoded header list that several
    values read). ``consumed_keys`` are the members that the values
    represent: a top-level key, or a path of keys for a nested member. Every
    other member is kept in ``_extra_log``. Lines that contain ``\\xHH`` text (bytes that were not
    UTF-8) or raw control characters are repaired first, as nginx_json does.
    """
    frame = lines.select(pl.col("offset").cast(pl.Int64), pl.col("line").cast(pl.String)).with_row_index("_row")
    documents = frame["line"]
    needs_repair = documents.str.contains(_NEEDS_REPAIR_RE).fill_null(False)
    positions = needs_repair.arg_true()
    if positions.len():
        # NOTE: Python runs once per line with \xHH text or a control
        # character; JSON log writers escape both, so such lines are rare.
        repaired = [repair_json_text(line) for line in documents.gather(positions).to_list()]
        documents = documents.scatter(positions, pl.Series(repaired, dtype=pl.String))
    has_surrogate = documents.str.contains(_SURROGATE_ESCAPE_RE).fill_null(False)
    positions = has_surrogate.arg_true()
    if positions.len():
        # A lone surrogate escape becomes U+FFFD, so that the record is kept
        # (hostile input puts them in headers). Python runs for these lines only.
        fixed = [_LONE_SURROGATE_RE.sub(r"\1\\ufffd", line) for line in documents.gather(positions).to_list()]
        documents = documents.scatter(positions, pl.Series(fixed, dtype=pl.String))
    frame = frame.with_columns(doc=documents.str.strip_chars())

    connection = duckdb.connect()
    try:
        connection.register("chunk", frame.select("_row", "doc").to_arrow())
        kinds = connection.sql(
            "SELECT _row, CASE WHEN json_valid(doc) THEN json_type(doc) END AS _kind FROM chunk ORDER BY _row"
        ).pl()
        frame = frame.with_columns(_kind=kinds["_kind"])
        is_object = (frame["_kind"] == "OBJECT").fill_null(False)
        objects = frame.filter(is_object)
        connection.unregister("chunk")
        connection.register("chunk", objects.select("_row", "doc").to_arrow())
        decoded = connection.sql(_value_query(values, list(consumed_keys), prepared or {})).pl()
    finally:
        connection.close()

    objects = objects.select("_row", "offset", "line").join(decoded, on="_row", how="left").sort("_row")
    # A patch of a nested member adds an empty parent object where the log
    # has none, so empty members are removed once per level.
    deepest = max((1 if isinstance(path, str) else len(path) for path in consumed_keys), default=1)
    objects = objects.with_columns(_extra_log=_drop_empty_members(pl.col("_extra_log"), deepest))
    rejects = frame.filter(~is_object).select(
        "_row",
        "offset",
        "line",
        reason=pl.when(pl.col("_kind").is_not_null())
        .then(pl.format("line is a JSON {}, not an object", pl.col("_kind").str.to_lowercase()))
        .when(pl.col("doc").str.starts_with("{"))
        .then(pl.lit("invalid JSON: the object is cut short or malformed"))
        .otherwise(pl.lit("invalid JSON: the line is not a JSON object")),
    )
    return JsonChunk(objects=objects, rejects=rejects)


def _value_query(values: dict[str, str], consumed_keys: list[str | Sequence[str]], prepared: dict[str, str]) -> str:
    # Plain paths are read with one json_extract_string call that parses the
    # document once, instead of once per path.
    paths = [expression.path for expression in values.values() if isinstance(expression, PathText)]
    position = {path: index + 1 for index, path in enumerate(dict.fromkeys(paths))}
    columns = []
    for name, expression in values.items():
        if isinstance(expression, PathText):
            expression = f"_paths[{position[expression.path]}]"
        columns.append(f"({expression})::VARCHAR AS {_identifier(name)}")
    if position:
        listed = ", ".join(sql_string(path) for path in position)
        prepared = {"_paths": f"json_extract_string(doc, [{listed}])", **prepared}

    # The consumed members leave the document through a JSON merge patch
    # that sets them to null (RFC 7396). A repeated key goes with it.
    patch: dict[str, object] = {}
    for path in consumed_keys:
        keys = [path] if isinstance(path, str) else list(path)
        node = patch
        for key in keys[:-1]:
            child = node.setdefault(key, {})
            if child is None:
                break
            node = child
        else:
            node[keys[-1]] = None
    extra = f"json_merge_patch(doc, {sql_string(json.dumps(patch))})::VARCHAR"
    select = ", ".join(["_row", *columns, f"{extra} AS _extra_log"])
    prepared_columns = "".join(f", {expression} AS {_identifier(name)}" for name, expression in prepared.items())
    return f"WITH prepared AS (SELECT *{prepared_columns} FROM chunk) SELECT {select} FROM prepared"


# A member without a value ("-", "" or null), or whose value is an empty
# object. In the canonical JSON that DuckDB writes, a quote right after ","
# or "{" always starts a key, because quotes inside strings are escaped.
_KEY = r'"(?:[^"\\]|\\.)*":'
_EMPTY_VALUE = r'(?:"-"|""|null|\{\})'
_EMPTY_MEMBER_AFTER_COMMA = "," + _KEY + _EMPTY_VALUE
_EMPTY_MEMBER_FIRST = r"\{" + _KEY + _EMPTY_VALUE + ",?"


def _drop_empty_members(text: pl.Expr, passes: int) -> pl.Expr:
    """Remove members without a value, ``passes`` times for nested objects, and return null for ``{}``."""
    for _ in range(passes):
        text = text.str.replace_all(_EMPTY_MEMBER_AFTER_COMMA, "").str.replace_all(_EMPTY_MEMBER_FIRST, "{")
    return pl.when(text != "{}").then(text)


def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def parse_epoch(text: pl.Expr, unit: str | None = None) -> pl.Expr:
    """Parse Unix epoch text into naive UTC.

    With ``unit`` None, the unit comes from the number of integer digits of
    each value: up to 11 digits are seconds (until the year 5138), 12 to 14
    milliseconds, 15 to 17 microseconds and 18 or more nanoseconds. A
    fraction is kept down to the microsecond.
    """
    stripped = text.str.strip_chars()
    parts = stripped.str.extract_groups(r"^(?P<whole>-?\d{1,20})(?:\.(?P<fraction>\d+))?$")
    whole = parts.struct.field("whole")
    fraction = parts.struct.field("fraction").fill_null("")
    digits = whole.str.strip_prefix("-").str.len_chars()
    scale_by_unit = {"epoch_s": 6, "epoch_ms": 3, "epoch_us": 0, "epoch_ns": -3}
    if unit is None:
        # Decimal places to shift right to reach microseconds.
        shift = (
            pl.when(digits <= 11).then(6).when(digits <= 14).then(3).when(digits <= 17).then(0).otherwise(-3)
        ).cast(pl.Int64)
    else:
        shift = pl.lit(scale_by_unit[unit], dtype=pl.Int64)
    # Integer arithmetic on the digits keeps nanosecond epochs exact, which
    # a Float64 does not (2**53 is about 9e15).
    microseconds = (
        pl.when(shift >= 0)
        .then(pl.concat_str([whole, fraction.str.pad_end(6, "0").str.head(shift)]))
        .otherwise(whole.str.head(whole.str.len_chars().cast(pl.Int64) + shift))
    )
    value = microseconds.cast(pl.Int64, strict=False)
    return pl.when(whole.is_not_null()).then(pl.from_epoch(value, time_unit="us"))


def parse_time(text: pl.Expr, timezone: str, time_format: str = "auto") -> pl.Expr:
    """Parse timestamp text into naive UTC according to ``time_format``.

    ``time_format`` is one of ``TIME_FORMATS`` or a strftime pattern (a
    pattern without ``%z`` is read in ``timezone``).
    """
    if time_format == "auto":
        return pl.coalesce(parse_epoch(text), parse_any_time(text, timezone))
    if time_format.startswith("epoch_"):
        return parse_epoch(text, time_format)
    if time_format in ("iso8601", "clf"):
        return parse_any_time(text, timezone)
    parsed = text.str.strip_chars().str.to_datetime(time_format, strict=False, time_unit="us")
    if "%z" in time_format or "%#z" in time_format or "%:z" in time_format:
        return parsed.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
    return local_to_utc(parsed, timezone)


def describe_time(text: pl.Expr, field: str) -> pl.Expr:
    """Return the reject reason of a missing or unreadable timestamp."""
    return (
        pl.when(text.is_null() | (text.str.strip_chars() == ""))
        .then(pl.lit(f"missing timestamp ({field})"))
        .otherwise(pl.format("invalid timestamp {} in {}", text, pl.lit(field)))
    )


@dataclass
class EventSettings:
    """Settings that ``build_events`` takes from the connector."""

    timezone: str
    time_format: str
    time_field: str
    trusted_networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]
    fingerprint_key: bytes


def build_events(
    objects: pl.DataFrame,
    roles: dict[str, pl.Expr],
    settings: EventSettings,
    extra_members: dict[str, pl.Expr] | None = None,
    raw_extra_members: dict[str, pl.Expr] | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Turn role values into normalized events; return the events and the rejects.

    ``roles`` maps a role of ``VALUE_ROLES`` to a String expression over
    ``objects``. A role that is absent is null. ``-`` and the empty string
    are null for every role. ``extra_members`` (values) and
    ``raw_extra_members`` (JSON texts, inserted as they are) are added to
    ``extra`` before the log's own unconsumed members. The one reject reason is a missing or
    invalid timestamp.
    """
    unknown = set(roles) - VALUE_ROLES
    if unknown:
        raise ValueError(f"unknown roles {sorted(unknown)}; use names from VALUE_ROLES")
    values = {f"_v_{role}": null_if_dash(expression.cast(pl.String)) for role, expression in roles.items()}
    for role in VALUE_ROLES - set(roles):
        values[f"_v_{role}"] = pl.lit(None, dtype=pl.String)

    staged = objects.lazy().with_columns(**values)
    staged = with_request_line(staged, "_v_request").rename(
        {"method": "_line_method", "target": "_line_target", "http_version": "_line_http_version"}
    )
    staged = staged.with_columns(
        method=pl.coalesce("_line_method", "_v_method"),
        _target=pl.coalesce("_line_target", "_v_target"),
        http_version=pl.coalesce("_line_http_version", "_v_http_version"),
        malformed=pl.col("_v_request").is_not_null() & pl.col("_line_method").is_null(),
    )
    staged = with_target_parts(staged, "_target", "method", "_target_")
    client_ip, client_ip_raw = normalize_client_address(pl.col("_v_client_ip").str.strip_chars())
    query_role = pl.col("_v_query").str.strip_prefix("?")
    staged = staged.with_columns(
        ts=parse_time(pl.col("_v_ts"), settings.timezone, settings.time_format),
        client_ip=client_ip,
        _client_ip_raw=client_ip_raw,
        forwarded_for=pl.col("_v_forwarded_for"),
        scheme=pl.coalesce(pl.col("_v_scheme").str.to_lowercase(), "_target_scheme"),
        host=pl.coalesce("_v_host", "_target_host"),
        path=pl.coalesce("_target_path", "_v_path"),
        query=pl.coalesce("_target_query", pl.when(query_role != "").then(query_role)),
        status=_to_integer("_v_status", pl.Int32),
        bytes_sent=_to_integer("_v_bytes_sent", pl.Int64),
        bytes_received=_to_integer("_v_bytes_received", pl.Int64),
        asn=_to_integer("_v_asn", pl.Int64),
        duration_ms=pl.coalesce(
            pl.col("_v_duration_ms").cast(pl.Float64, strict=False),
            pl.col("_v_duration_s").cast(pl.Float64, strict=False) * 1000.0,
        ),
        user_agent=pl.col("_v_user_agent"),
        referer=pl.col("_v_referer"),
        request_id=pl.col("_v_request_id"),
        country=pl.col("_v_country").str.to_uppercase(),
        waf_action=pl.col("_v_waf_action").str.to_lowercase(),
        waf_rule_id=pl.col("_v_waf_rule_id"),
        waf_message=pl.col("_v_waf_message"),
        attack_class=pl.col("_v_attack_class"),
        **split_authorization(pl.col("_v_authorization")),
    ).with_columns(
        user=pl.coalesce("_v_user", "_auth_user"),
        _credential=pl.coalesce("_auth_credential", "_v_api_key"),
        _remote_addr=pl.lit(None, dtype=pl.String),
    )
    staged = staged.collect()

    if settings.trusted_networks:
        staged = _with_untrusted_client(staged, settings.trusted_networks)
    staged = staged.with_columns(credential_id=fingerprint_values(staged["_credential"], settings.fingerprint_key))

    own = {
        "request_raw": pl.when(pl.col("malformed")).then(pl.col("_v_request")),
        "request_target": pl.when(pl.col("_target_is_absolute")).then(pl.col("_target")),
        "client_ip_raw": pl.col("_client_ip_raw"),
        "remote_addr": pl.col("_remote_addr"),
        **_unconverted_members(),
        **(extra_members or {}),
    }
    # Each part is stored in a column before merging, because polars
    # recomputes an expression for every place that reads it.
    staged = staged.with_columns(_own_extra=encode_members(own), _raw_extra=raw_json_object(raw_extra_members or {}))
    staged = staged.with_columns(_own_extra=merge_json_objects(pl.col("_own_extra"), pl.col("_raw_extra")))
    # A log member named like one of the connector's own members is renamed,
    # so extra never has a key twice. NOTE: the rename also applies to such
    # keys inside nested objects, because a regex cannot tell the depth.
    own_names = "|".join(re.escape(name) for name in (*own, *(raw_extra_members or {})))
    log_extra = pl.col("_extra_log").str.replace_all(f'([{{,])"({own_names})":', '$1"${2}_from_log":')
    staged = staged.with_columns(extra=merge_json_objects(pl.col("_own_extra"), log_extra))

    reasons = staged.select(
        pl.when(pl.col("ts").is_null()).then(describe_time(pl.col("_v_ts"), settings.time_field)).alias("reason")
    ).to_series()
    rejects = staged.filter(reasons.is_not_null()).select("_row", "offset", "line", reason=reasons.drop_nulls())
    events = staged.filter(reasons.is_null()).select(*PARSED_COLUMNS, "offset", "_row")
    return events, rejects


def _to_integer(name: str, dtype: pl.DataType) -> pl.Expr:
    # JSON writers may give 200, "200" or 200.0 for the same field.
    text = pl.col(name).str.strip_chars()
    return pl.coalesce(text.cast(dtype, strict=False), text.cast(pl.Float64, strict=False).cast(dtype, strict=False))


def _unconverted_members() -> dict[str, pl.Expr]:
    """Return the extra members for values that did not convert to their column's type."""
    members = {}
    for role in ("status", "bytes_sent", "bytes_received", "asn", "duration_ms", "duration_s"):
        column = "duration_ms" if role == "duration_s" else role
        raw = pl.col(f"_v_{role}")
        members[f"{role}_invalid"] = pl.when(raw.is_not_null() & pl.col(column).is_null()).then(raw)
    return members


def _with_untrusted_client(
    staged: pl.DataFrame, networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]
) -> pl.DataFrame:
    """Replace client_ip with the right-most untrusted address of X-Forwarded-For plus the connecting address."""
    chain = staged.select(
        pl.when(pl.col("forwarded_for").is_not_null())
        .then(pl.concat_str([pl.col("forwarded_for"), pl.col("client_ip")], separator=", ", ignore_nulls=True))
        .otherwise(pl.col("client_ip"))
    ).to_series()
    staged = staged.with_columns(_picked=pick_untrusted_client(chain, networks))
    picked, picked_raw = normalize_client_address(null_if_dash(pl.col("_picked")))
    return staged.with_columns(
        client_ip=pl.coalesce(picked, pl.col("client_ip")),
        _client_ip_raw=pl.when(picked.is_not_null()).then(picked_raw).otherwise(pl.col("_client_ip_raw")),
        _remote_addr=pl.when(picked.is_not_null() & (picked != pl.col("client_ip"))).then(pl.col("client_ip")),
    ).drop("_picked")


def encode_members(members: dict[str, pl.Expr]) -> pl.Expr:
    """Build a JSON object text from the non-null members, or null when all are null.

    One struct encoding for all members, then the null members are cut out
    of the text, which is several times faster than encoding each member on
    its own. Member names must not contain quotes or backslashes.
    """
    if not members:
        return pl.lit(None, dtype=pl.String)
    encoded = pl.struct([value.alias(name) for name, value in members.items()]).struct.json_encode()
    # In the encoded text a quote after "{" or "," always starts a member
    # name, because quotes inside strings are escaped.
    cleaned = encoded.str.replace_all(r',"[^"\\]*":null', "").str.replace(r'^\{"[^"\\]*":null,?', "{")
    return pl.when(cleaned != "{}").then(cleaned)


def raw_json_object(members: dict[str, pl.Expr]) -> pl.Expr:
    """Build a JSON object text from members whose values are JSON texts already, or null when all are null."""
    parts = [
        pl.concat_str([pl.lit(json.dumps(name) + ":"), value]) for name, value in members.items()
    ]
    if not parts:
        return pl.lit(None, dtype=pl.String)
    body = pl.concat_str(parts, separator=",", ignore_nulls=True)
    return pl.when(body != "").then(pl.concat_str([pl.lit("{"), body, pl.lit("}")]))


def merge_json_objects(first: pl.Expr, second: pl.Expr) -> pl.Expr:
    """Join two JSON object texts (either may be null) into one object text, or null when both are empty."""
    first_body = first.str.strip_prefix("{").str.strip_suffix("}")
    second_body = second.str.strip_prefix("{").str.strip_suffix("}")
    body = pl.concat_str([first_body, second_body], separator=",", ignore_nulls=True)
    return pl.when(body != "").then(pl.concat_str([pl.lit("{"), body, pl.lit("}")]))


def finish(
    events: pl.DataFrame, event_rejects: pl.DataFrame, line_rejects: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Return the events without the helper row index and all rejects in line order."""
    rejects = pl.concat([line_rejects.select("_row", "offset", "line", "reason"), event_rejects]).sort("_row")
    return events.sort("_row").drop("_row"), rejects.drop("_row")
