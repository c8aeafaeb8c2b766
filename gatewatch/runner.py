"""One tick: ingest every source, evaluate every rule, deliver the outbox.

A fault in one source, rule or notifier is recorded in the report and the
rest of the tick goes on. ``gatewatch run --once`` and the daemon both call
``run_tick``.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import duckdb
from pydantic import ValidationError
from rich.console import Console

from gatewatch.config import Config
from gatewatch.connectors import get_connector
from gatewatch.connectors.base import Connector
from gatewatch.engine.evaluator import EvaluationSettings, RuleReport, evaluate_rule
from gatewatch.engine.loader import RuleSet, load_rules
from gatewatch.errors import ConfigError, GatewatchError, SourceError
from gatewatch.duration import format_duration
from gatewatch.ingest import MAX_CLOCK_SKEW, SourceReport, ingest_source
from gatewatch.notify import DeliveryReport, build_notifier, deliver_pending
from gatewatch.store import Store, utc_now
from gatewatch.yamlsource import raise_validation_error


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
            raise RunLocked(
                "another gatewatch run is using this database; this run did nothing", database
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield
    finally:
        handle.close()


def build_connector(config: Config, index: int) -> Connector:
    """Create the connector of source ``index`` with its validated options."""
    source = config.sources[index]
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
    return connector_class(options)


def run_tick(config: Config, console: Console, rules: RuleSet | None = None) -> TickReport:
    """Run one tick over the config's store; the caller holds the run lock."""
    report = TickReport()
    database = config.resolve(config.database)
    with Store(database) as store:
        tick_start = utc_now()
        report.sources, ingest_errors = ingest_all(config, store)
        report.errors.extend(ingest_errors)
        report.errors.extend(_late_event_warnings(store, tick_start))
        rule_set = rules if rules is not None else load_rules(_rule_locations(config))
        report.errors.extend(rule_set.errors)
        notifiers = _build_notifiers(config, console, report)
        _evaluate_all(config, store, rule_set, [n.name for n in config.notifiers], report)
        report.delivery = deliver_pending(store.con, notifiers)
        report.errors.extend(_delivery_errors(report.delivery))
    return report


def _late_event_warnings(store: Store, since: datetime) -> list[GatewatchError]:
    """Report events ingested since ``since`` that are older than a rule's last evaluation.

    Their windows were already evaluated, so no rule will count them.
    """
    evaluated_to = store.con.execute("SELECT min(evaluated_to) FROM rule_state").fetchone()[0]
    if evaluated_to is None:
        return []
    rows = store.con.execute(
        "SELECT source, count(*), min(ts) FROM events WHERE ingested_at >= ? AND ts <= ? GROUP BY source",
        [since, evaluated_to],
    ).fetchall()
    return [
        GatewatchError(
            f"source {source!r}: {count} events (from {oldest.isoformat()}) arrived after rules had "
            f"evaluated up to {evaluated_to.isoformat()}, so no rule counts them; if this source lags "
            "behind the others, raise `engine.allowed_lateness`"
        )
        for source, count, oldest in rows
    ]


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
    if not errors:
        errors.append(
            GatewatchError(
                f"{delivery.failed} delivery attempts failed; {delivery.pending_left} alerts wait in the "
                "outbox and are retried next run"
            )
        )
    return errors


def _rule_locations(config: Config) -> list[str]:
    return [loc if loc == "builtin" else str(config.resolve(loc)) for loc in config.rules]


def ingest_all(config: Config, store: Store) -> tuple[list[SourceReport], list[GatewatchError]]:
    """Ingest every source; a source or file that fails is reported and the rest go on."""
    reports: list[SourceReport] = []
    errors: list[GatewatchError] = []
    for index, source in enumerate(config.sources):
        try:
            connector = build_connector(config, index)
            patterns = [str(config.resolve(p)) for p in source.paths]
            result = ingest_source(store, source.name, source.format, connector, patterns)
        except SourceError as exc:
            # A source with no file at all points at its `path:` in the config.
            exc.path = exc.path or config.config_path
            exc.line = exc.line or config.line_of("sources", index, "path")
            errors.append(exc)
            continue
        except GatewatchError as exc:
            errors.append(exc)
            continue
        reports.append(result)
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
                    f"source {source.name!r}: all {result.lines} new lines were rejected by the "
                    f"{source.format!r} parser; check `format:`, and see the reasons with "
                    "`gatewatch query \"SELECT reason, count(*) FROM rejects GROUP BY 1\"`",
                    "sources", index, "format",
                )
            )
    return reports, errors


def _build_notifiers(config: Config, console: Console, report: TickReport) -> dict[str, object]:
    notifiers = {}
    for index, notifier_config in enumerate(config.notifiers):
        try:
            notifiers[notifier_config.name] = build_notifier(notifier_config, console)
        except GatewatchError as exc:
            exc.path = exc.path or config.config_path
            exc.line = exc.line or config.line_of("notifiers", index)
            report.errors.append(exc)
    return notifiers


def _evaluate_all(
    config: Config, store: Store, rule_set: RuleSet, notifier_names: list[str], report: TickReport
) -> None:
    settings = EvaluationSettings.from_config(config.engine)
    for rule in rule_set.rules:
        if not rule.rule.enabled:
            continue
        try:
            report.rules.append(evaluate_rule(store, rule, notifier_names, settings))
        except GatewatchError as exc:
            # An unreadable enrichment file stops this rule, not the tick.
            report.errors.append(exc)
        except duckdb.Error as exc:
            message = str(exc).splitlines()[0]
            report.errors.append(
                GatewatchError(
                    f"rule {rule.id!r} failed in DuckDB: {message}",
                    rule.rule.path,
                    rule.rule.line_of("where" if rule.rule.where else "having"),
                )
            )
