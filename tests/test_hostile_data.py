"""A customer whose every piece of text is hostile (Slack mentions, special mentions, channel links, disguised
links, formatting, and very long text), driven through every surface the bot draws: search, the card, the
records, a shared card, the forms and their results, the record notices, the audit channel, the missed-payment
alert and its update, the email-check report and its redraw after a push. Nothing the bot sends, in any field,
carries that markup unescaped, and Slack would accept every message (the `slack` fixture fails the test
otherwise)."""

from __future__ import annotations

import json
from datetime import timedelta
from urllib.parse import urlencode

import pytest
from slack_sdk import WebClient
from sqlalchemy import update

from bot.models import Payment
from bot.stripe_gateway import StripeGateway
from devkit.local_slack import LocalSlack, SlackPerson, wsgi_transport
from runtime.app import create_app
from runtime.jobs import run_email_sync, run_missed_payments
from runtime.web import WebApp
from tests import factories as make
from tests.conftest import SIGNING_SECRET, settings_for
from tests.slack_text import text_of
from tests.stripe_support import local_stripe_client, paid_payment_intent, stripe_customer_with_card

ADMIN = "U0ADMIN01"
AUDIT_CHANNEL = "C0AUDIT01"
ALERTS_CHANNEL = "C0ALERTS1"

# What a customer, Stripe, a CRM or a colleague could write, and what must never reach Slack as markup.
MARKUP = [
    "<!channel>",
    "<!here|here>",
    "<!subteam^S0TEAM01|@finance>",
    "<@U0BOSS001>",
    "<#C0GENERAL|general>",
    "<http://evil.example/pay|Click to keep your account>",
    "<mailto:x@evil.example|mail>",
]
HOSTILE = " ".join(MARKUP) + " *BOLD* _italic_ ~gone~ `code` &amp; > quote"
FORBIDDEN = ["<!", "<@U0BOSS", "<#C0GENERAL", "<http://evil", "<mailto:"]
LONG = "Ж" * 4000  # longer than any text Slack accepts in one section


def every_string(node, key: str | None = None) -> list[str]:
    """Every string in what was sent, with Block Kit and views (sent as JSON in form fields) opened up. An
    input's initial value is left out: it is what the person edits, shown as typed and never parsed."""
    if isinstance(node, str):
        if key in ("blocks", "view") and node[:1] in "[{":
            return every_string(json.loads(node))
        return [node]
    if isinstance(node, dict):
        return [s for k, value in node.items() if k != "initial_value" for s in every_string(value, k)]
    if isinstance(node, list):
        return [s for item in node for s in every_string(item)]
    return []


def markup_from_the_data(strings: list[str]) -> list[str]:
    """Each string holding hostile markup, ignoring our own Slack dates (<!date^…>) and admins' mentions."""
    found = []
    for text in strings:
        cleaned = text
        for ours in (f"<@{ADMIN}>",):
            cleaned = cleaned.replace(ours, "")
        while "<!date^" in cleaned:
            start = cleaned.index("<!date^")
            cleaned = cleaned[:start] + cleaned[cleaned.index(">", start) + 1 :]
        if any(bad in cleaned for bad in FORBIDDEN):
            found.append(text[:300])
    return found


class Outbox:
    """Everything the bot sent to this Slack: API calls, response-URL and command answers, and every modal."""

    def __init__(self, slack: LocalSlack) -> None:
        self.slack = slack
        self.views: list[dict] = []

    def snapshot_views(self) -> None:
        self.views.extend(json.loads(json.dumps(view)) for view in self.slack.views.values())

    def strings(self) -> list[str]:
        self.snapshot_views()
        sent = [call.args for call in self.slack.calls]
        sent += [{"text": m.text, "blocks": m.blocks} for m in self.slack.messages]
        return every_string([*sent, *self.views])


@pytest.fixture
def hostile(db, slack, local_stripe):
    stripe_client = local_stripe_client(local_stripe)
    name = f"Jane {HOSTILE} {LONG}"
    stripe_id, card = stripe_customer_with_card(stripe_client, "jane.stripe@example.com", name="Jane Doe")
    intent = paid_payment_intent(stripe_client, stripe_id, card, 5000)
    with db.session() as s:
        jane = make.customer(
            s,
            name,
            email=f"jane+{HOSTILE.replace(' ', '')}@example.com"[:320],
            stripe_customer_id=stripe_id,
            default_payment_method_id=card,
        )
        make.customer(s, f"Jane {HOSTILE} Roe", email="jane.roe@example.com")
        order = make.order(
            s,
            jane,
            lines=[(f"{HOSTILE} {LONG}", 1, 3000), (HOSTILE, 2, 1000)],
            stripe_payment_intent_id=intent,
            billing_name=HOSTILE,
            billing_line1=HOSTILE,
            billing_city=LONG,
        )
        sub = make.subscription(s, jane, f"{HOSTILE} {LONG}", stripe_subscription_id=None)
        failed = make.payment(s, sub, "failed", due_at=make.T0, reason=f"{HOSTILE} {LONG}")
        ids = {"customer": jane.id, "order": order.id, "subscription": sub.id, "payment": failed.id}
    settings = settings_for(
        db,
        slack,
        payment_admins=frozenset({ADMIN}),
        audit_channel=AUDIT_CHANNEL,
        alerts_channel=ALERTS_CHANNEL,
        stripe_api_key=local_stripe.api_key,
        stripe_api_base=local_stripe.url,
    )
    gateway = StripeGateway.connect(local_stripe.api_key, api_base=local_stripe.url)
    web = WebApp(create_app(settings, db, gateway=gateway), db)
    admin = SlackPerson(slack, wsgi_transport(web), SIGNING_SECRET, user_id=ADMIN)
    return settings, admin, ids


def test_hostile_text_reaches_no_surface_as_markup(db, slack, hostile):
    settings, admin, ids = hostile
    outbox = Outbox(slack)

    # Search, and the card it opens.
    results = admin.command("jane")
    assert "customers match" in text_of(results)
    admin.click(results, f"open_customer-{ids['customer']}")
    card = slack.message(results.ts)
    assert "&lt;!channel&gt;" in text_of(card), "the name is shown, escaped"

    # The subscription record, back, the order record.
    admin.click(card, f"open_subscription-{ids['subscription']}")
    admin.click(slack.message(card.ts), "back_to_customer")
    admin.click(slack.message(card.ts), f"open_order-{ids['order']}")
    order_record = slack.message(card.ts)
    assert "Order #" in text_of(order_record)

    # A refund with a hostile note: the form, the confirmation, the result, the record's notice, the audit.
    admin.click(order_record, f"refund_order-{ids['order']}")
    form = slack.latest_view()
    outbox.snapshot_views()
    admin.submit(form, {"amount": "10.00", "reason": "other", "note": HOSTILE})
    outbox.snapshot_views()
    admin.submit(slack.views[form["id"]])
    slack.wait_for(lambda: slack.views[form["id"]].get("callback_id") == "result")
    result = slack.views[form["id"]]
    assert result["blocks"][0]["text"]["text"].startswith(":white_check_mark: Refunded $10.00")
    slack.wait_for(lambda: any(c.args.get("channel") == AUDIT_CHANNEL for c in slack.calls))
    slack.wait_for(
        lambda: "Refunded" in text_of(slack.message(card.ts)) or "refunded" in text_of(slack.message(card.ts))
    )

    # The card shared in the channel, and the forms the other buttons open.
    admin.click(slack.message(card.ts), "back_to_customer")
    admin.click(slack.message(card.ts), "share_card")
    for action_id in ("new_order", "change_email"):
        admin.click(slack.message(card.ts), action_id)
        outbox.snapshot_views()

    # The missed-payment alert, and its update once paid.
    client = WebClient(token="xoxb-test", base_url=slack.api_url)
    clock = lambda: make.T0 + timedelta(days=3)  # noqa: E731
    assert run_missed_payments(db, client, ALERTS_CHANNEL, clock=clock).announced == 1
    with db.session() as s:
        s.execute(update(Payment).where(Payment.id == ids["payment"]).values(status="paid"))
    assert run_missed_payments(db, client, ALERTS_CHANNEL, clock=clock).updated == 1

    # The email check (our hostile address differs from Stripe's), and its redraw after a push.
    assert run_email_sync(db, client, ALERTS_CHANNEL, settings) == 1
    [report] = [m for m in slack.visible(ALERTS_CHANNEL, ADMIN) if "Email check" in m.text]
    channel_admin = SlackPerson(
        admin.slack, admin.transport, SIGNING_SECRET, user_id=ADMIN, channel_id=ALERTS_CHANNEL
    )
    channel_admin.click(report, f"push_email-{ids['customer']}")
    slack.wait_for(
        lambda: (
            "all clear" in text_of(slack.message(report.ts)) or "pushed" in text_of(slack.message(report.ts))
        )
    )

    strings = outbox.strings()
    assert any("&lt;@U0BOSS001&gt;" in s for s in strings), "the data was drawn, escaped"
    assert markup_from_the_data(strings) == []


@pytest.mark.parametrize(
    "action_id, value",
    [
        ("open_order-1", "²:[1,0,0,0,0,0]"),
        ("open_subscription-1", "1:not-a-state"),
        ("open_customer-1", "[[[[[[[[[[]]]]]]]]]]"),
        ("resume_payments-1", "x@y"),
        ("refund_order-1", ""),
        ("push_email-1", '{"c": "1"}'),
        ("share_card", "{"),
    ],
)
def test_a_button_value_the_bot_did_not_write_is_told_plainly(slack, hostile, action_id, value):
    _, admin, _ = hostile
    results = admin.command("jane")
    before = len(slack.messages)

    status = admin.act(results, {"type": "button", "action_id": action_id, "block_id": "b", "value": value})

    assert status == 200
    slack.wait_for(lambda: len(slack.messages) > before)
    told = slack.messages[-1]
    assert told.ephemeral and "cannot read any more" in told.text and "nothing was done" in told.text


def test_a_quantity_in_other_digits_is_refused_on_the_form(db, slack, hostile):
    _, admin, ids = hostile
    results = admin.command("jane")
    admin.click(results, f"open_customer-{ids['customer']}")
    admin.click(slack.message(results.ts), "new_order")
    form = slack.latest_view()

    answer = admin.submit(form, {"description": "Call", "amount": "10", "quantity": "²"})

    assert answer["response_action"] == "errors" and "quantity" in answer["errors"]
    assert slack.views[form["id"]]["callback_id"] == "new_order_form", "nothing charged, the form stays"


@pytest.mark.parametrize(
    "payload",
    [
        {
            "type": "view_submission",
            "user": {"id": ADMIN},
            "view": {"id": "V1", "callback_id": "refund_form"},
        },
        {
            "type": "view_submission",
            "user": {"id": ADMIN},
            "view": {"id": "V1", "callback_id": "change_email_form"},
        },
        {"type": "block_actions", "actions": [{"action_id": "open_order-1", "value": "1:[1,0,0,0,0,0]"}]},
    ],
    ids=["a form without its state", "an email form without its state", "a click without its user"],
)
def test_a_signed_payload_missing_what_slack_always_sends_gets_400_not_500(hostile, payload):
    _, admin, _ = hostile
    body = urlencode({"payload": json.dumps(payload)}).encode()

    status, _ = admin._send(body, "application/x-www-form-urlencoded")

    assert status == 400
