"""The migrations build exactly the schema the models describe, on every backend under test."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, select, text

from bot.db import Database, current_revision, make_engine, upgrade
from bot.models import ActionAttempt, Base, Customer, Order
from tests.conftest import BACKENDS


def test_migrations_match_the_models(db):
    with db.engine.connect() as connection:
        differences = compare_metadata(
            MigrationContext.configure(connection, opts={"compare_type": True}), Base.metadata
        )
    assert differences == []


def test_upgrade_is_at_head_and_safe_to_repeat(db):
    db.upgrade()
    db.upgrade()
    assert current_revision(db.engine) == "0008"


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


@contextlib.contextmanager
def database_at(backend: str, revision: str, tmp_path) -> Iterator[Database]:
    """A database of the backend migrated up to `revision` (PostgreSQL: in a schema of its own)."""
    schema = f"at_{revision}"
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / f'{schema}.db'}"
    else:
        admin = make_engine(os.environ["TEST_DATABASE_URL"])
        with admin.begin() as connection:
            connection.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
            connection.execute(text(f"CREATE SCHEMA {schema}"))
        admin.dispose()
        url = os.environ["TEST_DATABASE_URL"] + f"?options=-csearch_path%3D{schema}"
    database = Database(url)
    upgrade(database.engine, revision)
    try:
        yield database
    finally:
        database.dispose()
        if backend != "sqlite":
            admin = make_engine(os.environ["TEST_DATABASE_URL"])
            with admin.begin() as connection:
                connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
            admin.dispose()


@pytest.fixture(params=BACKENDS)
def database_at_0003(request, tmp_path):
    """A database of each backend at revision 0003, the release before the ledger."""
    with database_at(request.param, "0003", tmp_path) as database:
        yield database


@pytest.fixture(params=BACKENDS)
def database_at_0004(request, tmp_path):
    """A database of each backend at revision 0004, the release before emails of Stripe's full length."""
    with database_at(request.param, "0004", tmp_path) as database:
        yield database


def test_requests_left_open_by_the_previous_release_are_carried_into_the_ledger(database_at_0003):
    """A refund whose answer was lost before the upgrade keeps its hold and gets what settling needs; a pending
    change that holds no money ends."""
    db = database_at_0003
    when = datetime(2026, 11, 30, 12, tzinfo=UTC)
    stored = when if db.engine.dialect.name == "postgresql" else when.replace(tzinfo=None)
    tried = when + timedelta(minutes=3)
    with db.engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO customers (id, name, email, created_at, stripe_customer_id) "
                "VALUES (1, 'Jane Doe', 'jane@example.com', :at, 'cus_old')"
            ),
            {"at": stored},
        )
        connection.execute(
            text(
                "INSERT INTO orders (id, number, customer_id, created_at, currency, total, amount_refunded, "
                "amount_refund_pending, status, source, stripe_payment_intent_id) "
                "VALUES (1, '100001', 1, :at, 'usd', 5000, 0, 1000, 'paid', 'checkout', 'pi_old')"
            ),
            {"at": stored},
        )
        connection.execute(
            text(
                "INSERT INTO action_attempts (key, stripe_idempotency_key, action, target_type, target_id, actor,"
                " status, amount, currency, created_at, details) VALUES"
                " ('refund:order:1:after:0', 's1', 'refund', 'order', 1, 'U1', 'pending', 1000, 'usd', :at, :d),"
                " ('cancel:recurring:7:now:seen:x', 's2', 'cancel', 'recurring', 7, 'U1', 'pending', NULL, NULL,"
                " :at, NULL)"
            ),
            {
                "at": stored,
                "d": json.dumps(
                    {
                        "request": {"reason": None, "note": "twice"},
                        "outcome_unknown": True,
                        "tried_at": tried.isoformat(),
                    }
                ),
            },
        )

    db.upgrade()

    with db.session() as s:
        refund, cancel = s.scalars(select(ActionAttempt).order_by(ActionAttempt.id)).all()
        assert (refund.status, refund.reserved, refund.tried_at) == ("pending", 1000, tried)
        assert (refund.request["payment_intent"], refund.request["amount"], refund.request["note"]) == (
            "pi_old",
            1000,
            "twice",
        )
        assert (cancel.status, cancel.key.endswith("!failed:2"), cancel.reserved) == ("failed", True, 0)
        assert s.get(Order, 1).amount_refund_pending == 1000


def test_the_upgrade_to_longer_emails_keeps_every_record(database_at_0004):
    """Customers with their orders, lines, refunds, subscriptions and search terms come through the upgrade, which
    on SQLite must not rebuild the customers table (that would cascade-delete everything that belongs to them)."""
    db = database_at_0004
    customer_id = _old_rows(db)
    before = _row_counts(db)

    db.upgrade()

    assert current_revision(db.engine) == "0008"
    assert _row_counts(db) == before and before["orders"] == 1 and before["customer_search_terms"] > 0
    long_email = "a" * 500 + "@example.com"
    with db.session() as s:
        s.get(Customer, customer_id).email = long_email
    with db.session() as s:
        assert s.get(Customer, customer_id).email == long_email


def _row_counts(db) -> dict[str, int]:
    with db.engine.connect() as connection:
        return {
            table.name: connection.execute(select(func.count()).select_from(table)).scalar_one()
            for table in Base.metadata.sorted_tables
        }


def _stored(db, when: datetime):
    return when if db.engine.dialect.name == "postgresql" else when.replace(tzinfo=None)


def _old_rows(db) -> int:
    """Jane with an order and its line, her search terms, a subscription with a paid and a failed payment, and an
    alert: written as SQL, since the models describe the newest schema. Returns her id."""
    at = _stored(db, datetime(2026, 1, 15, 12, tzinfo=UTC))
    statements = [
        "INSERT INTO customers (id, name, email, created_at, stripe_customer_id, card_brand, card_last4,"
        " default_payment_method_id) VALUES (1, 'Jane Doe', 'jane@example.com', :at, 'cus_old', 'visa', '4242',"
        " 'pm_old')",
        "INSERT INTO customer_search_terms (term, customer_id) VALUES ('jane', 1), ('doe', 1)",
        "INSERT INTO orders (id, number, customer_id, created_at, currency, total, amount_refunded,"
        " amount_refund_pending, status, source) VALUES (1, '100001', 1, :at, 'usd', 5000, 0, 0, 'paid', 'checkout')",
        "INSERT INTO order_lines (order_id, position, description, quantity, unit_amount)"
        " VALUES (1, 0, 'Course', 1, 5000)",
        "INSERT INTO recurring (id, kind, customer_id, product, amount, currency, interval, interval_count, status,"
        " started_at, cancel_at_period_end, payments_paused, next_bill_at) VALUES"
        " (1, 'subscription', 1, 'Pro Membership', 2900, 'usd', 'month', 1, 'past_due', :at, false, false, :at),"
        " (2, 'subscription', 1, 'Gold', 900, 'usd', 'month', 1, 'trialing', :at, false, false, :at)",
        "INSERT INTO payments (id, recurring_id, due_at, amount, currency, status, failure_reason, failed_at)"
        " VALUES (1, 1, :at, 2900, 'usd', 'paid', NULL, NULL), (2, 1, :at, 2900, 'usd', 'failed', 'Declined.', :at)",
        "INSERT INTO missed_payment_alerts (payment_id, channel, claimed_at) VALUES (2, 'C1', :at)",
    ]
    with db.engine.begin() as connection:
        for statement in statements:
            connection.execute(text(statement), {"at": at})
    return 1


@pytest.fixture(params=BACKENDS)
def database_at_0006(request, tmp_path):
    """A database of each backend at revision 0006, the release before statuses as Stripe has them."""
    with database_at(request.param, "0006", tmp_path) as database:
        yield database


def test_the_upgrade_to_stripes_statuses_keeps_every_record_and_takes_the_new_ones(database_at_0006):
    """Nothing is lost (on SQLite the tables are not rebuilt, which would cascade-delete payments and alerts); the
    card on file is marked the customer's own, a trial keeps its end, and the new statuses can be stored."""
    from bot.models import Payment, Recurring

    db = database_at_0006
    _old_rows(db)
    before = _row_counts(db)

    db.upgrade()

    assert current_revision(db.engine) == "0008"
    assert _row_counts(db) == before and before["payments"] == 2 and before["missed_payment_alerts"] == 1
    with db.session() as s:
        assert s.get(Customer, 1).card_source == "customer"
        trial = s.get(Recurring, 2)
        assert trial.trial_ends_at == trial.next_bill_at is not None
        s.get(Payment, 2).status = "uncollectible"
        s.get(Recurring, 1).status = "unpaid"
    with db.session() as s:
        assert (s.get(Payment, 2).status, s.get(Recurring, 1).status) == ("uncollectible", "unpaid")
    from sqlalchemy.exc import IntegrityError

    with pytest.raises(IntegrityError), db.session() as s:
        s.get(Payment, 2).status = "lost"
