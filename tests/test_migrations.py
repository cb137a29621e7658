"""The migrations build exactly the schema the models describe, on every backend under test."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from bot.db import current_revision
from bot.models import Base


def test_migrations_match_the_models(db):
    with db.engine.connect() as connection:
        differences = compare_metadata(
            MigrationContext.configure(connection, opts={"compare_type": True}), Base.metadata
        )
    assert differences == []


def test_upgrade_is_at_head_and_safe_to_repeat(db):
    db.upgrade()
    db.upgrade()
    assert current_revision(db.engine) == "0001"
