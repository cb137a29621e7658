"""Modals for acting on records: the forms, the confirmation that states exactly what will happen, the
"working" view while Stripe is asked, and the result. Also the messages around actions (not allowed, audit)."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from slack_sdk.models.blocks import (
    Block,
    DatePickerElement,
    InputBlock,
    Option,
    PlainTextInputElement,
    RadioButtonsElement,
    StaticSelectElement,
)
from slack_sdk.models.views import View

from blocks.customer import interval_text
from blocks.elements import context, plain, section
from blocks.limits import SECTION_TEXT, VIEW_TITLE
from blocks.message import Message
from blocks.text import Mrkdwn, code, date_token, escape, md, mention, money, one_line, truncate
from bot.money import Money, exponent
from bot.viewmodels import (
    DESCRIPTION_LENGTH,
    EMAIL_LENGTH,
    NOTE_LENGTH,
    EmailForm,
    FailedBill,
    NewOrderForm,
    NewOrderRequest,
    PauseForm,
    ReceiptForm,
    ReceiptRequest,
    RecurringRecord,
    RecurringSummary,
    RefundQuote,
    RefundRequest,
    WholeOrderRefund,
)

# callback_ids of the modals, and the block / action ids of their inputs
REFUND_FORM = "refund_form"
REFUND_CONFIRM = "refund_confirm"
WHOLE_ORDER_REFUND_FORM = "whole_order_refund_form"
WHOLE_ORDER_REFUND_CONFIRM = "whole_order_refund_confirm"
CANCEL_FORM = "cancel_form"
PAUSE_FORM = "pause_form"
PAUSE_RETRY = "pause_retry"  # the answer to a pause whose failed bill was left undone: Try again
NEXT_BILL_DATE_FORM = "next_bill_date_form"
PLAN_STATUS_FORM = "plan_status_form"
UNDO_CANCEL_FORM = "undo_cancel_form"
UNDO_PAUSE_FORM = "undo_pause_form"
NEW_ORDER_FORM = "new_order_form"
NEW_ORDER_CONFIRM = "new_order_confirm"
CHANGE_EMAIL_FORM = "change_email_form"
NOTE_FORM = "note_form"  # Add note
SEND_RECEIPT_FORM = "send_receipt_form"
SEND_RECEIPT_CONFIRM = "send_receipt_confirm"

ORDER, AMOUNT, REASON, NOTE = "order", "amount", "reason", "note"
WHEN, RESUMES_AT, NEXT_BILL_DATE, STATUS = "when", "resumes_at", "next_bill_date", "status"
FAILED_BILL = "failed_bill"
PRODUCT, DESCRIPTION, CURRENCY, QUANTITY, EMAIL = "product", "description", "currency", "quantity", "email"

REASON_LABELS = {
    "requested_by_customer": "Requested by customer",
    "duplicate": "Duplicate payment",
    "fraudulent": "Fraudulent",
    "other": "Other (say why in the note)",
}
MAX_OPTIONS = 100


def _view(
    callback_id: str,
    title: str,
    blocks: list[Block],
    metadata: str,
    submit: str | None = None,
    close: str = "Cancel",
) -> dict[str, Any]:
    return View(
        type="modal",
        callback_id=callback_id,
        title=truncate(title, VIEW_TITLE),
        submit=truncate(submit, VIEW_TITLE) if submit else None,
        close=truncate(close, VIEW_TITLE),
        blocks=blocks,
        private_metadata=metadata,
    ).to_dict()


def _option(label: str, value: str) -> Option:
    return Option(text=plain(one_line(label), 75), value=value)


def _input(
    block_id: str, label: str, element, *, hint: str | None = None, optional: bool = False
) -> InputBlock:
    return InputBlock(block_id=block_id, label=label, element=element, hint=hint, optional=optional)


def note_input(hint: str = "Kept with this change in the record's History.") -> InputBlock:
    """The optional note every action form takes (bot.actions.notes says what it may hold)."""
    return _input(
        NOTE,
        "Note",
        PlainTextInputElement(action_id=NOTE, multiline=True, max_length=NOTE_LENGTH),
        hint=hint,
        optional=True,
    )


def note_form(metadata: str) -> dict[str, Any]:
    """Add note: a note on the record, for everyone who opens it (it changes nothing else)."""
    blocks: list[Block] = [
        _input(
            NOTE,
            "Note",
            PlainTextInputElement(action_id=NOTE, multiline=True, max_length=NOTE_LENGTH),
            hint="Shown in the record's History, with your name, to everyone who opens the record.",
        )
    ]
    return _view(NOTE_FORM, "Add note", blocks, metadata, submit="Save note")


def _amount_text(money: Money) -> str:
    """An amount as a person would type it back: '32.00', '3000', '12.345'."""
    return str(Decimal(money.amount).scaleb(-exponent(money.currency)))


# Refunds ---------------------------------------------------------------------------------------------------


def refund_form(quotes: list[RefundQuote], metadata: str) -> dict[str, Any]:
    """One order's refund, or a choice among a subscription's or plan's payments."""
    first = quotes[0]
    blocks: list[Block] = []
    if len(quotes) == 1:
        blocks.append(section(_quote_text(first)))
        amount_hint = (
            f"Up to {first.refundable.format()} can be refunded. Leave it as it is to refund all of it."
        )
        initial = _amount_text(first.refundable)
    else:
        blocks.append(
            section(
                md(
                    "Refund one payment of order #{} for *{}*.",
                    escape(first.order_number, 32),
                    _name(first.customer_name),
                )
                if len({q.order_id for q in quotes}) == 1
                else md("Refund one of *{}*'s payments.", _name(first.customer_name))
            )
        )
        blocks.append(
            _input(
                ORDER,
                "Payment",
                StaticSelectElement(
                    action_id=ORDER,
                    placeholder="Choose a payment",
                    options=[
                        _option(
                            f"{q.payment} · {q.paid.format()} · {q.refundable.format()} refundable",
                            str(q.payment_id),
                        )
                        for q in quotes[:MAX_OPTIONS]
                    ],
                ),
            )
        )
        amount_hint = "Leave empty to refund everything still refundable on the payment you chose."
        initial = None
    blocks += [
        _input(
            AMOUNT,
            f"Amount ({first.paid.currency.upper()})",
            PlainTextInputElement(
                action_id=AMOUNT, initial_value=initial, placeholder="e.g. 12.50", max_length=24
            ),
            hint=amount_hint,
            optional=len(quotes) > 1,
        ),
        _refund_reason_input(),
        note_input("Kept with the refund in our records."),
    ]
    return _view(REFUND_FORM, "Refund", blocks, metadata, submit="Review refund")


def _name(name: str) -> Mrkdwn:
    return escape(one_line(name), 120)


def _quote_text(quote: RefundQuote) -> Mrkdwn:
    awaiting = (
        md(
            "\n:hourglass_flowing_sand: {} asked of Stripe awaits its answer: it is held back and confirmed on "
            "its own. Refund again only if a second refund is owed.",
            money(quote.awaiting),
        )
        if quote.awaiting.amount
        else md("")
    )
    which = md(" · {}", quote.payment) if quote.payment_count > 1 else md("")
    return md(
        "*Order #{}*{} · {}\nPaid {} · refunded so far {} · *{} refundable*{}",
        escape(quote.order_number, 32),
        which,
        _name(quote.customer_name),
        money(quote.paid),
        money(quote.refunded),
        money(quote.refundable),
        awaiting,
    )


def refund_confirm(quote: RefundQuote, request: RefundRequest, metadata: str) -> dict:
    amount, reason, note = request.amount, request.reason, request.note
    to = md("*{}*", _name(quote.customer_name)) + (
        md("'s {}", escape(quote.card, 60)) if quote.card else md("")
    )
    text = md(
        "Refund *{} {}* of {} to {}?",
        money(amount),
        amount.currency.upper(),
        escape(quote.what, 120),
        to,
    )
    blocks: list[Block] = [section(text)]
    details = [md("Reason: {}", REASON_LABELS.get(reason or "other", "Other"))]
    if note:
        details.append(md("Note: “{}”", escape(one_line(note), 300)))
    blocks.append(context(md(" · ").join(details)))
    if quote.awaiting.amount:
        blocks.append(
            context(
                md(
                    ":hourglass_flowing_sand: {} of earlier refunds still awaits Stripe's answer; "
                    "this is a refund of its own, on top of that.",
                    money(quote.awaiting),
                )
            )
        )
    if reason == "fraudulent":
        blocks.append(_fraudulent_warning())
    return _view(REFUND_CONFIRM, "Confirm refund", blocks, metadata, submit=f"Refund {amount.format()}")


def _refund_reason_input() -> InputBlock:
    return _input(
        REASON,
        "Reason",
        StaticSelectElement(
            action_id=REASON,
            options=[_option(label, value) for value, label in REASON_LABELS.items()],
            initial_option=_option(REASON_LABELS["requested_by_customer"], "requested_by_customer"),
        ),
    )


def _fraudulent_warning() -> Block:
    return section(
        md(
            ":warning: *Fraudulent* also makes Stripe block this card and email from paying again. "
            "Cancel and start again with another reason if that is not what you want."
        )
    )


def _whole_order_text(whole: WholeOrderRefund) -> list[Block]:
    total = whole.total
    count = len(whole.payments)
    text = md(
        "Refund *{} {}* of order #{} to *{}*: everything still refundable, in {}.",
        money(total),
        total.currency.upper(),
        escape(whole.order_number, 32),
        _name(whole.customer_name),
        md("1 payment") if count == 1 else md("{} payments, each a refund of its own", count),
    )
    if whole.more:
        text = md(
            "Refund *{} {}* of order #{} to *{}*: the newest {} payments still refundable, each a refund of its "
            "own. {} older ones are left for the next Refund whole order.",
            money(total),
            total.currency.upper(),
            escape(whole.order_number, 32),
            _name(whole.customer_name),
            count,
            whole.more,
        )
    lines = [
        md("{} · {} of {}", escape(q.payment, 60), money(q.refundable), money(q.paid))
        for q in whole.payments[:WHOLE_ORDER_LINES]
    ]
    if count > WHOLE_ORDER_LINES:
        lines.append(md("and {} more", count - WHOLE_ORDER_LINES))
    blocks: list[Block] = [section(text), section(_fitted(lines))]
    if whole.awaiting.amount:
        blocks.append(
            context(
                md(
                    ":hourglass_flowing_sand: {} of earlier refunds still awaits Stripe's answer and is held "
                    "back: it is not part of this.",
                    money(whole.awaiting),
                )
            )
        )
    return blocks


def whole_order_refund_form(whole: WholeOrderRefund, metadata: str) -> dict:
    """Refund whole order: what it refunds, payment by payment, and a reason and a note for all of them."""
    blocks = [
        *_whole_order_text(whole),
        _refund_reason_input(),
        note_input("Kept with each refund in our records."),
    ]
    return _view(WHOLE_ORDER_REFUND_FORM, "Refund whole order", blocks, metadata, submit="Review refund")


def whole_order_refund_confirm(
    whole: WholeOrderRefund, reason: str | None, note: str | None, metadata: str
) -> dict:
    """The one confirmation of a whole-order refund: the total, the count, each payment, the reason and note."""
    blocks = _whole_order_text(whole)
    details = [md("Reason: {}", REASON_LABELS.get(reason or "other", "Other"))]
    if note:
        details.append(md("Note: “{}”", escape(one_line(note), 300)))
    blocks.append(context(md(" · ").join(details)))
    if reason == "fraudulent":
        blocks.append(_fraudulent_warning())
    return _view(
        WHOLE_ORDER_REFUND_CONFIRM,
        "Refund whole order",
        blocks,
        metadata,
        submit=f"Refund {whole.total.format()}",
    )


WHOLE_ORDER_LINES = 25


def _fitted(lines: list[Mrkdwn]) -> Mrkdwn:
    kept: list[Mrkdwn] = []
    size = 0
    for line in lines:
        if size + len(line) + 1 > SECTION_TEXT - 40:
            kept.append(md("and {} more", len(lines) - len(kept)))
            break
        kept.append(line)
        size += len(line) + 1
    return md("\n").join(kept)


# Subscriptions and payment plans ---------------------------------------------------------------------------


def _recurring_heading(item: RecurringSummary, customer_name: str) -> Mrkdwn:
    return md(
        "*{}* · {} {}\n{}",
        escape(one_line(item.product), 120),
        money(item.price),
        interval_text(item.interval, item.interval_count),
        _name(customer_name),
    )


def _noun(item: RecurringSummary) -> str:
    return "payment plan" if item.kind == "payment_plan" else "subscription"


def cancel_form(record: RecurringRecord, metadata: str) -> dict:
    item, customer_name = record.summary, record.customer_name
    period_end = record.current_period_end
    at_end = (
        f"At the end of the period ({period_end:%b %-d, %Y})" if period_end else "At the end of the period"
    )
    blocks: list[Block] = [
        section(_recurring_heading(item, customer_name)),
        _input(
            WHEN,
            "When",
            RadioButtonsElement(
                action_id=WHEN,
                options=[_option(at_end, "period_end"), _option("Now: no more payments from today", "now")],
                initial_option=_option(at_end, "period_end"),
            ),
        ),
        context(md("Cancelling refunds nothing: refund a payment separately if that is owed.")),
        note_input(),
    ]
    return _view(
        CANCEL_FORM,
        f"Cancel {_noun(item)}",
        blocks,
        metadata,
        submit=f"Cancel {_noun(item)}",
        close="Keep it",
    )


# What the pause form offers for a bill that already failed (bot.actions.recurring.BILL_CHOICES), one bill or several:
# (label, what it does), each within an option's 75 characters.
BILL_CHOICES = {
    "keep_retrying": (
        ("Keep retrying it", "Stripe goes on trying the card as scheduled"),
        ("Keep retrying them", "Stripe goes on trying the card as scheduled"),
    ),
    "void": (
        ("Stop retrying it: void the bill", "Stripe stops; the customer no longer owes it"),
        ("Stop retrying them: void the bills", "Stripe stops; the customer no longer owes them"),
    ),
    "mark_uncollectible": (
        ("Mark it uncollectible (written off)", "Stripe stops retrying; it stays owed"),
        ("Mark them uncollectible (written off)", "Stripe stops retrying; they stay owed"),
    ),
}


def _bill_option(value: str, several: bool) -> Option:
    label, does = BILL_CHOICES[value][several]
    return Option(text=plain(label, 75), value=value, description=plain(does, 75))


def pause_form(offered: PauseForm, first_day: date, metadata: str) -> dict:
    """`first_day`: the first resume date the form accepts; it offers a month later. A failed bill that Stripe
    is still retrying gets a choice of its own: pausing stops new bills, not that one."""
    record = offered.record
    item, customer_name = record.summary, record.customer_name
    blocks: list[Block] = [
        section(_recurring_heading(item, customer_name)),
        _input(
            WHEN,
            "Pause payments",
            RadioButtonsElement(
                action_id=WHEN,
                options=[
                    _option("Until a date", "until_date"),
                    _option("Until I resume them", "until_resumed"),
                ],
                initial_option=_option("Until a date", "until_date"),
            ),
        ),
        _input(
            RESUMES_AT,
            "Resume on",
            DatePickerElement(
                action_id=RESUMES_AT, initial_date=(first_day + timedelta(days=29)).isoformat()
            ),
            hint="Used when pausing until a date.",
            optional=True,
        ),
    ]
    if offered.failed_bills:
        several = len(offered.failed_bills) > 1
        blocks += [
            section(_failed_bills_text(offered.failed_bills, offered.more_failed_bills)),
            _input(
                FAILED_BILL,
                "The failed bills" if several else "The failed bill",
                RadioButtonsElement(
                    action_id=FAILED_BILL,
                    options=[_bill_option(value, several) for value in BILL_CHOICES],
                    initial_option=_bill_option("keep_retrying", several),
                ),
            ),
        ]
    blocks.append(
        context(
            md("While paused, Stripe does not charge: bills that fall due are voided, not collected later.")
        )
    )
    blocks.append(note_input())
    return _view(PAUSE_FORM, "Pause payments", blocks, metadata, submit="Pause payments")


def _failed_bills_text(bills: list[FailedBill], more: bool) -> Mrkdwn:
    listed = md(", ").join(md("*{}* of {}", money(b.amount), date_token(b.due_at)) for b in bills)
    if len(bills) == 1:
        text = md(":warning: A bill already failed and Stripe is retrying it: {}.", listed)
    else:
        text = md(":warning: {} bills already failed and Stripe is retrying them: {}.", len(bills), listed)
    if more:
        text += md(" (The oldest {}; the others are kept retrying.)", len(bills))
    return text + md("\nPausing stops new bills, not a bill that already failed: choose what happens to it.")


def next_bill_date_form(record: RecurringRecord, first_day: date, metadata: str) -> dict:
    """`first_day`: the first date the form accepts; it offers the current next bill date when that is later."""
    item, customer_name = record.summary, record.customer_name
    current = item.next_bill_at.date() if item.next_bill_at else first_day
    blocks: list[Block] = [
        section(_recurring_heading(item, customer_name)),
        _input(
            NEXT_BILL_DATE,
            "Next bill date",
            DatePickerElement(action_id=NEXT_BILL_DATE, initial_date=max(current, first_day).isoformat()),
            hint="Nothing is charged until then, and nothing is prorated.",
        ),
        note_input(),
    ]
    if item.next_bill_at:
        blocks.insert(1, context(md("Now: {}", date_token(item.next_bill_at))))
    return _view(NEXT_BILL_DATE_FORM, "Next bill date", blocks, metadata, submit="Move date")


PLAN_STATUSES = {
    "active": "Active: payments as scheduled",
    "paused": "Paused: no payments until resumed",
    "canceled_period_end": "Canceled at the end of the period",
    "canceled_now": "Canceled now",
}


def plan_status_form(record: RecurringRecord, metadata: str) -> dict:
    item, customer_name = record.summary, record.customer_name
    current = item.plan_status
    blocks: list[Block] = [
        section(_recurring_heading(item, customer_name)),
        _input(
            STATUS,
            "Status",
            RadioButtonsElement(
                action_id=STATUS,
                options=[_option(label, value) for value, label in PLAN_STATUSES.items()],
                initial_option=_option(PLAN_STATUSES[current], current),
            ),
        ),
        note_input(),
    ]
    return _view(PLAN_STATUS_FORM, "Plan status", blocks, metadata, submit="Change status")


def _next_bill_words(record: RecurringRecord) -> Mrkdwn:
    """When Stripe bills next, and how much: "bills Jane Doe $20.00 next on <date>"."""
    item = record.summary
    who = escape(one_line(record.customer_name), 100)
    if item.next_bill_at is None:
        return md("bills {} {} as scheduled", who, money(item.price))
    return md("bills {} {} next on {}, as scheduled", who, money(item.price), date_token(item.next_bill_at))


def _cancel_when(record: RecurringRecord) -> Mrkdwn:
    """When a scheduled cancel would happen: "the end of the period (<date>)", or its date."""
    item = record.summary
    if item.cancel_at_period_end:
        when = item.cancel_at or record.current_period_end
        return md("the end of the period ({})", date_token(when)) if when else md("the end of the period")
    return date_token(item.cancel_at) if item.cancel_at else md("a later date")


def undo_cancel_form(record: RecurringRecord, metadata: str) -> dict:
    """Undo cancel's confirmation: the cancel taken back (when it would have happened), and what then goes on."""
    item = record.summary
    blocks: list[Block] = [
        section(_recurring_heading(item, record.customer_name)),
        section(
            md(
                "The cancel scheduled for {} is taken back: the {} goes on, and Stripe {}.",
                _cancel_when(record),
                _noun(item),
                _next_bill_words(record),
            )
        ),
        note_input(),
    ]
    return _view(UNDO_CANCEL_FORM, "Undo cancel", blocks, metadata, submit="Undo cancel", close="Keep cancel")


def undo_pause_form(record: RecurringRecord, metadata: str) -> dict:
    """Undo pause's confirmation: the pause taken back before it voided a bill, and what then goes on."""
    item = record.summary
    until = md("until {}", date_token(item.paused_until)) if item.paused_until else md("until resumed")
    blocks: list[Block] = [
        section(_recurring_heading(item, record.customer_name)),
        section(
            md(
                "The pause {} is taken back before it voided any bill: Stripe {}.",
                until,
                _next_bill_words(record),
            )
        ),
        note_input(),
    ]
    return _view(UNDO_PAUSE_FORM, "Undo pause", blocks, metadata, submit="Undo pause", close="Keep pause")


# New order ------------------------------------------------------------------------------------------------


def new_order_form(offered: NewOrderForm, metadata: str) -> dict:
    products, currency = offered.products, offered.currency
    blocks: list[Block] = [
        section(
            md("Charge *{}*'s card on file ({}).", _name(offered.customer_name), escape(offered.card, 60))
        )
    ]
    if products:
        blocks.append(
            _input(
                PRODUCT,
                "Product",
                StaticSelectElement(
                    action_id=PRODUCT,
                    placeholder="One of your products",
                    options=[
                        _option(f"{p.name} · {p.price.format()}", str(p.id)) for p in products[:MAX_OPTIONS]
                    ],
                ),
                hint="Or describe what you are selling below.",
                optional=True,
            )
        )
    blocks += [
        _input(
            DESCRIPTION,
            "Description",
            PlainTextInputElement(
                action_id=DESCRIPTION, max_length=DESCRIPTION_LENGTH, placeholder="e.g. Extra coaching call"
            ),
            optional=bool(products),
        ),
        _input(
            AMOUNT,
            "Amount (each)",
            PlainTextInputElement(action_id=AMOUNT, max_length=24, placeholder="e.g. 49.00"),
            hint="Leave empty to use the product's price.",
            optional=bool(products),
        ),
        _input(
            CURRENCY,
            "Currency",
            StaticSelectElement(
                action_id=CURRENCY,
                options=[_option(c.upper(), c) for c in offered.currencies],
                initial_option=_option(currency.upper(), currency),
            ),
        ),
        _input(
            QUANTITY, "Quantity", PlainTextInputElement(action_id=QUANTITY, initial_value="1", max_length=4)
        ),
        note_input("Kept with the charge in the record's History."),
    ]
    return _view(NEW_ORDER_FORM, "New order", blocks, metadata, submit="Review charge")


def new_order_confirm(offered: NewOrderForm, request: NewOrderRequest, metadata: str) -> dict:
    total = request.total
    text = md(
        "Charge *{} {}* to *{}*'s {} for {} × {}?",
        money(total),
        total.currency.upper(),
        _name(offered.customer_name),
        escape(offered.card, 60),
        request.quantity,
        escape(one_line(request.description), 250),
    )
    blocks: list[Block] = [section(text)]
    if request.note:
        blocks.append(context(md("Note: “{}”", escape(one_line(request.note), 300))))
    blocks.append(
        context(
            md("The card is charged now, without the customer present; the order appears on their record.")
        )
    )
    return _view(
        NEW_ORDER_CONFIRM,
        "Confirm new order",
        blocks,
        metadata,
        submit=f"Charge {total.format()}",
    )


# Email --------------------------------------------------------------------------------------------------------


def change_email_form(offered: EmailForm, metadata: str) -> dict:
    where = "our records and in Stripe" if offered.in_stripe else "our records"
    # An address longer than an email may be (Stripe keeps up to 512 characters) is shown, not offered cut short
    # for editing: a cut address would be a different one that looks right.
    fits = len(offered.email) <= EMAIL_LENGTH
    said = md("Change *{}*'s email in {}.", _name(offered.customer_name), where)
    if not fits:
        said += md("\nNow: {} (longer than an email can be: type the new one)", code(offered.email, 600))
    blocks: list[Block] = [
        section(said),
        _input(
            EMAIL,
            "New email",
            PlainTextInputElement(
                action_id=EMAIL, initial_value=offered.email if fits else None, max_length=EMAIL_LENGTH
            ),
        ),
        note_input(),
    ]
    return _view(CHANGE_EMAIL_FORM, "Change email", blocks, metadata, submit="Change email")


# Receipts -----------------------------------------------------------------------------------------------------


def send_receipt_form(offered: ReceiptForm, metadata: str) -> dict:
    """Send receipt: which payment (when the order has several), to which address (the customer's by default)."""
    first = offered.payments[0]
    said = md(
        "Stripe emails the receipt of a payment of order #{} for *{}*.",
        escape(offered.order_number, 32),
        _name(offered.customer_name),
    )
    if len(offered.payments) == 1:
        said += md("\n{} · {}", escape(first.payment, 80), money(first.paid))
    blocks: list[Block] = [section(said)]
    if len(offered.payments) > 1:
        blocks.append(
            _input(
                ORDER,
                "Payment",
                StaticSelectElement(
                    action_id=ORDER,
                    placeholder="Choose a payment",
                    options=[
                        _option(f"{p.payment} · {p.paid.format()}", str(p.payment_id))
                        for p in offered.payments[:MAX_OPTIONS]
                    ],
                ),
            )
        )
    fits = len(offered.email) <= EMAIL_LENGTH  # a longer one is not offered cut short (it would be another)
    blocks += [
        _input(
            EMAIL,
            "Send to",
            PlainTextInputElement(
                action_id=EMAIL, initial_value=offered.email if fits else None, max_length=EMAIL_LENGTH
            ),
            hint="The customer's email on file; type another address to send it there instead.",
        ),
        note_input(),
    ]
    return _view(SEND_RECEIPT_FORM, "Send receipt", blocks, metadata, submit="Review")


def send_receipt_confirm(offered: ReceiptForm, request: ReceiptRequest, metadata: str) -> dict:
    """Exactly what Stripe will send, and to whom."""
    payment = offered.payment(request.payment_id)
    assert payment is not None  # checked by bot.actions.receipts
    paid_with = md(", {}", escape(payment.card, 60)) if payment.card else md("")
    text = md(
        "Email the receipt of the {} (*{}*{}) of order #{} for *{}* to *{}*?",
        escape(payment.payment[:1].lower() + payment.payment[1:], 80),
        money(payment.paid),
        paid_with,
        escape(offered.order_number, 32),
        _name(offered.customer_name),
        escape(request.email, EMAIL_LENGTH),
    )
    blocks: list[Block] = [section(text)]
    details = [md("Stripe sends its own receipt email; no money moves")]
    if request.note:
        details.append(md("Note: “{}”", escape(one_line(request.note), 300)))
    blocks.append(context(md(" · ").join(details)))
    return _view(SEND_RECEIPT_CONFIRM, "Confirm receipt", blocks, metadata, submit="Send receipt")


# Progress and results -----------------------------------------------------------------------------------------


def working(title: str, text: str) -> dict[str, Any]:
    return _view(
        "working", title, [section(md(":hourglass: {}", escape(text, SECTION_TEXT - 20)))], "", close="Close"
    )


def pending(
    title: str, asked: str, why: str, left: str | None = None, retry: tuple[str, str] | None = None
) -> dict[str, Any]:
    """Stripe may have acted and we cannot tell yet: what was asked, and what happens now. `left` and `retry`: as
    in `result`."""
    what = escape(one_line(asked[:1].upper() + asked[1:]), 1200)
    blocks: list[Block] = [section(md(":hourglass_flowing_sand: *{}*: {}", what, escape(why, 1500)))]
    return _answer(title, blocks, left, retry)


def result(
    title: str, text: str, left: str | None = None, retry: tuple[str, str] | None = None
) -> dict[str, Any]:
    """What an action did: `text` is a plain sentence, escaped here. `left`: a part of the request that was not
    done, in a sentence; with `retry` (the callback_id and metadata of the same request) it offers Try again."""
    blocks: list[Block] = [section(md(":white_check_mark: {}", escape(text, 2900)))]
    return _answer(title, blocks, left, retry)


def _answer(
    title: str, blocks: list[Block], left: str | None, retry: tuple[str, str] | None
) -> dict[str, Any]:
    if left is None:
        return _view("result", title, blocks, "", close="Done")
    blocks.append(section(md(":warning: {}", escape(left, 2900))))
    if retry is None:
        return _view("result", title, blocks, "", close="Done")
    callback_id, metadata = retry
    return _view(callback_id, title, blocks, metadata, submit="Try again", close="Done")


def unshown(title: str) -> dict[str, Any]:
    """The answer could not be drawn: say where to look, never leave the "working" view up."""
    text = md(
        ":warning: This was handled, but its answer could not be shown here. Open the record again to see "
        "what happened; nothing is done twice if you try again."
    )
    return _view("result", title, [section(text)], "", close="Done")


def failed(title: str, message: Message) -> dict[str, Any]:
    """Why an action was not done: the same blocks the person would get in a message."""
    return _view("result", title, list(message.blocks), "", close="Done")


def not_allowed(admins: frozenset[str]) -> Message:
    who = md(", ").join(mention(a) for a in sorted(admins)[:10])
    text = md(
        ":lock: Only payment admins can refund, cancel, pause, charge cards, change emails or send receipts, so nothing "
        "was done."
    )
    text += (
        md(" Ask {}.", who)
        if who
        else md(" No one is a payment admin yet: whoever runs the bot sets PAYMENT_ADMINS.")
    )
    return Message.of(text, [section(text)])


def failure(text: str) -> Message:
    said = escape(one_line(text), 2900)
    return Message.of(said, [section(md(":x: {}", said))])


OUTCOME_ICONS = {
    "succeeded": ":white_check_mark:",
    "already_done": ":repeat:",
    "failed": ":x:",
    "unknown": ":warning:",
    "in_progress": ":hourglass_flowing_sand:",
    "let_go": ":leftwards_arrow_with_hook:",
    "invalid": ":no_entry:",
    "refused": ":lock:",
}


def audit_message(
    actor: str, action: str, outcome: str, summary: str, stripe_id: str | None, note: str | None = None
) -> Message:
    text = md(
        "{} {} · {} · *{}*",
        Mrkdwn(OUTCOME_ICONS.get(outcome, "")),
        mention(actor),
        escape(action.replace("_", " "), 60),
        escape(outcome.replace("_", " "), 40),
    )
    detail = escape(one_line(summary), 1800)
    if stripe_id:
        detail += md(" · Stripe {}", code(stripe_id, 64))
    if note:
        detail += md(" · “{}”", escape(one_line(note), 600))
    return Message.of(
        md("{}: {}: {}", escape(action, 60), escape(outcome, 40), detail), [section(text), context(detail)]
    )
