"""History and notes on every record, through signed Slack requests: Add note on a customer, a subscription or
plan, and an order; the History section merging the audit trail (with each action's note), notes and what Stripe
did; paging it; hostile text in notes; who may add a note; and the upgrade that adds the notes table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, text

from blocks import records as record_blocks
from bot.models import AuditEvent, Note, Order, Subscription
from bot.money import Money
from bot.viewmodels import CardState, HistoryEntry, HistoryPage, parse_history_value
from devkit.local_slack import SlackPerson, wsgi_transport
from runtime.app import create_app
from runtime.web import WebApp
from tests import factories as make
from tests.conftest import BACKENDS, SIGNING_SECRET, Harness, settings_for
from tests.slack_text import buttons, text_of
from tests.stripe_support import RecordingHTTPClient, recording_gateway, subscription_body
from tests.test_actions import acting as acting
from tests.test_actions import finish, jane_in_stripe, open_order
from tests.test_actions import stripe_client as stripe_client
from tests.test_migrations import database_at

ADMIN = "U0ADMIN01"
HOSTILE = "<!channel> see <https://evil.example|your invoice> *now* & `rm` <@U0BOSS>"


def history_of(message) -> str:
    """The History section's text of a record message."""
    (history,) = [
        b["text"]["text"] for b in message.blocks if b.get("text", {}).get("text", "").startswith("*History*")
    ]
    return history


def add_note(person: SlackPerson, harness: Harness, message, target: str, note: str) -> dict:
    """Click Add note on `message` (the button of `target`, e.g. "order3") and save `note`; returns the answer."""
    person.click(message, f"add_note-{target}")
    form = harness.slack.latest_view()
    assert form["callback_id"] == "note_form" and form["submit"]["text"] == "Save note"
    return person.submit(form, {"note": note})


@pytest.fixture
def jane(harness) -> dict[str, int]:
    with harness.db.session() as s:
        customer = make.customer(s, stripe_customer_id="cus_jane")
        sub = make.subscription(s, customer, stripe_subscription_id="sub_jane")
        order = make.order(s, customer, 5000, stripe_payment_intent_id="pi_jane")
        return {"customer": customer.id, "sub": sub.id, "order": order.id}


def test_add_note_on_an_order_shows_it_in_history_with_its_author(harness, jane):
    card = harness.person.command("jane doe")
    harness.person.click(card, f"open_order-{jane['order']}")
    record = harness.slack.message(card.ts)
    assert "Nothing yet." not in history_of(record), "the order's payment is its first event"

    answer = add_note(
        harness.person, harness, record, f"order{jane['order']}", "Customer called: wants a receipt"
    )

    assert answer == {"response_action": "clear"}, "the modal closes"
    updated = harness.slack.message(card.ts)
    assert f"<@{harness.person.user_id}> added a note" in text_of(updated), "the record updates in place"
    history = history_of(updated)
    assert f"<@{harness.person.user_id}> :memo: “Customer called: wants a receipt”" in history
    assert history.index("Customer called") < history.index("Payment of $50.00 paid"), "newest first"
    with harness.db.session() as s:
        note = s.scalar(select(Note))
        assert (note.target_type, note.target_id, note.author, note.text) == (
            "order",
            jane["order"],
            harness.person.user_id,
            "Customer called: wants a receipt",
        )


def test_add_note_on_a_subscription_and_on_the_customer(harness, jane):
    card = harness.person.command("jane doe")
    harness.person.click(card, f"open_subscription-{jane['sub']}")
    record = harness.slack.message(card.ts)
    assert ":arrow_forward: Subscription *Pro Membership* started" in history_of(record)

    add_note(harness.person, harness, record, f"recurring{jane['sub']}", "Asked about the annual plan")
    assert "“Asked about the annual plan”" in history_of(harness.slack.message(card.ts))

    card = harness.person.command("jane doe")
    assert "History" in buttons(card) and "Add note" in buttons(card)
    add_note(harness.person, harness, card, f"customer{jane['customer']}", "VIP: handle with care")
    assert "added a note" in text_of(harness.slack.message(card.ts)), "the card says so"

    harness.person.click(harness.slack.message(card.ts), "show_history")
    everything = harness.slack.message(card.ts)
    assert "History: Jane Doe" in text_of(everything)
    history = history_of(everything)
    for line in ("“VIP: handle with care”", "“Asked about the annual plan”", "Payment of $50.00 paid"):
        assert line in history, "a customer's History holds everything of theirs"
    assert "order #" in history, "and names the order each payment is of"

    add_note(harness.person, harness, everything, f"history{jane['customer']}", "Second call")
    shown = harness.slack.message(card.ts)
    assert "History: Jane Doe" in text_of(shown), "a note added from the History view shows that view again"
    assert history_of(shown).split("\n")[1].endswith("“Second call”")
    harness.person.click(shown, label="Back to Jane Doe")
    assert "Lifetime value" in text_of(harness.slack.message(card.ts))


def test_a_hostile_note_is_shown_as_text_everywhere(harness, jane):
    card = harness.person.command("jane doe")
    harness.person.click(card, f"open_order-{jane['order']}")
    add_note(harness.person, harness, harness.slack.message(card.ts), f"order{jane['order']}", HOSTILE)

    history = history_of(harness.slack.message(card.ts))
    assert "<!channel>" not in history and "<https://" not in history and "<@U0BOSS>" not in history
    assert "&lt;!channel&gt; see &lt;https://evil.example|your invoice&gt;" in history
    assert "*now*" not in history, "formatting pairs are disarmed"
    # The local Slack refuses any message Slack would refuse: the slack fixture checks it at the end.


def test_an_empty_or_too_long_note_is_an_inline_error_and_writes_nothing(harness, jane):
    card = harness.person.command("jane doe")
    harness.person.click(card, f"open_order-{jane['order']}")
    record = harness.slack.message(card.ts)

    assert add_note(harness.person, harness, record, f"order{jane['order']}", "   ") == {
        "response_action": "errors",
        "errors": {"note": "Write the note."},
    }
    answer = add_note(harness.person, harness, record, f"order{jane['order']}", "x" * 501)
    assert answer["response_action"] == "errors" and "500 characters" in answer["errors"]["note"]
    with harness.db.session() as s:
        assert s.scalar(select(func.count()).select_from(Note)) == 0


def test_history_pages_newer_and_older_and_keeps_the_card_state(harness, jane):
    with harness.db.session() as s:
        for i in range(15):
            s.add(
                Note(
                    target_type="order",
                    target_id=jane["order"],
                    author="U0SUPPORT1",
                    text=f"note {i:02d}",
                    created_at=make.T0 + timedelta(days=1, hours=i),
                )
            )
    card = harness.person.command("jane doe")
    harness.person.click(card, f"open_order-{jane['order']}")
    record = harness.slack.message(card.ts)
    size = record_blocks.HISTORY_PAGE_SIZE
    first = history_of(record)
    assert [f"note {i:02d}" in first for i in (14, 14 - size + 1, 14 - size)] == [True, True, False]
    assert "Newer" not in buttons(record) and "Older" in buttons(record)

    harness.person.click(record, "history_older")
    second = harness.slack.message(card.ts)
    assert "page 2" in history_of(second) and f"note {14 - size:02d}" in history_of(second)
    assert "note 14" not in history_of(second)
    assert "Newer" in buttons(second) and "Older" in buttons(second)
    for button_id in ("history_older", "history_newer"):
        target, _, back = parse_history_value(_value(second, button_id))
        assert (target, back) == (("order", jane["order"]), CardState(jane["customer"])), "state round-trips"

    harness.person.click(second, "history_older")
    last = harness.slack.message(card.ts)
    assert "Older" not in buttons(last), "the last page: 15 notes and the payment"
    assert "Payment of $50.00 paid" in history_of(last)
    harness.person.click(last, "history_newer")
    assert "page 2" in history_of(harness.slack.message(card.ts))


def _value(message, action_id: str) -> str:
    for block in message.blocks:
        for element in block.get("elements", []):
            if element.get("action_id") == action_id:
                return element["value"]
    raise AssertionError(f"no {action_id}")


def test_what_stripe_did_is_in_the_subscription_history(harness, jane):
    with harness.db.session() as s:
        sub = s.get(Subscription, jane["sub"])
        make.payment(s, sub, "paid", due_at=make.T0 + timedelta(days=30), refunded=900)
        make.payment(s, sub, "failed", due_at=make.T0 + timedelta(days=60), reason="Your card was declined.")
        sub.status, sub.canceled_at = "canceled", make.T0 + timedelta(days=70)
    card = harness.person.command("jane doe")
    harness.person.click(card, "subscriptions_all")  # a canceled subscription is under All
    harness.person.click(harness.slack.message(card.ts), f"open_subscription-{jane['sub']}")
    lines = history_of(harness.slack.message(card.ts)).split("\n")[1:]

    assert [line.split(" · ", 1)[1] for line in lines] == [
        ":stop_button: Subscription *Pro Membership* canceled",
        ":x: Renewal of $29.00 failed: Your card was declined.",
        ":leftwards_arrow_with_hook: $9.00 refunded in Stripe · requested by customer",
        ":white_check_mark: Renewal of $29.00 paid",
        ":arrow_forward: Subscription *Pro Membership* started",
    ]


def test_a_non_admin_can_add_a_note_but_not_refund(acting, stripe_client):
    _, order_id = jane_in_stripe(acting, stripe_client)
    outsider = acting.someone_else("U0SUPPORT9")
    card = outsider.command("jane doe")
    outsider.click(card, f"open_order-{order_id}")
    record = acting.slack.message(card.ts)

    outsider.click(record, f"refund_order-{order_id}")
    assert "Only payment admins" in text_of(outsider.visible()[-1])
    assert add_note(
        outsider, acting, record, f"order{order_id}", "Asked for a refund; passed to finance"
    ) == {"response_action": "clear"}

    history = history_of(acting.slack.message(card.ts))
    assert "<@U0SUPPORT9> :memo: “Asked for a refund; passed to finance”" in history
    assert "refused" not in history and "not a payment admin" not in history, "refusals changed nothing"


def test_a_refund_with_a_note_is_in_the_order_history_with_who_did_it(acting, stripe_client):
    _, order_id = jane_in_stripe(acting, stripe_client)
    record = open_order(acting, order_id)
    acting.person.click(record, f"refund_order-{order_id}")
    form = acting.slack.latest_view()
    acting.person.submit(form, {"amount": "12.50", "reason": "other", "note": "Charged twice <!here>"})
    acting.person.submit(acting.slack.views[form["id"]])
    finish(acting, form["id"])

    with acting.db.session() as s:
        number = s.get(Order, order_id).number
    history = history_of(acting.slack.message(record.ts))
    line = history.split("\n")[1]
    assert line.endswith(
        f"<@{ADMIN}> refunded $12.50 of order #{number} (Jane Doe) · “Charged twice &lt;!here&gt;”"
    ), line
    assert "refunded in Stripe" not in history, "the refund is told once, from our audit trail"
    with acting.db.session() as s:
        event = s.scalar(select(AuditEvent).where(AuditEvent.outcome == "succeeded"))
        assert event.details == {
            "summary": f"refunded $12.50 of order #{number} (Jane Doe)",
            "note": "Charged twice <!here>",
        }


@pytest.fixture
def recorder() -> RecordingHTTPClient:
    return RecordingHTTPClient(subscription_body("sub_123"))


@pytest.fixture
def recorded(db, slack, recorder) -> Harness:
    settings = settings_for(db, slack, payment_admins=frozenset({ADMIN}))
    web = WebApp(create_app(settings, db, gateway=recording_gateway(recorder)), db)
    return Harness(
        settings, db, slack, web, SlackPerson(slack, wsgi_transport(web), SIGNING_SECRET, user_id=ADMIN)
    )


def test_a_pause_with_a_note_is_in_the_subscription_history(recorded, recorder):
    with recorded.db.session() as s:
        jane = make.customer(s, stripe_customer_id="cus_123")
        sub_id = make.subscription(s, jane, stripe_subscription_id="sub_123").id
    card = recorded.person.command("jane doe")
    recorded.person.click(card, f"open_subscription-{sub_id}")
    record = recorded.slack.message(card.ts)
    recorder.respond(subscription_body("sub_123", pause_collection={"behavior": "void", "resumes_at": None}))

    recorded.person.click(record, f"pause_payments-{sub_id}")
    form = recorded.slack.latest_view()
    assert "note" in [b.get("block_id") for b in form["blocks"]], "the pause form takes a note"
    recorded.person.submit(form, {"when": "until_resumed", "note": "Travelling until spring"})
    recorded.slack.wait_for(lambda: recorded.slack.views[form["id"]].get("callback_id") == "result")

    line = history_of(recorded.slack.message(record.ts)).split("\n")[1]
    assert line.endswith(
        f"<@{ADMIN}> paused payments of Pro Membership (Jane Doe) until resumed · “Travelling until spring”"
    ), line
    assert recorder.last.params == {"pause_collection[behavior]": "void"}, "the note is ours, not Stripe's"


def test_every_action_form_takes_an_optional_note(recorded, recorder):
    with recorded.db.session() as s:
        jane = make.customer(s, stripe_customer_id="cus_123", default_payment_method_id="pm_1")
        plan_id = make.payment_plan(s, jane, stripe_subscription_id="sub_123").id
    card = recorded.person.command("jane doe")
    for button in ("new_order", "change_email"):
        recorded.person.click(card, button)
        note = [b for b in recorded.slack.latest_view()["blocks"] if b.get("block_id") == "note"]
        assert note and note[0]["optional"] and note[0]["element"]["max_length"] == 500, button
    recorded.person.click(card, f"open_payment_plan-{plan_id}")
    record = recorded.slack.message(card.ts)
    for button in ("cancel_recurring", "pause_payments", "change_next_bill_date", "change_plan_status"):
        recorded.person.click(record, f"{button}-{plan_id}")
        form = recorded.slack.latest_view()
        assert any(b.get("block_id") == "note" and b["optional"] for b in form["blocks"]), button
    answer = recorded.person.submit(form, {"status": "canceled_now", "note": "x" * 501})
    assert answer["response_action"] == "errors" and "500 characters" in answer["errors"]["note"]
    assert recorder.requests == [], "a bad note changes nothing"


def test_the_history_renderer_against_literal_json():
    back = CardState(7)
    page = HistoryPage(
        ("order", 3),
        [
            HistoryEntry(datetime(2026, 1, 15, 12, tzinfo=UTC), "note", actor="U1", said="Called *twice*"),
            HistoryEntry(
                datetime(2026, 1, 14, 12, tzinfo=UTC), "paid", said="one_off", amount=Money(5000, "usd")
            ),
        ],
        page=1,
        has_older=True,
    )
    assert record_blocks.history_blocks(page, back) == [
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": "*History* · newest first · page 2\n"
                "<!date^1768478400^{date_short} at {time}|Jan 15, 2026 at 12:00 UTC> · <@U1> :memo: “Called ∗twice∗”\n"
                "<!date^1768392000^{date_short} at {time}|Jan 14, 2026 at 12:00 UTC> · :white_check_mark: Payment "
                "of $50.00 paid",
                "verbatim": True,
            },
        },
        {
            "type": "actions",
            "block_id": "history_pages",
            "elements": [
                {
                    "type": "button",
                    "text": {"type": "plain_text", "text": "Newer"},
                    "action_id": "history_newer",
                    "value": 'o3.0:[7,"a",0,"a",0,0]',
                },
                {
                    "type": "button",
                    "text": {"type": "plain_text", "text": "Older"},
                    "action_id": "history_older",
                    "value": 'o3.2:[7,"a",0,"a",0,0]',
                },
            ],
        },
    ]


@pytest.fixture(params=BACKENDS)
def database_at_0010(request, tmp_path):
    """A database of each backend at revision 0010, the release before notes."""
    with database_at(request.param, "0010", tmp_path) as database:
        yield database


def test_the_upgrade_adds_notes_in_place_and_keeps_every_record(database_at_0010, slack):
    db = database_at_0010
    at = make.T0 if db.engine.dialect.name == "postgresql" else make.T0.replace(tzinfo=None)
    with db.engine.begin() as connection:  # rows of the release before, so written as SQL
        for statement in (
            "INSERT INTO customers (id, name, email, created_at) VALUES (1, 'Jane Doe', 'jane.doe@example.com', :at)",
            "INSERT INTO customer_search_terms (term, customer_id) VALUES ('jane', 1), ('doe', 1)",
            "INSERT INTO orders (id, number, customer_id, created_at, currency, total, amount_refunded, amount_lost,"
            " status, source) VALUES (1, '100001', 1, :at, 'usd', 5000, 0, 0, 'paid', 'checkout')",
            "INSERT INTO order_lines (order_id, position, description, quantity, unit_amount)"
            " VALUES (1, 0, 'Course', 1, 5000)",
            "INSERT INTO payments (id, order_id, kind, due_at, paid_at, amount, currency, status,"
            " amount_refunded, amount_refund_pending) VALUES (1, 1, 'one_off', :at, :at, 5000, 'usd', 'paid', 0, 0)",
        ):
            connection.execute(text(statement), {"at": at})
        if db.engine.dialect.name == "postgresql":
            for table in ("customers", "orders", "payments"):
                connection.execute(
                    text(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
                    )
                )
    order_id = 1

    db.upgrade()

    web = WebApp(create_app(settings_for(db, slack), db), db)
    person = SlackPerson(slack, wsgi_transport(web), SIGNING_SECRET)
    card = person.command("jane doe")
    assert "*Orders*\n1" in text_of(card), "the customer and their order came through"
    person.click(card, f"open_order-{order_id}")
    record = slack.message(card.ts)
    add_note(
        person, Harness(settings_for(db, slack), db, slack, web, person), record, f"order{order_id}", "After"
    )
    assert "“After”" in history_of(slack.message(card.ts))
