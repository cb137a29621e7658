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
from bot.models import ActionAttempt, Base, Customer, Order, OrderLine, Payment, Refund
from devkit.local_slack import SlackPerson, wsgi_transport
from runtime.app import create_app
from runtime.web import WebApp
from tests import factories as make
from tests.conftest import BACKENDS, SIGNING_SECRET, settings_for
from tests.slack_text import text_of


def test_migrations_match_the_models(db):
    with db.engine.connect() as connection:
        differences = compare_metadata(
            MigrationContext.configure(connection, opts={"compare_type": True}), Base.metadata
        )
    assert differences == []


def test_upgrade_is_at_head_and_safe_to_repeat(db):
    db.upgrade()
    db.upgrade()
    assert current_revision(db.engine) == "0013"


def test_the_database_itself_refuses_refunds_beyond_what_was_paid(db):
    """The check constraints hold even for code that forgets to check: on SQLite after a table rebuild too."""
    from sqlalchemy import update
    from sqlalchemy.exc import IntegrityError

    from bot.models import Payment
    from tests import factories as make

    with db.session() as s:
        order = make.order(s, make.customer(s), 1000)
        payment_id, order_id = make.order_payment(s, order).id, order.id
    for refunded, pending in [(1001, 0), (600, 500), (0, -1)]:
        with pytest.raises(IntegrityError), db.session() as s:
            s.execute(
                update(Payment)
                .where(Payment.id == payment_id)
                .values(amount_refunded=refunded, amount_refund_pending=pending)
            )
    with pytest.raises(IntegrityError), db.session() as s:
        s.execute(update(Order).where(Order.id == order_id).values(amount_refunded=1001))


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
        payment = s.scalar(select(Payment).where(Payment.order_id == 1))
        assert (payment.amount, payment.amount_refund_pending, payment.stripe_payment_intent_id) == (
            5000,
            1000,
            "pi_old",
        ), "the refund's hold moved with the order's payment"
        assert (refund.target_type, refund.target_id) == ("payment", payment.id)


def test_the_upgrade_to_longer_emails_keeps_every_record(database_at_0004):
    """Customers with their orders, lines, refunds, subscriptions and search terms come through the upgrade, which
    on SQLite must not rebuild the customers table (that would cascade-delete everything that belongs to them)."""
    db = database_at_0004
    customer_id = _old_shape_customer(db)
    before = _row_counts(db)

    db.upgrade()

    after = _row_counts(db)
    assert current_revision(db.engine) == "0013"
    assert after["customers"] == before["customers"] == 1 and after["customer_search_terms"] > 0
    assert after["order_lines"] > 0 and after["refunds"] == before["refunds"] == 2
    long_email = "a" * 500 + "@example.com"
    with db.session() as s:
        s.get(Customer, customer_id).email = long_email
    with db.session() as s:
        assert s.get(Customer, customer_id).email == long_email


@pytest.fixture(params=BACKENDS)
def database_at_0006(request, tmp_path):
    """A database of each backend at revision 0006, the release with one order per payment."""
    with database_at(request.param, "0006", tmp_path) as database:
        yield database


def test_one_order_per_payment_becomes_orders_with_payments(database_at_0006, slack):
    """The old shape (a renewal or instalment was an order of its own) upgrades in place: the same customer shows
    the orders they placed, the same lifetime value, and every payment, refund and request in flight kept."""
    db = database_at_0006
    customer_id = _old_shape_customer(db)

    db.upgrade()

    with db.session() as s:
        orders = {o.source: o for o in s.scalars(select(Order).where(Order.customer_id == customer_id))}
        assert set(orders) == {"checkout", "subscription", "payment_plan"}, "three orders placed, not six"
        sub_order, plan_order, checkout = orders["subscription"], orders["payment_plan"], orders["checkout"]
        assert (sub_order.number, sub_order.total, sub_order.amount_refunded, sub_order.status) == (
            "100002",
            5800,
            1000,
            "partially_refunded",
        ), "the earliest renewal's order is the subscription's, and the later one's payment is folded into it"
        assert (plan_order.number, plan_order.total, plan_order.status) == ("100004", 0, "unpaid")
        assert (checkout.total, checkout.amount_refunded, checkout.status) == (5000, 5000, "refunded")
        payments = s.scalars(select(Payment).order_by(Payment.id)).all()
        assert [(p.kind, p.status, p.order_id, p.amount_refunded) for p in payments] == [
            ("initial", "paid", sub_order.id, 0),
            ("renewal", "paid", sub_order.id, 1000),
            ("initial", "failed", plan_order.id, 0),
            ("one_off", "paid", checkout.id, 5000),
        ]
        assert {p.stripe_payment_intent_id for p in payments} == {"pi_r1", "pi_r2", None, "pi_c"}
        refunds = s.scalars(select(Refund).order_by(Refund.id)).all()
        assert [(r.order_id, r.payment_id) for r in refunds] == [
            (sub_order.id, payments[1].id),
            (checkout.id, payments[3].id),
        ]
        attempt = s.scalar(select(ActionAttempt))
        assert (attempt.target_type, attempt.target_id) == ("payment", payments[1].id)
        assert s.scalar(select(func.count()).select_from(OrderLine).where(OrderLine.order_id == 3)) == 0
    web = WebApp(create_app(settings_for(db, slack), db), db)
    person = SlackPerson(slack, wsgi_transport(web), SIGNING_SECRET)
    card = person.command("jane")
    assert "*Orders*\n3" in text_of(card), "the orders Jane placed"
    assert "*Lifetime value*\n$48.00" in text_of(card), "$50 + $29 + $29 paid, $60 refunded: as before"
    folded = text_of(person.command("#100003"))
    assert "Order #100002" in folded, "a folded renewal's number opens the subscription's order"
    with db.session() as s:
        newer = make.order(s, s.get(Customer, customer_id), 700)
        assert int(newer.id) > 4, "no new order takes the id, and so the number, of a folded one"


def test_an_upgrade_that_fails_on_sqlite_leaves_the_database_as_it_was(tmp_path):
    """The whole upgrade is one transaction on SQLite too (the driver alone would commit each table it makes)."""
    from alembic import command
    from alembic.config import Config

    from bot.db import MIGRATIONS

    scripts = tmp_path / "migrations"
    (scripts / "versions").mkdir(parents=True)
    for name in ("env.py", "script.py.mako"):
        (scripts / name).write_text((MIGRATIONS / name).read_text())
    (scripts / "versions" / "0001_fails.py").write_text(
        "from alembic import op\nimport sqlalchemy as sa\n\nrevision = '0001'\ndown_revision = None\n\n\n"
        "def upgrade():\n"
        "    op.create_table('made', sa.Column('id', sa.Integer, primary_key=True))\n"
        "    op.execute('INSERT INTO made (id) VALUES (1)')\n"
        "    raise RuntimeError('half way')\n"
    )
    db = Database(f"sqlite:///{tmp_path / 'failing.db'}")
    config = Config()
    config.set_main_option("script_location", str(scripts))
    config.attributes["engine"] = db.engine
    with pytest.raises(RuntimeError, match="half way"):
        command.upgrade(config, "head")
    with db.engine.connect() as connection:
        assert connection.execute(text("SELECT name FROM sqlite_master WHERE type = 'table'")).all() == []
    db.dispose()


def test_rows_that_referred_to_nothing_before_the_upgrade_do_not_stop_it(tmp_path):
    with database_at("sqlite", "0006", tmp_path) as db:
        _old_shape_customer(db)
        with db.engine.begin() as connection:
            connection.execute(text("PRAGMA foreign_keys=OFF"))
            connection.execute(
                text(
                    "INSERT INTO order_lines (order_id, position, description, quantity, unit_amount)"
                    " VALUES (999, 0, 'left over', 1, 100)"
                )
            )

        db.upgrade()

        assert current_revision(db.engine) == "0013"


def _old_shape_customer(db) -> int:
    """Jane in the shape before 0007: a checkout refunded in full, a subscription with two paid renewals (each an
    order, the second partly refunded, with a refund request still open) and a plan whose first payment failed."""
    when = datetime(2026, 11, 1, 12, tzinfo=UTC)
    at = when if db.engine.dialect.name == "postgresql" else when.replace(tzinfo=None)
    rows = [
        "INSERT INTO customers (id, name, email, created_at, stripe_customer_id)"
        " VALUES (1, 'Jane Doe', 'jane@example.com', :at, 'cus_old')",
        "INSERT INTO customer_search_terms (term, customer_id) VALUES ('jane', 1), ('doe', 1)",
        "INSERT INTO recurring (id, kind, customer_id, product, amount, currency, interval, interval_count, status,"
        " started_at, cancel_at_period_end, payments_paused, stripe_subscription_id) VALUES"
        " (1, 'subscription', 1, 'Pro Membership', 2900, 'usd', 'month', 1, 'active', :at, false, false, 'sub_1'),"
        " (2, 'payment_plan', 1, 'Guitar course', 5000, 'usd', 'month', 1, 'past_due', :at, false, false,"
        " 'sub_2')",
        "UPDATE recurring SET installments_total = 6, installments_paid = 0 WHERE id = 2",
        "INSERT INTO orders (id, number, customer_id, created_at, currency, total, amount_refunded,"
        " amount_refund_pending, status, source, recurring_id, stripe_payment_intent_id, card_brand, card_last4)"
        " VALUES (1, '100001', 1, :at, 'usd', 5000, 5000, 0, 'refunded', 'checkout', NULL, 'pi_c', 'visa', '4242'),"
        " (2, '100002', 1, :at, 'usd', 2900, 0, 0, 'paid', 'renewal', 1, 'pi_r1', 'visa', '4242'),"
        " (3, '100003', 1, :later, 'usd', 2900, 1000, 500, 'partially_refunded', 'renewal', 1, 'pi_r2',"
        " 'visa', '4242')",
        "INSERT INTO order_lines (order_id, position, description, quantity, unit_amount) VALUES"
        " (1, 0, 'Watercolour basics', 1, 5000), (2, 0, 'Pro Membership, November', 1, 2900),"
        " (3, 0, 'Pro Membership, December', 1, 2900)",
        "INSERT INTO payments (id, recurring_id, due_at, amount, currency, status, stripe_invoice_id, order_id)"
        " VALUES (1, 1, :at, 2900, 'usd', 'paid', 'in_1', 2), (2, 1, :later, 2900, 'usd', 'paid', 'in_2', 3),"
        " (3, 2, :at, 5000, 'usd', 'failed', 'in_3', NULL)",
        "INSERT INTO refunds (id, order_id, amount, currency, stripe_refund_id, created_at) VALUES"
        " (1, 3, 1000, 'usd', 're_1', :later), (2, 1, 5000, 'usd', 're_2', :later)",
        "INSERT INTO action_attempts (key, stripe_idempotency_key, action, target_type, target_id, actor, status,"
        " amount, currency, created_at, tries, tried_at, sent_at, reserved) VALUES ('refund:order:3', 's1',"
        " 'refund', 'order', 3, 'U1', 'pending', 500, 'usd', :later, 1, :later, :later, 500)",
    ]
    with db.engine.begin() as connection:
        for statement in rows:
            connection.execute(text(statement), {"at": at, "later": at + timedelta(days=30)})
        _sequences_follow(connection)
    return 1


def _row_counts(db) -> dict[str, int]:
    """Rows per table, for the tables the database has (a later release's are not there yet)."""
    with db.engine.connect() as connection:
        return {
            name: connection.execute(text(f"SELECT count(*) FROM {name}")).scalar_one()
            for name in (
                "customers",
                "customer_search_terms",
                "orders",
                "order_lines",
                "refunds",
                "recurring",
                "payments",
                "missed_payment_alerts",
            )
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
        _sequences_follow(connection)
    return 1


def _sequences_follow(connection) -> None:
    """Rows written with their ids: on PostgreSQL the id sequences move past them, as they would have."""
    if connection.dialect.name != "postgresql":
        return
    for table in ("customers", "recurring", "orders", "payments", "refunds"):
        connection.execute(
            text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
        )


def test_the_upgrade_to_stripes_statuses_keeps_every_record_and_takes_the_new_ones(database_at_0006):
    """Nothing is lost (on SQLite the tables are not rebuilt, which would cascade-delete payments and alerts); the
    card on file is marked the customer's own, a trial keeps its end, and the new statuses can be stored."""
    from bot.models import Payment, Recurring

    db = database_at_0006
    _old_rows(db)
    before = _row_counts(db)

    db.upgrade()

    after = _row_counts(db)
    assert current_revision(db.engine) == "0013"
    assert (before["payments"], after["payments"]) == (2, 3), (
        "the checkout's payment is a row of its own (0007)"
    )
    assert before["missed_payment_alerts"] == after["missed_payment_alerts"] == 1
    assert after["orders"] == 3, "the checkout, and an order for each subscription (0007)"
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


@pytest.fixture(params=BACKENDS)
def database_at_0009(request, tmp_path):
    """A database of each backend at revision 0009, the release before disputes."""
    with database_at(request.param, "0009", tmp_path) as database:
        yield database


def test_the_upgrade_to_disputes_keeps_every_order_and_its_value(database_at_0009, slack):
    db = database_at_0009
    with db.engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO customers (id, name, email, created_at) "
                "VALUES (1, 'Jane Doe', 'jane.doe@example.com', :at)"
            ),
            {"at": make.T0},
        )
        connection.execute(text("INSERT INTO customer_search_terms (term, customer_id) VALUES ('jane', 1)"))
        for order_id, total, refunded in [(1, 5000, 1000), (2, 2900, 0)]:
            connection.execute(
                text(
                    "INSERT INTO orders (id, number, customer_id, created_at, currency, total, amount_refunded, "
                    "status, source) VALUES (:id, :number, 1, :at, 'usd', :total, :refunded, 'paid', 'checkout')"
                ),
                {
                    "id": order_id,
                    "number": str(100_000 + order_id),
                    "at": make.T0,
                    "total": total,
                    "refunded": refunded,
                },
            )

    db.upgrade()

    assert current_revision(db.engine) == "0013"
    with db.session() as s:
        assert [o.amount_lost for o in s.scalars(select(Order).order_by(Order.id))] == [0, 0]
    web = WebApp(create_app(settings_for(db, slack), db), db)
    card = text_of(SlackPerson(slack, wsgi_transport(web), SIGNING_SECRET).command("jane"))
    assert "*Orders*\n2" in card and "*Lifetime value*\n$69.00" in card, "$79 paid, $10 refunded: as before"


@pytest.fixture(params=BACKENDS)
def database_at_0011(request, tmp_path):
    """A database of each backend at revision 0011, the release before company names and tax ids."""
    with database_at(request.param, "0011", tmp_path) as database:
        yield database


def test_company_and_tax_ids_are_added_in_place(database_at_0011, slack):
    """Customers and everything of theirs come through (no table rebuild); they start with no company and no tax
    ids, the card shows neither, and both can be kept after."""
    db = database_at_0011
    at = make.T0 if db.engine.dialect.name == "postgresql" else make.T0.replace(tzinfo=None)
    with db.engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO customers (id, name, email, created_at, stripe_customer_id, card_brand, card_last4)"
                " VALUES (1, 'Jane Doe', 'jane@example.com', :at, 'cus_old', 'visa', '4242')"
            ),
            {"at": at},
        )
        connection.execute(text("INSERT INTO customer_search_terms (term, customer_id) VALUES ('jane', 1)"))
        connection.execute(
            text(
                "INSERT INTO notes (target_type, target_id, author, text, created_at)"
                " VALUES ('customer', 1, 'U1', 'VIP', :at)"
            ),
            {"at": at},
        )
    customer_id = 1

    db.upgrade()

    assert current_revision(db.engine) == "0013"
    with db.engine.connect() as connection:
        kept = [
            connection.scalar(text(f"SELECT count(*) FROM {table}"))
            for table in ("customers", "customer_search_terms", "notes")
        ]
    assert kept == [1, 1, 1]
    with db.session() as s:
        customer = s.get(Customer, customer_id)
        assert (customer.company_name, customer.tax_ids) == (None, None)
        customer.company_name, customer.tax_ids = "Acme GmbH", [{"type": "eu_vat", "value": "DE123456789"}]
    web = WebApp(create_app(settings_for(db, slack), db), db)
    card = text_of(SlackPerson(slack, wsgi_transport(web), SIGNING_SECRET).command("jane"))
    assert "*Company*\nAcme GmbH" in card and "EU VAT `DE123456789`" in card
