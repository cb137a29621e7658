"""The customer record card, the search results that lead to it, and the command's help."""

from __future__ import annotations

from blocks import ids
from blocks.elements import (
    Block,
    action_notice,
    actions,
    awaiting_stripe,
    button,
    context,
    divider,
    field,
    fields,
    header,
    section,
)
from blocks.message import Message
from blocks.text import (
    DATE_AND_TIME,
    Mrkdwn,
    code,
    date_token,
    escape,
    md,
    mention,
    money,
    money_list,
    one_line,
    plural,
)
from bot.viewmodels import (
    Card,
    CardState,
    CustomerCard,
    Notice,
    OrderSummary,
    RecurringList,
    RecurringSummary,
    SearchResult,
    TaxId,
    history_value,
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
COMPANY_IN_TEXT = 150  # Stripe's business_name is at most 150 characters
TAX_IDS_SHOWN = 5  # the rest are counted: "and 3 more"
TAX_ID_TYPE_IN_TEXT = 24
TAX_ID_IN_TEXT = 66  # the value as code, backticks included

STATUS_LABELS = {
    "active": "Active",
    # A next bill date moved with trial_end is trialing in Stripe too; status_text shows that one as Active.
    "trialing": "Trial",
    "past_due": "Past due",
    "unpaid": "Unpaid: Stripe stopped retrying",
    "paused": "Paused",
    "incomplete": "Incomplete: first payment failed",
    "canceled": "Canceled",
    "completed": "Completed",
}
ORDER_STATUS_LABELS = {
    "unpaid": "Nothing paid yet",
    "paid": "Paid",
    "partially_refunded": "Partially refunded",
    "refunded": "Refunded",
}
SOURCE_LABELS = {
    "checkout": "Checkout",
    "internal": "Internal order",
    "subscription": "Subscription",
    "payment_plan": "Payment plan",
}


def usage() -> Message:
    text = md(
        "*Find a customer*\n"
        "`/customer jane` any part of a name\n"
        "`/customer jane@example.com` an email, or part of one\n"
        "`/customer cus_NffrFeUfNV2Hib` a Stripe customer id\n"
        "`/customer 100234` an order number"
    )
    return Message.of(md("How to use /customer"), [section(text)])


def no_match(query: str) -> Message:
    shown = escape(one_line(query), QUERY_IN_TEXT)
    text = md(
        "No customer matches “{}”.\n"
        "Try the start of a first or last name (`jan`), the whole email, a Stripe id (`cus_…`) "
        "or an order number (`100234`).",
        shown,
    )
    return Message.of(md("No customer matches “{}”", shown), [section(text)])


def search_results(result: SearchResult) -> Message:
    """Several customers match: a short list, best first, each with an Open button."""
    shown = escape(one_line(result.query), QUERY_IN_TEXT)
    count = md("More than {:,}", result.total) if result.capped else md("{:,}", result.total)
    blocks: list[Block] = [section(md("*{} customers match “{}”*", count, shown))]
    for customer_id, name, email in ((m.customer_id, m.name, m.email) for m in result.matches):
        blocks.append(
            section(
                md("*{}*\n{}", escape(one_line(name), NAME_IN_TEXT), escape(one_line(email), EMAIL_IN_TEXT)),
                accessory=button(
                    "Open", ids.per_item(ids.OPEN_CUSTOMER, customer_id), CardState(customer_id).encode()
                ),
            )
        )
    if result.capped or result.total > len(result.matches):
        blocks.append(
            context(
                md(
                    "Showing the best {}. Type more of the name, or the email, to narrow it down.",
                    len(result.matches),
                )
            )
        )
    return Message.of(md("{} customers match", count), blocks)


def customer_card(
    card: CustomerCard, *, shared_by: str | None = None, notice: Notice | None = None
) -> Message:
    """The record. Shared in a channel (`shared_by` set) it is a read-only snapshot with one Open button;
    `notice` says on top what an action just did."""
    interactive = shared_by is None
    state = card.state
    blocks: list[Block] = [action_notice(notice)] if notice else []
    blocks += [
        header(one_line(card.name)),
        context(_subtitle(card, shared_by)),
        *([awaiting_stripe(card.awaiting)] if card.awaiting and interactive else []),
        _stats(card),
        _basic_info(card),
        divider(),
    ]
    blocks += _recurringsection(card.subscriptions, state, "subscriptions", interactive)
    blocks.append(divider())
    blocks += _recurringsection(card.plans, state, "plans", interactive)
    blocks.append(divider())
    blocks += _orderssection(card, interactive)
    blocks.append(_footer(state, interactive))
    return Message.of(md("Customer record: {}", escape(one_line(card.name), NAME_IN_TEXT)), blocks)


def _subtitle(card: CustomerCard, shared_by: str | None) -> Mrkdwn:
    parts = [md("Customer since {}", date_token(card.created_at, DATE_AND_TIME))]
    if card.stripe_customer_id:
        parts.append(md("Stripe {}", code(card.stripe_customer_id, 64)))
    if shared_by:
        parts.append(md("shared by {}", mention(shared_by)))
    return md(" · ").join(parts)


def _stats(card: CustomerCard) -> Block:
    stats = card.stats
    if stats.missing_payment:
        parts = []
        if stats.subscriptions_missing_payment:
            parts.append(plural(stats.subscriptions_missing_payment, "subscription"))
        if stats.plans_missing_payment:
            parts.append(plural(stats.plans_missing_payment, "payment plan"))
        missed = md(":warning: *{}* ({})", stats.missing_payment, md(", ").join(parts))
        if stats.outstanding:
            missed += md(" · {} outstanding", money_list(stats.outstanding))
    else:
        missed = md(":white_check_mark: None")
    return fields(
        field("Orders", md("{:,}", stats.orders)),
        field("Lifetime value", money_list(stats.lifetime_value)),
        field("Active subscriptions", md("{:,}", stats.active_subscriptions)),
        field("Active payment plans", md("{:,}", stats.active_plans)),
        field("Missed payments", missed),
    )


def _basic_info(card: CustomerCard) -> Block:
    """Email and card on file; the company and tax ids when Stripe has them."""
    shown = [field("Email", code(card.email, EMAIL_IN_TEXT)), field("Card on file", _card_text(card.card))]
    if card.company_name and card.company_name.strip():
        shown.append(field("Company", escape(one_line(card.company_name), COMPANY_IN_TEXT)))
    if card.tax_ids:
        shown.append(field("Tax IDs", tax_ids_text(card.tax_ids)))
    return fields(*shown)


def tax_ids_text(tax_ids: tuple[TaxId, ...]) -> Mrkdwn:
    """One line per tax id, "EU VAT `DE123456789`", the first TAX_IDS_SHOWN of them, then how many more: at most
    about 600 characters, however many Stripe has."""
    lines = [
        md(
            "{} {}",
            escape(tax_id_label(tax_id.type), TAX_ID_TYPE_IN_TEXT),
            code(tax_id.value, TAX_ID_IN_TEXT),
        )
        for tax_id in tax_ids[:TAX_IDS_SHOWN]
    ]
    if len(tax_ids) > TAX_IDS_SHOWN:
        lines.append(md("and {:,} more", len(tax_ids) - TAX_IDS_SHOWN))
    return md("\n").join(lines)


def tax_id_label(tax_type: str) -> str:
    """Stripe's type code in words (plain text): "eu_vat" is "EU VAT", "us_ein" "US EIN"."""
    return one_line(tax_type.replace("_", " ")).upper() or "Tax ID"


def _card_text(card: Card | None) -> Mrkdwn:
    if card is None:
        return md("No card on file")
    text = md(":credit_card: {}", card_label(card))
    if card.exp_month and card.exp_year:
        text += md(" · expires {:02d}/{}", card.exp_month, card.exp_year)
    return md("{}\n{}", text, card_source(card))


def card_source(card: Card) -> Mrkdwn:
    """Which card this is: the customer's default, a subscription's, or their newest saved card."""
    if card.source == "subscription":
        noun = "payment plan" if card.subscription_kind == "payment_plan" else "subscription"
        if card.subscription:
            return md("card of the *{}* {}", escape(one_line(card.subscription), PRODUCT_IN_TEXT), noun)
        return md("card of a {}", noun)
    if card.source == "newest":
        return md("newest saved card")
    return md("default card")


def card_label(card: Card) -> str:
    """'Visa •••• 4242': plain text (escape it for mrkdwn)."""
    brand = {"amex": "American Express", "mastercard": "Mastercard", "visa": "Visa"}.get(
        card.brand.lower(), card.brand.title()
    )
    return f"{one_line(brand)[:40]} •••• {one_line(card.last4)[:4]}"


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

    heading = md("*{}* · {:,} active of {:,}", title, listing.active_count, listing.all_count)
    if listing.page_count > 1:
        heading += md(" · page {} of {}", listing.page + 1, listing.page_count)
    blocks: list[Block] = [section(heading)]
    if interactive:
        blocks.append(
            actions(
                f"{which}_filter",
                [
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
        empty = md("No active {}s.", noun) if listing.filter == "active" else md("No {}s.", noun)
        if listing.filter == "active" and listing.all_count and interactive:
            empty += md(" Choose *All* to see the others.")
        blocks.append(context(empty))
    for item in listing.items:
        accessory = button("Open", ids.per_item(open_id, item.id), record_value(item.id, state))
        blocks.append(section(recurring_line(item), accessory=accessory if interactive else None))
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


def recurring_line(item: RecurringSummary) -> Mrkdwn:
    """Two lines: what it is and costs; where it stands."""
    product = escape(one_line(item.product), PRODUCT_IN_TEXT)
    first = md("*{}* · {} {}", product, money(item.price), interval_text(item.interval, item.interval_count))
    if item.kind == "payment_plan" and item.installments_total:
        first += md(" · {} of {} paid", item.installments_paid or 0, item.installments_total)
    return md("{}\n{}", first, status_text(item))


def interval_text(interval: str, count: int) -> str:
    return f"/ {interval}" if count == 1 else f"every {count} {interval}s"


def status_label(status: str) -> str:
    """A stored status in words (plain text): "Past due"."""
    return STATUS_LABELS.get(status, status.replace("_", " ").capitalize())


def standing(item: RecurringSummary) -> Mrkdwn:
    """Where it stands, as Stripe has it: "Trial until Feb 1", "Cancelling on Mar 1", "Canceled Jan 3 for
    non-payment", "Incomplete: first payment failed: Your card was declined."."""
    if item.status == "canceled":
        text = md("Canceled {}", date_token(item.canceled_at)) if item.canceled_at else md("Canceled")
        return text + md(" for non-payment") if item.for_non_payment else text
    if item.status == "completed":
        return md("Completed {}", date_token(item.canceled_at)) if item.canceled_at else md("Completed")
    if item.in_trial:
        ends = item.trial_ends_at or item.next_bill_at
        return md("Trial until {}", date_token(ends)) if ends else md("Trial")
    if item.status == "incomplete" and item.failure_reason:
        return md("{}: {}", status_label(item.status), escape(one_line(item.failure_reason), 120))
    if item.cancelling and item.cancel_at and item.status in ("active", "trialing"):
        return md("Cancelling on {}", date_token(item.cancel_at))
    return escape(status_label("active" if item.bill_date_moved else item.status), 40)


# No bill is coming for these: a trial says when it ends, and Stripe charges nothing more for the others.
_NO_NEXT_BILL = ("incomplete", "unpaid")


def status_text(item: RecurringSummary) -> Mrkdwn:
    parts = [standing(item)]
    if item.payments_paused:
        parts.append(
            md(":pause_button: payments paused until {}", date_token(item.paused_until))
            if item.paused_until
            else md(":pause_button: payments paused until resumed")
        )
    if item.ended or item.in_trial:
        pass  # what ended, or when the trial does, is said already
    elif item.cancelling and item.cancel_at:
        if item.status not in ("active", "trialing"):
            parts.append(md("cancels {}", date_token(item.cancel_at)))
    elif item.next_bill_at and not item.payments_paused and item.status not in _NO_NEXT_BILL:
        word = "next instalment" if item.kind == "payment_plan" else "next bill"
        moved = md(" (moved)") if item.bill_date_moved else md("")
        parts.append(md("{} {}{}", word, date_token(item.next_bill_at), moved))
    if item.missed_payments:
        parts.append(md(":warning: {}", plural(item.missed_payments, "missed payment")))
    return md(" · ").join(parts)


def _orderssection(card: CustomerCard, interactive: bool) -> list[Block]:
    orders = card.orders
    heading = md("*Orders* · {:,}", orders.total)
    if orders.page_count > 1:
        heading += md(" · page {} of {}, newest first", orders.page + 1, orders.page_count)
    blocks: list[Block] = [section(heading)]
    if not orders.items:
        blocks.append(context(md("No orders yet.")))
    for order in orders.items:
        accessory = button("Open", ids.per_item(ids.OPEN_ORDER, order.id), record_value(order.id, card.state))
        blocks.append(section(order_line(order), accessory=accessory if interactive else None))
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


def order_line(order: OrderSummary) -> Mrkdwn:
    status = escape(ORDER_STATUS_LABELS.get(order.status, order.status), 40)
    if order.status == "partially_refunded":
        status += md(" ({} back)", money(order.refunded))
    first = md(
        "*#{}* · {} · {} · {}",
        escape(order.number, 32),
        date_token(order.created_at),
        money(order.total),
        status,
    )
    description = escape(one_line(order.description), DESCRIPTION_IN_TEXT) or md("No items")
    source = md("{}", SOURCE_LABELS.get(order.source, order.source))
    if order.payment_count > 1:
        source += md(" · {}", plural(order.payment_count, "payment"))
    return md("{}\n{} · {}", first, description, source)


def _footer(state: CardState, interactive: bool) -> Block:
    if interactive:
        elements = [
            button("New order", ids.NEW_ORDER, state.encode()),
            button("Change email", ids.CHANGE_EMAIL, state.encode()),
            # The History is a view of its own: the card stays within its statement budget (4 for /customer).
            button("History", ids.SHOW_HISTORY, history_value(("customer", state.customer_id), 0, state)),
            button(
                "Add note",
                ids.per_item(ids.ADD_NOTE, f"customer{state.customer_id}"),
                history_value(("customer", state.customer_id), 0, state),
            ),
            button("Share in channel", ids.SHARE_CARD, state.encode()),
            button("Close", ids.CLOSE, "close"),
        ]
    else:
        elements = [button("Open record", ids.per_item(ids.OPEN_CUSTOMER, state.customer_id), state.encode())]
    return actions("card_actions", elements)


def _pager(block_id: str, *buttons: tuple[str, str, CardState, bool]) -> Block:
    return actions(
        block_id,
        [button(label, action_id, state.encode()) for action_id, label, state, enabled in buttons if enabled],
    )
