"""Delivery of the outbox: each alert to each notifier, once.

The engine inserts an alert and one ``pending`` outbox row per notifier in
one transaction. Delivery moves a row ``pending`` → ``sending`` (committed
before the send) → ``sent`` (committed after it). A row found in
``sending``, or a row with earlier failed attempts, may already have
reached its destination: the send died or timed out after the receiver got
it. Before sending such a row again, the outbox calls the notifier's
``already_delivered``. The Slack bot implements it by searching the channel
history for the alert id in the message metadata. A notifier that cannot tell (webhook, terminal) sends
again, which is the one case where an alert can be delivered twice.

Only one process may deliver at a time; the run lock of the caller ensures
that. The connection must have no open transaction, because each step
commits on its own.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import duckdb

from gatewatch.errors import GatewatchError
from gatewatch.notify.alert import Alert, load_alert
from gatewatch.notify.base import DeliveryError, Notifier
from gatewatch.store import utc_now

logger = logging.getLogger(__name__)

# How far before the last attempt the history check starts, to allow for
# clock skew between this host and the receiver.
HISTORY_MARGIN = timedelta(minutes=5)


@dataclass(frozen=True)
class DeliveryReport:
    """The outcome of one ``deliver_pending`` run.

    ``sent`` counts rows marked sent in this run, including ``recovered``
    rows that an earlier run had delivered (found by ``already_delivered``).
    ``failed`` counts failed attempts, so one row can count more than once.
    ``pending_left`` counts rows not sent when the run ended.
    ``unconfigured`` maps a notifier name that has rows but no configured
    notifier to its number of rows. ``stopped`` maps a notifier that was
    not used for the rest of the run to the reason.
    """

    sent: int
    failed: int
    pending_left: int
    recovered: int = 0
    unconfigured: dict[str, int] = field(default_factory=dict)
    stopped: dict[str, str] = field(default_factory=dict)


@dataclass
class _OutboxRow:
    alert_id: str
    notifier: str
    state: str
    attempts: int
    last_attempt_at: datetime | None
    alert_exists: bool


@dataclass
class _NotifierRun:
    """Per-notifier counters within one run."""

    attempts: int = 0
    consecutive_failures: int = 0
    stopped_reason: str | None = None


@dataclass
class _Counters:
    sent: int = 0
    recovered: int = 0
    failed: int = 0


def _execute_committed(con: duckdb.DuckDBPyConnection, sql: str, params: list) -> None:
    """Run one statement in its own transaction."""
    con.begin()
    try:
        con.execute(sql, params)
        con.commit()
    except Exception:
        con.rollback()
        raise


def _read_unsent_rows(con: duckdb.DuckDBPyConnection) -> list[_OutboxRow]:
    rows = con.execute(
        """
        SELECT o.alert_id, o.notifier, o.state, o.attempts, o.last_attempt_at, a.alert_id IS NOT NULL
        FROM outbox AS o
        LEFT JOIN alerts AS a ON a.alert_id = o.alert_id
        WHERE o.state <> 'sent'
        ORDER BY a.created_at NULLS LAST, o.alert_id, o.notifier
        """
    ).fetchall()
    return [_OutboxRow(*row) for row in rows]


class _Delivery:
    """One run of deliver_pending; holds the connection, clock and counters."""

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        *,
        max_attempts_per_run: int,
        max_retry_sleep: float,
        max_consecutive_failures: int,
        history_margin: timedelta,
        sleep: Callable[[float], None],
        now: Callable[[], datetime],
    ):
        self.con = con
        self.max_attempts_per_run = max_attempts_per_run
        self.max_retry_sleep = max_retry_sleep
        self.max_consecutive_failures = max_consecutive_failures
        self.history_margin = history_margin
        self.sleep = sleep
        self.now = now
        self.counters = _Counters()

    def deliver_row(self, row: _OutboxRow, notifier: Notifier, alert: Alert, run: _NotifierRun) -> None:
        """Deliver one row, sleeping and trying again while the receiver requests a short wait."""
        while run.stopped_reason is None:
            if run.attempts >= self.max_attempts_per_run:
                run.stopped_reason = f"sent {self.max_attempts_per_run} alerts, the limit per run; the rest follow next run"
                return
            error = self._attempt(row, notifier, alert, run)
            if error is None:
                run.consecutive_failures = 0
                return

            self.counters.failed += 1
            run.consecutive_failures += 1
            logger.warning(
                "delivery of alert %s to notifier %s failed: %s", row.alert_id, row.notifier, error
            )
            if error.retry_after is not None and error.retry_after > self.max_retry_sleep:
                run.stopped_reason = f"receiver requested a wait of {error.retry_after:g} s"
            elif run.consecutive_failures >= self.max_consecutive_failures:
                run.stopped_reason = f"{run.consecutive_failures} failures in a row, last: {error}"
            elif error.retry_after is not None:
                self.sleep(error.retry_after)
                continue
            return

    def _attempt(self, row: _OutboxRow, notifier: Notifier, alert: Alert, run: _NotifierRun) -> DeliveryError | None:
        """Make one delivery attempt; return the error, or None when the row is now sent."""
        key = [row.alert_id, row.notifier]
        if row.state == "sending" or row.attempts > 0:
            since = (row.last_attempt_at or alert.created_at) - self.history_margin
            try:
                delivered = notifier.already_delivered(alert, since)
            except DeliveryError as error:
                self.record_error(row, str(error))
                return error
            if delivered:
                _execute_committed(
                    self.con,
                    "UPDATE outbox SET state = 'sent', sent_at = ?, last_error = NULL "
                    "WHERE alert_id = ? AND notifier = ?",
                    [self.now(), *key],
                )
                logger.info(
                    "alert %s was already delivered to notifier %s by an earlier run; marked sent",
                    row.alert_id,
                    row.notifier,
                )
                self.counters.sent += 1
                self.counters.recovered += 1
                return None
            if delivered is None and row.state == "sending":
                logger.warning(
                    "notifier %s cannot tell whether alert %s reached it before the last run stopped; "
                    "sending again, which may deliver it twice",
                    row.notifier,
                    row.alert_id,
                )

        attempt_at = self.now()
        _execute_committed(
            self.con,
            "UPDATE outbox SET state = 'sending', attempts = attempts + 1, last_attempt_at = ? "
            "WHERE alert_id = ? AND notifier = ?",
            [attempt_at, *key],
        )
        row.state = "sending"
        row.attempts += 1
        row.last_attempt_at = attempt_at
        run.attempts += 1

        try:
            notifier.send(alert)
        except DeliveryError as error:
            self._set_pending(row, str(error))
            return error
        except Exception as error:
            # A bug in one notifier must not stop delivery to the others.
            # The row goes back to pending; the next attempt checks first.
            logger.exception("notifier %s raised while sending alert %s", row.notifier, row.alert_id)
            message = f"{type(error).__name__}: {error}"
            self._set_pending(row, message)
            return DeliveryError(message)

        _execute_committed(
            self.con,
            "UPDATE outbox SET state = 'sent', sent_at = ?, last_error = NULL WHERE alert_id = ? AND notifier = ?",
            [self.now(), *key],
        )
        row.state = "sent"
        self.counters.sent += 1
        logger.info("sent alert %s to notifier %s", row.alert_id, row.notifier)
        return None

    def _set_pending(self, row: _OutboxRow, message: str) -> None:
        _execute_committed(
            self.con,
            "UPDATE outbox SET state = 'pending', last_error = ? WHERE alert_id = ? AND notifier = ?",
            [message, row.alert_id, row.notifier],
        )
        row.state = "pending"

    def record_error(self, row: _OutboxRow, message: str) -> None:
        """Store an error without changing the state, so a ``sending`` row is checked again."""
        _execute_committed(
            self.con,
            "UPDATE outbox SET last_error = ? WHERE alert_id = ? AND notifier = ?",
            [message, row.alert_id, row.notifier],
        )


def deliver_pending(
    con: duckdb.DuckDBPyConnection,
    notifiers: Mapping[str, Notifier],
    *,
    max_attempts_per_run: int = 100,
    max_retry_sleep: float = 30.0,
    max_consecutive_failures: int = 3,
    history_margin: timedelta = HISTORY_MARGIN,
    sleep: Callable[[float], None] = time.sleep,
    now: Callable[[], datetime] = utc_now,
    should_stop: Callable[[], bool] = lambda: False,
) -> DeliveryReport:
    """Deliver every unsent outbox row, oldest alert first.

    ``notifiers`` maps the outbox ``notifier`` name to its notifier. Per
    notifier and run, at most ``max_attempts_per_run`` sends are made. When a
    notifier fails, the row goes back to ``pending`` with ``last_error`` and
    delivery goes on with the next row. A notifier is not used for the rest of
    the run when the receiver requests a wait longer than ``max_retry_sleep``
    seconds, or after ``max_consecutive_failures`` failures in a row. A
    shorter requested wait is slept, and then the same row is tried again.
    Rows whose notifier is not in ``notifiers`` stay pending and are reported.
    ``should_stop`` is checked before each row; when it returns True the run
    ends and the remaining rows stay pending.
    """
    delivery = _Delivery(
        con,
        max_attempts_per_run=max_attempts_per_run,
        max_retry_sleep=max_retry_sleep,
        max_consecutive_failures=max_consecutive_failures,
        history_margin=history_margin,
        sleep=sleep,
        now=now,
    )
    runs = {name: _NotifierRun() for name in notifiers}
    unconfigured: dict[str, int] = {}

    for row in _read_unsent_rows(con):
        if should_stop():
            break
        notifier = notifiers.get(row.notifier)
        if notifier is None:
            unconfigured[row.notifier] = unconfigured.get(row.notifier, 0) + 1
            continue
        run = runs[row.notifier]
        if run.stopped_reason is not None:
            continue
        if not row.alert_exists:
            logger.error("outbox row for notifier %s names alert %s, which is not in the alerts table",
                         row.notifier, row.alert_id)
            continue
        try:
            alert = load_alert(con, row.alert_id)
        except GatewatchError as error:
            logger.error("cannot load alert %s for notifier %s: %s", row.alert_id, row.notifier, error)
            delivery.record_error(row, str(error))
            continue
        delivery.deliver_row(row, notifier, alert, run)

    for name, count in unconfigured.items():
        logger.warning(
            "%d outbox rows wait for notifier %r, which is not configured; they stay pending", count, name
        )
    stopped = {name: run.stopped_reason for name, run in runs.items() if run.stopped_reason is not None}
    for name, reason in stopped.items():
        logger.warning("stopped sending to notifier %s for this run: %s", name, reason)

    pending_left = con.execute("SELECT count(*) FROM outbox WHERE state <> 'sent'").fetchone()[0]
    counters = delivery.counters
    return DeliveryReport(
        sent=counters.sent,
        failed=counters.failed,
        pending_left=pending_left,
        recovered=counters.recovered,
        unconfigured=unconfigured,
        stopped=stopped,
    )
