"""Exactly once, under randomized interleavings: Hypothesis drives two admins filling in refunds and new orders in
Slack, confirming them (again), while the network to Stripe stalls, drops requests, loses answers, fails and goes
down, with Stripe's webhook, time passing and the settle job in between. Confirmations run concurrently in the
app's lazy listeners, as in Slack. Whenever the bot is quiet, and after everything is settled at the end:
- every refund and charge Stripe made is in our records, or belongs to a request still awaiting Stripe's answer,
  and everything in our records was made by Stripe;
- no request made more than one object in Stripe;
- what an order holds back for refunds awaiting Stripe is exactly what its open requests reserved;
- at the end no request is left open, and Stripe and our records agree to the cent.
"""

from __future__ import annotations

import itertools
import os
from collections import Counter
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import event as hypothesis_event
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, rule, run_state_machine_as_test
from slack_sdk import WebClient
from sqlalchemy import func, select

from bot.actions.ledger import IN_FLIGHT
from bot.models import ActionAttempt, Customer, Order, Payment, Refund
from bot.stripe_gateway import ACTION_KEY, CallLimits, StripeGateway
from bot.webhooks import StripeWebhooks
from devkit.local_slack import SlackPerson, TrackedExecutor, wsgi_transport
from runtime.app import actions_for, create_app
from runtime.web import WebApp
from tests import factories as make
from tests.clock import Clock
from tests.conftest import SIGNING_SECRET, settings_for
from tests.stripe_standin import StripeStandIn
from tests.stripe_support import local_stripe_client, paid_payment_intent, stripe_customer_with_card
from tests.test_webhooks import event, post, signed

ADMINS = ("U0ADMIN01", "U0ADMIN02")
WEBHOOK_SECRET = "whsec_exactly_once"
LIMITS = CallLimits(connect_timeout=0.2, read_timeout=0.1, budget=0.4, retry_delays=(0.01, 0.01, 0.01))
PAID = 5000
# Bounded for CI; EXACTLY_ONCE_EXAMPLES=500 explores further.
EXAMPLES = int(os.environ.get("EXACTLY_ONCE_EXAMPLES", "25"))
_cases = itertools.count(1)

FAULTS = {
    "refund request dropped": lambda s: s.drop_before("POST", "/v1/refunds"),
    "refund requests all dropped": lambda s: s.drop_before("POST", "/v1/refunds", times=None),
    "refund answer lost": lambda s: s.lose_answer("POST", "/v1/refunds"),
    "refund answers all lost": lambda s: s.lose_answer("POST", "/v1/refunds", times=None),
    "refund 500 after acting": lambda s: s.fail("POST", "/v1/refunds", 500, acted=True),
    "refund 503 before acting": lambda s: s.fail("POST", "/v1/refunds", 503, times=None),
    "refund rate limited": lambda s: s.fail("POST", "/v1/refunds", 429, times=2),
    "refund stalled, then lands": lambda s: s.stall("POST", "/v1/refunds", then="forward"),
    "refund stalled, then dropped": lambda s: s.stall("POST", "/v1/refunds", then="drop"),
    "refund stalled, lands unheard": lambda s: s.stall("POST", "/v1/refunds", then="lose"),
    "charge answer lost": lambda s: s.lose_answer("POST", "/v1/payment_intents"),
    "charge answers all lost": lambda s: s.lose_answer("POST", "/v1/payment_intents", times=None),
    "charge stalled, then lands": lambda s: s.stall("POST", "/v1/payment_intents", then="forward"),
    "charge 500 after acting": lambda s: s.fail("POST", "/v1/payment_intents", 500, acted=True),
    "Stripe down": lambda s: s.down(),
}


ADMIN = st.sampled_from(ADMINS)
REFUND_AMOUNTS = st.sampled_from(["10.00", "20.00", "25.00"])
FAULT = st.none() | st.sampled_from(sorted(FAULTS))


class Confirmation:
    """A refund or new order filled in, its confirmation shown: submitting it asks the bot to act."""

    def __init__(self, person: SlackPerson, view: dict) -> None:
        self.person, self.view = person, view

    def __repr__(self) -> str:
        return f"Confirmation({self.person.user_id}, {self.view['submit']['text']['text']!r})"


class ExactlyOnce(RuleBasedStateMachine):
    confirmations = Bundle("confirmations")

    def __init__(self, parts) -> None:
        super().__init__()
        self.db, self.slack, self.stand_in, self.stripe, self.web, self.actions, self.clock, self.executor = (
            parts
        )
        case = next(_cases)
        self.email = f"case{case}.{id(self)}@example.com"
        customer, card = stripe_customer_with_card(self.stripe, self.email, name=f"Case {case}")
        self.intent = paid_payment_intent(self.stripe, customer, card, PAID)
        self.stripe_customer = customer
        with self.db.session() as s:
            owner = make.customer(
                s, f"Case {case}", self.email, stripe_customer_id=customer, default_payment_method_id=card
            )
            self.customer_id = owner.id
            self.order_id = make.order(s, owner, PAID, stripe_payment_intent_id=self.intent).id
        self.events = itertools.count(1)
        self.started = self.clock()

    def person(self, admin: str) -> SlackPerson:
        return SlackPerson(self.slack, wsgi_transport(self.web), SIGNING_SECRET, user_id=admin)

    # What people do ---------------------------------------------------------------------------------------

    def open_refund_form(self, admin: str, amount: str) -> Confirmation | None:
        person = self.person(admin)
        card = person.command(self.email)
        person.click(card, f"open_order-{self.order_id}")
        record = self.slack.message(card.ts)
        if f"refund_order-{self.order_id}" not in str(record.blocks):
            return None  # nothing left to refund, or all of it awaiting Stripe
        opened = len(self.slack.opened)
        person.click(record, f"refund_order-{self.order_id}")
        if len(self.slack.opened) == opened:
            return None  # changed meanwhile (a request in flight landed): told so instead of a form
        form = self.slack.latest_view()
        answer = person.submit(form, {"amount": amount, "reason": "other"})
        if answer.get("response_action") != "update":
            return None  # more than is left: told so in the form
        return Confirmation(person, self.slack.views[form["id"]])

    def open_new_order_form(self, admin: str, amount: str) -> Confirmation:
        person = self.person(admin)
        card = person.command(self.email)
        opened = len(self.slack.opened)
        person.click(card, "new_order")
        assert len(self.slack.opened) == opened + 1, "the New order form opens"
        form = self.slack.latest_view()
        answer = person.submit(
            form, {"description": "Extra coaching call", "amount": amount, "quantity": "1"}
        )
        assert answer["response_action"] == "update", answer
        return Confirmation(person, self.slack.views[form["id"]])

    def submit(self, confirmation: Confirmation, fault: str | None) -> None:
        """Submit a confirmation (again: a double click, a retry, a second look), with the network as `fault`
        leaves it, without waiting for the outcome: the bot acts in its lazy listener meanwhile."""
        if fault:
            FAULTS[fault](self.stand_in)
        self.slack.replace_view(confirmation.view["id"], confirmation.view)
        confirmation.person.submit(confirmation.view)

    # A form that could not be filled in (nothing left to refund, at that moment) goes into the bundle as None, so
    # what Hypothesis draws never depends on how the app's threads raced.

    @rule(target=confirmations, admin=ADMIN, amount=REFUND_AMOUNTS, fault=FAULT)
    def refund(self, admin: str, amount: str, fault: str | None) -> Confirmation | None:
        confirmation = self.open_refund_form(admin, amount)
        if confirmation is not None:
            self.submit(confirmation, fault)
        return confirmation

    @rule(target=confirmations, admin=ADMIN, amount=REFUND_AMOUNTS)
    def fill_in_a_refund_for_later(self, admin: str, amount: str) -> Confirmation | None:
        return self.open_refund_form(admin, amount)

    @rule(target=confirmations, admin=ADMIN, amount=st.sampled_from(["9.00", "15.00"]), fault=FAULT)
    def charge(self, admin: str, amount: str, fault: str | None):
        confirmation = self.open_new_order_form(admin, amount)
        self.submit(confirmation, fault)
        return confirmation

    @rule(confirmation=confirmations, fault=FAULT)
    def confirm_again(self, confirmation: Confirmation | None, fault: str | None) -> None:
        if confirmation is not None:
            self.submit(confirmation, fault)

    @rule(confirmation=confirmations, fault=FAULT)
    def confirm_again_minutes_later(self, confirmation: Confirmation | None, fault: str | None) -> None:
        """The person comes back after Stripe's answer is overdue, before the settle job has run."""
        self.quiesce()
        self.clock.advance(IN_FLIGHT + timedelta(seconds=1))
        self.confirm_again(confirmation, fault)

    # What the world does ------------------------------------------------------------------------------------

    @rule()
    def network_heals(self) -> None:
        self.stand_in.disarm()
        self.stand_in.up()
        self.stand_in.release()

    @rule()
    def held_requests_go_on(self) -> None:
        self.stand_in.release()

    @rule()
    def stripe_sends_its_webhook(self) -> None:
        latest = self.stripe.v1.payment_intents.retrieve(self.intent).latest_charge
        charge = latest if isinstance(latest, str) else latest.id
        event_id = f"evt_{self.customer_id}_{next(self.events)}"
        body, signature = signed(
            event(event_id, "charge.refunded", {"id": charge, "object": "charge"}), WEBHOOK_SECRET
        )
        post(self.web, body, signature)  # 503 while Stripe cannot be read: Stripe delivers again later

    @rule()
    def the_bot_is_quiet(self) -> None:
        self.quiesce()
        self.check(final=False)

    @rule()
    def minutes_pass(self) -> None:
        self.quiesce()  # a try ends within the gateway's budget, long before IN_FLIGHT
        self.clock.advance(IN_FLIGHT + timedelta(seconds=1))

    @rule()
    def minutes_pass_and_the_settle_job_runs(self) -> None:
        self.quiesce()  # a try ends within the gateway's budget, long before IN_FLIGHT
        self.clock.advance(IN_FLIGHT + timedelta(seconds=1))
        self.actions.settler.settle_unanswered()
        self.check(final=False)

    def teardown(self) -> None:
        self.network_heals()
        self.quiesce()
        for _ in range(2):  # a settle run that finds Stripe unreachable leaves the attempt for the next
            self.clock.advance(IN_FLIGHT + timedelta(seconds=1))
            self.actions.settler.settle_unanswered()
        self.check(final=True)
        with self.db.session() as s:
            for status, count in s.execute(
                select(ActionAttempt.status, func.count())
                .where(ActionAttempt.created_at >= self.started)
                .group_by(ActionAttempt.status)
            ):
                hypothesis_event(
                    f"requests {status}: {min(count, 3)}+" if count >= 3 else f"requests {status}: {count}"
                )

    # Checks ---------------------------------------------------------------------------------------------------

    def quiesce(self) -> None:
        """Let every request in flight finish: held requests go on, listeners end, the stand-in idles."""
        self.stand_in.disarm()
        self.stand_in.release()
        self.executor.wait_until_idle(timeout=30)
        self.stand_in.wait_until_idle(timeout=30)

    def check(self, *, final: bool) -> None:
        refunds = list(self.stripe.v1.refunds.list(params={"payment_intent": self.intent, "limit": 100}).data)
        charges = [
            pi
            for pi in self.stripe.v1.payment_intents.list(
                params={"customer": self.stripe_customer, "limit": 100}
            ).data
            if pi.status == "succeeded" and _key(pi)
        ]
        with self.db.session() as s:
            open_keys = set(s.scalars(select(ActionAttempt.key).where(ActionAttempt.status == "pending")))
            ours = {
                r.stripe_refund_id: r.amount
                for r in s.scalars(select(Refund).where(Refund.order_id == self.order_id))
            }
            orders = {
                payment.stripe_payment_intent_id: (order.total, payment.amount)
                for order, payment in s.execute(
                    select(Order, Payment)
                    .join(Payment, Payment.order_id == Order.id)
                    .where(Order.customer_id == self.customer_id, Order.source == "internal")
                )
            }
            order = s.get(Order, self.order_id)
            payment = make.order_payment(s, order)
            held = payment.amount_refund_pending
            reserved = s.scalar(
                select(func.coalesce(func.sum(ActionAttempt.reserved), 0)).where(
                    ActionAttempt.target_type == "payment",
                    ActionAttempt.target_id == payment.id,
                    ActionAttempt.status == "pending",
                )
            )
            ended_reserving = s.scalar(
                select(func.count()).where(ActionAttempt.status != "pending", ActionAttempt.reserved != 0)
            )
            assert s.get(Customer, self.customer_id) is not None

        for made in (refunds, charges):
            keys = Counter(_key(obj) for obj in made)
            keys.pop(None, None)
            assert all(n == 1 for n in keys.values()), (
                f"a request made more than one object in Stripe: {keys}"
            )
        for refund in refunds:
            assert refund.id in ours or _key(refund) in open_keys, (
                f"Stripe refunded {refund.amount} ({refund.id}) and nothing of ours says so"
            )
            if refund.id in ours:
                assert ours[refund.id] == refund.amount, "recorded what Stripe made"
        assert set(ours) <= {r.id for r in refunds}, "we recorded a refund Stripe never made"
        for charge in charges:
            assert charge.id in orders or _key(charge) in open_keys
            if charge.id in orders:
                assert orders[charge.id] == (charge.amount, charge.amount), "one order, its one payment"
        assert set(orders) <= {c.id for c in charges}, "we recorded a charge Stripe never made"
        assert order.amount_refunded == sum(ours.values())
        assert held == reserved, "held back exactly what open requests reserved"
        assert ended_reserving == 0, "an ended request still holds money back"
        if final:
            assert open_keys == set(), "every request that may have reached Stripe ended recorded or let go"
            assert sorted(ours.values()) == sorted(r.amount for r in refunds)
            assert sorted(total for total, _ in orders.values()) == sorted(c.amount for c in charges)


def _key(obj) -> str | None:
    """The bot's action key in a Stripe object's metadata."""
    return (obj.to_dict().get("metadata") or {}).get(ACTION_KEY)


@pytest.fixture
def parts(db, slack, local_stripe):
    clock = Clock()
    with StripeStandIn(local_stripe.url) as stand_in, TrackedExecutor() as executor:
        settings = settings_for(db, slack, payment_admins=frozenset(ADMINS))
        gateway = StripeGateway.connect(local_stripe.api_key, api_base=stand_in.url, limits=LIMITS)
        client = WebClient(token=settings.slack_bot_token, base_url=settings.slack_api_url)
        actions = actions_for(settings, db, client, gateway=gateway, clock=clock)
        webhooks = StripeWebhooks(db, gateway, WEBHOOK_SECRET, bot_made=actions.settler.bot_made)
        app = create_app(settings, db, client=client, actions=actions, listener_executor=executor)
        web = WebApp(app, db, webhooks)
        yield db, slack, stand_in, local_stripe_client(local_stripe), web, actions, clock, executor
        assert stand_in.errors == []


def test_refunds_and_charges_happen_exactly_once_whatever_the_network_does(parts):
    run_state_machine_as_test(
        lambda: ExactlyOnce(parts),
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=25,
            deadline=None,
            derandomize=not os.environ.get("EXACTLY_ONCE_EXAMPLES"),
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
