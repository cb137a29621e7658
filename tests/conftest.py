"""Test parts: a migrated database (SQLite, and PostgreSQL when TEST_DATABASE_URL is set), a local Slack, and
the real Bolt app behind the real WSGI routes, driven with signed Slack requests."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from bot.db import Database, make_engine
from bot.models import Base
from bot.settings import Settings
from devkit.local_slack import LocalSlack, SlackPerson, wsgi_transport
from runtime.app import create_app
from runtime.web import WebApp

pytest_plugins = ["tests.stripe_support"]

SIGNING_SECRET = "test-signing-secret"
BACKENDS = ["sqlite"] + (["postgresql"] if os.environ.get("TEST_DATABASE_URL") else [])


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("template") / "template.db"
    db = Database(f"sqlite:///{path}")
    db.upgrade()
    db.dispose()
    return str(path)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """TEST_DATABASE_URL's database, emptied and migrated; under xdist each worker has its own beside it."""
    url = database_of_this_worker(os.environ["TEST_DATABASE_URL"])
    engine = make_engine(url)
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    Database(url).upgrade()
    engine.dispose()
    yield url


def database_of_this_worker(url: str) -> str:
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not worker:
        return url
    base = make_url(url)
    name = f"{base.database}_{worker}"
    engine = make_engine(url).execution_options(isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        exists = connection.scalar(text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name})
        if not exists:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return base.set(database=name).render_as_string(hide_password=False)


@pytest.fixture(params=BACKENDS)
def db(request, tmp_path) -> Iterator[Database]:
    """An empty, fully migrated database of each backend under test."""
    if request.param == "sqlite":
        path = tmp_path / "records.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        database = Database(f"sqlite:///{path}")
        yield database
        database.dispose()
        return
    database = Database(request.getfixturevalue("postgres_url"))
    try:
        yield database
    finally:
        tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
        with database.engine.begin() as connection:
            connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        database.dispose()


@pytest.fixture
def slack() -> Iterator[LocalSlack]:
    """A local Slack. Any message it would have refused fails the test that sent it."""
    with LocalSlack() as local:
        yield local
        assert local.problems == [], "Slack would have refused these messages"


@dataclass
class Harness:
    settings: Settings
    db: Database
    slack: LocalSlack
    web: WebApp
    person: SlackPerson

    def someone_else(self, user_id: str = "U0OTHER01") -> SlackPerson:
        return SlackPerson(self.slack, wsgi_transport(self.web), SIGNING_SECRET, user_id=user_id)


def settings_for(db: Database, slack: LocalSlack, **overrides) -> Settings:
    return Settings(
        database_url=db.url,
        slack_bot_token="xoxb-test-token",
        slack_signing_secret=SIGNING_SECRET,
        slack_api_url=slack.api_url,
        **overrides,
    )


@pytest.fixture
def harness(db: Database, slack: LocalSlack) -> Harness:
    settings = settings_for(db, slack)
    web = WebApp(create_app(settings, db), db)
    person = SlackPerson(slack, wsgi_transport(web), SIGNING_SECRET)
    return Harness(settings, db, slack, web, person)
