"""Pausing a subscription or plan whose bill already failed: the pause form asks what happens to that bill (keep
retrying it, void it, or write it off), each choice sends exactly its Stripe requests, the answer and the record
say what happened to the bill, and nothing is done twice under a double submit, a refusal or a lost answer.

Driven through signed Slack requests; Stripe is the recording stand-in (exact requests) or localstripe."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from bot.actions.ledger import IN_FLIGHT
from bot.models import ActionAttempt, Payment, PaymentStatus, Recurring
from bot.stripe_gateway import CallLimits, StripeGateway
from devkit.local_slack import SlackPerson, wsgi_transport
from runtime.app import create_app
from runtime.jobs import jobs_slack_client, run_missed_payments
from runtime.web import WebApp
from tests import factories as make
from tests.clock import Clock
from tests.conftest import SIGNING_SECRET, Harness, settings_for
from tests.slack_text import buttons, text_of
from tests.stripe_support import (
    CARD_DECLINES_AFTER_ATTACH,
    RecordingHTTPClient,
    local_stripe_client,
    recording_gateway,
    stripe_customer_with_card,
    stripe_error_body,
    stripe_subscription,
    subscription_body,
)

ADMIN = "U0ADMIN01"
CHANNEL = "C0ALERTS1"
RETRIES = len(CallLimits().retry_delays)
PAUSED = subscription_body("sub_123", pause_collection={"behavior": "void", "resumes_at": None})
# What sync_invoice makes of an invoice Stripe shows as uncollectible: a written-off status where main has one.
WRITTEN_OFF = getattr(PaymentStatus, "UNCOLLECTIBLE", PaymentStatus.FAILED).value


def invoice_body(status: str, invoice_id: str = "in_123", **fields) -> dict:
    """A subscription's invoice as Stripe returns it (API 2025-03-31 and later: the subscription under parent)."""
    return {
        "id": invoice_id,
        "object": "invoice",
        "status": status,
        "amount_due": 5000,
        "currency": "usd",
        "attempt_count": 1,
        "created": int(make.T0.timestamp()),
        "parent": {"type": "subscription_details", "subscription_details": {"subscription": "sub_123"}},
        **fields,
    }


@pytest.fixture
def recorder() -> RecordingHTTPClient:
    return RecordingHTTPClient(subscription_body("sub_123"))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def acting(db, slack, recorder, clock) -> Harness:
    settings = settings_for(db, slack, payment_admins=frozenset({ADMIN}), alerts_channel=CHANNEL)
    web = WebApp(create_app(settings, db, gateway=recording_gateway(recorder), clock=clock), db)
    return Harness(
        settings, db, slack, web, SlackPerson(slack, wsgi_transport(web), SIGNING_SECRET, user_id=ADMIN)
    )


def open_plan(acting: Harness, *, failed: int = 1):
    """Jane's plan with `failed` failed bills (in_123, in_124, …, from Jan 15, 2026 on), its record open."""
    with acting.db.session() as s:
        jane = make.customer(s, stripe_customer_id="cus_123")
        plan = make.payment_plan(s, jane, stripe_subscription_id="sub_123")
        make.payment(s, plan, "paid", due_at=make.T0 - timedelta(days=31)).stripe_invoice_id = "in_100"
        for n in range(failed):
            bill = make.payment(
                s, plan, "failed", due_at=make.T0 + timedelta(days=31 * n), reason="Your card was declined."
            )
            bill.stripe_invoice_id = f"in_{123 + n}"
        plan_id = plan.id
    card = acting.person.command("jane doe")
    acting.person.click(card, f"open_payment_plan-{plan_id}")
    return plan_id, acting.slack.message(card.ts)


def pause_form(acting: Harness, plan_id: int, record) -> dict:
    acting.person.click(record, f"pause_payments-{plan_id}")
    return acting.slack.latest_view()


def answer(acting: Harness, view_id: str) -> dict:
    """The modal once the lazy listener has put its outcome in (a result, or Try again)."""
    acting.slack.wait_for(lambda: acting.slack.views[view_id].get("callback_id") in ("result", "pause_retry"))
    return acting.slack.views[view_id]


def said(view: dict) -> str:
    return "\n".join(b["text"]["text"] for b in view["blocks"] if b.get("type") == "section")


def sent(recorder: RecordingHTTPClient) -> list[tuple[str, str, dict]]:
    return [(r.method, r.path, r.params) for r in recorder.requests]


def payment_status(acting: Harness, invoice_id: str = "in_123") -> str:
    with acting.db.session() as s:
        return s.scalar(select(Payment.status).where(Payment.stripe_invoice_id == invoice_id))


def bill_input(view: dict) -> dict | None:
    return next((b for b in view["blocks"] if b.get("block_id") == "failed_bill"), None)


# The form ------------------------------------------------------------------------------------------------------


def test_the_form_asks_about_a_failed_bill_with_keep_retrying_as_the_default(acting):
    plan_id, record = open_plan(acting)

    form = pause_form(acting, plan_id, record)

    choice = bill_input(form)
    assert choice is not None and choice["element"]["type"] == "radio_buttons"
    assert [o["value"] for o in choice["element"]["options"]] == [
        "keep_retrying",
        "void",
        "mark_uncollectible",
    ]
    assert choice["element"]["initial_option"]["value"] == "keep_retrying"
    text = said(form)
    assert "A bill already failed and Stripe is retrying it" in text and "*$50.00* of <!date^" in text


def test_no_choice_is_shown_without_a_failed_bill(acting):
    plan_id, record = open_plan(acting, failed=0)
    with acting.db.session() as s:  # neither a paid nor a voided bill is one to ask about
        make.payment(s, s.get(Recurring, plan_id), "void").stripe_invoice_id = "in_999"

    form = pause_form(acting, plan_id, record)

    assert bill_input(form) is None and "already failed" not in said(form)


def test_two_failed_bills_are_both_named_and_both_voided(acting, recorder):
    plan_id, record = open_plan(acting, failed=2)
    form = pause_form(acting, plan_id, record)
    assert "2 bills already failed" in said(form)
    recorder.respond(PAUSED)
    for invoice in ("in_123", "in_124"):
        recorder.respond(invoice_body("void", invoice)).respond(invoice_body("void", invoice))

    acting.person.submit(form, {"when": "until_resumed", "failed_bill": "void"})

    assert "Stop retrying them" in str(bill_input(form))
    text = said(answer(acting, form["id"]))
    assert "voided the failed $50.00 bill of Jan 15, 2026" in text
    assert "voided the failed $50.00 bill of Feb 15, 2026" in text
    assert (payment_status(acting, "in_123"), payment_status(acting, "in_124")) == ("void", "void")


# Each choice, exactly --------------------------------------------------------------------------------------------


def test_keep_retrying_sends_the_pause_only_and_says_the_bill_is_still_retried(acting, recorder):
    plan_id, record = open_plan(acting)
    form = pause_form(acting, plan_id, record)
    recorder.respond(PAUSED)

    acting.person.submit(form, {"when": "until_resumed"})

    text = said(answer(acting, form["id"]))
    assert "Paused payments of Guitar course" in text
    assert "the failed $50.00 bill of Jan 15, 2026 is still retried by Stripe as scheduled" in text
    assert sent(recorder) == [("POST", "/v1/subscriptions/sub_123", {"pause_collection[behavior]": "void"})]
    assert payment_status(acting) == "failed"


def test_stop_retrying_pauses_then_voids_the_bill_and_the_record_shows_it(acting, recorder):
    plan_id, record = open_plan(acting)
    form = pause_form(acting, plan_id, record)
    recorder.respond(PAUSED).respond(invoice_body("void")).respond(invoice_body("void"))

    acting.person.submit(form, {"when": "until_resumed", "failed_bill": "void"})

    view = answer(acting, form["id"])
    assert view["callback_id"] == "result"
    assert said(view) == (
        ":white_check_mark: Paused payments of Guitar course, 6 instalments (Jane Doe) until resumed; voided the "
        "failed $50.00 bill of Jan 15, 2026: Stripe no longer retries it."
    )
    assert sent(recorder) == [
        ("POST", "/v1/subscriptions/sub_123", {"pause_collection[behavior]": "void"}),
        ("POST", "/v1/invoices/in_123/void", {}),
        # read again, outside the transaction, for our records (with its payments: they name its payment intent)
        ("GET", "/v1/invoices/in_123", {"expand[0]": "payments"}),
    ]
    pause_key, void_key = (r.header("Idempotency-Key") for r in recorder.requests[:2])
    assert pause_key.startswith("crb-") and void_key.startswith("crb-") and pause_key != void_key
    assert recorder.requests[2].header("Idempotency-Key") is None
    assert payment_status(acting) == "void"
    updated = text_of(acting.slack.message(record.ts))
    assert "voided the failed $50.00 bill" in updated and "Void" in updated
    assert "*Missed payments*\n:white_check_mark: None" in updated


def test_mark_uncollectible_writes_the_bill_off(acting, recorder):
    plan_id, record = open_plan(acting)
    form = pause_form(acting, plan_id, record)
    recorder.respond(PAUSED).respond(invoice_body("uncollectible")).respond(invoice_body("uncollectible"))

    acting.person.submit(form, {"when": "until_resumed", "failed_bill": "mark_uncollectible"})

    text = said(answer(acting, form["id"]))
    assert (
        "marked the failed $50.00 bill of Jan 15, 2026 as uncollectible (written off): Stripe no longer "
        "retries it" in text
    )
    assert [(m, p) for m, p, _ in sent(recorder)] == [
        ("POST", "/v1/subscriptions/sub_123"),
        ("POST", "/v1/invoices/in_123/mark_uncollectible"),
        ("GET", "/v1/invoices/in_123"),
    ]
    assert recorder.requests[1].params == {} and recorder.requests[1].header("Idempotency-Key").startswith(
        "crb-"
    )
    assert payment_status(acting) == WRITTEN_OFF  # whatever sync_invoice maps an uncollectible invoice to


def test_a_bill_choice_that_was_not_offered_is_an_inline_error_and_sends_nothing(acting, recorder):
    plan_id, record = open_plan(acting)
    form = pause_form(acting, plan_id, record)
    chosen = form_with_choice(form, "refund_everything")

    reply = acting.person.submit(chosen, {"failed_bill": "refund_everything"})

    assert (
        reply["response_action"] == "errors" and "Choose one of the choices" in reply["errors"]["failed_bill"]
    )
    assert recorder.requests == []


def form_with_choice(form: dict, value: str) -> dict:
    """The form as a forged payload would have it: an option Slack never offered."""
    blocks = []
    for block in form["blocks"]:
        if block.get("block_id") == "failed_bill":
            element = block["element"]
            option = {"text": {"type": "plain_text", "text": value}, "value": value}
            block = {**block, "element": {**element, "options": [*element["options"], option]}}
        blocks.append(block)
    return {**form, "blocks": blocks}


# Faults and repeats --------------------------------------------------------------------------------------------


def test_a_double_submit_pauses_once_and_voids_once(acting, recorder):
    plan_id, record = open_plan(acting)
    form = pause_form(acting, plan_id, record)
    recorder.respond(PAUSED).respond(invoice_body("void")).respond(invoice_body("void"))
    acting.person.submit(form, {"when": "until_resumed", "failed_bill": "void"})
    answer(acting, form["id"])
    requests = len(recorder.requests)

    acting.slack.replace_view(form["id"], form)
    acting.person.submit(form, {"when": "until_resumed", "failed_bill": "void"})

    text = said(answer(acting, form["id"]))
    assert "were already paused until resumed" in text and "before this request" in text
    assert len(recorder.requests) == requests, "nothing sent to Stripe again"
    with acting.db.session() as s:
        assert s.scalars(select(ActionAttempt.action)).all() == ["pause_payments", "void_failed_bill"]


def test_a_void_refused_after_the_pause_is_told_plainly_and_try_again_voids_without_pausing_again(
    acting, recorder
):
    plan_id, record = open_plan(acting)
    form = pause_form(acting, plan_id, record)
    recorder.respond(PAUSED).fail_with_status(
        400, body=stripe_error_body("invalid_request_error", "Simulated: invoices are being migrated.")
    )

    acting.person.submit(form, {"when": "until_resumed", "failed_bill": "void"})

    view = answer(acting, form["id"])
    assert view["callback_id"] == "pause_retry" and view["submit"]["text"] == "Try again"
    assert said(view) == (
        ":white_check_mark: Paused payments of Guitar course, 6 instalments (Jane Doe) until resumed.\n"
        ":warning: The failed $50.00 bill of Jan 15, 2026 was not voided, so Stripe goes on retrying it: Stripe "
        "refused to do this: Simulated: invoices are being migrated. Try again to void the failed bill; the "
        "pause is not sent again."
    )
    assert payment_status(acting) == "failed"
    updated = text_of(acting.slack.message(record.ts))
    assert "paused payments" in updated and "was not voided" in updated, "the record says both parts"
    with acting.db.session() as s:
        assert s.get(Recurring, plan_id).payments_paused

    recorder.respond(invoice_body("void")).respond(invoice_body("void"))
    acting.person.submit(view)

    again = answer(acting, form["id"])
    assert "were already paused until resumed; voided the failed $50.00 bill" in said(again)
    assert [(m, p) for m, p, _ in sent(recorder)] == [
        ("POST", "/v1/subscriptions/sub_123"),  # once
        ("POST", "/v1/invoices/in_123/void"),
        ("POST", "/v1/invoices/in_123/void"),
        ("GET", "/v1/invoices/in_123"),
    ]
    first, second = (
        recorder.requests[1].header("Idempotency-Key"),
        recorder.requests[2].header("Idempotency-Key"),
    )
    assert first != second, "the refused try ended; the new one goes under a key of its own"
    assert payment_status(acting) == "void"


def test_a_void_whose_answer_is_lost_is_being_confirmed_and_then_recorded_once(acting, recorder, clock):
    plan_id, record = open_plan(acting)
    form = pause_form(acting, plan_id, record)
    recorder.respond(PAUSED).fail_with_connection_error(times=1 + RETRIES)

    acting.person.submit(form, {"when": "until_resumed", "failed_bill": "void"})

    text = said(answer(acting, form["id"]))
    assert "*Void the failed $50.00 bill of Jan 15, 2026*" in text
    assert "Paused payments of Guitar course, 6 instalments (Jane Doe) until resumed: that is done." in text
    assert "cannot tell yet whether it went through" in text
    assert payment_status(acting) == "failed"
    voids = len([r for r in recorder.requests if r.path.endswith("/void")])

    clock.advance(IN_FLIGHT + timedelta(seconds=1))
    recorder.respond(invoice_body("void"))  # Stripe had voided it: found, not sent again
    acting.slack.replace_view(form["id"], form)
    acting.person.submit(form, {"when": "until_resumed", "failed_bill": "void"})

    assert "voided the failed $50.00 bill" in said(answer(acting, form["id"]))
    assert len([r for r in recorder.requests if r.path.endswith("/void")]) == voids
    assert [(r.method, r.path) for r in recorder.requests[-1:]] == [("GET", "/v1/invoices/in_123")]
    assert len([r for r in recorder.requests if r.path == "/v1/subscriptions/sub_123"]) == 1
    assert payment_status(acting) == "void"


def test_a_bill_paid_since_the_form_opened_stops_everything(acting, recorder):
    plan_id, record = open_plan(acting)
    form = pause_form(acting, plan_id, record)
    with acting.db.session() as s:
        s.scalar(select(Payment).where(Payment.stripe_invoice_id == "in_123")).status = "paid"

    acting.person.submit(form, {"when": "until_resumed", "failed_bill": "void"})

    assert "The failed bills changed since you opened this form" in said(answer(acting, form["id"]))
    assert recorder.requests == []


def test_a_non_admin_is_refused_and_nothing_is_sent(acting, recorder):
    plan_id, _ = open_plan(acting)
    opened = list(acting.slack.opened)
    colleague = acting.someone_else()
    card = colleague.command("jane doe")
    colleague.click(card, f"open_payment_plan-{plan_id}")

    colleague.click(acting.slack.message(card.ts), f"pause_payments-{plan_id}")

    assert acting.slack.opened == opened, "no form opens"
    assert "Only payment admins" in text_of(colleague.visible()[-1])
    assert recorder.requests == []
    assert payment_status(acting) == "failed"


# The alert ------------------------------------------------------------------------------------------------------


def test_from_the_alert_the_form_asks_too_and_the_alert_of_a_voided_bill_says_so(acting, recorder):
    plan_id, _ = open_plan(acting)
    jobs = jobs_slack_client("xoxb-test", acting.slack.api_url)
    assert (
        run_missed_payments(acting.db, jobs, CHANNEL, clock=lambda: make.T0 + timedelta(days=3)).announced
        == 1
    )
    admin = SlackPerson(
        acting.slack, wsgi_transport(acting.web), SIGNING_SECRET, user_id=ADMIN, channel_id=CHANNEL
    )
    [alert] = admin.visible()
    admin.click(alert, f"pause_payments-{plan_id}")
    form = acting.slack.latest_view()
    assert bill_input(form) is not None
    recorder.respond(PAUSED).respond(invoice_body("void")).respond(invoice_body("void"))

    admin.submit(form, {"when": "until_resumed", "failed_bill": "void"})

    assert "voided the failed $50.00 bill" in said(answer(acting, form["id"]))
    later = run_missed_payments(acting.db, jobs, CHANNEL, clock=lambda: make.T0 + timedelta(days=4))
    assert (later.announced, later.updated) == (0, 1), "not announced again; its alert says what became of it"
    ended = text_of(acting.slack.message(alert.ts))
    assert "*Voided*" in ended and "Stripe no longer retries it and nothing is owed" in ended
    assert buttons(acting.slack.message(alert.ts)) == ["Open record"]


# localstripe ------------------------------------------------------------------------------------------------------


@pytest.fixture
def on_localstripe(db, slack, local_stripe) -> Harness:
    settings = settings_for(db, slack, payment_admins=frozenset({ADMIN}))
    gateway = StripeGateway.connect(local_stripe.api_key, api_base=local_stripe.url)
    web = WebApp(create_app(settings, db, gateway=gateway), db)
    return Harness(
        settings, db, slack, web, SlackPerson(slack, wsgi_transport(web), SIGNING_SECRET, user_id=ADMIN)
    )


def failed_bill_in_localstripe(harness: Harness, client) -> tuple[int, str, str]:
    """Jane's subscription in localstripe whose latest bill was declined: (our id, subscription, invoice)."""
    customer_id, _ = stripe_customer_with_card(client, "jane.doe@example.com", name="Jane Doe")
    subscription_id = stripe_subscription(client, customer_id, 2000, "usd", "month", product_name="Pro")
    declining = client.v1.payment_methods.create(
        params={
            "type": "card",
            "card": {"number": CARD_DECLINES_AFTER_ATTACH, "exp_month": 12, "exp_year": 2030, "cvc": "123"},
        }
    )
    client.v1.payment_methods.attach(declining.id, params={"customer": customer_id})
    client.v1.customers.update(
        customer_id, params={"invoice_settings": {"default_payment_method": declining.id}}
    )
    invoice = client.v1.invoices.create(params={"customer": customer_id, "subscription": subscription_id})
    client.v1.invoices.pay(invoice.id)
    assert client.v1.invoices.retrieve(invoice.id).status == "open"
    with harness.db.session() as s:
        jane = make.customer(s, stripe_customer_id=customer_id)
        sub = make.subscription(s, jane, "Pro", amount=2000, stripe_subscription_id=subscription_id)
        make.payment(s, sub, "failed", reason="Your card was declined.").stripe_invoice_id = invoice.id
        return sub.id, subscription_id, invoice.id


@pytest.mark.parametrize(
    ("choice", "stripe_status", "ours"),
    [("void", "void", "void"), ("mark_uncollectible", "uncollectible", WRITTEN_OFF)],
)
def test_each_choice_against_localstripe(on_localstripe, local_stripe, choice, stripe_status, ours):
    client = local_stripe_client(local_stripe)
    sub_id, subscription_id, invoice_id = failed_bill_in_localstripe(on_localstripe, client)
    card = on_localstripe.person.command("jane doe")
    on_localstripe.person.click(card, f"open_subscription-{sub_id}")
    record = on_localstripe.slack.message(card.ts)
    form = pause_form(on_localstripe, sub_id, record)
    resumes = (datetime.now(UTC) + timedelta(days=30)).date()

    on_localstripe.person.submit(
        form, {"when": "until_date", "resumes_at": resumes.isoformat(), "failed_bill": choice}
    )

    text = said(answer(on_localstripe, form["id"]))
    assert f"Paused payments of Pro (Jane Doe) until {resumes:%b %-d, %Y}" in text and "$20.00 bill" in text
    assert client.v1.invoices.retrieve(invoice_id).status == stripe_status
    subscription = client.v1.subscriptions.retrieve(subscription_id)
    assert subscription.status == "active" and subscription.pause_collection is not None
    assert payment_status(on_localstripe, invoice_id) == ours
    with on_localstripe.db.session() as s:
        assert s.get(Recurring, sub_id).payments_paused
