"""`customer-bot web`: the WSGI app served by waitress, in one process with a pool of threads.

Waitress reads every request whole on its event loop, before any thread sees it: a client sending its body a byte
a second holds a connection, not one of the threads that answer Slack. What waitress does not do, we add: a
deadline for a whole request to arrive, and on SIGTERM a drain that finishes the requests in hand.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

from waitress.server import TcpWSGIServer

from bot.settings import Settings
from runtime.startup import CannotStart, MigratingDatabase, check_slack_token
from runtime.web import MAX_BODY_BYTES, WebApp

logger = logging.getLogger("customer_bot.server")

DEFAULT_THREADS = 16  # what two gunicorn workers of eight threads gave; each request waits mostly on I/O
# Slack gives up on an answer after 3 seconds, so a request still arriving after 10 is of no use to anyone.
REQUEST_DEADLINE_SECONDS = 10
IDLE_SECONDS = 30  # a kept-alive connection with no request in flight is closed after this
CONNECTION_LIMIT = 200  # open connections, slow or idle ones included; past it waitress stops accepting
SHUTDOWN_GRACE_SECONDS = 20  # on SIGTERM, time for the requests in hand to finish (platforms wait 30 s)


class SlackFrontServer(TcpWSGIServer):
    """Waitress's HTTP server, closing connections whose request has not fully arrived within a deadline."""

    def __init__(self, application, *, request_deadline: float = REQUEST_DEADLINE_SECONDS, **adjustments):
        self.request_deadline = request_deadline
        super().__init__(application, **adjustments)

    def maintenance(self, now: float) -> None:
        super().maintenance(now)  # closes idle connections (channel_timeout)
        for channel in list(self.active_channels.values()):
            receiving = channel.request  # waitress's parser for a request that has not fully arrived yet
            if receiving is None:
                continue
            first_seen = receiving.__dict__.setdefault("customer_bot_first_seen", now)
            if now - first_seen > self.request_deadline and not channel.will_close:
                logger.warning(
                    "closed a connection from %s: its request was still arriving after %s s",
                    channel.addr[0] if channel.addr else "?",
                    self.request_deadline,
                )
                channel.will_close = True


def make_server(
    application,
    *,
    port: int,
    threads: int,
    host: str = "0.0.0.0",
    request_deadline: float = REQUEST_DEADLINE_SECONDS,
) -> SlackFrontServer:
    return SlackFrontServer(
        application,
        request_deadline=request_deadline,
        host=host,
        port=port,
        threads=threads,
        connection_limit=CONNECTION_LIMIT,
        channel_timeout=IDLE_SECONDS,
        cleanup_interval=max(1, int(request_deadline) // 4),
        max_request_body_size=MAX_BODY_BYTES
        + 1,  # waitress refuses at or above this; the app says why at 413
        asyncore_use_poll=True,  # select() cannot watch more than 1024 sockets
        expose_tracebacks=False,
        ident="customer-bot",
    )


def serve_until(
    server: SlackFrontServer, stopping: threading.Event, grace: float = SHUTDOWN_GRACE_SECONDS
) -> None:
    """Serve until `stopping` is set; then stop accepting, let the requests in hand finish, and return."""
    while not stopping.is_set():
        server.asyncore.loop(timeout=0.5, map=server._map, use_poll=True, count=1)
    server.asyncore.dispatcher.close(server)  # the listening socket only: the loop still sends the answers

    def busy() -> bool:
        return any(c.requests or c.total_outbufs_len for c in list(server.active_channels.values()))

    deadline = time.monotonic() + grace
    while busy() and time.monotonic() < deadline:
        server.asyncore.loop(timeout=0.1, map=server._map, use_poll=True, count=1)
    server.task_dispatcher.shutdown(timeout=1)


def stop_on_signals(stopping: threading.Event) -> None:
    def stop(signum: int, _frame: object) -> None:
        logger.info("%s received: finishing the requests in hand, then stopping", signal.Signals(signum).name)
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)


def web_threads() -> int:
    value = os.environ.get("WEB_THREADS", "").strip()
    if not value:
        return DEFAULT_THREADS
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"WEB_THREADS must be a whole number of at least 1, not {value!r}.")
    return int(value)


def build_web_app(settings: Settings, db: MigratingDatabase) -> WebApp:
    """The WSGI application: the Bolt app on the configured database, wrapped with our routes."""
    from bot.stripe_gateway import StripeGateway
    from bot.webhooks import StripeWebhooks
    from runtime.app import actions_for, create_app, slack_client

    gateway = None
    if settings.stripe_api_key:
        gateway = StripeGateway.connect(settings.stripe_api_key, api_base=settings.stripe_api_base)
    client = slack_client(settings)
    actions = actions_for(settings, db, client, gateway=gateway)
    announce = None
    if settings.alerts_channel:
        from runtime.dispute_alerts import dispute_announcer
        from runtime.jobs import jobs_slack_client

        # The jobs' client: each call bounded in time and never sent twice, so a dispute alert goes up once.
        alerts_client = jobs_slack_client(settings.slack_bot_token, settings.slack_api_url)
        announce = dispute_announcer(db, alerts_client, settings.alerts_channel)
    webhooks = (
        StripeWebhooks(
            db,
            gateway,
            settings.stripe_webhook_secret,
            bot_made=actions.settler.bot_made,
            announce_dispute=announce,
        )
        if gateway and settings.stripe_webhook_secret
        else None
    )
    app = create_app(settings, db, client=client, actions=actions)
    return WebApp(app, db, webhooks, schema_ready=db.schema_ready)


def serve_http(settings: Settings) -> int:
    threads = web_threads()
    check_slack_token(settings)  # before anything starts: a refused token is one line, not a traceback
    db = MigratingDatabase(settings.database_url)
    db.start()
    app = build_web_app(settings, db)
    try:
        server = make_server(app, port=settings.port, threads=threads)
    except OSError as error:
        raise CannotStart(f"could not listen on PORT {settings.port}: {error.strerror or error}") from None
    logger.info("serving Slack on http://0.0.0.0:%s/slack/events with %s threads", settings.port, threads)
    stopping = threading.Event()
    stop_on_signals(stopping)
    serve_until(server, stopping)
    db.stop()
    db.dispose()
    logger.info("stopped")
    return 0
