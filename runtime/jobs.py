"""The scheduled jobs, called by the clock process and by `customer-bot run-job`: each is a plain function of
its parts, safe to run again, at the same time as another run, or after a crash."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.error import URLError

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
# Each Slack call of a job gives up after this many seconds (connecting, and then waiting for each part of the
# answer), so a job asked to stop ends within seconds whatever Slack does.
SLACK_CALL_TIMEOUT = 5
# A rate limit is waited out only when Slack asks for a wait this short; otherwise the call fails and a later run
# carries on.
RATE_LIMIT_WAIT = 3
# Looking for an abandoned claim's alert reads the channel's history back to the claim, at most this much of it.
HISTORY_PAGE, HISTORY_PAGES = 200, 5


class ShortRateLimitWait(RateLimitErrorRetryHandler):
    """Retries a rate-limited call (Slack did nothing with it) when Slack asks for a short wait only."""

    def _can_retry(self, *, state, request, response=None, error=None) -> bool:  # type: ignore[override]
        if not super()._can_retry(state=state, request=request, response=response, error=error):
            return False
        wait = next((v[0] for k, v in response.headers.items() if k.lower() == "retry-after"), "1")
        return wait.isdigit() and int(wait) <= RATE_LIMIT_WAIT


def jobs_slack_client(token: str | None, api_url: str) -> WebClient:
    """The jobs' Slack client: every call bounded in time and sent at most once. slack_sdk's default client sends
    a request again when the connection breaks after it was sent, which posts a second copy of a message Slack
    already took; here a broken call fails, and the job decides."""
    return WebClient(
        token=token,
        base_url=api_url,
        timeout=SLACK_CALL_TIMEOUT,
        retry_handlers=[ShortRateLimitWait(max_retry_count=1)],
    )


@dataclass(frozen=True)
class MissedPaymentsRun:
    announced: int
    updated: int  # alerts changed to say the payment was made after all
    skipped: int  # claimed by another run at the same moment
    found: int = 0  # abandoned alerts found already in the channel and recorded, not posted again
    waiting: int = 0  # abandoned alerts left for a later run: the channel's history could not be read
    stopped: bool = False  # asked to stop: what is left is the next run's


def run_missed_payments(
    db: Database,
    client: WebClient,
    channel: str,
    *,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    stopping: threading.Event | None = None,
) -> MissedPaymentsRun:
    """Announce each missed payment once in `channel`, and update the alerts of payments that ended since (paid,
    voided or written off). When
    `stopping` is set, the alert in hand is finished and the rest left for the next run."""
    now = clock()
    stopping = stopping or threading.Event()
    due = alerts.to_announce(db, limit=ALERTS_PER_RUN, now=now)
    in_channels = _alerts_in_channels(client, [d.abandoned for d in due if d.abandoned], stopping)
    outcomes: Counter[str] = Counter()
    posted_now: list[int] = []
    for item in due:
        if stopping.is_set():
            break
        outcome = _announce(db, client, channel, item, in_channels, now=now)
        outcomes[outcome] += 1
        if outcome in ("announced", "found"):
            posted_now.append(item.missed.payment_id)
    updated = 0
    for ended in alerts.ended_since(db, limit=ALERTS_PER_RUN, just_posted=posted_now):
        if stopping.is_set():
            break
        if ended.missed.payment_status == "paid":
            message = alert_blocks.paid_after_all(ended.missed, now=now)
        else:
            message = alert_blocks.ended_without_payment(ended.missed, now=now)
        try:
            client.chat_update(
                channel=ended.channel, ts=ended.message_ts, text=message.text, blocks=message.blocks
            )
        except (SlackApiError, OSError):  # an update is safe to send again: the next run does
            logger.exception("could not update the alert for payment %s; a later run will", ended.payment_id)
            continue
        alerts.resolved(db, ended.payment_id, now=now)
        updated += 1
    run = MissedPaymentsRun(
        announced=outcomes["announced"],
        updated=updated,
        skipped=outcomes["skipped"],
        found=outcomes["found"],
        waiting=outcomes["waiting"],
        stopped=stopping.is_set(),
    )
    logger.info(
        "missed payments: %s announced, %s marked paid, voided or written off, %s taken by another run, %s found already posted, "
        "%s waiting for the channel's history%s",
        run.announced,
        run.updated,
        run.skipped,
        run.found,
        run.waiting,
        "; stopped early, the rest is the next run's" if run.stopped else "",
    )
    return run


def _announce(
    db: Database,
    client: WebClient,
    channel: str,
    due: alerts.Due,
    in_channels: dict[str, dict[int, str] | None],
    *,
    now: datetime,
) -> str:
    """Claim, post, mark one alert; an abandoned claim is taken over only when the channel shows no alert for it."""
    missed, abandoned = due.missed, due.abandoned
    if abandoned is None:
        if not alerts.claim(db, missed.payment_id, channel, now=now):
            return "skipped"
    else:
        in_channel = in_channels.get(abandoned.channel)
        if in_channel is None:
            logger.error(
                "the alert for payment %s may already be in %s, whose history could not be read: not posting it "
                "again until a later run can look",
                missed.payment_id,
                abandoned.channel,
            )
            return "waiting"
        if missed.payment_id in in_channel:
            alerts.posted(db, missed.payment_id, abandoned.channel, in_channel[missed.payment_id], now=now)
            logger.info(
                "the alert for payment %s was already in %s: recorded, not posted again",
                missed.payment_id,
                abandoned.channel,
            )
            return "found"
        if not alerts.take_over(db, missed.payment_id, abandoned, channel, now=now):
            return "skipped"
    message = alert_blocks.missed_payment(missed, now=now)
    try:
        answer = client.chat_postMessage(
            channel=channel,
            text=message.text,
            blocks=message.blocks,
            metadata=alerts.alert_metadata(missed.payment_id),
        )
    except (SlackApiError, OSError) as error:
        if _nothing_posted(error):
            logger.exception("could not post the alert for payment %s; a later run will", missed.payment_id)
            alerts.release(db, missed.payment_id)
        else:
            logger.exception(
                "the alert for payment %s may or may not be in %s; the next run looks there before posting it",
                missed.payment_id,
                channel,
            )
            alerts.give_up(db, missed.payment_id, now=now)
        return "failed"
    alerts.posted(db, missed.payment_id, channel, answer["ts"], now=now)
    return "announced"


def _nothing_posted(error: Exception) -> bool:
    """Whether a failed post certainly left no message: the request never reached Slack (urllib raises URLError
    only before a request is sent in full), or Slack refused it. A lost or late answer, or Slack failing on its
    side (which it says may leave part of the work done), may hide a message that went up."""
    if isinstance(error, URLError):
        return True
    if isinstance(error, SlackApiError):
        return error.response.status_code < 500 and error.response.get("error") not in (
            "internal_error",
            "fatal_error",
        )
    return False


def _alerts_in_channels(
    client: WebClient, abandoned: list[alerts.Abandoned], stopping: threading.Event
) -> dict[str, dict[int, str] | None]:
    """For each channel holding abandoned claims: the alerts posted there since the earliest of them, payment id ->
    ts; None for a channel whose history could not be read that far."""
    since: dict[str, datetime] = {}
    for claim in abandoned:
        since[claim.channel] = min(since.get(claim.channel, claim.search_from), claim.search_from)
    return {channel: _alerts_in_history(client, channel, start, stopping) for channel, start in since.items()}


def _alerts_in_history(
    client: WebClient, channel: str, since: datetime, stopping: threading.Event
) -> dict[int, str] | None:
    found: dict[int, str] = {}
    cursor = None
    try:
        for _ in range(HISTORY_PAGES):
            if stopping.is_set():
                return None
            page = client.conversations_history(
                channel=channel,
                oldest=f"{since.timestamp():.6f}",
                limit=HISTORY_PAGE,
                include_all_metadata=True,
                **({"cursor": cursor} if cursor else {}),
            )
            for message in page.get("messages", []):  # newest first: a payment's oldest alert wins
                payment_id = alerts.alerted_payment(message.get("metadata"))
                if payment_id is not None:
                    found[payment_id] = message["ts"]
            cursor = (page.get("response_metadata") or {}).get("next_cursor")
            if not page.get("has_more") or not cursor:
                return found
    except (SlackApiError, OSError):
        logger.exception("could not read the history of %s to look for alerts already posted", channel)
        return None
    logger.error(
        "more than %s messages in %s since %s: alerts that may be there already wait for a later run",
        HISTORY_PAGE * HISTORY_PAGES,
        channel,
        since.isoformat(),
    )
    return None


def run_email_sync(
    db: Database,
    client: WebClient,
    channel: str,
    settings: Settings,
    *,
    full: bool = False,
    progress: Callable[[str, int], None] | None = None,
    stopping: threading.Event | None = None,
) -> int:
    """Compare every customer's email with Stripe's, ask the CRMs about the customers whose email changed (on a
    `full` run, every customer with an old address), and post one report; returns how many differ. When
    `stopping` is set, the report says what was found so far and the rest waits for the next run."""
    from blocks.email_sync import email_sync_report
    from bot.crm import crms_from_settings
    from bot.email_sync import check_emails

    gateway = (
        StripeGateway.connect(settings.stripe_api_key, api_base=settings.stripe_api_base)
        if settings.stripe_api_key
        else None
    )
    check = check_emails(
        db, gateway, crms_from_settings(settings), full=full, progress=progress, stopping=stopping
    )
    message = email_sync_report(
        check.differences,
        check.checked,
        crms=check.crms,
        problems=check.problems,
        asked=check.asked,
        waiting=check.waiting,
    )
    client.chat_postMessage(channel=channel, text=message.text, blocks=message.blocks)
    logger.info(
        "email sync%s: %s of %s customers differ; CRMs asked about %s (%s requests), %s for the next run",
        " (full)" if full else "",
        len(check.differences),
        check.checked,
        check.asked,
        check.calls,
        check.waiting,
    )
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


STRIPE_JOBS = ("email-sync", "settle-unanswered")  # they ask Stripe: without a key they have nothing to do


def scheduled_jobs(settings: Settings) -> dict[str, Callable[..., object]]:
    """Each job by name, with its parts built once from the settings; without a Stripe key, only the ones that
    need none. Each takes an optional `stopping` event: the clock process sets it on SIGTERM, and a job that can
    stop part-way (missed payments) does."""
    settings.require_jobs()
    db = Database(settings.database_url)
    db.upgrade()
    client = jobs_slack_client(settings.slack_bot_token, settings.slack_api_url)
    channel = settings.alerts_channel
    assert channel is not None  # require_jobs checked it
    actions = actions_for(settings, db, client)
    jobs: dict[str, Callable[..., object]] = {
        "missed-payments": lambda stopping=None: run_missed_payments(db, client, channel, stopping=stopping),
        "email-sync": lambda stopping=None, progress=None, full=False: run_email_sync(
            db, client, channel, settings, full=full, progress=progress, stopping=stopping
        ),
        "settle-unanswered": lambda stopping=None: run_settle_unanswered(actions.settler),
    }
    if not settings.stripe_api_key:
        for name in STRIPE_JOBS:
            del jobs[name]
    return jobs
