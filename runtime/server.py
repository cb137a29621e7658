"""`customer-bot web`: the WSGI app behind gunicorn, a production HTTP server."""

from __future__ import annotations

import os

from gunicorn.app.base import BaseApplication

from bot.settings import Settings


def build_web_app(settings: Settings):
    """The WSGI application: the Bolt app on the configured database, wrapped with our routes."""
    from slack_sdk import WebClient

    from bot.db import Database
    from bot.stripe_gateway import StripeGateway
    from bot.webhooks import StripeWebhooks
    from runtime.app import actions_for, create_app
    from runtime.web import WebApp

    db = Database(settings.database_url)
    gateway = None
    if settings.stripe_api_key:
        gateway = StripeGateway.connect(settings.stripe_api_key, api_base=settings.stripe_api_base)
    client = WebClient(token=settings.slack_bot_token, base_url=settings.slack_api_url)
    actions = actions_for(settings, db, client, gateway=gateway)
    webhooks = (
        StripeWebhooks(db, gateway, settings.stripe_webhook_secret, bot_made=actions.settler.bot_made)
        if gateway and settings.stripe_webhook_secret
        else None
    )
    return WebApp(create_app(settings, db, client=client, actions=actions), db, webhooks)


class _Gunicorn(BaseApplication):
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        super().__init__()

    def load_config(self) -> None:
        self.cfg.set("bind", f"0.0.0.0:{self.settings.port}")
        self.cfg.set("workers", int(os.environ.get("WEB_CONCURRENCY", "2")))
        self.cfg.set("worker_class", "gthread")
        self.cfg.set("threads", 8)
        self.cfg.set("accesslog", "-")
        self.cfg.set("graceful_timeout", 20)

    def load(self):
        return build_web_app(self.settings)


def serve_http(settings: Settings) -> int:
    from bot.db import Database

    db = Database(settings.database_url)
    db.upgrade()  # once, before the workers start
    db.dispose()
    _Gunicorn(settings).run()
    return 0
