"""Refunds and charges whose answer from Stripe was lost, and that nobody retried: the settle job asks Stripe
(localstripe) what each made, records what it made, lets go of what it never made, and tells the audit channel.
The answers are lost by a network stand-in between the bot and localstripe, after or before Stripe acted."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from slack_sdk import WebClient
from sqlalchemy import func, select, update

from bot.actions import SETTLE_AFTER, Actions, Settled
from bot.models import ActionAttempt, Order, OrderLine, Refund
from bot.stripe_gateway import StripeGateway
from devkit.local_slack import SlackPerson, wsgi_transport
from runtime.app import audit_poster, create_app
from runtime.jobs import run_settle_unanswered
from runtime.web import WebApp
from tests import factories as make
from tests.conftest import SIGNING_SECRET, Harness, settings_for
from tests.slack_text import buttons, text_of
from tests.stripe_support import (
    AnswerLosingHTTPClient,
    local_stripe_client,
    paid_payment_intent,
    stripe_customer_with_card,
)

ADMIN = "U0ADMIN01"
AUDIT_CHANNEL = "C0AUDIT01"


def acting_through(db, slack, local_stripe, network: AnswerLosingHTTPClient) -> Harness:
    settings = settings_for(db, slack, payment_admins=frozenset({ADMIN}), audit_channel=AUDIT_CHANNEL)
    gateway = StripeGateway.connect(local_stripe.api_key, api_base=local_stripe.url, http_client=network)
    web = WebApp(create_app(settings, db, gateway=gateway), db)
    return Harness(
        settings, db, slack, web, SlackPerson(slack, wsgi_transport(web), SIGNING_SECRET, user_id=ADMIN)
    )


def settle(
    harness: Harness, local_stripe, *, after: timedelta = SETTLE_AFTER + timedelta(minutes=1)
) -> Settled:
    """One run of the job, `after` from now, as the clock process builds it: Stripe, and the audit channel."""
    client = WebClient(token="xoxb-test-token", base_url=harness.slack.api_url)
    actions = Actions(
        harness.db,
        StripeGateway.connect(local_stripe.api_key, api_base=local_stripe.url),
        frozenset({ADMIN}),
        on_audit=audit_poster(client, AUDIT_CHANNEL),
        clock=lambda: datetime.now(UTC) + after,
    )
    return run_settle_unanswered(actions)


def audit_posts(harness: Harness) -> list[str]:
    return [
        c.args["text"] + " " + str(c.args["blocks"])
        for c in harness.slack.calls
        if c.method == "chat.postMessage" and c.args["channel"] == AUDIT_CHANNEL
    ]


def result_text(harness: Harness, view_id: str) -> str:
    harness.slack.wait_for(lambda: harness.slack.views[view_id].get("callback_id") == "result")
    return "\n".join(
        b["text"]["text"] for b in harness.slack.views[view_id]["blocks"] if b["type"] == "section"
    )


def jane_in_stripe(harness: Harness, stripe_client, paid: int = 5000) -> tuple[int, int, str]:
    """Jane with a card in Stripe and one paid order: (customer id, order id, payment intent)."""
    customer, card = stripe_customer_with_card(stripe_client, "jane.doe@example.com", name="Jane Doe")
    intent = paid_payment_intent(stripe_client, customer, card, paid)
    with harness.db.session() as s:
        jane = make.customer(s, "Jane Doe", stripe_customer_id=customer, default_payment_method_id=card)
        return jane.id, make.order(s, jane, paid, stripe_payment_intent_id=intent).id, intent


def refund_whose_answer_is_lost(harness: Harness, order_id: int, amount: str) -> tuple[dict, dict]:
    """The person refunds; every answer to it is lost. Returns (the modal, its confirm step) to submit again."""
    card = harness.person.command("jane doe")
    harness.person.click(card, f"open_order-{order_id}")
    harness.person.click(harness.slack.message(card.ts), f"refund_order-{order_id}")
    form = harness.slack.latest_view()
    harness.person.submit(form, {"amount": amount, "reason": "other"})  # localstripe refuses refund reasons
    confirm = harness.slack.views[form["id"]]
    harness.person.submit(confirm)
    assert "Stripe" in result_text(harness, form["id"])
    return form, confirm


def refunds_in_stripe(stripe_client, intent: str) -> list:
    return list(stripe_client.v1.refunds.list(params={"payment_intent": intent}).data)


@pytest.fixture
def stripe_client(local_stripe):
    return local_stripe_client(local_stripe)


def test_a_refund_stripe_made_is_recorded_once_nobody_retried(db, slack, local_stripe, stripe_client):
    network = AnswerLosingHTTPClient("/v1/refunds", reaches_stripe=True)
    acting = acting_through(db, slack, local_stripe, network)
    _, order_id, intent = jane_in_stripe(acting, stripe_client)
    refund_whose_answer_is_lost(acting, order_id, "10.00")
    made = refunds_in_stripe(stripe_client, intent)
    assert [r.amount for r in made] == [1000], "Stripe made it; the bot never heard"
    with db.session() as s:
        assert (s.get(Order, order_id).amount_refunded, s.get(Order, order_id).amount_refund_pending) == (
            0,
            1000,
        )

    assert settle(acting, local_stripe) == Settled(recorded=1, let_go=0, unreachable=0)

    with db.session() as s:
        order = s.get(Order, order_id)
        assert (order.amount_refunded, order.amount_refund_pending, order.status) == (
            1000,
            0,
            "partially_refunded",
        )
        refund = s.scalars(select(Refund).where(Refund.order_id == order_id)).one()
        assert (refund.stripe_refund_id, refund.amount, refund.requested_by) == (made[0].id, 1000, ADMIN)
        assert s.scalar(select(ActionAttempt.status)) == "succeeded"
    [post] = [p for p in audit_posts(acting) if "Stripe made it" in p]
    assert "$10.00" in post and made[0].id in post
    assert settle(acting, local_stripe) == Settled(0, 0, 0), "settled once"


def test_after_settling_a_retry_is_told_it_was_done(db, slack, local_stripe, stripe_client):
    network = AnswerLosingHTTPClient("/v1/refunds", reaches_stripe=True)
    acting = acting_through(db, slack, local_stripe, network)
    _, order_id, intent = jane_in_stripe(acting, stripe_client)
    form, confirm = refund_whose_answer_is_lost(acting, order_id, "10.00")
    settle(acting, local_stripe)
    network.losing = False

    acting.slack.replace_view(form["id"], confirm)
    acting.person.submit(confirm)

    assert "already done" in result_text(acting, form["id"])
    assert len(refunds_in_stripe(stripe_client, intent)) == 1
    with db.session() as s:
        assert s.get(Order, order_id).amount_refunded == 1000


def test_a_refund_stripe_never_made_is_let_go_and_can_be_asked_again(db, slack, local_stripe, stripe_client):
    network = AnswerLosingHTTPClient("/v1/refunds", reaches_stripe=False)
    acting = acting_through(db, slack, local_stripe, network)
    _, order_id, intent = jane_in_stripe(acting, stripe_client)
    form, confirm = refund_whose_answer_is_lost(acting, order_id, "50.00")
    card = acting.person.command("jane doe")
    acting.person.click(card, f"open_order-{order_id}")
    held = acting.slack.message(card.ts)
    assert not any(b.startswith("Refund") for b in buttons(held)), "the whole amount is held meanwhile"

    assert settle(acting, local_stripe) == Settled(recorded=0, let_go=1, unreachable=0)

    with db.session() as s:
        order = s.get(Order, order_id)
        assert (order.amount_refunded, order.amount_refund_pending, order.status) == (0, 0, "paid")
        assert s.scalar(select(func.count()).select_from(Refund)) == 0
    [post] = [p for p in audit_posts(acting) if "did not happen" in p]
    assert "$50.00" in post and "never made it" in post

    network.losing = False
    acting.slack.replace_view(form["id"], confirm)
    acting.person.submit(confirm)
    assert "Refunded $50.00" in result_text(acting, form["id"])
    assert [r.amount for r in refunds_in_stripe(stripe_client, intent)] == [5000]
    with db.session() as s:
        assert (s.get(Order, order_id).amount_refunded, s.get(Order, order_id).amount_refund_pending) == (
            5000,
            0,
        )


def test_a_request_still_young_is_left_to_its_retries(db, slack, local_stripe, stripe_client):
    network = AnswerLosingHTTPClient("/v1/refunds", reaches_stripe=False)
    acting = acting_through(db, slack, local_stripe, network)
    _, order_id, _ = jane_in_stripe(acting, stripe_client)
    refund_whose_answer_is_lost(acting, order_id, "10.00")

    assert settle(acting, local_stripe, after=SETTLE_AFTER - timedelta(minutes=1)) == Settled(0, 0, 0)
    with db.session() as s:
        assert s.get(Order, order_id).amount_refund_pending == 1000
        assert s.scalar(select(ActionAttempt.status)) == "pending"


def test_a_request_retried_lately_is_left_to_that_retry(db, slack, local_stripe, stripe_client):
    network = AnswerLosingHTTPClient("/v1/refunds", reaches_stripe=False)
    acting = acting_through(db, slack, local_stripe, network)
    _, order_id, _ = jane_in_stripe(acting, stripe_client)
    form, confirm = refund_whose_answer_is_lost(acting, order_id, "10.00")
    with db.session() as s:  # first asked long ago...
        s.execute(update(ActionAttempt).values(created_at=datetime.now(UTC) - SETTLE_AFTER * 2))
    acting.slack.replace_view(form["id"], confirm)
    acting.person.submit(confirm)  # ...and tried again just now, its answer lost again
    assert "Stripe" in result_text(acting, form["id"])

    assert settle(acting, local_stripe, after=timedelta(minutes=1)) == Settled(0, 0, 0)
    with db.session() as s:
        assert s.get(Order, order_id).amount_refund_pending == 1000
        assert s.scalar(select(ActionAttempt.status)) == "pending"


def test_a_charge_stripe_made_becomes_an_order_on_the_record(db, slack, local_stripe, stripe_client):
    network = AnswerLosingHTTPClient("/v1/payment_intents", reaches_stripe=True)
    acting = acting_through(db, slack, local_stripe, network)
    jane_id, _, _ = jane_in_stripe(acting, stripe_client, paid=2000)
    card = acting.person.command("jane doe")
    acting.person.click(card, "new_order")
    form = acting.slack.latest_view()
    acting.person.submit(form, {"description": "Extra coaching call", "amount": "90", "quantity": "2"})
    acting.person.submit(acting.slack.views[form["id"]])
    assert "Stripe" in result_text(acting, form["id"])
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Order)) == 1, (
            "nothing recorded while the answer is lost"
        )

    assert settle(acting, local_stripe) == Settled(recorded=1, let_go=0, unreachable=0)

    with db.session() as s:
        order = s.scalars(select(Order).where(Order.customer_id == jane_id).order_by(Order.id.desc())).first()
        line = s.scalars(select(OrderLine).where(OrderLine.order_id == order.id)).one()
        assert (order.total, order.currency, order.status) == (18000, "usd", "paid")
        assert (line.description, line.quantity, line.unit_amount) == ("Extra coaching call", 2, 9000)
    assert "*Lifetime value*\n$200.00" in text_of(acting.person.command("jane doe"))
    assert any("Stripe made it" in p and "$180.00" in p for p in audit_posts(acting))


def test_run_job_settles_from_the_command_line(db, slack, local_stripe, stripe_client, tmp_path):
    network = AnswerLosingHTTPClient("/v1/refunds", reaches_stripe=True)
    acting = acting_through(db, slack, local_stripe, network)
    _, order_id, _ = jane_in_stripe(acting, stripe_client)
    refund_whose_answer_is_lost(acting, order_id, "10.00")
    with db.session() as s:  # the time the clock process waits before asking Stripe
        s.execute(update(ActionAttempt).values(created_at=datetime.now(UTC) - SETTLE_AFTER * 2))
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLACK_", "STRIPE_", "DATABASE_URL", "ALERTS_"))
    }
    env |= {
        "DATABASE_URL": db.url,
        "SLACK_BOT_TOKEN": "xoxb-test",
        "SLACK_API_URL": slack.api_url,
        "ALERTS_CHANNEL": "C0ALERTS1",
        "AUDIT_CHANNEL": AUDIT_CHANNEL,
        "STRIPE_API_KEY": local_stripe.api_key,
        "STRIPE_API_BASE": local_stripe.url,
    }

    result = subprocess.run(
        [sys.executable, "-m", "runtime.cli", "run-job", "settle-unanswered"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert "1 found in Stripe and recorded" in result.stderr
    with db.session() as s:
        assert (s.get(Order, order_id).amount_refunded, s.get(Order, order_id).amount_refund_pending) == (
            1000,
            0,
        )
    assert any("Stripe made it" in p for p in audit_posts(acting))
