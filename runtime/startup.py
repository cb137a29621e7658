"""Starting a front end (`web`, `socket`) so that it explains itself: Slack tokens checked once with one plain line
when Slack refuses them, and a database that may be down at start without keeping the bot from starting."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from sqlalchemy.exc import DBAPIError

from bot.db import Database, is_outage
from bot.settings import Settings

logger = logging.getLogger("customer_bot.startup")

_quiet = logging.getLogger("customer_bot.startup.slack_check")
_quiet.propagate = False
_quiet.addHandler(logging.NullHandler())
SLACK_CHECK_TIMEOUT = 10  # seconds; Slack answers auth.test in well under one


class CannotStart(Exception):
    """A front end must not start; the message is the one line to show."""


def check_slack_token(settings: Settings) -> None:
    """Ask Slack once whether it accepts SLACK_BOT_TOKEN, before any server starts (Bolt would otherwise fail in
    the middle of building the app, with a traceback)."""
    _ask_slack(settings, "SLACK_BOT_TOKEN", "auth.test", settings.slack_bot_token)


def socket_mode_address(settings: Settings) -> str:
    """Ask Slack for a Socket Mode address with SLACK_APP_TOKEN: the only way to check an app-level token, and
    the address the bot then connects to (so it opens one connection, not two)."""
    return _ask_slack(settings, "SLACK_APP_TOKEN", "apps.connections.open", settings.slack_app_token)["url"]


def _ask_slack(settings: Settings, variable: str, method: str, token: str | None) -> dict:
    client = WebClient(
        token=token,
        base_url=settings.slack_api_url,
        timeout=SLACK_CHECK_TIMEOUT,
        logger=_quiet,  # what goes wrong is said once, below, in one line
        retry_handlers=[],  # a platform restarts a process that stops; retrying here only delays the line
    )
    try:
        return client.api_call(method).data  # type: ignore[return-value]
    except SlackApiError as refused:
        error = refused.response.get("error") if isinstance(refused.response.data, dict) else None
        if error:
            raise CannotStart(f"{variable} was refused by Slack: {error}") from None
        raise CannotStart(
            f"could not check {variable}: Slack at {settings.slack_api_url} answered HTTP {refused.response.status_code}"
        ) from None
    except (SlackClientError, OSError, ValueError) as unreachable:
        reason = getattr(unreachable, "reason", None) or unreachable
        raise CannotStart(
            f"could not check {variable}: Slack at {settings.slack_api_url} did not answer ({reason})"
        ) from None


class MigratingDatabase(Database):
    """The database of a front end that starts whether or not the database answers.

    `start()` applies the migrations once; if that fails it says so in one line and keeps trying in a background
    thread. Until the schema is ready every unit of work raises DatabaseUnavailable, which the listeners already
    word as "the database is not answering", so nobody sees an error about a missing table.
    """

    def __init__(self, database_url: str, *, first_retry: float = 0.5, longest_wait: float = 15.0) -> None:
        super().__init__(database_url)
        self._ready = threading.Event()
        self._stopping = threading.Event()
        self._first_retry = first_retry
        self._longest_wait = longest_wait

    def schema_ready(self) -> bool:
        return self._ready.is_set()

    def start(self) -> None:
        """Migrate now, or in the background until the database lets us. A migration that fails on a database
        that answers is not an outage: the process stops with one line rather than tell everyone "not
        answering"."""
        try:
            problem = self._try_upgrade()
        except MigrationFailed as failed:
            raise CannotStart(
                f"the database migrations failed ({failed}); `customer-bot db upgrade` shows why"
            ) from None
        if problem is None:
            return
        logger.warning(
            "the database is not ready (%s); serving anyway, Slack users are told it is not answering, "
            "and migrations are retried until they succeed",
            problem,
        )
        threading.Thread(target=self._keep_trying, name="migrations", daemon=True).start()

    def stop(self) -> None:
        self._stopping.set()

    def _keep_trying(self) -> None:
        last_problem = None
        for wait in _backoff(self._first_retry, self._longest_wait):
            if self._stopping.wait(wait):
                return
            try:
                problem = self._try_upgrade()
            except MigrationFailed as failed:  # the database is back and a migration is wrong: an error, once
                problem = f"the migrations failed ({failed}); `customer-bot db upgrade` shows why"
                if problem != last_problem:
                    logger.error(problem)
                last_problem = problem
                continue
            if problem is None:
                logger.info("the database answers and its migrations are applied: serving normally")
                return
            if problem != last_problem:  # one line per new reason, not one per attempt
                logger.warning("the database is still not ready: %s", problem)
                last_problem = problem

    def _try_upgrade(self) -> str | None:
        """None when the schema is up to date; one line saying why not when the database cannot be reached.
        Raises MigrationFailed when it answers but a migration fails."""
        try:
            self.upgrade()
        except DBAPIError as error:
            line = (str(error.orig).strip().splitlines() or [type(error.orig).__name__])[0]
            if is_outage(error):
                return line
            raise MigrationFailed(line) from error
        except Exception as error:  # a migration failing on its own; `customer-bot db upgrade` shows it whole
            raise MigrationFailed(
                f"{type(error).__name__}: {(str(error).splitlines() or [''])[0]}"
            ) from error
        self._ready.set()
        return None


class MigrationFailed(Exception):
    """The database answers, but applying a migration failed."""


def _backoff(first: float, longest: float) -> Iterator[float]:
    wait = first
    while True:
        yield wait
        wait = min(wait * 2, longest)
