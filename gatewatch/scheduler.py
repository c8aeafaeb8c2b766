"""`gatewatch serve`: ingest, evaluation and delivery as APScheduler jobs.

Jobs: one ingest job per source (``schedule.every`` or its entry in
``schedule.sources``), one evaluation job per distinct rule ``every`` (the
rules that share it, in file order) and one delivery job
(``schedule.deliver_every``, and right after an evaluation that raised
alerts). Every job runs on one worker thread, so two steps never run at
once; a job never has two runs queued (max_instances=1) and missed runs
collapse into one (coalesce).

The DuckDB file is open only while a step runs, so `gatewatch query` can
read between steps. The daemon holds the run lock (``<database>.lock``) from
start to stop, so a `gatewatch run --once` from cron exits with a message
instead of writing alongside it.

SIGTERM or SIGINT stops the scheduler: the step that is running finishes
its current source, rule or alert (each commits on its own) and the queued
steps are skipped. A second signal exits at once; DuckDB then drops the
open transaction, so the step is rolled back and runs again after restart.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

import duckdb
from apscheduler.events import EVENT_JOB_MAX_INSTANCES, JobEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from rich.console import Console

from gatewatch.config import Config
from gatewatch.duration import format_duration
from gatewatch.engine.compiler import CompiledRule
from gatewatch.engine.loader import RuleSet, load_rules
from gatewatch.errors import GatewatchError
from gatewatch.locking import DatabaseBusy, open_with_wait
from gatewatch.notify import Notifier
from gatewatch.runner import (
    RunLocked,
    build_notifiers,
    deliver_step,
    evaluate_step,
    ingest_step,
    retention_step,
    rule_locations,
    run_lock,
)
from gatewatch.store import Store

logger = logging.getLogger(__name__)

DELIVER_JOB = "deliver"
# Pause between attempts to take the run lock while another run holds it.
RUN_LOCK_POLL_SECONDS = 1.0


def configure_logging(level: str) -> None:
    """Send log records to stderr, one line each, with UTC timestamps."""
    handler = logging.StreamHandler()
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%SZ")
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # APScheduler logs two lines per job run at INFO and a warning per run
    # skipped behind a running step; the daemon logs both itself.
    logging.getLogger("apscheduler.executors").setLevel(logging.WARNING)
    logging.getLogger("apscheduler.scheduler").setLevel(logging.ERROR)


class Daemon:
    """The scheduler, its jobs and what they share: config, rules and notifiers."""

    def __init__(self, config: Config, console: Console, rule_set: RuleSet | None = None):
        self.config = config
        self.console = console
        self.database = config.resolve(config.database)
        self.rule_set = rule_set
        self.notifiers: dict[str, Notifier] = {}
        self.stop_requested = threading.Event()
        self.stop_signal: int | None = None
        self.scheduler: BackgroundScheduler | None = None
        self.steps_run = 0

    # -- lifecycle ----------------------------------------------------------

    def run(self) -> None:
        """Run until SIGTERM or SIGINT; return after the running step has finished."""
        self._install_signal_handlers()
        started = time.monotonic()
        with self._hold_run_lock() as locked:
            if not locked:
                logger.info("stopped before start: signal %s while waiting for the run lock", self.stop_signal)
                return
            self._load()
            scheduler = self._build_scheduler()
            self.scheduler = scheduler
            scheduler.start()
            logger.info(
                "started pid=%d database=%s jobs=%s", os.getpid(), self.database,
                ",".join(f"{job.id}@{_interval(job)}" for job in scheduler.get_jobs()),
            )
            while not self.stop_requested.wait(1.0):
                pass
            logger.info("stopping: signal %s; waiting for the running step to finish", self.stop_signal)
            scheduler.shutdown(wait=True)
        logger.info(
            "stopped pid=%d steps=%d uptime_s=%.0f", os.getpid(), self.steps_run, time.monotonic() - started
        )

    def request_stop(self, signum: int) -> None:
        self.stop_signal = signum
        self.stop_requested.set()

    def _install_signal_handlers(self) -> None:
        def handle(signum: int, _frame: object) -> None:
            if self.stop_requested.is_set():
                logger.warning(
                    "signal %d again: exiting now; the step in progress is rolled back and runs after restart",
                    signum,
                )
                logging.shutdown()
                os._exit(1)
            self.request_stop(signum)

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)

    @contextmanager
    def _hold_run_lock(self) -> Iterator[bool]:
        """Hold the run lock; wait while a `run --once` holds it. Yields False if stopped first."""
        announced = False
        while True:
            try:
                with run_lock(self.database):
                    yield True
                    return
            except RunLocked as exc:
                if not announced:
                    logger.info("waiting for the run lock: %s", exc.message.split(";")[0])
                    announced = True
            if self.stop_requested.wait(RUN_LOCK_POLL_SECONDS):
                yield False
                return

    def _load(self) -> None:
        if self.rule_set is None:
            self.rule_set = load_rules(rule_locations(self.config))
        for error in self.rule_set.errors:
            logger.error("rule not loaded: %s", error)
        self.notifiers, errors = build_notifiers(self.config, self.console)
        for error in errors:
            logger.error("notifier not available, its alerts stay in the outbox: %s", error)
        logger.info(
            "loaded rules=%d rule_errors=%d notifiers=%s",
            len(self.rule_set.rules), len(self.rule_set.errors), ",".join(self.notifiers) or "-",
        )

    def _build_scheduler(self) -> BackgroundScheduler:
        # One worker: steps run one after another, never side by side.
        scheduler = BackgroundScheduler(
            timezone="UTC",
            executors={"default": ThreadPoolExecutor(max_workers=1)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        now = datetime.now(timezone.utc)
        order = 0

        def add(job_id: str, function: Callable[[], None], every: timedelta) -> None:
            nonlocal order
            # Staggered first runs keep the order ingest, evaluate, deliver at start.
            first = now + timedelta(milliseconds=order)
            order += 1
            scheduler.add_job(
                function, "interval", seconds=every.total_seconds(), id=job_id, name=job_id,
                next_run_time=first,
            )

        for index, source in enumerate(self.config.sources):
            add(f"ingest:{source.name}", self._ingest_job(index), self.config.schedule.ingest_interval(source.name))
        for every, rules in _rules_by_every(self.rule_set.rules if self.rule_set else []).items():
            add(f"evaluate:{format_duration(every)}", self._evaluate_job(rules), every)
        add(DELIVER_JOB, self._deliver_job, self.config.schedule.deliver_every)
        if self.config.retention.enabled:
            add("retention", self._retention_job, self.config.retention.every)
        # With one worker, a long step (a catch-up ingest) makes the other
        # jobs miss runs. They run once it ends, so this is not a warning.
        scheduler.add_listener(self._log_skipped_run, EVENT_JOB_MAX_INSTANCES)
        return scheduler

    # -- jobs ---------------------------------------------------------------

    def _ingest_job(self, index: int) -> Callable[[], None]:
        def job() -> None:
            self._run_step(f"ingest:{self.config.sources[index].name}", lambda store: ingest_step(
                self.config, store, [index], stop=self.stop_requested.is_set
            ))
        return job

    def _evaluate_job(self, rules: list[CompiledRule]) -> Callable[[], None]:
        def job() -> None:
            def step(store: Store) -> None:
                reports, _errors = evaluate_step(self.config, store, rules, stop=self.stop_requested.is_set)
                # New alerts go out now rather than at the next delivery run.
                if any(report.alert_ids for report in reports) and not self.stop_requested.is_set():
                    self._deliver(store)
            self._run_step(f"evaluate:{format_duration(rules[0].rule.every)}", step)
        return job

    def _deliver_job(self) -> None:
        self._run_step(DELIVER_JOB, self._deliver)

    def _deliver(self, store: Store) -> None:
        deliver_step(self.config, store, self.notifiers, stop=self.stop_requested.is_set)

    def _retention_job(self) -> None:
        rules = self.rule_set.rules if self.rule_set else []
        self._run_step("retention", lambda store: retention_step(self.config, store, rules))

    def _log_skipped_run(self, event: JobEvent) -> None:
        logger.debug("job=%s run skipped: its previous run is still running or queued", event.job_id)

    def _run_step(self, job_id: str, step: Callable[[Store], object]) -> None:
        """Open the store, run ``step`` and close the store, logging each error instead of raising it."""
        if self.stop_requested.is_set():
            return
        try:
            store = open_with_wait(
                lambda: Store(self.database),
                self.config.schedule.database_wait,
                what=str(self.database),
                on_wait=lambda: logger.info("job=%s waiting: a reader has the database open", job_id),
                stopped=self.stop_requested.is_set,
                sleep=self.stop_requested.wait,
            )
        except DatabaseBusy as exc:
            logger.warning("job=%s skipped until its next run: %s", job_id, exc)
            return
        except GatewatchError as exc:
            logger.error("job=%s failed: %s", job_id, exc)
            return
        try:
            with store:
                step(store)
            self.steps_run += 1
        except (GatewatchError, duckdb.Error) as exc:
            logger.error("job=%s failed: %s", job_id, str(exc).splitlines()[0])
        except Exception:
            # A bug in one step must not stop the daemon; the next run tries again.
            logger.exception("job=%s raised an unexpected error", job_id)


def _rules_by_every(rules: list[CompiledRule]) -> dict[timedelta, list[CompiledRule]]:
    groups: dict[timedelta, list[CompiledRule]] = {}
    for rule in rules:
        if rule.rule.enabled:
            groups.setdefault(rule.rule.every, []).append(rule)
    return groups


def _interval(job: object) -> str:
    interval = getattr(getattr(job, "trigger", None), "interval", None)
    return format_duration(interval) if isinstance(interval, timedelta) else "?"


def serve(config: Config, console: Console, rule_set: RuleSet | None = None) -> None:
    """Run the daemon in this process until SIGTERM or SIGINT."""
    Daemon(config, console, rule_set).run()
