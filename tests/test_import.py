"""`customer-bot import-stripe` against a localstripe holding customers with cards, one-off charges, refunds, an
active subscription, a payment plan and a subscription whose first payment failed. Stripe is never called with a
transaction open."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select

from bot import records, stripe_sync
from bot.actions import build_actions
from bot.actions.outcomes import Pending
from bot.importer import import_stripe
from bot.models import ActionAttempt, Customer, Order, Payment, Recurring, Refund
from bot.money import Money
from bot.stripe_gateway import StripeFailure, StripeGateway
from bot.viewmodels import CardState, RefundRequest
from devkit.local_stripe import LocalStripe
from tests import factories as make
from tests.stripe_support import (
    CARD_DECLINES_AFTER_ATTACH,
    AnswerLosingHTTPClient,
    local_stripe_client,
    paid_payment_intent,
    stripe_customer_with_card,
    stripe_subscription,
)
from tests.watching import Transactions, WatchedGateway


@pytest.fixture(scope="module")
def account() -> Iterator[dict]:
    """A Stripe account of this module's own, filled once."""
    with LocalStripe() as server:
        client = local_stripe_client(server)
        jane, jane_card = stripe_customer_with_card(client, "jane@example.com", name="Jane Doe")
        paid = paid_payment_intent(client, jane, jane_card, 5000)
        paid_payment_intent(client, jane, jane_card, 2500, "eur")
        client.v1.refunds.create(params={"payment_intent": paid, "amount": 1500})
        stripe_subscription(client, jane, 2900, "usd", "month", product_name="Pro Membership")
        stripe_subscription(
            client,
            jane,
            15000,
            "usd",
            "month",
            {"payment_plan_installments": "6"},
            product_name="Teacher Training",
        )
        late, _ = stripe_customer_with_card(
            client, "late@example.com", CARD_DECLINES_AFTER_ATTACH, name="Late Payer"
        )
        with contextlib.suppress(Exception):  # localstripe answers with the decline; it stays incomplete
            stripe_subscription(client, late, 1900, "usd", "month", product_name="Community")
        for i in range(3):
            stripe_customer_with_card(client, f"quiet{i}@example.com", name=f"Quiet Customer {i}")
        yield {"server": server, "jane": jane, "late": late}


def gateway_for(account) -> StripeGateway:
    return StripeGateway.connect(account["server"].api_key, api_base=account["server"].url)


def table_counts(db) -> dict[str, int]:
    with db.session() as s:
        return {
            model.__tablename__: s.scalar(select(func.count()).select_from(model))
            for model in (Customer, Recurring, Payment, Order, Refund)
        }


def card_of(db, stripe_id: str):
    with db.session() as s:
        customer_id = s.scalar(select(Customer.id).where(Customer.stripe_customer_id == stripe_id))
        return records.customer_card(s, CardState(customer_id), recurring_page_size=5, orders_page_size=10)


def test_the_import_builds_complete_records(db, account):
    summary = import_stripe(db, gateway_for(account))

    jane = card_of(db, account["jane"])
    assert (jane.name, jane.email, jane.card.last4) == ("Jane Doe", "jane@example.com", "4242")
    assert jane.stats.orders == 4, "two one-off payments, the subscription and the plan"
    assert {m.currency: m.amount for m in jane.stats.lifetime_value} == {
        "usd": 5000 - 1500 + 2900 + 15000,
        "eur": 2500,
    }
    assert (jane.stats.active_subscriptions, jane.stats.active_plans) == (1, 1)
    assert jane.plans.items[0].installments_paid == 1 and jane.plans.items[0].installments_total == 6
    late = card_of(db, account["late"])
    assert late.stats.subscriptions_missing_payment == 1, "the failed first payment shows as missed"
    assert table_counts(db)["customers"] == 5
    assert summary.counts.created["customers"] == 5
    assert summary.pages == 6, "one page per kind of object for an account this small"


def test_importing_again_duplicates_nothing(db, account):
    import_stripe(db, gateway_for(account))
    before = table_counts(db)

    again = import_stripe(db, gateway_for(account))

    assert table_counts(db) == before
    assert not again.counts.created.get("orders") and not again.counts.created.get("refunds")


class Interrupted(StripeGateway):
    """A gateway whose connection drops after a number of list pages."""

    def __init__(self, inner: StripeGateway, pages: int) -> None:
        super().__init__(inner._client)
        self.left = pages

    def list_page(self, kind, **kwargs):
        if self.left == 0:
            raise StripeFailure("Stripe could not be reached.", outcome_unknown=True)
        self.left -= 1
        return super().list_page(kind, **kwargs)


def test_an_interrupted_import_carries_on_where_it_stopped(db, account):
    with pytest.raises(StripeFailure):
        import_stripe(db, Interrupted(gateway_for(account), pages=2))
    assert table_counts(db)["customers"] == 5, "the finished pages are kept"

    summary = import_stripe(db, gateway_for(account))

    assert summary.resumed and summary.pages == 4, "customers and subscriptions are not listed again"
    assert table_counts(db)["orders"] == 5


def test_the_import_reads_stripe_with_no_transaction_open_each_object_once(db, account, monkeypatch):
    gateway = WatchedGateway(gateway_for(account), Transactions(db, monkeypatch))

    summary = import_stripe(db, gateway)

    assert gateway.inside_transaction == []
    assert sorted(gateway.retrieved) == sorted(set(gateway.retrieved)), "each object is read once"
    assert summary.lookups == len(gateway.retrieved) == 2
    assert [len(reads) for reads in gateway.read_rounds] == [2], (
        "two invoices of the page each look up an object (a card, a failed payment): one round of reads"
    )
    assert table_counts(db) == {"customers": 5, "recurring": 3, "payments": 5, "orders": 5, "refunds": 1}


def test_a_page_whose_objects_cannot_all_be_read_keeps_none_of_its_rows(db, account, monkeypatch):
    monkeypatch.setattr(stripe_sync, "ROUNDS", 1)  # the invoices page needs one round of reads first
    with pytest.raises(StripeFailure, match="page of invoices"):
        import_stripe(db, gateway_for(account))
    assert table_counts(db) == {"customers": 5, "recurring": 3, "payments": 0, "orders": 3, "refunds": 0}, (
        "each subscription and plan is an order from the start; its payments come with the invoices"
    )

    monkeypatch.undo()
    summary = import_stripe(db, gateway_for(account))

    assert summary.resumed and summary.counts.created["payments"] == 3, "the three invoices"
    assert table_counts(db) == {"customers": 5, "recurring": 3, "payments": 5, "orders": 5, "refunds": 1}


def run_cli(db, tmp_path, **env):
    import os
    import subprocess
    import sys

    base = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "STRIPE_", "DATABASE_URL"))}
    return subprocess.run(
        [sys.executable, "-m", "runtime.cli", "import-stripe"],
        env={**base, "DATABASE_URL": db.url, **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_import_command_prints_what_it_did(db, account, tmp_path):
    server = account["server"]

    result = run_cli(db, tmp_path, STRIPE_API_KEY=server.api_key, STRIPE_API_BASE=server.url)

    assert result.returncode == 0, result.stderr
    assert "Imported from Stripe:" in result.stdout
    assert "customers: 5 created, 0 updated" in result.stdout
    assert "list pages" in result.stdout


def test_the_import_command_without_a_stripe_key_names_the_variable(db, tmp_path):
    result = run_cli(db, tmp_path)

    assert result.returncode == 2
    assert result.stderr.strip().startswith("customer-bot: STRIPE_API_KEY is not set")


def test_the_import_settles_a_refund_of_the_bots_whose_answer_was_lost(db):
    """The whole order refunded by the bot, Stripe's answer lost: the import meets the refund and settles the
    request (its hold released), instead of refusing a refund beyond what is left."""
    with LocalStripe() as server:
        client = local_stripe_client(server)
        jane, card = stripe_customer_with_card(client, "jane@example.com", name="Jane Doe")
        paid_payment_intent(client, jane, card, 5000)
        gateway = StripeGateway.connect(server.api_key, api_base=server.url)
        import_stripe(db, gateway)
        with db.session() as s:
            order_id = s.scalar(select(Order.id))
        losing = StripeGateway.connect(
            server.api_key,
            api_base=server.url,
            http_client=AnswerLosingHTTPClient("/v1/refunds", reaches_stripe=True),
            sleep=lambda _seconds: None,
        )
        asked = RefundRequest(order_id, Money(5000, "usd"), None, "Twice", (0, 0))
        assert isinstance(build_actions(db, losing, frozenset({"U1"})).refunds.refund("U1", asked), Pending)

        import_stripe(db, gateway, bot_made=build_actions(db, gateway, frozenset({"U1"})).settler.bot_made)

    with db.session() as s:
        order = s.get(Order, order_id)
        assert (order.amount_refunded, make.order_payment(s, order).amount_refund_pending, order.status) == (
            5000,
            0,
            "refunded",
        )
        assert s.scalar(select(Refund.note)) == "Twice", "recorded as the bot's request, with its note"
        assert s.scalar(select(ActionAttempt.status)) == "succeeded"
