"""The subscription, payment plan and order records, opened from a customer card."""

from __future__ import annotations

from blocks import ids
from blocks.customer import (
    NAME_IN_TEXT,
    ORDER_STATUS_LABELS,
    PRODUCT_IN_TEXT,
    SOURCE_LABELS,
    card_label,
    interval_text,
    status_text,
)
from blocks.disputes import dispute_text, reason_words, status_words
from blocks.elements import (
    Block,
    action_notice,
    actions,
    awaiting_stripe,
    button,
    confirm,
    context,
    divider,
    field,
    fields,
    header,
    section,
)
from blocks.limits import MESSAGE_BLOCK_TEXT, SECTION_TEXT, block_texts
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
from bot.money import Money
from bot.viewmodels import (
    PAYMENT_KINDS,
    CardState,
    CustomerHistory,
    HistoryEntry,
    HistoryPage,
    Notice,
    OrderRecord,
    PaymentLine,
    RecurringRecord,
    history_value,
    record_value,
    with_seen,
)

PAYMENTS_SHOWN = 12
ORDER_LINES_SHOWN = 20
REFUNDS_SHOWN = 12
LINE_ITEM_IN_TEXT = 100

PAYMENT_STATUS_LABELS = {
    "paid": ":white_check_mark: Paid",
    "failed": ":x: Failed",
    "open": ":hourglass: Open",
    "void": "Void",
    "uncollectible": ":no_entry: Written off",
}
REFUND_REASONS = {
    "requested_by_customer": "requested by customer",
    "duplicate": "duplicate",
    "fraudulent": "fraudulent",
}


def recurring_record(record: RecurringRecord, *, notice: Notice | None = None) -> Message:
    item = record.summary
    is_plan = item.kind == "payment_plan"
    kind = "Payment plan" if is_plan else "Subscription"
    title = f"{kind}: {one_line(item.product)}"
    shown = [
        field("Status", status_text(item)),
        field("Price", md("{} {}", money(item.price), interval_text(item.interval, item.interval_count))),
    ]
    if is_plan and item.installments_total:
        shown.append(
            field("Instalments", md("{} of {} paid", item.installments_paid or 0, item.installments_total))
        )
    shown.append(field("Started", date_token(item.started_at)))
    if item.next_bill_at and item.status not in ("canceled", "completed"):
        shown.append(field("Next instalment" if is_plan else "Next bill date", date_token(item.next_bill_at)))
    if record.current_period_end and item.status not in ("canceled", "completed"):
        shown.append(field("Current period ends", date_token(record.current_period_end)))
    shown.append(field("Paid so far", money_list(record.paid_total)))
    if record.schedule is not None:
        shown.append(field("Left to pay", money(record.schedule.remaining)))
    shown.append(
        field(
            "Missed payments",
            md(":warning: {}", item.missed_payments)
            if item.missed_payments
            else md(":white_check_mark: None"),
        )
    )
    subtitle = escape(one_line(record.customer_name), NAME_IN_TEXT)
    if record.stripe_subscription_id:
        subtitle += md(" · Stripe {}", code(record.stripe_subscription_id, 64))
    blocks: list[Block] = [action_notice(notice)] if notice else []
    blocks += [header(title), context(subtitle)]
    if record.awaiting:
        blocks.append(awaiting_stripe(record.awaiting))
    blocks += [fields(*shown), divider()]
    if record.schedule is not None and record.schedule.upcoming:
        blocks.append(_List(_upcoming_lines(record)))
    blocks.append(_List(_payments_lines(record)))
    buttons = _recurring_actions(record)
    if buttons:
        blocks.append(actions("recurring_actions", buttons))
    elif item.status not in ENDED and not record.stripe_subscription_id:
        blocks.append(context(md("Not linked to a Stripe subscription, so it can't be changed from here.")))
    navigation = []
    if record.order_id is not None:
        navigation.append(
            button(
                f"Open order #{record.order_number}",
                ids.per_item(ids.OPEN_ORDER, record.order_id),
                record_value(record.order_id, record.back),
            )
        )
    navigation.append(add_note_button(("recurring", item.id), record.back))
    navigation.append(_back(record.back, record.customer_name))
    blocks.append(actions("record_actions", navigation))
    blocks += history_blocks(record.history, record.back)  # last: below what can be done with the record
    return Message.of(md("{}: {}", kind, escape(one_line(item.product), PRODUCT_IN_TEXT)), _sized(blocks))


ENDED = ("canceled", "completed")


def _recurring_actions(record: RecurringRecord) -> list[dict]:
    """What can be done to a live subscription or plan that Stripe knows."""
    item = record.summary
    if item.status in ENDED or not record.stripe_subscription_id:
        return []
    is_plan = item.kind == "payment_plan"
    value = record_value(item.id, record.back)
    buttons = []
    if record.refundable_payments:
        label = "Refund an instalment" if is_plan else "Refund a payment"
        buttons.append(button(label, ids.per_item(ids.REFUND_PAYMENT, item.id), value))
    if item.payments_paused:
        # It acts at once, on the plan as this record showed it.
        resume = confirm(
            "Resume payments?",
            f"Stripe will bill {one_line(record.customer_name)[:100]} again from the next bill date.",
            "Resume payments",
            "Not now",
        )
        buttons.append(
            button(
                "Resume payments",
                ids.per_item(ids.RESUME_PAYMENTS, item.id),
                with_seen(value, record.fingerprint),
                confirm=resume,
            )
        )
    else:
        buttons.append(button("Pause payments", ids.per_item(ids.PAUSE_PAYMENTS, item.id), value))
    buttons.append(button("Change next bill date", ids.per_item(ids.CHANGE_NEXT_BILL_DATE, item.id), value))
    if is_plan:
        buttons.append(button("Change status", ids.per_item(ids.CHANGE_PLAN_STATUS, item.id), value))
    buttons.append(
        button(
            "Cancel plan" if is_plan else "Cancel subscription",
            ids.per_item(ids.CANCEL_RECURRING, item.id),
            value,
            danger=True,
        )
    )
    # Last, so the buttons above keep their places (the shell numbers them) whether or not there is one to undo.
    if item.cancelling:
        buttons.append(button("Undo cancel", ids.per_item(ids.UNDO_CANCEL, item.id), value))
    if record.pause_undoable:
        buttons.append(button("Undo pause", ids.per_item(ids.UNDO_PAUSE, item.id), value))
    return buttons


def _upcoming_lines(record: RecurringRecord) -> list[Mrkdwn]:
    """A plan's instalments still to come: `4 of 6 · Jan 7, 2027 · $150.00`."""
    schedule = record.schedule
    assert schedule is not None
    total = record.summary.installments_total
    lines = [md("*Upcoming instalments*")]
    for instalment in schedule.upcoming:
        when = date_token(instalment.due_at) if instalment.due_at else md("when payments resume")
        lines.append(md("{} of {} · {} · {}", instalment.number, total, when, money(instalment.amount)))
    if schedule.not_shown:
        lines.append(md("and {}", plural(schedule.not_shown, "more instalment")))
    return lines


def _payments_lines(record: RecurringRecord) -> list[Mrkdwn]:
    heading = md("*Payments* · {:,}", record.payment_count)
    if record.payment_count > len(record.payments):
        heading += md(", latest {}", len(record.payments))
    if not record.payments:
        return [heading + md("\nNo payments yet.")]
    return [heading] + [_payment_line(p) for p in record.payments]


def _payment_line(payment: PaymentLine) -> Mrkdwn:
    """`Nov 3, 2026 · Renewal · $35.00 · Paid`, with what was refunded of it or why it failed."""
    status = escape(PAYMENT_STATUS_LABELS.get(payment.status, payment.status), 40)
    line = md(
        "{} · {} · {} · {}",
        date_token(payment.paid_at or payment.due_at),
        PAYMENT_KINDS.get(payment.kind, "Payment"),
        money(payment.amount),
        status,
    )
    if payment.failure_reason and payment.status in ("failed", "uncollectible"):
        line += md(": {}", escape(one_line(payment.failure_reason), 120))
    if payment.refunded is not None and payment.refunded.amount:
        line += md(" · {} refunded", money(payment.refunded))
    if payment.refund_pending and payment.refunded is not None:
        line += md(
            " · :hourglass_flowing_sand: {} awaiting Stripe",
            money(Money(payment.refund_pending, payment.refunded.currency)),
        )
    return line


def order_record(record: OrderRecord, *, notice: Notice | None = None) -> Message:
    status = escape(ORDER_STATUS_LABELS.get(record.status, record.status), 40)
    currency = record.total.currency
    refundable = record.refundable or Money(0, currency)
    shown = [
        field("Status", status),
        field("Placed", date_token(record.created_at, "{date_short} at {time}")),
        field("Total paid", money(record.total)),
        field("Refunded", money(record.refunded)),
        field("Still refundable", money(refundable)),
        *(
            [field("Refund awaiting Stripe", money(Money(record.refund_pending, currency)))]
            if record.refund_pending
            else []
        ),
        field("Source", escape(SOURCE_LABELS.get(record.source, record.source), 40)),
        field(
            "Card used",
            md(":credit_card: {}", card_label(record.card)) if record.card else md("Not recorded"),
        ),
    ]
    blocks: list[Block] = [action_notice(notice)] if notice else []
    blocks += [
        header(f"Order #{record.number}"),
        context(escape(one_line(record.customer_name), NAME_IN_TEXT)),
        *([awaiting_stripe(record.awaiting)] if record.awaiting else []),
        fields(*shown),
        _List(_items_lines(record)),
        _List(_order_payments_lines(record)),
        section(
            md(
                "*Billing address*\n{}",
                md("\n").join(escape(one_line(line), 200) for line in record.billing.lines())
                if record.billing
                else md("None given"),
            )
        ),
        _List(_refunds_lines(record)),
        *([_List(_disputes_lines(record))] if record.disputes else []),
    ]
    buttons: list[dict] = []
    value = record_value(record.id, record.back)
    if record.refundable_payments:
        buttons.append(button("Refund", ids.per_item(ids.REFUND_ORDER, record.id), value))
        buttons.append(
            button("Refund whole order", ids.per_item(ids.REFUND_WHOLE_ORDER, record.id), value, danger=True)
        )
    if record.receipt_payments:
        buttons.append(button("Send receipt", ids.per_item(ids.SEND_RECEIPT, record.id), value))
    if record.recurring:
        link = record.recurring
        is_plan = link.kind == "payment_plan"
        blocks.append(
            section(
                md(
                    "Started the {} *{}*: its {} are this order's payments.",
                    "payment plan" if is_plan else "subscription",
                    escape(one_line(link.product), PRODUCT_IN_TEXT),
                    "instalments" if is_plan else "renewals",
                )
            )
        )
        buttons.append(
            button(
                "Open payment plan" if is_plan else "Open subscription",
                ids.per_item(ids.OPEN_PAYMENT_PLAN if is_plan else ids.OPEN_SUBSCRIPTION, link.id),
                record_value(link.id, record.back),
            )
        )
    buttons.append(add_note_button(("order", record.id), record.back))
    buttons.append(_back(record.back, record.customer_name))
    blocks.append(divider())
    blocks.append(actions("record_actions", buttons))
    blocks += history_blocks(record.history, record.back)  # last: below what can be done with the record
    return Message.of(md("Order #{}", escape(record.number, 32)), _sized(blocks))


def _order_payments_lines(record: OrderRecord) -> list[Mrkdwn]:
    heading = md("*Payments* · {:,}", record.payment_count)
    if record.payment_count > len(record.payments):
        heading += md(", latest {}", len(record.payments))
    if not record.payments:
        return [heading + md("\nNo payments yet.")]
    return [heading] + [_payment_line(p) for p in record.payments]


def _items_lines(record: OrderRecord) -> list[Mrkdwn]:
    lines = [md("*Items*")]
    for line in record.lines[:ORDER_LINES_SHOWN]:
        description = escape(one_line(line.description), LINE_ITEM_IN_TEXT)
        each = md(" at {}", money(line.unit_amount)) if line.quantity != 1 else md("")
        lines.append(md("{} × {}{} · {}", line.quantity, description, each, money(line.amount)))
    if len(record.lines) > ORDER_LINES_SHOWN:
        lines.append(md("and {}", plural(len(record.lines) - ORDER_LINES_SHOWN, "more item")))
    if not record.lines:
        lines.append(md("No items recorded."))
    return lines


def _refunds_lines(record: OrderRecord) -> list[Mrkdwn]:
    if not record.refunds:
        return [md("*Refunds*\nNone so far.")]
    lines = [md("*Refunds* · {}", len(record.refunds))]
    for refund in record.refunds[:REFUNDS_SHOWN]:
        line = md("{} · {}", date_token(refund.created_at), money(refund.amount))
        if refund.reason:
            line += md(" · {}", escape(REFUND_REASONS.get(refund.reason, refund.reason), 40))
        if refund.note:
            line += md(" · “{}”", escape(one_line(refund.note), 120))
        if refund.requested_by:
            line += md(" · by {}", mention(refund.requested_by))
        lines.append(line)
    if len(record.refunds) > REFUNDS_SHOWN:
        lines.append(md("and {}", plural(len(record.refunds) - REFUNDS_SHOWN, "earlier refund")))
    return lines


def _disputes_lines(record: OrderRecord) -> list[Mrkdwn]:
    """The order's disputes, newest first (shown only when it has one)."""
    return [md("*Disputes* · {:,}", len(record.disputes))] + [dispute_text(d) for d in record.disputes]


# A record's lists (an order's items, payments, refunds and disputes; a plan's upcoming instalments and payments)
# share what the rest of the message leaves of Slack's size limit: the rest (fields, the notice of who did what,
# History, whose page always fits its own share) is measured first, and a list longer than its share keeps its
# first lines and says how many more there are. A list is never given less than LIST_FLOOR.
LIST_FLOOR = 300
_SIZE_MARGIN = 200  # what the joining newlines and the "and N more" lines may add


class _List:
    """Where a list goes in a record's blocks, until its share of the message is known."""

    def __init__(self, lines: list[Mrkdwn]) -> None:
        self.lines = lines

    @property
    def wanted(self) -> int:
        return min(SECTION_TEXT, sum(len(line) + 1 for line in self.lines) + 40)


def _sized(blocks: list) -> list[Block]:
    """`blocks` with each _List made a section, the lists sharing what the other blocks leave of the message."""
    lists = [block for block in blocks if isinstance(block, _List)]
    fixed = sum(len(text) for text in block_texts([b for b in blocks if not isinstance(b, _List)]))
    shares = _water_fill(MESSAGE_BLOCK_TEXT - _SIZE_MARGIN - fixed, [item.wanted for item in lists])
    sized = {
        id(item): section(_fit(item.lines, max(LIST_FLOOR, share)))
        for item, share in zip(lists, shares, strict=True)
    }
    return [sized[id(block)] if isinstance(block, _List) else block for block in blocks]


def _water_fill(available: int, wanted: list[int]) -> list[int]:
    """Shares of `available` for lists wanting `wanted`: the smallest get all they want, the rest split what is
    left evenly."""
    shares = [0] * len(wanted)
    left = max(0, available)
    order = sorted(range(len(wanted)), key=lambda i: wanted[i])
    for done, i in enumerate(order):
        shares[i] = min(wanted[i], left // (len(order) - done))
        left -= shares[i]
    return shares


def _fit(lines: list[Mrkdwn], limit: int = SECTION_TEXT) -> Mrkdwn:
    """Join lines, dropping whole lines from the end so the text fits `limit` (a section, by default)."""
    kept: list[Mrkdwn] = []
    size = 0
    for line in lines:
        if size + len(line) + 1 > limit - 40:
            kept.append(md("and {} more", len(lines) - len(kept)))
            break
        kept.append(line)
        size += len(line) + 1
    return md("\n").join(kept)


def _back(state: CardState, customer_name: str) -> dict:
    return button(f"Back to {one_line(customer_name)}", ids.BACK_TO_CUSTOMER, state.encode())


# History ----------------------------------------------------------------------------------------------------

# A page of History: with each line bounded (below), a whole page always fits its share of a message, so no line
# is ever dropped to make room (a dropped line would be on no page at all).
HISTORY_PAGE_SIZE = 6
HISTORY_SAID = 120  # an action's summary, a product's name
HISTORY_NOTE = 250  # a note of its own (Add note); the whole note is kept
HISTORY_ACTION_NOTE = 100  # a note written with an action or a refund
HISTORY_REASON = 80  # why a payment failed
# The longest a History section can be (a heading and a page of the longest lines): what it takes of a message.
HISTORY_TEXT = 2100

ACTION_WORDS = {
    "refund": "refund",
    "cancel": "cancel",
    "pause_payments": "pause payments",
    "resume_payments": "resume payments",
    "undo_cancel": "undo cancel",
    "undo_pause": "undo pause",
    "reactivate": "set back to active",
    "move_next_bill_date": "move the next bill date",
    "change_plan_status": "change the status",
    "void_failed_bill": "void a failed bill",
    "write_off_failed_bill": "write off a failed bill",
    "new_order": "new order",
    "change_email": "change email",
    "send_receipt": "send a receipt",
}


def history_blocks(history: HistoryPage | None, back: CardState, limit: int = HISTORY_TEXT) -> list[Block]:
    """A record's History section: a page of it, newest first, and Newer / Older when there are other pages."""
    if history is None:
        return []
    return [section(history_text(history, limit)), *_history_pager(history, back)]


def history_text(history: HistoryPage, limit: int = HISTORY_TEXT) -> Mrkdwn:
    heading = md("*History* · newest first")
    if history.page:
        heading += md(" · page {}", history.page + 1)
    if not history.entries:
        return heading + md("\nNothing yet.")
    whose = history.target[0] == "customer"  # a customer's History names the order each payment is of
    return _fit([heading] + [history_line(entry, orders=whose) for entry in history.entries], limit)


def history_line(entry: HistoryEntry, *, orders: bool = False) -> Mrkdwn:
    """One event: when, who (a mention), and what, every outside text escaped and bounded."""
    when = date_token(entry.at, DATE_AND_TIME)
    who = md("{} ", mention(entry.actor)) if entry.actor else md("")
    said = escape(one_line(entry.said), HISTORY_SAID)
    if entry.kind == "note":
        return md("{} · {}:memo: “{}”", when, who, escape(one_line(entry.said), HISTORY_NOTE))
    if entry.kind == "action":
        if entry.outcome == "failed":
            what = md(":x: {} failed: {}", _action_words(entry.action), said)
        elif entry.outcome == "unknown":
            what = md(":hourglass_flowing_sand: awaiting Stripe's answer: {}", said)
        elif entry.outcome == "let_go":
            what = md(":leftwards_arrow_with_hook: let go, Stripe never made it: {}", said)
        else:
            what = said
        line = md("{} · {}{}", when, who, what)
    elif entry.kind in ("paid", "failed"):
        label = PAYMENT_KINDS.get(entry.said, "Payment")
        amount = money(entry.amount) if entry.amount else md("")
        if entry.kind == "paid":
            line = md("{} · :white_check_mark: {} of {} paid", when, label, amount)
        else:
            line = md("{} · :x: {} of {} failed", when, label, amount)
            if entry.detail:
                line += md(": {}", escape(one_line(entry.detail), HISTORY_REASON))
        if orders and entry.number:
            line += md(" · order #{}", escape(entry.number, 32))
    elif entry.kind == "refund":
        amount = money(entry.amount) if entry.amount else md("")
        line = md("{} · :leftwards_arrow_with_hook: {} refunded in Stripe", when, amount)
        if entry.detail:
            line += md(" · {}", escape(REFUND_REASONS.get(entry.detail, entry.detail), 40))
        if orders and entry.number:
            line += md(" · order #{}", escape(entry.number, 32))
        if entry.actor:
            line += md(" · by {}", mention(entry.actor))
    elif entry.kind == "dispute":
        amount = money(entry.amount) if entry.amount else md("")
        line = md(
            "{} · :warning: {} disputed · {} · now {}",
            when,
            amount,
            reason_words(entry.said or None),
            status_words(entry.outcome or ""),
        )
        if orders and entry.number:
            line += md(" · order #{}", escape(entry.number, 32))
    elif entry.kind in ("started", "canceled"):
        noun = "Payment plan" if entry.detail == "payment_plan" else "Subscription"
        icon = ":arrow_forward:" if entry.kind == "started" else ":stop_button:"
        line = md("{} · {} {} *{}* {}", when, Mrkdwn(icon), noun, said, entry.kind)
    else:
        line = md("{} · {}{}", when, who, said)
    if entry.note:
        line += md(" · “{}”", escape(one_line(entry.note), HISTORY_ACTION_NOTE))
    return line


def _action_words(action: str | None) -> str:
    return ACTION_WORDS.get(action or "", (action or "change").replace("_", " "))


def _history_pager(history: HistoryPage, back: CardState) -> list[Block]:
    buttons = []
    if history.page > 0:
        buttons.append(
            button("Newer", ids.HISTORY_NEWER, history_value(history.target, history.page - 1, back))
        )
    if history.has_older:
        buttons.append(
            button("Older", ids.HISTORY_OLDER, history_value(history.target, history.page + 1, back))
        )
    return [actions("history_pages", buttons)] if buttons else []


def add_note_button(target: tuple[str, int], back: CardState, *, on_history: bool = False) -> dict:
    """Add note: on every record, for anyone who can see it (a note moves no money)."""
    kind, record_id = target
    item = f"{ids.ON_HISTORY if on_history else kind}{record_id}"
    return button("Add note", ids.per_item(ids.ADD_NOTE, item), history_value(target, 0, back))


def customer_history(view: CustomerHistory, *, notice: Notice | None = None) -> Message:
    """A customer's History (everything of theirs: orders, subscriptions, plans), opened from their card."""
    name = escape(one_line(view.customer_name), NAME_IN_TEXT)
    blocks: list[Block] = [action_notice(notice)] if notice else []
    blocks += [
        header(f"History: {one_line(view.customer_name)}"),
        context(md("Everything of {}'s: their orders, subscriptions and payment plans.", name)),
        *history_blocks(view.history, view.back),
        actions(
            "record_actions",
            [
                add_note_button(view.history.target, view.back, on_history=True),
                _back(view.back, view.customer_name),
            ],
        ),
    ]
    return Message.of(md("History: {}", name), blocks)
