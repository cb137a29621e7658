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
    assert current_revision(db.engine) == "0004"


def test_the_database_itself_refuses_refunds_beyond_the_total(db):
    """The check constraints hold even for code that forgets to check: on SQLite after a table rebuild too."""
    import pytest
    from sqlalchemy import update
    from sqlalchemy.exc import IntegrityError

    from bot.models import Order
    from tests import factories as make

    with db.session() as s:
        order_id = make.order(s, make.customer(s), 1000).id
    for refunded, pending in [(1001, 0), (600, 500), (0, -1)]:
        with pytest.raises(IntegrityError), db.session() as s:
            s.execute(
                update(Order)
                .where(Order.id == order_id)
                .values(amount_refunded=refunded, amount_refund_pending=pending)
            )
