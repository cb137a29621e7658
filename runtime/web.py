"""The HTTP front: Slack's requests at /slack/events, Stripe's webhooks at /stripe/webhook, a health check at
/healthz, as one WSGI application.

Anyone on the internet can reach this door, so it refuses cheaply before anything is parsed: a body over
MAX_BODY_BYTES is not read, a Slack request's signature is checked on the raw bytes, and only then is the body
looked at, with anything Slack would never send answered 400. A refusal is one log line, never a traceback.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import logging
import time
from collections.abc import Callable, Iterable
from urllib.parse import parse_qsl

from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from sqlalchemy import text

from bot.db import Database
from bot.faults import DatabaseUnavailable
from bot.webhooks import StripeWebhooks

logger = logging.getLogger("customer_bot.web")
StartResponse = Callable[..., object]

# Slack's largest request to this app is a modal's view_submission: the whole view (at most 100 blocks) and its
# state, JSON inside a form field, so every quote and brace is escaped to three bytes. Our biggest modal comes to
# a few kilobytes, and a 100-block view of Slack's maximum sizes to a few hundred; Stripe's events carry one
# object each, a few to some tens of kilobytes. 1 MiB is ample for both and bounds what a stranger can make us
# read and hold.
MAX_BODY_BYTES = 1024 * 1024
# Slack signs with a Unix time in seconds; anything longer is not a timestamp (and int() of thousands of digits
# is slow, then refused by Python itself).
_TIMESTAMP_DIGITS = 12
SIGNATURE_MAX_AGE_SECONDS = 5 * 60  # Slack's own advice, and what Bolt allows


class Refused(Exception):
    """A request answered with a 4xx before it reached the bot."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class WebApp:
    """Routes requests to the Bolt app or answers them itself."""

    def __init__(
        self,
        app: App,
        db: Database,
        webhooks: StripeWebhooks | None = None,
        *,
        signing_secret: str | None = None,
        schema_ready: Callable[[], bool] = lambda: True,
    ) -> None:
        self.slack = SlackRequestHandler(app, path="/slack/events")
        # Bolt checks the same secret again; it keeps it without a public property, and taking it from the app
        # means every caller of WebApp(app, db) is guarded by the secret Bolt itself uses.
        self.signing_secret = (signing_secret or app._signing_secret).encode()
        self.db = db
        self.webhooks = webhooks
        self.schema_ready = schema_ready

    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "GET")
        try:
            if path == "/slack/events":
                if method != "POST":
                    return _answer(start_response, "405 Method Not Allowed", {"error": "use POST"})
                return self._slack(environ, start_response)
            if path == "/stripe/webhook":
                if method != "POST":
                    return _answer(start_response, "405 Method Not Allowed", {"error": "use POST"})
                return self._stripe(environ, start_response)
        except Refused as refused:
            logger.warning("refused %s %s: %s (%s)", method, path, refused.reason, refused.status)
            return _answer(start_response, refused.status, {"error": refused.reason})
        if path == "/healthz" and method in ("GET", "HEAD"):
            return self._health(start_response)
        return _answer(start_response, "404 Not Found", {"error": "not found"})

    def _slack(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        body = read_body(environ)
        # Slack's certificate check when a command's URL is saved comes unsigned; Bolt answers it the same way.
        if _is_ssl_check(body):
            return _answer(start_response, "200 OK", {})
        self._check_slack_signature(
            body, environ.get("HTTP_X_SLACK_REQUEST_TIMESTAMP", ""), environ.get("HTTP_X_SLACK_SIGNATURE", "")
        )
        check_slack_shape(body, environ.get("CONTENT_TYPE", ""))
        # The body is read: hand Bolt a fresh stream of exactly those bytes.
        environ = {**environ, "wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body))}
        try:
            return self.slack(environ, start_response)
        except Exception:  # Bolt tripped on a signed payload of a shape not checked above
            logger.exception("Bolt could not take a signed request; answered 400")
            return _answer(start_response, "400 Bad Request", {"error": "unexpected payload"})

    def _check_slack_signature(self, body: bytes, timestamp: str, signature: str) -> None:
        """Slack's v0 signature over the raw bytes. (slack_sdk's SignatureVerifier decodes the body as UTF-8 and
        reads the timestamp with int(), and raises on what a stranger can send in either.)"""
        if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= _TIMESTAMP_DIGITS):
            raise Refused("401 Unauthorized", "no valid X-Slack-Request-Timestamp")
        if abs(time.time() - int(timestamp)) > SIGNATURE_MAX_AGE_SECONDS:
            raise Refused("401 Unauthorized", "stale Slack signature")
        signed = b"v0:" + timestamp.encode() + b":" + body
        expected = b"v0=" + hmac.new(self.signing_secret, signed, hashlib.sha256).hexdigest().encode()
        if not hmac.compare_digest(
            expected, signature.encode("latin-1", "replace")
        ):  # WSGI headers are latin-1 strings
            raise Refused("401 Unauthorized", "bad Slack signature")

    def _stripe(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        if self.webhooks is None:
            body = {"error": "Stripe webhooks are not configured (STRIPE_API_KEY and STRIPE_WEBHOOK_SECRET)"}
            return _answer(start_response, "503 Service Unavailable", body)
        payload = read_body(environ)
        try:
            status, body = self.webhooks.handle(payload, environ.get("HTTP_STRIPE_SIGNATURE"))
        except DatabaseUnavailable as error:
            logger.warning(
                "a Stripe webhook waits for the database (%s); Stripe will deliver it again", error
            )
            return _answer(start_response, "503 Service Unavailable", {"error": "database unavailable"})
        except Exception as error:  # whatever the body made the handler trip on: Stripe delivers it again
            logger.error(
                "could not handle a Stripe webhook: %s: %s", type(error).__name__, _first_line(error)
            )
            return _answer(start_response, "400 Bad Request", {"error": "could not process this event"})
        return _answer(start_response, _STATUS_LINES.get(status, "400 Bad Request"), body)

    def _health(self, start_response: StartResponse) -> Iterable[bytes]:
        if not self.schema_ready():
            return _answer(
                start_response, "503 Service Unavailable", {"ok": False, "database": "migrations not applied"}
            )
        try:
            with self.db.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except Exception as error:
            return _answer(
                start_response, "503 Service Unavailable", {"ok": False, "database": type(error).__name__}
            )
        return _answer(start_response, "200 OK", {"ok": True})


def read_body(environ: dict) -> bytes:
    """The request body, refused unread when it claims more than MAX_BODY_BYTES, and never read past that."""
    claimed = environ.get("CONTENT_LENGTH") or "0"
    if not (claimed.isascii() and claimed.isdigit()):
        raise Refused("400 Bad Request", "Content-Length is not a number")
    if int(claimed) > MAX_BODY_BYTES:
        raise Refused("413 Content Too Large", f"body over {MAX_BODY_BYTES} bytes")
    body = environ["wsgi.input"].read(int(claimed)) if int(claimed) else b""
    if len(body) != int(claimed):
        raise Refused("400 Bad Request", "body shorter than its Content-Length")
    return body


def check_slack_shape(body: bytes, content_type: str) -> None:
    """Refuse what Slack never sends: a slash command or an interaction's `payload=` JSON object as a form, or a
    JSON object (the Events API)."""
    media_type = content_type.split(";")[0].strip().lower()
    try:
        if media_type == "application/x-www-form-urlencoded":
            fields = dict(parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=bool(body)))
            if "payload" in fields:
                _json_object(fields["payload"])
            elif "command" not in fields:
                raise Refused("400 Bad Request", "neither a command nor a payload")
        elif media_type == "application/json":
            _json_object(body.decode())
        else:
            raise Refused("400 Bad Request", f"unexpected content type {media_type or 'none'!r}")
    except (ValueError, RecursionError) as error:  # not UTF-8, not a form, not JSON, or nested past reason
        raise Refused("400 Bad Request", f"malformed body ({type(error).__name__})") from None


def _json_object(text: str) -> None:
    value = json.loads(text)
    if not (isinstance(value, dict) and isinstance(value.get("type", ""), str)):
        raise Refused("400 Bad Request", "the payload is not a Slack payload object")
    # Bolt reads these parts of a payload without checking their types first.
    for part in ("user", "team", "channel", "container", "message", "view", "enterprise"):
        if value.get(part) is not None and not isinstance(value[part], dict):
            raise Refused("400 Bad Request", f"the payload's {part} is not an object")
    view = value.get("view") or {}
    if not all(isinstance(view.get(key, ""), str) for key in ("id", "callback_id", "private_metadata")):
        raise Refused("400 Bad Request", "the payload's view has fields of the wrong type")
    actions = value.get("actions", [])
    if not isinstance(actions, list) or not all(
        isinstance(action, dict) and isinstance(action.get("action_id", ""), str) for action in actions
    ):
        raise Refused("400 Bad Request", "the payload's actions are not a list of actions")
    if value.get("type") == "block_actions" and not all("action_id" in action for action in actions):
        raise Refused("400 Bad Request", "a block action without an action_id")


def _is_ssl_check(body: bytes) -> bool:
    return len(body) < 200 and dict(parse_qsl(body.decode("latin-1"))).get("ssl_check") == "1"


def _first_line(error: Exception) -> str:
    return (str(error).splitlines() or [""])[0][:200]


_STATUS_LINES = {200: "200 OK", 400: "400 Bad Request", 503: "503 Service Unavailable"}


def _answer(start_response: StartResponse, status: str, body: dict) -> list[bytes]:
    data = json.dumps(body).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]
