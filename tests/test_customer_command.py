"""/customer over signed HTTP: usage, no match, a list to pick from, and the record card with every section."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from bot.models import Order
from tests import factories as make
from tests.slack_text import action_ids, buttons, selected, text_of


def test_no_text_shows_how_to_use_the_command(harness):
    message = harness.person.command("   ")

    assert message.ephemeral
    assert "Find a customer" in text_of(message)
    assert "/customer jane@example.com" in text_of(message)


def test_no_match_says_so_and_suggests_what_to_try(harness):
    with harness.db.session() as s:
        make.customer(s, "Jane Doe")

    message = harness.person.command("zebediah")

    assert "No customer matches “zebediah”" in text_of(message)
    assert "order number" in text_of(message)


def test_one_match_opens_the_record_card(harness):
    with harness.db.session() as s:
        jane = make.customer(s, "Jane Doe", stripe_customer_id="cus_JANE123")
        make.order(s, jane, 5000)
        make.order(s, jane, 1500, currency="eur")
        make.order(s, jane, 2000, refunded=500)
        sub = make.subscription(s, jane, "Pro Membership")
        make.payment(s, sub, "failed", reason="Your card was declined.")
        old = make.subscription(s, jane, "Old Newsletter", status="canceled", canceled_at=make.T0)
        make.payment_plan(s, jane, "Guitar course", total=6, paid=2)
        old_id = old.id

    message = harness.person.command("jane")
    text = text_of(message)

    assert message.ephemeral, "the card is only for the person who asked until they share it"
    assert "Jane Doe" in text
    assert "Customer since <!date^" in text
    assert "*Orders*\n6" in text, "three checkouts, two subscriptions and a payment plan were placed"
    assert "*Lifetime value*\n$65.00 · €15.00" in text, "paid minus refunded, per currency"
    assert "*Active subscriptions*\n1" in text
    assert "*Active payment plans*\n1" in text
    assert "*Missed payments*\n:warning: *1* (1 subscription)" in text
    assert "jane.doe@example.com" in text
    assert "Visa •••• 4242" in text
    assert "Pro Membership" in text and "1 missed payment" in text
    assert f"open_subscription-{old_id}" not in action_ids(message), "the Active toggle hides ended ones"
    assert "Guitar course" in text and "2 of 6 paid" in text
    assert buttons(message).count("Active") == 2 and buttons(message).count("All") == 2
    assert selected(message) == ["Active", "Active"]
    assert "Share in channel" in buttons(message)


def test_several_matches_list_the_best_first_and_open_one(harness):
    with harness.db.session() as s:
        for name in ["Janet Smith", "Jane Doe", "Jan Novak", "Janelle Brooks"]:
            make.customer(s, name)

    listing = harness.person.command("jan")
    text = text_of(listing)

    assert "4 customers match “jan”" in text
    assert text.index("Jan Novak") < text.index("Jane Doe") < text.index("Janelle Brooks")
    assert buttons(listing) == ["Open"] * 4

    status = harness.person.click(listing, label="Open")

    assert status == 200
    card = harness.slack.message(listing.ts)
    assert "Jan Novak" in text_of(card) and "Lifetime value" in text_of(card), "the list became the card"


def test_more_than_ten_matches_show_ten_and_how_many_more(harness):
    with harness.db.session() as s:
        for i in range(14):
            make.customer(s, f"Maria Number{i:02d}")

    listing = harness.person.command("maria")

    assert "14 customers match" in text_of(listing)
    assert buttons(listing) == ["Open"] * 10
    assert "Showing the best 10" in text_of(listing)


def test_all_toggle_shows_ended_subscriptions_and_active_brings_them_back(harness):
    with harness.db.session() as s:
        jane = make.customer(s)
        make.subscription(s, jane, "Pro Membership")
        old_id = make.subscription(s, jane, "Old Newsletter", status="canceled", canceled_at=make.T0).id

    card = harness.person.command("jane doe")
    harness.person.click(card, "subscriptions_all")
    card = harness.slack.message(card.ts)

    assert f"open_subscription-{old_id}" in action_ids(card) and "Canceled" in text_of(card)
    assert selected(card) == ["All", "Active"], "subscriptions show All, plans still Active"

    harness.person.click(card, "subscriptions_active")
    card = harness.slack.message(card.ts)
    assert f"open_subscription-{old_id}" not in action_ids(card)


def test_orders_are_newest_first_and_paged(harness):
    with harness.db.session() as s:
        jane = make.customer(s)
        for day in range(25):
            make.order(s, jane, 100 + day, created_at=make.T0 + timedelta(days=day))

    card = harness.person.command("jane")
    first_page = text_of(card)

    assert "*Orders* · 25 · page 1 of 3" in first_page
    assert "$1.24" in first_page and "$1.15" in first_page and "$1.14" not in first_page
    assert first_page.index("$1.24") < first_page.index("$1.15")
    assert "Newer" not in buttons(card)

    harness.person.click(card, "orders_older")
    card = harness.slack.message(card.ts)
    assert "page 2 of 3" in text_of(card)
    assert "$1.14" in text_of(card) and "$1.24" not in text_of(card)
    assert "Newer" in buttons(card) and "Older" in buttons(card)


def test_subscription_record_shows_payments_and_goes_back(harness):
    with harness.db.session() as s:
        jane = make.customer(s)
        sub = make.subscription(s, jane, "Pro Membership", stripe_subscription_id="sub_123")
        make.payment(s, sub, "paid", kind="initial")
        make.payment(
            s, sub, "failed", due_at=make.T0 + timedelta(days=30), reason="Your card has insufficient funds."
        )
        sub_id = sub.id
        number = s.scalar(select(Order.number).where(Order.recurring_id == sub_id))

    card = harness.person.command("jane")
    harness.person.click(card, f"open_subscription-{sub_id}")
    record = harness.slack.message(card.ts)
    text = text_of(record)

    assert "Subscription: Pro Membership" in text
    assert "sub_123" in text
    assert "*Payments* · 2" in text
    assert "Failed: Your card has insufficient funds." in text
    assert "First payment · $29.00 · :white_check_mark: Paid" in text
    assert "Renewal · $29.00 · :x: Failed" in text
    assert f"Open order #{number}" in buttons(record), "its payments are the payments of its order"
    assert "*Paid so far*\n$29.00" in text

    harness.person.click(record, "back_to_customer")
    assert "Lifetime value" in text_of(harness.slack.message(card.ts))


def test_payment_plan_record_shows_instalments(harness):
    with harness.db.session() as s:
        jane = make.customer(s)
        plan = make.payment_plan(s, jane, "Guitar course", total=6, paid=2)
        plan_id = plan.id

    card = harness.person.command("jane")
    harness.person.click(card, f"open_payment_plan-{plan_id}")
    text = text_of(harness.slack.message(card.ts))

    assert "Payment plan: Guitar course" in text
    assert "*Instalments*\n2 of 6 paid" in text
    assert "*Next instalment*" in text
    assert "*Left to pay*\n$200.00" in text, "four instalments of $50.00"
    assert "*Upcoming instalments*\n3 of 6 · <!date^1771070400^" in text, "the next bill date: Feb 14, 2026"
    assert "6 of 6 · <!date^1778760000^" in text, "then monthly: May 14, 2026"


def test_order_record_shows_items_address_card_refunds_and_its_payments(harness):
    with harness.db.session() as s:
        jane = make.customer(s)
        order = make.order(
            s,
            jane,
            lines=[("Pro Membership, March", 1, 2900), ("Sticker pack", 2, 300)],
            refunded=300,
            stripe_payment_intent_id="pi_paid_by_card",
            billing_name="Jane Doe",
            billing_line1="12 Rue de la Paix",
            billing_city="Paris",
            billing_postal_code="75002",
            billing_country="FR",
        )
        order_id, number = order.id, order.number

    card = harness.person.command("jane")
    harness.person.click(card, f"open_order-{order_id}")
    record = harness.slack.message(card.ts)
    text = text_of(record)

    assert f"Order #{number}" in text
    assert "1 × Pro Membership, March · $29.00" in text
    assert "2 × Sticker pack at $3.00 · $6.00" in text
    assert (
        "*Total paid*\n$35.00" in text
        and "*Refunded*\n$3.00" in text
        and "*Still refundable*\n$32.00" in text
    )
    assert "*Status*\nPartially refunded" in text
    assert "12 Rue de la Paix" in text and "75002 Paris" in text and "FR" in text
    assert "Visa •••• 4242" in text
    assert "requested by customer" in text
    assert "*Payments* · 1" in text and "Payment · $35.00 · :white_check_mark: Paid · $3.00 refunded" in text


def test_a_subscriptions_order_has_its_renewals_as_payments_and_links_to_it(harness):
    with harness.db.session() as s:
        jane = make.customer(s)
        sub = make.subscription(s, jane, "Pro Membership")
        for month in range(3):
            make.payment(
                s, sub, kind="initial" if month == 0 else None, due_at=make.T0 + timedelta(days=31 * month)
            )
        make.payment(s, sub, "failed", due_at=make.T0 + timedelta(days=93), reason="Card expired.")
        sub_id = sub.id
        order_id = s.scalar(select(Order.id).where(Order.recurring_id == sub_id))

    card = harness.person.command("jane")
    assert "*Orders*\n1" in text_of(card) and "Pro Membership · Subscription · 4 payments" in text_of(card)
    harness.person.click(card, f"open_order-{order_id}")
    record = harness.slack.message(card.ts)
    text = text_of(record)

    assert "*Total paid*\n$87.00" in text and "*Source*\nSubscription" in text
    assert "*Payments* · 4" in text
    assert text.index("Renewal · $29.00 · :x: Failed: Card expired.") < text.index("First payment · $29.00")
    assert "Started the subscription *Pro Membership*" in text

    harness.person.click(record, f"open_subscription-{sub_id}")
    assert "Subscription: Pro Membership" in text_of(harness.slack.message(card.ts))


def test_an_order_number_opens_that_order_and_its_back_button_the_customer(harness):
    with harness.db.session() as s:
        jane = make.customer(s, "Jane Doe")
        make.order(s, jane, 1500)
        wanted = make.order(s, jane, 4200, lines=[("Yoga mat", 1, 4200)])
        number = wanted.number

    for typed in (number, f"#{number}", f"  #{number} "):
        record = harness.person.command(typed)
        text = text_of(record)

        assert record.ephemeral
        assert f"Order #{number}" in text and "1 × Yoga mat · $42.00" in text, typed
        assert "Lifetime value" not in text, "the order, not the customer card"

    harness.person.click(record, label="Back to Jane Doe")
    assert "Lifetime value" in text_of(harness.slack.message(record.ts))
    assert "No customer matches “#999999999”" in text_of(harness.person.command("#999999999"))


def test_share_posts_a_read_only_card_that_others_can_open_for_themselves(harness):
    with harness.db.session() as s:
        jane = make.customer(s)
        make.order(s, jane, 5000)

    card = harness.person.command("jane")
    harness.person.click(card, "share_card")
    colleague = harness.someone_else()
    shared = [m for m in colleague.visible() if not m.ephemeral]

    assert len(shared) == 1, "everyone in the channel sees the shared card"
    assert "Jane Doe" in text_of(shared[0]) and f"shared by <@{harness.person.user_id}>" in text_of(shared[0])
    assert buttons(shared[0]) == ["Open record"], "the shared copy has no toggles or actions"
    assert card.ts not in [m.ts for m in colleague.visible()], "the original stays private"

    colleague.click(shared[0], label="Open record")
    private = [m for m in colleague.visible() if m.ephemeral]
    assert len(private) == 1 and "Share in channel" in buttons(private[0])
    assert text_of(harness.slack.message(shared[0].ts)) == text_of(shared[0]), "the shared card is unchanged"


def test_close_removes_the_card(harness):
    with harness.db.session() as s:
        make.customer(s)

    card = harness.person.command("jane")
    harness.person.click(card, "close_message")

    assert card.ts not in [m.ts for m in harness.person.visible()]


def test_every_button_on_every_record_has_a_listener(harness):
    """Walk the card breadth first: every kind of button reachable from it is clicked once and answered."""
    with harness.db.session() as s:
        jane = make.customer(s)
        sub = make.subscription(s, jane)
        make.payment_plan(s, jane)
        make.subscription(s, jane, "Ended", status="canceled", canceled_at=make.T0)
        make.payment(s, sub)
        for i in range(11):
            make.order(s, jane, 2000 + i)
        for i in range(7):
            make.subscription(s, jane, f"Extra {i}")

    clicked: set[str] = set()
    paths: list[list[str]] = [[]]
    while paths:
        path = paths.pop(0)
        message = harness.person.command("jane")
        for step in path:
            harness.person.click(harness.slack.message(message.ts), step)
        for action_id in action_ids(harness.slack.message(message.ts)):
            kind = action_id.split("-")[0]
            if kind in clicked:
                continue
            clicked.add(kind)
            replay = harness.person.command("jane")
            for step in path:
                harness.person.click(harness.slack.message(replay.ts), step)
            assert harness.person.click(harness.slack.message(replay.ts), action_id) == 200, action_id
            paths.append([*path, action_id])

    assert clicked == {
        "subscriptions_active",
        "subscriptions_all",
        "subscriptions_next",
        "subscriptions_previous",
        "plans_active",
        "plans_all",
        "orders_older",
        "orders_newer",
        "open_order",
        "open_subscription",
        "open_payment_plan",
        "back_to_customer",
        "share_card",
        "close_message",
        "new_order",
        "change_email",
        "show_history",
        "history_newer",
        "history_older",
        "add_note",
    }


def test_a_customer_without_a_name_is_shown_by_email(harness):
    with harness.db.session() as s:
        make.customer(s, "", email="nameless@example.com", stripe_customer_id="cus_NoName1")

    card = harness.person.command("cus_NoName1")

    assert card.blocks[0]["text"]["text"] == "nameless@example.com"
