"""The HTTP front: Slack's requests at /slack/events, Stripe's webhooks at /stripe/webhook, a health check at
/healthz, as one WSGI application."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable

from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from sqlalchemy import text

from bot.db import Database
from bot.webhooks import StripeWebhooks

StartResponse = Callable[..., object]


class WebApp:
    """Routes requests to the Bolt app or answers them itself."""

    def __init__(self, app: App, db: Database, webhooks: StripeWebhooks | None = None) -> None:
        self.slack = SlackRequestHandler(app, path="/slack/events")
        self.db = db
        self.webhooks = webhooks

    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "GET")
        if path == "/slack/events":
            if method != "POST":
                return _answer(start_response, "405 Method Not Allowed", {"error": "use POST"})
            return self.slack(environ, start_response)
        if path == "/stripe/webhook":
            if method != "POST":
                return _answer(start_response, "405 Method Not Allowed", {"error": "use POST"})
            return self._stripe(environ, start_response)
        if path == "/healthz" and method in ("GET", "HEAD"):
            return self._health(start_response)
        return _answer(start_response, "404 Not Found", {"error": "not found"})

    def _stripe(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        if self.webhooks is None:
            body = {"error": "Stripe webhooks are not configured (STRIPE_API_KEY and STRIPE_WEBHOOK_SECRET)"}
            return _answer(start_response, "503 Service Unavailable", body)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        payload = environ["wsgi.input"].read(length) if length else b""
        status, body = self.webhooks.handle(payload, environ.get("HTTP_STRIPE_SIGNATURE"))
        return _answer(start_response, _STATUS_LINES[status], body)

    def _health(self, start_response: StartResponse) -> Iterable[bytes]:
        try:
            with self.db.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except Exception as error:
            return _answer(
                start_response, "503 Service Unavailable", {"ok": False, "database": type(error).__name__}
            )
        return _answer(start_response, "200 OK", {"ok": True})


_STATUS_LINES = {200: "200 OK", 400: "400 Bad Request", 503: "503 Service Unavailable"}


def _answer(start_response: StartResponse, status: str, body: dict) -> list[bytes]:
    data = json.dumps(body).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]
