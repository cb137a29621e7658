"""Money exactly once under faults, through Slack: refunds and new orders asked by signed Slack requests, over a
network to Stripe that stalls, drops requests, loses answers, fails with 5xx and 429 and goes down (a fault-injecting
stand-in in front of localstripe that keeps Stripe's idempotency), followed by retries, a second admin, the settle
job and Stripe's webhook. After each story, what Stripe made and what our records say must agree."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
import stripe
from slack_sdk import WebClient
from sqlalchemy import func, select, text

from bot.actions import Actions
from bot.actions.ledger import IN_FLIGHT
from bot.actions.settling import Settled
from bot.models import ActionAttempt, Customer, Order, OrderLine, Payment, Refund
from bot.stripe_gateway import CallLimits, StripeGateway
from bot.webhooks import StripeWebhooks
from devkit.local_slack import SlackPerson, wsgi_transport
from runtime.app import actions_for, create_app
from runtime.jobs import run_settle_unanswered
from runtime.web import WebApp
from tests import factories as make
from tests.clock import Clock
from tests.conftest import SIGNING_SECRET, Harness, settings_for
from tests.slack_text import buttons, text_of
from tests.stripe_standin import StripeStandIn
from tests.stripe_support import (
    CARD_AUTHENTICATION_REQUIRED,
    local_stripe_client,
    paid_payment_intent,
    stripe_customer_with_card,
)
from tests.test_webhooks import event, post, signed

ADMIN, OTHER_ADMIN = "U0ADMIN01", "U0ADMIN02"
AUDIT_CHANNEL = "C0AUDIT01"
WEBHOOK_SECRET = "whsec_faults"
# Short, so a stalled call gives up in a test's time: the budget bounds a whole call, retries included.
LIMITS = CallLimits(connect_timeout=0.5, read_timeout=0.3, budget=1.5, retry_delays=(0.01, 0.01, 0.01))
SETTLE_AFTER = IN_FLIGHT + timedelta(seconds=1)


@dataclass
class Shop:
    """The bot as a merchant runs it: Slack in front, the clock process's settle job, Stripe behind a network."""

    harness: Harness
    actions: Actions
    clock: Clock
    stand_in: StripeStandIn
    stripe: stripe.StripeClient  # straight to localstripe: what Stripe really holds

    def admin(self, user_id: str = ADMIN) -> SlackPerson:
        return SlackPerson(
            self.harness.slack, wsgi_transport(self.harness.web), SIGNING_SECRET, user_id=user_id
        )

    def settle(self) -> Settled:
        self.clock.advance(SETTLE_AFTER)
        return run_settle_unanswered(self.actions.settler)


@pytest.fixture
def stand_in(local_stripe) -> Iterator[StripeStandIn]:
    with StripeStandIn(local_stripe.url) as proxy:
        yield proxy
        assert proxy.errors == []


@pytest.fixture
def shop(db, slack, local_stripe, stand_in) -> Shop:
    clock = Clock()
    settings = settings_for(
        db, slack, payment_admins=frozenset({ADMIN, OTHER_ADMIN}), audit_channel=AUDIT_CHANNEL
    )
    gateway = StripeGateway.connect(local_stripe.api_key, api_base=stand_in.url, limits=LIMITS)
    client = WebClient(token=settings.slack_bot_token, base_url=settings.slack_api_url)
    actions = actions_for(settings, db, client, gateway=gateway, clock=clock)
    webhooks = StripeWebhooks(db, gateway, WEBHOOK_SECRET, bot_made=actions.settler.bot_made)
    web = WebApp(create_app(settings, db, client=client, actions=actions), db, webhooks)
    harness = Harness(
        settings, db, slack, web, SlackPerson(slack, wsgi_transport(web), SIGNING_SECRET, user_id=ADMIN)
    )
    return Shop(harness, actions, clock, stand_in, local_stripe_client(local_stripe))


def jane_paid(shop: Shop, amount: int = 5000) -> tuple[int, int, str]:
    """Jane with a card in Stripe and one paid order: (customer id, order id, payment intent)."""
    customer, card = stripe_customer_with_card(shop.stripe, "jane.doe@example.com", name="Jane Doe")
    intent = paid_payment_intent(shop.stripe, customer, card, amount)
    with shop.harness.db.session() as s:
        jane = make.customer(s, "Jane Doe", stripe_customer_id=customer, default_payment_method_id=card)
        return jane.id, make.order(s, jane, amount, stripe_payment_intent_id=intent).id, intent


@dataclass
class Confirmation:
    """A refund or new order filled in and shown for confirmation: submit it to act."""

    person: SlackPerson
    view_id: str
    view: dict

    def submit(self, shop: Shop) -> None:
        shop.harness.slack.replace_view(self.view_id, self.view)
        self.person.submit(self.view)

    def outcome(self, shop: Shop) -> str:
        views = shop.harness.slack.views
        shop.harness.slack.wait_for(lambda: views[self.view_id].get("callback_id") == "result", timeout=20)
        return "\n".join(b["text"]["text"] for b in views[self.view_id]["blocks"] if b["type"] == "section")


def refund_form(shop: Shop, person: SlackPerson, order_id: int, amount: str) -> Confirmation:
    card = person.command("jane doe")
    person.click(card, f"open_order-{order_id}")
    person.click(shop.harness.slack.message(card.ts), f"refund_order-{order_id}")
    form = shop.harness.slack.latest_view()
    person.submit(form, {"amount": amount, "reason": "other"})  # localstripe refuses Stripe's refund reasons
    return Confirmation(person, form["id"], shop.harness.slack.views[form["id"]])


def new_order_form(shop: Shop, person: SlackPerson, amount: str, quantity: str = "1") -> Confirmation:
    card = person.command("jane doe")
    person.click(card, "new_order")
    form = shop.harness.slack.latest_view()
    person.submit(form, {"description": "Extra coaching call", "amount": amount, "quantity": quantity})
    return Confirmation(person, form["id"], shop.harness.slack.views[form["id"]])


def stripe_refunds(shop: Shop, intent: str) -> list[int]:
    return sorted(r.amount for r in shop.stripe.v1.refunds.list(params={"payment_intent": intent}).data)


def our_refunds(shop: Shop, order_id: int) -> list[int]:
    with shop.harness.db.session() as s:
        return sorted(s.scalars(select(Refund.amount).where(Refund.order_id == order_id)))


def books_agree(shop: Shop, order_id: int, intent: str) -> None:
    """Stripe's refunds of the order are ours, nothing is held back for a request that has ended, and every
    idempotency key reached Stripe at most once."""
    assert our_refunds(shop, order_id) == stripe_refunds(shop, intent)
    with shop.harness.db.session() as s:
        order = s.get(Order, order_id)
        payment = make.order_payment(s, order)
        held = s.scalar(
            select(func.coalesce(func.sum(ActionAttempt.reserved), 0)).where(
                ActionAttempt.target_type == "payment",
                ActionAttempt.target_id == payment.id,
                ActionAttempt.status == "pending",
            )
        )
        assert (order.amount_refunded, payment.amount_refund_pending) == (
            sum(our_refunds(shop, order_id)),
            held,
        )
    keys = {e.key for e in shop.stand_in.forwarded if e.method == "POST" and e.key}
    assert all(shop.stand_in.executed(key) == 1 for key in keys)


def audit_posts(shop: Shop) -> list[str]:
    return [
        c.args["text"] + " " + str(c.args["blocks"])
        for c in shop.harness.slack.calls
        if c.method == "chat.postMessage" and c.args["channel"] == AUDIT_CHANNEL
    ]


# --- a request whose answer never comes ----------------------------------------------------------------------


def test_a_stalled_refund_is_not_sent_again_by_a_second_admin_and_is_recorded_once(shop):
    _, order_id, intent = jane_paid(shop)
    first = refund_form(shop, shop.admin(ADMIN), order_id, "10.00")
    second = refund_form(shop, shop.admin(OTHER_ADMIN), order_id, "10.00")  # the same refund, the same view
    shop.stand_in.stall("POST", "/v1/refunds", then="forward")

    first.submit(shop)
    shop.stand_in.wait_for_stalled(1)
    assert "cannot tell yet whether it went through" in first.outcome(shop)
    shop.clock.advance(timedelta(minutes=2))  # long past the old takeover, well inside a try's window
    second.submit(shop)

    assert "so it was not sent again" in second.outcome(shop)
    shop.stand_in.release()  # the first request reaches Stripe late
    shop.stand_in.wait_until_idle()
    assert stripe_refunds(shop, intent) == [1000] and our_refunds(shop, order_id) == []
    assert shop.settle() == Settled(recorded=1)
    books_agree(shop, order_id, intent)
    assert any("Stripe made it" in post and "$10.00" in post for post in audit_posts(shop))


def test_a_second_admin_on_a_stale_form_is_told_the_order_changed_and_a_fresh_one_refunds_on_top(shop):
    _, order_id, intent = jane_paid(shop)
    first = refund_form(shop, shop.admin(ADMIN), order_id, "10.00")
    stale = refund_form(shop, shop.admin(OTHER_ADMIN), order_id, "20.00")
    shop.stand_in.stall("POST", "/v1/refunds", then="forward")
    first.submit(shop)
    shop.stand_in.wait_for_stalled(1)

    stale.submit(shop)
    assert "changed since you opened this form" in stale.outcome(shop) and "$10.00 awaits" in stale.outcome(
        shop
    )

    fresh = refund_form(shop, shop.admin(OTHER_ADMIN), order_id, "20.00")
    assert "awaits its answer" in text_of_view(fresh.view) or "awaits Stripe" in text_of_view(fresh.view)
    fresh.submit(shop)
    assert "Refunded $20.00" in fresh.outcome(shop)
    assert "cannot tell yet" in first.outcome(shop), "the first gave up waiting"
    shop.stand_in.release()  # and reaches Stripe late
    shop.stand_in.wait_until_idle()
    assert shop.settle() == Settled(recorded=1)
    assert stripe_refunds(shop, intent) == [1000, 2000]
    books_agree(shop, order_id, intent)


def text_of_view(view: dict) -> str:
    return "\n".join(
        element.get("text", "")
        for block in view["blocks"]
        for element in [block.get("text") or {}, *(block.get("elements") or [])]
        if isinstance(element, dict)
    )


def test_after_stripe_refused_the_first_admins_refund_the_second_admins_same_refund_goes_ahead(shop):
    _, order_id, intent = jane_paid(shop)
    first = refund_form(shop, shop.admin(ADMIN), order_id, "10.00")
    second = refund_form(shop, shop.admin(OTHER_ADMIN), order_id, "10.00")
    refused = {"error": {"type": "invalid_request_error", "message": "This charge is being reviewed."}}
    shop.stand_in.fail("POST", "/v1/refunds", 400, body=refused)

    first.submit(shop)
    assert "Stripe refused to do this: This charge is being reviewed." in first.outcome(shop)
    books_agree(shop, order_id, intent)  # nothing held back after a definite no
    second.submit(shop)

    assert "Refunded $10.00" in second.outcome(shop)
    assert stripe_refunds(shop, intent) == [1000]
    books_agree(shop, order_id, intent)


def test_a_refund_whose_answer_was_lost_is_found_by_the_retry_not_made_again(shop):
    _, order_id, intent = jane_paid(shop)
    asked = refund_form(shop, shop.admin(), order_id, "10.00")
    shop.stand_in.lose_answer("POST", "/v1/refunds", times=None)  # every try's answer, replays too
    asked.submit(shop)
    assert "cannot tell yet" in asked.outcome(shop)
    assert stripe_refunds(shop, intent) == [1000], "Stripe made it; the bot never heard"

    shop.stand_in.disarm()
    asked.submit(shop)
    assert "so it was not sent again" in asked.outcome(shop), "too soon: the first try could still be running"
    shop.clock.advance(SETTLE_AFTER)
    asked.submit(shop)

    assert "Refunded $10.00" in asked.outcome(shop)
    books_agree(shop, order_id, intent)
    card = shop.admin().command("jane doe")
    shop.admin().click(card, f"open_order-{order_id}")
    assert "*Still refundable*\n$40.00" in text_of(shop.harness.slack.message(card.ts))


def test_a_second_admin_coming_back_later_sends_the_first_admins_request_not_a_new_one(shop):
    _, order_id, intent = jane_paid(shop)
    first = refund_form(shop, shop.admin(ADMIN), order_id, "10.00")
    second = refund_form(shop, shop.admin(OTHER_ADMIN), order_id, "10.00")
    shop.stand_in.lose_answer("POST", "/v1/refunds", times=None)
    first.submit(shop)
    assert "cannot tell yet" in first.outcome(shop)
    shop.stand_in.disarm()
    shop.clock.advance(SETTLE_AFTER)

    second.submit(shop)

    assert "Refunded $10.00" in second.outcome(shop)
    [replayed] = [e for e in shop.stand_in.log if e.method == "POST" and e.replayed]
    assert replayed.params["metadata[requested_by]"] == ADMIN, (
        "the same request, so Stripe replays its answer"
    )
    assert stripe_refunds(shop, intent) == [1000]
    books_agree(shop, order_id, intent)


def test_a_settle_run_that_could_not_ask_stripe_leaves_the_sent_key_to_be_sent_again(shop):
    _, order_id, intent = jane_paid(shop)
    asked = refund_form(shop, shop.admin(), order_id, "10.00")
    shop.stand_in.lose_answer("POST", "/v1/refunds", times=None)
    asked.submit(shop)
    assert "cannot tell yet" in asked.outcome(shop)
    shop.stand_in.disarm()
    shop.stand_in.down()
    assert shop.settle() == Settled(unreachable=1)
    shop.stand_in.up()
    shop.clock.advance(SETTLE_AFTER)  # the person comes back before the next settle run

    asked.submit(shop)

    assert "Refunded $10.00" in asked.outcome(shop)
    assert stripe_refunds(shop, intent) == [1000], "the key Stripe had was sent again, and replayed"
    books_agree(shop, order_id, intent)


def test_a_refund_that_never_reached_stripe_is_let_go_by_the_settle_job_and_can_be_asked_again(shop):
    _, order_id, intent = jane_paid(shop)
    asked = refund_form(shop, shop.admin(), order_id, "50.00")
    shop.stand_in.drop_before("POST", "/v1/refunds", times=None)
    asked.submit(shop)
    assert "cannot tell yet" in asked.outcome(shop)
    card = shop.admin().command("jane doe")
    shop.admin().click(card, f"open_order-{order_id}")
    held = shop.harness.slack.message(card.ts)
    assert "Awaiting Stripe's answer: refund $50.00" in text_of(held)
    assert not any(b.startswith("Refund") for b in buttons(held)), "all of it is held back meanwhile"

    assert shop.settle() == Settled(let_go=1)
    assert [p for p in audit_posts(shop) if "did not happen" in p and "$50.00" in p]
    books_agree(shop, order_id, intent)
    shop.stand_in.disarm()
    asked.submit(shop)
    assert "Refunded $50.00" in asked.outcome(shop)
    assert stripe_refunds(shop, intent) == [5000]
    books_agree(shop, order_id, intent)


def test_a_server_error_after_stripe_acted_is_replayed_and_the_settle_job_records_what_stripe_made(shop):
    _, order_id, intent = jane_paid(shop)
    asked = refund_form(shop, shop.admin(), order_id, "12.50")
    shop.stand_in.fail("POST", "/v1/refunds", 500, acted=True)  # Stripe acted, answered 500, replays it
    asked.submit(shop)
    assert "cannot tell yet" in asked.outcome(shop)
    assert stripe_refunds(shop, intent) == [1250]

    assert shop.settle() == Settled(recorded=1)
    books_agree(shop, order_id, intent)


def test_rate_limits_are_waited_out_within_the_call(shop):
    _, order_id, intent = jane_paid(shop)
    asked = refund_form(shop, shop.admin(), order_id, "5.00")
    shop.stand_in.fail("POST", "/v1/refunds", 429, times=2)
    asked.submit(shop)
    assert "Refunded $5.00" in asked.outcome(shop)
    books_agree(shop, order_id, intent)


def test_stripe_down_for_minutes_changes_nothing_and_is_settled_afterwards(shop):
    _, order_id, intent = jane_paid(shop)
    asked = refund_form(shop, shop.admin(), order_id, "10.00")
    shop.stand_in.down()
    asked.submit(shop)
    assert "cannot tell yet" in asked.outcome(shop)
    assert shop.settle() == Settled(unreachable=1), "Stripe cannot be asked yet: nothing is decided"
    shop.stand_in.up()

    assert shop.settle() == Settled(let_go=1)
    assert stripe_refunds(shop, intent) == []
    books_agree(shop, order_id, intent)


def test_a_refund_our_records_could_not_take_is_never_called_not_done_and_is_recorded_later(shop):
    _, order_id, intent = jane_paid(shop)
    asked = refund_form(shop, shop.admin(), order_id, "10.00")
    with refusing_refund_rows(shop.harness.db):
        asked.submit(shop)
        said = asked.outcome(shop)
    assert "Stripe did it" in said and "nothing was done" not in said
    assert stripe_refunds(shop, intent) == [1000] and our_refunds(shop, order_id) == []

    assert shop.settle() == Settled(recorded=1)
    books_agree(shop, order_id, intent)


class refusing_refund_rows:  # noqa: N801 - reads as what it does: `with refusing_refund_rows(db):`
    """The database refuses every new refund row while in the block (a trigger), as a failing disk would."""

    def __init__(self, db) -> None:
        self.db = db
        self.postgres = db.engine.dialect.name == "postgresql"

    def __enter__(self) -> None:
        with self.db.engine.begin() as connection:
            if self.postgres:
                connection.execute(
                    text(
                        "CREATE FUNCTION refuse_refund() RETURNS trigger LANGUAGE plpgsql AS "
                        "$$ BEGIN RAISE EXCEPTION 'simulated: the disk is full'; END $$"
                    )
                )
                connection.execute(
                    text(
                        "CREATE TRIGGER refuse_refund BEFORE INSERT ON refunds FOR EACH ROW "
                        "EXECUTE FUNCTION refuse_refund()"
                    )
                )
            else:
                connection.execute(
                    text(
                        "CREATE TRIGGER refuse_refund BEFORE INSERT ON refunds "
                        "BEGIN SELECT RAISE(ABORT, 'simulated: the disk is full'); END"
                    )
                )

    def __exit__(self, *_exc: object) -> None:
        with self.db.engine.begin() as connection:
            connection.execute(text("DROP TRIGGER refuse_refund" + (" ON refunds" if self.postgres else "")))
            if self.postgres:
                connection.execute(text("DROP FUNCTION refuse_refund()"))


def test_stripes_webhook_settles_a_lost_refund_at_once(shop):
    _, order_id, intent = jane_paid(shop)
    asked = refund_form(shop, shop.admin(), order_id, "10.00")
    shop.stand_in.lose_answer("POST", "/v1/refunds", times=None)
    asked.submit(shop)
    assert "cannot tell yet" in asked.outcome(shop)
    shop.stand_in.disarm()
    latest = shop.stripe.v1.payment_intents.retrieve(intent).latest_charge
    charge = latest if isinstance(latest, str) else latest.id

    body, signature = signed(
        event("evt_refunded_1", "charge.refunded", {"id": charge, "object": "charge"}), WEBHOOK_SECRET
    )
    assert post(shop.harness.web, body, signature)[0] == "200 OK"

    books_agree(shop, order_id, intent)
    assert our_refunds(shop, order_id) == [1000]
    assert any("confirmed by Stripe" in p for p in audit_posts(shop))
    assert shop.settle() == Settled(), "nothing left to settle"


def test_what_people_typed_stays_text_in_the_modal(shop):
    customer, card = stripe_customer_with_card(shop.stripe, "mallory@example.com", name="<!channel> Mallory")
    intent = paid_payment_intent(shop.stripe, customer, card, 5000)
    with shop.harness.db.session() as s:
        owner = make.customer(s, "<!channel> <https://evil.example|Verify your card>", "mallory@example.com")
        order_id = make.order(s, owner, 5000, stripe_payment_intent_id=intent).id
    person = shop.admin()
    card_message = person.command("mallory@example.com")
    person.click(card_message, f"open_order-{order_id}")
    person.click(shop.harness.slack.message(card_message.ts), f"refund_order-{order_id}")
    form = shop.harness.slack.latest_view()
    person.submit(form, {"amount": "10.00", "reason": "other"})
    asked = Confirmation(person, form["id"], shop.harness.slack.views[form["id"]])

    asked.submit(shop)

    said = asked.outcome(shop)
    assert "Refunded $10.00" in said
    assert "<!channel>" not in said and "<https://" not in said and "&lt;!channel&gt;" in said


# --- new orders ---------------------------------------------------------------------------------------------


def test_a_charge_whose_answer_was_lost_is_charged_once_and_becomes_an_order(shop):
    jane_id, _, _ = jane_paid(shop, 2000)
    asked = new_order_form(shop, shop.admin(), "90", quantity="2")
    shop.stand_in.lose_answer("POST", "/v1/payment_intents", times=None)
    asked.submit(shop)
    assert "cannot tell yet" in asked.outcome(shop)
    asked.submit(shop)  # a double submit meanwhile
    assert "so it was not sent again" in asked.outcome(shop)
    shop.stand_in.disarm()

    assert shop.settle() == Settled(recorded=1)

    with shop.harness.db.session() as s:
        orders = s.scalars(select(Order).where(Order.customer_id == jane_id).order_by(Order.id)).all()
        assert [(o.total, o.source) for o in orders] == [(2000, "checkout"), (18000, "internal")]
        line = s.scalars(select(OrderLine).where(OrderLine.order_id == orders[-1].id)).one()
        assert (line.description, line.quantity, line.unit_amount) == ("Extra coaching call", 2, 9000)
        stripe_customer = s.get(Customer, jane_id).stripe_customer_id
    charged = shop.stripe.v1.payment_intents.list(params={"customer": stripe_customer}).data
    assert sorted(pi.amount for pi in charged) == [2000, 18000], "charged once"
    assert "*Lifetime value*\n$200.00" in text_of(shop.admin().command("jane doe"))


def test_the_same_charge_asked_again_with_another_note_while_stripe_may_have_made_it_is_not_sent(shop):
    """A note says why, not what: two admins asking for the same charge of the same card, each with their own
    note, while Stripe's answer to the first is lost, charge the card once."""

    def charge_with_note(person: SlackPerson, note: str) -> Confirmation:
        card = person.command("jane doe")
        person.click(card, "new_order")
        form = shop.harness.slack.latest_view()
        person.submit(form, {"description": "Extra coaching call", "amount": "90", "note": note})
        return Confirmation(person, form["id"], shop.harness.slack.views[form["id"]])

    jane_id, _, _ = jane_paid(shop, 2000)
    first = charge_with_note(shop.admin(ADMIN), "per ticket 12")
    shop.stand_in.lose_answer("POST", "/v1/payment_intents", times=None)
    first.submit(shop)
    assert "cannot tell yet" in first.outcome(shop)

    second = charge_with_note(shop.admin(OTHER_ADMIN), "customer asked by email")
    second.submit(shop)

    assert "so it was not sent again" in second.outcome(shop)
    shop.stand_in.disarm()
    assert shop.settle() == Settled(recorded=1)
    with shop.harness.db.session() as s:
        stripe_customer = s.get(Customer, jane_id).stripe_customer_id
    charged = shop.stripe.v1.payment_intents.list(params={"customer": stripe_customer}).data
    assert sorted(pi.amount for pi in charged) == [2000, 9000], "charged once"


def test_a_gateway_call_gives_up_within_its_budget():
    import time

    from tests.stripe_support import RecordingHTTPClient

    slow = RecordingHTTPClient().fail_with_connection_error(times=100)
    gateway = StripeGateway.connect("sk_test_x", http_client=slow, limits=LIMITS)
    started = time.monotonic()
    with pytest.raises(Exception, match="could not be reached"):
        gateway.refund("pi_1", 100, reason=None, metadata={}, idempotency_key="k1")
    assert time.monotonic() - started < LIMITS.budget
    assert len(slow.requests) == 1 + len(LIMITS.retry_delays)


def test_a_card_that_needs_the_customer_is_not_charged_and_its_payment_is_cancelled(shop):
    customer, card = stripe_customer_with_card(
        shop.stripe, "jane.doe@example.com", CARD_AUTHENTICATION_REQUIRED, name="Jane Doe"
    )
    with shop.harness.db.session() as s:
        jane_id = make.customer(s, "Jane Doe", stripe_customer_id=customer, default_payment_method_id=card).id
    asked = new_order_form(shop, shop.admin(), "90")

    asked.submit(shop)

    said = asked.outcome(shop)
    assert "confirm this payment themselves" in said and "Nothing was taken" in said
    [intent] = shop.stripe.v1.payment_intents.list(params={"customer": customer}).data
    assert intent.status == "canceled", "it can never be completed beside a charge asked for again"
    with shop.harness.db.session() as s:
        assert s.scalar(select(func.count()).select_from(Order).where(Order.customer_id == jane_id)) == 0


# --- Refund whole order: every payment of an order, each once ----------------------------------------------------


def jane_subscribed(shop: Shop, months: int = 3) -> tuple[int, list[str]]:
    """Jane in Stripe with a checkout, a Pro Membership paid `months` times (its first payment and renewals, all
    payments of its one order) and a payment plan with two instalments: (the subscription's order id, its payment
    intents, newest first)."""
    customer, card = stripe_customer_with_card(shop.stripe, "jane.doe@example.com", name="Jane Doe")
    with shop.harness.db.session() as s:
        jane = make.customer(s, "Jane Doe", stripe_customer_id=customer, default_payment_method_id=card)
        make.order(
            s, jane, 5000, stripe_payment_intent_id=paid_payment_intent(shop.stripe, customer, card, 5000)
        )
        sub = make.subscription(s, jane, "Pro Membership")
        intents = []
        for month in range(months):
            intents.append(paid_payment_intent(shop.stripe, customer, card, 2900))
            due = make.T0 + timedelta(days=31 * month)
            make.payment(
                s,
                sub,
                kind="initial" if month == 0 else None,
                due_at=due,
                stripe_payment_intent_id=intents[-1],
            )
        plan = make.payment_plan(s, jane, "Guitar course", total=6, paid=2, amount=15000)
        for month in range(2):
            make.payment(s, plan, due_at=make.T0 + timedelta(days=31 * month))
        order_id = s.scalar(select(Order.id).where(Order.recurring_id == sub.id))
    return order_id, intents[::-1]


def whole_order_confirmation(
    shop: Shop, person: SlackPerson, order_id: int, reason: str = "other"
) -> Confirmation:
    card = person.command("jane doe")
    person.click(card, f"open_order-{order_id}")
    person.click(shop.harness.slack.message(card.ts), f"refund_whole_order-{order_id}")
    form = shop.harness.slack.latest_view()
    person.submit(form, {"reason": reason})  # localstripe refuses Stripe's refund reasons
    return Confirmation(person, form["id"], shop.harness.slack.views[form["id"]])


def answered(shop: Shop, confirmation: Confirmation) -> dict:
    """The modal once the refunds were answered: a result, or the answer offering Try again."""
    views = shop.harness.slack.views

    def done() -> bool:
        view = views[confirmation.view_id]
        return view.get("callback_id") == "result" or (view.get("submit") or {}).get("text") == "Try again"

    shop.harness.slack.wait_for(done, timeout=20)
    return views[confirmation.view_id]


def said(view: dict) -> str:
    return "\n".join(b["text"]["text"] for b in view["blocks"] if b["type"] == "section")


def whole_order_books_agree(shop: Shop, order_id: int, intents: list[str]) -> None:
    """Each payment's refunds in Stripe are ours, the order adds up its payments, nothing is held back."""
    with shop.harness.db.session() as s:
        payments = {
            p.stripe_payment_intent_id: p
            for p in s.scalars(select(Payment).where(Payment.order_id == order_id))
        }
        order = s.get(Order, order_id)
        for intent in intents:
            assert stripe_refunds(shop, intent) == sorted(
                s.scalars(select(Refund.amount).where(Refund.payment_id == payments[intent].id))
            )
            assert payments[intent].amount_refund_pending == 0
        assert order.amount_refunded == sum(p.amount_refunded for p in payments.values())
        assert order.total == sum(p.amount for p in payments.values() if p.status == "paid")
    keys = {e.key for e in shop.stand_in.forwarded if e.method == "POST" and e.key}
    assert all(shop.stand_in.executed(key) == 1 for key in keys)


def test_orders_are_what_was_placed_and_refund_whole_order_refunds_each_payment_once(shop):
    order_id, intents = jane_subscribed(shop)
    card = text_of(shop.admin().command("jane doe"))
    assert "*Orders*\n3" in card, "a checkout, a subscription and a payment plan: three orders placed"
    assert "*Lifetime value*\n$437.00" in card, "$50 + 3 × $29 + 2 × $150, every payment collected"
    confirmation = whole_order_confirmation(shop, shop.admin(), order_id)
    stated = said(confirmation.view)
    assert "Refund *$87.00 USD* of order #" in stated and "in 3 payments, each a refund of its own" in stated
    assert confirmation.view["submit"]["text"] == "Refund $87.00"

    confirmation.submit(shop)
    outcome = said(answered(shop, confirmation))

    assert "Refunded $87.00 of order #" in outcome and "(Jane Doe) in 3 payments." in outcome
    assert [stripe_refunds(shop, intent) for intent in intents] == [[2900]] * 3
    whole_order_books_agree(shop, order_id, intents)
    with shop.harness.db.session() as s:
        assert s.get(Order, order_id).status == "refunded"

    confirmation.submit(shop)  # the same confirmation again: a double click, or Slack showing it twice
    assert "already done before" in said(answered(shop, confirmation))
    assert [stripe_refunds(shop, intent) for intent in intents] == [[2900]] * 3, "nothing refunded twice"
    whole_order_books_agree(shop, order_id, intents)


def test_two_clicks_at_once_on_refund_whole_order_refund_each_payment_once(shop):
    import threading

    order_id, intents = jane_subscribed(shop)
    confirmation = whole_order_confirmation(shop, shop.admin(), order_id)
    shop.stand_in.stall("POST", "/v1/refunds", times=1, then="forward")  # the first click is still at Stripe

    slack = shop.harness.slack

    def answers() -> int:  # each click's lazy listener ends by putting its answer in the modal
        return sum(
            c.method == "views.update" and c.args.get("view_id") == confirmation.view_id for c in slack.calls
        )

    first = threading.Thread(target=confirmation.submit, args=(shop,))
    first.start()
    shop.stand_in.wait_for_stalled(1)
    shop.harness.person.submit(confirmation.view)  # the second click, while the first waits on Stripe
    shop.stand_in.release()
    first.join()
    slack.wait_for(lambda: answers() == 2, timeout=20)
    shop.stand_in.wait_until_idle()

    assert [stripe_refunds(shop, intent) for intent in intents] == [[2900]] * 3
    whole_order_books_agree(shop, order_id, intents)


def test_a_payment_stripe_refuses_in_the_middle_is_named_and_try_again_sends_only_it(shop):
    from tests.stripe_standin import stripe_error

    order_id, intents = jane_subscribed(shop)
    confirmation = whole_order_confirmation(shop, shop.admin(), order_id)
    refused = stripe_error("invalid_request_error", "This charge is being reviewed.")
    shop.stand_in.fail("POST", "/v1/refunds", 400, times=1, body=refused)  # the newest payment's refund

    confirmation.submit(shop)
    answer = answered(shop, confirmation)
    outcome = said(answer)

    assert "Refunded $58.00 of order #" in outcome and "(2 payments of 3)" in outcome
    assert (
        "Not refunded: the renewal of 2026-03-18 ($29.00) — Stripe refused to do this: This charge is being "
        "reviewed. Try again refunds only those." in outcome
    )
    assert answer["submit"]["text"] == "Try again"
    assert [stripe_refunds(shop, intent) for intent in intents] == [[], [2900], [2900]]
    whole_order_books_agree(shop, order_id, intents)
    sent = len([e for e in shop.stand_in.forwarded if e.method == "POST" and e.path == "/v1/refunds"])

    shop.harness.slack.replace_view(confirmation.view_id, answer)
    shop.admin().submit(answer)  # Try again: the very same request
    again = said(answered(shop, Confirmation(confirmation.person, confirmation.view_id, answer)))

    assert "Refunded $87.00 of order #" in again and "in 3 payments" in again
    assert [stripe_refunds(shop, intent) for intent in intents] == [[2900]] * 3
    resent = [e for e in shop.stand_in.forwarded if e.method == "POST" and e.path == "/v1/refunds"][sent:]
    assert len(resent) == 1, "only the refused payment was sent again"
    whole_order_books_agree(shop, order_id, intents)


def test_a_whole_order_refund_stripe_refuses_entirely_says_nothing_was_refunded(shop):
    from tests.stripe_standin import stripe_error

    order_id, intents = jane_subscribed(shop, months=2)
    confirmation = whole_order_confirmation(shop, shop.admin(), order_id)
    shop.stand_in.fail(
        "POST", "/v1/refunds", 400, times=None, body=stripe_error("invalid_request_error", "No.")
    )

    confirmation.submit(shop)
    outcome = said(answered(shop, confirmation))

    assert ":x:" in outcome and "Nothing was refunded on order #" in outcome and "Refunded" not in outcome
    assert [stripe_refunds(shop, intent) for intent in intents] == [[], []]
    whole_order_books_agree(shop, order_id, intents)


def test_an_order_with_more_payments_than_one_confirmation_holds_is_refunded_in_turns(shop):
    from blocks.limits import message_problems

    with shop.harness.db.session() as s:
        jane = make.customer(s, "Jane Doe")
        sub = make.subscription(s, jane, "Daily data feed", amount=100)
        for day in range(130):
            make.payment(
                s, sub, due_at=make.T0 + timedelta(days=day), stripe_payment_intent_id=f"pi_day{day}"
            )
        order_id = s.scalar(select(Order.id).where(Order.recurring_id == sub.id))

    confirmation = whole_order_confirmation(shop, shop.admin(), order_id)

    stated = said(confirmation.view)
    assert "the newest 80 payments still refundable" in stated and "50 older ones are left" in stated
    assert confirmation.view["submit"]["text"] == "Refund $80.00"
    assert len(confirmation.view["private_metadata"]) <= 3000
    assert message_problems(confirmation.view["blocks"], view=True) == []

    # With a whole note of signs Slack's form memory cannot hold, the form says so and nothing goes ahead.
    person = shop.admin()
    card = person.command("jane doe")
    person.click(card, f"open_order-{order_id}")
    person.click(shop.harness.slack.message(card.ts), f"refund_whole_order-{order_id}")
    form = shop.harness.slack.latest_view()
    answer = person.submit(form, {"reason": "other", "note": "<>&" * 166})
    assert answer["response_action"] == "errors" and "Shorten the note" in answer["errors"]["note"]
    with shop.harness.db.session() as s:
        assert s.scalar(select(func.count()).select_from(ActionAttempt)) == 0
