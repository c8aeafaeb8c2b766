"""Run ticks on a schedule with APScheduler until SIGTERM or Ctrl-C."""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from datetime import datetime, timezone

from apscheduler.schedulers.blocking import BlockingScheduler

from gatewatch.config import Config
from gatewatch.duration import format_duration

log = logging.getLogger("gatewatch.scheduler")


def serve(config: Config, tick: Callable[[], int]) -> None:
    """Call ``tick`` every ``schedule.every``: never two at once, missed runs coalesced."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # APScheduler logs two lines per tick at INFO; the tick reports itself.
    logging.getLogger("apscheduler.executors").setLevel(logging.WARNING)
    scheduler = BlockingScheduler(timezone="UTC")
    scheduler.add_job(
        tick,
        "interval",
        seconds=config.schedule.every.total_seconds(),
        max_instances=1,
        coalesce=True,
        next_run_time=None,
        id="tick",
        name="tick",
    )
    scheduler.modify_job("tick", next_run_time=_now())

    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        if stopping:
            log.info("received signal %d again; still waiting for the current tick to finish", signum)
            return
        stopping = True
        log.info("received signal %d; stopping after the current tick", signum)
        scheduler.shutdown(wait=True)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("started; one tick every %s", format_duration(config.schedule.every))
    scheduler.start()
    log.info("stopped")


def _now() -> datetime:
    return datetime.now(timezone.utc)
