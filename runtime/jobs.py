"""The scheduled jobs, called by the clock process and by `customer-bot run-job`: each is a plain function of
its parts, safe to run again, at the same time as another run, or after a crash."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

from blocks import alerts as alert_blocks
from bot import alerts
from bot.actions.settling import Settled, Settler
from bot.db import Database
from bot.settings import Settings
from bot.stripe_gateway import StripeGateway
from runtime.app import actions_for

logger = logging.getLogger("customer_bot.jobs")

# Slack lets an app post about one message per second to a channel: a run announces at most this many, and the
# next run carries on, so a backlog never floods the channel or trips rate limits.
ALERTS_PER_RUN = 50


@dataclass(frozen=True)
class MissedPaymentsRun:
    announced: int
    updated: int  # alerts changed to say the payment was made after all
    skipped: int  # claimed by another run at the same moment


def run_missed_payments(
    db: Database,
    client: WebClient,
    channel: str,
    *,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> MissedPaymentsRun:
    """Announce each missed payment once in `channel`, and update the alerts of payments made since."""
    now = clock()
    announced = skipped = updated = 0
    for missed in alerts.to_announce(db, limit=ALERTS_PER_RUN, now=now):
        if not alerts.claim(db, missed.payment_id, channel, now=now):
            skipped += 1
            continue
        message = alert_blocks.missed_payment(missed, now=now)
        try:
            answer = client.chat_postMessage(channel=channel, text=message.text, blocks=message.blocks)
        except (SlackApiError, OSError):  # refused, or Slack unreachable
            logger.exception("could not post the alert for payment %s; a later run will", missed.payment_id)
            alerts.release(db, missed.payment_id)
            continue
        alerts.posted(db, missed.payment_id, answer["ts"], now=now)
        announced += 1
    for paid in alerts.paid_since(db, limit=ALERTS_PER_RUN):
        message = alert_blocks.paid_after_all(paid.missed, now=now)
        try:
            client.chat_update(
                channel=paid.channel, ts=paid.message_ts, text=message.text, blocks=message.blocks
            )
        except SlackApiError:
            logger.exception("could not update the alert for payment %s; a later run will", paid.payment_id)
            continue
        alerts.resolved(db, paid.payment_id, now=now)
        updated += 1
    logger.info(
        "missed payments: %s announced, %s marked paid, %s taken by another run", announced, updated, skipped
    )
    return MissedPaymentsRun(announced, updated, skipped)


def run_email_sync(db: Database, client: WebClient, channel: str, settings: Settings) -> int:
    """Compare every customer's email with Stripe's and the CRMs', and post one report; returns how many differ."""
    from blocks.email_sync import email_sync_report
    from bot.crm import crms_from_settings
    from bot.email_sync import check_emails

    gateway = (
        StripeGateway.connect(settings.stripe_api_key, api_base=settings.stripe_api_base)
        if settings.stripe_api_key
        else None
    )
    check = check_emails(db, gateway, crms_from_settings(settings))
    message = email_sync_report(check.differences, check.checked, crms=check.crms, problems=check.problems)
    client.chat_postMessage(channel=channel, text=message.text, blocks=message.blocks)
    logger.info("email sync: %s of %s customers differ", len(check.differences), check.checked)
    return len(check.differences)


def run_settle_unanswered(settler: Settler) -> Settled:
    """Settle the requests whose answer from Stripe was lost and that nobody retried."""
    settled = settler.settle_unanswered()
    logger.info(
        "unanswered requests: %s found in Stripe and recorded, %s never made and let go, %s to ask again",
        settled.recorded,
        settled.let_go,
        settled.unreachable,
    )
    return settled


def scheduled_jobs(settings: Settings) -> dict[str, Callable[[], object]]:
    """Each job by name, with its parts built once from the settings."""
    settings.require_jobs()
    db = Database(settings.database_url)
    db.upgrade()
    client = WebClient(token=settings.slack_bot_token, base_url=settings.slack_api_url)
    client.retry_handlers.append(RateLimitErrorRetryHandler(max_retry_count=3))
    channel = settings.alerts_channel
    assert channel is not None  # require_jobs checked it
    actions = actions_for(settings, db, client)
    return {
        "missed-payments": lambda: run_missed_payments(db, client, channel),
        "email-sync": lambda: run_email_sync(db, client, channel, settings),
        "settle-unanswered": lambda: run_settle_unanswered(actions.settler),
    }
