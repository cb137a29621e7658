"""Alembic environment: migrations run on the engine the bot hands over (see bot.db.upgrade); on SQLite, on a
connection of their own that makes the whole upgrade one transaction."""

from alembic import context
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.pool import NullPool

from bot.db import make_engine
from bot.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    engine = config.attributes.get("engine")
    if engine is None:
        from bot.settings import Settings

        engine = make_engine(Settings.from_env().database_url)
    if engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
        _run_on_sqlite(_transactional_sqlite(engine))
        return
    with engine.begin() as connection:
        _configure(connection)
        context.run_migrations()


def _configure(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )


def _transactional_sqlite(engine: Engine) -> Engine:
    """An engine on the same file whose BEGIN is ours: Python's sqlite3 runs DDL outside any transaction until the
    first write, so a failed upgrade would leave half its tables behind. SQLAlchemy's recipe for pysqlite: the
    driver's own transaction handling off, and BEGIN emitted when SQLAlchemy begins."""
    own = create_engine(engine.url, poolclass=NullPool, connect_args={"timeout": 15})

    @event.listens_for(own, "connect")
    def _no_implicit_transactions(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(own, "begin")
    def _begin(connection) -> None:
        connection.exec_driver_sql("BEGIN")

    return own


def _run_on_sqlite(engine: Engine) -> None:
    """SQLite rebuilds a table to change it (drop, then rename a copy): with foreign keys on, dropping the old table
    would cascade-delete the rows that belong to it. SQLite's own recipe: foreign keys off (outside the transaction,
    where the pragma takes effect), the change in one transaction, and a check before it commits that the change
    left no row referring to nothing (rows that already did before it are not its doing, and are left as they
    were)."""
    try:
        with engine.connect() as connection:
            # On the driver's connection: through SQLAlchemy, the first statement would begin the transaction.
            driver = connection.connection.dbapi_connection
            driver.execute("PRAGMA foreign_keys=OFF")
            before = set(map(tuple, driver.execute("PRAGMA foreign_key_check").fetchall()))
            with connection.begin():
                _configure(connection)
                context.run_migrations()
                broken = set(connection.exec_driver_sql("PRAGMA foreign_key_check").all()) - before
                if broken:
                    raise RuntimeError(f"the migration left rows that refer to nothing: {sorted(broken)[:5]}")
    finally:
        engine.dispose()


run_migrations_online()
