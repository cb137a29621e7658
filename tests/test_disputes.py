"""Disputes: Stripe's `charge.dispute.*` webhooks (hand-signed; localstripe has no disputes) and the import record
a dispute on the order's payment; the order record shows it, a lost one counts against lifetime value until Stripe
reinstates the funds, and the alerts channel hears once when a dispute opens and once when it closes."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select

from blocks.disputes import dispute_alert
from blocks.limits import message_problems
from bot.importer import import_stripe
from bot.models import Dispute, DisputeAlert, Order
from bot.money import Money
from bot.stripe_gateway import StripeGateway
from bot.viewmodels import DisputeLine, DisputeNews
from bot.webhooks import HANDLED, StripeWebhooks
from runtime.dispute_alerts import dispute_announcer
from runtime.jobs import jobs_slack_client
from tests import factories as make
from tests.slack_text import action_ids, buttons, text_of
from tests.test_webhooks import event, signed

CHANNEL = "C0ALERTS1"
SECRET = "whsec_test_secret"
DUE_BY = make.T0 + timedelta(days=10)


def dispute(status: str, **fields) -> dict:
    """A dispute of Jane's checkout payment, as Stripe's API returns it."""
    return {
        "id": "du_1MtJUT2eZvKYlo2C",
        "object": "dispute",
        "amount": 4500,
        "currency": "usd",
        "charge": "ch_jane_1",
        "payment_intent": "pi_jane_1",
        "created": int(make.T0.timestamp()) + 86_400,
        "evidence_details": {"due_by": int(DUE_BY.timestamp()), "has_evidence": False, "past_due": False},
        "reason": "product_not_received",
        "status": status,
        "balance_transactions": [{"id": "txn_w", "amount": -4500, "reporting_category": "dispute"}],
        **fields,
    }


class DisputesInStripe(StripeGateway):
    """Stripe, as far as disputes go: `disputes` holds each one as Stripe has it now (tests change it between
    events), answered to a retrieve and to the import's list; every other list is empty."""

    def __init__(self) -> None:
        super().__init__(StripeGateway.connect("sk_test_disputes", api_base="http://127.0.0.1:9")._client)
        self.disputes: dict[str, dict] = {}
        self.calls: list[tuple[str, str]] = []

    def retrieve(self, kind, object_id):
        self.calls.append((kind, object_id))
        assert kind == "dispute", f"only disputes are read here, not {kind}"
        return self.disputes[object_id]

    def list_page(self, kind, *, starting_after=None, **params):
        self.calls.append((kind, "list"))
        return (list(self.disputes.values()) if kind == "dispute" and not starting_after else []), None


@pytest.fixture
def jane(harness):
    """Jane with two checkouts: $45 paid with pi_jane_1 (the disputed one), and $50 that nobody disputes."""
    with harness.db.session() as s:
        customer = make.customer(s)
        disputed = make.order(
            s, customer, 4500, stripe_payment_intent_id="pi_jane_1", stripe_charge_id="ch_jane_1"
        )
        make.order(s, customer, 5000, created_at=make.T0 + timedelta(days=2))
        return {"number": disputed.number, "order": disputed.id}


@pytest.fixture
def stripe_disputes() -> DisputesInStripe:
    return DisputesInStripe()


@pytest.fixture
def webhooks(harness, stripe_disputes) -> StripeWebhooks:
    announce = dispute_announcer(
        harness.db, jobs_slack_client("xoxb-test", harness.slack.api_url), CHANNEL, clock=lambda: make.T0
    )
    return StripeWebhooks(harness.db, stripe_disputes, SECRET, announce_dispute=announce)


def deliver(webhooks: StripeWebhooks, event_id: str, kind: str) -> tuple[int, dict]:
    return webhooks.handle(*signed(event(event_id, kind, {"id": "du_1MtJUT2eZvKYlo2C", "object": "dispute"})))


def alerts(harness) -> list[str]:
    """The top-level text of every alert in the channel, oldest first."""
    return [message.text for message in harness.slack.visible(CHANNEL, "U0ANYONE01")]


def lifetime_value(harness) -> str:
    card = text_of(harness.person.command("jane"))
    return card.split("*Lifetime value*\n", 1)[1].split("\n", 1)[0]


def test_every_dispute_event_is_handled():
    steps = ("created", "updated", "closed", "funds_withdrawn", "funds_reinstated")
    assert {f"charge.dispute.{step}" for step in steps} <= HANDLED


def test_a_dispute_shows_on_the_order_and_is_announced_once(harness, jane, stripe_disputes, webhooks):
    stripe_disputes.disputes["du_1MtJUT2eZvKYlo2C"] = dispute("needs_response")

    assert deliver(webhooks, "evt_d1", "charge.dispute.created") == (200, {"processed": "evt_d1"})
    assert deliver(webhooks, "evt_d1", "charge.dispute.created") == (200, {"duplicate": "evt_d1"})
    assert deliver(webhooks, "evt_d2", "charge.dispute.funds_withdrawn")[0] == 200

    assert alerts(harness) == [f"Dispute opened: Jane Doe, $45.00 (order #{jane['number']})"], "posted once"
    [message] = harness.slack.visible(CHANNEL, "U0ANYONE01")
    posted = text_of(message)
    assert "$45.00 of order" in posted and "Product not received" in posted
    assert f"Respond by <!date^{int(DUE_BY.timestamp())}^" in posted
    assert "https://dashboard.stripe.com/disputes/du_1MtJUT2eZvKYlo2C" in posted
    assert buttons(message) == ["Open record"]
    record = text_of(harness.person.command(f"#{jane['number']}"))
    assert "*Disputes* · 1" in record
    assert "*Needs a response* · $45.00 · Product not received · opened" in record
    assert "evidence is submitted in the Stripe Dashboard, https://dashboard.stripe.com/disputes/" in record
    assert ":warning: $45.00 disputed · Product not received · now Needs a response" in record, (
        "in its History"
    )
    assert lifetime_value(harness) == "$95.00", "an open dispute takes nothing yet"


def test_a_lost_dispute_counts_against_lifetime_value_and_its_close_is_announced_once(
    harness, jane, stripe_disputes, webhooks
):
    stripe_disputes.disputes["du_1MtJUT2eZvKYlo2C"] = dispute("needs_response")
    deliver(webhooks, "evt_d1", "charge.dispute.created")
    stripe_disputes.disputes["du_1MtJUT2eZvKYlo2C"] = dispute("lost")

    deliver(webhooks, "evt_d2", "charge.dispute.closed")
    deliver(webhooks, "evt_d3", "charge.dispute.updated")  # the same close, said again

    number = jane["number"]
    assert alerts(harness) == [
        f"Dispute opened: Jane Doe, $45.00 (order #{number})",
        f"Dispute lost: Jane Doe, $45.00 (order #{number})",
    ]
    assert lifetime_value(harness) == "$50.00", "$95 paid, $45 taken back by the bank"
    shown = harness.person.command(f"#{number}")
    assert "*Still refundable*\n$0.00" in text_of(shown), "Stripe refunds nothing beside a lost dispute"
    assert not [i for i in action_ids(shown) if i.startswith("refund")], "so no Refund buttons"
    record = text_of(shown)
    assert (
        "*Lost* · $45.00" in record
        and "$45.00 taken back by the bank, counted against lifetime value" in record
    )

    # Stripe reinstates the funds (a reversal beside the withdrawal): the loss is undone.
    reversal = {"id": "txn_r", "amount": 4500, "reporting_category": "dispute_reversal"}
    lost = dispute("lost")
    stripe_disputes.disputes["du_1MtJUT2eZvKYlo2C"] = {
        **lost,
        "balance_transactions": [*lost["balance_transactions"], reversal],
    }
    deliver(webhooks, "evt_d4", "charge.dispute.funds_reinstated")
    assert lifetime_value(harness) == "$95.00"
    assert len(alerts(harness)) == 2, "a reinstatement is no new step"
    with harness.db.session() as s:
        assert s.get(Order, jane["order"]).amount_lost == 0


def test_a_won_dispute_leaves_lifetime_value_as_it_was(harness, jane, stripe_disputes, webhooks):
    stripe_disputes.disputes["du_1MtJUT2eZvKYlo2C"] = dispute("under_review")
    deliver(webhooks, "evt_d1", "charge.dispute.created")
    stripe_disputes.disputes["du_1MtJUT2eZvKYlo2C"] = dispute("won")
    deliver(webhooks, "evt_d2", "charge.dispute.closed")

    assert alerts(harness)[-1] == f"Dispute won: Jane Doe, $45.00 (order #{jane['number']})"
    assert lifetime_value(harness) == "$95.00"
    assert "*Won* · $45.00" in text_of(harness.person.command(f"#{jane['number']}"))


def test_closed_before_created_ends_in_the_same_state(harness, jane, stripe_disputes, webhooks):
    """Delivered out of order, each event re-reads the dispute: both see it lost, and the alerts channel hears
    that it was lost (that it opened is news already over)."""
    stripe_disputes.disputes["du_1MtJUT2eZvKYlo2C"] = dispute("lost")

    deliver(webhooks, "evt_d2", "charge.dispute.closed")
    deliver(webhooks, "evt_d1", "charge.dispute.created")

    assert alerts(harness) == [f"Dispute lost: Jane Doe, $45.00 (order #{jane['number']})"]
    assert lifetime_value(harness) == "$50.00"
    with harness.db.session() as s:
        [row] = s.scalars(select(Dispute)).all()
        assert (row.status, row.amount, row.amount_lost, row.reason) == (
            "lost",
            4500,
            4500,
            "product_not_received",
        )
        assert s.get(Order, jane["order"]).amount_lost == 4500


def test_a_post_slack_refused_is_made_when_stripe_delivers_again(harness, jane, stripe_disputes, webhooks):
    stripe_disputes.disputes["du_1MtJUT2eZvKYlo2C"] = dispute("needs_response")
    harness.slack.refuse("chat.postMessage", "channel_not_found")

    assert deliver(webhooks, "evt_d1", "charge.dispute.created")[0] == 503
    assert alerts(harness) == []
    harness.slack.accept("chat.postMessage")
    assert deliver(webhooks, "evt_d1", "charge.dispute.created") == (200, {"duplicate": "evt_d1"})
    assert len(alerts(harness)) == 1
    with harness.db.session() as s:
        assert s.scalar(select(DisputeAlert.posted_at)) is not None


def test_a_dispute_of_a_payment_we_do_not_have_changes_nothing(harness, jane, stripe_disputes, webhooks):
    stripe_disputes.disputes["du_1MtJUT2eZvKYlo2C"] = dispute(
        "needs_response", charge="ch_other", payment_intent="pi_other"
    )

    assert deliver(webhooks, "evt_d1", "charge.dispute.created")[0] == 200
    assert alerts(harness) == []
    with harness.db.session() as s:
        assert s.scalars(select(Dispute)).all() == []


def test_the_import_records_disputes(harness, jane, stripe_disputes):
    stripe_disputes.disputes["du_1MtJUT2eZvKYlo2C"] = dispute("lost")

    summary = import_stripe(harness.db, stripe_disputes)
    again = import_stripe(harness.db, stripe_disputes)

    assert summary.counts.created.get("disputes") == 1 and again.counts.updated.get("disputes") == 1
    assert ("dispute", "list") in stripe_disputes.calls
    assert lifetime_value(harness) == "$50.00"
    assert "*Lost* · $45.00" in text_of(harness.person.command(f"#{jane['number']}"))


def _news(step: str, status: str, name: str = "Jane Doe") -> DisputeNews:
    return DisputeNews(
        step=step,
        dispute_id=7,
        customer_id=3,
        customer_name=name,
        order_id=21,
        order_number="100021",
        dispute=DisputeLine(
            stripe_dispute_id="du_X1",
            amount=Money(4500, "usd"),
            status=status,
            reason="fraudulent",
            due_by=DUE_BY,
            opened_at=make.T0,
            lost=Money(4500 if status == "lost" else 0, "usd"),
        ),
    )


def test_the_opened_alert_as_slack_receives_it():
    message = dispute_alert(_news("opened", "needs_response"))

    due = int(DUE_BY.timestamp())
    assert message.text == "Dispute opened: Jane Doe, $45.00 (order #100021)"
    assert message.blocks == [
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": ":warning: *Dispute opened* · *Jane Doe*\n$45.00 of order #100021 is disputed: Fraudulent."
                f" Respond by <!date^{due}^{{date_short}} at {{time}}|Jan 25, 2026 at 12:00 UTC>."
                " Evidence is submitted in the Stripe Dashboard: https://dashboard.stripe.com/disputes/du_X1",
                "verbatim": True,
            },
        },
        {
            "type": "actions",
            "block_id": "dispute_7",
            "elements": [
                {
                    "type": "button",
                    "text": {"type": "plain_text", "text": "Open record"},
                    "action_id": "open_order-21",
                    "value": '21:[3,"a",0,"a",0,0]',
                }
            ],
        },
    ]
    assert message_problems(message.blocks, message.text) == []


@pytest.mark.parametrize("status", ["won", "lost", "warning_closed", "prevented"])
def test_every_closed_alert_fits_and_escapes_what_the_customer_wrote(status):
    message = dispute_alert(_news("closed", status, name="<!channel> *Boss* " + "x" * 400))

    assert message_problems(message.blocks, message.text) == []
    assert "<!channel>" not in message.text and "<!channel>" not in json.dumps(message.blocks)
    assert "&lt;!channel&gt;" in message.blocks[0]["text"]["text"]


def test_the_demo_data_has_an_open_and_a_lost_dispute_away_from_jane(db):
    from datetime import date

    from devkit.seed import ZOE, seed

    seed(db, 40, today=date(2026, 12, 1))

    with db.session() as s:
        rows = s.execute(
            select(Dispute, Order).join(Order, Order.id == Dispute.order_id).order_by(Dispute.id)
        ).all()
        assert [d.status for d, _ in rows] == ["needs_response", "lost"]
        assert all(order.customer_id not in (1, ZOE) for _, order in rows), "Jane's and Zoë's numbers stay"
        assert len({order.customer_id for _, order in rows}) == 2
        (open_dispute, _), (lost, lost_order) = rows
        assert open_dispute.due_by is not None and open_dispute.amount_lost == 0
        assert lost.amount_lost == lost.amount == lost_order.amount_lost > 0
