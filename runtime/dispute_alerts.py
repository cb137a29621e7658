"""Posting dispute alerts to ALERTS_CHANNEL: called by the Stripe webhooks once a dispute's event is recorded
(bot.dispute_alerts says which steps are due and claims each once)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from blocks.disputes import dispute_alert
from bot import dispute_alerts
from bot.db import Database
from runtime.jobs import _nothing_posted

logger = logging.getLogger("customer_bot.dispute_alerts")


def dispute_announcer(
    db: Database,
    client: WebClient,
    channel: str,
    *,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Callable[[str], bool]:
    """What the webhooks call with a dispute's Stripe id: posts each step due once; False when a post failed and
    certainly left nothing in the channel (its claim released, so Stripe's next delivery posts it)."""

    def announce(stripe_dispute_id: str) -> bool:
        for news in dispute_alerts.due(db, stripe_dispute_id):
            now = clock()
            if not dispute_alerts.claim(db, news, channel, now=now):
                continue  # another delivery has it
            message = dispute_alert(news)
            try:
                answer = client.chat_postMessage(channel=channel, text=message.text, blocks=message.blocks)
            except (SlackApiError, OSError) as error:
                if _nothing_posted(error):
                    logger.exception(
                        "could not post the %s alert of dispute %s", news.step, stripe_dispute_id
                    )
                    dispute_alerts.release(db, news)
                    return False
                logger.exception(
                    "the %s alert of dispute %s may or may not be in %s; it is not posted again",
                    news.step,
                    stripe_dispute_id,
                    channel,
                )
                continue
            dispute_alerts.posted(db, news, answer["ts"], now=now)
        return True

    return announce
