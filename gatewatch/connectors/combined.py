"""NCSA common and combined access logs, as nginx and Apache write them.

One parser covers the common variants: common (no referer and user agent),
combined, a leading virtual host (``vhost`` or ``vhost:port``), a syslog
prefix, an X-Forwarded-For list where ``$remote_addr`` is expected, and any
number of trailing fields after the user agent.
"""

from __future__ import annotations

import re

import polars as pl
from pydantic import Field, field_validator

from gatewatch.connectors._frames import overwrite_rows
from gatewatch.connectors._http import (
    NGINX_VARIABLE_COLUMNS,
    null_if_dash,
    normalize_client_address,
    pick_forwarded_client,
    pick_untrusted_client,
    with_request_line,
    with_target_parts,
)
from gatewatch.connectors._text import json_object, unescape_log_column, unescape_log_text
from gatewatch.connectors._time import describe_time_failure, parse_clf_time
from gatewatch.connectors.base import Connector, ConnectorOptions, ParseResult
from gatewatch.events import PARSED_COLUMNS

# A quoted field: Apache escapes " and \ with a backslash, nginx writes \x22
# and \x5C, so a backslash always starts a two-character escape.
_QUOTED = r'[^"\\]*(?:\\.[^"\\]*)*'
# Second try for lines where a raw backslash ends a field (written by a log
# format or server that does not escape backslashes): quotes delimit fields
# and backslashes are plain text.
_QUOTED_LOOSE = r'[^"]*'
_TIME = r"\d{2}/[A-Za-z]{3}/\d{4}:\d{2}:\d{2}:\d{2}[^\]]{0,16}"

# The common shape, up to the response size. It leaves out the referer, user
# agent and trailing fields because capturing long groups dominates the cost
# of a regex, and literal splits read them faster. A head without "[" also
# runs much faster than a lazy ".*?" head.
PREFIX_RE = (
    rf'^(?P<prefix>(?P<head>[^\[]*)\[(?P<time>{_TIME})\]'
    rf' "(?P<request>{_QUOTED})" (?P<status>\d{{1,3}}) (?P<bytes>\d+|-))(?: |$)'
)

# Referer and user agent after the response size, for text with backslashes.
TAIL_RE = rf'^ "(?P<referer>{_QUOTED})" "(?P<user_agent>{_QUOTED})"(?P<rest>(?: .*)?)$'
TAIL_LOOSE_RE = rf'^ "(?P<referer>{_QUOTED_LOOSE})" "(?P<user_agent>{_QUOTED_LOOSE})"(?P<rest>(?: .*)?)$'
# A line cut off inside the user agent (a full log buffer, a crash).
TAIL_TRUNCATED_RE = rf'^ "(?P<referer>{_QUOTED})" "(?P<user_agent>{_QUOTED})$'


def _line_pattern(quoted: str) -> str:
    return (
        rf"^(?P<head>.*?)\[(?P<time>{_TIME})\]"
        # Some Apache formats put the server name between the time and the request.
        r'(?: (?P<server>[^\s"]+))?'
        rf' "(?P<request>{quoted})" (?P<status>\d{{1,3}}) (?P<bytes>\d+|-)'
        rf'(?: "(?P<referer>{quoted})" "(?P<user_agent>{quoted})")?'
        r"(?P<rest>(?: .*)?)$"
    )


# Every variant, for lines that PREFIX_RE does not match: another "[" before
# the time, a server name after the time.
LINE_RE = _line_pattern(_QUOTED)
LINE_LOOSE_RE = _line_pattern(_QUOTED_LOOSE)

# An address never starts with "-" and never contains quotes or commas.
_ADDRESS = r'[^\s",\-][^\s",]*'
# A quoted X-Forwarded-For value followed by $remote_addr, an unquoted list
# optionally followed by $remote_addr, or a single address.
_ADDRESSES = rf'"[^"]*" {_ADDRESS}|{_ADDRESS}(?:, ?[^\s",]+)+(?: {_ADDRESS})?|{_ADDRESS}'

# Everything before the [time] field. A leading virtual host is recognised
# only when at least two fields ($remote_logname, $remote_user) follow the
# address, so "addr ident user" is never read as "vhost addr user".
HEAD_RE = (
    rf"^(?:(?P<vhost>{_ADDRESS}) (?P<address1>{_ADDRESSES}) (?P<ident1>(?:\S+ ){{1,2}})(?P<user1>\S+)"
    rf"|(?P<address2>{_ADDRESSES}) (?P<ident2>(?:\S+ ){{0,2}})(?P<user2>\S+)"
    rf"|(?P<address3>{_ADDRESSES}))?"
    r" ?$"
)

# A syslog header before the access-log line: an optional <PRI>, an RFC 3164
# or ISO 8601 time, the host and the program with an optional [pid].
SYSLOG_PREFIX_RE = (
    r"^(?:<\d{1,3}>)?(?:[A-Z][a-z]{2} [ \d]\d \d{2}:\d{2}:\d{2}|\d{4}-\d{2}-\d{2}T\S+)"
    r" (?P<syslog_host>\S+) (?P<syslog_program>[^\s:\[]+)(?:\[\d+\])?: "
)

ADDRESS_RE = r'^(?:"(?P<quoted_list>[^"]*)" (?P<quoted_peer>\S+)|(?P<list>[^\s,]+(?:, ?[^\s,]+)*)(?: (?P<peer>\S+))?)$'

VHOST_RE = r"^(?P<name>\[[^\]]*\]|[^:]*)(?::(?P<port>\d+))?$"

# One trailing field: a quoted string, a bracketed value (ingress-nginx
# writes [$proxy_upstream_name]) or a bare token, each possibly a
# comma-separated list such as "0.001, 0.002" or "[::1]:80, [::2]:80".
TRAILING_FIELD_RE = (
    rf'"{_QUOTED}"'
    r"|\[[^\]]*\][^\s,]*(?:, ?[^\s,]+)*"
    r"|[^\s,]+(?:, ?[^\s,]+)*"
)

# Columns that the combined format leaves empty, which a named trailing field
# may fill. A name that maps to any other column goes into extra.
_TRAILING_COLUMNS = frozenset(
    {"forwarded_for", "host", "scheme", "bytes_received", "duration_ms", "request_id", "request_time"}
)

# Keys this connector writes into extra itself.
RESERVED_EXTRA_KEYS = frozenset(
    {
        "request_raw",
        "request_target",
        "client_ip_raw",
        "remote_addr",
        "peer_ip",
        "remote_addr_list",
        "ident",
        "vhost",
        "server_port",
        "syslog_host",
        "syslog_program",
        "truncated",
        "extra_fields",
    }
)

_FIELD_NAME_RE = re.compile(r"^[A-Za-z_@][A-Za-z0-9_.@-]*$")

_NGINX_ERROR_RE = r"^(?:\S+ \S+\[\d+\]: )?\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2} \[[a-z]+\] "
_APACHE_ERROR_RE = r"^\[[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d{2}:\d{2}:\d{2}(?:\.\d+)? \d{4}\] "
_CLF_TIME_RE = r"\[\d{2}/[A-Za-z]{3}/\d{4}:\d{2}:\d{2}:\d{2}[^\]]{0,16}\]"


class CombinedOptions(ConnectorOptions):
    """Options of the combined connector."""

    # Names of the fields after the user agent, in order, as nginx variable
    # names (request_time, http_x_forwarded_for, ...) or normalized column
    # names. Unnamed and unknown fields go into extra.
    trailing_fields: list[str] = Field(default_factory=list)
    # Number of proxies in front of the server that append to
    # X-Forwarded-For. Above 0, client_ip is taken from the forwarded chain
    # and the connecting address moves to extra.remote_addr.
    trusted_proxy_count: int = Field(default=0, ge=0)


    @field_validator("trailing_fields")
    @classmethod
    def _check_trailing_fields(cls, names: list[str]) -> list[str]:
        seen: set[str] = set()
        for name in names:
            if not _FIELD_NAME_RE.match(name):
                raise ValueError(
                    f"invalid trailing field name {name!r}; use letters, digits, '_', '.', '@' or '-'"
                )
            if name in RESERVED_EXTRA_KEYS:
                raise ValueError(f"trailing field name {name!r} is reserved for extra; choose another name")
            if name in seen:
                raise ValueError(f"trailing field name {name!r} appears twice")
            seen.add(name)
        return names


def _trailing_column(name: str) -> str | None:
    """Return the column a named trailing field fills, or None for extra."""
    column = NGINX_VARIABLE_COLUMNS.get(name, name)
    return column if column in _TRAILING_COLUMNS else None


class CombinedConnector(Connector):
    """NCSA common/combined access logs from nginx, Apache and compatible servers."""

    name = "combined"
    aliases = ("nginx", "apache", "nginx_combined", "apache_combined", "common")
    options_model = CombinedOptions
    options: CombinedOptions

    def parse(self, lines: pl.DataFrame) -> ParseResult:
        frame = lines.select(pl.col("offset").cast(pl.Int64), pl.col("line").cast(pl.String)).with_row_index("_row")
        fields = _match_lines(frame)
        matched = fields.filter(pl.col("time").is_not_null())
        unmatched = fields.filter(pl.col("time").is_null()).select("_row", "offset", "line")

        for column in ("referer", "user_agent"):
            matched = matched.with_columns(unescape_log_column(matched[column]).alias(f"{column}_text"))

        events = self._build_events(matched)
        reasons = _describe_rejects(events, self.options.timezone)
        rejected_events = events.filter(reasons.is_not_null()).select(
            "_row", "offset", "line", reason=reasons.filter(reasons.is_not_null())
        )
        events = events.filter(reasons.is_null())

        rejects = pl.concat(
            [unmatched.with_columns(reason=_describe_unmatched(pl.col("line"))), rejected_events]
        ).sort("_row")
        return ParseResult.from_frames(events, rejects)

    def _build_events(self, matched: pl.DataFrame) -> pl.DataFrame:
        timezone = self.options.timezone
        staged = _read_heads(matched).lazy().with_columns(
            ts=parse_clf_time(pl.col("time"), timezone),
            status=pl.col("status").cast(pl.Int32, strict=False),
            bytes_sent=pl.col("bytes").cast(pl.Int64, strict=False),
            referer=null_if_dash(pl.col("referer_text")),
            user_agent=null_if_dash(pl.col("user_agent_text")),
        )
        # The request line is split before escapes are decoded: the method and
        # protocol never contain escapes, and a binary request, the usual kind
        # with escapes, is malformed anyway and kept as written.
        staged = with_request_line(staged, "request")
        staged = staged.with_columns(**_vhost_columns(pl.coalesce(pl.col("_vhost"), pl.col("server")))).collect()
        staged = staged.with_columns(unescape_log_column(staged["target"]))
        staged = with_target_parts(staged.lazy(), "target", "method", "_target_")
        staged = staged.with_columns(malformed=pl.col("method").is_null()).collect()

        trailing = _split_trailing_fields(staged["rest"], len(self.options.trailing_fields))
        named, named_extra = self._map_trailing_fields(trailing)
        staged = staged.with_columns(named.get_columns()).lazy().with_columns(
            scheme=pl.col("_target_scheme").fill_null(pl.col("_named_scheme")),
            host=pl.coalesce(pl.col("_named_host"), pl.col("_vhost_name"), pl.col("_target_host")),
            path=pl.col("_target_path"),
            query=pl.col("_target_query"),
            forwarded_for=pl.coalesce(pl.col("_named_forwarded_for"), pl.col("_leading_forwarded_for")),
            bytes_received=pl.col("_named_bytes_received"),
            duration_ms=pl.col("_named_duration_ms"),
            request_id=pl.col("_named_request_id"),
            _remote_addr=pl.col("client_ip"),
        )
        staged = staged.collect()
        if self.options.trusted_proxy_count or self.trusted_networks:
            staged = self._with_forwarded_client(staged)
        return _with_extra(staged, _extra_members(named_extra))

    def _with_forwarded_client(self, staged: pl.DataFrame) -> pl.DataFrame:
        """Replace client_ip and _client_ip_raw by the client picked from the proxy chain."""
        # A list in the address position already ends with the connecting
        # proxy. A trailing X-Forwarded-For field does not, so the
        # connecting address is appended.
        leading_chain = pl.when(pl.col("_separate_peer").is_not_null()).then(
            pl.concat_str([pl.col("_leading_forwarded_for"), pl.col("_separate_peer")], separator=", ")
        ).otherwise(pl.col("_leading_forwarded_for"))
        chain = pl.coalesce(
            pl.concat_str([pl.col("_named_forwarded_for"), pl.col("_remote_addr")], separator=", "),
            leading_chain,
        )
        if self.trusted_networks:
            picked_values = pick_untrusted_client(staged.select(chain).to_series(), self.trusted_networks)
        else:
            picked_values = staged.select(pick_forwarded_client(chain, self.options.trusted_proxy_count)).to_series()
        staged = staged.with_columns(_picked=picked_values)
        client_ip, client_ip_raw = normalize_client_address(null_if_dash(pl.col("_picked")))
        return staged.with_columns(
            client_ip=pl.coalesce(client_ip, pl.col("client_ip")),
            _client_ip_raw=pl.when(client_ip.is_not_null()).then(client_ip_raw).otherwise(pl.col("_client_ip_raw")),
        ).drop("_picked")

    def _map_trailing_fields(self, trailing: pl.DataFrame) -> tuple[pl.DataFrame, dict[str, pl.Expr]]:
        """Assign the named trailing fields to columns or extra members."""
        names = self.options.trailing_fields
        values = trailing["_trailing"]
        columns: dict[str, pl.Series] = {}
        extra_members: dict[str, pl.Expr] = {}
        filled: dict[str, list[pl.Series]] = {}

        for position, name in enumerate(names):
            value = _clean_named_value(values.list.get(position, null_on_oob=True)).alias(f"_field_{name}")
            column = _trailing_column(name)
            if column is None:
                columns[value.name] = value
                extra_members[name] = pl.col(value.name)
                continue
            typed, leftover = _convert_trailing(value, column)
            filled.setdefault(typed.name, []).append(typed)
            if leftover is not None:
                columns[leftover.name] = leftover
                extra_members[name] = pl.col(leftover.name)

        for column in ("forwarded_for", "host", "scheme", "bytes_received", "duration_ms", "request_id"):
            key = f"_named_{column}"
            dtype = PARSED_COLUMNS[column]
            parts = filled.get(key)
            if parts:
                combined = parts[0]
                for part in parts[1:]:
                    combined = combined.fill_null(part)
                columns[key] = combined.alias(key)
            else:
                columns[key] = pl.Series(key, [None] * len(values), dtype=dtype)

        columns["_extra_fields"] = trailing["_extra_fields"]
        return pl.DataFrame(list(columns.values())), extra_members


def _extra_members(named_extra: dict[str, pl.Expr]) -> dict[str, pl.Expr]:
    """Return the extra members of an event, each null when it does not apply."""
    return {
        "request_raw": pl.when(pl.col("malformed")).then(pl.col("request")),
        "request_target": pl.when(pl.col("_target_is_absolute")).then(pl.col("target")),
        "client_ip_raw": pl.col("_client_ip_raw"),
        # With a list in the address position, peer_ip already names the proxy.
        "remote_addr": pl.when(
            pl.col("_leading_forwarded_for").is_null() & (pl.col("_remote_addr") != pl.col("client_ip"))
        ).then(pl.col("_remote_addr")),
        "peer_ip": pl.col("_peer_ip"),
        "remote_addr_list": pl.when(
            pl.col("_named_forwarded_for").is_not_null() & pl.col("_leading_forwarded_for").is_not_null()
        ).then(pl.col("_leading_forwarded_for")),
        "ident": pl.when(pl.col("_ident").str.replace_all(r"[\s-]", "") != "").then(pl.col("_ident")),
        "vhost": pl.when(pl.col("_vhost_name") != pl.col("host")).then(pl.col("_vhost_name")),
        "server_port": pl.col("_vhost_port"),
        "syslog_host": pl.col("syslog_host"),
        "syslog_program": pl.col("syslog_program"),
        "truncated": pl.when(pl.col("_truncated")).then(pl.lit(True)),
        **named_extra,
        "extra_fields": pl.col("_extra_fields"),
    }


def _with_extra(staged: pl.DataFrame, members: dict[str, pl.Expr]) -> pl.DataFrame:
    """Add the ``extra`` JSON column built from ``members``."""
    # Most lines have no extra member, so the JSON is built only for the
    # lines that have one.
    has_extra = staged.select(pl.any_horizontal(member.is_not_null() for member in members.values()))
    has_extra = has_extra.to_series().fill_null(False)
    extra = staged.lazy().filter(has_extra).select(extra=json_object(members)).collect()
    return overwrite_rows(staged, has_extra, extra)


_MATCH_COLUMNS = {
    "syslog_host": pl.String,
    "syslog_program": pl.String,
    "head": pl.String,
    "time": pl.String,
    "server": pl.String,
    "request": pl.String,
    "status": pl.String,
    "bytes": pl.String,
    "referer": pl.String,
    "user_agent": pl.String,
    "rest": pl.String,
}


def _match_lines(frame: pl.DataFrame) -> pl.DataFrame:
    """Split each line into the raw fields of the combined format.

    Adds the fields of ``_MATCH_COLUMNS``. Lines that match no pattern keep
    null fields.
    """
    # The syslog header is cut off first, so that the usual patterns apply
    # to the access-log line after it.
    fields = frame.lazy().with_columns(_body=pl.col("line").str.replace(SYSLOG_PREFIX_RE, "")).collect()
    has_syslog = (fields["_body"].str.len_bytes() != fields["line"].str.len_bytes()).fill_null(False)
    fields = fields.with_columns(
        syslog_host=pl.lit(None, dtype=pl.String), syslog_program=pl.lit(None, dtype=pl.String)
    )
    if has_syslog.any():
        syslog = fields.filter(has_syslog).select(pl.col("line").str.extract_groups(SYSLOG_PREFIX_RE)).unnest("line")
        fields = overwrite_rows(fields, has_syslog, syslog)

    fields = (
        fields.lazy()
        .with_columns(pl.col("_body").str.extract_groups(PREFIX_RE).alias("_m"))
        .unnest("_m")
        .with_columns(_tail=pl.col("_body").str.slice(pl.col("prefix").str.len_chars()))
        .collect()
    )
    fields = _split_tail(fields).with_columns(server=pl.lit(None, dtype=pl.String))

    for pattern in (LINE_RE, LINE_LOOSE_RE):
        unmatched = fields["time"].is_null()
        if not unmatched.any():
            break
        attempt = fields.filter(unmatched).select(pl.col("_body").str.extract_groups(pattern).alias("_m")).unnest("_m")
        fields = overwrite_rows(fields, unmatched, attempt.select(list(_MATCH_COLUMNS)[2:]))
    return fields.select("_row", "offset", "line", *_MATCH_COLUMNS, pl.col("_truncated").fill_null(False))


def _split_tail(fields: pl.DataFrame) -> pl.DataFrame:
    """Read referer, user agent and the trailing text from ``_tail``.

    ``_tail`` is the text after the response size: empty, or a space and
    the rest of the line. Without a backslash, quotes delimit the fields and
    a literal split finds them. With one, TAIL_RE reads the escapes, and
    TAIL_LOOSE_RE covers a raw backslash before a closing quote. A user
    agent without its closing quote at the end of the line is kept and
    ``_truncated`` marks the line.
    """
    # The split is stored in a column because polars recomputes a struct
    # expression for every field read from it.
    pieces = pl.col("_tail_pieces")
    before, referer, between, user_agent, after = (pieces.struct.field(f"field_{i}") for i in range(5))
    has_two_fields = (before == " ") & (between == " ")
    is_combined = (has_two_fields & after.is_not_null() & ((after == "") | after.str.starts_with(" "))).fill_null(False)
    is_truncated = (has_two_fields & user_agent.is_not_null() & after.is_null()).fill_null(False)
    has_fields = is_combined | is_truncated
    fields = (
        fields.lazy()
        .with_columns(_tail_pieces=pl.col("_tail").str.splitn('"', 5))
        .with_columns(
            referer=pl.when(has_fields).then(referer),
            user_agent=pl.when(has_fields).then(user_agent),
            rest=pl.when(is_combined).then(after).when(is_truncated).then(pl.lit("")).otherwise(pl.col("_tail")),
            _truncated=is_truncated,
        )
        .drop("_tail_pieces")
        .collect()
    )

    has_backslash = fields["_tail"].str.contains("\\", literal=True).fill_null(False)
    if not has_backslash.any():
        return fields
    patterns = [pl.col("_tail").str.extract_groups(pattern) for pattern in (TAIL_RE, TAIL_LOOSE_RE, TAIL_TRUNCATED_RE)]
    truncated = patterns[2]
    escaped = fields.lazy().filter(has_backslash).select(
        referer=pl.coalesce([match.struct.field("referer") for match in patterns]),
        user_agent=pl.coalesce([match.struct.field("user_agent") for match in patterns]),
        rest=pl.coalesce(
            patterns[0].struct.field("rest"),
            patterns[1].struct.field("rest"),
            pl.when(truncated.struct.field("referer").is_not_null()).then(pl.lit("")),
            pl.col("_tail"),
        ),
        _truncated=(
            patterns[0].struct.field("rest").is_null()
            & patterns[1].struct.field("rest").is_null()
            & truncated.struct.field("referer").is_not_null()
        ),
    )
    return overwrite_rows(fields, has_backslash, escaped.collect())


# The usual head, "address ident user ", which needs no regex with captures.
_SIMPLE_HEAD_RE = rf"^{_ADDRESS} \S+ \S+ $"


def _read_heads(matched: pl.DataFrame) -> pl.DataFrame:
    """Add the client, user and prefix columns read from the text before the time."""
    # Split results are stored in columns because polars recomputes a
    # split expression for every element or field read from it.
    tokens = pl.col("_head_tokens")
    client_ip, client_ip_raw = normalize_client_address(tokens.list.get(0, null_on_oob=True))
    heads = matched.lazy().with_columns(_head_tokens=pl.col("head").str.split(" ")).with_columns(
        _vhost=pl.lit(None, dtype=pl.String),
        _ident=tokens.list.get(1, null_on_oob=True),
        user=null_if_dash(tokens.list.get(2, null_on_oob=True)),
        client_ip=client_ip,
        _client_ip_raw=client_ip_raw,
        _leading_forwarded_for=pl.lit(None, dtype=pl.String),
        _peer_ip=pl.lit(None, dtype=pl.String),
        _separate_peer=pl.lit(None, dtype=pl.String),
    ).drop("_head_tokens").collect()

    is_general = ~heads["head"].str.contains(_SIMPLE_HEAD_RE).fill_null(False)
    if not is_general.any():
        return heads
    head = pl.col("_head_parts")
    general = (
        heads.lazy()
        .filter(is_general)
        .with_columns(_head_parts=pl.col("head").str.extract_groups(HEAD_RE))
        .select(
            _vhost=head.struct.field("vhost"),
            _addresses=pl.coalesce(
                head.struct.field("address1"), head.struct.field("address2"), head.struct.field("address3")
            ),
            _ident=pl.coalesce(head.struct.field("ident1"), head.struct.field("ident2")).str.strip_chars(),
            user=null_if_dash(pl.coalesce(head.struct.field("user1"), head.struct.field("user2"))),
        )
        .with_columns(**_client_columns(pl.col("_addresses")))
        .drop("_addresses")
        .collect()
    )
    return overwrite_rows(heads, is_general, general)


def _client_columns(addresses: pl.Expr) -> dict[str, pl.Expr]:
    """Pick the client address out of the address field.

    With a list (X-Forwarded-For written where $remote_addr is expected) the
    client is the left-most entry, which the client itself controls. The
    whole list is kept in forwarded_for and the proxy that connected in
    extra.peer_ip, so rules can choose another hop.
    """
    parts = addresses.str.extract_groups(ADDRESS_RE)
    quoted_list = parts.struct.field("quoted_list")
    list_text = pl.coalesce(quoted_list, parts.struct.field("list")).str.strip_chars()
    peer = pl.coalesce(parts.struct.field("quoted_peer"), parts.struct.field("peer"))
    is_list = quoted_list.is_not_null() | list_text.str.contains(",", literal=True) | peer.is_not_null()
    first = list_text.str.extract(r"^([^,]*)").str.strip_chars()
    last = list_text.str.extract(r"([^,]*)$").str.strip_chars()
    first_known = null_if_dash(first)
    chosen = pl.when(is_list).then(pl.coalesce(first_known, peer)).otherwise(list_text)
    client_ip, client_ip_raw = normalize_client_address(chosen)
    peer_ip = pl.when(is_list).then(pl.coalesce(peer, last))
    return {
        "client_ip": client_ip,
        "_client_ip_raw": client_ip_raw,
        "_leading_forwarded_for": pl.when(is_list).then(null_if_dash(list_text)),
        "_peer_ip": pl.when(peer_ip != chosen).then(peer_ip),
        "_separate_peer": peer,
    }


def _vhost_columns(vhost: pl.Expr) -> dict[str, pl.Expr]:
    parts = vhost.str.extract_groups(VHOST_RE)
    name = parts.struct.field("name").str.strip_prefix("[").str.strip_suffix("]")
    return {
        "_vhost_name": pl.coalesce(name, vhost),
        "_vhost_port": parts.struct.field("port").cast(pl.Int32, strict=False),
    }


def _split_trailing_fields(rest: pl.Series, named_count: int) -> pl.DataFrame:
    """Split the text after the user agent into a list of fields.

    Quotes are removed and escapes decoded. ``_trailing`` is every field and
    ``_extra_fields`` the fields after the first ``named_count``, as written
    (placeholders such as "-" kept), or null when there are none.
    """
    tokens = rest.str.extract_all(TRAILING_FIELD_RE)
    unquoted = tokens.list.eval(pl.element().str.replace(r'^"(.*)"$', "$1"))
    needs_unescape = unquoted.list.eval(pl.element().str.contains("\\", literal=True)).list.any().fill_null(False)
    positions = needs_unescape.arg_true()
    if positions.len() > 0:
        # NOTE: Python runs only for trailing fields that contain a backslash.
        decoded = [[unescape_log_text(text) for text in row] for row in unquoted.gather(positions).to_list()]
        # Series.scatter does not take list values, so the decoded rows are joined back by index.
        replacements = pl.DataFrame(
            {"_row": positions.cast(pl.UInt32), "_decoded": pl.Series(decoded, dtype=pl.List(pl.String))}
        )
        unquoted = (
            pl.DataFrame({"_fields": unquoted})
            .with_row_index("_row")
            .join(replacements, on="_row", how="left", maintain_order="left")
            .select(pl.coalesce("_decoded", "_fields"))
            .to_series()
        )
    unnamed = pl.col("_trailing").list.slice(named_count)
    return pl.DataFrame({"_trailing": unquoted}).with_columns(
        _extra_fields=pl.when(unnamed.list.len() > 0).then(unnamed)
    )


def _clean_named_value(value: pl.Series) -> pl.Series:
    """Unwrap ``[value]`` and map "-" and "" to null for a named trailing field."""
    frame = pl.DataFrame({"value": value})
    cleaned = frame.select(null_if_dash(pl.col("value").str.replace(r"^\[(.*)\]$", "$1")))
    return cleaned.to_series().alias(value.name)


def _convert_trailing(value: pl.Series, column: str) -> tuple[pl.Series, pl.Series | None]:
    """Convert a named trailing field for its column.

    Returns the typed value and, for typed columns, the raw text of values
    that did not convert, so that they can be kept in extra.
    """
    if column == "request_time":
        seconds = value.cast(pl.Float64, strict=False)
        typed = (seconds * 1000.0).alias("_named_duration_ms")
    elif column in ("duration_ms", "bytes_received"):
        typed = value.cast(PARSED_COLUMNS[column], strict=False).alias(f"_named_{column}")
    else:
        return value.alias(f"_named_{column}"), None
    failed = value.is_not_null() & typed.is_null()
    leftover = pl.DataFrame({"v": value, "f": failed}).select(pl.when(pl.col("f")).then(pl.col("v"))).to_series()
    return typed, leftover.alias(f"{value.name}_unconverted")


def _describe_rejects(events: pl.DataFrame, timezone: str) -> pl.Series:
    """Return the reject reason of each matched line, or null for a good event."""
    return events.select(
        pl.when(pl.col("client_ip").is_null())
        .then(pl.lit("line does not match the combined format: missing client address before the timestamp"))
        .when(pl.col("ts").is_null())
        .then(describe_time_failure(pl.col("time"), timezone, parse_clf_time))
        .alias("reason")
    ).to_series()


def _describe_unmatched(line: pl.Expr) -> pl.Expr:
    """Return why a line does not match the combined format at all."""
    prefix = "line does not match the combined format: "
    return (
        pl.when(line.str.starts_with("#"))
        .then(pl.lit("comment line"))
        .when(line.str.strip_chars() == "")
        .then(pl.lit("blank line"))
        .when(line.str.contains(_NGINX_ERROR_RE))
        .then(pl.lit("nginx error-log entry, not an access-log line"))
        .when(line.str.contains(_APACHE_ERROR_RE))
        .then(pl.lit("Apache error-log entry, not an access-log line"))
        .when(~line.str.contains(_CLF_TIME_RE))
        .then(pl.lit(prefix + "missing [dd/Mon/yyyy:HH:MM:SS zone] timestamp"))
        .when(~line.str.contains(_CLF_TIME_RE + r'(?: [^\s"]+)? "'))
        .then(pl.lit(prefix + "missing quoted request line after the timestamp"))
        .when(~line.str.contains(r'" \d{1,3} '))
        .then(pl.lit(prefix + "missing status after the request line"))
        .when(~line.str.contains(r'" \d{1,3} (?:\d+|-)(?: |$)'))
        .then(pl.lit(prefix + "missing response size after the status"))
        .otherwise(pl.lit(prefix + "unexpected text after the response size"))
    )
