"""The app factory: one Bolt app, built from settings and injected parts, served by web, socket or shell."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Executor
from datetime import datetime

from slack_bolt import App, BoltResponse
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

import commands
from blocks.modals import audit_message
from bot.actions import Actions, build_actions
from bot.actions.audit import AuditEntry
from bot.crm import crms_from_settings
from bot.db import Database
from bot.records import Records
from bot.settings import Settings
from bot.stripe_gateway import StripeGateway

logger = logging.getLogger("customer_bot")
# What reading a payload of the wrong shape raises (the HTTP front refuses the shapes it can check before parsing).
_SHAPE_ERRORS = (KeyError, IndexError, TypeError, AttributeError, ValueError)


def create_app(
    settings: Settings,
    db: Database,
    *,
    client: WebClient | None = None,
    gateway: StripeGateway | None = None,
    listener_executor: Executor | None = None,
    clock: Callable[[], datetime] | None = None,
    actions: Actions | None = None,
) -> App:
    """The Bolt app with every listener registered.

    Listeners finish their work before the HTTP response goes back (process_before_response): each answer takes
    milliseconds, well inside Slack's 3 seconds. Work that waits on Stripe runs in lazy listeners after the answer,
    on `listener_executor` (Bolt's own thread pool by default).
    """
    client = client or slack_client(settings)
    app = App(
        signing_secret=settings.slack_signing_secret,
        client=client,
        process_before_response=True,
        logger=logger,
        listener_executor=listener_executor,
    )

    @app.error
    def log_unhandled(error: Exception, body: dict, response: BoltResponse | None) -> None:
        logger.error("unhandled error for a %s request", body.get("type", "slash command"), exc_info=error)
        if response is not None and isinstance(error, _SHAPE_ERRORS):
            response.status = 400  # a signed payload missing what Slack always sends: the client's fault

    actions = actions or actions_for(settings, db, client, gateway=gateway, clock=clock)
    commands.register(app, commands.Services.of(Records(db), actions))
    return app


def slack_client(settings: Settings) -> WebClient:
    """The app's Slack client. slack_sdk's default one sends a request again when the connection breaks after it
    was sent, which would post a second audit line Slack already took; this one only waits out rate limits."""
    return WebClient(
        token=settings.slack_bot_token,
        base_url=settings.slack_api_url,
        retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=1)],
    )


def actions_for(
    settings: Settings,
    db: Database,
    client: WebClient,
    *,
    gateway: StripeGateway | None = None,
    clock: Callable[[], datetime] | None = None,
) -> Actions:
    """Every action, on the configured Stripe account and CRMs, audited to the audit channel."""
    if gateway is None and settings.stripe_api_key:
        gateway = StripeGateway.connect(settings.stripe_api_key, api_base=settings.stripe_api_base)
    return build_actions(
        db,
        gateway,
        settings.payment_admins,
        crms=crms_from_settings(settings),
        on_audit=audit_poster(client, settings.audit_channel),
        **({"clock": clock} if clock else {}),
    )


def audit_poster(client: WebClient, channel: str | None) -> Callable[[AuditEntry], None] | None:
    """Posts each audited action to the audit channel; a failure to post is logged, never raised."""
    if not channel:
        return None

    def post(entry: AuditEntry) -> None:
        message = audit_message(
            entry.actor, entry.action, entry.outcome, entry.summary, entry.stripe_id, entry.note
        )
        try:
            client.chat_postMessage(channel=channel, text=message.text, blocks=message.blocks)
        except (SlackApiError, OSError):  # refused, or Slack unreachable
            logger.exception("could not post to the audit channel %s", channel)

    return post
