"""The clock process (`customer-bot scheduler`): runs the jobs on their schedules until SIGTERM."""

from __future__ import annotations

import logging
import signal
from datetime import UTC, datetime

from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from bot.settings import Settings

logger = logging.getLogger("customer_bot.scheduler")
SETTLE_EVERY_MINUTES = 5


def run_scheduler(settings: Settings, jobs: dict[str, object]) -> int:
    """Missed payments every few minutes (starting now), lost Stripe answers settled every 5 minutes, email sync
    daily; one run of each job at a time."""
    scheduler = BlockingScheduler(timezone=UTC, job_defaults={"coalesce": True, "max_instances": 1})
    scheduler.add_job(
        jobs["missed-payments"],
        IntervalTrigger(minutes=settings.missed_payments_every_minutes),
        id="missed-payments",
        next_run_time=datetime.now(UTC),
    )
    scheduler.add_job(
        jobs["settle-unanswered"], IntervalTrigger(minutes=SETTLE_EVERY_MINUTES), id="settle-unanswered"
    )
    hour, minute = settings.email_sync_at.split(":")
    scheduler.add_job(jobs["email-sync"], CronTrigger(hour=int(hour), minute=int(minute)), id="email-sync")

    def stop(signum: int, _frame: object) -> None:
        logger.info("%s received: finishing the running job, then stopping", signal.Signals(signum).name)
        scheduler.shutdown(wait=True)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    logger.info(
        "scheduler started: missed payments every %s min, unanswered Stripe requests settled every %s min, "
        "email sync daily at %s UTC",
        settings.missed_payments_every_minutes,
        SETTLE_EVERY_MINUTES,
        settings.email_sync_at,
    )
    scheduler.start()
    logger.info("scheduler stopped")
    return 0
