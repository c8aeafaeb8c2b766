"""SQL that turns address text into numbers, without DuckDB's inet extension.

The inet extension is downloaded at run time, which offline installs
cannot do. An address becomes a 128-bit integer, IPv4 in the IPv4-mapped
range ::ffff:0:0/96, so IPv4 and IPv6 ranges share one comparison.
"""

from __future__ import annotations

import re

import duckdb

IPV4_MAPPED = 0xFFFF_0000_0000
# DuckDB 1.3 added `lambda x: ...` and later releases reject the older
# `x -> ...` unless a setting allows it.
_VERSION = tuple(int(part) for part in re.findall(r"\d+", duckdb.__version__)[:2])
NEW_LAMBDA = _VERSION >= (1, 3)


def lambda_sql(variable: str, body: str) -> str:
    return f"lambda {variable}: {body}" if NEW_LAMBDA else f"{variable} -> {body}"


def ip_number_sql(column: str) -> str:
    """Build a SQL expression that turns an address text into a UHUGEINT, or NULL if invalid."""
    v4 = (
        f"{IPV4_MAPPED}::UHUGEINT"
        + "".join(
            f" + TRY_CAST(string_split({column}, '.')[{i + 1}] AS UHUGEINT) * {256 ** (3 - i)}" for i in range(4)
        )
    )
    head = f"split_part({column}, '::', 1)"
    tail = f"split_part({column}, '::', 2)"
    head_parts = f"CASE WHEN {head} = '' THEN []::VARCHAR[] ELSE string_split({head}, ':') END"
    tail_parts = f"CASE WHEN {tail} = '' THEN []::VARCHAR[] ELSE string_split({tail}, ':') END"
    zero = lambda_sql("x", "'0'")
    missing = f"list_transform(range(greatest(8 - len({head_parts}) - len({tail_parts}), 0)), {zero})"
    hextets = (
        f"CASE WHEN contains({column}, '::') THEN list_concat({head_parts}, {missing}, {tail_parts}) "
        f"ELSE string_split({column}, ':') END"
    )
    pad = lambda_sql("h", "lpad(h, 4, '0')")
    v6 = f"TRY_CAST('0x' || array_to_string(list_transform({hextets}, {pad}), '') AS UHUGEINT)"
    return (
        f"CASE WHEN regexp_matches({column}, '^[0-9]{{1,3}}(\\.[0-9]{{1,3}}){{3}}$') THEN {v4} "
        f"WHEN contains({column}, ':') AND NOT contains({column}, '.') THEN {v6} END"
    )
