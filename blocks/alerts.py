"""Messages the scheduler posts: a missed payment (and the same alert once it is paid)."""

from __future__ import annotations

from datetime import datetime

from blocks import ids
from blocks.customer import status_label
from blocks.elements import Block, actions, button, context, section
from blocks.message import Message
from blocks.text import DATE_AND_TIME, Mrkdwn, date_token, escape, md, money, one_line, plural, sentence
from bot.viewmodels import CardState, MissedPayment, record_value


def missed_payment(missed: MissedPayment, *, now: datetime) -> Message:
    """Who, what, how much, why, since when (the decline); with buttons to open the record or act. No internal
    ids: the buttons carry what they need."""
    what = "payment plan" if missed.kind == "payment_plan" else "subscription"
    overdue = max(0, (now - missed.failed_at).days)
    reason = escape(one_line(missed.reason), 300) if missed.reason else md("no reason given by the bank")
    text = md(
        ":rotating_light: *Missed payment* · *{}*\n{} for the {} *{}* was declined {}{}: {}",
        _name(missed),
        money(missed.amount),
        what,
        escape(one_line(missed.product), 120),
        date_token(missed.failed_at, DATE_AND_TIME),
        md(" and written off in Stripe") if missed.written_off else md(""),
        sentence(reason),
    )
    back = CardState(missed.customer_id)
    value = record_value(missed.recurring_id, back)
    buttons = [button("Open record", ids.per_item(ids.OPEN_CUSTOMER, missed.customer_id), back.encode())]
    if not missed.payments_paused:
        buttons.append(button("Pause payments", ids.per_item(ids.PAUSE_PAYMENTS, missed.recurring_id), value))
    buttons.append(
        button(
            "Cancel plan" if missed.kind == "payment_plan" else "Cancel subscription",
            ids.per_item(ids.CANCEL_RECURRING, missed.recurring_id),
            value,
            danger=True,
        )
    )
    standing = md("{} status: {}", what.capitalize(), status_label(missed.status))
    blocks: list[Block] = [
        section(text),
        context(md("Overdue {} · {}", plural(overdue, "day"), standing)),
        actions(f"alert_{missed.payment_id}", buttons),
    ]
    return Message.of(md("Missed payment: {}, {}", _name(missed), money(missed.amount)), blocks)


def paid_after_all(missed: MissedPayment, *, now: datetime) -> Message:
    """The same alert, updated: the payment went through after all."""
    what = "payment plan" if missed.kind == "payment_plan" else "subscription"
    text = md(
        ":white_check_mark: *Paid* · *{}*\n{} for the {} *{}*, missed {}, has been paid (seen {}).",
        _name(missed),
        money(missed.amount),
        what,
        escape(one_line(missed.product), 120),
        date_token(missed.failed_at),
        date_token(now),
    )
    back = CardState(missed.customer_id)
    blocks: list[Block] = [
        section(text),
        actions(
            f"alert_{missed.payment_id}",
            [button("Open record", ids.per_item(ids.OPEN_CUSTOMER, missed.customer_id), back.encode())],
        ),
    ]
    return Message.of(md("Paid: {}, {}", _name(missed), money(missed.amount)), blocks)


# How a missed payment ended without being paid, as its alert says it: (heading, what it means).
_ENDED_WITHOUT_PAYMENT = {
    "void": ("Voided", "Stripe no longer retries it and nothing is owed"),
    "uncollectible": ("Written off", "Stripe no longer retries it; the customer still owes it"),
}


def ended_without_payment(missed: MissedPayment, *, now: datetime) -> Message:
    """The same alert, updated: the bill was voided or written off (by a pause that stopped it, or in Stripe)."""
    heading, meaning = _ENDED_WITHOUT_PAYMENT[missed.payment_status]
    what = "payment plan" if missed.kind == "payment_plan" else "subscription"
    text = md(
        ":heavy_minus_sign: *{}* · *{}*\n{} for the {} *{}*, missed {}, was {} (seen {}): {}.",
        heading,
        _name(missed),
        money(missed.amount),
        what,
        escape(one_line(missed.product), 120),
        date_token(missed.failed_at),
        heading.lower(),
        date_token(now),
        meaning,
    )
    if missed.reason:
        text += md("\nIt had failed: {}", sentence(escape(one_line(missed.reason), 300)))
    back = CardState(missed.customer_id)
    blocks: list[Block] = [
        section(text),
        actions(
            f"alert_{missed.payment_id}",
            [button("Open record", ids.per_item(ids.OPEN_CUSTOMER, missed.customer_id), back.encode())],
        ),
    ]
    return Message.of(md("{}: {}, {}", heading, _name(missed), money(missed.amount)), blocks)


def _name(missed: MissedPayment) -> Mrkdwn:
    return escape(one_line(missed.customer_name), 120)
