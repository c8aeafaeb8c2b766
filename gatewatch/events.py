"""The normalized event columns that every connector produces.

Column names follow ECS where ECS has one. ``ts`` is a UTC timestamp stored
without a zone; connectors convert every source time to UTC first.
"""

from __future__ import annotations

import polars as pl

# Columns a connector fills, in table order, with their polars types.
PARSED_COLUMNS: dict[str, pl.DataType] = {
    "ts": pl.Datetime("us"),
    "client_ip": pl.String(),
    "forwarded_for": pl.String(),
    "method": pl.String(),
    "scheme": pl.String(),
    "host": pl.String(),
    "path": pl.String(),
    "query": pl.String(),
    "http_version": pl.String(),
    "status": pl.Int32(),
    "bytes_sent": pl.Int64(),
    "bytes_received": pl.Int64(),
    "duration_ms": pl.Float64(),
    "user_agent": pl.String(),
    "referer": pl.String(),
    "user": pl.String(),
    "credential_id": pl.String(),
    "request_id": pl.String(),
    "country": pl.String(),
    "asn": pl.Int64(),
    "waf_action": pl.String(),
    "waf_rule_id": pl.String(),
    "waf_message": pl.String(),
    "attack_class": pl.String(),
    "malformed": pl.Boolean(),
    "extra": pl.String(),
}

# Columns the ingest step adds: where the event came from.
LINEAGE_COLUMNS: dict[str, pl.DataType] = {
    "source": pl.String(),
    "format": pl.String(),
    "file": pl.String(),
    "offset": pl.Int64(),
    "ingested_at": pl.Datetime("us"),
}

EVENT_COLUMNS: dict[str, pl.DataType] = {**PARSED_COLUMNS, **LINEAGE_COLUMNS}

# Columns that rules may name in `where`, `having` and `group_by`.
RULE_COLUMNS: frozenset[str] = frozenset(EVENT_COLUMNS)


def empty_parsed_frame() -> pl.DataFrame:
    """Return a frame with every parsed column and no rows."""
    return pl.DataFrame(schema=PARSED_COLUMNS)


def conform(frame: pl.DataFrame) -> pl.DataFrame:
    """Add missing parsed columns as nulls and cast all of them to their types.

    Keeps ``offset`` when the frame has it, since ingest needs it for lineage.
    """
    exprs = []
    for name, dtype in PARSED_COLUMNS.items():
        if name in frame.columns:
            exprs.append(pl.col(name).cast(dtype))
        else:
            exprs.append(pl.lit(None, dtype=dtype).alias(name))
    if "offset" in frame.columns:
        exprs.append(pl.col("offset").cast(pl.Int64))
    return frame.select(exprs)
