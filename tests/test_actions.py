"""Acting on records through Slack, end to end: the button, the modal, the confirmation, Stripe (localstripe), our
records, the card updated in place, and the audit trail; and the rules every action keeps."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from bot.models import ActionAttempt, AuditEvent, Customer, Order, Payment, Refund
from bot.stripe_gateway import StripeGateway
from devkit.local_slack import SlackPerson, wsgi_transport
from runtime.app import create_app
from runtime.web import WebApp
from tests import factories as make
from tests.conftest import SIGNING_SECRET, Harness, settings_for
from tests.slack_text import buttons, text_of
from tests.stripe_support import (
    CARD_SUCCESS,
    local_stripe_client,
    paid_payment_intent,
    stripe_customer_with_card,
    stripe_subscription,
)

ADMIN = "U0ADMIN01"
AUDIT_CHANNEL = "C0AUDIT01"


@pytest.fixture
def acting(db, slack, local_stripe) -> Harness:
    settings = settings_for(
        db, slack, payment_admins=frozenset({ADMIN, "U0ADMIN02"}), audit_channel=AUDIT_CHANNEL
    )
    gateway = StripeGateway.connect(local_stripe.api_key, api_base=local_stripe.url)
    web = WebApp(create_app(settings, db, gateway=gateway), db)
    return Harness(
        settings, db, slack, web, SlackPerson(slack, wsgi_transport(web), SIGNING_SECRET, user_id=ADMIN)
    )


@pytest.fixture
def stripe_client(local_stripe):
    return local_stripe_client(local_stripe)


def jane_in_stripe(harness: Harness, client, card: str = CARD_SUCCESS, paid: int = 5000):
    """Jane Doe with a card in Stripe and one paid checkout order; returns (customer id, order id)."""
    customer_id, payment_method = stripe_customer_with_card(
        client, "jane.doe@example.com", card, name="Jane Doe"
    )
    with harness.db.session() as s:
        jane = make.customer(
            s, "Jane Doe", stripe_customer_id=customer_id, default_payment_method_id=payment_method
        )
        order_id = None
        if paid:
            intent = paid_payment_intent(client, customer_id, payment_method, paid)
            order_id = make.order(s, jane, paid, stripe_payment_intent_id=intent).id
        return jane.id, order_id


def open_order(harness: Harness, order_id: int):
    card = harness.person.command("jane doe")
    harness.person.click(card, f"open_order-{order_id}")
    return harness.slack.message(card.ts)


def finish(harness: Harness, view_id: str) -> dict:
    """Wait for the lazy listener to put its outcome into the modal."""
    harness.slack.wait_for(lambda: harness.slack.views[view_id].get("callback_id") == "result")
    return harness.slack.views[view_id]


def view_text(view: dict) -> str:
    return "\n".join(b["text"]["text"] for b in view["blocks"] if b.get("type") == "section")


def test_refund_part_of_an_order_end_to_end(acting, stripe_client):
    _, order_id = jane_in_stripe(acting, stripe_client)
    record = open_order(acting, order_id)

    acting.person.click(record, f"refund_order-{order_id}")
    form = acting.slack.latest_view()
    assert form["callback_id"] == "refund_form"
    assert "$50.00 refundable" in view_text(form)

    # localstripe refuses refund reasons; the reason Stripe gets is checked in test_stripe_gateway.
    answer = acting.person.submit(form, {"amount": "12.50", "reason": "other", "note": "Charged twice"})
    assert answer["response_action"] == "update"
    confirm = acting.slack.views[form["id"]]
    assert "Refund *$12.50 USD* of order" in view_text(confirm) and "*Jane Doe*" in view_text(confirm)
    assert confirm["submit"]["text"] == "Refund $12.50"

    acting.person.submit(confirm)
    outcome = finish(acting, form["id"])

    assert "Refunded $12.50 of order" in view_text(outcome)
    with acting.db.session() as s:
        order = s.get(Order, order_id)
        refund = s.scalar(select(Refund).where(Refund.order_id == order_id))
        assert (order.amount_refunded, make.order_payment(s, order).amount_refund_pending, order.status) == (
            1250,
            0,
            "partially_refunded",
        )
        assert (refund.amount, refund.reason, refund.note, refund.requested_by) == (
            1250,
            None,
            "Charged twice",
            ADMIN,
        )
        intent = make.order_payment(s, order).stripe_payment_intent_id
    refunds = stripe_client.v1.refunds.list(params={"payment_intent": intent}).data
    assert [r.amount for r in refunds] == [1250], "Stripe refunded exactly once"
    updated = text_of(acting.slack.message(record.ts))
    assert f"<@{ADMIN}> refunded $12.50 of order" in updated, "the record says what happened and who did it"
    assert "*Still refundable*\n$37.50" in updated
    audit = [
        c for c in acting.slack.calls if c.method == "chat.postMessage" and c.args["channel"] == AUDIT_CHANNEL
    ]
    assert len(audit) == 1 and "succeeded" in audit[0].args["text"]


@pytest.mark.parametrize(
    ("typed", "error"),
    [
        ("0", "above zero"),
        ("-5", "positive"),
        ("50.01", "At most $50.00"),
        ("12.345", "2 decimal places"),
        ("twelve", "not an amount"),
    ],
)
def test_a_bad_amount_is_an_inline_error_and_changes_nothing(acting, stripe_client, typed, error):
    _, order_id = jane_in_stripe(acting, stripe_client)
    record = open_order(acting, order_id)
    acting.person.click(record, f"refund_order-{order_id}")
    form = acting.slack.latest_view()

    answer = acting.person.submit(form, {"amount": typed})

    assert answer["response_action"] == "errors" and error in answer["errors"]["amount"]
    with acting.db.session() as s:
        assert s.scalar(select(func.count()).select_from(Refund)) == 0
        assert s.scalar(select(func.count()).select_from(ActionAttempt)) == 0


def test_a_double_submit_refunds_once(acting, stripe_client):
    _, order_id = jane_in_stripe(acting, stripe_client)
    record = open_order(acting, order_id)
    acting.person.click(record, f"refund_order-{order_id}")
    form = acting.slack.latest_view()
    acting.person.submit(form, {"amount": "10.00", "reason": "other"})
    confirm = acting.slack.views[form["id"]]

    acting.person.submit(confirm)
    finish(acting, form["id"])
    acting.slack.replace_view(
        form["id"], confirm
    )  # the same confirmation submitted again (a retry, a double click)
    acting.person.submit(confirm)
    second = finish(acting, form["id"])

    assert "already done" in view_text(second)
    with acting.db.session() as s:
        assert s.scalar(select(Order.amount_refunded).where(Order.id == order_id)) == 1000
        assert s.scalar(select(func.count()).select_from(Refund)) == 1


def test_two_people_confirming_the_same_refund_at_once_refund_once(acting, stripe_client):
    _, order_id = jane_in_stripe(acting, stripe_client)
    colleague = acting.someone_else("U0ADMIN02")
    confirms = []
    for person in (acting.person, colleague):
        record = open_order(acting, order_id)
        person.click(record, f"refund_order-{order_id}")
        form = acting.slack.latest_view()
        person.submit(form, {"amount": "20.00", "reason": "other"})
        confirms.append((person, acting.slack.views[form["id"]]))

    threads = [threading.Thread(target=person.submit, args=(view,)) for person, view in confirms]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for _, view in confirms:
        finish(acting, view["id"])

    with acting.db.session() as s:
        assert s.scalar(select(Order.amount_refunded).where(Order.id == order_id)) == 2000
        assert s.scalar(select(func.count()).select_from(Refund)) == 1
        intent = s.scalar(select(Payment.stripe_payment_intent_id).where(Payment.order_id == order_id))
    assert len(stripe_client.v1.refunds.list(params={"payment_intent": intent}).data) == 1


def test_someone_not_allowed_gets_a_clear_no_and_nothing_opens(acting, stripe_client):
    _, order_id = jane_in_stripe(acting, stripe_client)
    outsider = acting.someone_else("U0SUPPORT9")
    card = outsider.command("jane doe")
    outsider.click(card, f"open_order-{order_id}")
    record = acting.slack.message(card.ts)

    outsider.click(record, f"refund_order-{order_id}")

    assert acting.slack.opened == [], "no modal"
    assert "Only payment admins" in text_of(outsider.visible()[-1])
    with acting.db.session() as s:
        event = s.scalar(select(AuditEvent))
        assert (event.actor, event.action, event.outcome) == ("U0SUPPORT9", "refund", "refused")


def test_a_stripe_refusal_changes_nothing_and_says_why(acting, stripe_client):
    with acting.db.session() as s:
        jane = make.customer(s)
        order_id = make.order(s, jane, 5000, stripe_payment_intent_id="pi_doesNotExist").id
    record = open_order(acting, order_id)
    acting.person.click(record, f"refund_order-{order_id}")
    form = acting.slack.latest_view()
    acting.person.submit(form, {"amount": "5.00", "reason": "other"})
    acting.person.submit(acting.slack.views[form["id"]])

    outcome = finish(acting, form["id"])

    assert ":x:" in view_text(outcome) and "Stripe" in view_text(outcome)
    with acting.db.session() as s:
        order = s.get(Order, order_id)
        assert (order.amount_refunded, make.order_payment(s, order).amount_refund_pending, order.status) == (
            0,
            0,
            "paid",
        )
        assert s.scalar(select(func.count()).select_from(Refund)) == 0
        assert s.scalar(select(AuditEvent.outcome).order_by(AuditEvent.id.desc()).limit(1)) == "failed"


def test_new_order_charges_the_card_on_file_and_appears_on_the_record(acting, stripe_client):
    jane_id, _ = jane_in_stripe(acting, stripe_client, paid=0)
    card = acting.person.command("jane doe")
    assert "*Orders*\n0" in text_of(card)

    acting.person.click(card, "new_order")
    form = acting.slack.latest_view()
    answer = acting.person.submit(
        form, {"description": "Extra coaching call", "amount": "90", "quantity": "2"}
    )
    assert answer["response_action"] == "update"
    confirm = acting.slack.views[form["id"]]
    assert "Charge *$180.00 USD* to *Jane Doe*" in view_text(confirm)
    acting.person.submit(confirm)
    outcome = finish(acting, form["id"])

    assert "Charged $180.00" in view_text(outcome)
    updated = text_of(acting.slack.message(card.ts))
    assert "*Orders*\n1" in updated and "*Lifetime value*\n$180.00" in updated
    assert "Extra coaching call" in updated and "Internal order" in updated
    with acting.db.session() as s:
        order = s.scalar(select(Order).where(Order.customer_id == jane_id))
        assert (order.total, order.source, order.status) == (18000, "internal", "paid")
        intent = stripe_client.v1.payment_intents.retrieve(
            make.order_payment(s, order).stripe_payment_intent_id
        )
    assert (intent.amount, intent.status) == (18000, "succeeded")


def test_a_declined_card_records_nothing_and_says_so(acting, stripe_client):
    jane_id, _ = jane_in_stripe(acting, stripe_client, card="4000000000000341", paid=0)
    card = acting.person.command("jane doe")
    acting.person.click(card, "new_order")
    form = acting.slack.latest_view()
    acting.person.submit(form, {"description": "Workshop seat", "amount": "75"})
    acting.person.submit(acting.slack.views[form["id"]])

    outcome = finish(acting, form["id"])

    assert "declined" in view_text(outcome).lower()
    with acting.db.session() as s:
        assert s.scalar(select(func.count()).select_from(Order).where(Order.customer_id == jane_id)) == 0


def test_no_card_on_file_is_explained_before_any_form(acting):
    with acting.db.session() as s:
        make.customer(s, "Jane Doe", card_last4=None, card_brand=None)
    card = acting.person.command("jane doe")

    acting.person.click(card, "new_order")

    assert acting.slack.opened == []
    assert "no card on file" in text_of(acting.person.visible()[-1])


def test_cancel_a_subscription_now(acting, stripe_client):
    customer_id, _ = stripe_customer_with_card(stripe_client, "jane.doe@example.com", name="Jane Doe")
    subscription_id = stripe_subscription(stripe_client, customer_id, 2900, "usd", "month")
    with acting.db.session() as s:
        jane = make.customer(s, stripe_customer_id=customer_id)
        sub_id = make.subscription(s, jane, stripe_subscription_id=subscription_id).id
    card = acting.person.command("jane doe")
    acting.person.click(card, f"open_subscription-{sub_id}")
    record = acting.slack.message(card.ts)
    assert "Pause payments" in buttons(record) and "Cancel subscription" in buttons(record)

    acting.person.click(record, f"cancel_recurring-{sub_id}")
    form = acting.slack.latest_view()
    acting.person.submit(form, {"when": "now"})
    outcome = finish(acting, form["id"])

    assert "Canceled Pro Membership (Jane Doe) now" in view_text(outcome)
    assert stripe_client.v1.subscriptions.retrieve(subscription_id).status == "canceled"
    updated = acting.slack.message(card.ts)
    assert "*Status*\nCanceled" in text_of(updated)
    assert "Cancel subscription" not in buttons(updated), "nothing left to do to an ended subscription"


def test_change_email_updates_our_record_and_stripe(acting, stripe_client):
    jane_id, _ = jane_in_stripe(acting, stripe_client, paid=0)
    card = acting.person.command("jane doe")
    acting.person.click(card, "change_email")
    form = acting.slack.latest_view()

    assert acting.person.submit(form, {"email": "not an email"})["response_action"] == "errors"
    acting.person.submit(form, {"email": "jane@newmail.example"})
    outcome = finish(acting, form["id"])

    assert "no CRMs are connected" in view_text(outcome)
    with acting.db.session() as s:
        customer = s.get(Customer, jane_id)
        assert customer.email == "jane@newmail.example"
        stripe_id = customer.stripe_customer_id
    assert stripe_client.v1.customers.retrieve(stripe_id).email == "jane@newmail.example"
    assert "jane@newmail.example" in text_of(acting.slack.message(card.ts))
    assert "Jane Doe" in text_of(acting.person.command("jane@newmail.example")), "found by the new email"


def test_new_order_for_a_catalogue_product_at_its_price(acting, stripe_client):
    from bot.models import Product

    jane_in_stripe(acting, stripe_client, paid=0)
    with acting.db.session() as s:
        s.add(Product(name="Printed workbook", unit_amount=2500, currency="usd"))
        s.add(Product(name="Printed workbook", unit_amount=2300, currency="eur"))
    card = acting.person.command("jane doe")
    acting.person.click(card, "new_order")
    form = acting.slack.latest_view()
    options = [
        o["text"]["text"]
        for b in form["blocks"]
        if b.get("block_id") == "product"
        for o in b["element"]["options"]
    ]
    assert options == ["Printed workbook · $25.00"], "the customer's currency only"

    acting.person.submit(form, {"product": "Printed workbook · $25.00", "quantity": "3"})
    confirm = acting.slack.views[form["id"]]
    assert "Charge *$75.00 USD*" in view_text(confirm) and "3 × Printed workbook" in view_text(confirm)
    acting.person.submit(confirm)

    assert "Charged $75.00" in view_text(finish(acting, form["id"]))


def test_a_card_that_needs_the_customer_to_authenticate_is_explained(acting, stripe_client):
    jane_id, _ = jane_in_stripe(acting, stripe_client, card="4000002760003184", paid=0)
    card = acting.person.command("jane doe")
    acting.person.click(card, "new_order")
    form = acting.slack.latest_view()
    acting.person.submit(form, {"description": "Workshop seat", "amount": "75"})
    acting.person.submit(acting.slack.views[form["id"]])

    outcome = view_text(finish(acting, form["id"]))

    assert "confirm" in outcome.lower() and "bank" in outcome.lower()
    with acting.db.session() as s:
        assert s.scalar(select(func.count()).select_from(Order).where(Order.customer_id == jane_id)) == 0


def test_refund_one_of_a_subscriptions_payments(acting, stripe_client):
    customer_id, method = stripe_customer_with_card(stripe_client, "jane.doe@example.com", name="Jane Doe")
    subscription_id = stripe_subscription(stripe_client, customer_id, 2900, "usd", "month")
    with acting.db.session() as s:
        jane = make.customer(s, stripe_customer_id=customer_id, default_payment_method_id=method)
        sub = make.subscription(s, jane, stripe_subscription_id=subscription_id)
        payments = []
        for month in range(2):
            intent = paid_payment_intent(stripe_client, customer_id, method, 2900)
            payments.append(
                make.payment(
                    s, sub, due_at=make.T0 + timedelta(days=30 * month), stripe_payment_intent_id=intent
                )
            )
        sub_id, older, newer = sub.id, payments[0].id, payments[1].id
        number = s.get(Order, payments[0].order_id).number
    card = acting.person.command("jane doe")
    acting.person.click(card, f"open_subscription-{sub_id}")
    record = acting.slack.message(card.ts)

    acting.person.click(record, f"refund_payment-{sub_id}")
    form = acting.slack.latest_view()
    assert acting.person.submit(form, {"reason": "other"})["errors"] == {
        "order": "Choose the payment to refund."
    }
    acting.person.submit(form, {"order": str(older), "reason": "other"})
    confirm = view_text(acting.slack.views[form["id"]])
    assert f"$29.00 USD* of the renewal of 2026-01-15 (order #{number})" in confirm
    acting.person.submit(acting.slack.views[form["id"]])

    assert "Refunded $29.00" in view_text(finish(acting, form["id"]))
    with acting.db.session() as s:
        assert s.get(Payment, older).amount_refunded == 2900
        assert s.get(Payment, newer).amount_refunded == 0
        order = s.scalar(select(Order).where(Order.recurring_id == sub_id))
        assert (order.total, order.amount_refunded, order.status) == (5800, 2900, "partially_refunded")
    assert "Refunded $29.00" not in text_of(acting.slack.message(card.ts))
    assert f"<@{ADMIN}> refunded $29.00" in text_of(acting.slack.message(card.ts)), (
        "the subscription record updated"
    )


def test_cancel_at_the_end_of_the_period(acting, stripe_client):
    customer_id, _ = stripe_customer_with_card(stripe_client, "jane.doe@example.com", name="Jane Doe")
    subscription_id = stripe_subscription(stripe_client, customer_id, 2900, "usd", "month")
    with acting.db.session() as s:
        sub_id = make.subscription(
            s, make.customer(s, stripe_customer_id=customer_id), stripe_subscription_id=subscription_id
        ).id
    card = acting.person.command("jane doe")
    acting.person.click(card, f"open_subscription-{sub_id}")
    acting.person.click(acting.slack.message(card.ts), f"cancel_recurring-{sub_id}")
    form = acting.slack.latest_view()

    acting.person.submit(form)  # the default: at the end of the period

    assert "at the end of the period" in view_text(finish(acting, form["id"]))
    assert stripe_client.v1.subscriptions.retrieve(subscription_id).cancel_at_period_end is True
    assert "Cancelling on <!date^" in text_of(acting.slack.message(card.ts))


def test_with_no_payment_admins_nobody_may_act(db, slack, local_stripe):
    settings = settings_for(db, slack)  # PAYMENT_ADMINS empty
    web = WebApp(create_app(settings, db), db)
    person = SlackPerson(slack, wsgi_transport(web), SIGNING_SECRET, user_id=ADMIN)
    with db.session() as s:
        make.customer(s)
    card = person.command("jane doe")

    person.click(card, "change_email")

    assert "No one is a payment admin yet" in text_of(person.visible()[-1])
    assert slack.opened == []


def test_a_stale_confirmation_for_another_amount_is_told_the_order_changed(acting, stripe_client):
    _, order_id = jane_in_stripe(acting, stripe_client)
    confirmations = []
    for amount in ("10.00", "20.00"):  # two refunds reviewed on the same order before either is confirmed
        record = open_order(acting, order_id)
        acting.person.click(record, f"refund_order-{order_id}")
        form = acting.slack.latest_view()
        acting.person.submit(form, {"amount": amount, "reason": "other"})
        confirmations.append(acting.slack.views[form["id"]])
    acting.person.submit(confirmations[0])
    finish(acting, confirmations[0]["id"])

    acting.person.submit(confirmations[1])

    assert "changed since you opened this form" in view_text(finish(acting, confirmations[1]["id"]))
    with acting.db.session() as s:
        assert s.scalar(select(Order.amount_refunded).where(Order.id == order_id)) == 1000


def test_a_new_order_too_long_for_slack_to_keep_while_confirming_is_refused_plainly(acting, stripe_client):
    jane_in_stripe(acting, stripe_client, paid=0)
    card = acting.person.command("jane doe")
    acting.person.click(card, "new_order")
    form = acting.slack.latest_view()

    answer = acting.person.submit(form, {"description": "&" * 250, "amount": "90", "note": "<" * 500})

    assert answer["response_action"] == "errors" and "Shorten the note" in answer["errors"]["note"]
    assert [c for c in acting.slack.calls if c.method == "views.update"] == [], (
        "no confirmation, nothing charged"
    )
