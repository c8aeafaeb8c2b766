"""Frame utilities shared by the connectors."""

from __future__ import annotations

import polars as pl


def overwrite_rows(frame: pl.DataFrame, mask: pl.Series, values: pl.DataFrame) -> pl.DataFrame:
    """Replace the rows of ``frame`` where ``mask`` is true with the rows of ``values``.

    ``values`` contains the replacement rows in frame order, one per true entry
    of ``mask``. Its columns are written into ``frame``; a column that
    ``frame`` lacks is added, null outside the replaced rows. The parsers use
    this to recompute a minority of rows with a slower expression instead of
    splitting and re-sorting the whole frame.
    """
    positions = mask.arg_true()
    if positions.len() == 0:
        missing = [pl.lit(None, dtype=dtype).alias(name) for name, dtype in values.schema.items() if name not in frame.columns]
        return frame.with_columns(missing)
    updated = []
    for name, dtype in values.schema.items():
        if name in frame.columns:
            column = frame[name].cast(dtype)
        else:
            column = pl.Series(name, [None] * frame.height, dtype=dtype)
        updated.append(column.scatter(positions, values[name]))
    return frame.with_columns(updated)
