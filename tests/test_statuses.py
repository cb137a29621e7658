"""Statuses that say what Stripe says, on the card, the record and the alert; the missed-payment indicator with
what is outstanding; the created stamp; and the card on file, with its fallbacks, from Stripe to a new order."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import select

from blocks import alerts as alert_blocks
from blocks.text import DATE_AND_TIME
from bot import stripe_sync
from bot.importer import import_stripe
from bot.models import Customer, Order, Payment, Recurring, Subscription
from bot.money import Money
from bot.stripe_gateway import StripeGateway
from bot.viewmodels import MissedPayment
from bot.webhooks import StripeWebhooks
from devkit.local_stripe import LocalStripe
from runtime.jobs import run_missed_payments
from tests import factories as make
from tests import test_actions
from tests.slack_text import action_ids, text_of
from tests.stripe_support import (
    CARD_DECLINES_AFTER_ATTACH,
    CARD_SUCCESS,
    local_stripe_client,
    stripe_customer_with_card,
    stripe_subscription,
    subscription_body,
)
from tests.test_actions import finish, view_text
from tests.test_alerts import CHANNEL, client_for
from tests.test_webhooks import event, signed

acting, stripe_client = test_actions.acting, test_actions.stripe_client  # fixtures: an admin, and Stripe
T0 = make.T0
SECRET = "whsec_test_secret"


def token(moment, fmt: str = "{date_short}") -> str:
    return f"<!date^{int(moment.timestamp())}^{fmt}|"


# Each status as the card's list and the record show it ---------------------------------------------------------

TRIAL_END = T0 + timedelta(days=14)
PERIOD_END = T0 + timedelta(days=30)
STATUSES = {
    "a trial, with its end": (
        {"status": "trialing", "trial_ends_at": TRIAL_END, "next_bill_at": TRIAL_END},
        [],
        [f"Trial until {token(TRIAL_END)}"],
        ["Active", "next bill"],
    ),
    "a next bill date the bot moved (trialing in Stripe) is active": (
        {"status": "trialing", "trial_ends_at": TRIAL_END, "next_bill_at": TRIAL_END},
        [("paid", None)],
        [f"Active · next bill {token(TRIAL_END)}", "(moved)"],
        ["Trial"],
    ),
    "past due": ({"status": "past_due"}, [], ["Past due"], ["Unpaid"]),
    "unpaid: retries exhausted": (
        {"status": "unpaid"},
        [],
        ["Unpaid: Stripe stopped retrying"],
        ["next bill"],
    ),
    "paused, until when": (
        {"status": "paused", "payments_paused": True, "paused_until": PERIOD_END},
        [],
        [f"Paused · :pause_button: payments paused until {token(PERIOD_END)}"],
        [],
    ),
    "cancelling, on what date": (
        {"status": "active", "cancel_at_period_end": True, "current_period_end": PERIOD_END},
        [],
        [f"Cancelling on {token(PERIOD_END)}"],
        ["next bill"],
    ),
    "canceled for non-payment": (
        {
            "status": "canceled",
            "canceled_at": PERIOD_END,
            "cancel_reason": "payment_failed",
            "next_bill_at": None,
        },
        [("uncollectible", "Your card was declined.")],
        [f"Canceled {token(PERIOD_END)}", "> for non-payment", ":warning: 1 missed payment"],
        [],
    ),
    "canceled on request": (
        {"status": "canceled", "canceled_at": PERIOD_END, "cancel_reason": "cancellation_requested"},
        [],
        [f"Canceled {token(PERIOD_END)}"],
        ["non-payment"],
    ),
    "incomplete, with the failure reason": (
        {"status": "incomplete", "next_bill_at": None},
        [("failed", "Your card was declined.")],
        ["Incomplete: first payment failed: Your card was declined.", ":warning: 1 missed payment"],
        ["Active"],
    ),
}


@pytest.mark.parametrize("case", list(STATUSES))
def test_each_status_says_what_stripe_says_on_the_card_and_the_record(harness, case):
    fields, payments, shown, not_shown = STATUSES[case]
    with harness.db.session() as s:
        jane = make.customer(s)
        sub = make.subscription(s, jane, "Gold", **fields)
        for status, reason in payments:
            make.payment(s, sub, status, reason=reason)
        sub_id, live = sub.id, sub.is_live

    card = harness.person.command("jane")
    if not live:
        assert "No active subscriptions. Choose *All* to see the others." in text_of(card)
        harness.person.click(card, "subscriptions_all")
        card = harness.slack.message(card.ts)
    status_line = _line_after(text_of(card), "*Gold*")
    for words in shown:
        assert words in status_line, (case, status_line)
    for words in not_shown:
        assert words not in status_line, (case, status_line)

    harness.person.click(card, f"open_subscription-{sub_id}")
    record = text_of(harness.slack.message(card.ts))
    status_field = _line_after(record, "*Status*")
    for words in shown:
        assert words in status_field, (case, status_field)


def _line_after(text: str, marker: str) -> str:
    """The line after the one holding `marker`: a list item's status, or a field's value."""
    lines = text.split("\n")
    return next(lines[i + 1] for i, line in enumerate(lines) if marker in line)


def test_unpaid_is_listed_and_counted_as_active_and_incomplete_under_all(harness):
    with harness.db.session() as s:
        jane = make.customer(s)
        make.subscription(s, jane, "Gold", status="unpaid")
        silver = make.subscription(s, jane, "Silver", status="incomplete").id

    card = harness.person.command("jane")
    text = text_of(card)

    assert "*Active subscriptions*\n1" in text
    assert "*Subscriptions* · 1 active of 2" in text and "Gold" in text
    assert f"open_subscription-{silver}" not in action_ids(card), "incomplete is not listed under Active"


# The missed-payment indicator ----------------------------------------------------------------------------------


def test_missed_payments_count_whatever_the_status_with_what_is_outstanding(harness):
    with harness.db.session() as s:
        jane = make.customer(s)
        ended = make.subscription(
            s,
            jane,
            "Gold",
            status="canceled",
            canceled_at=T0,
            cancel_reason="payment_failed",
            next_bill_at=None,
        )
        make.payment(s, ended, "uncollectible", reason="Your card was declined.")
        make.payment(s, ended, "failed", reason="Your card was declined.")
        first_failed = make.subscription(s, jane, "Silver", status="incomplete", amount=1500, currency="eur")
        make.payment(s, first_failed, "failed", reason="Insufficient funds.")
        plan = make.payment_plan(s, jane, "Guitar course", amount=5000)
        make.payment(s, plan, "failed")
        paid_later = make.subscription(s, jane, "Bronze")
        make.payment(s, paid_later, "paid")
        make.payment(s, paid_later, "void")

    text = text_of(harness.person.command("jane"))

    assert (
        "*Missed payments*\n:warning: *3* (2 subscriptions, 1 payment plan) · $108.00 · €15.00 outstanding"
        in text
    ), "two of Gold's ($29.00 each) and the plan's $50.00; Silver's €15.00"


def test_an_incomplete_subscription_from_stripe_shows_its_failed_first_payment(db, slack, harness):
    with LocalStripe() as server:
        client = local_stripe_client(server)
        late, _ = stripe_customer_with_card(
            client, "late@example.com", CARD_DECLINES_AFTER_ATTACH, name="Late Payer"
        )
        with contextlib.suppress(Exception):  # localstripe answers with the decline; it stays incomplete
            stripe_subscription(client, late, 1900, "usd", "month", product_name="Community")
        import_stripe(db, StripeGateway.connect(server.api_key, api_base=server.url))
        [invoice] = client.v1.invoices.list(params={"customer": late}).data
        intent = client.v1.payment_intents.retrieve(stripe_sync.ref_id(invoice.payment_intent))
        charge = intent.latest_charge
        declined_at = (charge if hasattr(charge, "created") else client.v1.charges.retrieve(charge)).created

    with db.session() as s:
        payment = s.scalar(select(Payment))
        assert payment.status == "failed" and payment.failure_reason
        assert int(payment.failed_at.timestamp()) == declined_at, "when the card was declined"
        reason = payment.failure_reason
    card = harness.person.command("late payer")
    text = text_of(card)
    assert "*Missed payments*\n:warning: *1* (1 subscription) · $19.00 outstanding" in text
    harness.person.click(card, "subscriptions_all")
    text = text_of(harness.slack.message(card.ts))
    assert f"Incomplete: first payment failed: {reason}" in text
    with db.session() as s:
        sub_id = s.scalar(select(Subscription.id))
    harness.person.click(card, f"open_subscription-{sub_id}")
    record = text_of(harness.slack.message(card.ts))
    assert f":x: Failed: {reason}" in record and "Open" not in _line_after(record, "*Payments*")
    assert "*Missed payments*\n:warning: 1" in record


# Stripe's objects into the statuses ----------------------------------------------------------------------------


def _synced(db, obj: dict) -> Recurring:
    with db.session() as s:
        jane = make.customer(s)
        row = make.subscription(s, jane, "Gold", stripe_subscription_id=obj["id"])
        stripe_sync.apply_subscription_state(row, obj)
        s.flush()
        s.expunge(row)
        return row


def test_stripes_subscription_states_are_kept(db):
    unpaid = _synced(db, subscription_body("sub_unpaid", status="unpaid"))
    assert unpaid.status == "unpaid" and unpaid.is_live

    trial = _synced(db, subscription_body("sub_trial", status="trialing", trial_end=1_800_000_000))
    assert (trial.status, int(trial.trial_ends_at.timestamp())) == ("trialing", 1_800_000_000)
    assert trial.next_bill_at == trial.trial_ends_at

    cancelling = _synced(db, subscription_body("sub_cancelling", cancel_at=1_850_000_000))
    assert int(cancelling.cancel_at.timestamp()) == 1_850_000_000 and cancelling.cancel_reason is None

    dunned = _synced(
        db,
        subscription_body(
            "sub_dunned",
            status="canceled",
            canceled_at=1_700_000_000,
            cancellation_details={"reason": "payment_failed"},
        ),
    )
    assert (dunned.status, dunned.cancel_reason, dunned.cancel_at) == ("canceled", "payment_failed", None)

    expired = _synced(db, subscription_body("sub_expired", status="incomplete_expired"))
    assert (expired.status, expired.cancel_reason) == ("canceled", "payment_failed")


def test_a_written_off_invoice_is_a_missed_payment_of_its_own_status(db):
    with db.session() as s:
        jane = make.customer(s, stripe_customer_id="cus_w")
        make.subscription(s, jane, "Gold", stripe_subscription_id="sub_w")
    invoice = {
        "id": "in_w",
        "subscription": "sub_w",
        "status": "uncollectible",
        "amount_due": 2900,
        "currency": "usd",
        "created": 1_700_000_000,
        "attempt_count": 4,
        "status_transitions": {"finalized_at": 1_700_000_100, "marked_uncollectible_at": 1_702_000_000},
        "payment_intent": {"id": "pi_w", "last_payment_error": {"message": "Your card was declined."}},
        "charge": {"id": "ch_w", "status": "failed", "created": 1_700_003_600},
    }
    with db.session() as s:
        payment = stripe_sync.sync_invoice(s, invoice, stripe_sync.Gathered().fetch).payment
        assert (payment.status, payment.failure_reason) == ("uncollectible", "Your card was declined.")
        assert int(payment.failed_at.timestamp()) == 1_700_003_600, "the decline, not the invoice's creation"


# The missed-payment alert ----------------------------------------------------------------------------------------


def test_the_alert_says_when_the_card_was_declined_with_no_internal_id_or_doubled_punctuation(db, slack):
    declined = T0 + timedelta(hours=5, minutes=17)
    with db.session() as s:
        jane = make.customer(s)
        sub = make.subscription(s, jane, "Pro Membership", status="past_due")
        payment = make.payment(s, sub, "failed", due_at=T0, reason="Your card was declined.")
        payment.failed_at = declined
        written_off = make.subscription(s, jane, "Gold", status="unpaid")
        make.payment(s, written_off, "uncollectible", reason="Insufficient funds")
        ended = make.subscription(s, jane, "Old", status="canceled", cancel_reason="payment_failed")
        make.payment(s, ended, "uncollectible", reason="Expired card.")
        payment_ids = [str(p) for p in s.scalars(select(Payment.id))]

    result = run_missed_payments(db, client_for(slack), CHANNEL, clock=lambda: T0 + timedelta(days=3))

    assert result.announced == 2, "the canceled subscription's missed payment counts on the card, not here"
    messages = slack.visible(CHANNEL, "U0ANYONE01")
    pro = next(m for m in messages if "Pro Membership" in text_of(m))
    text = text_of(pro)
    assert (
        f"$29.00 for the subscription *Pro Membership* was declined {token(declined, DATE_AND_TIME)}" in text
    )
    assert "Jan 15, 2026 at 17:17 UTC>" in text
    assert "Your card was declined." in text and "declined.." not in text
    assert "Overdue 2 days · Subscription status: Past due" in text
    gold = text_of(next(m for m in messages if "Gold" in text_of(m)))
    assert "and written off in Stripe: Insufficient funds." in gold and "Subscription status: Unpaid" in gold
    for message in messages:
        every_text = "\n".join([message.text, text_of(message)])
        assert not re.search(r"[.!?,:;]\s*[.,:;]", re.sub(r"<[^>]*>", "", every_text)), every_text
        for payment_id in payment_ids:
            assert not re.search(rf"\bpayment {payment_id}\b", every_text)


def test_the_alert_renders_exactly():
    missed = MissedPayment(
        payment_id=468,
        customer_id=7,
        customer_name="Jane Doe",
        recurring_id=9,
        kind="subscription",
        product="Pro Membership",
        amount=Money(2900, "usd"),
        reason="Your card was declined.",
        failed_at=T0,
        payments_paused=False,
        status="past_due",
    )

    blocks = alert_blocks.missed_payment(missed, now=T0 + timedelta(days=1)).blocks

    assert blocks[:2] == [
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": ":rotating_light: *Missed payment* · *Jane Doe*\n$29.00 for the subscription *Pro Membership* "
                "was declined <!date^1768478400^{date_short} at {time}|Jan 15, 2026 at 12:00 UTC>: Your card was "
                "declined.",
                "verbatim": True,
            },
        },
        {
            "type": "context",
            "elements": [
                {"type": "mrkdwn", "text": "Overdue 1 day · Subscription status: Past due", "verbatim": True}
            ],
        },
    ]


# The record-created stamp ----------------------------------------------------------------------------------------


def test_the_record_created_stamp_shows_date_and_time_in_each_readers_zone(harness):
    with harness.db.session() as s:
        make.customer(s, created_at=T0 + timedelta(hours=3, minutes=5))

    text = text_of(harness.person.command("jane"))

    assert "Customer since <!date^1768489500^{date_short} at {time}|Jan 15, 2026 at 15:05 UTC>" in text


# The card on file and its fallbacks ------------------------------------------------------------------------------


def _customer_with_saved_card(client, email: str) -> tuple[str, str]:
    """A customer with a card attached but no default payment method: (customer id, payment method id)."""
    customer = client.v1.customers.create(params={"email": email, "name": "Jane Doe"})
    method = client.v1.payment_methods.create(
        params={
            "type": "card",
            "card": {"number": CARD_SUCCESS, "exp_month": 12, "exp_year": 2031, "cvc": "123"},
        }
    )
    client.v1.payment_methods.attach(method.id, params={"customer": customer.id})
    return customer.id, method.id


def test_the_newest_saved_card_is_the_card_on_file_and_new_order_charges_it(
    acting, stripe_client, local_stripe
):
    customer_id, method_id = _customer_with_saved_card(stripe_client, "jane.doe@example.com")
    gateway = StripeGateway.connect(local_stripe.api_key, api_base=local_stripe.url)
    webhooks = StripeWebhooks(acting.db, gateway, SECRET)
    attached = {"id": method_id, "object": "payment_method", "customer": customer_id}

    assert webhooks.handle(*signed(event("evt_attached", "payment_method.attached", attached))) == (
        200,
        {"processed": "evt_attached"},
    )

    with acting.db.session() as s:
        jane = s.scalar(select(Customer).where(Customer.stripe_customer_id == customer_id))
        assert (jane.default_payment_method_id, jane.card_source, jane.card_last4) == (
            method_id,
            "newest",
            "4242",
        )
    card = acting.person.command("jane doe")
    assert "Visa •••• 4242 · expires 12/2031\nnewest saved card" in text_of(card)

    acting.person.click(card, "new_order")
    form = acting.slack.latest_view()
    acting.person.submit(form, {"description": "Extra coaching call", "amount": "90"})
    acting.person.submit(acting.slack.views[form["id"]])
    assert "Charged $90.00" in view_text(finish(acting, form["id"]))
    with acting.db.session() as s:
        intent_id = s.scalar(
            select(Payment.stripe_payment_intent_id)
            .join(Order, Order.id == Payment.order_id)
            .where(Order.source == "internal")
        )
    assert (
        stripe_sync.ref_id(stripe_client.v1.payment_intents.retrieve(intent_id).payment_method) == method_id
    )


class WithSubscriptionCard(StripeGateway):
    """localstripe's subscriptions have no `default_payment_method`: this one reads them as Stripe sends them
    for a subscription created with one."""

    def __init__(self, inner: StripeGateway, method_id: str) -> None:
        super().__init__(inner._client)
        self.method_id = method_id

    def retrieve(self, kind, object_id):
        obj = super().retrieve(kind, object_id)
        return {**obj, "default_payment_method": self.method_id} if kind == "subscription" else obj


def test_a_subscriptions_card_comes_before_the_newest_saved_card(harness, local_stripe):
    client = local_stripe_client(local_stripe)
    customer_id, first = _customer_with_saved_card(client, "jane.doe@example.com")
    client.v1.customers.update(customer_id, params={"invoice_settings": {"default_payment_method": first}})
    subscription_id = stripe_subscription(client, customer_id, 900, "usd", "month", product_name="Gold")
    client.v1.customers.update(customer_id, params={"invoice_settings": {"default_payment_method": ""}})
    newer = client.v1.payment_methods.create(
        params={
            "type": "card",
            "card": {"number": CARD_SUCCESS, "exp_month": 1, "exp_year": 2032, "cvc": "123"},
        }
    )
    client.v1.payment_methods.attach(newer.id, params={"customer": customer_id})
    plain = StripeGateway.connect(local_stripe.api_key, api_base=local_stripe.url)
    webhooks = StripeWebhooks(harness.db, WithSubscriptionCard(plain, first), SECRET)
    updated = {"id": subscription_id, "object": "subscription"}

    assert webhooks.handle(*signed(event("evt_sub", "customer.subscription.updated", updated)))[0] == 200

    with harness.db.session() as s:
        jane = s.scalar(select(Customer).where(Customer.stripe_customer_id == customer_id))
        assert (jane.default_payment_method_id, jane.card_source) == (first, "subscription")
    assert "expires 12/2031\ncard of the *Gold* subscription" in text_of(harness.person.command("jane"))

    # Stripe's own default for the customer wins over both.
    client.v1.customers.update(customer_id, params={"invoice_settings": {"default_payment_method": newer.id}})
    customer_updated = {"id": customer_id, "object": "customer"}
    assert webhooks.handle(*signed(event("evt_cus", "customer.updated", customer_updated)))[0] == 200
    assert "expires 01/2032\ndefault card" in text_of(harness.person.command("jane"))


@pytest.fixture
def saved_card_account() -> Iterator[dict]:
    with LocalStripe() as server:
        client = local_stripe_client(server)
        customer_id, method_id = _customer_with_saved_card(client, "saved@example.com")
        yield {"server": server, "customer": customer_id, "method": method_id}


def test_the_import_falls_back_on_the_newest_saved_card(db, saved_card_account):
    server = saved_card_account["server"]
    import_stripe(db, StripeGateway.connect(server.api_key, api_base=server.url))

    with db.session() as s:
        jane = s.scalar(select(Customer))
        assert (jane.default_payment_method_id, jane.card_source, jane.card_last4) == (
            saved_card_account["method"],
            "newest",
            "4242",
        )


def test_a_cancel_at_the_period_end_is_not_an_end_until_it_ends():
    """Stripe sets `canceled_at` when the cancel is asked for; the subscription ends at `ended_at`."""
    from bot.models import Subscription as Row

    asked, ends = 1_780_000_000, 1_782_000_000
    row = Row(status="active", cancel_at_period_end=False)
    cancelling = {"status": "active", "cancel_at_period_end": True, "canceled_at": asked, "cancel_at": ends}
    stripe_sync.apply_subscription_state(row, cancelling)
    assert (row.status, row.canceled_at, row.cancel_at.timestamp()) == ("active", None, ends)

    stripe_sync.apply_subscription_state(row, {**cancelling, "status": "canceled", "ended_at": ends})
    assert (row.status, row.canceled_at.timestamp()) == ("canceled", ends), "it ended when it ended"
