"""Send receipt on an order record, through signed Slack requests: the form, the confirmation's exact words, the
exact Stripe request (the recording stand-in: method, path, parameters, Idempotency-Key), a bad address refused
with nothing sent, a double click sending once, the address Stripe already sent to refused, a non-admin refused,
the History entry with the note; and the same against localstripe, which keeps a charge's receipt_email."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from bot.models import AuditEvent
from bot.stripe_gateway import StripeGateway
from devkit.local_slack import SlackPerson, wsgi_transport
from runtime.app import create_app
from runtime.web import WebApp
from tests import factories as make
from tests.conftest import SIGNING_SECRET, Harness, settings_for
from tests.slack_text import buttons, text_of
from tests.stripe_support import (
    CARD_SUCCESS,
    RecordingHTTPClient,
    paid_payment_intent,
    recording_gateway,
    stripe_customer_with_card,
)

ADMIN = "U0ADMIN01"


def charge(receipt_email: str | None = None, charge_id: str = "ch_123") -> dict:
    return {"id": charge_id, "object": "charge", "status": "succeeded", "receipt_email": receipt_email}


@pytest.fixture
def recorder() -> RecordingHTTPClient:
    return RecordingHTTPClient(charge("jane@example.com"))


def harness_on(db, slack, gateway: StripeGateway) -> Harness:
    settings = settings_for(db, slack, payment_admins=frozenset({ADMIN}))
    web = WebApp(create_app(settings, db, gateway=gateway), db)
    return Harness(
        settings, db, slack, web, SlackPerson(slack, wsgi_transport(web), SIGNING_SECRET, user_id=ADMIN)
    )


@pytest.fixture
def acting(db, slack, recorder) -> Harness:
    return harness_on(db, slack, recording_gateway(recorder))


def jane_order(acting: Harness, **payment) -> int:
    with acting.db.session() as s:
        jane = make.customer(s, "Jane Doe", "jane@example.com", stripe_customer_id="cus_123")
        fields = {"stripe_payment_intent_id": "pi_123", "stripe_charge_id": "ch_123"} | payment
        return make.order(s, jane, 5000, **fields).id


def open_order(person: SlackPerson, slack, order_id: int):
    card = person.command("jane doe")
    person.click(card, f"open_order-{order_id}")
    return slack.message(card.ts)


def result_text(acting: Harness, view_id: str) -> str:
    acting.slack.wait_for(lambda: acting.slack.views[view_id].get("callback_id") == "result")
    return acting.slack.views[view_id]["blocks"][0]["text"]["text"]


def receipts_sent(recorder: RecordingHTTPClient) -> list:
    return [r for r in recorder.requests if r.method == "POST" and r.path.startswith("/v1/charges/")]


def history(message) -> str:
    return next(
        b["text"]["text"] for b in message.blocks if b.get("text", {}).get("text", "").startswith("*History*")
    )


def test_send_a_receipt_to_the_customer_with_a_note(acting, recorder):
    order_id = jane_order(acting)
    record = open_order(acting.person, acting.slack, order_id)
    assert "Send receipt" in buttons(record)

    acting.person.click(record, f"send_receipt-{order_id}")
    form = acting.slack.latest_view()
    assert form["callback_id"] == "send_receipt_form"
    email_input = next(b for b in form["blocks"] if b.get("block_id") == "email")
    assert email_input["element"]["initial_value"] == "jane@example.com", "the customer's email by default"
    assert not any(b.get("block_id") == "order" for b in form["blocks"]), "one payment: nothing to choose"

    recorder.respond(charge(None))  # the charge as Stripe has it before: no receipt sent from here yet
    recorder.respond(charge("jane@example.com"))
    acting.person.submit(form, {"note": "Asked for it <by phone>"})
    confirm = acting.slack.views[form["id"]]
    assert confirm["callback_id"] == "send_receipt_confirm"
    assert "to *jane@example.com*?" in confirm["blocks"][0]["text"]["text"]
    assert "Asked for it &lt;by phone&gt;" in confirm["blocks"][1]["elements"][0]["text"]
    assert recorder.requests == [], "nothing is asked of Stripe before the confirmation"

    acting.person.submit(confirm)

    number = confirm_number(acting, order_id)
    said = result_text(acting, form["id"])
    assert said == (
        f":white_check_mark: Sent the receipt of the payment of 2026-01-15 ($50.00) of order #{number} (Jane Doe) "
        "to jane@example.com through Stripe."
    )
    [read, sent] = recorder.requests
    assert (read.method, read.path) == ("GET", "/v1/charges/ch_123")
    assert (sent.method, sent.path, sent.params) == (
        "POST",
        "/v1/charges/ch_123",
        {"receipt_email": "jane@example.com"},
    )
    assert sent.header("Idempotency-Key").startswith("crb-")
    updated = acting.slack.message(record.ts)
    assert "sent the receipt of" in text_of(updated), "the record says so in its notice"
    assert "Asked for it &lt;by phone&gt;" in history(updated), "History shows the note"
    with acting.db.session() as s:
        event = s.scalars(select(AuditEvent).where(AuditEvent.action == "send_receipt")).one()
        assert (event.actor, event.outcome, event.target_type) == (ADMIN, "succeeded", "payment")


def confirm_number(acting: Harness, order_id: int) -> str:
    from bot.models import Order

    with acting.db.session() as s:
        return s.get(Order, order_id).number


def test_the_confirmation_says_exactly_what_goes_to_whom(acting, recorder):
    order_id = jane_order(acting)
    record = open_order(acting.person, acting.slack, order_id)
    acting.person.click(record, f"send_receipt-{order_id}")
    form = acting.slack.latest_view()

    acting.person.submit(form, {"email": "  accounts@jane.example  "})

    confirm = acting.slack.views[form["id"]]
    number = confirm_number(acting, order_id)
    assert confirm["blocks"][0]["text"]["text"] == (
        f"Email the receipt of the payment of 2026-01-15 (*$50.00*, Visa •••• 4242) of order #{number} for "
        "*Jane Doe* to *accounts@jane.example*?"
    )
    assert confirm["blocks"][1]["elements"][0]["text"] == "Stripe sends its own receipt email; no money moves"
    assert confirm["submit"]["text"] == "Send receipt"


def test_a_bad_address_is_refused_and_nothing_is_sent(acting, recorder):
    order_id = jane_order(acting)
    record = open_order(acting.person, acting.slack, order_id)
    acting.person.click(record, f"send_receipt-{order_id}")
    form = acting.slack.latest_view()

    answer = acting.person.submit(form, {"email": "jane at example"})

    assert answer["response_action"] == "errors"
    assert answer["errors"] == {"email": "Enter an email address like jane@example.com."}
    assert recorder.requests == []


def test_a_double_click_sends_one_receipt(acting, recorder):
    order_id = jane_order(acting)
    record = open_order(acting.person, acting.slack, order_id)
    acting.person.click(record, f"send_receipt-{order_id}")
    form = acting.slack.latest_view()
    acting.person.submit(form, {"email": "other@example.com"})
    confirm = acting.slack.views[form["id"]]
    recorder.respond(charge("jane@example.com")).respond(charge("other@example.com"))
    acting.person.submit(confirm)
    result_text(acting, form["id"])

    acting.slack.replace_view(form["id"], confirm)
    acting.person.submit(confirm)  # the second click of a double click: the charge now has that address

    assert "this was already done" in result_text(acting, form["id"]).lower()
    assert len(receipts_sent(recorder)) == 1


def test_the_address_stripe_already_sent_to_is_refused_plainly(acting, recorder):
    order_id = jane_order(acting)
    record = open_order(acting.person, acting.slack, order_id)
    acting.person.click(record, f"send_receipt-{order_id}")
    form = acting.slack.latest_view()
    acting.person.submit(form)
    confirm = acting.slack.views[form["id"]]

    acting.person.submit(confirm)  # the charge already has jane@example.com (the recorder's default)

    assert "sends it again only to another address" in result_text(acting, form["id"])
    assert receipts_sent(recorder) == []


def test_an_order_with_several_payments_asks_which(acting, recorder):
    with acting.db.session() as s:
        jane = make.customer(s, "Jane Doe", "jane@example.com", stripe_customer_id="cus_123")
        sub = make.subscription(s, jane)
        first = make.payment(s, sub, "paid", stripe_charge_id="ch_1", stripe_payment_intent_id="pi_1")
        second = make.payment(s, sub, "paid", stripe_charge_id="ch_2", stripe_payment_intent_id="pi_2")
        order_id, ids = first.order_id, [first.id, second.id]
    record = open_order(acting.person, acting.slack, order_id)
    acting.person.click(record, f"send_receipt-{order_id}")
    form = acting.slack.latest_view()
    select_block = next(b for b in form["blocks"] if b.get("block_id") == "order")
    assert {o["value"] for o in select_block["element"]["options"]} == {str(i) for i in ids}

    assert acting.person.submit(form)["errors"] == {"order": "Choose the payment whose receipt to send."}
    recorder.respond(charge(None, "ch_2")).respond(charge("jane@example.com", "ch_2"))
    acting.person.submit(form, {"order": str(ids[1])})
    acting.person.submit(acting.slack.views[form["id"]])

    assert "Sent the receipt" in result_text(acting, form["id"])
    assert [r.path for r in receipts_sent(recorder)] == ["/v1/charges/ch_2"]


def test_someone_who_is_not_a_payment_admin_is_refused(acting, recorder):
    order_id = jane_order(acting)
    other = acting.someone_else()
    record = open_order(other, acting.slack, order_id)
    opened = len(acting.slack.opened)

    other.click(record, f"send_receipt-{order_id}")

    assert "Only payment admins" in text_of(other.visible()[-1])
    assert len(acting.slack.opened) == opened and recorder.requests == []
    with acting.db.session() as s:
        assert s.scalars(select(AuditEvent.outcome).where(AuditEvent.action == "send_receipt")).all() == [
            "refused"
        ]


def test_an_order_without_a_stripe_charge_has_no_send_receipt(acting, recorder):
    order_id = jane_order(acting, stripe_charge_id=None, stripe_payment_intent_id=None)
    assert "Send receipt" not in buttons(open_order(acting.person, acting.slack, order_id))


def test_send_a_receipt_through_localstripe(db, slack, local_stripe, stripe_client):
    acting = harness_on(db, slack, StripeGateway.connect(local_stripe.api_key, api_base=local_stripe.url))
    customer_id, payment_method = stripe_customer_with_card(
        stripe_client, "jane@example.com", CARD_SUCCESS, name="Jane Doe"
    )
    intent = paid_payment_intent(stripe_client, customer_id, payment_method, 5000)
    latest = stripe_client.v1.payment_intents.retrieve(intent).latest_charge
    charge_id = latest if isinstance(latest, str) else latest.id  # localstripe sends it expanded
    with db.session() as s:
        jane = make.customer(s, "Jane Doe", "jane@example.com", stripe_customer_id=customer_id)
        order_id = make.order(s, jane, 5000, stripe_payment_intent_id=intent, stripe_charge_id=charge_id).id
    record = open_order(acting.person, slack, order_id)
    acting.person.click(record, f"send_receipt-{order_id}")
    form = slack.latest_view()
    acting.person.submit(form, {"email": "books@jane.example", "note": "For her accountant"})
    acting.person.submit(slack.views[form["id"]])

    assert "to books@jane.example through Stripe" in result_text(acting, form["id"])
    assert stripe_client.v1.charges.retrieve(charge_id).receipt_email == "books@jane.example"
    assert "For her accountant" in history(slack.message(record.ts))
