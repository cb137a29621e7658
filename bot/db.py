"""Connecting to the database (SQLite by default, PostgreSQL in production) and applying migrations."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker

from bot.faults import DatabaseUnavailable

MIGRATIONS = Path(__file__).parent / "migrations"
SCHEMA_NOT_READY = "the database schema is not ready: migrations have not been applied yet"
logger = logging.getLogger(__name__)
T = TypeVar("T")


def make_engine(database_url: str) -> Engine:
    url = make_url(database_url)
    if url.get_backend_name() == "postgresql" and url.get_driver_name() in ("", "psycopg2"):
        url = url.set(drivername="postgresql+psycopg")
    if url.get_backend_name() == "sqlite":
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 15})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    # A short connect timeout so an unreachable server becomes a message in Slack well inside its 3 seconds.
    # Writes ping a pooled connection before using it: a unit of work cannot be run again after a broken one.
    return create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 2})


def make_reader(engine: Engine) -> Engine:
    """The engine reads go through: on PostgreSQL its own pool of connections in autocommit, so a read is its
    statements and nothing else (no BEGIN, no COMMIT, no ping). Each statement sees committed data, as it would
    in a READ COMMITTED transaction. SQLite sends no BEGIN before a SELECT anyway, so it reads through the engine
    it writes with."""
    if engine.dialect.name == "sqlite":
        return engine
    # A small pool of its own, and a short wait for a free connection: a read is milliseconds, and a person in
    # Slack is better told "not answering" within Slack's 3 seconds than kept waiting for SQLAlchemy's 30.
    return create_engine(
        engine.url,
        isolation_level="AUTOCOMMIT",
        connect_args={"connect_timeout": 2},
        pool_size=5,
        max_overflow=5,
        pool_timeout=2,
    )


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


class Database:
    """An engine and a session factory; one session per unit of work."""

    def __init__(self, database_url: str) -> None:
        self.url = database_url
        self.engine = make_engine(database_url)
        self.reader = make_reader(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        event.listen(self._sessions, "after_commit", _run_after_commit)
        event.listen(self._sessions, "after_rollback", _forget_after_commit)

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """A session whose transaction commits on success and rolls back on any error."""
        if not self.schema_ready():
            raise DatabaseUnavailable(SCHEMA_NOT_READY)
        try:
            with self._sessions.begin() as session:
                yield session
        except (DBAPIError, PoolTimeout) as error:
            _raise_as_unavailable(error)

    def read(self, reading: Callable[[Connection], T]) -> T:
        """`reading(connection)`, for reads only: statements straight on a connection, no transaction. A pooled
        connection the server dropped (a restart, an idle timeout) fails its first statement; the read is then
        made once more on a fresh connection, instead of pinging before every read."""
        if not self.schema_ready():
            raise DatabaseUnavailable(SCHEMA_NOT_READY)
        try:
            return self._read(reading)
        except (DBAPIError, PoolTimeout) as error:
            if not getattr(error, "connection_invalidated", False):
                _raise_as_unavailable(error)
        try:
            return self._read(reading)
        except (DBAPIError, PoolTimeout) as error:
            _raise_as_unavailable(error)

    def _read(self, reading: Callable[[Connection], T]) -> T:
        with self.reader.connect() as connection:
            return reading(connection)

    def schema_ready(self) -> bool:
        """Whether the tables are there to use (see runtime.startup.MigratingDatabase)."""
        return True

    def upgrade(self) -> list[tuple[str, str]]:
        """Apply the migrations not yet applied; returns each one applied: (revision, its title), oldest first."""
        before = current_revision(self.engine)
        upgrade(self.engine)
        return applied_between(self.engine, before, current_revision(self.engine))

    def revision(self) -> str | None:
        return current_revision(self.engine)

    def dispose(self) -> None:
        self.reader.dispose()
        self.engine.dispose()


def after_commit(session: Session, callback: Callable[[], None]) -> None:
    """Run `callback` once the session's transaction has committed (never when it rolls back): telling people
    about a change only once it is really made."""
    session.info.setdefault(_AFTER_COMMIT, []).append(callback)


_AFTER_COMMIT = "after_commit"


def _run_after_commit(session: Session) -> None:
    for callback in session.info.pop(_AFTER_COMMIT, []):
        try:
            callback()
        except (
            Exception
        ):  # the change is made; failing to tell about it must not look like failing to make it
            logger.exception("a follow-up after a commit failed")


def _forget_after_commit(session: Session) -> None:
    session.info.pop(_AFTER_COMMIT, None)


def _raise_as_unavailable(error: DBAPIError | PoolTimeout) -> NoReturn:
    """An outage as DatabaseUnavailable, for the front ends to word; any other error as it is."""
    if is_outage(error):
        raise DatabaseUnavailable(str(getattr(error, "orig", error))) from error
    raise error


def is_outage(error: Exception) -> bool:
    """Whether `error` says the database cannot be reached (rather than that it refused what was asked)."""
    if isinstance(error, PoolTimeout):  # every connection busy: to the person asking, the same as down
        return True
    return isinstance(error, DBAPIError) and (error.connection_invalidated or _is_connection_error(error))


def _is_connection_error(error: DBAPIError) -> bool:
    from sqlalchemy.exc import OperationalError

    if not isinstance(error, OperationalError):
        return False
    text = str(error.orig).lower()
    return any(
        phrase in text
        for phrase in ("connection", "could not connect", "unable to open database", "timeout expired")
    )


def alembic_config(engine: Engine | None = None):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if engine is not None:
        config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply every migration up to `revision`."""
    from alembic import command

    command.upgrade(alembic_config(engine), revision)


def applied_between(engine: Engine, before: str | None, after: str | None) -> list[tuple[str, str]]:
    from alembic.script import ScriptDirectory

    if before == after or after is None:
        return []
    scripts = ScriptDirectory.from_config(alembic_config(engine))
    newest_first = scripts.iterate_revisions(after, before or "base")
    return [
        (s.revision, " ".join((s.doc or "").split("\n\n")[0].split())) for s in reversed(list(newest_first))
    ]


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
