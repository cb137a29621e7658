"""Every message stays within Slack's limits, whatever the customer: the check itself, extreme records rendered
directly, and an extreme customer driven through Slack end to end."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import insert

from blocks import customer as customer_blocks
from blocks import records as record_blocks
from blocks.limits import HEADER_TEXT, MESSAGE_BLOCKS, message_problems
from bot.models import Order, OrderLine
from bot.money import Money
from bot.plans import plan_schedule
from bot.viewmodels import (
    BillingAddress,
    Card,
    CardState,
    CustomerCard,
    CustomerHistory,
    DisputeLine,
    HistoryEntry,
    HistoryPage,
    Match,
    Notice,
    OrderLineView,
    OrderPage,
    OrderRecord,
    OrderSummary,
    PaymentLine,
    RecurringLink,
    RecurringList,
    RecurringRecord,
    RecurringSummary,
    RefundLine,
    SearchResult,
    Stats,
)
from tests import factories as make
from tests.slack_text import text_of

LONG = "Ŵ&<>*_~`" + "x" * 2000  # characters that expand when escaped, then far past any limit
T0 = make.T0


def section(text: str) -> dict:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def button(action_id: str) -> dict:
    return {"type": "button", "action_id": action_id, "text": {"type": "plain_text", "text": "Go"}}


@pytest.mark.parametrize(
    ("blocks", "problem"),
    [
        ([section("x")] * 51, "51 blocks"),
        ([{"type": "actions", "elements": [button("a"), button("a")]}], "duplicate action_id 'a'"),
        ([{**section("x"), "block_id": "b"}, {**section("y"), "block_id": "b"}], "duplicate block_id 'b'"),
        ([{"type": "section", "fields": [{"type": "mrkdwn", "text": "x" * 2001}]}], "section field of 2001"),
        ([section("x" * 2900)] * 4, "characters of block text"),
        ([section("x" * 3001)], "3000"),
        (
            [
                {
                    "type": "actions",
                    "elements": [{**button("a"), "text": {"type": "plain_text", "text": "y" * 76}}],
                }
            ],
            "75",
        ),
        ([{"type": "hologram"}], "unknown block type"),
        ([{"type": "section", "txt": {"type": "mrkdwn", "text": "typo"}}], "text or fields"),
        ([{"type": "actions", "elements": [{**button("a"), "colour": "red"}]}], "round-trip"),
    ],
)
def test_the_check_catches_what_slack_refuses(blocks, problem):
    problems = message_problems(blocks)
    assert any(problem in p for p in problems), problems


def test_the_check_passes_an_ordinary_message():
    assert message_problems([section("Hello"), {"type": "divider"}], "Hello") == []


def extreme_recurring(i: int, kind: str = "subscription") -> RecurringSummary:
    return RecurringSummary(
        id=10_000_000 + i,
        kind=kind,
        product=LONG,
        price=Money(99_999_999_999, "kwd"),
        interval="month",
        interval_count=12,
        status="past_due",
        started_at=T0,
        next_bill_at=T0,
        payments_paused=True,
        paused_until=T0,
        cancel_at_period_end=True,
        canceled_at=None,
        missed_payments=999,
        installments_total=999 if kind == "payment_plan" else None,
        installments_paid=998 if kind == "payment_plan" else None,
    )


def extreme_card() -> CustomerCard:
    state = CardState(2**40, "all", 9999, "all", 9999, 499)
    currencies = ["usd", "eur", "gbp", "jpy", "kwd", "cad", "aud", "chf", "sek", "nok", "dkk", "pln"]
    return CustomerCard(
        state=state,
        name="Ŵ" * 300,
        email=("a&<>" * 62) + "@x.io",
        created_at=T0,
        stripe_customer_id="cus_" + "Z" * 251,
        card=Card("a" * 32, "4242", 12, 2030),
        stats=Stats(5000, [Money(10**15, c) for c in currencies], 60, 60, 60, 60),
        subscriptions=RecurringList("all", [extreme_recurring(i) for i in range(5)], 11, 12, 60, 60),
        plans=RecurringList("all", [extreme_recurring(i, "payment_plan") for i in range(5)], 11, 12, 60, 60),
        orders=OrderPage(
            [
                OrderSummary(
                    i,
                    "9" * 32,
                    T0,
                    Money(10**15, "usd"),
                    Money(10**14, "usd"),
                    "partially_refunded",
                    "instalment",
                    LONG,
                )
                for i in range(10)
            ],
            499,
            500,
            5000,
        ),
    )


def test_an_extreme_card_fits():
    message = customer_blocks.customer_card(extreme_card())
    assert message_problems(message.blocks, message.text) == []
    assert len(message.blocks) <= MESSAGE_BLOCKS
    assert len(message.blocks[0]["text"]["text"]) <= HEADER_TEXT
    shared = customer_blocks.customer_card(extreme_card(), shared_by="U" + "9" * 20)
    assert message_problems(shared.blocks, shared.text) == []


def test_extreme_records_fit():
    back = CardState(1)
    recurring = RecurringRecord(
        back=back,
        customer_name=LONG,
        summary=extreme_recurring(1, "payment_plan"),
        current_period_end=T0,
        stripe_subscription_id="sub_" + "Q" * 251,
        payments=[
            PaymentLine(
                i,
                "renewal",
                T0,
                Money(10**15, "usd"),
                "failed",
                LONG,
                i,
                "9" * 32,
                T0,
                Money(10**15, "usd"),
                10**14,
            )
            for i in range(record_blocks.PAYMENTS_SHOWN)
        ],
        payment_count=10**6,
        paid_total=[Money(10**15, c) for c in ["usd", "eur", "gbp", "jpy", "kwd", "cad"]],
        schedule=plan_schedule(
            price=Money(99_999_999_999, "kwd"),
            installments_total=10**6,
            installments_paid=1,
            next_bill_at=T0,
            interval="day",
            interval_count=1,
            status="active",
        ),
    )
    order = OrderRecord(
        back=back,
        customer_name=LONG,
        id=1,
        number="9" * 32,
        created_at=T0,
        status="partially_refunded",
        source="payment_plan",
        lines=[OrderLineView(LONG, 10**6, Money(10**12, "usd"), Money(10**18, "usd")) for _ in range(200)],
        total=Money(10**18, "usd"),
        refunded=Money(10**17, "usd"),
        card=Card(LONG, "4242"),
        billing=BillingAddress(LONG, LONG, LONG, LONG, LONG, LONG, "FR"),
        refunds=[RefundLine(Money(10**15, "usd"), LONG, LONG, "U" + "1" * 30, T0) for _ in range(60)],
        recurring=RecurringLink(7, "payment_plan", LONG),
        payments=[
            PaymentLine(
                i,
                "instalment",
                T0,
                Money(10**15, "usd"),
                "failed",
                LONG,
                1,
                "9" * 32,
                T0,
                Money(10**15, "usd"),
                1,
            )
            for i in range(record_blocks.PAYMENTS_SHOWN)
        ],
        payment_count=10**6,
        refundable=Money(10**18, "usd"),
        refundable_payments=10**6,
        refund_pending=10**17,
        awaiting=[LONG] * 5,
        history=extreme_history(("order", 1)),
        disputes=[
            DisputeLine(
                "du_" + "Q" * 250,
                Money(10**15, "usd"),
                status,
                "product_not_received",
                T0,
                T0,
                Money(10**15, "usd"),
            )
            for status in ["needs_response", "lost", "warning_needs_response", "under_review", "won"] * 2
        ],
    )
    recurring = replace(recurring, history=extreme_history(("recurring", 1)))
    notice = Notice("U" + "1" * 30, LONG * 10, pending=True)
    for message in (
        record_blocks.recurring_record(recurring, notice=notice),
        record_blocks.order_record(order),
        record_blocks.order_record(order, notice=notice),
        record_blocks.customer_history(
            CustomerHistory(back, LONG, extreme_history(("customer", 1))), notice=notice
        ),
    ):
        assert message_problems(message.blocks, message.text) == []
        (history,) = [
            b["text"]["text"] for b in message.blocks if "*History*" in b.get("text", {}).get("text", "")
        ]
        assert len(history.split("\n")) == 1 + record_blocks.HISTORY_PAGE_SIZE, "a page of History fits whole"


def extreme_history(target: tuple[str, int]) -> HistoryPage:
    """A page of the longest History lines there can be, of every kind, on a middle page (Newer and Older)."""
    kinds = ["action", "note", "paid", "failed", "refund", "started", "canceled"]
    entries = [
        HistoryEntry(
            at=T0,
            kind=kinds[i % len(kinds)],
            actor="U" + "1" * 30,
            said=LONG * 3,
            outcome=["succeeded", "failed", "unknown", "let_go"][i % 4],
            action="pause_payments",
            note=LONG * 3,
            amount=Money(10**18, "kwd"),
            detail=LONG,
            number="9" * 32,
        )
        for i in range(record_blocks.HISTORY_PAGE_SIZE)
    ]
    return HistoryPage(target, entries, page=10**6, has_older=True)


def test_search_messages_fit_any_query():
    matches = [Match(i, LONG, LONG[:250]) for i in range(10)]
    for message in (
        customer_blocks.search_results(SearchResult("q" * 4000, matches, 1001, capped=True)),
        customer_blocks.no_match("<&>" * 1500),
        customer_blocks.usage(),
    ):
        assert message_problems(message.blocks, message.text) == []


def test_a_customer_with_5000_orders_and_60_subscriptions_works_through_slack(harness):
    name = "Ŵilhelmina " + "Z" * 289
    with harness.db.session() as s:
        whale = make.customer(s, name, email="w" * 240 + "@example.io")
        for i in range(60):
            make.subscription(s, whale, f"Plan {i} " + "p" * 200, status="active" if i % 2 else "canceled")
        s.execute(
            insert(Order),
            [
                {
                    "id": 100_000 + i,
                    "number": str(900_000 + i),
                    "customer_id": whale.id,
                    "created_at": T0 + timedelta(hours=i),
                    "currency": "usd",
                    "total": 1000 + i,
                    "amount_refunded": 0,
                    "status": "paid",
                    "source": "checkout",
                }
                for i in range(5000)
            ],
        )
        s.execute(
            insert(OrderLine),
            [
                {
                    "order_id": 100_000 + i,
                    "position": 0,
                    "description": "d" * 500,
                    "quantity": 1,
                    "unit_amount": 1000 + i,
                }
                for i in range(5000)
            ],
        )

    card = harness.person.command("wilhelmina")
    assert "*Orders*\n5,060" in text_of(card), "5,000 checkouts and 60 subscriptions"
    assert "*Orders* · 5,060 · page 1 of 506" in text_of(card)
    for action in ["subscriptions_all", "subscriptions_next", "orders_older", "orders_older"]:
        assert harness.person.click(harness.slack.message(card.ts), action) == 200
    final = harness.slack.message(card.ts)
    assert "page 3 of 506" in text_of(final)
    assert "*Subscriptions* · 30 active of 60 · page 2 of 12" in text_of(final)
    # The `slack` fixture fails the test if any message on the way was one Slack would refuse.


def test_who_did_what_is_escaped_where_people_see_it():
    from blocks.elements import action_notice, awaiting_stripe
    from blocks.email_sync import pushed_message
    from bot.viewmodels import Notice

    said = "pushed <!channel>'s email a@b.co to <https://evil.example|Stripe>"
    pushed = pushed_message(Notice("U0ADMIN01", said))
    asked = "refund $5.00 of order #1 (<!channel> <https://evil.example|Jane>)"
    notice = action_notice(Notice("U0ADMIN01", asked, pending=True))
    awaiting = awaiting_stripe(["refund $5.00 of order #1 (<!here>)"])

    assert pushed.text == (
        "<@U0ADMIN01> pushed &lt;!channel&gt;'s email a@b.co to &lt;https://evil.example|Stripe&gt;."
    )
    for text in (str(pushed.blocks), str(notice), str(awaiting)):
        assert "<!channel>" not in text and "<!here>" not in text and "<https://" not in text
    assert notice["elements"][0]["text"] == (
        ":hourglass_flowing_sand: <@U0ADMIN01> asked to refund $5.00 of order #1 (&lt;!channel&gt; "
        "&lt;https://evil.example|Jane&gt;): awaiting Stripe's answer."
    )


# --- the one escaping rule ----------------------------------------------------------------------------------


def test_data_goes_into_our_templates_escaped_and_disarmed():
    from blocks.text import date_token, escape, md, money

    text = md("*{}* paid {} on {}", "<!channel> *VIP* jane_doe", money(Money(1234, "usd")), date_token(T0))

    assert text.startswith("*&lt;!channel&gt; ∗VIP∗ jane_doe* paid $12.34 on <!date^")
    assert escape("`rm` ~x~ _y_ a*b*c") == "ˋrmˋ ∼x∼ ‗y‗ a*b*c", "pairs disarmed; a lone marker stays"
    assert md("{:,} of {}", 12345, "<b>") == "12,345 of &lt;b&gt;"
    assert md("a") + escape("<!here>") == "a&lt;!here&gt;"
    assert md(" · ").join(["<!here>", md("*ours*")]) == "&lt;!here&gt; · *ours*", (
        "join escapes what is not ours"
    )


def test_renderers_refuse_text_that_did_not_go_through_the_rule():
    from blocks.elements import context, field, section
    from blocks.message import Message
    from blocks.text import md

    for build in (section, context, lambda t: field("Label", t), lambda t: Message.of(t, [])):
        with pytest.raises(TypeError):
            build(f"Customer: {'<!channel>'}")
    assert Message.of(md("fine"), []).text == "fine"


def test_cut_text_never_ends_inside_an_escape_or_a_slack_date():
    from blocks.text import clip, date_token, escape, md

    for limit in range(1, 80):
        cut = clip(md("{} {}", "&" * 10, date_token(T0)), limit)
        assert len(cut) <= limit
        tail = cut.rsplit(" ", 1)[-1]
        assert not tail.startswith("<!date") or tail.endswith(">") or tail.endswith("…")
        assert "<!date" not in cut or cut.count("<") == cut.count(">")
        assert not any(cut.endswith(p) for p in ("&", "&a", "&am", "&amp")), cut
    assert escape("a&b" * 100, 10) == "a&amp;ba…"


def test_data_carried_in_button_values_and_modal_memory_reads_as_no_markup():
    from blocks.email_sync import parse_push_value, push_value
    from bot.viewmodels import Difference

    row = Difference(7, "<!channel> Jane", "<@U0BOSS001>@x.co", None, [("Keap", "<http://e|x>")])
    value = push_value(row)

    assert "<" not in value and ">" not in value
    assert parse_push_value(value) == row


def test_the_rule_has_no_gaps_between_values_cuts_or_joins():
    from blocks.text import code, escape, md

    assert md("{} {}", "_a", "b_") == "‗a b‗", "a pair across two values is disarmed"
    assert escape("*a*bcdef", 4) == "∗a*…", "a cut cannot close a pair"
    assert code("") == "—" and len(code("x" * 50, 10)) == 10
    with pytest.raises(TypeError):
        _ = "<@U0BOSS001> " + md("hi")
    with pytest.raises(ValueError):
        md("{:>8}", escape("a&b"))
    with pytest.raises(ValueError):
        md("{0} {}", "a", "b")


def test_an_address_too_long_to_be_an_email_is_shown_not_offered_cut_for_editing():
    from blocks.limits import message_problems
    from blocks.modals import change_email_form
    from bot.viewmodels import EmailForm

    stored = "a" * 400 + "@example.com"  # Stripe keeps up to 512 characters
    usual = change_email_form(EmailForm(1, "Jane", "jane@example.com", True), "{}")
    long = change_email_form(EmailForm(1, "Jane", stored, True), "{}")

    assert usual["blocks"][1]["element"]["initial_value"] == "jane@example.com"
    assert "initial_value" not in long["blocks"][1]["element"]
    assert stored[:300] in long["blocks"][0]["text"]["text"]
    assert message_problems(long["blocks"], view=True) == []
