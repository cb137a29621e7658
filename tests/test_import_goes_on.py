"""`customer-bot import-stripe` never stops at one customer: text no database could take is stored safely, and a
customer the database refuses is left out, named in the summary, while every other one is imported."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select

from bot.importer import import_stripe
from bot.models import Customer, Order
from bot.stripe_gateway import StripeGateway
from devkit.local_stripe import LocalStripe
from tests.stripe_support import local_stripe_client, paid_payment_intent, stripe_customer_with_card
from tests.test_import import run_cli
from tests.test_webhook_answers import LONG_EMAIL, Refusal

REFUSED = Refusal.email


@pytest.fixture
def database_refusing(db) -> Iterator[Refusal]:
    refusal = Refusal(db)
    yield refusal
    refusal.lift()


@pytest.fixture(scope="module")
def account() -> Iterator[dict]:
    """Four customers, created in this order: one with a payment, one whose name holds NUL and whose email is 400
    characters long, one the database will refuse, and one more with a payment."""
    with LocalStripe() as server:
        client = local_stripe_client(server)
        first, card = stripe_customer_with_card(client, "first@example.com", name="First Customer")
        paid_payment_intent(client, first, card, 1200)
        odd, _ = stripe_customer_with_card(client, LONG_EMAIL, name="Nul\x00 Name")
        refused, _ = stripe_customer_with_card(client, REFUSED, name="Re Fused")
        last, card = stripe_customer_with_card(client, "last@example.com", name="Last Customer")
        paid_payment_intent(client, last, card, 3400)
        yield {"server": server, "first": first, "odd": odd, "refused": refused, "last": last}


def stored(db) -> dict[str, Customer]:
    with db.session() as s:
        return {c.stripe_customer_id: c for c in s.scalars(select(Customer))}


def test_the_import_goes_past_a_customer_it_cannot_store_and_names_it(db, account, database_refusing):
    gateway = StripeGateway.connect(account["server"].api_key, api_base=account["server"].url)

    summary = import_stripe(db, gateway)

    customers = stored(db)
    assert set(customers) == {account["first"], account["odd"], account["last"]}
    odd = customers[account["odd"]]
    assert (odd.name, odd.email) == ("Nul Name", LONG_EMAIL), "NUL removed, the long email kept whole"
    with db.session() as s:
        assert sorted(s.scalars(select(Order.total))) == [1200, 3400], "the steps after the customers went on"
    assert [(n.kind, n.stripe_id) for n in summary.not_imported] == [("customer", account["refused"])]
    assert "the database refused it" in summary.not_imported[0].reason
    assert summary.counts.created["customers"] == 3
    lines = summary.lines()
    assert "not imported: 1 (everything else was; run the import again once the cause is fixed)" in lines
    assert any(line.startswith(f"  customer {account['refused']}: the database refused it") for line in lines)


def test_the_import_command_prints_the_customer_it_could_not_store(db, account, database_refusing, tmp_path):
    server = account["server"]

    result = run_cli(db, tmp_path, STRIPE_API_KEY=server.api_key, STRIPE_API_BASE=server.url)

    assert result.returncode == 0, result.stderr
    assert "customers: 3 created, 0 updated" in result.stdout
    assert "not imported: 1" in result.stdout
    assert f"customer {account['refused']}: the database refused it" in result.stdout


def test_once_the_cause_is_gone_the_next_import_brings_the_customer_in(db, account, database_refusing):
    gateway = StripeGateway.connect(account["server"].api_key, api_base=account["server"].url)
    import_stripe(db, gateway)
    database_refusing.lift()

    again = import_stripe(db, gateway)

    assert again.not_imported == []
    assert set(stored(db)) == {account["first"], account["odd"], account["refused"], account["last"]}
