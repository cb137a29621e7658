"""The customer record card, the search results that lead to it, and the command's help."""

from __future__ import annotations

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    DividerBlock,
    HeaderBlock,
    MarkdownTextObject,
    SectionBlock,
)

from blocks import ids
from blocks.elements import action_notice, awaiting_stripe, button, context, section
from blocks.limits import HEADER_TEXT
from blocks.message import Message
from blocks.text import date_token, escape, money, money_list, one_line, plural, truncate
from bot.viewmodels import (
    Card,
    CardState,
    CustomerCard,
    Notice,
    OrderSummary,
    RecurringList,
    RecurringSummary,
    SearchResult,
    record_value,
)

# Page sizes: with them the fullest card is 37 blocks (Slack allows 50) and about 8,000 characters.
RECURRING_PAGE_SIZE = 5
ORDERS_PAGE_SIZE = 10

NAME_IN_TEXT = 120
EMAIL_IN_TEXT = 254
PRODUCT_IN_TEXT = 80
DESCRIPTION_IN_TEXT = 90
QUERY_IN_TEXT = 80

STATUS_LABELS = {
    "active": "Active",
    # A moved next bill date is a trial_end in Stripe; to the merchant it is still an active subscription.
    "trialing": "Active",
    "past_due": "Past due",
    "paused": "Paused",
    "incomplete": "Incomplete: first payment failed",
    "canceled": "Canceled",
    "completed": "Completed",
}
ORDER_STATUS_LABELS = {"paid": "Paid", "partially_refunded": "Partially refunded", "refunded": "Refunded"}
SOURCE_LABELS = {
    "checkout": "Checkout",
    "internal": "Internal order",
    "renewal": "Subscription renewal",
    "instalment": "Plan instalment",
}


def usage() -> Message:
    text = (
        "*Find a customer*\n"
        "`/customer jane` any part of a name\n"
        "`/customer jane@example.com` an email, or part of one\n"
        "`/customer cus_NffrFeUfNV2Hib` a Stripe customer id\n"
        "`/customer 100234` an order number"
    )
    return Message.of("How to use /customer", [SectionBlock(text=MarkdownTextObject(text=text))])


def no_match(query: str) -> Message:
    shown = escape(one_line(query), QUERY_IN_TEXT)
    text = (
        f"No customer matches “{shown}”.\n"
        "Try the start of a first or last name (`jan`), the whole email, a Stripe id (`cus_…`) "
        "or an order number (`100234`)."
    )
    return Message.of(f"No customer matches “{truncate(one_line(query), QUERY_IN_TEXT)}”", [section(text)])


def search_results(result: SearchResult) -> Message:
    """Several customers match: a short list, best first, each with an Open button."""
    shown = escape(one_line(result.query), QUERY_IN_TEXT)
    count = f"More than {result.total:,}" if result.capped else f"{result.total:,}"
    blocks: list[Block] = [section(f"*{count} customers match “{shown}”*")]
    for customer_id, name, email in ((m.customer_id, m.name, m.email) for m in result.matches):
        blocks.append(
            SectionBlock(
                text=MarkdownTextObject(
                    text=f"*{escape(one_line(name), NAME_IN_TEXT)}*\n{escape(email, EMAIL_IN_TEXT)}"
                ),
                accessory=button(
                    "Open", ids.per_item(ids.OPEN_CUSTOMER, customer_id), CardState(customer_id).encode()
                ),
            )
        )
    if result.capped or result.total > len(result.matches):
        blocks.append(
            context(
                f"Showing the best {len(result.matches)}. Type more of the name, or the email, to narrow it down."
            )
        )
    return Message.of(f"{count} customers match", blocks)


def customer_card(
    card: CustomerCard, *, shared_by: str | None = None, notice: Notice | None = None
) -> Message:
    """The record. Shared in a channel (`shared_by` set) it is a read-only snapshot with one Open button;
    `notice` says on top what an action just did."""
    interactive = shared_by is None
    state = card.state
    blocks: list[Block] = [action_notice(notice)] if notice else []
    blocks += [
        HeaderBlock(text=truncate(one_line(card.name), HEADER_TEXT)),
        context(_subtitle(card, shared_by)),
        *([awaiting_stripe(card.awaiting)] if card.awaiting and interactive else []),
        _stats(card),
        SectionBlock(
            fields=[
                MarkdownTextObject(text=f"*Email*\n{escape(card.email, EMAIL_IN_TEXT)}"),
                MarkdownTextObject(text=f"*Card on file*\n{_card_text(card.card)}"),
            ]
        ),
        DividerBlock(),
    ]
    blocks += _recurringsection(card.subscriptions, state, "subscriptions", interactive)
    blocks.append(DividerBlock())
    blocks += _recurringsection(card.plans, state, "plans", interactive)
    blocks.append(DividerBlock())
    blocks += _orderssection(card, interactive)
    blocks.append(_footer(state, interactive))
    return Message.of(f"Customer record: {truncate(one_line(card.name), NAME_IN_TEXT)}", blocks)


def _subtitle(card: CustomerCard, shared_by: str | None) -> str:
    parts = [f"Customer since {date_token(card.created_at)}"]
    if card.stripe_customer_id:
        parts.append(f"Stripe `{escape(card.stripe_customer_id, 64)}`")
    if shared_by:
        parts.append(f"shared by <@{shared_by}>")
    return " · ".join(parts)


def _stats(card: CustomerCard) -> SectionBlock:
    stats = card.stats
    if stats.missing_payment:
        parts = []
        if stats.subscriptions_missing_payment:
            parts.append(plural(stats.subscriptions_missing_payment, "subscription"))
        if stats.plans_missing_payment:
            parts.append(plural(stats.plans_missing_payment, "payment plan"))
        missed = f":warning: *{stats.missing_payment}* ({', '.join(parts)})"
    else:
        missed = ":white_check_mark: None"
    return SectionBlock(
        fields=[
            MarkdownTextObject(text=f"*Orders*\n{stats.orders:,}"),
            MarkdownTextObject(text=f"*Lifetime value*\n{money_list(stats.lifetime_value)}"),
            MarkdownTextObject(text=f"*Active subscriptions*\n{stats.active_subscriptions:,}"),
            MarkdownTextObject(text=f"*Active payment plans*\n{stats.active_plans:,}"),
            MarkdownTextObject(text=f"*Missed payments*\n{missed}"),
        ]
    )


def _card_text(card: Card | None) -> str:
    if card is None:
        return "No card on file"
    text = f":credit_card: {card_label(card)}"
    if card.exp_month and card.exp_year:
        text += f" · expires {card.exp_month:02d}/{card.exp_year}"
    return text


def card_label(card: Card) -> str:
    brand = {"amex": "American Express", "mastercard": "Mastercard", "visa": "Visa"}.get(
        card.brand.lower(), card.brand.title()
    )
    return f"{escape(brand, 40)} •••• {escape(card.last4, 4)}"


_RECURRING_IDS = {
    "subscriptions": (
        ids.SUBSCRIPTIONS_ACTIVE,
        ids.SUBSCRIPTIONS_ALL,
        ids.SUBSCRIPTIONS_PREVIOUS,
        ids.SUBSCRIPTIONS_NEXT,
        ids.OPEN_SUBSCRIPTION,
    ),
    "plans": (ids.PLANS_ACTIVE, ids.PLANS_ALL, ids.PLANS_PREVIOUS, ids.PLANS_NEXT, ids.OPEN_PAYMENT_PLAN),
}


def _recurringsection(listing: RecurringList, state: CardState, which: str, interactive: bool) -> list[Block]:
    active_id, all_id, previous_id, next_id, open_id = _RECURRING_IDS[which]
    title = "Subscriptions" if which == "subscriptions" else "Payment plans"
    noun = "subscription" if which == "subscriptions" else "payment plan"
    page_field = "subscriptions_page" if which == "subscriptions" else "plans_page"
    filter_field = "subscriptions" if which == "subscriptions" else "plans"

    heading = f"*{title}* · {listing.active_count:,} active of {listing.all_count:,}"
    if listing.page_count > 1:
        heading += f" · page {listing.page + 1} of {listing.page_count}"
    blocks: list[Block] = [section(heading)]
    if interactive:
        blocks.append(
            ActionsBlock(
                block_id=f"{which}_filter",
                elements=[
                    button(
                        "Active",
                        active_id,
                        state.with_(**{filter_field: "active", page_field: 0}).encode(),
                        selected=listing.filter == "active",
                    ),
                    button(
                        "All",
                        all_id,
                        state.with_(**{filter_field: "all", page_field: 0}).encode(),
                        selected=listing.filter == "all",
                    ),
                ],
            )
        )
    if not listing.items:
        empty = f"No active {noun}s." if listing.filter == "active" else f"No {noun}s."
        if listing.filter == "active" and listing.all_count:
            empty += " Choose *All* to see the ended ones." if interactive else ""
        blocks.append(context(empty))
    for item in listing.items:
        accessory = button("Open", ids.per_item(open_id, item.id), record_value(item.id, state))
        blocks.append(
            SectionBlock(text=MarkdownTextObject(text=recurring_line(item)), accessory=accessory)
            if interactive
            else section(recurring_line(item))
        )
    if interactive and listing.page_count > 1:
        blocks.append(
            _pager(
                f"{which}_pages",
                (previous_id, "Previous", state.with_(**{page_field: listing.page - 1}), listing.page > 0),
                (
                    next_id,
                    "Next",
                    state.with_(**{page_field: listing.page + 1}),
                    listing.page + 1 < listing.page_count,
                ),
            )
        )
    return blocks


def recurring_line(item: RecurringSummary) -> str:
    """Two lines: what it is and costs; where it stands."""
    product = escape(one_line(item.product), PRODUCT_IN_TEXT)
    first = f"*{product}* · {money(item.price)} {interval_text(item.interval, item.interval_count)}"
    if item.kind == "payment_plan" and item.installments_total:
        first += f" · {item.installments_paid or 0} of {item.installments_total} paid"
    return first + "\n" + status_text(item)


def interval_text(interval: str, count: int) -> str:
    return f"/ {interval}" if count == 1 else f"every {count} {interval}s"


def status_text(item: RecurringSummary) -> str:
    parts = [STATUS_LABELS.get(item.status, item.status.replace("_", " ").capitalize())]
    if item.payments_paused:
        parts.append(
            f":pause_button: payments paused until {date_token(item.paused_until)}"
            if item.paused_until
            else ":pause_button: payments paused until resumed"
        )
    if item.status in ("canceled", "completed"):
        if item.canceled_at:
            parts.append(f"ended {date_token(item.canceled_at)}")
    elif item.cancel_at_period_end and item.next_bill_at:
        parts.append(f"cancels {date_token(item.next_bill_at)}")
    elif item.next_bill_at and not item.payments_paused:
        word = "next instalment" if item.kind == "payment_plan" else "next bill"
        parts.append(f"{word} {date_token(item.next_bill_at)}")
    if item.missed_payments:
        parts.append(f":warning: {plural(item.missed_payments, 'missed payment')}")
    return " · ".join(parts)


def _orderssection(card: CustomerCard, interactive: bool) -> list[Block]:
    orders = card.orders
    heading = f"*Orders* · {orders.total:,}"
    if orders.page_count > 1:
        heading += f" · page {orders.page + 1} of {orders.page_count}, newest first"
    blocks: list[Block] = [section(heading)]
    if not orders.items:
        blocks.append(context("No orders yet."))
    for order in orders.items:
        accessory = button("Open", ids.per_item(ids.OPEN_ORDER, order.id), record_value(order.id, card.state))
        blocks.append(
            SectionBlock(text=MarkdownTextObject(text=order_line(order)), accessory=accessory)
            if interactive
            else section(order_line(order))
        )
    if interactive and orders.page_count > 1:
        state = card.state
        blocks.append(
            _pager(
                "orders_pages",
                (ids.ORDERS_NEWER, "Newer", state.with_(orders_page=orders.page - 1), orders.page > 0),
                (
                    ids.ORDERS_OLDER,
                    "Older",
                    state.with_(orders_page=orders.page + 1),
                    orders.page + 1 < orders.page_count,
                ),
            )
        )
    return blocks


def order_line(order: OrderSummary) -> str:
    status = ORDER_STATUS_LABELS.get(order.status, order.status)
    if order.status == "partially_refunded":
        status += f" ({money(order.refunded)} back)"
    first = (
        f"*#{escape(order.number, 32)}* · {date_token(order.created_at)} · {money(order.total)} · {status}"
    )
    description = escape(one_line(order.description), DESCRIPTION_IN_TEXT) or "No items"
    return f"{first}\n{description} · {SOURCE_LABELS.get(order.source, order.source)}"


def _footer(state: CardState, interactive: bool) -> ActionsBlock:
    if interactive:
        elements = [
            button("New order", ids.NEW_ORDER, state.encode()),
            button("Change email", ids.CHANGE_EMAIL, state.encode()),
            button("Share in channel", ids.SHARE_CARD, state.encode()),
            button("Close", ids.CLOSE, "close"),
        ]
    else:
        elements = [button("Open record", ids.per_item(ids.OPEN_CUSTOMER, state.customer_id), state.encode())]
    return ActionsBlock(block_id="card_actions", elements=elements)


def _pager(block_id: str, *buttons: tuple[str, str, CardState, bool]) -> ActionsBlock:
    return ActionsBlock(
        block_id=block_id,
        elements=[
            button(label, action_id, state.encode())
            for action_id, label, state, enabled in buttons
            if enabled
        ],
    )
