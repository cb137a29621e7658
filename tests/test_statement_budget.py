"""What each answer costs the database: statements sent, transactions begun at the driver (each a BEGIN and a
COMMIT or ROLLBACK on PostgreSQL) and connection pings, counted over signed Slack requests. The read path sends its
statements and nothing else; a connection the server dropped is read again on a fresh one, without pinging."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from sqlalchemy import event, insert, text

from bot.models import Order
from tests import factories as make
from tests.conftest import Harness
from tests.slack_text import text_of

WHALE_ORDERS = 5000
# Statements per answer: the search, then the record (the customer with every count it shows, a page of its
# subscriptions and plans, a page of its orders).
# An order: itself with its counts, its lines, its payments and its refunds.
# A subscription or plan record and an order record read a page of their History in one statement more. The
# card does not: a customer's History is a view of its own behind the card's History button ("history").
BUDGET = {"list": 2, "card": 4, "subscription": 3, "order": 5, "history": 2}


@dataclass
class Sent:
    statements: list[str] = field(default_factory=list)
    transactions: int = 0
    pings: int = 0

    def reset(self) -> None:
        self.statements.clear()
        self.transactions = self.pings = 0


@pytest.fixture
def sent(harness: Harness, monkeypatch) -> Iterator[Sent]:
    seen = Sent()
    engines = {id(e): e for e in (harness.db.engine, harness.db.reader)}.values()

    def before(conn, _cursor, statement, *_args) -> None:
        conn.info["in_transaction_before"] = _in_transaction(conn)
        seen.statements.append(statement)

    def after(conn, *_args) -> None:
        if not conn.info.pop("in_transaction_before") and _in_transaction(conn):
            seen.transactions += 1  # the driver sent BEGIN ahead of this statement

    for engine in engines:
        event.listen(engine, "before_cursor_execute", before)
        event.listen(engine, "after_cursor_execute", after)
        real_ping = engine.dialect.do_ping

        def ping(dbapi_connection, _real=real_ping) -> bool:
            seen.pings += 1
            return _real(dbapi_connection)

        monkeypatch.setattr(engine.dialect, "do_ping", ping)
    yield seen
    for engine in engines:
        event.remove(engine, "before_cursor_execute", before)
        event.remove(engine, "after_cursor_execute", after)


def _in_transaction(conn) -> bool:
    """Whether the driver has a transaction open: sqlite3 and psycopg each say so in their own way."""
    dbapi = conn.connection.dbapi_connection
    if hasattr(dbapi, "in_transaction"):
        return bool(dbapi.in_transaction)
    return dbapi.info.transaction_status != 0  # psycopg: 0 is IDLE


@pytest.fixture
def shop(harness: Harness) -> dict[str, int]:
    with harness.db.session() as s:
        for i in range(45):  # more than a page: the list counts them too
            make.customer(s, f"Ada Lovelace{i:02d}", f"ada{i:02d}@example.com")
        jane = make.customer(s, "Jane Doe", "jane.doe@example.com")
        sub = make.subscription(s, jane, "Pro Membership")
        make.subscription(s, jane, "Old Plan", status="canceled")
        make.payment_plan(s, jane)
        renewal = s.get(Order, make.payment(s, sub, "paid").order_id)
        make.payment(s, sub, "failed", due_at=make.T0 + timedelta(days=30), reason="card declined")
        make.order(s, jane, 5000, currency="eur", refunded=1000)
        whale = make.customer(s, "Walter Whale", "walter@example.com")
        ids = {"sub": sub.id, "order": renewal.id, "whale": whale.id}
    with harness.db.engine.begin() as connection:  # thousands of orders in one statement, not through the ORM
        connection.execute(
            insert(Order),
            [
                {
                    "number": str(900_000 + i),
                    "customer_id": ids["whale"],
                    "created_at": make.T0 + timedelta(hours=i),
                    "currency": ("usd", "eur", "gbp")[i % 3],
                    "total": 1000 + i,
                    "amount_refunded": 0,
                    "status": "paid",
                    "source": "checkout",
                }
                for i in range(WHALE_ORDERS)
            ],
        )
    return ids


def test_a_surname_lists_in_two_statements_with_no_transaction_or_ping(harness, shop, sent):
    listing = harness.person.command("lovelace")
    assert "More than" not in text_of(listing) and "45" in text_of(listing)
    assert len(sent.statements) <= BUDGET["list"], sent.statements
    assert (sent.transactions, sent.pings) == (0, 0)


def test_an_email_opens_the_record_within_four_statements(harness, shop, sent):
    card = harness.person.command("jane.doe@example.com")
    assert "Lifetime value" in text_of(card)
    assert "Pro Membership" in text_of(card)
    assert len(sent.statements) <= BUDGET["card"], sent.statements
    assert (sent.transactions, sent.pings) == (0, 0)


def test_the_record_of_a_customer_with_5000_orders_costs_the_same(harness, shop, sent):
    card = harness.person.command("walter@example.com")
    assert f"{WHALE_ORDERS:,}" in text_of(card)
    assert len(sent.statements) <= BUDGET["card"], sent.statements
    assert (sent.transactions, sent.pings) == (0, 0)


def test_opening_a_subscription_and_an_order(harness, shop, sent):
    card = harness.person.command("jane.doe@example.com")
    sent.reset()
    harness.person.click(card, f"open_subscription-{shop['sub']}")
    assert "Subscription: Pro Membership" in text_of(harness.slack.message(card.ts))
    assert len(sent.statements) <= BUDGET["subscription"], sent.statements
    assert (sent.transactions, sent.pings) == (0, 0)

    card = harness.person.command("jane.doe@example.com")
    sent.reset()
    harness.person.click(card, f"open_order-{shop['order']}")
    assert "Pro Membership" in text_of(harness.slack.message(card.ts))
    assert len(sent.statements) <= BUDGET["order"], sent.statements
    assert (sent.transactions, sent.pings) == (0, 0)


def test_a_customers_history_is_two_statements(harness, shop, sent):
    card = harness.person.command("walter@example.com")
    sent.reset()
    harness.person.click(card, "show_history")
    assert "*History* · newest first" in text_of(harness.slack.message(card.ts))
    assert len(sent.statements) <= BUDGET["history"], sent.statements
    assert (sent.transactions, sent.pings) == (0, 0)


def test_a_connection_the_server_dropped_is_read_again_on_a_fresh_one(harness, shop, sent):
    dropped = _drop_the_next_connection_put_back(harness)
    harness.person.command("jane.doe@example.com")  # its connection goes back to the pool, dropped there
    assert dropped == ["dropped"]
    sent.reset()
    card = harness.person.command("jane.doe@example.com")
    assert "Lifetime value" in text_of(card)
    assert sent.pings == 0
    assert (
        len(sent.statements) <= 1 + BUDGET["card"]
    )  # the statement that found the connection dead, then the read


def _drop_the_next_connection_put_back(harness: Harness) -> list[str]:
    """What a database restart does to a connection waiting in the pool; the list says when it is done."""
    dropped: list[str] = []

    def drop(dbapi_connection, _record) -> None:
        dropped.append("dropped")
        if harness.db.reader.dialect.name == "postgresql":
            with harness.db.engine.connect() as other:
                other.execute(
                    text("SELECT pg_terminate_backend(:pid)"), {"pid": dbapi_connection.info.backend_pid}
                )
        else:  # SQLite has no server: close the driver's connection under SQLAlchemy's feet
            dbapi_connection.close()

    event.listen(harness.db.reader, "checkin", drop, once=True)
    return dropped
