"""Helpers shared by the proxy and WAF connectors (Kong, Envoy, Traefik, HAProxy, ModSecurity).

JSON documents decoded in bulk, ``host:port`` addresses, the client picked
behind trusted proxies and credential headers reduced to fingerprints. All
of them work on a whole chunk at once.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable

import polars as pl

from gatewatch.connectors._credential import fingerprint_values, split_authorization
from gatewatch.connectors._http import normalize_client_address, null_if_dash, pick_untrusted_client
from gatewatch.connectors._text import repair_json_text
from gatewatch.connectors._time import describe_time_failure, parse_any_time
from gatewatch.connectors.base import ParseResult

# The prefix the container runtime (CRI: containerd, CRI-O) writes before
# each line of a container's output: time, stream and a partial/full flag.
CRI_PREFIX_RE = r"^\d{4}-\d{2}-\d{2}T[0-9:.]+(?:Z|[+-]\d{2}:\d{2}) (?:stdout|stderr) [FP] "

_NEEDS_REPAIR_RE = r"\\x[0-9A-Fa-f]{2}|[\x00-\x1f]"

# Slices this small are decoded one JSON path at a time when the bulk decoder
# fails on them; larger slices are halved first.
_FALLBACK_ROWS = 64

# A JSON scalar in the compact form that json_path_match("$") writes. It is
# never empty, so it cannot match in front of an object or array value.
_JSON_SCALAR = r'(?:"(?:[^"\\]|\\.)*"|[^,{}\[\]"]+)'


def strip_cri_prefix(line: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    """Return the line without a CRI container-log prefix, and whether it had one."""
    return line.str.replace(CRI_PREFIX_RE, ""), line.str.contains(CRI_PREFIX_RE)


def canonical_json(frame: pl.DataFrame, text: str) -> pl.Series:
    """Return each ``text`` value as compact JSON object text, or null when it is not a JSON object.

    A repeated key keeps its last value. Lines with ``\\xHH`` escapes (how
    ingest writes bytes that are not UTF-8) or raw control characters are
    repaired first.
    """
    values = frame[text]
    needs_repair = values.str.contains(_NEEDS_REPAIR_RE).fill_null(False)
    positions = needs_repair.arg_true()
    if positions.len():
        # NOTE: Python runs once per line with \xHH escapes or control
        # characters, which well-formed JSON logs do not contain.
        repaired = [repair_json_text(value) for value in values.gather(positions).to_list()]
        values = values.scatter(positions, pl.Series(repaired, dtype=pl.String))
    stripped = values.str.strip_chars()
    canonical = (
        pl.DataFrame({"text": stripped})
        .select(
            pl.when(pl.col("text").str.starts_with("{")).then(pl.col("text").str.json_path_match("$")).alias("json")
        )
        .to_series()
    )
    return pl.DataFrame({"json": canonical}).select(
        pl.when(pl.col("json").str.starts_with("{")).then(pl.col("json"))
    ).to_series()


def read_text_or_json(
    lines: pl.DataFrame,
    read_text: Callable[[pl.DataFrame], pl.DataFrame],
    read_json: Callable[[pl.DataFrame], pl.DataFrame],
) -> pl.DataFrame:
    """Read each line with ``read_text`` or, when it is a JSON object, ``read_json``.

    A runtime prefix (CRI) is removed first. Each reader gets only its own
    lines, as a frame with ``_row``, ``offset``, ``line``, ``_body``,
    ``_cri`` and ``_json``, and returns one row of fields per line. The
    result has ``_row``, ``offset`` and ``line`` plus those fields, in line order.
    """
    frame = lines.select(pl.col("offset").cast(pl.Int64), pl.col("line").cast(pl.String)).with_row_index("_row")
    body, has_cri = strip_cri_prefix(pl.col("line"))
    frame = frame.with_columns(_body=body, _cri=has_cri)
    frame = frame.with_columns(_json=canonical_json(frame, "_body"))
    is_json = frame["_json"].is_not_null()
    text_lines = frame.filter(~is_json)
    json_lines = frame.filter(is_json)
    return pl.concat(
        [
            text_lines.select("_row", "offset", "line").hstack(read_text(text_lines)),
            json_lines.select("_row", "offset", "line").hstack(read_json(json_lines)),
        ],
        how="vertical_relaxed",
    ).sort("_row")


def finish_parse(events: pl.DataFrame, unmatched: pl.DataFrame, missing_time: str, timezone: str) -> ParseResult:
    """Return the events with a readable time, and as rejects the unmatched lines and the events without one.

    ``events`` has ``_row``, ``offset``, ``line``, ``_time`` (the time as
    written) and ``ts``; ``unmatched`` has ``_row``, ``offset``, ``line`` and
    ``reason``. ``missing_time`` is the reason when the line has no time at all.
    """
    reasons = events.select(
        pl.when(pl.col("ts").is_null()).then(
            pl.when(pl.col("_time").is_null())
            .then(pl.lit(missing_time))
            .otherwise(describe_time_failure(pl.col("_time"), timezone, parse_any_time))
        )
    ).to_series()
    rejects = pl.concat(
        [unmatched, events.filter(reasons.is_not_null()).select("_row", "offset", "line", reason=reasons.drop_nulls())]
    ).sort("_row")
    return ParseResult.from_frames(events.filter(reasons.is_null()), rejects)


def decode_json(texts: pl.Series, dtype: pl.Struct) -> pl.Series:
    """Decode JSON object texts into ``dtype``, whose leaves should be strings.

    A value whose JSON type does not fit ``dtype`` (an object where a string
    is expected) makes the bulk decoder fail for the whole column. The
    column is then halved until the failing slices are small, and those are
    read one JSON path at a time, which gives such a value as JSON text. A
    single row that still fails decodes to null.
    """
    try:
        return texts.str.json_decode(dtype)
    except pl.exceptions.ComputeError:
        pass
    if texts.len() <= _FALLBACK_ROWS:
        try:
            return pl.DataFrame({"json": texts}).select(_struct_from_paths(pl.col("json"), dtype, "$")).to_series()
        except pl.exceptions.ComputeError:
            if texts.len() == 1:
                return pl.Series(texts.name, [None], dtype=dtype)
    middle = texts.len() // 2
    return pl.concat([decode_json(texts.slice(0, middle), dtype), decode_json(texts.slice(middle), dtype)])


def _struct_from_paths(document: pl.Expr, dtype: pl.Struct, prefix: str) -> pl.Expr:
    fields = []
    for field in dtype.fields:
        path = f"{prefix}['{field.name}']"
        if isinstance(field.dtype, pl.Struct):
            fields.append(_struct_from_paths(document, field.dtype, path).alias(field.name))
        elif field.dtype == pl.String:
            fields.append(document.str.json_path_match(path).alias(field.name))
        else:
            fields.append(document.str.json_path_match(path).str.json_decode(field.dtype).alias(field.name))
    return pl.struct(fields)


def string_struct(spec: dict) -> pl.Struct:
    """Build a struct type from nested dicts of field names; every leaf (``None``) is a string."""
    return pl.Struct({name: string_struct(inner) if isinstance(inner, dict) else pl.String for name, inner in spec.items()})


def remove_members(document: pl.Expr, keys: list[str]) -> pl.Expr:
    """Return a compact JSON object text without the members ``keys`` and null members, or null when empty.

    ``document`` must be in the compact form that ``canonical_json``
    returns. Only members with a scalar value are removed. Inside a JSON
    string every quote is escaped, so ``,"key":`` can only start a member.
    NOTE: a member of a nested object with one of these names is removed too.
    """
    names = "|".join(re.escape(key) for key in keys) if keys else None
    remaining = document.str.replace_all(r',"(?:[^"\\]|\\.)*":null', "")
    remaining = remaining.str.replace(r'^\{"(?:[^"\\]|\\.)*":null,?', "{")
    if names is not None:
        remaining = remaining.str.replace_all(rf',"(?:{names})":{_JSON_SCALAR}', "")
        remaining = remaining.str.replace(rf'^\{{"(?:{names})":{_JSON_SCALAR},?', "{")
    return remaining.replace("{}", None)


def json_members(members: dict[str, pl.Expr]) -> pl.Expr:
    """Build a JSON object text from the non-null members, or null when all are null.

    Same output as ``_text.json_object`` for members whose values are
    scalars or lists, with one JSON encoding per row instead of one per
    member. The names must not contain quotes or backslashes.
    """
    encoded = pl.struct(**members).struct.json_encode()
    # polars writes a null member as "name":null. Inside a string value every
    # quote is escaped, so ',"name":null' only matches a member.
    stripped = encoded.str.replace_all(r',"[^"\\]*":null', "").str.replace(r'^\{"[^"\\]*":null,?', "{")
    # replace() instead of when/then, which would compute ``stripped`` twice.
    return stripped.replace("{}", None)


def merge_json_objects(first: pl.Expr, second: pl.Expr) -> pl.Expr:
    """Join two JSON object texts (either may be null) into one object text."""
    first_body = first.str.strip_prefix("{").str.strip_suffix("}")
    second_body = second.str.strip_prefix("{").str.strip_suffix("}")
    body = pl.concat_str([first_body, second_body], separator=",", ignore_nulls=True)
    return pl.concat_str([pl.lit("{"), body, pl.lit("}")]).replace("{}", None)


def split_host_port(address: pl.Expr, bare_ipv6_has_port: bool = False) -> tuple[pl.Expr, pl.Expr]:
    """Split ``host:port``, ``[v6]:port`` or a bare address into host and port (Int32 or null).

    A bare IPv6 address is taken whole. Set ``bare_ipv6_has_port`` for a
    format that always appends the port, which then follows the last colon
    (HAProxy writes ``2001:db8::1:58340``).
    """
    # Literal tests and end-anchored single-group matches instead of one
    # regex with alternatives and captures, which is several times slower.
    colons = address.str.count_matches(":", literal=True)
    is_bracketed = address.str.starts_with("[")
    trailing_port = address.str.extract(r":(\d+)$", 1)
    has_port = (colons == 1) | (bare_ipv6_has_port & (colons > 1))
    without_port = address.str.head(address.str.len_chars() - trailing_port.str.len_chars() - 1)
    host = (
        pl.when(is_bracketed)
        .then(address.str.extract(r"^\[([^\]]*)\]", 1))
        .when(has_port & trailing_port.is_not_null())
        .then(without_port)
        .otherwise(address)
    )
    port = (
        pl.when(is_bracketed)
        .then(address.str.extract(r"\]:(\d+)$", 1))
        .when(has_port)
        .then(trailing_port)
    )
    return null_if_dash(host), port.cast(pl.Int32, strict=False)


def with_client_address(frame: pl.LazyFrame, address: pl.Expr, bare_ipv6_has_port: bool = False) -> pl.LazyFrame:
    """Add ``client_ip``, ``_client_ip_raw`` (the form written, when it differs) and ``_client_port``."""
    host, port = split_host_port(address, bare_ipv6_has_port)
    frame = frame.with_columns(_client_host=host, _client_port=port)
    client_ip, client_ip_raw = normalize_client_address(pl.col("_client_host"))
    return frame.with_columns(client_ip=client_ip, _client_ip_raw=client_ip_raw).drop("_client_host")


def with_trusted_client(frame: pl.DataFrame, networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> pl.DataFrame:
    """Pick ``client_ip`` from ``forwarded_for`` and the connecting address when trusted proxies are set.

    Adds ``_remote_addr``: the connecting address when the picked client
    differs from it, else null. Without ``networks`` nothing else changes.
    """
    if not networks:
        return frame.with_columns(_remote_addr=pl.lit(None, dtype=pl.String))
    chain = frame.select(
        pl.concat_str([pl.col("forwarded_for"), pl.col("client_ip")], separator=", ", ignore_nulls=True)
    ).to_series()
    frame = frame.with_columns(_picked=pick_untrusted_client(chain, networks))
    picked, picked_raw = normalize_client_address(null_if_dash(pl.col("_picked")))
    return frame.with_columns(
        client_ip=pl.coalesce(picked, pl.col("client_ip")),
        _client_ip_raw=pl.when(picked.is_not_null()).then(picked_raw).otherwise(pl.col("_client_ip_raw")),
        _remote_addr=pl.when(picked.is_not_null() & (picked != pl.col("client_ip"))).then(pl.col("client_ip")),
    ).drop("_picked")


def with_credentials(frame: pl.DataFrame, key: bytes, authorization: str, api_key: str | None = None) -> pl.DataFrame:
    """Add ``credential_id`` and ``_auth_user`` from an Authorization header column and an API-key column.

    The credential is the text after the Authorization scheme, or else the
    API key. Only its keyed fingerprint is stored; ``_auth_user`` is the
    user name of a Basic header. The caller drops the raw columns.
    """
    parts = split_authorization(null_if_dash(pl.col(authorization)))
    credential = parts["_auth_credential"]
    if api_key is not None:
        credential = pl.coalesce(credential, null_if_dash(pl.col(api_key)))
    staged = frame.with_columns(_credential=credential, _auth_user=parts["_auth_user"])
    return staged.with_columns(credential_id=fingerprint_values(staged["_credential"], key)).drop("_credential")
