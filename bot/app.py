"""The app factory: one Bolt app, built from settings and injected parts, served by web, socket or shell."""

from __future__ import annotations

import logging

from slack_bolt import App
from slack_sdk import WebClient

import commands
from bot.db import Database
from bot.settings import Settings

logger = logging.getLogger("customer_bot")


def create_app(settings: Settings, db: Database, *, client: WebClient | None = None) -> App:
    """The Bolt app with every listener registered.

    Listeners finish their work before the HTTP response goes back (process_before_response): each answer takes
    milliseconds, well inside Slack's 3 seconds, and no work is left running on threads nobody waits for.
    """
    client = client or WebClient(token=settings.slack_bot_token, base_url=settings.slack_api_url)
    app = App(
        signing_secret=settings.slack_signing_secret,
        client=client,
        process_before_response=True,
        logger=logger,
    )

    @app.error
    def log_unhandled(error: Exception, body: dict) -> None:
        logger.error("unhandled error for a %s request", body.get("type", "slash command"), exc_info=error)

    commands.register(app, commands.Services(settings=settings, db=db))
    return app
