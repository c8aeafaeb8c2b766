"""The steps of a tick (ingest, evaluate, deliver) and one whole tick.

A fault in one source, rule or notifier is recorded in the report and the
rest of the step goes on. ``gatewatch run --once`` calls ``run_tick``; the
daemon in scheduler.py calls the steps on their own schedules. Each step
records its last run per source, rule or notifier in ``step_state``, which
``gatewatch status`` reads.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
from pydantic import ValidationError
from rich.console import Console

from gatewatch.config import Config
from gatewatch.connectors import get_connector
from gatewatch.connectors.base import Connector
from gatewatch.detect import AUTO_FORMAT, AutoFormat
from gatewatch.duration import format_duration
from gatewatch.engine.compiler import CompiledRule
from gatewatch.engine.evaluator import EvaluationSettings, RuleReport, evaluate_rule
from gatewatch.engine.loader import RuleSet, load_rules
from gatewatch.errors import ConfigError, GatewatchError, SourceError
from gatewatch.ingest import MAX_CLOCK_SKEW, SourceReport, ingest_source
from gatewatch.locking import open_with_wait
from gatewatch.notify import DeliveryReport, Notifier, build_notifier, deliver_pending
from gatewatch.retention import apply_retention
from gatewatch.store import Store, utc_now
from gatewatch.text import counted
from gatewatch.yamlsource import raise_validation_error

logger = logging.getLogger(__name__)

# Checked between sources, rules and alerts. When it returns True, the step
# stops after the source, rule or alert in progress, which commits on its own.
StopCheck = Callable[[], bool]


def _never() -> bool:
    return False


@dataclass
class TickReport:
    sources: list[SourceReport] = field(default_factory=list)
    rules: list[RuleReport] = field(default_factory=list)
    delivery: DeliveryReport | None = None
    errors: list[GatewatchError] = field(default_factory=list)

    @property
    def lines(self) -> int:
        return sum(s.lines for s in self.sources)

    @property
    def events(self) -> int:
        return sum(s.events for s in self.sources)

    @property
    def rejects(self) -> int:
        return sum(s.rejects for s in self.sources)

    @property
    def alerts(self) -> int:
        return sum(len(r.alert_ids) for r in self.rules)


class RunLocked(GatewatchError):
    """Another gatewatch run holds the lock on this database."""


@contextmanager
def run_lock(database: Path) -> Iterator[None]:
    """Hold an exclusive lock beside the database for the length of a tick."""
    lock_path = Path(f"{database}.lock")
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(lock_path, "a+")
    except OSError as exc:
        raise GatewatchError(
            f"cannot create the lock file: {exc.strerror}; make the database folder writable "
            "or set `database:` to a writable path",
            lock_path,
        ) from None
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip()
            who = f" (pid {holder})" if holder.isdigit() else ""
            raise RunLocked(
                f"another gatewatch run{who} is using this database; this run did nothing", database
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield
    finally:
        handle.close()


def build_connector(config: Config, index: int, fingerprint_key: bytes = b"") -> Connector | AutoFormat:
    """Create the connector of source ``index`` with its validated options.

    A `format: auto` source gets a chooser that picks a connector per file.
    """
    source = config.sources[index]
    if source.format.strip().lower() == AUTO_FORMAT:
        return AutoFormat(source.options, source.timezone, fingerprint_key)
    try:
        connector_class = get_connector(source.format)
    except GatewatchError as exc:
        raise config.error(exc.message, "sources", index, "format") from None
    try:
        options = connector_class.options_model(**{"timezone": source.timezone, **source.options})
    except ValidationError as exc:
        raise_validation_error(
            config.document, exc, ConfigError, prefix=("sources", index, "options"),
            model=connector_class.options_model,
        )
    return connector_class(options, fingerprint_key=fingerprint_key)


def run_tick(config: Config, console: Console, rules: RuleSet | None = None) -> TickReport:
    """Run one tick over the config's store; the caller holds the run lock."""
    report = TickReport()
    rule_set = rules if rules is not None else load_rules(rule_locations(config))
    with open_store(config) as store:
        report.sources, ingest_errors = ingest_step(config, store)
        report.errors.extend(ingest_errors)
        report.errors.extend(rule_set.errors)
        notifiers, notifier_errors = build_notifiers(config, console)
        report.errors.extend(notifier_errors)
        report.rules, rule_errors = evaluate_step(config, store, rule_set.rules)
        report.errors.extend(rule_errors)
        report.delivery, delivery_errors = deliver_step(config, store, notifiers)
        report.errors.extend(delivery_errors)
        if config.retention.enabled:
            report.errors.extend(retention_step(config, store, rule_set.rules))
    return report


def open_store(config: Config) -> Store:
    """Open the config's store for writing, waiting up to ``schedule.database_wait`` for readers.

    Raises DatabaseBusy when a query keeps the file open for the whole wait.
    """
    database = config.resolve(config.database)
    return open_with_wait(lambda: Store(database), config.schedule.database_wait, what=str(database))


def rule_locations(config: Config) -> list[str]:
    return [loc if loc == "builtin" else str(config.resolve(loc)) for loc in config.rules]


# -- step records ------------------------------------------------------------


@dataclass
class StepRecord:
    """The outcome of one step for one source, rule or notifier, as stored in ``step_state``."""

    step: str
    name: str
    started_at: datetime
    lines: int = 0
    events: int = 0
    rejects: int = 0
    alerts: int = 0
    sent: int = 0
    failed: int = 0
    error: str | None = None


def save_step(store: Store, record: StepRecord, began: float) -> float:
    """Store ``record`` as the last run of its step and name; return its duration in ms.

    ``began`` is the ``time.perf_counter()`` value when the step started.
    """
    duration_ms = (time.perf_counter() - began) * 1000
    finished_at = utc_now()
    success_at = finished_at if record.error is None else None
    with store.transaction() as con:
        con.execute(
            "INSERT INTO step_state AS s VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (step, name) DO UPDATE SET started_at = excluded.started_at, "
            "finished_at = excluded.finished_at, duration_ms = excluded.duration_ms, "
            "lines = excluded.lines, events = excluded.events, rejects = excluded.rejects, "
            "alerts = excluded.alerts, sent = excluded.sent, failed = excluded.failed, "
            "error = excluded.error, last_success_at = coalesce(excluded.last_success_at, s.last_success_at)",
            [
                record.step, record.name, record.started_at, finished_at, duration_ms,
                record.lines, record.events, record.rejects, record.alerts, record.sent, record.failed,
                record.error, success_at,
            ],
        )
    return duration_ms


# -- ingest ------------------------------------------------------------------


def ingest_step(
    config: Config, store: Store, sources: list[int] | None = None, stop: StopCheck = _never
) -> tuple[list[SourceReport], list[GatewatchError]]:
    """Ingest the sources at ``sources`` (indexes into the config; default all).

    A source or file that fails is reported and the rest go on. ``stop`` is
    checked between sources.
    """
    reports: list[SourceReport] = []
    errors: list[GatewatchError] = []
    for index in range(len(config.sources)) if sources is None else sources:
        if stop():
            break
        tick_start = utc_now()
        began = time.perf_counter()
        result, source_errors = _ingest_one(config, store, index)
        source_errors.extend(_late_event_warnings(store, tick_start, config.sources[index].name))
        record = StepRecord("ingest", config.sources[index].name, tick_start)
        if result is not None:
            reports.append(result)
            record.lines, record.events, record.rejects = result.lines, result.events, result.rejects
        if source_errors:
            record.error = str(source_errors[0])
        duration_ms = save_step(store, record, began)
        _log_step(
            record, duration_ms, bool(record.lines),
            f"ingest source={record.name} lines={record.lines} events={record.events} rejects={record.rejects}",
        )
        for error in source_errors:
            logger.warning("ingest source=%s error: %s", record.name, error)
        errors.extend(source_errors)
    return reports, errors


def ingest_all(config: Config, store: Store) -> tuple[list[SourceReport], list[GatewatchError]]:
    """Ingest every source; a source or file that fails is reported and the rest go on."""
    return ingest_step(config, store)


def _ingest_one(config: Config, store: Store, index: int) -> tuple[SourceReport | None, list[GatewatchError]]:
    source = config.sources[index]
    errors: list[GatewatchError] = []
    try:
        connector = build_connector(config, index, config.fingerprint_key(store.fingerprint_key))
        if source.is_s3:
            from gatewatch.s3source import ingest_s3_source

            result = ingest_s3_source(store, source.name, source.format, connector, source.paths, source.s3)
        else:
            patterns = [str(config.resolve(p)) for p in source.paths]
            result = ingest_source(store, source.name, source.format, connector, patterns)
    except SourceError as exc:
        # A source with no file at all points at its `path:` in the config.
        exc.path = exc.path or config.config_path
        exc.line = exc.line or config.line_of("sources", index, "path")
        return None, [exc]
    except GatewatchError as exc:
        return None, [exc]
    errors.extend(result.errors)
    if result.future:
        errors.append(
            config.error(
                f"source {source.name!r}: {result.future} events are dated more than "
                f"{format_duration(MAX_CLOCK_SKEW)} ahead of this machine's clock; they are stored "
                "but do not move the watermark. Check the log's time zone and the clock",
                "sources", index, "timezone",
            )
        )
    if result.lines and not result.events:
        errors.append(
            config.error(
                f"source {source.name!r}: {'the' if result.lines == 1 else 'all'} {counted(result.lines, 'new line')} "
                f"{'was' if result.lines == 1 else 'were'} rejected by the "
                f"{source.format!r} parser; check `format:`, and see the reasons with "
                "`gatewatch query \"SELECT reason, count(*) FROM rejects GROUP BY 1\"`",
                "sources", index, "format",
            )
        )
    return result, errors


def _late_event_warnings(store: Store, since: datetime, source: str) -> list[GatewatchError]:
    """Report events of ``source`` ingested since ``since`` that are older than a rule's last evaluation.

    Their windows were already evaluated, so no rule will count them.
    """
    evaluated_to = store.con.execute("SELECT min(evaluated_to) FROM rule_state").fetchone()[0]
    if evaluated_to is None:
        return []
    row = store.con.execute(
        "SELECT count(*), min(ts) FROM events WHERE source = ? AND ingested_at >= ? AND ts <= ?",
        [source, since, evaluated_to],
    ).fetchone()
    count, oldest = row
    if not count:
        return []
    return [
        GatewatchError(
            f"source {source!r}: {count} events (from {oldest.isoformat()}) arrived after rules had "
            f"evaluated up to {evaluated_to.isoformat()}, so no rule counts them; if this source lags "
            "behind the others, set its `allowed_lateness` to how far it lags"
        )
    ]


# -- evaluate ----------------------------------------------------------------


def evaluate_step(
    config: Config, store: Store, rules: list[CompiledRule], stop: StopCheck = _never
) -> tuple[list[RuleReport], list[GatewatchError]]:
    """Evaluate each enabled rule up to the watermark; ``stop`` is checked between rules."""
    settings = EvaluationSettings.from_config(config.engine, config.lateness)
    reports: list[RuleReport] = []
    errors: list[GatewatchError] = []
    for rule in rules:
        if not rule.rule.enabled:
            continue
        if stop():
            break
        record = StepRecord("evaluate", rule.id, utc_now())
        began = time.perf_counter()
        try:
            # Outbox rows are made only for the notifiers whose filters take the rule.
            notifier_names = [n.name for n in config.notifiers if n.accepts(rule.id, rule.rule.severity)]
            result = evaluate_rule(store, rule, notifier_names, settings)
        except GatewatchError as exc:
            # An unreadable enrichment file stops this rule, not the tick.
            errors.append(exc)
            record.error = str(exc)
            logger.error("evaluate rule=%s error: %s", rule.id, exc)
        except duckdb.Error as exc:
            message = str(exc).splitlines()[0]
            error = GatewatchError(
                f"rule {rule.id!r} failed in DuckDB: {message}",
                rule.rule.path,
                rule.rule.line_of("where" if rule.rule.where else "having"),
            )
            errors.append(error)
            record.error = str(error)
            logger.error("evaluate rule=%s error: %s", rule.id, error)
        else:
            reports.append(result)
            record.alerts = len(result.alert_ids)
        duration_ms = save_step(store, record, began)
        if record.error is None:
            ids = ",".join(result.alert_ids)
            _log_step(
                record, duration_ms, bool(record.alerts),
                f"evaluate rule={rule.id} to={_iso(result.evaluated_to)} alerts={record.alerts}"
                + (f" alert_ids={ids}" if ids else "")
                + f" suppressed={result.suppressed}",
            )
    return reports, errors


def _iso(moment: datetime | None) -> str:
    return "-" if moment is None else moment.isoformat()


# -- deliver -----------------------------------------------------------------


def build_notifiers(config: Config, console: Console) -> tuple[dict[str, Notifier], list[GatewatchError]]:
    """Build every configured notifier; one that cannot be built is reported and left out."""
    notifiers: dict[str, Notifier] = {}
    errors: list[GatewatchError] = []
    for index, notifier_config in enumerate(config.notifiers):
        try:
            notifiers[notifier_config.name] = build_notifier(notifier_config, console, resolve=config.resolve)
        except GatewatchError as exc:
            exc.path = exc.path or config.config_path
            exc.line = exc.line or config.line_of("notifiers", index)
            errors.append(exc)
    return notifiers, errors


def deliver_step(
    config: Config, store: Store, notifiers: dict[str, Notifier], stop: StopCheck = _never
) -> tuple[DeliveryReport, list[GatewatchError]]:
    """Deliver the pending outbox rows; ``stop`` is checked between alerts."""
    record = StepRecord("deliver", "outbox", utc_now())
    began = time.perf_counter()
    delivery = deliver_pending(store.con, notifiers, should_stop=stop)
    errors = _delivery_errors(delivery)
    record.sent, record.failed = delivery.sent, delivery.failed
    if errors:
        record.error = str(errors[0])
    duration_ms = save_step(store, record, began)
    _log_step(
        record, duration_ms, bool(delivery.sent or delivery.failed),
        f"deliver sent={delivery.sent} failed={delivery.failed} pending={delivery.pending_left}",
    )
    return delivery, errors


def _delivery_errors(delivery: DeliveryReport) -> list[GatewatchError]:
    """Report notifiers that failed this run, so the exit code shows an outage."""
    if delivery.failed == 0:
        return []
    errors = []
    for name, reason in delivery.stopped.items():
        errors.append(
            GatewatchError(
                f"notifier {name!r} failed: {reason}; "
                "undelivered alerts stay in the outbox and are retried next run"
            )
        )
    for name, error in delivery.last_errors.items():
        if name not in delivery.stopped:
            errors.append(
                GatewatchError(
                    f"notifier {name!r}: delivery failed: {error}; undelivered alerts stay in the outbox "
                    "and are retried next run"
                )
            )
    if not errors:
        errors.append(
            GatewatchError(
                f"{counted(delivery.failed, 'delivery attempt')} failed; {counted(delivery.pending_left, 'alert')} wait in the "
                "outbox and are retried next run"
            )
        )
    return errors


# -- retention ---------------------------------------------------------------


def retention_step(config: Config, store: Store, rules: list[CompiledRule]) -> list[GatewatchError]:
    """Delete (and first export, when configured) the events and rejects past their retention."""
    settings = config.retention
    record = StepRecord("retention", "events", utc_now())
    began = time.perf_counter()
    windows = [timedelta(microseconds=rule.window_us) for rule in rules]
    errors: list[GatewatchError] = []
    try:
        result = apply_retention(
            store,
            events_age=settings.events,
            rejects_age=settings.rejects,
            export_dir=config.resolve(settings.export_dir) if settings.export_dir else None,
            max_window=max(windows, default=timedelta(0)),
        )
    except (duckdb.Error, OSError) as exc:
        error = config.error(
            f"retention failed: {str(exc).splitlines()[0]}; no event was deleted by the failed run",
            "retention",
        )
        errors.append(error)
        record.error = str(error)
        logger.error("retention error: %s", error)
        save_step(store, record, began)
        return errors
    record.events = result.deleted_events
    record.rejects = result.deleted_rejects
    duration_ms = save_step(store, record, began)
    _log_step(
        record, duration_ms, bool(result.deleted_events or result.deleted_rejects),
        f"retention cutoff={_iso(result.cutoff)} deleted_events={result.deleted_events} "
        f"exported_files={result.exported_files} deleted_rejects={result.deleted_rejects}",
    )
    return errors


def _log_step(record: StepRecord, duration_ms: float, happened: bool, text: str) -> None:
    """Log one line for a step: INFO when it did something, DEBUG when it found nothing to do."""
    level = logging.INFO if happened or record.error else logging.DEBUG
    logger.log(level, "%s duration_ms=%.0f", text, duration_ms)
