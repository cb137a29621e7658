"""The local Stripe the shell starts (localstripe as devkit.localstripe_server patches it) answers each call the bot
makes as Stripe documents it, through the bot's own gateway; what it cannot do is a plain 4xx, never "cannot tell"."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import stripe

from bot.stripe_gateway import StripeGateway, StripeRejected
from devkit.local_stripe import LocalStripe
from tests.stripe_support import (
    CARD_DECLINES_AFTER_ATTACH,
    paid_payment_intent,
    stripe_customer_with_card,
    stripe_subscription,
)


@pytest.fixture(scope="module")
def emulator() -> Iterator[LocalStripe]:
    """As the shell runs it: with Stripe's idempotency keys."""
    with LocalStripe(idempotency=True) as server:
        yield server


@pytest.fixture
def client(emulator) -> stripe.StripeClient:
    return stripe.StripeClient(emulator.api_key, base_addresses={"api": emulator.url}, max_network_retries=0)


@pytest.fixture
def gateway(emulator) -> StripeGateway:
    return StripeGateway.connect(emulator.api_key, api_base=emulator.url)


@pytest.fixture
def card(client) -> tuple[str, str]:
    return stripe_customer_with_card(client, f"{uuid.uuid4().hex[:8]}@example.com")


@pytest.fixture
def subscription(client, card) -> str:
    return stripe_subscription(client, card[0], 2900, "usd", "month")


def key() -> str:
    return uuid.uuid4().hex


def in_days(days: int) -> datetime:
    return datetime.now(UTC).replace(microsecond=0) + timedelta(days=days)


# --- refunds ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("reason", ["requested_by_customer", "duplicate", "fraudulent", None])
def test_a_refund_takes_each_of_stripes_reasons_and_keeps_it_with_its_metadata(client, gateway, card, reason):
    payment = paid_payment_intent(client, *card, 5000)

    made = gateway.refund(payment, 1250, reason=reason, metadata={"action_key": "a1"}, idempotency_key=key())

    refund = client.v1.refunds.retrieve(made.id)
    assert (made.status, made.amount, made.currency) == ("succeeded", 1250, "usd")
    assert (refund.reason, refund.metadata.to_dict(), refund.payment_intent) == (
        reason,
        {"action_key": "a1"},
        payment,
    )
    assert gateway.find_refund(payment, "a1") == made


def test_a_refund_with_a_reason_stripe_does_not_know_or_beyond_what_is_left_is_refused(client, gateway, card):
    payment = paid_payment_intent(client, *card, 1000)

    with pytest.raises(stripe.InvalidRequestError) as unknown:
        client.v1.refunds.create(params={"payment_intent": payment, "reason": "changed_mind"})
    gateway.refund(payment, 600, reason=None, metadata={}, idempotency_key=key())
    with pytest.raises(StripeRejected) as too_much:
        gateway.refund(payment, 500, reason=None, metadata={}, idempotency_key=key())
    gateway.refund(payment, 400, reason=None, metadata={}, idempotency_key=key())
    with pytest.raises(StripeRejected) as nothing_left:
        gateway.refund(payment, 1, reason=None, metadata={}, idempotency_key=key())

    assert unknown.value.http_status == 400 and unknown.value.param == "reason"
    assert "more than is left to refund" in too_much.value.user_message and not too_much.value.outcome_unknown
    assert nothing_left.value.code == "charge_already_refunded"


# --- subscriptions ------------------------------------------------------------------------------------------------


def test_pausing_payments_keeps_the_status_and_resuming_clears_the_pause(gateway, subscription):
    resumes = in_days(20)

    paused = gateway.pause_payments(subscription, resumes_at=resumes, idempotency_key=key())
    resumed = gateway.resume_payments(subscription, idempotency_key=key())
    until_resumed = gateway.pause_payments(subscription, resumes_at=None, idempotency_key=key())

    assert paused["status"] == "active", "Stripe: pausing collection does not change the status"
    assert paused["pause_collection"] == {"behavior": "void", "resumes_at": int(resumes.timestamp())}
    assert resumed["pause_collection"] is None
    assert until_resumed["pause_collection"] == {"behavior": "void", "resumes_at": None}


@pytest.mark.parametrize("behavior", ["keep_as_draft", "mark_uncollectible", "void"])
def test_each_pause_behavior_stripe_documents_is_taken(client, subscription, behavior):
    answer = client.v1.subscriptions.update(subscription, params={"pause_collection": {"behavior": behavior}})
    assert answer.pause_collection.behavior == behavior


def test_a_pause_stripe_would_refuse_is_refused(client, subscription):
    for pause in ({"behavior": "forever"}, {"behavior": "void", "resumes_at": int(time.time()) - 60}):
        with pytest.raises(stripe.InvalidRequestError) as refused:
            client.v1.subscriptions.update(subscription, params={"pause_collection": pause})
        assert refused.value.param.startswith("pause_collection[")
    assert client.v1.subscriptions.retrieve(subscription).pause_collection is None


def test_moving_the_next_bill_date_is_a_trial_until_then_and_now_ends_it(client, gateway, subscription):
    when = in_days(40)

    moved = gateway.move_next_bill_date(subscription, when, idempotency_key=key())
    item = moved["items"]["data"][0]
    ended = client.v1.subscriptions.update(subscription, params={"trial_end": "now"})

    at = int(when.timestamp())
    assert (moved["status"], moved["trial_end"], moved["billing_cycle_anchor"]) == ("trialing", at, at)
    assert moved["current_period_end"] == item["current_period_end"] == at, "billed next on that date"
    assert moved["trial_start"] <= time.time() and item["current_period_start"] <= time.time()
    assert ended.status == "active" and abs(ended.trial_end - time.time()) < 60
    assert ended.current_period_end > at - 40 * 86_400, "a new period starts now"


def test_a_next_bill_date_in_the_past_is_refused(gateway, subscription):
    with pytest.raises(StripeRejected) as refused:
        gateway.move_next_bill_date(subscription, in_days(-1), idempotency_key=key())
    assert "in the future" in refused.value.user_message and not refused.value.outcome_unknown


def test_cancel_at_the_period_end_then_undo_then_cancel_now(gateway, subscription):
    ending = gateway.cancel_subscription(subscription, at_period_end=True, idempotency_key=key())
    undone = gateway.reactivate(subscription, idempotency_key=key())
    canceled = gateway.cancel_subscription(subscription, at_period_end=False, idempotency_key=key())

    assert ending["status"] == "active" and ending["cancel_at_period_end"] is True
    assert ending["cancel_at"] == ending["current_period_end"] > time.time()
    assert ending["canceled_at"] <= time.time(), "Stripe: the time of the request"
    assert (undone["cancel_at_period_end"], undone["cancel_at"], undone["canceled_at"]) == (False, None, None)
    assert canceled["status"] == "canceled" and canceled["canceled_at"] == canceled["ended_at"]
    with pytest.raises(StripeRejected) as refused:
        gateway.pause_payments(subscription, resumes_at=None, idempotency_key=key())
    assert "canceled subscription" in refused.value.user_message and not refused.value.outcome_unknown


def test_the_billing_period_counts_whole_intervals_from_the_anchor(client, card):
    product = client.v1.products.create(params={"name": "Quarterly box"})
    plan = client.v1.plans.create(
        params={
            "amount": 6000,
            "currency": "usd",
            "interval": "month",
            "interval_count": 3,
            "product": product.id,
        }
    )
    anchor = int(in_days(10).timestamp())
    made = client.v1.subscriptions.create(
        params={"customer": card[0], "items": [{"plan": plan.id}], "billing_cycle_anchor": anchor}
    )
    moved = client.v1.subscriptions.update(made.id, params={"trial_end": int(in_days(5).timestamp())})
    ended = client.v1.subscriptions.update(made.id, params={"trial_end": "now"})

    assert made.current_period_end == anchor, "the first period runs up to the anchor"
    assert moved.current_period_end == moved.trial_end
    assert 89 * 86_400 <= ended.current_period_end - ended.current_period_start <= 92 * 86_400, "three months"


def test_an_invoice_has_its_payment_intent_as_its_payments_even_expanded(client, gateway, subscription):
    invoice = client.v1.invoices.list(params={"subscription": subscription}).data[0]

    read = gateway.retrieve("invoice", invoice.id)  # the gateway expands `payments`, as Stripe needs it to
    listed = client.v1.invoices.list(params={"subscription": subscription, "expand": ["data.payments"]})

    (paid,) = read["payments"]["data"]
    assert (paid["object"], paid["invoice"], paid["status"], paid["amount_paid"]) == (
        "invoice_payment",
        invoice.id,
        "paid",
        2900,
    )
    assert paid["payment"] == {"type": "payment_intent", "payment_intent": invoice.payment_intent}
    assert listed.data[0].to_dict()["payments"]["data"] == [paid]


# --- off-session charges and idempotency --------------------------------------------------------------------------


def test_an_off_session_charge_sent_again_under_its_key_is_replayed_not_made_twice(client, gateway, card):
    customer, method = card
    sent = key()

    first = gateway.charge_off_session(
        customer, method, 4500, "usd", metadata={"action_key": sent}, idempotency_key=sent
    )
    again = gateway.charge_off_session(
        customer, method, 4500, "usd", metadata={"action_key": sent}, idempotency_key=sent
    )
    with pytest.raises(StripeRejected) as other:
        gateway.charge_off_session(customer, method, 9900, "usd", metadata={}, idempotency_key=sent)

    assert first == again and first.status == "succeeded" and first.card_last4 == "4242"
    intents = client.v1.payment_intents.list(params={"customer": customer}).data
    assert [intent.id for intent in intents] == [first.payment_intent_id]
    assert other.value.code == "idempotency_error", "the key with other parameters is another request"
    found = gateway.find_charge(customer, sent)
    assert found is not None and found.payment_intent_id == first.payment_intent_id


def test_a_declined_charge_is_answered_the_same_when_sent_again(client, gateway):
    customer, method = stripe_customer_with_card(client, "declines@example.com", CARD_DECLINES_AFTER_ATTACH)
    sent = key()
    options = {"idempotency_key": sent}
    params = {"amount": 700, "currency": "usd", "customer": customer, "payment_method": method}
    params |= {"confirm": True, "off_session": True}

    answers = []
    for _ in range(2):
        with pytest.raises(stripe.CardError) as declined:
            client.v1.payment_intents.create(params=params, options=options)
        answers.append(declined.value)

    assert answers[0].code == answers[1].code == "card_declined"
    assert answers[1].headers.get("idempotent-replayed") == "true"
    assert len(client.v1.payment_intents.list(params={"customer": customer}).data) == 1


# --- what it cannot do, and where it listens ----------------------------------------------------------------------


def test_what_the_emulator_cannot_do_is_a_refusal_that_says_so_not_a_server_error(
    client, gateway, subscription
):
    with pytest.raises(stripe.InvalidRequestError) as unknown:
        client.v1.subscriptions.update(subscription, params={"description": "Gift"})
    with pytest.raises(StripeRejected) as via_the_bot:
        gateway.cancel_subscription("sub_" + "x" * 14, at_period_end=True, idempotency_key=key())

    assert unknown.value.http_status == 400
    assert "local Stripe emulator (localstripe) cannot do this" in unknown.value.user_message
    assert not via_the_bot.value.outcome_unknown


def test_it_listens_on_this_machine_only(emulator):
    with socket.create_connection(("127.0.0.1", emulator.port), timeout=2):
        pass
    if socket.has_ipv6:
        with pytest.raises(OSError), socket.create_connection(("::1", emulator.port), timeout=2):
            pass
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("10.255.255.255", 1))  # no packet is sent: this only picks the outward interface
        outward = probe.getsockname()[0]
    if not outward.startswith("127."):
        with pytest.raises(OSError), socket.create_connection((outward, emulator.port), timeout=2):
            pass


@pytest.mark.parametrize("on_a_date", [False, True])
def test_undo_cancel_takes_back_a_cancel_at_the_period_end_either_way(gateway, subscription, on_a_date):
    """Undo cancel: `cancel_at_period_end=false`, or `cancel_at` unset (""); either clears what the cancel set."""
    gateway.cancel_subscription(subscription, at_period_end=True, idempotency_key=key())

    undone = gateway.undo_cancel(subscription, on_a_date=on_a_date, idempotency_key=key())

    assert (undone["status"], undone["cancel_at_period_end"], undone["cancel_at"], undone["canceled_at"]) == (
        "active",
        False,
        None,
        None,
    )
