"""The clock process (`customer-bot scheduler`): runs the jobs on their schedules until SIGTERM, then stops within
STOP_WITHIN seconds."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from datetime import UTC, datetime

from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from bot.settings import Settings

logger = logging.getLogger("customer_bot.scheduler")
SETTLE_EVERY_MINUTES = 5
# Platforms kill a process about 30 s after SIGTERM. A job asked to stop finishes the alert in hand (seconds: each
# Slack call is bounded); one still running after this long is left as a crash would leave it, which every job
# survives (claims, the ledger), and the process exits.
STOP_WITHIN = 15


class RunningJobs:
    """Which jobs are running, so the process can wait for them, for a while."""

    def __init__(self) -> None:
        self._running: dict[str, int] = {}
        self._changed = threading.Condition()

    def tracked(self, name: str, job: Callable[..., object], stopping: threading.Event) -> Callable[[], None]:
        def run() -> None:
            with self._changed:
                if stopping.is_set():  # handed to a worker just as the process was told to stop
                    return
                self._running[name] = self._running.get(name, 0) + 1
            try:
                job(stopping=stopping)
            finally:
                with self._changed:
                    self._running[name] -= 1
                    self._changed.notify_all()

        return run

    def wait_until_done(self, timeout: float) -> list[str]:
        """The jobs still running after `timeout` seconds (none, usually)."""
        with self._changed:
            self._changed.wait_for(lambda: not any(self._running.values()), timeout)
            return [name for name, count in self._running.items() if count]


def run_scheduler(
    settings: Settings, jobs: dict[str, Callable[..., object]], *, stop_within: float = STOP_WITHIN
) -> int:
    """Missed payments every few minutes (starting now), lost Stripe answers settled every 5 minutes, email sync
    daily; one run of each job at a time."""
    stopping = threading.Event()
    running = RunningJobs()
    scheduler = BlockingScheduler(timezone=UTC, job_defaults={"coalesce": True, "max_instances": 1})

    def add(name: str, trigger, **options) -> None:
        if name not in jobs:
            logger.info("%s is off: STRIPE_API_KEY is not set, and it asks Stripe", name)
            return
        scheduler.add_job(running.tracked(name, jobs[name], stopping), trigger, id=name, name=name, **options)

    add(
        "missed-payments",
        IntervalTrigger(minutes=settings.missed_payments_every_minutes),
        next_run_time=datetime.now(UTC),
    )
    add("settle-unanswered", IntervalTrigger(minutes=SETTLE_EVERY_MINUTES))
    hour, minute = settings.email_sync_at.split(":")
    add("email-sync", CronTrigger(hour=int(hour), minute=int(minute)))

    def stop(signum: int, _frame: object) -> None:
        logger.info(
            "%s received: the running job finishes what it has in hand, then the process stops",
            signal.Signals(signum).name,
        )
        stopping.set()
        if scheduler.running:  # a signal during start-up stops it before it starts
            scheduler.shutdown(wait=False)  # no new runs; the running ones are waited for below, for a while

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    logger.info(
        "scheduler started: missed payments every %s min, unanswered Stripe requests settled every %s min, "
        "email sync daily at %s UTC",
        settings.missed_payments_every_minutes,
        SETTLE_EVERY_MINUTES,
        settings.email_sync_at,
    )
    if not stopping.is_set():
        scheduler.start()
    unfinished = running.wait_until_done(stop_within)
    if unfinished:
        logger.warning(
            "scheduler stopped with %s still running after %s s: left as a crash would leave it; the next run "
            "carries on",
            ", ".join(unfinished),
            stop_within,
        )
        logging.shutdown()
        os._exit(0)  # the job's worker thread would otherwise hold the process open until it ends
    logger.info("scheduler stopped")
    return 0
