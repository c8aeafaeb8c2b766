"""Waiting for DuckDB's file lock, which one writer process or many readers hold.

DuckDB lets one process open a database file read-write, or any number of
processes open it read-only, but not both at once. `gatewatch serve` opens
the file only for the length of a step and `gatewatch query` only for the
length of a statement, so each side waits briefly for the other instead of
failing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

import duckdb

from gatewatch.errors import GatewatchError, StoreError

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

# First and longest pause between attempts to open a locked file, in seconds.
FIRST_PAUSE = 0.05
MAX_PAUSE = 1.0


class DatabaseBusy(GatewatchError):
    """The database file stayed locked by another process for the whole wait."""


def is_lock_conflict(error: BaseException) -> bool:
    """Tell whether ``error`` is DuckDB reporting that another process holds the file lock.

    NOTE: DuckDB raises a plain IOException for this, so the test reads its
    message ("Could not set lock on file"), as worded by DuckDB 1.x and 2.0.
    """
    if not isinstance(error, (duckdb.Error, StoreError)):
        return False
    return "Could not set lock on file" in str(error)


def open_with_wait(
    open_database: Callable[[], _T],
    wait: timedelta,
    *,
    what: str,
    on_wait: Callable[[], None] | None = None,
    stopped: Callable[[], bool] = lambda: False,
    sleep: Callable[[float], None] = time.sleep,
) -> _T:
    """Call ``open_database`` until the file lock is free or ``wait`` has passed.

    ``on_wait`` is called once, before the first pause. Raises DatabaseBusy
    naming ``what`` (the database path) when the wait runs out or ``stopped``
    returns True; other errors pass through at once.
    """
    deadline = time.monotonic() + wait.total_seconds()
    pause = FIRST_PAUSE
    waited = False
    while True:
        try:
            return open_database()
        except (duckdb.Error, StoreError) as error:
            if not is_lock_conflict(error):
                raise
            if time.monotonic() >= deadline or stopped():
                raise DatabaseBusy(
                    f"the database is locked by another gatewatch process (a running step of "
                    f"`gatewatch serve`, or a query) and stayed locked for {wait.total_seconds():g} s",
                    what,
                ) from None
        if not waited and on_wait is not None:
            on_wait()
        waited = True
        sleep(min(pause, max(0.0, deadline - time.monotonic())))
        pause = min(pause * 2, MAX_PAUSE)
