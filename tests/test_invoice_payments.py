"""A subscription's or plan's payments through Stripe's webhooks, whatever order their events arrive in, on the API
version the gateway pins: since 2025-03-31.basil a payment intent no longer names its invoice, and an invoice names
its payment intent only in `payments`. Stripe is localstripe behind the stand-in, answering in those shapes
(`StripeStandIn(basil=True)`); events are signed by hand and posted to the real web app, refunds asked in Slack."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import parse_qsl

import pytest
from slack_sdk import WebClient
from sqlalchemy import func, select

from bot.actions.ledger import PENDING, SUCCEEDED
from bot.importer import import_stripe
from bot.models import ActionAttempt, AuditEvent, Customer, Order, OrderLine, Payment, Recurring, Refund
from bot.stripe_gateway import CallLimits, StripeGateway
from bot.webhooks import StripeWebhooks
from devkit.local_slack import SlackPerson, wsgi_transport
from runtime.app import actions_for, create_app
from runtime.web import WebApp
from tests import factories as make
from tests.clock import Clock
from tests.conftest import SIGNING_SECRET, Harness, settings_for
from tests.stripe_standin import StripeStandIn
from tests.stripe_support import (
    local_stripe_client,
    paid_payment_intent,
    stripe_customer_with_card,
    stripe_subscription,
)
from tests.test_faults import Shop, refund_form
from tests.test_webhooks import event, post, signed

ADMIN = "U0ADMIN01"
WEBHOOK_SECRET = "whsec_invoice_payments"
LIMITS = CallLimits(connect_timeout=0.5, read_timeout=0.5, budget=2.0, retry_delays=(0.01, 0.01, 0.01))
PRICE = 15000


@pytest.fixture
def stand_in(local_stripe) -> Iterator[StripeStandIn]:
    with StripeStandIn(local_stripe.url, basil=True) as proxy:
        yield proxy
        assert proxy.errors == []


@pytest.fixture
def shop(db, slack, local_stripe, stand_in) -> Shop:
    clock = Clock()
    settings = settings_for(db, slack, payment_admins=frozenset({ADMIN}))
    gateway = StripeGateway.connect(local_stripe.api_key, api_base=stand_in.url, limits=LIMITS)
    client = WebClient(token=settings.slack_bot_token, base_url=settings.slack_api_url)
    actions = actions_for(settings, db, client, gateway=gateway, clock=clock)
    webhooks = StripeWebhooks(db, gateway, WEBHOOK_SECRET, bot_made=actions.settler.bot_made)
    web = WebApp(create_app(settings, db, client=client, actions=actions), db, webhooks)
    harness = Harness(
        settings, db, slack, web, SlackPerson(slack, wsgi_transport(web), SIGNING_SECRET, user_id=ADMIN)
    )
    return Shop(harness, actions, clock, stand_in, local_stripe_client(local_stripe))


@dataclass(frozen=True)
class Bill:
    """A plan's first instalment, paid in Stripe."""

    customer: str
    subscription: str
    invoice: str
    intent: str
    charge: str


def plan_paid(shop: Shop, installments: int = 1) -> Bill:
    """Jane on a payment plan of `installments` instalments; Stripe has just paid the first one. No event about
    it has reached us yet."""
    customer, _ = stripe_customer_with_card(shop.stripe, "jane.doe@example.com", name="Jane Doe")
    subscription = stripe_subscription(
        shop.stripe,
        customer,
        PRICE,
        "usd",
        "month",
        {"payment_plan_installments": str(installments)},
        product_name="Teacher Training",
    )
    invoice = shop.stripe.v1.invoices.list(params={"subscription": subscription}).data[0]
    intent = (
        invoice.payment_intent
    )  # localstripe itself still says; the stand-in tells the bot as Stripe does
    charge = shop.stripe.v1.payment_intents.retrieve(intent).latest_charge
    return Bill(customer, subscription, invoice.id, intent, charge if isinstance(charge, str) else charge.id)


def deliver(shop: Shop, event_id: str, kind: str, object_id: str) -> tuple[str, dict]:
    return post(shop.harness.web, *signed(event(event_id, kind, {"id": object_id}), WEBHOOK_SECRET))


def intent_succeeded(shop: Shop, bill: Bill, event_id: str = "evt_pi_1") -> tuple[str, dict]:
    return deliver(shop, event_id, "payment_intent.succeeded", bill.intent)


def invoice_paid(shop: Shop, bill: Bill, event_id: str = "evt_in_1") -> tuple[str, dict]:
    return deliver(shop, event_id, "invoice.paid", bill.invoice)


def processed(event_id: str) -> tuple[str, dict]:
    return "200 OK", {"processed": event_id}


def orders(shop: Shop) -> list[tuple[str, int, int, str]]:
    with shop.harness.db.session() as s:
        return [
            (o.source, o.total, o.amount_refunded, o.status)
            for o in s.scalars(select(Order).order_by(Order.id))
        ]


def payments(shop: Shop) -> list[tuple[str, str, int, str | None, str | None]]:
    with shop.harness.db.session() as s:
        return [
            (p.kind, p.status, p.amount, p.stripe_payment_intent_id, p.stripe_charge_id)
            for p in s.scalars(select(Payment).order_by(Payment.id))
        ]


def plan(shop: Shop) -> tuple[str, int | None, int | None]:
    with shop.harness.db.session() as s:
        row = s.scalar(select(Recurring))
        return row.status, row.installments_paid, row.installments_total


def totals_add_up(shop: Shop) -> None:
    """Every order's totals are the sums of its payments."""
    with shop.harness.db.session() as s:
        for order in s.scalars(select(Order)):
            paid = s.scalars(
                select(Payment).where(Payment.order_id == order.id, Payment.paid_at.is_not(None))
            )
            paid = list(paid)
            assert order.total == sum(p.amount for p in paid), f"order {order.number}'s total"
            assert order.amount_refunded == sum(p.amount_refunded for p in paid), (
                f"order {order.number}'s refunds"
            )
            refunds = s.scalars(select(Refund.amount).where(Refund.order_id == order.id))
            assert order.amount_refunded == sum(refunds)


def invoice_payment_lookups(shop: Shop) -> list[dict[str, str]]:
    return [
        dict(parse_qsl(e.query))
        for e in shop.stand_in.log
        if (e.method, e.path) == ("GET", "/v1/invoice_payments")
    ]


def plan_ended_in_stripe(shop: Shop, bill: Bill) -> bool:
    return shop.stripe.v1.subscriptions.retrieve(bill.subscription).status == "canceled"


THE_INSTALMENT = [("initial", "paid", PRICE)]


def paid_by(bill: Bill) -> list[tuple[str, str, int, str, str]]:
    return [(*THE_INSTALMENT[0], bill.intent, bill.charge)]


# --- whichever comes first ----------------------------------------------------------------------------------


def test_a_payment_intent_before_its_invoice_is_the_plans_instalment_not_an_order(shop):
    bill = plan_paid(shop)

    assert intent_succeeded(shop, bill) == processed("evt_pi_1")
    assert orders(shop) == [], "a plan's payment: no checkout order"
    assert invoice_payment_lookups(shop) == [
        {
            "payment[type]": "payment_intent",
            "payment[payment_intent]": bill.intent,
            "expand[0]": "data.invoice",
            "limit": "100",
        }
    ]

    assert invoice_paid(shop, bill) == processed("evt_in_1")
    assert orders(shop) == [("payment_plan", PRICE, 0, "paid")]
    assert payments(shop) == paid_by(bill)
    assert plan(shop) == ("completed", 1, 1), "its one instalment counted: the plan is over"
    assert plan_ended_in_stripe(shop, bill), "and the bot ended it, so Stripe charges no more"
    totals_add_up(shop)


def test_an_invoice_before_its_payment_intent(shop):
    bill = plan_paid(shop, installments=3)

    assert invoice_paid(shop, bill) == processed("evt_in_1")
    assert intent_succeeded(shop, bill) == processed("evt_pi_1")

    assert orders(shop) == [("payment_plan", PRICE, 0, "paid")]
    assert payments(shop) == paid_by(bill)
    assert plan(shop) == ("active", 1, 3)
    assert invoice_payment_lookups(shop) == [], "an intent we hold already needs no lookup"
    invoice_reads = [e.query for e in shop.stand_in.log if e.path == f"/v1/invoices/{bill.invoice}"]
    assert invoice_reads == ["expand%5B0%5D=payments"], "the invoice is read with its payments"
    totals_add_up(shop)


def test_every_event_delivered_twice_and_each_again_under_another_id(shop):
    bill = plan_paid(shop, installments=2)
    deliveries = [
        (intent_succeeded, "evt_pi_1"),
        (invoice_paid, "evt_in_1"),
        (intent_succeeded, "evt_pi_1"),
        (invoice_paid, "evt_in_1"),
        (intent_succeeded, "evt_pi_2"),
        (invoice_paid, "evt_in_2"),
    ]

    answers = [deliver_it(shop, bill, event_id)[1] for deliver_it, event_id in deliveries]

    assert answers == [
        {"processed": "evt_pi_1"},
        {"processed": "evt_in_1"},
        {"duplicate": "evt_pi_1"},
        {"duplicate": "evt_in_1"},
        {"processed": "evt_pi_2"},
        {"processed": "evt_in_2"},
    ]
    assert orders(shop) == [("payment_plan", PRICE, 0, "paid")]
    assert payments(shop) == paid_by(bill)
    assert plan(shop) == ("active", 1, 2)
    totals_add_up(shop)


# --- a payment recorded as an order of its own before --------------------------------------------------------


def stray_order(shop: Shop, bill: Bill) -> tuple[int, int]:
    """What the bot recorded of a plan's payment intent before it knew the pinned API version's payment intents
    name no invoice: a checkout order of Jane's holding the intent and its charge. (order id, payment id)"""
    with shop.harness.db.session() as s:
        jane = make.customer(s, "Jane Doe", stripe_customer_id=bill.customer)
        order = make.order(s, jane, PRICE, stripe_payment_intent_id=bill.intent, stripe_charge_id=bill.charge)
        return order.id, make.order_payment(s, order).id


def test_an_order_recorded_for_an_instalment_is_taken_over_with_its_refund_by_the_invoice(shop):
    bill = plan_paid(shop, installments=3)
    stray, stray_payment = stray_order(shop, bill)
    refund = shop.stripe.v1.refunds.create(params={"payment_intent": bill.intent, "amount": 4000})
    assert deliver(shop, "evt_refund_1", "charge.refunded", bill.charge) == processed("evt_refund_1")
    assert orders(shop) == [("checkout", PRICE, 4000, "partially_refunded")]

    assert invoice_paid(shop, bill) == processed("evt_in_1")

    assert orders(shop) == [("payment_plan", PRICE, 4000, "partially_refunded")], "one order: the plan's"
    assert payments(shop) == paid_by(bill)
    with shop.harness.db.session() as s:
        assert s.get(Order, stray) is None and s.get(Payment, stray_payment) is None
        assert s.scalar(select(func.count()).select_from(OrderLine).where(OrderLine.order_id == stray)) == 0
        payment = s.scalar(select(Payment))
        recorded = s.scalar(select(Refund))
        assert (recorded.stripe_refund_id, recorded.payment_id, recorded.order_id) == (
            refund.id,
            payment.id,
            payment.order_id,
        )
        assert (payment.amount_refunded, payment.amount_refund_pending) == (4000, 0)
    assert plan(shop) == ("active", 1, 3), "the instalment is counted"
    totals_add_up(shop)

    assert invoice_paid(shop, bill, "evt_in_2") == processed("evt_in_2")
    assert orders(shop) == [("payment_plan", PRICE, 4000, "partially_refunded")], (
        "the same again changes nothing"
    )
    totals_add_up(shop)


def test_a_lost_dispute_and_a_note_of_the_taken_over_order_follow_it(shop):
    """A dispute recorded against the stray order stays on the payment, and what it lost moves to the plan's
    order (the lifetime value is the same before and after); a note written on it moves too."""
    from datetime import UTC, datetime

    from bot import order_book
    from bot.models import Dispute, Note

    bill = plan_paid(shop, installments=3)
    stray, stray_payment = stray_order(shop, bill)
    with shop.harness.db.session() as s:
        s.add(
            Note(
                target_type="order",
                target_id=stray,
                author="U0ADMIN01",
                text="asked about it",
                created_at=make.T0,
            )
        )
        lost = order_book.StripeDispute(
            "dp_lost", 2500, "usd", "lost", "fraudulent", None, datetime(2026, 1, 20, tzinfo=UTC), 2500
        )
        order_book.record_dispute(s, s.get(Payment, stray_payment), lost)

    assert invoice_paid(shop, bill) == processed("evt_in_1")

    with shop.harness.db.session() as s:
        note = s.scalar(select(Note))
        assert (note.target_type, note.target_id) == ("order", s.scalar(select(Payment.order_id))), (
            "the note too"
        )
        dispute = s.scalar(select(Dispute))
        payment = s.scalar(select(Payment))
        order = s.get(Order, payment.order_id)
        assert (dispute.payment_id, dispute.order_id, dispute.amount_lost) == (payment.id, order.id, 2500)
        assert (order.source, order.total, order.amount_lost) == ("payment_plan", PRICE, 2500)
        assert s.get(Order, stray) is None
    totals_add_up(shop)


def test_a_refund_asked_in_slack_on_the_taken_over_order_follows_it_and_is_settled_by_the_invoice(shop):
    bill = plan_paid(shop, installments=3)
    stray, stray_payment = stray_order(shop, bill)
    asked = refund_form(shop, shop.admin(), stray, "150.00")
    shop.stand_in.lose_answer("POST", "/v1/refunds", times=None)
    asked.submit(shop)
    assert "cannot tell yet" in asked.outcome(shop)
    shop.stand_in.disarm()
    with shop.harness.db.session() as s:
        assert s.get(Payment, stray_payment).amount_refund_pending == PRICE, (
            "held back while Stripe's answer is lost"
        )

    assert invoice_paid(shop, bill) == processed("evt_in_1")

    with shop.harness.db.session() as s:
        payment = s.scalar(select(Payment))
        attempt = s.scalar(select(ActionAttempt))
        assert (attempt.target_type, attempt.target_id, attempt.status, attempt.reserved) == (
            "payment",
            payment.id,
            SUCCEEDED,
            0,
        ), "the attempt follows its payment and is settled by the invoice's refunds"
        assert (payment.amount_refunded, payment.amount_refund_pending) == (PRICE, 0)
        assert s.scalar(select(func.count()).select_from(Refund).where(Refund.payment_id == payment.id)) == 1
        trail = s.execute(select(AuditEvent.target_type, AuditEvent.target_id).distinct()).all()
        assert {tuple(row) for row in trail} == {("payment", payment.id)}, "its history is the payment's"
    assert orders(shop) == [("payment_plan", PRICE, PRICE, "refunded")]
    assert plan(shop) == ("active", 1, 3)
    totals_add_up(shop)


# --- a refund the bot asked for, awaiting Stripe's answer -----------------------------------------------------


def test_a_pending_refund_of_an_instalment_is_settled_through_the_ledger_when_the_invoice_comes_again(shop):
    bill = plan_paid(shop, installments=3)
    assert invoice_paid(shop, bill) == processed("evt_in_1")
    with shop.harness.db.session() as s:
        order_id = s.scalar(select(Order.id))
    asked = refund_form(shop, shop.admin(), order_id, "150.00")
    shop.stand_in.lose_answer("POST", "/v1/refunds", times=None)
    asked.submit(shop)
    assert "cannot tell yet" in asked.outcome(shop)
    shop.stand_in.disarm()
    with shop.harness.db.session() as s:
        assert s.scalar(select(ActionAttempt.status)) == PENDING
        assert s.scalar(select(Payment.amount_refund_pending)) == PRICE

    answer = deliver(shop, "evt_in_2", "invoice.payment_succeeded", bill.invoice)

    assert answer == processed("evt_in_2"), "not refused for refunding more than was paid"
    with shop.harness.db.session() as s:
        attempt = s.scalar(select(ActionAttempt))
        assert (attempt.status, attempt.reserved) == (SUCCEEDED, 0)
        payment = s.scalar(select(Payment))
        assert (payment.amount_refunded, payment.amount_refund_pending) == (PRICE, 0)
        refund = s.scalar(select(Refund))
        assert (refund.stripe_refund_id, refund.requested_by) == (attempt.stripe_id, ADMIN)
        assert s.scalar(select(func.count()).select_from(Refund)) == 1
        outcomes = s.scalars(select(AuditEvent.outcome).order_by(AuditEvent.id)).all()
        assert outcomes[-1] == "succeeded"
    assert orders(shop) == [("payment_plan", PRICE, PRICE, "refunded")]
    totals_add_up(shop)


# --- the import -----------------------------------------------------------------------------------------------


def test_the_import_brings_a_plans_payment_in_as_its_instalment_and_a_one_off_payment_as_an_order(
    shop, local_stripe
):
    bill = plan_paid(shop, installments=3)
    card = shop.stripe.v1.customers.retrieve(bill.customer).invoice_settings.default_payment_method
    one_off = paid_payment_intent(shop.stripe, bill.customer, card, 4500)
    gateway = StripeGateway.connect(local_stripe.api_key, api_base=shop.stand_in.url, limits=LIMITS)

    summary = import_stripe(shop.harness.db, gateway, bot_made=shop.actions.settler.bot_made)

    # localstripe keeps every test's objects: the import brings them all in; Jane's are these.
    assert summary.not_imported == []
    with shop.harness.db.session() as s:
        jane = s.scalar(select(Customer.id).where(Customer.stripe_customer_id == bill.customer))
        hers = s.scalars(select(Order).where(Order.customer_id == jane).order_by(Order.id)).all()
        assert [(o.source, o.total, o.amount_refunded, o.status) for o in hers] == [
            ("payment_plan", PRICE, 0, "paid"),
            ("checkout", 4500, 0, "paid"),
        ]
        paid = [
            (p.kind, p.status, p.amount, p.stripe_payment_intent_id, p.stripe_charge_id)
            for p in s.scalars(
                select(Payment).where(Payment.order_id.in_([o.id for o in hers])).order_by(Payment.order_id)
            )
        ]
        assert paid[0] == paid_by(bill)[0] and paid[1][3] == one_off and len(paid) == 2
        installments = s.scalar(
            select(Recurring.installments_paid).where(Recurring.stripe_subscription_id == bill.subscription)
        )
        assert installments == 1
    looked_up = [lookup["payment[payment_intent]"] for lookup in invoice_payment_lookups(shop)]
    assert one_off in looked_up and bill.intent not in looked_up, (
        "the plan's intent was known from its invoice; a one-off one is looked up"
    )
    totals_add_up(shop)
