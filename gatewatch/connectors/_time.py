"""Timestamp parsing shared by the access-log connectors.

Every function returns a naive ``Datetime("us")`` in UTC, the form of the
``ts`` column. Times that carry an offset are converted with it; times without
one are read in the source's IANA time zone with tz-database rules.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import polars as pl

# NCSA/nginx $time_local: 10/Oct/2000:13:55:36 -0700, optionally with a
# fraction of a second, and without the offset in some Apache formats.
CLF_WITH_OFFSET = "%d/%b/%Y:%H:%M:%S%.f %z"
CLF_LOCAL = "%d/%b/%Y:%H:%M:%S%.f"

# ISO 8601 as nginx $time_iso8601 writes it; %#z also accepts "Z" and "+0800".
ISO_WITH_OFFSET = "%Y-%m-%dT%H:%M:%S%.f%#z"
ISO_LOCAL = "%Y-%m-%dT%H:%M:%S%.f"


def validate_timezone(name: str) -> str:
    """Return ``name`` when it is an IANA time zone, otherwise raise ValueError."""
    if not name or name != name.strip():
        raise ValueError(f"invalid time zone {name!r}; use an IANA name such as 'UTC' or 'Europe/Berlin'")
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise ValueError(
            f"unknown time zone {name!r}; use an IANA name such as 'UTC' or 'Europe/Berlin'"
        ) from error
    return name


def local_to_utc(naive: pl.Expr, timezone: str) -> pl.Expr:
    """Convert a naive local time in ``timezone`` to naive UTC.

    A local time that a daylight-saving change skips becomes null, and the
    caller rejects the line.
    NOTE: a local time that occurs twice when clocks go back is read as the
    earlier of the two, because the log gives no way to tell them apart.
    """
    if timezone == "UTC":
        return naive
    return (
        naive.dt.replace_time_zone(timezone, ambiguous="earliest", non_existent="null")
        .dt.convert_time_zone("UTC")
        .dt.replace_time_zone(None)
    )


def _parse(text: pl.Expr, fmt: str) -> pl.Expr:
    return text.str.to_datetime(fmt, strict=False, time_unit="us")


def parse_clf_time(text: pl.Expr, timezone: str) -> pl.Expr:
    """Parse ``dd/Mon/yyyy:HH:MM:SS[.fff][ +hhmm]`` into naive UTC."""
    stripped = text.str.strip_chars()
    with_offset = _parse(stripped, CLF_WITH_OFFSET).dt.replace_time_zone(None)
    local = local_to_utc(_parse(stripped, CLF_LOCAL), timezone)
    return pl.coalesce(with_offset, local)


def parse_any_time(text: pl.Expr, timezone: str) -> pl.Expr:
    """Parse ISO 8601, CLF or epoch-seconds text into naive UTC.

    Accepts what nginx writes for ``$time_iso8601``, ``$time_local`` and
    ``$msec`` (seconds since the epoch with a millisecond fraction). A space
    in place of the ISO ``T`` is accepted too.
    """
    stripped = text.str.strip_chars()
    iso = stripped.str.replace(r"^(\d{4}-\d{2}-\d{2}) ", "${1}T")
    seconds = stripped.cast(pl.Float64, strict=False)
    is_epoch = stripped.str.contains(r"^\d{9,11}(?:\.\d+)?$")
    epoch = pl.when(is_epoch).then(pl.from_epoch((seconds * 1_000_000).round().cast(pl.Int64), time_unit="us"))
    return pl.coalesce(
        _parse(iso, ISO_WITH_OFFSET).dt.replace_time_zone(None),
        local_to_utc(_parse(iso, ISO_LOCAL), timezone),
        parse_clf_time(stripped, timezone),
        epoch,
    )


def describe_time_failure(text: pl.Expr, timezone: str, parser) -> pl.Expr:
    """Return a reject reason for a timestamp text that ``parser`` turned into null."""
    naive_formats = [CLF_LOCAL, ISO_LOCAL]
    naive = pl.coalesce([_parse(text.str.strip_chars(), fmt) for fmt in naive_formats])
    return (
        pl.when(text.is_null())
        .then(pl.lit("missing timestamp"))
        .when(naive.is_not_null() & parser(text, timezone).is_null())
        .then(pl.format("local time {} does not exist in time zone {}", text, pl.lit(timezone)))
        .otherwise(pl.format("invalid timestamp {}", text))
    )


__all__ = [
    "describe_time_failure",
    "local_to_utc",
    "parse_any_time",
    "parse_clf_time",
    "validate_timezone",
]
