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

A notifier that supports threads gets the repeats of a (rule, group key)
as replies to the first alert's message: the outbox finds that message in
its own ``message_ref`` column. A notifier with a ``digest_threshold`` gets
one digest message instead of separate ones when a run finds at least that
many new alerts for it. The rows of one digest share a ``digest_id`` and
are marked sent together.

Only one process may deliver at a time; the run lock of the caller ensures
that. The connection must have no open transaction, because each step
commits on its own.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import duckdb

from gatewatch.errors import GatewatchError
from gatewatch.notify.alert import Alert, load_alert
from gatewatch.notify.base import DeliveryError, Notifier, ThreadContext
from gatewatch.store import utc_now

logger = logging.getLogger(__name__)

# How far before the last attempt the history check starts, to allow for
# clock skew between this host and the receiver.
HISTORY_MARGIN = timedelta(minutes=5)
# Alerts listed in one digest message at most; more make several digests.
MAX_DIGEST_ALERTS = 50


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
    last_errors: dict[str, str] = field(default_factory=dict)


@dataclass
class _OutboxRow:
    alert_id: str
    notifier: str
    state: str
    attempts: int
    last_attempt_at: datetime | None
    alert_exists: bool
    digest_id: str | None
    created_at: datetime | None


@dataclass
class _NotifierRun:
    """Per-notifier counters within one run."""

    attempts: int = 0
    consecutive_failures: int = 0
    stopped_reason: str | None = None
    # Seconds to wait before the next attempt, after a failure that did not
    # come with a Retry-After.
    backoff: float = 0.0


@dataclass
class _Counters:
    sent: int = 0
    recovered: int = 0
    failed: int = 0
    # notifier name -> the last delivery error of this run
    last_errors: dict[str, str] = field(default_factory=dict)


def _read_unsent_rows(con: duckdb.DuckDBPyConnection) -> list[_OutboxRow]:
    rows = con.execute(
        """
        SELECT o.alert_id, o.notifier, o.state, o.attempts, o.last_attempt_at, a.alert_id IS NOT NULL,
               o.digest_id, a.created_at
        FROM outbox AS o
        LEFT JOIN alerts AS a ON a.alert_id = o.alert_id
        WHERE o.state <> 'sent'
        ORDER BY a.created_at NULLS LAST, o.alert_id, o.notifier
        """
    ).fetchall()
    return [_OutboxRow(*row) for row in rows]


@dataclass
class _Unit:
    """The work of one delivery attempt: one alert, or the alerts of one digest."""

    rows: list[_OutboxRow]
    notifier: Notifier
    # Check for an earlier delivery: returns what Notifier.already_delivered returns.
    check: Callable[[datetime], bool | str | None]
    send: Callable[[], str | None]
    label: str
    thread_ref: str | None = None

    @property
    def in_doubt(self) -> bool:
        """True when an earlier attempt may have reached the receiver."""
        return any(row.state == "sending" or row.attempts > 0 for row in self.rows)


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
        backoff_base: float,
        backoff_max: float,
        sleep: Callable[[float], None],
        now: Callable[[], datetime],
        monotonic: Callable[[], float],
    ):
        self.con = con
        self.max_attempts_per_run = max_attempts_per_run
        self.max_retry_sleep = max_retry_sleep
        self.max_consecutive_failures = max_consecutive_failures
        self.history_margin = history_margin
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.sleep = sleep
        self.now = now
        self.monotonic = monotonic
        self.counters = _Counters()

    def deliver(self, unit: _Unit, run: _NotifierRun) -> None:
        """Deliver one unit, sleeping and trying again while the receiver requests a short wait."""
        while run.stopped_reason is None:
            if run.attempts >= self.max_attempts_per_run:
                run.stopped_reason = f"sent {self.max_attempts_per_run} alerts, the limit per run; the rest follow next run"
                return
            if run.backoff:
                self.sleep(run.backoff)
                run.backoff = 0.0
            error = self._attempt(unit, run)
            if error is None:
                run.consecutive_failures = 0
                return

            self.counters.failed += 1
            self.counters.last_errors[unit.notifier.name] = str(error)
            run.consecutive_failures += 1
            logger.warning("delivery of %s to notifier %s failed: %s", unit.label, unit.notifier.name, error)
            if error.retry_after is not None and error.retry_after > self.max_retry_sleep:
                run.stopped_reason = f"receiver requested a wait of {error.retry_after:g} s"
                # Kept on the notifier, so the next run in this process waits too.
                unit.notifier.retry_not_before = self.monotonic() + error.retry_after
            elif run.consecutive_failures >= self.max_consecutive_failures:
                run.stopped_reason = f"{run.consecutive_failures} failures in a row, last: {error}"
            elif error.retry_after is not None:
                logger.info(
                    "notifier %s: waiting %g s as the receiver requested, then sending %s again",
                    unit.notifier.name, error.retry_after, unit.label,
                )
                self.sleep(error.retry_after)
                continue
            else:
                # Exponential backoff before this notifier's next attempt.
                run.backoff = min(self.backoff_max, self.backoff_base * 2 ** (run.consecutive_failures - 1))
            return

    def _attempt(self, unit: _Unit, run: _NotifierRun) -> DeliveryError | None:
        """Make one delivery attempt; return the error, or None when the rows are now sent."""
        if unit.in_doubt:
            last = max((row.last_attempt_at or row.created_at or self.now()) for row in unit.rows)
            try:
                delivered = unit.check(last - self.history_margin)
            except DeliveryError as error:
                self.record_error(unit.rows, str(error))
                return error
            if delivered:
                ref = delivered if isinstance(delivered, str) else None
                self._mark_sent(unit, ref)
                logger.info(
                    "%s was already delivered to notifier %s by an earlier run; marked sent",
                    unit.label, unit.notifier.name,
                )
                self.counters.recovered += len(unit.rows)
                return None
            if delivered is None and any(row.state == "sending" for row in unit.rows):
                logger.warning(
                    "notifier %s cannot tell whether %s reached it before the last run stopped; "
                    "sending again, which may deliver it twice",
                    unit.notifier.name, unit.label,
                )

        attempt_at = self.now()
        self._update_rows(
            unit.rows,
            "UPDATE outbox SET state = 'sending', attempts = attempts + 1, last_attempt_at = ? "
            "WHERE alert_id = ? AND notifier = ?",
            [attempt_at],
        )
        for row in unit.rows:
            row.state = "sending"
            row.attempts += 1
            row.last_attempt_at = attempt_at
        run.attempts += 1

        try:
            ref = unit.send()
        except DeliveryError as error:
            self._set_pending(unit.rows, str(error))
            return error
        except Exception as error:
            # A bug in one notifier must not stop delivery to the others.
            # The rows go back to pending; the next attempt checks first.
            logger.exception("notifier %s raised while sending %s", unit.notifier.name, unit.label)
            message = f"{type(error).__name__}: {error}"
            self._set_pending(unit.rows, message)
            return DeliveryError(message)

        self._mark_sent(unit, ref if isinstance(ref, str) else None)
        logger.info("sent %s to notifier %s", unit.label, unit.notifier.name)
        return None

    def _mark_sent(self, unit: _Unit, ref: str | None) -> None:
        self._update_rows(
            unit.rows,
            "UPDATE outbox SET state = 'sent', sent_at = ?, last_error = NULL, message_ref = ?, thread_ref = ? "
            "WHERE alert_id = ? AND notifier = ?",
            [self.now(), ref, unit.thread_ref],
        )
        for row in unit.rows:
            row.state = "sent"
        self.counters.sent += len(unit.rows)

    def _set_pending(self, rows: list[_OutboxRow], message: str) -> None:
        self._update_rows(
            rows, "UPDATE outbox SET state = 'pending', last_error = ? WHERE alert_id = ? AND notifier = ?", [message]
        )
        for row in rows:
            row.state = "pending"

    def record_error(self, rows: list[_OutboxRow], message: str) -> None:
        """Store an error without changing the state, so a ``sending`` row is checked again."""
        self._update_rows(rows, "UPDATE outbox SET last_error = ? WHERE alert_id = ? AND notifier = ?", [message])

    def _update_rows(self, rows: list[_OutboxRow], sql: str, params: list) -> None:
        """Run ``sql`` for each row (key parameters last) in one transaction."""
        self.con.begin()
        try:
            for row in rows:
                self.con.execute(sql, [*params, row.alert_id, row.notifier])
            self.con.commit()
        except Exception:
            self.con.rollback()
            raise


def _thread_for(
    con: duckdb.DuckDBPyConnection, row: _OutboxRow, alert: Alert, window: timedelta
) -> ThreadContext | None:
    """Find the thread a repeat of ``alert`` belongs in, or None when it starts a new one.

    The parent is the newest message sent to this notifier for an earlier
    alert of the same rule and group key, within ``window`` of event time,
    that was neither a reply nor part of a digest.
    """
    found = con.execute(
        """
        SELECT o.message_ref, p.alert_id, p.window_end
        FROM outbox AS o
        JOIN alerts AS p USING (alert_id)
        JOIN alerts AS a ON a.alert_id = ?
        WHERE o.notifier = ? AND o.state = 'sent' AND o.message_ref IS NOT NULL
          AND o.thread_ref IS NULL AND o.digest_id IS NULL
          AND p.rule_id = a.rule_id AND p.group_key::VARCHAR = a.group_key::VARCHAR
          AND p.alert_id <> a.alert_id
          AND p.window_end <= a.window_end AND p.window_end >= a.window_end - ?
        ORDER BY p.window_end DESC LIMIT 1
        """,
        [row.alert_id, row.notifier, window],
    ).fetchone()
    if found is None:
        return None
    parent_ref, parent_id, parent_end = found
    repeat = con.execute(
        "SELECT count(*) FROM alerts WHERE rule_id = ? AND group_key::VARCHAR = "
        "(SELECT group_key::VARCHAR FROM alerts WHERE alert_id = ?) AND window_end BETWEEN ? AND ?",
        [alert.rule_id, alert.alert_id, parent_end, alert.window_end],
    ).fetchone()[0]
    return ThreadContext(parent_ref=parent_ref, parent=load_alert(con, parent_id), repeat=repeat)


def _earlier_unsent(con: duckdb.DuckDBPyConnection, row: _OutboxRow) -> bool:
    """Tell whether an earlier alert of the same rule and group key waits for this notifier."""
    return con.execute(
        """
        SELECT count(*) > 0
        FROM outbox AS o
        JOIN alerts AS p USING (alert_id)
        JOIN alerts AS a ON a.alert_id = ?
        WHERE o.notifier = ? AND o.state <> 'sent'
          AND p.rule_id = a.rule_id AND p.group_key::VARCHAR = a.group_key::VARCHAR
          AND p.window_end < a.window_end
        """,
        [row.alert_id, row.notifier],
    ).fetchone()[0]


def _digest_id(alert_ids: list[str]) -> str:
    digest = hashlib.sha256("\x00".join(sorted(alert_ids)).encode())
    return "d-" + digest.hexdigest()[:16]


def _assign_digests(
    con: duckdb.DuckDBPyConnection, rows: list[_OutboxRow], notifiers: Mapping[str, Notifier]
) -> None:
    """Group the new rows of each notifier with a digest threshold into digests, when there are enough.

    A new row is pending and never tried. The digest ids are committed
    before any send, so a crash and rerun sends the same digests.
    """
    for name, notifier in notifiers.items():
        threshold = getattr(notifier, "digest_threshold", None)
        if not threshold:
            continue
        fresh = [
            row for row in rows
            if row.notifier == name and row.alert_exists and row.state == "pending"
            and row.attempts == 0 and row.digest_id is None
        ]
        if len(fresh) < threshold:
            continue
        con.begin()
        try:
            for start in range(0, len(fresh), MAX_DIGEST_ALERTS):
                chunk = fresh[start : start + MAX_DIGEST_ALERTS]
                digest_id = _digest_id([row.alert_id for row in chunk])
                for row in chunk:
                    con.execute(
                        "UPDATE outbox SET digest_id = ? WHERE alert_id = ? AND notifier = ?",
                        [digest_id, row.alert_id, row.notifier],
                    )
                    row.digest_id = digest_id
            con.commit()
        except Exception:
            con.rollback()
            raise
        logger.info("notifier %s: %d new alerts go out as digests", name, len(fresh))


def deliver_pending(
    con: duckdb.DuckDBPyConnection,
    notifiers: Mapping[str, Notifier],
    *,
    max_attempts_per_run: int = 100,
    max_retry_sleep: float = 30.0,
    max_consecutive_failures: int = 3,
    history_margin: timedelta = HISTORY_MARGIN,
    backoff_base: float = 1.0,
    backoff_max: float = 30.0,
    sleep: Callable[[float], None] = time.sleep,
    now: Callable[[], datetime] = utc_now,
    should_stop: Callable[[], bool] = lambda: False,
    monotonic: Callable[[], float] = time.monotonic,
) -> DeliveryReport:
    """Deliver every unsent outbox row, oldest alert first.

    ``notifiers`` maps the outbox ``notifier`` name to its notifier. Per
    notifier and run, at most ``max_attempts_per_run`` sends are made (a
    digest counts as one). When a notifier fails, the row goes back to
    ``pending`` with ``last_error``, and the notifier's next attempt waits
    ``backoff_base`` seconds, doubling with each failure in a row up to
    ``backoff_max``. A notifier is not used for the rest of the run when the
    receiver requests a wait longer than ``max_retry_sleep`` seconds, or
    after ``max_consecutive_failures`` failures in a row. After such a long
    wait request, later runs in the same process skip the notifier until the
    wait is over. A shorter requested
    wait is slept, and then the same row is tried again. Rows whose notifier
    is not in ``notifiers`` stay pending and are reported. ``should_stop`` is
    checked before each row; when it returns True the run ends and the
    remaining rows stay pending.
    """
    delivery = _Delivery(
        con,
        max_attempts_per_run=max_attempts_per_run,
        max_retry_sleep=max_retry_sleep,
        max_consecutive_failures=max_consecutive_failures,
        history_margin=history_margin,
        backoff_base=backoff_base,
        backoff_max=backoff_max,
        sleep=sleep,
        now=now,
        monotonic=monotonic,
    )
    runs = {name: _NotifierRun() for name in notifiers}
    for name, notifier in notifiers.items():
        remaining = getattr(notifier, "retry_not_before", 0.0) - monotonic()
        if remaining > 0:
            runs[name].stopped_reason = f"waiting {remaining:.0f} s more, as the receiver requested"
    unconfigured: dict[str, int] = {}
    rows = _read_unsent_rows(con)
    _assign_digests(con, rows, notifiers)
    digests_done: set[tuple[str, str]] = set()

    for row in rows:
        if should_stop():
            break
        notifier = notifiers.get(row.notifier)
        if notifier is None:
            unconfigured[row.notifier] = unconfigured.get(row.notifier, 0) + 1
            continue
        run = runs[row.notifier]
        if run.stopped_reason is not None or row.state == "sent":
            continue
        if not row.alert_exists:
            logger.error("outbox row for notifier %s names alert %s, which is not in the alerts table",
                         row.notifier, row.alert_id)
            continue
        if row.digest_id is not None:
            key = (row.notifier, row.digest_id)
            if key not in digests_done:
                digests_done.add(key)
                members = [r for r in rows if (r.notifier, r.digest_id) == key and r.alert_exists]
                unit = _digest_unit(con, delivery, members, notifier)
                if unit is not None:
                    delivery.deliver(unit, run)
            continue
        unit = _alert_unit(con, delivery, row, notifier)
        if unit is not None:
            delivery.deliver(unit, run)

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
        last_errors=dict(counters.last_errors),
    )


def _alert_unit(con: duckdb.DuckDBPyConnection, delivery: _Delivery, row: _OutboxRow, notifier: Notifier) -> _Unit | None:
    """Build the unit for one alert, in its thread when the notifier supports threads."""
    try:
        alert = load_alert(con, row.alert_id)
    except GatewatchError as error:
        logger.error("cannot load alert %s for notifier %s: %s", row.alert_id, row.notifier, error)
        delivery.record_error([row], str(error))
        return None
    thread_window = getattr(notifier, "thread_window", None)
    if thread_window is None:
        return _Unit(
            rows=[row], notifier=notifier, label=f"alert {row.alert_id}",
            check=lambda since: notifier.already_delivered(alert, since),
            send=lambda: notifier.send(alert),
        )
    if _earlier_unsent(con, row):
        # A repeat waits for the alerts before it, so that it finds its
        # thread and every attempt at it posts to the same place.
        logger.debug("alert %s waits for an earlier alert of its rule and group", row.alert_id)
        return None
    thread = _thread_for(con, row, alert, thread_window)
    label = f"alert {row.alert_id}" + (f" (repeat {thread.repeat} in thread {thread.parent_ref})" if thread else "")
    return _Unit(
        rows=[row], notifier=notifier, label=label,
        check=lambda since: notifier.already_delivered(alert, since, thread=thread),
        send=lambda: notifier.send(alert, thread=thread),
        thread_ref=thread.parent_ref if thread else None,
    )


def _digest_unit(
    con: duckdb.DuckDBPyConnection, delivery: _Delivery, rows: list[_OutboxRow], notifier: Notifier
) -> _Unit | None:
    digest_id = rows[0].digest_id
    assert digest_id is not None
    try:
        alerts = [load_alert(con, row.alert_id) for row in rows]
    except GatewatchError as error:
        logger.error("cannot load the alerts of digest %s for notifier %s: %s", digest_id, notifier.name, error)
        delivery.record_error(rows, str(error))
        return None
    return _Unit(
        rows=rows, notifier=notifier, label=f"digest {digest_id} of {len(rows)} alerts",
        check=lambda since: notifier.digest_delivered(digest_id, since),
        send=lambda: notifier.send_digest(alerts, digest_id),
    )
