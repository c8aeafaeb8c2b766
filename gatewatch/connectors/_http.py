"""HTTP request lines, request targets and client addresses as polars expressions.

Shared by the access-log connectors. Every function takes and returns
expressions, so a whole chunk is processed at once.
"""

from __future__ import annotations

import ipaddress

import polars as pl

# RFC 9110 token characters, the only ones a method may contain.
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"

# The protocol at the end of a request line, such as HTTP/1.1, HTTP/2 or HTTP/0.9.
_HTTP_VERSION_SUFFIX_RE = r" ([A-Za-z][A-Za-z0-9]*/\d+(?:\.\d+)?)$"
_METHOD_RE = rf"^{_TOKEN}$"

# An absolute-form target: scheme://authority, then the path and query.
_ABSOLUTE_TARGET_RE = r"(?s)^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*)://(?P<authority>[^/?#]*)(?P<rest>.*)$"

# [userinfo@]host[:port]. The ipv6 group leaves out the brackets.
AUTHORITY_RE = r"^(?:[^@]*@)?(?:\[(?P<ipv6>[^\]]*)\]|(?P<name>[^:]*))(?::(?P<port>\d*))?$"

_V4_MAPPED_RE = r"(?i)^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$"


def with_request_line(frame: pl.LazyFrame, request: str) -> pl.LazyFrame:
    """Add ``method``, ``target`` and ``http_version`` split from the ``request`` column.

    The method is the text before the first space and must be an RFC 9110
    token. The protocol is the text after the last space, and the target is
    everything between, so a target with unescaped spaces still splits. All
    three are null when the line is not ``METHOD target PROTOCOL/version``:
    binary bytes, an empty request or a request without a protocol version.
    """
    # Literal splits and an end-anchored match instead of one regex with
    # captures, which is several times slower over a whole chunk. Each
    # intermediate is stored in a column because polars recomputes a
    # struct expression for every field read from it.
    method = pl.col("_request_split").struct.field("field_0")
    remainder = pl.col("_request_split").struct.field("field_1")
    version = pl.col("_request_version")
    target = remainder.str.head(remainder.str.len_chars() - version.str.len_chars() - 1)
    is_valid = method.str.contains(_METHOD_RE) & version.is_not_null() & (target.str.len_chars() > 0)
    return (
        frame.with_columns(_request_split=pl.col(request).str.splitn(" ", 2))
        .with_columns(_request_version=remainder.str.extract(_HTTP_VERSION_SUFFIX_RE))
        .with_columns(
            method=pl.when(is_valid).then(method),
            target=pl.when(is_valid).then(target),
            http_version=pl.when(is_valid).then(version),
        )
        .drop("_request_split", "_request_version")
    )


def host_of_authority(authority: pl.Expr) -> pl.Expr:
    """Return the host of ``[userinfo@]host[:port]`` without brackets or port."""
    parts = authority.str.extract_groups(AUTHORITY_RE)
    host = pl.coalesce(parts.struct.field("ipv6"), parts.struct.field("name"))
    return pl.when(host != "").then(host)


def with_target_parts(frame: pl.LazyFrame, target: str, method: str, prefix: str) -> pl.LazyFrame:
    """Add the scheme, host, path and query of the ``target`` column.

    The new columns are ``{prefix}scheme``, ``{prefix}host``, ``{prefix}path``,
    ``{prefix}query`` and ``{prefix}is_absolute``. An absolute-form target
    with an empty path has the path "/" (RFC 9110 section 4.2.3). A CONNECT
    target (authority-form) fills only the host.
    """
    absolute = pl.col("_target_absolute")
    authority = absolute.struct.field("authority")
    path = pl.col("_target_path_and_query").struct.field("field_0")
    query = pl.col("_target_path_and_query").struct.field("field_1")
    is_connect = pl.col(method) == "CONNECT"
    absolute_path = pl.when(path == "").then(pl.lit("/")).otherwise(path)
    no_value = pl.lit(None, dtype=pl.String)
    return (
        frame.with_columns(_target_absolute=pl.col(target).str.extract_groups(_ABSOLUTE_TARGET_RE))
        .with_columns(
            _target_path_and_query=pl.coalesce(absolute.struct.field("rest"), pl.col(target)).str.splitn("?", 2)
        )
        .with_columns(
            **{
                f"{prefix}scheme": absolute.struct.field("scheme"),
                # The when() limits the regex to CONNECT rows; the others are null.
                f"{prefix}host": pl.coalesce(
                    host_of_authority(pl.when(is_connect).then(pl.col(target))), host_of_authority(authority)
                ),
                f"{prefix}path": (
                    pl.when(is_connect).then(no_value).when(authority.is_not_null()).then(absolute_path).otherwise(path)
                ),
                f"{prefix}query": pl.when(is_connect).then(no_value).otherwise(query),
                f"{prefix}is_absolute": authority.is_not_null() | is_connect.fill_null(False),
            }
        )
        .drop("_target_absolute", "_target_path_and_query")
    )


def normalize_client_address(address: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    """Return the client address to store and the raw form when it differs.

    Brackets around an IPv6 literal are removed and an IPv4-mapped IPv6
    address (``::ffff:192.0.2.1``) becomes the IPv4 address. IPv6 addresses
    are otherwise kept exactly as written.
    """
    unbracketed = address.str.replace(r"^\[(.*)\]$", "$1")
    unwrapped = unbracketed.str.replace(_V4_MAPPED_RE, "$1")
    raw = pl.when(unwrapped != address).then(address)
    return unwrapped, raw


def null_if_dash(value: pl.Expr) -> pl.Expr:
    """Map the log placeholder "-" and the empty string to null."""
    return pl.when((value != "-") & (value != "")).then(value)


# nginx variable names (as used in log_format) and the normalized column each
# one fills. Three entries are not columns: "request" is a whole request line,
# "request_uri" a target with query, "request_time" seconds for duration_ms.
NGINX_VARIABLE_COLUMNS: dict[str, str] = {
    "time_iso8601": "ts",
    "time_local": "ts",
    "@timestamp": "ts",
    "timestamp": "ts",
    "time": "ts",
    "msec": "ts",
    "remote_addr": "client_ip",
    "http_x_forwarded_for": "forwarded_for",
    "request": "request",
    "request_method": "method",
    "request_uri": "request_uri",
    "uri": "path",
    "args": "query",
    "query_string": "query",
    "server_protocol": "http_version",
    "scheme": "scheme",
    "host": "host",
    "http_host": "host",
    "server_name": "host",
    "status": "status",
    "body_bytes_sent": "bytes_sent",
    "bytes_sent": "bytes_sent",
    "request_length": "bytes_received",
    "request_time": "request_time",
    "http_user_agent": "user_agent",
    "http_referer": "referer",
    "remote_user": "user",
    "request_id": "request_id",
    "req_id": "request_id",
}

# Variables that fill their column only when the preferred variable is absent
# and that mean something else ($uri is the normalized path, $bytes_sent
# counts headers too), so they are also kept in ``extra``.
NGINX_FALLBACK_VARIABLES: frozenset[str] = frozenset({"uri", "http_host", "server_name", "bytes_sent"})


def pick_forwarded_client(chain: pl.Expr, trusted_proxy_count: int) -> pl.Expr:
    """Return the client address from a proxy chain, or null when there is no chain.

    ``chain`` is the X-Forwarded-For list with the address that connected
    to the server appended, left to right. Each trusted proxy appends the
    address it received the request from, so the client is the entry
    ``trusted_proxy_count`` places before the last one. Entries left of it
    were written by the client and can be forged. A chain shorter than that
    (a request that bypassed a proxy) gives its left-most entry.
    """
    entries = chain.str.split(",").list.eval(pl.element().str.strip_chars())
    picked = entries.list.get(-(trusted_proxy_count + 1), null_on_oob=True)
    return null_if_dash(pl.coalesce(picked, entries.list.first()))


def parse_networks(cidrs: list[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """Parse CIDR ranges such as ``10.0.0.0/8`` or ``2001:db8::/32``; a bare address is a /32 or /128.

    Raises ValueError naming the first invalid entry.
    """
    networks = []
    for cidr in cidrs:
        try:
            networks.append(ipaddress.ip_network(cidr.strip(), strict=False))
        except ValueError:
            raise ValueError(
                f"invalid network {cidr!r}; write an address or a CIDR range such as 10.0.0.0/8 or 2001:db8::/32"
            ) from None
    return networks


def _address_in_networks(address: str, networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    text = address.strip()
    if text.startswith("[") and "]" in text:
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        parsed = ipaddress.ip_address(text)
    except ValueError:
        return False
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        parsed = parsed.ipv4_mapped
    return any(parsed in network for network in networks)


def pick_untrusted_client(
    chain: pl.Series, networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]
) -> pl.Series:
    """Return the right-most address of each proxy chain that is not a trusted proxy.

    ``chain`` is the X-Forwarded-For list with the connecting address
    appended, left to right. Walking from the right, addresses inside
    ``networks`` are the operator's proxies and are skipped. The first one
    outside is the client. Everything left of it may be forged by that client. A chain made only of trusted addresses gives its left-most entry.
    The membership test runs once per distinct address, not per row.
    """
    entries = (
        pl.DataFrame({"_chain": chain.cast(pl.String)})
        .with_row_index("_row")
        .with_columns(_entry=pl.col("_chain").str.split(",").list.eval(pl.element().str.strip_chars()))
        .explode("_entry")
        .with_columns(_position=pl.int_range(pl.len()).over("_row"))
        .filter(pl.col("_entry").is_not_null() & (pl.col("_entry") != "") & (pl.col("_entry") != "-"))
    )
    distinct = entries["_entry"].unique()
    trusted = pl.DataFrame(
        {
            "_entry": distinct,
            "_trusted": pl.Series([_address_in_networks(value, networks) for value in distinct.to_list()], dtype=pl.Boolean),
        }
    )
    entries = entries.join(trusted, on="_entry", how="left")
    client = entries.filter(~pl.col("_trusted")).group_by("_row").agg(pl.col("_entry").sort_by("_position").last())
    leftmost = entries.group_by("_row").agg(_leftmost=pl.col("_entry").sort_by("_position").first())
    picked = (
        pl.DataFrame({"_row": pl.int_range(chain.len(), eager=True, dtype=pl.UInt32)})
        .join(client, on="_row", how="left")
        .join(leftmost, on="_row", how="left")
        .sort("_row")
    )
    return picked.select(pl.coalesce("_entry", "_leftmost")).to_series().alias(chain.name)
